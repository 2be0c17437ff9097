//! The one error type of request handlers. A handler returns `AppError`; its response carries an
//! [`ErrorInfo`] extension, and the `error_pages` middleware (routes/mod.rs) turns that into what
//! the client can use: an HTML fragment for htmx, a page for a browser, JSON under `/api`.
use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Unknown, malformed, or another session's id: the same answer for all three, so that
    /// existence is never leaked.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A request that cannot be read at all (malformed JSON, a missing content type).
    #[error("{0}")]
    BadRequest(String),
    /// Input that cannot be accepted as it is (blank, too long in a field, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Conflict(String),
    /// Too many requests of one kind in a short time: 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: std::time::Duration,
    },
    /// A credential that is not valid (an API token).
    #[error("{0}")]
    Unauthorized(String),
    /// A state-changing request from another site (CSRF).
    #[error("{0}")]
    Forbidden(String),
    /// Temporarily unable (shutting down, ...): worth retrying.
    #[error("{0}")]
    Unavailable(String),
    #[error("the database is not reachable right now")]
    DatabaseUnavailable(#[source] sea_orm::DbErr),
    #[error("database error")]
    Database(#[source] sea_orm::DbErr),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// What the error middleware needs to render an error for any kind of client.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub status: StatusCode,
    pub message: String,
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::DatabaseUnavailable(_) | AppError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AppError::Database(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    /// Sorts database errors into "not reachable" (503, worth retrying) and the rest (500).
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::store::is_unreachable(&err) {
            AppError::DatabaseUnavailable(err)
        } else {
            AppError::Database(err)
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        // The cause goes to the log; the user gets a message that does not leak internals.
        let message = match &self {
            AppError::Database(e) => {
                tracing::error!(error = %e, "database error");
                "Something went wrong on our side while saving or loading. Please try again.".into()
            }
            AppError::DatabaseUnavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                "The database is not reachable right now. Nothing was lost; please try again in a moment.".into()
            }
            AppError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                "Something went wrong on our side. Please try again.".into()
            }
            other => {
                let mut text = other.to_string();
                if let Some(first) = text.get(..1) {
                    let upper = first.to_uppercase();
                    text.replace_range(..1, &upper);
                }
                text
            }
        };
        let mut response = (status, message.clone()).into_response();
        if let AppError::Unauthorized(_) = &self {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        if let AppError::RateLimited { retry_after, .. } = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        response
            .extensions_mut()
            .insert(ErrorInfo { status, message });
        response
    }
}

pub type AppResult<T> = Result<T, AppError>;
