//! Liveness and readiness for load balancers and orchestrators.
use axum::{extract::State, response::IntoResponse};

use crate::{AppState, error::AppError, lm::ModelStatus};

/// The process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The app can do its work: the database answers, and its schema is up to date (with
/// `SKIP_MIGRATIONS`, a migration Job may still be applying it).
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    match state.store.pending_migrations().await {
        Ok(0) => Ok("ready"),
        Ok(_) => Err(AppError::Unavailable(
            "Not ready: the database migrations are still pending.".into(),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(AppError::Unavailable(
                "Not ready: the database is not reachable.".into(),
            ))
        }
    }
}

/// The model status indicator (polled by the sidebar): ready, loading, or unreachable.
pub async fn model_status(State(state): State<AppState>) -> impl IntoResponse {
    let status = state.lm.status_cached().await;
    let (class, text) = match status {
        ModelStatus::Ready => ("ready", "Model ready"),
        ModelStatus::Loading => ("loading", "Model loading…"),
        ModelStatus::Unreachable => ("unreachable", "Model unreachable"),
    };
    axum::response::Html(format!(
        "<span class=\"model-status {class}\">{text}</span>"
    ))
}
