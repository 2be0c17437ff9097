//! Chats: the home page, the chat page, create, rename, delete.
use axum::{
    Form,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::{Html, IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AppState,
    error::{AppError, AppResult},
    limits::Action,
    render::{Templates, escape_html},
    session::Session,
    store::{self, Role, Status, chat, message},
};

use super::{ClientAddress, Htmx, chat_of_session, parse_id, redirect, render, validate_message};

/// Chats in the sidebar; all of them are on `/chats`, a page of [`CHATS_PER_PAGE`] at a time.
const CHATS_LISTED: u64 = 50;
const CHATS_PER_PAGE: u64 = 100;
/// Messages shown at once on the chat page; older ones are a link away.
pub const MESSAGES_PER_PAGE: u64 = 100;

/// A message as the templates show it.
#[derive(Serialize)]
pub struct MessageView {
    pub id: String,
    pub chat_id: String,
    pub role: Role,
    pub status: Status,
    /// Safe HTML: escaped text for user messages and for replies still being written (shown as
    /// they stream), sanitised markdown for finished replies.
    pub html: String,
    /// The reply's reasoning as escaped text; empty when there is none.
    pub reasoning_html: String,
    /// The text as written (the edit form starts from it).
    pub content: String,
    pub error: Option<String>,
    /// Offer Regenerate/Retry (the last reply of a chat that has a user message).
    pub can_regenerate: bool,
    /// Offer Edit (the chat's latest user message).
    pub can_edit: bool,
    /// An earlier version (edited away, or a reply to one).
    pub superseded: bool,
    /// For an edited message: its earlier versions, each with the replies it had, oldest first.
    pub earlier_versions: Vec<Vec<MessageView>>,
    /// The model is still writing the chat's title: the page asks for it until it is there.
    pub title_pending: bool,
}

/// A reply's text as it ended, for the stream's last events.
pub struct FinishedReply<'a> {
    pub chat_id: Uuid,
    pub message_id: Uuid,
    pub text: &'a str,
    pub reasoning: &'a str,
    pub status: Status,
    pub error: Option<&'a str>,
}

impl MessageView {
    pub fn from_model(templates: &Templates, message: &message::Model) -> Self {
        let html = match (message.role, message.status) {
            (Role::Assistant, Status::Streaming) => escape_html(&message.content),
            (Role::Assistant, _) => templates.finished_reply_html(message.id, &message.content),
            _ => escape_html(&message.content),
        };
        Self {
            id: message.id.to_string(),
            chat_id: message.chat_id.to_string(),
            role: message.role,
            status: message.status,
            html,
            reasoning_html: escape_html(message.reasoning.as_deref().unwrap_or_default()),
            content: if message.role == Role::User {
                message.content.clone()
            } else {
                String::new()
            },
            error: message.error.clone(),
            can_regenerate: false,
            can_edit: false,
            superseded: message.superseded,
            earlier_versions: Vec::new(),
            title_pending: false,
        }
    }

    /// The body of a reply that just ended, for the stream's `done` event. It is the chat's
    /// latest message, so it offers Regenerate/Retry.
    pub fn final_reply(templates: &Templates, reply: &FinishedReply) -> Self {
        Self {
            id: reply.message_id.to_string(),
            chat_id: reply.chat_id.to_string(),
            role: Role::Assistant,
            status: reply.status,
            html: templates.finished_reply_html(reply.message_id, reply.text),
            reasoning_html: escape_html(reply.reasoning),
            content: String::new(),
            error: reply.error.map(str::to_owned),
            can_regenerate: true,
            can_edit: false,
            superseded: false,
            earlier_versions: Vec::new(),
            title_pending: false,
        }
    }
}

/// What the chat page shows of its history.
pub struct History {
    pub messages: Vec<MessageView>,
    /// Position of the oldest message shown, when there are earlier ones.
    pub earlier: Option<i64>,
    /// A reply is being written.
    pub streaming: bool,
}

/// A page of a chat's history (the newest, or the one before `before`), as the page shows it:
/// earlier versions of an edited message folded into it, Regenerate on the last reply and Edit
/// on the last user message (on the newest page only).
pub async fn history(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    before: Option<i64>,
) -> AppResult<History> {
    let mut messages = state
        .store
        .list_messages(&session.id, chat_id, before, MESSAGES_PER_PAGE + 1)
        .await?;
    // One more than a page was asked for: its presence says there is earlier history.
    let earlier = if messages.len() as u64 > MESSAGES_PER_PAGE {
        messages.remove(0);
        messages.first().map(|m| m.seq)
    } else {
        None
    };
    let newest_page = before.is_none();
    let has_user_message = !newest_page || messages.iter().any(|m| m.role == Role::User);
    let streaming = messages.iter().any(|m| m.status == Status::Streaming);
    let mut views: Vec<MessageView> = Vec::with_capacity(messages.len());
    let mut versions: Vec<Vec<MessageView>> = Vec::new();
    for message in messages.iter().filter(|m| m.role != Role::System) {
        let mut view = MessageView::from_model(&state.templates, message);
        if message.superseded {
            match versions.last_mut() {
                Some(version) if message.role != Role::User => version.push(view),
                _ => versions.push(vec![view]),
            }
            continue;
        }
        view.earlier_versions = std::mem::take(&mut versions);
        views.push(view);
    }
    // Earlier versions with no newer one on this page stay visible, as earlier versions.
    views.extend(versions.into_iter().flatten());
    if newest_page {
        // Edit is offered at once; while the reply is written it is hidden (CSS) and refused.
        if let Some(user) = views
            .iter_mut()
            .rev()
            .find(|v| v.role == Role::User && !v.superseded)
        {
            user.can_edit = true;
        }
        if let Some(last) = views.last_mut().filter(|_| !streaming) {
            last.can_regenerate = has_user_message && last.role == Role::Assistant;
            // The model is writing the chat's title: the page looks for it.
            last.title_pending = state.generations.title_pending(chat_id);
        }
    }
    Ok(History {
        messages: views,
        earlier,
        streaming,
    })
}

/// What every page shows around its content: the sidebar and the visitor's name.
#[derive(Serialize)]
pub struct Frame {
    pub chats: Vec<chat::Model>,
    /// There are more chats than the sidebar shows.
    pub more_chats: bool,
    pub display_name: Option<String>,
}

pub async fn frame(state: &AppState, session: &Session) -> AppResult<Frame> {
    let (mut chats, display_name) = tokio::try_join!(
        state.store.list_chats(&session.id, None, CHATS_LISTED + 1),
        state.store.display_name(&session.id),
    )?;
    let more_chats = chats.len() as u64 > CHATS_LISTED;
    chats.truncate(CHATS_LISTED as usize);
    Ok(Frame {
        chats,
        more_chats,
        display_name,
    })
}

#[derive(Serialize)]
struct HomePage {
    frame: Frame,
    max_message_bytes: usize,
}

#[derive(Serialize)]
struct ChatPage {
    frame: Frame,
    chat: chat::Model,
    messages: Vec<MessageView>,
    /// Position of the oldest message shown, when there are earlier ones.
    earlier: Option<i64>,
    /// A reply is being written (the page refreshes itself without JavaScript).
    streaming: bool,
    paged: bool,
    max_message_bytes: usize,
    settings: super::settings::SettingsView,
}

#[derive(Serialize)]
struct ChatOnly {
    chat: chat::Model,
}

#[derive(Serialize)]
struct DeletePage {
    frame: Frame,
    chat: chat::Model,
}

pub async fn home(State(state): State<AppState>, session: Session) -> AppResult<Html<String>> {
    let frame = frame(&state, &session).await?;
    render(
        &state,
        "home.html",
        HomePage {
            frame,
            max_message_bytes: state.config.max_message_bytes,
        },
    )
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// The id of the last chat of the previous page.
    after: Option<String>,
}

#[derive(Serialize)]
struct ChatsPage {
    frame: Frame,
    page: Vec<chat::Model>,
    /// The id to continue after, when there are older chats.
    next: Option<String>,
    first_page: bool,
}

/// Every chat of the session, a page at a time, most recently active first.
pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<ListQuery>,
) -> AppResult<Html<String>> {
    let after = query
        .after
        .as_deref()
        .map(|id| parse_id(id, "chat"))
        .transpose()?;
    let (frame, page) = tokio::try_join!(frame(&state, &session), async {
        state
            .store
            .page_of_chats(&session.id, after, CHATS_PER_PAGE)
            .await?
            .ok_or(AppError::NotFound("chat"))
    })?;
    render(
        &state,
        "chats.html",
        ChatsPage {
            frame,
            page: page.chats,
            next: page.next.map(|id| id.to_string()),
            first_page: after.is_none(),
        },
    )
}

#[derive(Deserialize)]
pub struct ShowQuery {
    before: Option<i64>,
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> AppResult<Html<String>> {
    let chat_id = parse_id(&id, "chat")?;
    let chat = chat_of_session(&state, &session, chat_id).await?;
    // `before` past the newest message (a search result's link) is the newest page.
    let before = match query.before {
        Some(before)
            if state
                .store
                .has_messages_from(&session.id, chat_id, before)
                .await? =>
        {
            Some(before)
        }
        _ => None,
    };
    let (frame, history, models) = tokio::try_join!(
        frame(&state, &session),
        history(&state, &session, chat_id, before),
        async { Ok(super::settings::model_choices(&state).await) },
    )?;
    let settings = super::settings::SettingsView::new(&state, &chat, models, false);
    let page = ChatPage {
        frame,
        chat,
        messages: history.messages,
        earlier: history.earlier,
        streaming: history.streaming,
        paged: before.is_some(),
        max_message_bytes: state.config.max_message_bytes,
        settings,
    };
    render(&state, "chat.html", page)
}

/// The chat's title, for a page waiting for the model to write it: the title form and the
/// sidebar entry (out of band). 204 while the model is still writing; 286 (htmx: stop asking)
/// with the title once it is done, or when no title is being written.
pub async fn title(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let chat = chat_of_session(&state, &session, chat_id).await?;
    if state.generations.title_pending(chat_id) {
        return Ok(axum::http::StatusCode::NO_CONTENT.into_response());
    }
    let html = render(&state, "fragments/title_ready.html", ChatOnly { chat })?;
    let done = axum::http::StatusCode::from_u16(286).unwrap_or(axum::http::StatusCode::OK);
    Ok((done, html).into_response())
}

#[derive(Deserialize)]
pub struct CreateForm {
    /// An optional first message.
    #[serde(default)]
    content: String,
}

/// Starts a chat, optionally with a first message (blank means none).
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Form(form): Form<CreateForm>,
) -> AppResult<Response> {
    let first_message = (!form.content.trim().is_empty()).then_some(form.content.as_str());
    if let Some(content) = first_message {
        validate_message(content, state.config.max_message_bytes)?;
    }
    state
        .rate_limits
        .check(Action::CreateChat, &session.id, address)?;
    if first_message.is_some() {
        state
            .rate_limits
            .check(Action::Send, &session.id, address)?;
    }
    let greeting = Some(state.config.greeting.as_str());
    let new_chat = state
        .store
        .create_chat(&session.id, greeting, first_message)
        .await?;
    if let Some(reply) = &new_chat.reply {
        super::messages::start_reply(&state, reply).await?;
    }
    Ok(redirect(htmx, &format!("/chats/{}", new_chat.chat.id)))
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    title: String,
}

/// A title as typed, on one line with single spaces; blank or too long is refused.
pub fn clean_title(raw: &str) -> AppResult<String> {
    super::reject_nul(raw)?;
    let title = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.is_empty() {
        return Err(AppError::Invalid("Please give the chat a title.".into()));
    }
    if title.chars().count() > store::MAX_TITLE_CHARS {
        return Err(AppError::Invalid(format!(
            "Please use a title of at most {} characters.",
            store::MAX_TITLE_CHARS
        )));
    }
    Ok(title)
}

pub async fn rename(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<RenameForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let title = clean_title(&form.title)?;
    let chat = state
        .store
        .rename_chat(&session.id, chat_id, &title)
        .await?
        .ok_or(AppError::NotFound("chat"))?;
    if htmx {
        // The title form, and the sidebar entry out of band.
        return Ok(render(&state, "fragments/renamed.html", ChatOnly { chat })?.into_response());
    }
    Ok(redirect(false, &format!("/chats/{chat_id}")))
}

/// Without JavaScript there is no `confirm()`: deleting goes through this page.
pub async fn confirm_delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let chat_id = parse_id(&id, "chat")?;
    let chat = chat_of_session(&state, &session, chat_id).await?;
    let frame = frame(&state, &session).await?;
    render(&state, "delete.html", DeletePage { frame, chat })
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    if !state.store.delete_chat(&session.id, chat_id).await? {
        return Err(AppError::NotFound("chat"));
    }
    // htmx from another page: the sidebar entry just disappears (empty swap). From the deleted
    // chat's own page, or without JavaScript: go home.
    let current = headers
        .get("hx-current-url")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if htmx && !current.contains(&format!("/chats/{chat_id}")) {
        return Ok(Html("").into_response());
    }
    Ok(redirect(htmx, "/"))
}
