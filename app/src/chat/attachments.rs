//! A message's files, to download as they were sent.
use uuid::Uuid;

use crate::{
    AppState,
    error::{AppError, AppResult},
    session::Session,
    store::attachment,
};

/// One file of one of this session's chats, with its bytes; "not found" for any other.
#[tracing::instrument(skip_all, fields(%chat_id, %attachment_id))]
pub async fn attachment(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    attachment_id: Uuid,
) -> AppResult<attachment::Model> {
    state
        .store
        .find_attachment(&session.id, chat_id, attachment_id)
        .await?
        .ok_or(AppError::NotFound("file"))
}
