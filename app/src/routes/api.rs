//! The JSON API (`/api/v1`) for scripts and other programs: the same chats, the same session
//! scoping, the same store and generation code as the pages. Identity is the session cookie or
//! `Authorization: Bearer <token>` from `POST /api/v1/tokens`. Errors are RFC 9457 problem
//! details (written by `error_pages` for every `/api/` response). The OpenAPI 3.1 document is
//! generated from the annotations here and served at `/api/openapi.json`.
use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, State},
    http::{HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{
    IntoParams, Modify, OpenApi, ToSchema,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    ClientAddress, chat_of_session,
    chats::clean_title,
    messages::{Encoding, open_stream, start_reply, started, stop_reply},
    search as search_pages, serde_name,
    transfer::{self, ChatExport},
    validate_message,
};
use crate::{
    AppState,
    error::{AppError, AppResult},
    limits::Action,
    lm::ModelInfo,
    session::{self, Session},
    store::{ChatSettings, NewReply, chat, message},
};

/// Most items one list request returns.
const MAX_PAGE: u64 = 100;

// ---- documents -------------------------------------------------------------------------------

#[derive(Serialize, ToSchema)]
pub struct ChatJson {
    id: Uuid,
    title: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    settings: SettingsJson,
}

/// A chat's own settings; `null` means the server's configured default.
#[derive(Serialize, Deserialize, ToSchema, Default)]
pub struct SettingsJson {
    /// The system prompt sent first.
    #[serde(default)]
    system_prompt: Option<String>,
    /// Sampling temperature, 0–2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    temperature: Option<f32>,
    /// Upper bound on tokens per reply, 1–65536.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 65536)]
    max_tokens: Option<i32>,
    /// One of `GET /api/v1/models`.
    #[serde(default)]
    model: Option<String>,
}

impl From<chat::Model> for ChatJson {
    fn from(c: chat::Model) -> Self {
        ChatJson {
            id: c.id,
            title: c.title,
            created_at: c.created_at,
            updated_at: c.updated_at,
            settings: SettingsJson {
                system_prompt: c.system_prompt,
                temperature: c.temperature,
                max_tokens: c.max_tokens,
                model: c.model,
            },
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MessageJson {
    id: Uuid,
    chat_id: Uuid,
    /// Position in the chat, from 1.
    seq: i64,
    /// `system`, `user` or `assistant`.
    #[schema(example = "assistant")]
    role: String,
    /// `complete`, `streaming`, `stopped`, `interrupted` or `error`.
    #[schema(example = "complete")]
    status: String,
    content: String,
    /// A reply's reasoning (what a thinking model wrote before its answer), apart from it.
    reasoning: Option<String>,
    /// Why a reply failed, for `status: error` (and `interrupted`).
    error: Option<String>,
    /// An earlier version: a user message that was edited, or a reply to one. Left out of
    /// prompts.
    superseded: bool,
    created_at: DateTime<Utc>,
}

impl From<message::Model> for MessageJson {
    fn from(m: message::Model) -> Self {
        MessageJson {
            id: m.id,
            chat_id: m.chat_id,
            seq: m.seq,
            role: serde_name(m.role),
            status: serde_name(m.status),
            content: m.content,
            reasoning: m.reasoning,
            error: m.error,
            superseded: m.superseded,
            created_at: m.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ChatPage {
    chats: Vec<ChatJson>,
    /// Pass as `after` for the next page; absent on the last page.
    next: Option<Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct MessagePage {
    messages: Vec<MessageJson>,
    /// Pass as `before` for the earlier messages; absent when there are none.
    earlier: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatWithMessages {
    chat: ChatJson,
    /// The newest messages, oldest first (see `GET /api/v1/chats/{id}/messages` for more).
    messages: Vec<MessageJson>,
    earlier: Option<i64>,
}

#[derive(Deserialize, ToSchema)]
pub struct NewChat {
    /// A title; without one the first message names the chat.
    #[schema(min_length = 1, max_length = 120)]
    title: Option<String>,
}

#[derive(Deserialize, ToSchema)]
pub struct Rename {
    #[schema(min_length = 1, max_length = 120)]
    title: String,
}

#[derive(Deserialize, ToSchema)]
pub struct NewMessage {
    #[schema(min_length = 1)]
    content: String,
}

#[derive(Serialize, ToSchema)]
pub struct Sent {
    user_message: MessageJson,
    assistant_message_id: Uuid,
    /// Where the reply streams (server-sent events).
    #[schema(example = "/api/v1/messages/0193…/stream")]
    stream_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct Token {
    /// Send as `Authorization: Bearer <token>`. It stands for this session, like its cookie.
    token: String,
    #[schema(example = "Bearer")]
    token_type: String,
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

/// One server-sent event of a reply stream. `delta`: `data` is `{"text": …}` and `id` the byte
/// offset after it (send it back as `Last-Event-ID` to resume); `reasoning`: `{"text": …}`, the
/// model's thinking, before the answer (ids are then `<answer offset>:<reasoning offset>`);
/// `status`: `{"text": …}` (waiting for the model, or empty); `error`: `{"error": …}`; `done`:
/// the reply as stored, last.
#[derive(Serialize, ToSchema)]
pub struct StreamEvent {
    #[schema(example = "delta")]
    event: String,
    data: String,
    id: Option<String>,
    retry: Option<u64>,
}

// ---- extractors whose rejections are problem details ------------------------------------------

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct ApiQuery<T>(T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct ApiPath<T>(T);

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

// ---- handlers --------------------------------------------------------------------------------

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListChats {
    /// The `next` of the previous page.
    after: Option<Uuid>,
    /// At most this many (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

fn page_size(limit: Option<u64>, default: u64) -> AppResult<u64> {
    match limit.unwrap_or(default) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(AppError::Invalid(format!(
            "limit must be between 1 and {MAX_PAGE}."
        ))),
    }
}

const ERRORS: &str = "application/problem+json";

/// This session's chats, most recently active first.
#[utoipa::path(get, path = "/chats", tag = "chats", params(ListChats), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "A page of chats", body = ChatPage),
              (status = "4XX", description = "Invalid request", body = Problem, content_type = ERRORS)))]
async fn list_chats(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(query): ApiQuery<ListChats>,
) -> AppResult<Json<ChatPage>> {
    let limit = page_size(query.limit, 50)?;
    let page = state
        .store
        .page_of_chats(&session.id, query.after, limit)
        .await?
        .ok_or(AppError::NotFound("chat"))?;
    Ok(Json(ChatPage {
        chats: page.chats.into_iter().map(ChatJson::from).collect(),
        next: page.next,
    }))
}

/// Starts a chat (it opens with the configured greeting).
#[utoipa::path(post, path = "/chats", tag = "chats", request_body = NewChat, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The new chat", body = ChatJson),
              (status = "4XX", description = "Invalid request or too many new chats", body = Problem, content_type = ERRORS)))]
async fn create_chat(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<NewChat>,
) -> AppResult<(StatusCode, Json<ChatJson>)> {
    let title = body.title.as_deref().map(clean_title).transpose()?;
    state
        .rate_limits
        .check(Action::CreateChat, &session.id, address)?;
    let greeting = Some(state.config.greeting.as_str());
    let mut chat = state
        .store
        .create_chat(&session.id, greeting, None)
        .await?
        .chat;
    if let Some(title) = title {
        chat = state
            .store
            .rename_chat(&session.id, chat.id, &title)
            .await?
            .ok_or(AppError::NotFound("chat"))?;
    }
    Ok((StatusCode::CREATED, Json(chat.into())))
}

/// The newest messages first asked for, oldest first, and where earlier ones start.
async fn message_page(
    state: &AppState,
    session: &Session,
    chat_id: Uuid,
    before: Option<i64>,
    limit: u64,
) -> AppResult<MessagePage> {
    let mut messages = state
        .store
        .list_messages(&session.id, chat_id, before, limit + 1)
        .await?;
    let earlier = if messages.len() as u64 > limit {
        messages.remove(0);
        messages.first().map(|m| m.seq)
    } else {
        None
    };
    Ok(MessagePage {
        messages: messages.into_iter().map(MessageJson::from).collect(),
        earlier,
    })
}

/// A chat with its newest messages.
#[utoipa::path(get, path = "/chats/{id}", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat", body = ChatWithMessages),
              (status = "4XX", description = "No such chat in this session", body = Problem, content_type = ERRORS)))]
async fn get_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<ChatWithMessages>> {
    let chat = chat_of_session(&state, &session, id).await?;
    let page = message_page(&state, &session, id, None, MAX_PAGE).await?;
    Ok(Json(ChatWithMessages {
        chat: chat.into(),
        messages: page.messages,
        earlier: page.earlier,
    }))
}

/// Renames a chat.
#[utoipa::path(patch, path = "/chats/{id}", tag = "chats", params(("id" = Uuid, Path)), request_body = Rename, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The renamed chat", body = ChatJson),
              (status = "4XX", description = "No such chat, or an invalid title", body = Problem, content_type = ERRORS)))]
async fn rename_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Rename>,
) -> AppResult<Json<ChatJson>> {
    let title = clean_title(&body.title)?;
    let chat = state
        .store
        .rename_chat(&session.id, id, &title)
        .await?
        .ok_or(AppError::NotFound("chat"))?;
    Ok(Json(chat.into()))
}

/// Deletes a chat and all its messages.
#[utoipa::path(delete, path = "/chats/{id}", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "Deleted"),
              (status = "4XX", description = "No such chat in this session", body = Problem, content_type = ERRORS)))]
async fn delete_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<StatusCode> {
    if state.store.delete_chat(&session.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::NotFound("chat"))
    }
}

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
async fn list_messages(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListMessages>,
) -> AppResult<Json<MessagePage>> {
    chat_of_session(&state, &session, id).await?;
    let limit = page_size(query.limit, MAX_PAGE)?;
    if query.before.is_some_and(|b| b < 1) {
        return Err(AppError::Invalid("before must be at least 1.".into()));
    }
    Ok(Json(
        message_page(&state, &session, id, query.before, limit).await?,
    ))
}

/// Sends a message: it is stored, and the assistant's reply starts. Read the reply from
/// `stream_url`.
#[utoipa::path(post, path = "/chats/{id}/messages", tag = "messages", params(("id" = Uuid, Path)), request_body = NewMessage, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 202, description = "Stored; the reply is being written", body = Sent),
              (status = "4XX", description = "No such chat, invalid or too large, a reply already in progress (409), or too many messages (429)", body = Problem, content_type = ERRORS),
              (status = 503, description = "The app is restarting", body = Problem, content_type = ERRORS)))]
async fn send_message(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<NewMessage>,
) -> AppResult<(StatusCode, Json<Sent>)> {
    validate_message(&body.content, state.config.max_message_bytes)?;
    state
        .rate_limits
        .check(Action::Send, &session.id, address)?;
    let outcome = state
        .store
        .add_exchange(&session.id, id, &body.content)
        .await?;
    sent(&state, outcome).await
}

/// The answer to a stored exchange: its reply started.
async fn sent(state: &AppState, outcome: NewReply) -> AppResult<(StatusCode, Json<Sent>)> {
    let (user, reply) = started(outcome)?;
    let user = user.ok_or(AppError::NotFound("message"))?;
    start_reply(state, &reply).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Sent {
            user_message: (*user).into(),
            assistant_message_id: reply.id,
            stream_url: format!("/api/v1/messages/{}/stream", reply.id),
        }),
    ))
}

/// Edit and resend: replaces the chat's latest user message with `content` and starts a new
/// reply. The earlier version and its replies stay, marked `superseded`.
#[utoipa::path(post, path = "/chats/{id}/messages/{message_id}/edit", tag = "messages",
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)), request_body = NewMessage, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 202, description = "Stored; the new reply is being written", body = Sent),
              (status = "4XX", description = "No such chat or message, invalid or too large, not the latest user message or a reply in progress (409), or too many messages (429)", body = Problem, content_type = ERRORS),
              (status = 503, description = "The app is restarting", body = Problem, content_type = ERRORS)))]
async fn edit_message(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiPath((id, message_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<NewMessage>,
) -> AppResult<(StatusCode, Json<Sent>)> {
    validate_message(&body.content, state.config.max_message_bytes)?;
    state
        .rate_limits
        .check(Action::Send, &session.id, address)?;
    let outcome = state
        .store
        .edit_exchange(&session.id, id, message_id, &body.content)
        .await?;
    sent(&state, outcome).await
}

/// Sets a chat's settings. Absent or `null` fields go back to the server's defaults.
#[utoipa::path(put, path = "/chats/{id}/settings", tag = "chats", params(("id" = Uuid, Path)), request_body = SettingsJson, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat with its new settings", body = ChatJson),
              (status = "4XX", description = "No such chat, or a setting out of range or a model not served", body = Problem, content_type = ERRORS),
              (status = 503, description = "The model server cannot be asked whether it serves that model", body = Problem, content_type = ERRORS)))]
async fn put_settings(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SettingsJson>,
) -> AppResult<Json<ChatJson>> {
    let chat = chat_of_session(&state, &session, id).await?;
    let requested = ChatSettings {
        system_prompt: body.system_prompt,
        temperature: body.temperature,
        max_tokens: body.max_tokens,
        model: body.model,
    };
    let settings = super::settings::validate(&state, chat.model.as_deref(), requested).await?;
    let chat = state
        .store
        .update_settings(&session.id, id, &settings)
        .await?
        .ok_or(AppError::NotFound("chat"))?;
    Ok(Json(chat.into()))
}

#[derive(Serialize, ToSchema)]
pub struct Models {
    /// What the model server serves; a chat may pick any of them.
    models: Vec<ModelInfo>,
}

/// The models the language model server serves.
#[utoipa::path(get, path = "/models", tag = "chats", security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The models", body = Models),
              (status = 503, description = "The model server is not reachable or still loading", body = Problem, content_type = ERRORS)))]
async fn list_models(State(state): State<AppState>, _session: Session) -> AppResult<Json<Models>> {
    let models = state
        .lm
        .models()
        .await
        .map_err(|e| AppError::Unavailable(e.to_string()))?;
    Ok(Json(Models { models }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `md` (default) or `json`.
    #[param(pattern = "^(md|json)$")]
    format: Option<String>,
}

/// A chat as a download: Markdown to read, or JSON to import again.
#[utoipa::path(get, path = "/chats/{id}/export", tag = "chats", params(("id" = Uuid, Path), ExportQuery), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The export: Markdown, or JSON to import again", content((ChatExport = "application/json"), (String = "text/markdown"))),
              (status = "4XX", description = "No such chat, or an unknown format", body = Problem, content_type = ERRORS)))]
async fn export_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> AppResult<Response> {
    transfer::export_response(&state, &session, id, query.format.as_deref()).await
}

/// Creates a chat from a JSON export (`GET /api/v1/chats/{id}/export?format=json`).
#[utoipa::path(post, path = "/chats/import", tag = "chats", request_body = ChatExport, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The new chat", body = ChatJson),
              (status = "4XX", description = "Not an export this app can read, too large (413), or too many new chats (429)", body = Problem, content_type = ERRORS)))]
async fn import_chat(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiJson(export): ApiJson<ChatExport>,
) -> AppResult<(StatusCode, Json<ChatJson>)> {
    let chat = transfer::import(&state, &session, address, export).await?;
    Ok((StatusCode::CREATED, Json(chat.into())))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Text to find in titles and messages (1–200 characters; case is ignored).
    #[param(min_length = 1, max_length = 200, pattern = "\\S")]
    q: String,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    /// Chats whose title contains the text.
    chats: Vec<ChatJson>,
    /// Messages that contain it, newest first.
    messages: Vec<SearchMessage>,
}

#[derive(Serialize, ToSchema)]
pub struct SearchMessage {
    chat_title: String,
    message: MessageJson,
    /// The text around the first match, and the match as written.
    snippet: Snippet,
}

#[derive(Serialize, ToSchema)]
pub struct Snippet {
    before: String,
    matched: String,
    after: String,
}

/// Searches this session's chats by title and message text.
#[utoipa::path(get, path = "/search", tag = "chats", params(SearchParams), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "What matched", body = SearchResults),
              (status = "4XX", description = "An empty or too long query", body = Problem, content_type = ERRORS)))]
async fn search(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> AppResult<Json<SearchResults>> {
    let query = search_pages::clean_query(&params.q)?
        .ok_or_else(|| AppError::Invalid("Please give some text to search for.".into()))?;
    let results = search_pages::search(&state, &session, &query).await?;
    Ok(Json(SearchResults {
        chats: results.chats.into_iter().map(ChatJson::from).collect(),
        messages: results
            .messages
            .into_iter()
            .map(|hit| SearchMessage {
                chat_title: hit.chat_title,
                snippet: Snippet {
                    before: hit.before,
                    matched: hit.matched,
                    after: hit.after,
                },
                message: hit.hit.message.into(),
            })
            .collect(),
    }))
}

/// The reply's text as server-sent events: what was written so far (after `Last-Event-ID`),
/// then live, then `done` with the reply as stored. A finished reply sends `done` at once.
#[utoipa::path(get, path = "/messages/{id}/stream", tag = "messages",
    params(("id" = Uuid, Path), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this byte offset")),
    security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The reply's events", body = StreamEvent, content_type = "text/event-stream"),
              (status = "4XX", description = "No such reply in this session, or too many open streams (429)", body = Problem, content_type = ERRORS)))]
async fn stream_message(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Response> {
    open_stream(&state, &session, &headers, Encoding::Json, None, id).await
}

/// Stops a reply being written, keeping the text so far. A finished reply is left as it is.
#[utoipa::path(post, path = "/messages/{id}/stop", tag = "messages", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The reply as stored now", body = MessageJson),
              (status = "4XX", description = "No such reply in this session", body = Problem, content_type = ERRORS)))]
async fn stop_message(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<MessageJson>> {
    let find = || async {
        state
            .store
            .find_session_message(&session.id, id)
            .await?
            .filter(|m| m.role == crate::store::Role::Assistant)
            .ok_or(AppError::NotFound("message"))
    };
    stop_reply(&state, &session, &find().await?).await?;
    Ok(Json(find().await?.into()))
}

/// A bearer token for this session (the cookie's session, or a new one), for clients without
/// a cookie jar.
#[utoipa::path(post, path = "/tokens", tag = "tokens", security((), ("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The token", body = Token),
              (status = "4XX", description = "An invalid token was sent", body = Problem, content_type = ERRORS)))]
async fn create_token(
    State(state): State<AppState>,
    session: Session,
) -> (StatusCode, Json<Token>) {
    let token = session::issue_token(&state.sessions.key, &session.id);
    (
        StatusCode::CREATED,
        Json(Token {
            token,
            token_type: "Bearer".into(),
        }),
    )
}

// ---- the document and the router ---------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(title = "Chat API", version = "1.0.0",
         description = "Chats with a language model served by llama.cpp. Every request acts for one anonymous session: the browser's cookie, or a bearer token from POST /api/v1/tokens."),
    modifiers(&Security),
    tags((name = "chats"), (name = "messages"), (name = "tokens"))
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
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(session::COOKIE_NAME))),
        );
    }
}

/// The `/api/v1` routes and the OpenAPI document that describes them. Imports may be as large
/// as `import_body_limit`; other requests have the app's body limit.
pub fn router(import_body_limit: usize) -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(list_chats, create_chat))
        .routes(routes!(get_chat, rename_chat, delete_chat))
        .routes(routes!(list_messages, send_message))
        .routes(routes!(edit_message))
        .routes(routes!(put_settings))
        .routes(routes!(export_chat))
        .routes(routes!(search))
        .routes(routes!(list_models))
        .routes(routes!(stream_message))
        .routes(routes!(stop_message))
        .routes(routes!(create_token));
    // An export may be larger than a message.
    let import = OpenApiRouter::new()
        .routes(routes!(import_chat))
        .layer(axum::extract::DefaultBodyLimit::max(import_body_limit));
    let v1 = v1.merge(import);
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
