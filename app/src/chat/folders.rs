//! Pins and folders: a chat pinned to the top of the sidebar, and folders that group chats
//! there (create, rename, delete, move a chat into one or out).
use uuid::Uuid;

use crate::{
    AppState,
    domain::{FolderName, MAX_FOLDERS},
    error::{AppError, AppResult},
    session::Session,
    store::{Moved, chat, folder},
};

/// The session's folders, by name.
#[tracing::instrument(skip_all)]
pub async fn folders(state: &AppState, session: &Session) -> AppResult<Vec<folder::Model>> {
    Ok(state.store.list_folders(&session.id).await?)
}

#[tracing::instrument(skip_all)]
pub async fn create_folder(
    state: &AppState,
    session: &Session,
    name: &FolderName,
) -> AppResult<folder::Model> {
    state
        .store
        .create_folder(&session.id, name.as_str(), MAX_FOLDERS)
        .await?
        .ok_or_else(|| {
            AppError::Conflict(format!(
                "You have {MAX_FOLDERS} folders, the most there can be. Delete one to make another."
            ))
        })
}

#[tracing::instrument(skip_all, fields(%folder_id))]
pub async fn rename_folder(
    state: &AppState,
    session: &Session,
    folder_id: Uuid,
    name: &FolderName,
) -> AppResult<folder::Model> {
    state
        .store
        .rename_folder(&session.id, folder_id, name.as_str())
        .await?
        .ok_or(AppError::NotFound("folder"))
}

/// Deletes a folder; its chats stay, in no folder.
#[tracing::instrument(skip_all, fields(%folder_id))]
pub async fn delete_folder(state: &AppState, session: &Session, folder_id: Uuid) -> AppResult<()> {
    match state.store.delete_folder(&session.id, folder_id).await? {
        true => Ok(()),
        false => Err(AppError::NotFound("folder")),
    }
}

/// Pins a chat to the top of the sidebar, or unpins it.
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn pin(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    pinned: bool,
) -> AppResult<chat::Model> {
    state
        .store
        .set_pinned(&session.id, chat_id, pinned)
        .await?
        .ok_or(AppError::NotFound("chat"))
}

/// Moves a chat into one of the session's folders, or out of any (`None`).
#[tracing::instrument(skip_all, fields(%chat_id))]
pub async fn move_to_folder(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    folder_id: Option<Uuid>,
) -> AppResult<chat::Model> {
    match state
        .store
        .move_chat(&session.id, chat_id, folder_id)
        .await?
    {
        Moved::Chat(chat) => Ok(*chat),
        Moved::NoSuchChat => Err(AppError::NotFound("chat")),
        Moved::NoSuchFolder => Err(AppError::NotFound("folder")),
    }
}
