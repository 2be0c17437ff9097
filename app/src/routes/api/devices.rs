//! `/api/v1/devices`: the browsers of this session, signing one out, and link codes.
use axum::{Json, extract::State, http::StatusCode};
use uuid::Uuid;

use super::{ApiPath, ERRORS};
use crate::routes::documents::{DeviceJson, DeviceLinkJson, Devices, Token};
use crate::{
    AppState, chat,
    error::AppResult,
    routes::{ClientAddress, Problem},
    session::{self, Session},
};

/// The browsers that use this session's chats (API tokens are not devices).
#[utoipa::path(get, path = "/devices", tag = "tokens", security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The devices", body = Devices)))]
pub async fn list_devices(
    State(state): State<AppState>,
    session: Session,
) -> AppResult<Json<Devices>> {
    let devices = chat::devices(&state, &session).await?;
    Ok(Json(Devices {
        devices: devices.into_iter().map(DeviceJson::from).collect(),
    }))
}

/// Signs a browser out: its cookie stops working at once.
#[utoipa::path(delete, path = "/devices/{id}", tag = "tokens", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "Signed out"),
              (status = "4XX", description = "No such device signed in to this session", body = Problem, content_type = ERRORS)))]
pub async fn sign_out_device(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<StatusCode> {
    chat::sign_out(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A one-time code, valid for 10 minutes, that links another browser (at `url`) or API client
/// (`POST /api/v1/links/{code}`) to this session.
#[utoipa::path(post, path = "/devices/links", tag = "tokens", security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The code, shown this once", body = DeviceLinkJson),
              (status = 429, description = "Too many codes in a short time", body = Problem, content_type = ERRORS)))]
pub async fn create_link(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
) -> AppResult<(StatusCode, Json<DeviceLinkJson>)> {
    let link = chat::new_link(&state, &session, address).await?;
    Ok((
        StatusCode::CREATED,
        Json(DeviceLinkJson {
            url: format!("/link/{}", link.code_in_url),
            code: link.code,
            expires_at: link.expires_at,
        }),
    ))
}

/// Uses a link code: answers an API token for the session that made it, with a device of its
/// own there (listed by `GET /devices`, ended by signing it out). The sender's own device in its
/// old session is signed out, as a browser's is.
#[utoipa::path(post, path = "/links/{code}", tag = "tokens", params(("code" = String, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "A token for the linked session", body = Token),
              (status = "4XX", description = "An unknown, used (410) or expired (410) code, or too many tries (429)", body = Problem, content_type = ERRORS)))]
pub async fn redeem_link(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiPath(code): ApiPath<String>,
) -> AppResult<Json<Token>> {
    let joined = chat::redeem_link(&state, &session, address, &code).await?;
    Ok(Json(Token {
        // A device of its own in the joined session, listed (and signed out) on its `/devices`
        // from its first use.
        token: session::issue_token(&state.sessions.key, &joined, uuid::Uuid::now_v7()),
        token_type: "Bearer".into(),
    }))
}
