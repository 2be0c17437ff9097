//! `/api/v1/.../messages`: list, send, edit and resend, the reply's stream, stop; and tokens.
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery, ERRORS, MAX_PAGE, page_size};
use crate::routes::documents::{
    Continued, MessageJson, MessagePage, NewMessage, Sent, StreamEvent, Token,
};
use crate::{
    AppState,
    chat::{self, Exchange},
    domain::MessageText,
    error::{AppError, AppResult},
    routes::{
        ClientAddress, Problem, attachment_download,
        stream::{self, Encoding},
    },
    session::{self, Session},
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListMessages {
    /// The `earlier` of the previous page: messages before this position.
    #[param(minimum = 1)]
    before: Option<i64>,
    /// At most this many (1–100, default 100).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

/// A chat's messages, oldest first, newest page first.
#[utoipa::path(get, path = "/chats/{id}/messages", tag = "messages", params(("id" = Uuid, Path), ListMessages), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "A page of messages", body = MessagePage),
              (status = "4XX", description = "No such chat in this session", body = Problem, content_type = ERRORS)))]
pub async fn list_messages(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListMessages>,
) -> AppResult<Json<MessagePage>> {
    chat::find(&state, &session, id).await?;
    let limit = page_size(query.limit, MAX_PAGE)?;
    let page = chat::messages(&state, &session, id, query.before, limit).await?;
    Ok(Json(page.into()))
}

/// Sends a message: it is stored, and the assistant's reply starts. Read the reply from
/// `stream_url`.
#[utoipa::path(post, path = "/chats/{id}/messages", tag = "messages", params(("id" = Uuid, Path)), request_body = NewMessage, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 202, description = "Stored; the reply is being written", body = Sent),
              (status = "4XX", description = "No such chat, invalid or too large, a reply already in progress (409), or too many messages (429)", body = Problem, content_type = ERRORS),
              (status = 503, description = "The app is restarting", body = Problem, content_type = ERRORS)))]
pub async fn send_message(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(mut body): ApiJson<NewMessage>,
) -> AppResult<(StatusCode, Json<Sent>)> {
    let uploads = body.uploads()?;
    let text = MessageText::parse_with_files(
        body.content,
        state.config.max_message_bytes,
        !uploads.is_empty(),
    )?;
    sent(chat::send(&state, &session, address, id, &text, uploads).await?)
}

/// A file sent with a message, as it was sent (`Content-Disposition: attachment`).
#[utoipa::path(get, path = "/chats/{id}/attachments/{attachment_id}", tag = "messages",
    params(("id" = Uuid, Path), ("attachment_id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The file's bytes, with its type and name", content_type = "application/octet-stream"),
              (status = "4XX", description = "No such file in this session's chat", body = Problem, content_type = ERRORS)))]
pub async fn download_attachment(
    State(state): State<AppState>,
    session: Session,
    ApiPath((id, attachment_id)): ApiPath<(Uuid, Uuid)>,
) -> AppResult<Response> {
    let file = chat::attachment(&state, &session, id, attachment_id).await?;
    Ok(attachment_download(file))
}

/// Edit and resend: a new version of a user message of the chat's current path, with
/// `content`, and a new reply to it; they become the path. The edited version and what followed
/// it stay, as other versions (`versions`, and `POST /messages/{id}/select`).
#[utoipa::path(post, path = "/chats/{id}/messages/{message_id}/edit", tag = "messages",
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)), request_body = NewMessage, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 202, description = "Stored; the new reply is being written", body = Sent),
              (status = "4XX", description = "No such chat or message, invalid or too large, not a user message of the current path or a reply in progress (409), or too many messages (429)", body = Problem, content_type = ERRORS),
              (status = 503, description = "The app is restarting", body = Problem, content_type = ERRORS)))]
pub async fn edit_message(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiPath((id, message_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<NewMessage>,
) -> AppResult<(StatusCode, Json<Sent>)> {
    let text = MessageText::parse(body.content, state.config.max_message_bytes)?;
    sent(chat::edit(&state, &session, address, id, message_id, &text).await?)
}

/// Continue: the reply, stopped or cut at its length (and the chat's latest), goes on from its
/// text; the same message grows, and its stats count both parts. Read it from `stream_url`
/// (from its start: the text so far, then what follows).
#[utoipa::path(post, path = "/messages/{id}/continue", tag = "messages", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 202, description = "The reply is being written again", body = Continued),
              (status = "4XX", description = "No such reply, not the chat's latest or not one that can go on, a reply in progress (409), or too many messages (429)", body = Problem, content_type = ERRORS),
              (status = 503, description = "The app is restarting", body = Problem, content_type = ERRORS)))]
pub async fn continue_message(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<(StatusCode, Json<Continued>)> {
    let exchange = chat::continue_reply(&state, &session, address, None, id).await?;
    let reply_id = exchange.reply.id;
    let continued = Continued {
        assistant_message_id: reply_id,
        stream_url: format!("/api/v1/messages/{reply_id}/stream"),
    };
    Ok((StatusCode::ACCEPTED, Json(continued)))
}

/// Chooses a version of a message (one of its `versions`): the chat's path runs through it,
/// and below it through the newest versions; the next reply's prompt is that path. Returns the
/// chat's newest messages as they are now.
#[utoipa::path(post, path = "/messages/{id}/select", tag = "messages", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat's newest messages, along the chosen path", body = MessagePage),
              (status = "4XX", description = "No such message in this session, or a reply being written in its chat (409)", body = Problem, content_type = ERRORS)))]
pub async fn select_version(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<MessagePage>> {
    let chat_id = chat::select_version(&state, &session, None, id).await?;
    let page = chat::messages(&state, &session, chat_id, None, MAX_PAGE).await?;
    Ok(Json(page.into()))
}

/// 202 with the user's message and where its reply streams.
fn sent(exchange: Exchange) -> AppResult<(StatusCode, Json<Sent>)> {
    let user = exchange.user.ok_or(AppError::NotFound("message"))?;
    let reply_id = exchange.reply.id;
    let sent = Sent {
        user_message: user.into(),
        assistant_message_id: reply_id,
        stream_url: format!("/api/v1/messages/{reply_id}/stream"),
    };
    Ok((StatusCode::ACCEPTED, Json(sent)))
}

/// The reply's text as server-sent events: what was written so far (after `Last-Event-ID`),
/// then live, then `done` with the reply as stored. A finished reply sends `done` at once.
#[utoipa::path(get, path = "/messages/{id}/stream", tag = "messages",
    params(("id" = Uuid, Path), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this byte offset")),
    security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The reply's events", body = StreamEvent, content_type = "text/event-stream"),
              (status = "4XX", description = "No such reply in this session, or too many open streams (429)", body = Problem, content_type = ERRORS)))]
pub async fn stream_message(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Response> {
    stream::respond(&state, &session, &headers, Encoding::Json, None, id).await
}

/// Stops a reply being written, keeping the text so far. A finished reply is left as it is.
#[utoipa::path(post, path = "/messages/{id}/stop", tag = "messages", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The reply as stored now", body = MessageJson),
              (status = "4XX", description = "No such reply in this session", body = Problem, content_type = ERRORS)))]
pub async fn stop_message(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<MessageJson>> {
    Ok(Json(chat::stop(&state, &session, None, id).await?.into()))
}

/// The person's answer to a call of a tool that waits for their approval.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// `true`: make the call; `false`: refuse it (the model is told).
    pub allow: bool,
}

/// Allows or denies a call of a tool that waits for approval (a tool of an MCP server marked
/// `"approve": true`; the step's `approval` is `pending`). The reply then goes on.
#[utoipa::path(post, path = "/messages/{id}/tool_calls/{call_id}", tag = "messages", params(("id" = Uuid, Path), ("call_id" = String, Path)), request_body = Decision, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "Answered; the reply goes on"),
              (status = "4XX", description = "No such reply in this session (404), or the call does not wait for an answer (409)", body = Problem, content_type = ERRORS)))]
pub async fn decide_tool_call(
    State(state): State<AppState>,
    session: Session,
    ApiPath((id, call_id)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<Decision>,
) -> AppResult<StatusCode> {
    chat::decide_tool_call(&state, &session, None, id, &call_id, body.allow).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A bearer token for this session (the cookie's session, or a new one), for clients without
/// a cookie jar. It belongs to the cookie's device (or to the sending token's): signing that
/// device out (`DELETE /devices/{id}`) ends the token too.
#[utoipa::path(post, path = "/tokens", tag = "tokens", security((), ("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The token", body = Token),
              (status = "4XX", description = "An invalid token was sent", body = Problem, content_type = ERRORS)))]
pub async fn create_token(
    State(state): State<AppState>,
    session: Session,
) -> (StatusCode, Json<Token>) {
    // The token belongs to the cookie's device (or the token's): signing it out ends both.
    let device = session.device.unwrap_or_else(uuid::Uuid::now_v7);
    let token = session::issue_token(&state.sessions.key, &session.id, device);
    let token = Token {
        token,
        token_type: "Bearer".into(),
    };
    (StatusCode::CREATED, Json(token))
}
