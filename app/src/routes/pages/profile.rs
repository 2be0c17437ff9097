//! The visitor's display name.
use axum::{
    Form,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{
    AppState, chat,
    domain::DisplayName,
    error::AppResult,
    routes::{Htmx, redirect, render},
    session::Session,
};

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    display_name: String,
}

pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    headers: HeaderMap,
    Form(form): Form<ProfileForm>,
) -> AppResult<Response> {
    let name = DisplayName::parse(&form.display_name)?;
    chat::set_display_name(&state, &session, name.as_ref()).await?;
    if htmx {
        let display_name = name.as_ref().map(DisplayName::as_str);
        let context = minijinja::context! { display_name };
        return Ok(render(&state, "fragments/profile.html", context)?.into_response());
    }
    Ok(redirect(false, &back_to(&headers)))
}

/// Where to go back after a plain form: the page it came from when that is one of ours.
fn back_to(headers: &HeaderMap) -> String {
    let referer = headers
        .get("referer")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/");
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let path = referer
        .split_once("://")
        .and_then(|(_, rest)| rest.strip_prefix(host))
        .unwrap_or("/");
    if path.starts_with('/') && !path.starts_with("//") {
        path.to_owned()
    } else {
        "/".to_owned()
    }
}
