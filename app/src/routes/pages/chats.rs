//! Chats: the home page, the list of chats, the chat page, its title, create, rename, delete.
use axum::{
    Form,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    chat::{self, NewChat, TitleStatus},
    domain::{MessageText, Title, size},
    error::AppResult,
    page_cache::{PageKey, Stamp},
    routes::{
        ClientAddress, Htmx,
        pages::messages::ComposerForm,
        parse_id, redirect, render,
        views::{
            ContextFragment, ContextView, Frame, MessageView, SettingsView, SharesView,
            history_views, mark_context_boundary, render_replies_ahead,
        },
    },
    session::Session,
    store,
};

/// Chats per page of `/chats`.
const CHATS_PER_PAGE: u64 = 100;

#[derive(Serialize)]
struct HomePage {
    frame: Frame,
    max_message_bytes: usize,
    max_attachments: usize,
    max_attachment_size: String,
}

pub async fn home(State(state): State<AppState>, session: Session) -> AppResult<Html<String>> {
    let frame = chat::sidebar(&state, &session).await?.into();
    let page = HomePage {
        frame,
        max_message_bytes: state.config.max_message_bytes,
        max_attachments: state.config.max_attachments,
        max_attachment_size: size(state.config.max_attachment_bytes),
    };
    render(&state, "home.html", page)
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// The id of the last chat of the previous page.
    after: Option<String>,
}

#[derive(Serialize)]
struct ChatsPage {
    frame: Frame,
    page: Vec<store::chat::Model>,
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
    let (sidebar, page) = tokio::try_join!(
        chat::sidebar(&state, &session),
        chat::list(&state, &session, after, CHATS_PER_PAGE),
    )?;
    let page = ChatsPage {
        frame: sidebar.into(),
        page: page.chats,
        next: page.next.map(|id| id.to_string()),
        first_page: after.is_none(),
    };
    render(&state, "chats.html", page)
}

#[derive(Deserialize)]
pub struct ShowQuery {
    before: Option<i64>,
    /// A message opened with its edit form (Edit without JavaScript); anything else, none.
    edit: Option<String>,
}

#[derive(Serialize)]
struct ChatPage {
    frame: Frame,
    chat: store::chat::Model,
    messages: Vec<MessageView>,
    /// Position of the oldest message shown, when there are earlier ones.
    earlier: Option<i64>,
    /// A reply is being written (the page refreshes itself without JavaScript).
    streaming: bool,
    paged: bool,
    max_message_bytes: usize,
    max_attachments: usize,
    max_attachment_size: String,
    settings: SettingsView,
    context: ContextView,
    shares: SharesView,
    /// Every message shown is left out of the prompt: the line goes after them.
    context_boundary_at_end: bool,
    /// How long a temporary chat is kept after its last use (`TEMPORARY_CHAT_TTL`).
    temporary_ttl: String,
}

/// The chat page, from the page cache when nothing it shows has changed since it was rendered:
/// then the whole request is one indexed read of the session's version.
pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ShowQuery>,
) -> AppResult<Html<Bytes>> {
    let chat_id = parse_id(&id, "chat")?;
    // First: a write after this read makes the stamp older than the page, never newer.
    let version = chat::session_version(&state, &session).await?;
    let models = chat::model_choices(&state).await;
    let stamp = Stamp::new(version, (&models, state.generations.title_pending(chat_id)));
    let key = PageKey::Chat {
        session: session.id.clone(),
        chat: chat_id,
        before: query.before,
    };
    let editing = query
        .edit
        .as_deref()
        .and_then(|id| uuid::Uuid::parse_str(id).ok())
        .map(|id| id.to_string());
    // A page opened to edit a message is rare and not kept.
    if editing.is_none()
        && let Some(page) = state.pages.get(&key, stamp)
    {
        return Ok(Html(page));
    }
    let (sidebar, opened, context, links) = tokio::try_join!(
        chat::sidebar(&state, &session),
        chat::open(
            &state,
            &session,
            chat_id,
            query.before,
            chat::MESSAGES_PER_PAGE
        ),
        chat::context(&state, &session, chat_id),
        chat::shares(&state, &session, chat_id),
    )?;
    let history = &opened.history;
    render_replies_ahead(&state.templates, &history.messages).await;
    let mut messages = history_views(&state.templates, history);
    if let Some(view) = messages
        .iter_mut()
        .find(|v| v.can_edit && Some(&v.id) == editing.as_ref())
    {
        view.editing = true;
    }
    let context_boundary_at_end = mark_context_boundary(&mut messages, context.first_sent_seq);
    let page = ChatPage {
        frame: sidebar.into(),
        messages,
        context: ContextView::new(chat_id, &context),
        shares: SharesView::new(chat_id, &links, false),
        context_boundary_at_end,
        earlier: history.earlier,
        streaming: history
            .messages
            .iter()
            .any(|m| m.status == store::Status::Streaming),
        paged: !history.newest,
        max_message_bytes: state.config.max_message_bytes,
        max_attachments: state.config.max_attachments,
        max_attachment_size: size(state.config.max_attachment_bytes),
        settings: SettingsView::new(&state, &opened.chat, models, false),
        chat: opened.chat,
        temporary_ttl: crate::domain::duration_words(state.config.temporary_chat_ttl),
    };
    let Html(page) = render(&state, "chat.html", page)?;
    let page = Bytes::from(page);
    if editing.is_none() {
        state.pages.put(key, stamp, page.clone());
    }
    Ok(Html(page))
}

/// The context gauge, asked for again by the page after each reply.
pub async fn context(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let chat_id = parse_id(&id, "chat")?;
    let context = chat::context(&state, &session, chat_id).await?;
    let fragment = ContextFragment {
        g: ContextView::new(chat_id, &context),
        oob: false,
    };
    render(&state, "fragments/context_gauge.html", fragment)
}

#[derive(Serialize)]
struct ChatOnly {
    chat: store::chat::Model,
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
    match chat::title_status(&state, &session, chat_id).await? {
        TitleStatus::Pending => Ok(StatusCode::NO_CONTENT.into_response()),
        TitleStatus::Ready(chat) => {
            let html = render(
                &state,
                "fragments/title_ready.html",
                ChatOnly { chat: *chat },
            )?;
            let done = StatusCode::from_u16(286).unwrap_or(StatusCode::OK);
            Ok((done, html).into_response())
        }
    }
}

/// Starts a chat, optionally with a first message (blank, with no files, means none).
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    form: ComposerForm,
) -> AppResult<Response> {
    let max = state.config.max_message_bytes;
    let first_message = match form.files.is_empty() {
        true => MessageText::parse_optional(form.content, max)?,
        false => Some(MessageText::parse_with_files(form.content, max, true)?),
    };
    let new_chat = NewChat {
        first_message,
        files: form.files,
        title: None,
        temporary: form.temporary,
    };
    let chat = chat::create(&state, &session, address, new_chat).await?;
    Ok(redirect(htmx, &format!("/chats/{}", chat.id)))
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    title: String,
}

pub async fn rename(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<RenameForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let title = Title::parse(&form.title)?;
    let chat = chat::rename(&state, &session, chat_id, &title).await?;
    if htmx {
        // The title form, and the sidebar entry out of band.
        return Ok(render(&state, "fragments/renamed.html", ChatOnly { chat })?.into_response());
    }
    Ok(redirect(false, &format!("/chats/{chat_id}")))
}

#[derive(Serialize)]
struct DeletePage {
    frame: Frame,
    chat: store::chat::Model,
}

/// Without JavaScript there is no `confirm()`: deleting goes through this page.
pub async fn confirm_delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> AppResult<Html<String>> {
    let chat_id = parse_id(&id, "chat")?;
    let (chat, sidebar) = tokio::try_join!(
        chat::find(&state, &session, chat_id),
        chat::sidebar(&state, &session),
    )?;
    let page = DeletePage {
        frame: sidebar.into(),
        chat,
    };
    render(&state, "delete.html", page)
}

pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    chat::delete(&state, &session, chat_id).await?;
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
