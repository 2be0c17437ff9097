//! Shared links: make one of a chat, revoke it, and the page anyone with the link sees.
use axum::{
    Form,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState, chat,
    error::{AppError, AppResult},
    page_cache::{PageKey, Stamp},
    routes::{
        ClientAddress, Htmx, parse_id, redirect, render,
        views::{SharedMessageView, SharesView, shared_views},
    },
    session::Session,
};

#[derive(Serialize)]
struct SharesFragment {
    shares: SharesView,
}

/// The chat's links after a change: htmx gets the list (unfolded), browsers a 303 to it.
async fn links(
    state: &AppState,
    session: &Session,
    htmx: bool,
    chat_id: uuid::Uuid,
) -> AppResult<Response> {
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}#shares")));
    }
    let links = chat::shares(state, session, chat_id).await?;
    let shares = SharesView::new(chat_id, &links, true);
    Ok(render(state, "fragments/shares.html", SharesFragment { shares })?.into_response())
}

/// `POST /chats/{id}/share`: a new link to the chat as it is now.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    chat::share(&state, &session, address, chat_id).await?;
    links(&state, &session, htmx, chat_id).await
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    token: String,
}

/// `POST /chats/{id}/share/revoke` with the link's `token`: the link stops working at once.
pub async fn revoke(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<RevokeForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    chat::revoke_share(&state, &session, &form.token).await?;
    links(&state, &session, htmx, chat_id).await
}

/// A shared page's stamp: its snapshot never changes while the link exists.
const SHARE_STAMP: Stamp = Stamp::constant();

#[derive(Serialize)]
struct SharedPage {
    title: String,
    shared_at: String,
    messages: Vec<SharedMessageView>,
}

/// `GET /s/{token}`: the snapshot, for anyone with the link. Outside the session layer: no
/// cookie is read or set, and nothing of any session but the chat's copy is shown. Not for
/// search engines, and not kept by caches (a revoked link must be gone at once).
///
/// Views are counted per address, and the page is rendered once per replica, off the async
/// workers, then served from the page cache while the link exists.
pub async fn show(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    Path(token): Path<String>,
) -> AppResult<Response> {
    chat::check_shared(&state, address, &token).await?;
    let key = PageKey::Share {
        token: token.clone(),
    };
    let body = match state.pages.get(&key, SHARE_STAMP) {
        Some(page) => page,
        None => {
            let shared = chat::shared(&state, &token).await?;
            let renderer = state.clone();
            let page = state
                .templates
                .off_workers(move || {
                    let page = SharedPage {
                        title: shared.title,
                        shared_at: shared.shared_at.format("%Y-%m-%d %H:%M UTC").to_string(),
                        messages: shared_views(&shared.messages),
                    };
                    render(&renderer, "shared.html", page).map(|html| Bytes::from(html.0))
                })
                .await
                .map_err(|e| {
                    AppError::Internal(anyhow::anyhow!("rendering a shared chat: {e}"))
                })??;
            state.pages.put(key, SHARE_STAMP, page.clone());
            page
        }
    };
    let mut response = Html(body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-robots-tag",
        HeaderValue::from_static("noindex, nofollow"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
