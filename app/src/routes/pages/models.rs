//! The Models page: the models the engine serves (the embedded engine's library, or
//! llama-server's list), what each file is, and which are loaded. A chat picks its own in its
//! settings.
use axum::{extract::State, response::Html};
use serde::Serialize;

use crate::{
    AppState, chat,
    error::AppResult,
    routes::{
        render,
        views::{Frame, ModelView},
    },
    session::Session,
};

#[derive(Serialize)]
struct ModelsPage {
    frame: Frame,
    models: Vec<ModelView>,
    /// Why there is no list, when the engine cannot be asked now.
    unavailable: Option<String>,
    /// The embedded engine's library (its folder is not shown: it is the server's business).
    embedded: bool,
}

/// `GET /models`.
pub async fn list(State(state): State<AppState>, session: Session) -> AppResult<Html<String>> {
    let (sidebar, models) = tokio::join!(chat::sidebar(&state, &session), chat::models(&state));
    let (models, unavailable) = match models {
        Ok(models) => (models.iter().map(ModelView::from).collect(), None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let page = ModelsPage {
        frame: sidebar?.into(),
        models,
        unavailable,
        embedded: state.lm.kind() == "embedded",
    };
    render(&state, "models.html", page)
}
