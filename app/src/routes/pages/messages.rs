//! Messages of a chat: send (which starts a reply), edit and resend, regenerate, stop, and the
//! reply's event stream.
use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    AppState,
    chat::{self, Exchange},
    domain::MessageText,
    error::AppResult,
    routes::{
        ClientAddress, Htmx, parse_id, redirect, render,
        stream::{self, Encoding},
        views::{MessageView, history_views},
    },
    session::Session,
    store::Role,
};

#[derive(Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    content: String,
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
    Form(form): Form<MessageForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let text = MessageText::parse(form.content, state.config.max_message_bytes)?;
    let exchange = chat::send(&state, &session, address, chat_id, &text).await?;
    new_messages(&state, htmx, chat_id, exchange)
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
    new_messages(&state, htmx, chat_id, exchange)
}

/// The messages an exchange added, as the page appends them (or a 303 to the reply).
fn new_messages(
    state: &AppState,
    htmx: bool,
    chat_id: Uuid,
    exchange: Exchange,
) -> AppResult<Response> {
    if !htmx {
        let to = format!("/chats/{chat_id}#m-{}", exchange.reply.id);
        return Ok(redirect(false, &to));
    }
    let messages = exchange
        .user
        .iter()
        .chain([&exchange.reply])
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
    let opened = chat::open(&state, &session, chat_id, None, chat::MESSAGES_PER_PAGE).await?;
    let fragment = MessagesFragment {
        messages: history_views(&state.templates, &opened.history),
        display_name: exchange.display_name,
    };
    Ok(render(&state, "fragments/messages.html", fragment)?.into_response())
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
