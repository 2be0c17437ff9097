//! Liveness and readiness for load balancers and orchestrators.
use axum::{extract::State, http::StatusCode, response::IntoResponse};

use crate::{AppState, lm::ModelStatus};

/// The process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// The app can do its work: the database answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
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
