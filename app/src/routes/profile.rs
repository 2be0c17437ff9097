//! The visitor's display name, kept with the session and shown on their messages.
use axum::{
    Form,
    extract::State,
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::{AppState, error::AppError, session::Session};

use super::{Htmx, redirect, render};

pub const MAX_NAME_CHARS: usize = 40;

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
) -> Result<Response, AppError> {
    super::reject_nul(&form.display_name)?;
    let name = form
        .display_name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::Invalid(format!(
            "Please use a name of at most {MAX_NAME_CHARS} characters."
        )));
    }
    let name = (!name.is_empty()).then_some(name);
    state
        .store
        .set_display_name(&session.id, name.as_deref())
        .await?;
    if htmx {
        let html = render(
            &state,
            "fragments/profile.html",
            minijinja::context! { display_name => name },
        )?;
        return Ok(html.into_response());
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
