//! A chat's settings form (system prompt, temperature, max tokens, model). Blank means "the
//! configured default", so changing the defaults reaches every chat that never chose its own.
use axum::{
    Form,
    extract::{Path, State},
    response::{Html, IntoResponse, Response},
};
use serde::Serialize;

use crate::{
    AppState, chat,
    domain::{ChatSettings, SettingsFields},
    error::AppResult,
    routes::{
        Htmx, parse_id, redirect, render,
        views::{ContextFragment, ContextView, SettingsView},
    },
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
    // Another model or reply length changes what fits: the gauge comes along, out of band.
    let (models, context) = tokio::join!(
        chat::model_choices(&state),
        chat::context(&state, &session, chat_id)
    );
    let settings = SettingsView::new(&state, &chat, models, true);
    let Html(mut html) = render(
        &state,
        "fragments/settings.html",
        SettingsFragment { settings },
    )?;
    let gauge = ContextFragment {
        g: ContextView::new(chat_id, &context?),
        oob: true,
    };
    html.push_str(&render(&state, "fragments/context_gauge.html", gauge)?.0);
    Ok(Html(html).into_response())
}
