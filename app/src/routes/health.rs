//! Liveness and readiness for load balancers and orchestrators.
use std::time::Duration;

use axum::{extract::State, response::IntoResponse};

use crate::{AppState, error::AppError, lm::ModelStatus};

/// The process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The app can do its work: the database answers, and its schema is up to date (with
/// `SKIP_MIGRATIONS`, a migration Job may still be applying it); on PostgreSQL, it has started
/// listening for the replies other replicas write (`live`). The model is not part of it: pages
/// and history work without one, and a model pool that is down must not take every replica out
/// of the balancer. The body says what the model can do all the same, for whoever looks.
pub async fn readyz(State(state): State<AppState>) -> Result<String, AppError> {
    if !state.live.has_listened() {
        return Err(AppError::Unavailable(
            "Not ready: not yet listening for replies written by other replicas.".into(),
        ));
    }
    match state.store.pending_migrations().await {
        Ok(0) => {}
        Ok(_) => {
            return Err(AppError::Unavailable(
                "Not ready: the database migrations are still pending.".into(),
            ));
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            return Err(AppError::Unavailable(
                "Not ready: the database is not reachable.".into(),
            ));
        }
    }
    // Kept and refreshed in the background once known: only the first ask waits for the
    // model server, and a probe does not wait for that.
    let model = match tokio::time::timeout(Duration::from_millis(300), state.lm.status()).await {
        Ok(ModelStatus::Ready) => "ready".to_owned(),
        Ok(ModelStatus::Loading(None)) => "loading".to_owned(),
        Ok(ModelStatus::Loading(Some(model))) => format!("loading {model}"),
        Ok(ModelStatus::Unreachable) => "unreachable".to_owned(),
        Ok(ModelStatus::Downloading(Some(percent))) => format!("downloading, {percent}%"),
        Ok(ModelStatus::Downloading(None)) => "downloading".to_owned(),
        Ok(ModelStatus::Failed(message)) => format!("failed: {message}"),
        Err(_) => "not known yet".to_owned(),
    };
    Ok(format!("ready\nmodel: {model}\n"))
}

/// The model status indicator (polled by the sidebar): ready, loading, downloading with its
/// percentage, unreachable, or an error that says what to set. While the model is on its way
/// the fragment asks again every second, so the percentage moves.
pub async fn model_status(State(state): State<AppState>) -> impl IntoResponse {
    let status = state.lm.status().await;
    let (class, text) = match &status {
        ModelStatus::Ready => ("ready", "Model ready".to_owned()),
        ModelStatus::Loading(None) => ("loading", "Model loading…".to_owned()),
        ModelStatus::Loading(Some(model)) => ("loading", format!("Loading {model}…")),
        ModelStatus::Unreachable => ("unreachable", "Model unreachable".to_owned()),
        ModelStatus::Downloading(Some(percent)) => {
            ("loading", format!("Downloading the model: {percent}%"))
        }
        ModelStatus::Downloading(None) => ("loading", "Downloading the model…".to_owned()),
        ModelStatus::Failed(message) => ("unreachable", format!("Model error: {message}")),
    };
    let again = match status {
        ModelStatus::Loading(_) | ModelStatus::Downloading(_) => {
            " hx-get=\"/model/status\" hx-trigger=\"load delay:1s\" hx-target=\"closest .model-status-slot\""
        }
        _ => "",
    };
    axum::response::Html(format!(
        "<span class=\"model-status {class}\"{again}>{}</span>",
        crate::render::escape_html(&text)
    ))
}
