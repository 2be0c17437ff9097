//! A chat's settings form (system prompt, temperature, max tokens, model). Blank means "the
//! configured default", so changing the defaults reaches every chat that never chose its own.
use axum::{
    Form,
    extract::{Path, State},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    AppState, chat,
    domain::{ChatSettings, SettingsFields},
    error::AppResult,
    routes::{Htmx, parse_id, redirect, render, views::SettingsView},
    session::Session,
};

#[derive(Serialize)]
struct SettingsFragment {
    settings: SettingsView,
}

/// `POST /chats/{id}/settings`: htmx gets the form back, saying it was saved; browsers a 303.
pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(fields): Form<SettingsFields>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let requested = ChatSettings::from_fields(fields)?;
    let chat = chat::update_settings(&state, &session, chat_id, requested).await?;
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}")));
    }
    let models = chat::model_choices(&state).await;
    let settings = SettingsView::new(&state, &chat, models, true);
    Ok(render(
        &state,
        "fragments/settings.html",
        SettingsFragment { settings },
    )?
    .into_response())
}
