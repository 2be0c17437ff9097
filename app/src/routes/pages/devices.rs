//! Your chats on another device: the devices page (this session's browsers, signing one out,
//! making a link code) and the link a code opens in the other browser (a confirmation, then a
//! POST that moves that browser to this session).
use axum::{
    extract::{Path, Query, State},
    response::{Html, IntoResponse, Response},
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState, chat,
    error::AppResult,
    routes::{
        ClientAddress, Htmx, parse_id, redirect, render,
        views::{DeviceView, Frame, NewLinkView},
    },
    session::{Session, SwitchSession},
};

#[derive(Serialize)]
struct DevicesPage {
    frame: Frame,
    devices: Vec<DeviceView>,
    new_link: Option<NewLinkView>,
}

async fn devices_page(
    state: &AppState,
    session: &Session,
    new_link: Option<NewLinkView>,
) -> AppResult<Html<String>> {
    let (sidebar, devices) =
        tokio::try_join!(chat::sidebar(state, session), chat::devices(state, session))?;
    let page = DevicesPage {
        frame: sidebar.into(),
        devices: devices
            .iter()
            .map(|d| DeviceView::new(d, session.device))
            .collect(),
        new_link,
    };
    render(state, "devices.html", page)
}

/// `GET /devices`: the browsers that use this session's chats.
pub async fn list(State(state): State<AppState>, session: Session) -> AppResult<Html<String>> {
    devices_page(&state, &session, None).await
}

#[derive(Serialize)]
struct LinkFragment {
    link: NewLinkView,
}

/// `POST /devices/link`: a one-time code for another browser, shown once (htmx: in place).
pub async fn create_link(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
) -> AppResult<Response> {
    let link = NewLinkView::from(chat::new_link(&state, &session, address).await?);
    if htmx {
        return Ok(
            render(&state, "fragments/device_link.html", LinkFragment { link })?.into_response(),
        );
    }
    Ok(devices_page(&state, &session, Some(link))
        .await?
        .into_response())
}

/// `POST /devices/{id}/signout`: that browser's cookie stops working at once.
pub async fn sign_out(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let device_id = parse_id(&id, "device")?;
    chat::sign_out(&state, &session, device_id).await?;
    let to = if session.device == Some(device_id) {
        "/"
    } else {
        "/devices"
    };
    Ok(redirect(htmx, to))
}

#[derive(Deserialize)]
pub struct CodeQuery {
    code: Option<String>,
}

#[derive(Serialize)]
struct LinkPage {
    frame: Frame,
    /// The code being confirmed; `None`: the form to type one.
    code: Option<String>,
    /// This browser's own chats, which it will no longer show.
    own_chats: usize,
}

/// `GET /link`: type a code (`?code=` goes on to its confirmation).
pub async fn enter_code(
    State(state): State<AppState>,
    session: Session,
    Query(query): Query<CodeQuery>,
) -> AppResult<Response> {
    if let Some(code) = query
        .code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    {
        // The link as the devices page shows it: no dashes, capitals.
        let code: String = code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect();
        return Ok(redirect(false, &format!("/link/{code}")));
    }
    let frame = chat::sidebar(&state, &session).await?.into();
    let page = LinkPage {
        frame,
        code: None,
        own_chats: 0,
    };
    Ok(render(&state, "link.html", page)?.into_response())
}

/// `GET /link/{code}`: asks before using the code (a link preview must not use it up).
pub async fn confirm(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Path(code): Path<String>,
) -> AppResult<Html<String>> {
    chat::check_link(&state, &session, address, &code).await?;
    let sidebar = chat::sidebar(&state, &session).await?;
    let own_chats = sidebar.pinned.len()
        + sidebar.chats.len()
        + sidebar.folders.iter().map(|f| f.chats.len()).sum::<usize>();
    let page = LinkPage {
        frame: sidebar.into(),
        code: Some(code),
        own_chats,
    };
    render(&state, "link.html", page)
}

/// `POST /link/{code}`: this browser joins the session that made the code, as a new device.
pub async fn redeem(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path(code): Path<String>,
) -> AppResult<Response> {
    let joined = chat::redeem_link(&state, &session, address, &code).await?;
    let mut response = redirect(htmx, "/");
    response.extensions_mut().insert(SwitchSession {
        id: joined,
        device: uuid::Uuid::now_v7(),
    });
    Ok(response)
}
