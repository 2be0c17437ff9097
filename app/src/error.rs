//! The one error type of the use cases and request handlers. Turned into a response, an
//! `AppError` only converts: a status, the headers that go with it (`Retry-After`,
//! `WWW-Authenticate`) and itself in the response's extensions. The error middleware
//! (`routes::errors`, as in axum's error-handling example) logs it once and writes the body
//! once, for the kind of client asking: an HTML fragment for htmx, a page, problem details.
use std::sync::Arc;

use axum::{
    http::{HeaderValue, StatusCode, header},
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
    /// A file of a kind that cannot be used (an attachment that is neither text, PDF nor an
    /// image a model can see): 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Conflict(String),
    /// Something that existed and is no more (a used or expired link code): 410.
    #[error("{0}")]
    Gone(String),
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

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Gone(_) => StatusCode::GONE,
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
        if is_unreachable(&err) {
            AppError::DatabaseUnavailable(err)
        } else {
            AppError::Database(err)
        }
    }
}

impl AppError {
    /// What the person reads: the error itself, or for failures on our side a message that
    /// does not leak internals.
    pub fn user_message(&self) -> String {
        match self {
            AppError::Database(_) => {
                "Something went wrong on our side while saving or loading. Please try again.".into()
            }
            AppError::DatabaseUnavailable(_) => {
                "The database is not reachable right now. Nothing was lost; please try again in a moment.".into()
            }
            AppError::Internal(_) => "Something went wrong on our side. Please try again.".into(),
            other => {
                let mut text = other.to_string();
                if let Some(first) = text.get(..1) {
                    let upper = first.to_uppercase();
                    text.replace_range(..1, &upper);
                }
                text
            }
        }
    }

    /// Logs the cause of a failure on our side; what a client got wrong is not logged.
    pub fn log(&self) {
        match self {
            AppError::Database(e) => tracing::error!(error = %e, "database error"),
            AppError::DatabaseUnavailable(e) => tracing::warn!(error = %e, "database unavailable"),
            AppError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            _ => {}
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        let headers = response.headers_mut();
        match &self {
            AppError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::RateLimited { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            _ => {}
        }
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// An error with its causes, each once: reqwest's own text hides the reasons beneath it (a
/// resolver's refusal, a redirect policy's, a broken connection's).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Whether a database error means "not reachable right now" (the server is down, restarting, or
/// the connection broke): worth retrying, and a 503 for the user, not a 500.
pub fn is_unreachable(error: &sea_orm::DbErr) -> bool {
    use sea_orm::{DbErr, RuntimeErr, sqlx::Error};
    match error {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match &**e {
                Error::Io(_)
                | Error::Tls(_)
                | Error::Protocol(_)
                | Error::PoolTimedOut
                | Error::PoolClosed
                | Error::WorkerCrashed => true,
                // PostgreSQL's connection exceptions (08…) and "shutting down" (57P01–57P03).
                Error::Database(db) => db
                    .code()
                    .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
                _ => false,
            }
        }
        _ => false,
    }
}
