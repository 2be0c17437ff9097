//! `/api/v1/chats` and what hangs off a chat: settings, export, import; search.
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::{ApiJson, ApiPath, ApiQuery, ERRORS, MAX_PAGE, page_size};
use crate::routes::documents::{
    ChatJson, ChatPage, ChatWithMessages, ContextJson, NewChat, Rename, SearchResults,
};
use crate::{
    AppState,
    chat::{self, ChatExport, ExportFormat},
    domain::{ChatSettings, SearchQuery, Title},
    error::{AppError, AppResult},
    routes::{ClientAddress, Problem, download},
    session::Session,
};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListChats {
    /// The `next` of the previous page.
    after: Option<Uuid>,
    /// At most this many (1–100, default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u64>,
}

/// This session's chats, most recently active first.
#[utoipa::path(get, path = "/chats", tag = "chats", params(ListChats), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "A page of chats", body = ChatPage),
              (status = "4XX", description = "Invalid request", body = Problem, content_type = ERRORS)))]
pub async fn list_chats(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(query): ApiQuery<ListChats>,
) -> AppResult<Json<ChatPage>> {
    let limit = page_size(query.limit, 50)?;
    let page = chat::list(&state, &session, query.after, limit).await?;
    Ok(Json(ChatPage {
        chats: page.chats.into_iter().map(ChatJson::from).collect(),
        next: page.next,
    }))
}

/// Starts a chat (it opens with the configured greeting).
#[utoipa::path(post, path = "/chats", tag = "chats", request_body = NewChat, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The new chat", body = ChatJson),
              (status = "4XX", description = "Invalid request or too many new chats", body = Problem, content_type = ERRORS)))]
pub async fn create_chat(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<NewChat>,
) -> AppResult<(StatusCode, Json<ChatJson>)> {
    let new_chat = chat::NewChat {
        first_message: None,
        files: Vec::new(),
        title: body.title.as_deref().map(Title::parse).transpose()?,
        temporary: body.temporary,
    };
    let chat = chat::create(&state, &session, address, new_chat).await?;
    Ok((StatusCode::CREATED, Json(chat.into())))
}

/// A chat with its newest messages.
#[utoipa::path(get, path = "/chats/{id}", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat", body = ChatWithMessages),
              (status = "4XX", description = "No such chat in this session", body = Problem, content_type = ERRORS)))]
pub async fn get_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<ChatWithMessages>> {
    let opened = chat::open(&state, &session, id, None, MAX_PAGE).await?;
    let page = crate::routes::documents::MessagePage::from(chat::MessagePage {
        messages: opened.history.messages,
        earlier: opened.history.earlier,
        versions: opened.history.versions,
    });
    Ok(Json(ChatWithMessages {
        chat: opened.chat.into(),
        messages: page.messages,
        earlier: page.earlier,
    }))
}

/// Renames a chat.
#[utoipa::path(patch, path = "/chats/{id}", tag = "chats", params(("id" = Uuid, Path)), request_body = Rename, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The renamed chat", body = ChatJson),
              (status = "4XX", description = "No such chat, or an invalid title", body = Problem, content_type = ERRORS)))]
pub async fn rename_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Rename>,
) -> AppResult<Json<ChatJson>> {
    let title = Title::parse(&body.title)?;
    Ok(Json(
        chat::rename(&state, &session, id, &title).await?.into(),
    ))
}

/// Deletes a chat and all its messages.
#[utoipa::path(delete, path = "/chats/{id}", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 204, description = "Deleted"),
              (status = "4XX", description = "No such chat in this session", body = Problem, content_type = ERRORS)))]
pub async fn delete_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<StatusCode> {
    chat::delete(&state, &session, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a chat's settings. Absent or `null` fields go back to the server's defaults.
#[utoipa::path(put, path = "/chats/{id}/settings", tag = "chats", params(("id" = Uuid, Path)), request_body = ChatSettings, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat with its new settings", body = ChatJson),
              (status = "4XX", description = "No such chat, or a setting out of range or a model not served", body = Problem, content_type = ERRORS),
              (status = 503, description = "The model server cannot be asked whether it serves that model", body = Problem, content_type = ERRORS)))]
pub async fn put_settings(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(requested): ApiJson<ChatSettings>,
) -> AppResult<Json<ChatJson>> {
    let chat = chat::update_settings(&state, &session, id, requested).await?;
    Ok(Json(chat.into()))
}

/// How much of the model's context the chat's next prompt uses, and which messages no longer
/// reach the model because the chat is longer than the context.
#[utoipa::path(get, path = "/chats/{id}/context", tag = "chats", params(("id" = Uuid, Path)), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The chat's use of the context", body = ContextJson),
              (status = "4XX", description = "No such chat in this session", body = Problem, content_type = ERRORS)))]
pub async fn get_context(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
) -> AppResult<Json<ContextJson>> {
    Ok(Json(chat::context(&state, &session, id).await?.into()))
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
pub async fn export_chat(
    State(state): State<AppState>,
    session: Session,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> AppResult<Response> {
    let format = ExportFormat::parse(query.format.as_deref())?;
    Ok(download(chat::export(&state, &session, id, format).await?).into_response())
}

/// Creates a chat from a JSON export (`GET /api/v1/chats/{id}/export?format=json`).
#[utoipa::path(post, path = "/chats/import", tag = "chats", request_body = ChatExport, security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 201, description = "The new chat", body = ChatJson),
              (status = "4XX", description = "Not an export this app can read, too large (413), or too many new chats (429)", body = Problem, content_type = ERRORS)))]
pub async fn import_chat(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    ApiJson(export): ApiJson<ChatExport>,
) -> AppResult<(StatusCode, Json<ChatJson>)> {
    let chat = chat::import(&state, &session, address, export).await?;
    Ok((StatusCode::CREATED, Json(chat.into())))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Text to find in titles and messages (1–200 characters; case is ignored).
    #[param(min_length = 1, max_length = 200, pattern = "\\S")]
    q: String,
}

/// Searches this session's chats by title and message text.
#[utoipa::path(get, path = "/search", tag = "chats", params(SearchParams), security(("bearer" = []), ("session_cookie" = [])),
    responses((status = 200, description = "What matched", body = SearchResults),
              (status = "4XX", description = "An empty or too long query", body = Problem, content_type = ERRORS)))]
pub async fn search(
    State(state): State<AppState>,
    session: Session,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> AppResult<Json<SearchResults>> {
    let query = SearchQuery::parse(&params.q)?
        .ok_or_else(|| AppError::Invalid("Please give some text to search for.".into()))?;
    Ok(Json(chat::search(&state, &session, &query).await?.into()))
}
