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
    /// Where a plain form goes back to (one of the app's paths); else the page it came from.
    #[serde(default)]
    return_to: Option<String>,
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
    let back = form
        .return_to
        .as_deref()
        .and_then(app_path)
        .or_else(|| referer_path(&headers).and_then(app_path))
        .unwrap_or("/");
    Ok(redirect(false, back))
}

/// The path of the `Referer`, when it is a page of this host.
fn referer_path(headers: &HeaderMap) -> Option<&str> {
    let referer = headers.get("referer")?.to_str().ok()?;
    let host = headers.get("host")?.to_str().ok()?;
    let (_, rest) = referer.split_once("://")?;
    rest.strip_prefix(host)
}

/// `path` when it is a path of this app that a redirect may name: it starts with one `/`, and
/// holds no backslash, control character or space (browsers read `/\evil.example` and
/// `//evil.example` as another host).
fn app_path(path: &str) -> Option<&str> {
    let safe = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 2048
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~?=&%#+:@!$'()*,;".contains(&b));
    safe.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_app_paths_are_gone_back_to() {
        for good in ["/", "/chats/0190a1b2-c3d4", "/devices?x=1#y"] {
            assert_eq!(app_path(good), Some(good));
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\\/evil.example",
            "\\evil.example",
            "https://evil.example/",
            "evil.example",
            "/\tevil",
            "/ x",
            "/é",
            "",
        ] {
            assert_eq!(app_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_referer_counts_only_from_this_host() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "chat.example".parse().unwrap());
        headers.insert(
            "referer",
            "https://chat.example/\\evil.example".parse().unwrap(),
        );
        assert_eq!(referer_path(&headers).and_then(app_path), None);
        headers.insert("referer", "https://chat.example/chats/1".parse().unwrap());
        assert_eq!(referer_path(&headers), Some("/chats/1"));
        headers.insert("referer", "https://chat.example.evil/x".parse().unwrap());
        assert_eq!(referer_path(&headers).and_then(app_path), None);
    }
}
