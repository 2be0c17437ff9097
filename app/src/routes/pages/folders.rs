//! Pins and folders: pin a chat, move it into a folder; create, rename and delete folders.
//! Pinning and moving answer htmx with the sidebar (and the chat's own controls, out of band);
//! folders are managed on `/chats`, with plain forms.
use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderValue, StatusCode},
    response::{Html, IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState, chat,
    domain::FolderName,
    error::{AppError, AppResult},
    routes::{Htmx, parse_id, redirect, render, views::Frame},
    session::Session,
    store,
};

#[derive(Serialize)]
struct SidebarFragment<'a> {
    frame: &'a Frame,
    chat: &'a store::chat::Model,
    /// Only the chat's controls go out of band: a sidebar entry marked so would be taken out
    /// of the sidebar and swapped where it was.
    oob: bool,
}

/// The sidebar as it is now, and the chat's pin and folder controls out of band.
async fn sidebar_and_controls(
    state: &AppState,
    session: &Session,
    chat: store::chat::Model,
) -> AppResult<Response> {
    let frame: Frame = chat::sidebar(state, session).await?.into();
    let sidebar = SidebarFragment {
        frame: &frame,
        chat: &chat,
        oob: false,
    };
    let Html(mut html) = render(state, "fragments/sidebar.html", &sidebar)?;
    let controls = SidebarFragment {
        oob: true,
        ..sidebar
    };
    html.push_str(&render(state, "fragments/chat_organize.html", &controls)?.0);
    Ok(Html(html).into_response())
}

#[derive(Deserialize)]
pub struct PinForm {
    #[serde(default)]
    pinned: String,
}

/// `POST /chats/{id}/pin` with `pinned=true|false`.
pub async fn pin(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<PinForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let pinned = match form.pinned.as_str() {
        "true" => true,
        "false" => false,
        _ => {
            return Err(AppError::Invalid("Say pinned=true or pinned=false.".into()));
        }
    };
    let chat = chat::pin(&state, &session, chat_id, pinned).await?;
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}")));
    }
    sidebar_and_controls(&state, &session, chat).await
}

#[derive(Deserialize)]
pub struct MoveForm {
    /// A folder's id; empty: out of any folder.
    #[serde(default)]
    folder_id: String,
}

/// `POST /chats/{id}/folder` with `folder_id` (empty: no folder).
pub async fn move_chat(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<MoveForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let folder_id = match form.folder_id.trim() {
        "" => None,
        id => Some(parse_id(id, "folder")?),
    };
    let chat = chat::move_to_folder(&state, &session, chat_id, folder_id).await?;
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}")));
    }
    sidebar_and_controls(&state, &session, chat).await
}

#[derive(Deserialize)]
pub struct FolderForm {
    #[serde(default)]
    name: String,
}

/// Back to the folders on `/chats`. htmx (the delete button, on that page) reloads it: an
/// `HX-Redirect` to the same page with a `#fragment` would only scroll.
fn to_folders(htmx: bool) -> Response {
    if htmx {
        let mut response = StatusCode::NO_CONTENT.into_response();
        response
            .headers_mut()
            .insert("hx-refresh", HeaderValue::from_static("true"));
        return response;
    }
    redirect(false, "/chats#folders")
}

/// `POST /folders` with a `name`.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Form(form): Form<FolderForm>,
) -> AppResult<Response> {
    let name = FolderName::parse(&form.name)?;
    chat::create_folder(&state, &session, &name).await?;
    Ok(to_folders(htmx))
}

/// `POST /folders/{id}/rename` with the new `name`.
pub async fn rename(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<FolderForm>,
) -> AppResult<Response> {
    let folder_id = parse_id(&id, "folder")?;
    let name = FolderName::parse(&form.name)?;
    chat::rename_folder(&state, &session, folder_id, &name).await?;
    Ok(to_folders(htmx))
}

/// `POST /folders/{id}/delete`: the folder goes, its chats stay (in no folder).
pub async fn delete(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let folder_id = parse_id(&id, "folder")?;
    chat::delete_folder(&state, &session, folder_id).await?;
    Ok(to_folders(htmx))
}
