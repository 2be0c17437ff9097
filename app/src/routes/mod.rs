//! The HTTP layer: `router`, the one place that assembles the routes and their middleware; the
//! pages (`pages`, one module per resource) and the JSON API (`api`), both thin adapters over
//! the use cases (`crate::chat`); the reply stream's encoders (`stream`); what the templates
//! are given (`views`). Nothing outside this module speaks HTTP. See ARCHITECTURE.md.
mod api;
mod documents;
mod health;
mod pages;
mod security;
mod steps;
mod stream;
mod views;

pub use api::Problem;
pub use security::ClientAddress;

use axum::{
    Router,
    extract::{DefaultBodyLimit, FromRequestParts, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    services::ServeDir,
    set_header::SetResponseHeaderLayer,
    trace::TraceLayer,
};
use uuid::Uuid;

use crate::{AppState, chat::Export, error::AppError, session};
use pages::{
    account, admin, chats, devices, folders, messages, models, profile, search, settings, shares,
    tools, transfer,
};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// `routes` behind the session layer: anonymous sessions, or with accounts on, the account
/// layer (every request a signed-in person's).
fn with_sessions(routes: Router<AppState>, state: &AppState) -> Router<AppState> {
    if state.accounts.enabled() {
        routes.layer(middleware::from_fn_with_state(
            state.clone(),
            crate::accounts::account_layer,
        ))
    } else {
        routes.layer(middleware::from_fn_with_state(
            state.sessions.clone(),
            session::session_layer,
        ))
    }
}

pub fn router(state: AppState) -> Router {
    // Sending a message (or starting a chat with one) may carry files.
    let with_files = DefaultBodyLimit::max(state.config.message_body_limit());
    let pages = Router::new()
        .route("/", get(chats::home))
        .route(
            "/chats",
            get(chats::list).post(chats::create).layer(with_files),
        )
        .route("/chats/{id}", get(chats::show))
        .route("/chats/{id}/rename", post(chats::rename))
        .route(
            "/chats/{id}/delete",
            get(chats::confirm_delete).post(chats::delete),
        )
        .route(
            "/chats/{id}/messages",
            post(messages::create).layer(with_files),
        )
        .route(
            "/chats/{id}/messages/{message_id}/stream",
            get(messages::stream),
        )
        .route(
            "/chats/{id}/messages/{message_id}/stop",
            post(messages::stop),
        )
        .route(
            "/chats/{id}/messages/{message_id}/tool_calls/{call_id}",
            post(messages::decide_tool_call),
        )
        .route("/chats/{id}/regenerate", post(messages::regenerate))
        .route(
            "/chats/{id}/messages/{message_id}/continue",
            post(messages::continue_reply),
        )
        .route(
            "/chats/{id}/messages/{message_id}/select",
            post(messages::select_version),
        )
        .route(
            "/chats/{id}/messages/{message_id}/edit",
            get(messages::edit_form).post(messages::edit),
        )
        .route("/chats/{id}/settings", post(settings::update))
        .route("/chats/{id}/title", get(chats::title))
        .route("/chats/{id}/context", get(chats::context))
        .route(
            "/chats/{id}/attachments/{attachment_id}",
            get(messages::attachment),
        )
        .route("/devices", get(devices::list))
        .route("/models", get(models::list))
        .route("/models/events", get(models::events))
        .route("/tools", get(tools::list))
        .route("/admin", get(admin::show).post(admin::sign_in))
        .route("/admin/signout", post(admin::sign_out))
        .route("/admin/models", post(admin::download))
        .route("/admin/models/{id}/delete", post(admin::remove))
        .route("/admin/models/{id}/default", post(admin::make_default))
        .route("/devices/link", post(devices::create_link))
        .route("/devices/{id}/signout", post(devices::sign_out))
        .route("/link", get(devices::enter_code))
        .route("/link/{code}", get(devices::confirm).post(devices::redeem))
        .route("/chats/{id}/pin", post(folders::pin))
        .route("/chats/{id}/folder", post(folders::move_chat))
        .route("/folders", post(folders::create))
        .route("/folders/{id}/rename", post(folders::rename))
        .route("/folders/{id}/delete", post(folders::delete))
        .route("/chats/{id}/share", post(shares::create))
        .route("/chats/{id}/share/revoke", post(shares::revoke))
        .route("/chats/{id}/export", get(transfer::export))
        .route(
            "/chats/import",
            post(transfer::import).layer(DefaultBodyLimit::max(state.config.import_body_limit())),
        )
        .route("/search", get(search::page))
        .route("/profile", post(profile::update))
        .route("/logout", post(account::logout))
        .route("/logout/everywhere", post(account::logout_everywhere))
        .route(
            "/account/bring",
            get(account::bring_offer).post(account::bring),
        )
        .route("/account/bring/skip", post(account::skip_bring))
        .route("/admin/users/{id}/disable", post(admin::disable_user))
        .route("/admin/users/{id}/enable", post(admin::enable_user));
    let pages = with_sessions(pages, &state);

    let (api_v1, openapi) = api::router(
        state.config.import_body_limit(),
        state.config.message_body_limit(),
    );
    let openapi = std::sync::Arc::new(openapi);
    let api = with_sessions(api_v1, &state)
        .route(
            "/api/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { axum::Json((*openapi).clone()) }
            }),
        )
        .route("/api/docs", get(api::docs));

    let static_files = match &state.config.static_dir {
        Some(dir) => Router::new().nest_service("/static", ServeDir::new(dir)),
        None => Router::new().route("/static/{*path}", get(crate::assets::serve_static)),
    };
    let static_files = static_files.layer(SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    ));

    let router = Router::new()
        .merge(pages)
        .merge(api)
        .merge(static_files)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/model/status", get(health::model_status))
        // A shared link needs no session, and gets none.
        .route("/s/{token}", get(shares::show))
        // Whoever signs in has no session yet.
        .route("/login", get(account::login))
        .route("/auth/callback", get(account::callback))
        .route("/signed-out", get(account::signed_out))
        .fallback(not_found)
        .layer(middleware::from_fn(security::same_origin_only))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security::limit_token_guesses,
        ));
    let mut router = router
        .layer(DefaultBodyLimit::max(state.config.body_limit()))
        .layer(middleware::from_fn_with_state(state.clone(), errors))
        .layer(CatchPanicLayer::new());
    if state.config.metrics_addr.is_some() {
        // Only then: without a recorder the labels would be built for nothing.
        router = router.layer(middleware::from_fn(count_requests));
    }
    let mut router = router
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let matched = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned());
                let request_id = request
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let span = tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = matched.as_deref().unwrap_or(request.uri().path()),
                    request_id,
                );
                // Exporting traces, a caller's `traceparent` makes this request part of its trace.
                crate::telemetry::follow_traceparent(&span, request.headers());
                span
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid));
    // Outermost, so that error pages and even a caught panic carry them.
    for (name, value) in security::security_headers() {
        router = router.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    router.with_state(state)
}

/// `http_requests_total` and `http_request_duration_seconds` for every response.
async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    crate::metrics::request(method.as_str(), &route, status, started.elapsed());
    response
}

async fn not_found() -> AppError {
    AppError::NotFound("page")
}

/// Whether the request came from htmx (`HX-Request: true`): such requests get fragments.
pub struct Htmx(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Htmx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Htmx(is_htmx(parts.headers.get("hx-request"))))
    }
}

fn is_htmx(value: Option<&HeaderValue>) -> bool {
    value.is_some_and(|v| v.as_bytes() == b"true")
}

/// Ids come from the URL as text: a malformed one is "not found", like an unknown one.
pub fn parse_id(raw: &str, what: &'static str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| AppError::NotFound(what))
}

/// Renders a template into an HTML response.
pub fn render(
    state: &AppState,
    template: &str,
    context: impl Serialize,
) -> Result<Html<String>, AppError> {
    state
        .templates
        .render(template, context)
        .map(Html)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("rendering {template}: {e:#}")))
}

/// After a form POST: `303 See Other` for browsers, `HX-Redirect` for htmx.
pub fn redirect(htmx: bool, to: &str) -> Response {
    if htmx {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Ok(value) = HeaderValue::from_str(to) {
            response.headers_mut().insert("hx-redirect", value);
        }
        response
    } else {
        axum::response::Redirect::to(to).into_response()
    }
}

/// A chat's export as a download.
pub fn download(export: Export) -> Response {
    let mut response = export.body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(export.content_type),
    );
    let disposition = format!("attachment; filename=\"{}\"", export.file_name);
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A message's file as it was sent, to save, never to show: `attachment` disposition (with the
/// name in ASCII and, RFC 6266, in UTF-8), the type the app decided from its bytes, and a CSP
/// that sandboxes it should a browser open it anyway.
pub fn attachment_download(file: crate::store::attachment::Model) -> Response {
    // Stored names are clean; a row written before they were is cleaned here.
    let name = crate::attachments::file_name(&file.name);
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' '..='~' if c != '"' && c != '\\' && c != '%' => c,
            _ => '_',
        })
        .collect();
    let encoded = percent_encode(&name);
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    let media_type = match file.media_type.as_str() {
        "text/plain" | "text/markdown" | "text/csv" => {
            format!("{}; charset=utf-8", file.media_type)
        }
        other => other.to_owned(),
    };
    let mut response = file.data.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, media_type),
        (header::CONTENT_DISPOSITION, disposition),
        (header::CACHE_CONTROL, "private, no-store".to_owned()),
        (
            header::CONTENT_SECURITY_POLICY,
            "sandbox; default-src 'none'".to_owned(),
        ),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

/// RFC 8187's `value-chars`: letters, digits and a few marks stay, every other byte is `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The one place errors are logged and their bodies written. A handler's [`AppError`] travels
/// in its response's extensions; axum's own rejections (bodies too large, unreadable forms)
/// carry none and get a message by their status. The body is what the client can use: a
/// fragment aimed at the page's `#flash` region for htmx, a full page for browsers, problem
/// details under `/api`.
async fn errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let htmx = is_htmx(request.headers().get("hx-request"));
    let api = api::is_api_path(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match response.extensions().get::<std::sync::Arc<AppError>>() {
        Some(error) => {
            error.log();
            error.user_message()
        }
        None => default_message(status).to_owned(),
    };
    let (parts, _) = response.into_parts();
    let mut rendered = if api {
        Problem::new(status, message).into_response()
    } else {
        let context = minijinja::context! {
            status => status.as_u16(),
            reason => status.canonical_reason().unwrap_or("Error"),
            message => message.clone(),
        };
        let template = if htmx {
            "fragments/error.html"
        } else {
            "error.html"
        };
        match state.templates.render(template, context) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!("rendering {template}: {e:#}");
                (status, message).into_response()
            }
        }
    };
    // Headers the error's own response carried that the client still needs.
    for name in [
        REQUEST_ID,
        header::RETRY_AFTER,
        header::SET_COOKIE,
        header::WWW_AUTHENTICATE,
    ] {
        for value in parts.headers.get_all(&name) {
            rendered.headers_mut().append(name.clone(), value.clone());
        }
    }
    if htmx && !api {
        // htmx swaps error responses (see the htmx-config meta tag) into the flash region.
        let headers = rendered.headers_mut();
        headers.insert("hx-retarget", HeaderValue::from_static("#flash"));
        headers.insert("hx-reswap", HeaderValue::from_static("innerHTML"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        rendered
            .headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("5"));
    }
    rendered
}

fn default_message(status: StatusCode) -> &'static str {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            "That is too large to send. Please shorten it and try again."
        }
        StatusCode::NOT_FOUND => "There is nothing here.",
        StatusCode::METHOD_NOT_ALLOWED => "That action is not available here.",
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            "The form could not be read. Please reload the page and try again."
        }
        s if s.is_server_error() => "Something went wrong on our side. Please try again.",
        _ => "The request could not be completed.",
    }
}
