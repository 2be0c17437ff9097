//! Export a chat as a download, and import a JSON export from a file upload.
use axum::{
    extract::{Multipart, Path, Query, State},
    http::StatusCode,
    response::Response,
};
use serde::Deserialize;

use crate::{
    AppState,
    chat::{self, ChatExport, ExportFormat},
    domain::size,
    error::{AppError, AppResult},
    routes::{ClientAddress, Htmx, download, parse_id, redirect},
    session::Session,
};

#[derive(Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /chats/{id}/export?format=md|json`: a download.
pub async fn export(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(query): Query<ExportQuery>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let format = ExportFormat::parse(query.format.as_deref())?;
    Ok(download(
        chat::export(&state, &session, chat_id, format).await?,
    ))
}

/// `POST /chats/import` (multipart, field `file`): the new chat, or what is wrong with the file.
pub async fn import(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let unreadable =
        |text: String| AppError::BadRequest(format!("The upload could not be read: {text}"));
    let mut file = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| unreadable(e.body_text()))?
    {
        if field.name() == Some("file") {
            let bytes = field.bytes().await.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::TooLarge(format!(
                        "That file is too large to import; the limit is {}.",
                        size(state.config.max_import_bytes)
                    ))
                } else {
                    unreadable(e.body_text())
                }
            })?;
            file = Some(bytes);
        }
    }
    let file = file.filter(|f| !f.is_empty()).ok_or_else(|| {
        AppError::Invalid("Please choose a chat export (a .json file) to import.".into())
    })?;
    let export: ChatExport = serde_json::from_slice(&file).map_err(|e| {
        AppError::Invalid(format!(
            "That file is not a chat export this app can read: {e}. Export a chat as JSON and import that file."
        ))
    })?;
    let chat = chat::import(&state, &session, address, export).await?;
    Ok(redirect(htmx, &format!("/chats/{}", chat.id)))
}
