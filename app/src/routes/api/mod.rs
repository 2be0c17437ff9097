//! The JSON API (`/api/v1`) for scripts and other programs: the same chats, the same session
//! scoping and the same use cases (`crate::chat`) as the pages. Identity is the session cookie
//! or `Authorization: Bearer <token>` from `POST /api/v1/tokens`. Errors are RFC 9457 problem
//! details (written by the error middleware for every `/api/` response). The OpenAPI 3.1
//! document is generated from the annotations here and served at `/api/openapi.json`.
mod account;
mod chats;
mod devices;
mod folders;
mod messages;
mod models;
mod shares;
mod tools;

use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, State},
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};
use serde::Serialize;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    AppState,
    error::{AppError, AppResult},
    session,
};

/// Most items one list request returns.
const MAX_PAGE: u64 = 100;
const ERRORS: &str = "application/problem+json";

/// A page size asked for, within 1..=[`MAX_PAGE`].
fn page_size(limit: Option<u64>, default: u64) -> AppResult<u64> {
    match limit.unwrap_or(default) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(AppError::Invalid(format!(
            "limit must be between 1 and {MAX_PAGE}."
        ))),
    }
}

/// An error, as RFC 9457 problem details (`application/problem+json`).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    kind: String,
    #[schema(example = "Not Found")]
    title: String,
    #[schema(example = 404)]
    status: u16,
    /// What went wrong, in plain words.
    detail: String,
}

// ---- extractors whose rejections are problem details ------------------------------------------

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(pub T);

impl From<axum::extract::rejection::JsonRejection> for AppError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        let text = format!("The request body is not valid: {}", r.body_text());
        // Well-formed JSON of the wrong shape is 422; anything unreadable is 400.
        if r.status() == StatusCode::UNPROCESSABLE_ENTITY {
            AppError::Invalid(text)
        } else {
            AppError::BadRequest(text)
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for AppError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        AppError::Invalid(format!("The query is not valid: {}", r.body_text()))
    }
}

/// A malformed id in the path is "not found", like an unknown one (as on the pages).
impl From<axum::extract::rejection::PathRejection> for AppError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        AppError::NotFound("resource")
    }
}

// ---- the document and the router ---------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(title = "Chat API", version = "1.0.0",
         description = "Chats with a language model served by llama.cpp. Every request acts for one session: the browser's cookie, or a bearer token from POST /api/v1/tokens. With accounts on (AUTH_MODE=oidc or header) that session is the signed-in person's, every request needs a signed-in browser or a token made by one (else 401), and admins may use the operator's endpoints and /users."),
    modifiers(&Security),
    tags((name = "chats"), (name = "messages"), (name = "models"), (name = "tools"), (name = "tokens"), (name = "accounts"))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("ADMIN_TOKEN: the operator's secret"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "operator_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::operator::COOKIE))),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(session::COOKIE_NAME))),
        );
        // Any operation may meet a token that is not valid, or whose device was signed out.
        let unauthorized = utoipa::openapi::ResponseBuilder::new()
            .description("The bearer token is not valid, or its device was signed out")
            .content(
                ERRORS,
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                if !responses.contains_key("401") && !responses.contains_key("4XX") {
                    responses.insert("401".into(), unauthorized.clone().into());
                }
            }
        }
    }
}

/// The `/api/v1` routes and the OpenAPI document that describes them. Imports may be as large
/// as `import_body_limit`, sending a message (with files) `message_body_limit`; other requests
/// have the app's body limit.
pub fn router(
    import_body_limit: usize,
    message_body_limit: usize,
) -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(chats::list_chats, chats::create_chat))
        .routes(routes!(
            chats::get_chat,
            chats::rename_chat,
            chats::delete_chat
        ))
        .routes(routes!(messages::edit_message))
        .routes(routes!(messages::continue_message))
        .routes(routes!(messages::select_version))
        .routes(routes!(messages::download_attachment))
        .routes(routes!(chats::put_settings))
        .routes(routes!(chats::get_context))
        .routes(routes!(shares::create_share, shares::list_shares))
        .routes(routes!(shares::revoke_share))
        .routes(routes!(folders::list_folders, folders::create_folder))
        .routes(routes!(folders::rename_folder, folders::delete_folder))
        .routes(routes!(folders::put_pin))
        .routes(routes!(folders::put_folder))
        .routes(routes!(devices::list_devices))
        .routes(routes!(devices::sign_out_device))
        .routes(routes!(devices::create_link))
        .routes(routes!(devices::redeem_link))
        .routes(routes!(chats::export_chat))
        .routes(routes!(chats::search))
        .routes(routes!(models::list_models, models::download_model))
        .routes(routes!(models::hub_files))
        .routes(routes!(models::remove_model))
        .routes(routes!(models::set_default_model))
        .routes(routes!(tools::list_tools))
        .routes(routes!(messages::stream_message))
        .routes(routes!(messages::stop_message))
        .routes(routes!(messages::decide_tool_call))
        .routes(routes!(messages::create_token))
        .routes(routes!(account::get_account))
        .routes(routes!(account::list_users))
        .routes(routes!(account::disable_user))
        .routes(routes!(account::enable_user));
    // An export may be larger than a message.
    let import = OpenApiRouter::new()
        .routes(routes!(chats::import_chat))
        .layer(axum::extract::DefaultBodyLimit::max(import_body_limit));
    // A message may carry files (base64).
    let send = OpenApiRouter::new()
        .routes(routes!(messages::list_messages, messages::send_message))
        .layer(axum::extract::DefaultBodyLimit::max(message_body_limit));
    let v1 = v1.merge(import).merge(send);
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts()
}

/// The interactive docs: Swagger UI from `static/api-docs` (vendored; no CDN).
pub async fn docs(State(state): State<AppState>) -> AppResult<Html<String>> {
    super::render(&state, "api_docs.html", ())
}

/// Whether the response is for the API (problem details, not pages).
pub fn is_api_path(path: &str) -> bool {
    path.starts_with("/api/")
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(ERRORS),
        );
        response
    }
}

impl Problem {
    pub fn new(status: StatusCode, detail: String) -> Self {
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail,
        }
    }
}
