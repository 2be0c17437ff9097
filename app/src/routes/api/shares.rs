//! `/api/v1/chats/{id}/shares` and `/api/v1/shares/{token}`: a chat's shared links.
use axum::{Json, extract::State, http::StatusCode};
use uuid::Uuid;

use super::{ApiPath, ERRORS};
use crate::routes::documents::{ShareJson, Shares};
use crate::{
    AppState, chat,
    error::AppResult,
    routes::{ClientAddress, Problem},
    session::Session,
};

/// Makes a link to a read-only snapshot of the chat as it is now: anyone with the link can read
/// it at `url`, without a session; later messages are not shown.
#[utoipa::path(post, path = "/chats/{id}/shares", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The new link", body = ShareJson),
              (status = "4XX", description = "No such chat in this session, or too many new links", body = Problem, content_type = ERRORS)))]
pub async fn create_share(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<(StatusCode, Json<ShareJson>)> {
    let share = chat::share(&state, &session, address, id).await?;
    Ok((StatusCode::CREATED, Json(share.into())))
}

/// The chat's links, newest first.
#[utoipa::path(get, path = "/chats/{id}/shares", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat's links", body = Shares),
              (status = "4XX", description = "No such chat in this session", body = Problem, content_type = ERRORS)))]
pub async fn list_shares(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<Shares>> {
    let shares = chat::shares(&state, &session, id).await?;
    Ok(Json(Shares {
        shares: shares.into_iter().map(ShareJson::from).collect(),
    }))
}

/// Revokes a link: from now on it is not found, for everyone.
#[utoipa::path(delete, path = "/shares/{token}", tag = "chats", params(("token" = String, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "Revoked"),
              (status = "4XX", description = "No such link of this session", body = Problem, content_type = ERRORS)))]
pub async fn revoke_share(
    State(state): State<AppState>,
    session: Session,
    ApiPath(token): ApiPath<String>,
) -> AppResult<StatusCode> {
    chat::revoke_share(&state, &session, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
