//! Messages of a chat: send (which starts a reply), edit and resend, regenerate, stop, and the
//! reply's event stream.
use axum::{
    Form,
    extract::{FromRequest, Multipart, Path, Request, State, multipart::MultipartError},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AppState,
    attachments::{self, Upload},
    chat::{self, Exchange},
    domain::{MessageText, size},
    error::{AppError, AppResult},
    routes::{
        ClientAddress, Htmx, attachment_download, parse_id, redirect, render,
        stream::{self, Encoding},
        views::{MessageView, history_views, render_replies_ahead},
    },
    session::Session,
    store::Role,
};

#[derive(Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    content: String,
    temporary: Option<String>,
}

/// The composer's form: the message (`content`) and its files (`files`, several allowed),
/// multipart when it has a file input, or form-encoded (a page without one, a script). File
/// inputs left empty are no files. Reading stops at the first file over the size limit, or at
/// one file more than the count allows.
pub struct ComposerForm {
    pub content: String,
    pub files: Vec<Upload>,
    /// The home page's "Temporary chat" (`temporary=true`): only `POST /chats` reads it.
    pub temporary: bool,
}

impl FromRequest<AppState> for ComposerForm {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AppError> {
        let multipart = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            // Without files a form needs no more than the app's usual body limit.
            let request = request.map(|body| {
                axum::body::Body::new(http_body_util::Limited::new(
                    body,
                    state.config.body_limit(),
                ))
            });
            let Form(form) = Form::<MessageForm>::from_request(request, state)
                .await
                .map_err(|e| match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(
                        "That is too large to send. Please shorten it and try again.".into(),
                    ),
                    _ => AppError::BadRequest(e.body_text()),
                })?;
            return Ok(Self {
                content: form.content,
                files: Vec::new(),
                temporary: form.temporary.as_deref().is_some_and(is_checked),
            });
        }
        let mut multipart = Multipart::from_request(request, state)
            .await
            .map_err(|e| AppError::BadRequest(e.body_text()))?;
        let limits = state.config.attachment_limits();
        let too_much = |e: MultipartError| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => AppError::TooLarge(format!(
                "That is more than a message can carry: at most {} files of {} each.",
                limits.max_count,
                size(limits.max_bytes)
            )),
            _ => AppError::BadRequest(format!("The form could not be read: {}", e.body_text())),
        };
        let mut form = Self {
            content: String::new(),
            files: Vec::new(),
            temporary: false,
        };
        while let Some(mut field) = multipart.next_field().await.map_err(too_much)? {
            match field.name() {
                Some("content") => form.content = field.text().await.map_err(too_much)?,
                Some("temporary") => {
                    form.temporary = is_checked(&field.text().await.map_err(too_much)?);
                }
                Some("files") => {
                    let name = field.file_name().unwrap_or_default().to_owned();
                    let mut bytes = Vec::new();
                    while let Some(chunk) = field.chunk().await.map_err(too_much)? {
                        bytes.extend_from_slice(&chunk);
                        if bytes.len() > limits.max_bytes {
                            return Err(attachments::too_large(
                                &attachments::file_name(&name),
                                bytes.len(),
                                limits,
                            ));
                        }
                    }
                    if name.is_empty() && bytes.is_empty() {
                        continue;
                    }
                    form.files.push(Upload {
                        name,
                        bytes: bytes.into(),
                    });
                    attachments::check_count(form.files.len(), limits)?;
                }
                _ => {}
            }
        }
        Ok(form)
    }
}

/// A checkbox's value as browsers send it (`on` without a value attribute), or `true`.
fn is_checked(value: &str) -> bool {
    matches!(value, "true" | "on")
}

#[derive(Serialize)]
struct MessagesFragment {
    messages: Vec<MessageView>,
    display_name: Option<String>,
}

/// Sends a message. htmx gets both bubbles (the reply connected to its stream); browsers a 303
/// to the reply.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    form: ComposerForm,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let text = MessageText::parse_with_files(
        form.content,
        state.config.max_message_bytes,
        !form.files.is_empty(),
    )?;
    let exchange = chat::send(&state, &session, address, chat_id, &text, form.files).await?;
    new_messages(&state, htmx, chat_id, exchange).await
}

/// A message's file, to download as it was sent.
pub async fn attachment(
    State(state): State<AppState>,
    session: Session,
    Path((id, attachment_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let attachment_id = parse_id(&attachment_id, "file")?;
    let file = chat::attachment(&state, &session, chat_id, attachment_id).await?;
    Ok(attachment_download(file))
}

/// A new reply to the latest user message (Regenerate, or Retry after a failure).
pub async fn regenerate(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let exchange = chat::regenerate(&state, &session, address, chat_id).await?;
    new_messages(&state, htmx, chat_id, exchange).await
}

/// Continue: the reply goes on from its text. htmx gets the reply, being written again, to put
/// in place of the finished one; browsers a 303 to it.
pub async fn continue_reply(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path((id, message_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    let exchange =
        chat::continue_reply(&state, &session, address, Some(chat_id), message_id).await?;
    new_messages(&state, htmx, chat_id, exchange).await
}

/// The messages an exchange added, as the page appends them (or a 303 to the reply).
async fn new_messages(
    state: &AppState,
    htmx: bool,
    chat_id: Uuid,
    exchange: Exchange,
) -> AppResult<Response> {
    if !htmx {
        let to = format!("/chats/{chat_id}#m-{}", exchange.reply.id);
        return Ok(redirect(false, &to));
    }
    let shown: Vec<_> = exchange.user.iter().chain([&exchange.reply]).collect();
    render_replies_ahead(&state.templates, shown.iter().copied()).await;
    let messages = shown
        .into_iter()
        .map(|m| {
            let mut view = MessageView::new(&state.templates, m);
            view.can_edit = m.role == Role::User;
            view
        })
        .collect();
    let fragment = MessagesFragment {
        messages,
        display_name: exchange.display_name,
    };
    Ok(render(state, "fragments/messages.html", fragment)?.into_response())
}

/// Edit and resend. htmx gets the whole newest page back (it changed above the new messages);
/// browsers a 303 to the new reply.
pub async fn edit(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path((id, message_id)): Path<(String, String)>,
    Form(form): Form<MessageForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    let text = MessageText::parse(form.content, state.config.max_message_bytes)?;
    let exchange = chat::edit(&state, &session, address, chat_id, message_id, &text).await?;
    if !htmx {
        let to = format!("/chats/{chat_id}#m-{}", exchange.reply.id);
        return Ok(redirect(false, &to));
    }
    newest_page(&state, &session, chat_id, exchange.display_name).await
}

/// The chat's newest page of messages, as `#messages` holds them.
async fn newest_page(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    display_name: Option<String>,
) -> AppResult<Response> {
    let opened = chat::open(state, session, chat_id, None, chat::MESSAGES_PER_PAGE).await?;
    render_replies_ahead(&state.templates, &opened.history.messages).await;
    let fragment = MessagesFragment {
        messages: history_views(&state.templates, &opened.history),
        display_name,
    };
    Ok(render(state, "fragments/messages.html", fragment)?.into_response())
}

/// The edit form of one of the user's messages: htmx puts it in place of the Edit link; a
/// browser is sent to the chat page opened with it (`?edit=`).
pub async fn edit_form(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path((id, message_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    let message = chat::editable(&state, &session, chat_id, message_id).await?;
    if !htmx {
        let to = format!("/chats/{chat_id}?edit={message_id}#m-{message_id}");
        return Ok(redirect(false, &to));
    }
    #[derive(Serialize)]
    struct EditForm {
        m: MessageView,
    }
    let m = MessageView::new(&state.templates, &message);
    Ok(render(&state, "fragments/edit_form.html", EditForm { m })?.into_response())
}

/// `‹ 2/3 ›`: makes a version of a message the chat's path. htmx gets the newest page back (the
/// path below the message changed); browsers a 303 to the message.
pub async fn select_version(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path((id, message_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    chat::select_version(&state, &session, Some(chat_id), message_id).await?;
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}#m-{message_id}")));
    }
    let display_name = state.store.display_name(&session.id).await?;
    newest_page(&state, &session, chat_id, display_name).await
}

/// Stops a reply: the model stops and the text so far is kept as `stopped`.
pub async fn stop(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path((id, message_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    chat::stop(&state, &session, Some(chat_id), message_id).await?;
    if htmx {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(redirect(false, &format!("/chats/{chat_id}#m-{message_id}")))
}

/// The form of a call that waits for approval: `decision` is `allow` or `deny`.
#[derive(serde::Deserialize)]
pub struct DecisionForm {
    decision: String,
}

/// `POST /chats/{id}/messages/{message_id}/tool_calls/{call_id}`: the person allows or denies
/// the call; the reply goes on (htmx: 204, the stream shows the rest; else a 303 back).
pub async fn decide_tool_call(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path((id, message_id, call_id)): Path<(String, String, String)>,
    Form(form): Form<DecisionForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    let allow = match form.decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => {
            return Err(crate::error::AppError::Invalid(
                "Answer a call with allow or deny.".into(),
            ));
        }
    };
    chat::decide_tool_call(&state, &session, Some(chat_id), message_id, &call_id, allow).await?;
    if htmx {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(redirect(false, &format!("/chats/{chat_id}#m-{message_id}")))
}

/// The reply's events as HTML fragments (see `routes::stream`).
pub async fn stream(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path((id, message_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    stream::respond(
        &state,
        &session,
        &headers,
        Encoding::Html,
        Some(chat_id),
        message_id,
    )
    .await
}
