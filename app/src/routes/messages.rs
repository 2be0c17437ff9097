//! Messages of a chat: sending one.
use axum::{
    Form,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    error::{AppError, AppResult},
    session::Session,
};

use super::{Htmx, chats::MessageView, parse_id, redirect, render, validate_message};

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

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<MessageForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    validate_message(&form.content, state.config.max_message_bytes)?;
    let message = state
        .store
        .add_user_message(&session.id, chat_id, &form.content)
        .await?
        .ok_or(AppError::NotFound("chat"))?;
    if htmx {
        let display_name = state.store.display_name(&session.id).await?;
        let fragment = MessagesFragment { messages: vec![MessageView::from_model(&message)], display_name };
        return Ok(render(&state, "fragments/messages.html", fragment)?.into_response());
    }
    Ok(redirect(false, &format!("/chats/{chat_id}#m-{}", message.id)))
}
