//! A chat's own settings, and the models the engine serves.
use uuid::Uuid;

use crate::{
    AppState,
    domain::ChatSettings,
    error::{AppError, AppResult},
    lm::ModelInfo,
    session::Session,
    store::chat,
};

/// The models the engine serves; an error when it cannot be asked now.
pub async fn models(state: &AppState) -> AppResult<Vec<ModelInfo>> {
    state
        .lm
        .models()
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))
}

/// The names of the models to choose from; none when the engine cannot be asked now.
pub async fn model_choices(state: &AppState) -> Vec<String> {
    match state.lm.models().await {
        Ok(models) => models.into_iter().map(|m| m.id).collect(),
        Err(_) => Vec::new(),
    }
}

/// Sets a chat's settings, checked: in range, and a model the engine serves (the chat's current
/// model stays acceptable while the engine cannot be asked).
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn update_settings(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    requested: ChatSettings,
) -> AppResult<chat::Model> {
    let chat = super::find(state, session, chat_id).await?;
    let settings = checked(state, chat.model.as_deref(), requested).await?;
    state
        .store
        .update_settings(&session.id, chat_id, &settings)
        .await?
        .ok_or(AppError::NotFound("chat"))
}

/// `requested` as it may be stored. `current_model` is accepted without asking the engine.
pub(super) async fn checked(
    state: &AppState,
    current_model: Option<&str>,
    requested: ChatSettings,
) -> AppResult<ChatSettings> {
    let settings = requested.check(state.config.max_message_bytes)?;
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
