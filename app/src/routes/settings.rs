//! A chat's own settings (system prompt, temperature, max tokens, model) and the models the
//! server offers. Blank means "the configured default", so changing the defaults reaches every
//! chat that never chose its own.
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
    store::{ChatSettings, chat},
};

use super::{Htmx, chat_of_session, parse_id, redirect, reject_nul, render, size};

/// Largest `max_tokens` a chat may ask for.
pub const MAX_REPLY_TOKENS: i32 = 65_536;
/// Highest temperature a chat may ask for.
pub const MAX_TEMPERATURE: f32 = 2.0;

/// The settings form as the chat page shows it.
#[derive(Serialize)]
pub struct SettingsView {
    chat_id: String,
    system_prompt: String,
    temperature: String,
    max_tokens: String,
    model: String,
    default_system_prompt: String,
    default_temperature: f32,
    default_max_tokens: u32,
    max_reply_tokens: i32,
    /// The models to choose from; the choice is offered only when there is more than one.
    models: Vec<String>,
    /// Just saved (the form says so).
    saved: bool,
    /// The chat has settings of its own (the summary says so).
    customised: bool,
}

impl SettingsView {
    pub fn new(state: &AppState, chat: &chat::Model, models: Vec<String>, saved: bool) -> Self {
        let config = &state.config;
        Self {
            chat_id: chat.id.to_string(),
            system_prompt: chat.system_prompt.clone().unwrap_or_default(),
            temperature: chat.temperature.map(|t| t.to_string()).unwrap_or_default(),
            max_tokens: chat.max_tokens.map(|n| n.to_string()).unwrap_or_default(),
            model: chat.model.clone().unwrap_or_default(),
            default_system_prompt: config.system_prompt.clone(),
            default_temperature: config.lm_temperature,
            default_max_tokens: config.lm_max_tokens,
            max_reply_tokens: MAX_REPLY_TOKENS,
            models,
            saved,
            customised: chat.system_prompt.is_some()
                || chat.temperature.is_some()
                || chat.max_tokens.is_some()
                || chat.model.is_some(),
        }
    }
}

#[derive(Serialize)]
struct SettingsFragment {
    settings: SettingsView,
}

/// The names of the models the server serves; none when it cannot be asked now.
pub async fn model_choices(state: &AppState) -> Vec<String> {
    match state.lm.models().await {
        Ok(models) => models.into_iter().map(|m| m.id).collect(),
        Err(_) => Vec::new(),
    }
}

/// Checks settings a user asked for. A model must be one the server serves (`current_model`, the
/// chat's model now, stays acceptable while the server cannot be asked).
pub async fn validate(
    state: &AppState,
    current_model: Option<&str>,
    mut settings: ChatSettings,
) -> AppResult<ChatSettings> {
    settings.system_prompt = settings
        .system_prompt
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().to_owned());
    if let Some(prompt) = &settings.system_prompt {
        reject_nul(prompt)?;
        if prompt.len() > state.config.max_message_bytes {
            return Err(AppError::TooLarge(format!(
                "That system prompt is {}; the limit is {}. Please shorten it.",
                size(prompt.len()),
                size(state.config.max_message_bytes)
            )));
        }
    }
    if let Some(t) = settings.temperature
        && !(t.is_finite() && (0.0..=MAX_TEMPERATURE).contains(&t))
    {
        return Err(AppError::Invalid(format!(
            "The temperature must be a number from 0 to {MAX_TEMPERATURE}."
        )));
    }
    if let Some(n) = settings.max_tokens
        && !(1..=MAX_REPLY_TOKENS).contains(&n)
    {
        return Err(AppError::Invalid(format!(
            "Max tokens must be a whole number from 1 to {MAX_REPLY_TOKENS}."
        )));
    }
    settings.model = settings.model.filter(|m| !m.trim().is_empty());
    if let Some(model) = &settings.model
        && current_model != Some(model.as_str())
    {
        let models = state.lm.models().await.map_err(|e| {
            AppError::Unavailable(format!("The model cannot be changed right now: {e}"))
        })?;
        if !models.iter().any(|m| &m.id == model) {
            return Err(AppError::Invalid(format!(
                "The model server does not serve “{model}”. Pick one of: {}.",
                models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(settings)
}

/// The settings form's fields; blank means "the default".
#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    system_prompt: String,
    #[serde(default)]
    temperature: String,
    #[serde(default)]
    max_tokens: String,
    #[serde(default)]
    model: String,
}

impl SettingsForm {
    fn parse(self) -> AppResult<ChatSettings> {
        let blank_to_none = |s: String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
        let temperature = blank_to_none(self.temperature)
            .map(|t| {
                t.replace(',', ".").parse::<f32>().map_err(|_| {
                    AppError::Invalid(format!(
                        "The temperature must be a number from 0 to {MAX_TEMPERATURE}, not “{t}”."
                    ))
                })
            })
            .transpose()?;
        let max_tokens = blank_to_none(self.max_tokens)
            .map(|n| {
                n.parse::<i32>().map_err(|_| {
                    AppError::Invalid(format!(
                        "Max tokens must be a whole number from 1 to {MAX_REPLY_TOKENS}, not “{n}”."
                    ))
                })
            })
            .transpose()?;
        Ok(ChatSettings {
            system_prompt: Some(self.system_prompt),
            temperature,
            max_tokens,
            model: blank_to_none(self.model),
        })
    }
}

/// `POST /chats/{id}/settings`: htmx gets the form back, saying it was saved; browsers a 303.
pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<SettingsForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let chat = chat_of_session(&state, &session, chat_id).await?;
    let settings = validate(&state, chat.model.as_deref(), form.parse()?).await?;
    let chat = state
        .store
        .update_settings(&session.id, chat_id, &settings)
        .await?
        .ok_or(AppError::NotFound("chat"))?;
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}")));
    }
    let models = model_choices(&state).await;
    let view = SettingsView::new(&state, &chat, models, true);
    Ok(render(
        &state,
        "fragments/settings.html",
        SettingsFragment { settings: view },
    )?
    .into_response())
}
