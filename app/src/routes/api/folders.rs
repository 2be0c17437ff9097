//! `/api/v1/folders` and a chat's pin and folder.
use axum::{Json, extract::State, http::StatusCode};
use uuid::Uuid;

use super::{ApiJson, ApiPath, ERRORS};
use crate::routes::documents::{ChatJson, FolderBody, FolderJson, Folders, MoveToFolder, Pin};
use crate::{
    AppState, chat, domain::FolderName, error::AppResult, routes::Problem, session::Session,
};

/// This session's folders, by name.
#[utoipa::path(get, path = "/folders", tag = "chats", security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The folders", body = Folders)))]
pub async fn list_folders(
    State(state): State<AppState>,
    session: Session,
) -> AppResult<Json<Folders>> {
    let folders = chat::folders(&state, &session).await?;
    Ok(Json(Folders {
        folders: folders.into_iter().map(FolderJson::from).collect(),
    }))
}

/// Makes a folder (at most 100 a session).
#[utoipa::path(post, path = "/folders", tag = "chats", request_body = FolderBody, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The new folder", body = FolderJson),
              (status = "4XX", description = "A blank or too long name, or too many folders (409)", body = Problem, content_type = ERRORS)))]
pub async fn create_folder(
    State(state): State<AppState>,
    session: Session,
    ApiJson(body): ApiJson<FolderBody>,
) -> AppResult<(StatusCode, Json<FolderJson>)> {
    let name = FolderName::parse(&body.name)?;
    let folder = chat::create_folder(&state, &session, &name).await?;
    Ok((StatusCode::CREATED, Json(folder.into())))
}

/// Renames a folder.
#[utoipa::path(patch, path = "/folders/{id}", tag = "chats", params(("id" = Uuid, Path)), request_body = FolderBody, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The folder", body = FolderJson),
              (status = "4XX", description = "No such folder, or a blank or too long name", body = Problem, content_type = ERRORS)))]
pub async fn rename_folder(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<FolderBody>,
) -> AppResult<Json<FolderJson>> {
    let name = FolderName::parse(&body.name)?;
    Ok(Json(
        chat::rename_folder(&state, &session, id, &name)
            .await?
            .into(),
    ))
}

/// Deletes a folder; its chats stay, in no folder.
#[utoipa::path(delete, path = "/folders/{id}", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "Deleted"),
              (status = "4XX", description = "No such folder", body = Problem, content_type = ERRORS)))]
pub async fn delete_folder(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<StatusCode> {
    chat::delete_folder(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Pins a chat to the top of the sidebar, or unpins it.
#[utoipa::path(put, path = "/chats/{id}/pin", tag = "chats", params(("id" = Uuid, Path)), request_body = Pin, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat", body = ChatJson),
              (status = "4XX", description = "No such chat", body = Problem, content_type = ERRORS)))]
pub async fn put_pin(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Pin>,
) -> AppResult<Json<ChatJson>> {
    Ok(Json(
        chat::pin(&state, &session, id, body.pinned).await?.into(),
    ))
}

/// Moves a chat into a folder, or out of any (`folder_id: null`).
#[utoipa::path(put, path = "/chats/{id}/folder", tag = "chats", params(("id" = Uuid, Path)), request_body = MoveToFolder, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat", body = ChatJson),
              (status = "4XX", description = "No such chat or folder", body = Problem, content_type = ERRORS)))]
pub async fn put_folder(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<MoveToFolder>,
) -> AppResult<Json<ChatJson>> {
    let chat = chat::move_to_folder(&state, &session, id, body.folder_id).await?;
    Ok(Json(chat.into()))
}
