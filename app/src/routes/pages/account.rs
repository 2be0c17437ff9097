//! Signing in and out (`AUTH_MODE=oidc`; `header` mode's proxy signs people in itself):
//! `/login` sends the browser to the provider, `/auth/callback` signs it in, `/logout` (and
//! `/logout/everywhere`) signs out, and `/account/bring` offers a browser's anonymous chats from
//! before its first sign-in to the account. `/login` and the callback run outside the session
//! layer: whoever reaches them is not signed in yet.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{
    extract::{Query, State},
    http::HeaderMap,
    response::{Html, IntoResponse, Redirect, Response},
};
use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    accounts::{
        AuthMode,
        oidc::{Pending, SIGN_IN_WINDOW, SignInError},
    },
    chat,
    domain::SessionId,
    error::{AppError, AppResult},
    routes::{Htmx, redirect, render},
    session::{self, Session},
};

/// The sign-in under way (an encrypted [`Pending`]), sent back only to the callback.
const LOGIN_COOKIE: &str = "chat_login";
/// This browser's anonymous session from before it signed in, while the offer to bring its
/// chats in stands.
const BRING_COOKIE: &str = "chat_bring";
const BRING_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn cookie(
    name: &'static str,
    value: String,
    path: &'static str,
    secure: bool,
    life: Duration,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .http_only(true)
        // Lax: the provider's redirect back is a top-level navigation from another site.
        .same_site(SameSite::Lax)
        .path(path)
        .secure(secure)
        .max_age(time::Duration::seconds(
            i64::try_from(life.as_secs()).unwrap_or(i64::MAX),
        ))
        .build()
}

/// A path of this site to go on to (anything else, such as `//evil.example`, is `/`).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn provider(state: &AppState) -> AppResult<&crate::accounts::oidc::Provider> {
    state
        .accounts
        .provider
        .as_ref()
        .ok_or(AppError::NotFound("page"))
}

impl From<SignInError> for AppError {
    fn from(error: SignInError) -> Self {
        let message = error.to_string();
        match error {
            SignInError::ProviderDown { .. } => AppError::Unavailable(message),
            SignInError::NotThisSignIn(_) => AppError::BadRequest(message),
            SignInError::Refused(_) | SignInError::Incomplete(_) => AppError::Forbidden(message),
            SignInError::Unverified(_) => AppError::Unauthorized(message),
        }
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /login`: to the provider, with a new state, nonce and PKCE challenge.
pub async fn login(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let provider = provider(&state)?;
    // A browser that chatted before accounts were on keeps its anonymous session in its
    // cookie: its chats are offered to the account after the sign-in.
    let label = session::request_label(&headers);
    let anonymous = match session::device_of_cookie(&state.sessions, &jar, &label).await {
        Ok((Some(known), _)) if known.user.is_none() => Some(known.id.as_str().to_owned()),
        _ => None,
    };
    let next = local_path(query.next.as_deref());
    let (url, pending) = provider.begin(next, anonymous, now_seconds()).await?;
    let value = serde_json::to_string(&pending).map_err(anyhow::Error::from)?;
    let jar = jar.add(cookie(
        LOGIN_COOKIE,
        value,
        "/auth/callback",
        state.config.cookie_secure,
        SIGN_IN_WINDOW,
    ));
    Ok((jar, Redirect::to(url.as_str())).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/callback`: the provider's answer. The sign-in this browser started must match it
/// (state), and is used up here whatever happens, so a callback replayed is refused.
pub async fn callback(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let pending = jar
        .get(LOGIN_COOKIE)
        .and_then(|c| serde_json::from_str::<Pending>(c.value()).ok());
    let jar = jar.remove(Cookie::build(LOGIN_COOKIE).path("/auth/callback"));
    match signed_in(&state, pending, query, &session::request_label(&headers)).await {
        Ok((session_id, device, next, anonymous)) => {
            let mut jar = session::with_session_cookie(
                jar,
                state.config.cookie_secure,
                &session_id,
                device,
                false,
            );
            let mut to = next;
            if let Some(anonymous) = anonymous {
                jar = jar.add(cookie(
                    BRING_COOKIE,
                    anonymous,
                    "/",
                    state.config.cookie_secure,
                    BRING_LIFETIME,
                ));
                to = "/account/bring".into();
            }
            (jar, Redirect::to(&to)).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "a sign-in was refused");
            (jar, e).into_response()
        }
    }
}

/// The session and new device of the person the callback signs in, where to go, and their
/// anonymous session if it has chats to offer.
async fn signed_in(
    state: &AppState,
    pending: Option<Pending>,
    query: CallbackQuery,
    label: &str,
) -> AppResult<(SessionId, uuid::Uuid, String, Option<String>)> {
    let provider = provider(state)?;
    let pending = pending.ok_or_else(|| {
        AppError::BadRequest(
            "This sign-in answer does not belong to a sign-in this browser started, or it was used already, so nobody was signed in. Please sign in again.".into(),
        )
    })?;
    if let Some(error) = query.error {
        let why = query.error_description.unwrap_or(error);
        return Err(SignInError::Refused(why).into());
    }
    let (Some(code), Some(answer_state)) = (query.code, query.state) else {
        return Err(AppError::BadRequest(
            "The sign-in answer has no code: please sign in again.".into(),
        ));
    };
    let identity = provider
        .finish(&pending, &code, &answer_state, now_seconds())
        .await?;
    let user = chat::account::sign_in(state, &identity).await?;
    let session_id = SessionId::parse(&user.session_id)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a user's session id is malformed")))?;
    let device = uuid::Uuid::now_v7();
    state
        .store
        .register_user_device(user.id, &session_id, device, label)
        .await?;
    let mut anonymous = None;
    if let Some(from) = pending.anonymous.as_deref().and_then(SessionId::parse)
        && chat::account::anonymous_chats(state, &from).await? > 0
    {
        anonymous = Some(from.as_str().to_owned());
    }
    Ok((session_id, device, pending.next, anonymous))
}

#[derive(Serialize)]
struct SignedOutPage {
    /// `AUTH_MODE=header`: the proxy keeps its own sign-in.
    proxy: bool,
    /// The provider's own sign-out (RP-initiated logout), when it offers one and the browser
    /// has not just come back from it.
    provider_logout: Option<String>,
}

#[derive(Deserialize)]
pub struct SignedOutQuery {
    from: Option<String>,
}

/// `GET /signed-out`: where a browser lands after signing out, with a link to sign out at the
/// provider too. (A link, not a redirect from the sign-out form: the CSP's `form-action 'self'`
/// rightly stops a form's redirect to another site.)
pub async fn signed_out(
    State(state): State<AppState>,
    Query(query): Query<SignedOutQuery>,
) -> AppResult<Html<String>> {
    let provider_logout = match (&state.accounts.provider, query.from.as_deref()) {
        (Some(provider), None) => provider.logout_url().await.map(|url| url.to_string()),
        _ => None,
    };
    render(
        &state,
        "signed_out.html",
        SignedOutPage {
            proxy: state.accounts.settings.mode == AuthMode::Header,
            provider_logout,
        },
    )
}

/// After signing out: the cookie goes, and the browser to `/signed-out`.
fn after_sign_out(state: &AppState, jar: PrivateCookieJar, htmx: bool) -> Response {
    let jar = session::without_session_cookie(jar, state.config.cookie_secure);
    (jar, redirect(htmx, "/signed-out")).into_response()
}

/// `POST /logout`: this browser only.
pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    jar: PrivateCookieJar,
    Htmx(htmx): Htmx,
) -> AppResult<Response> {
    require_accounts(&state)?;
    chat::account::sign_out(&state, &session).await?;
    Ok(after_sign_out(&state, jar, htmx))
}

/// `POST /logout/everywhere`: every browser and API token of the account.
pub async fn logout_everywhere(
    State(state): State<AppState>,
    session: Session,
    jar: PrivateCookieJar,
    Htmx(htmx): Htmx,
) -> AppResult<Response> {
    require_accounts(&state)?;
    chat::account::sign_out_everywhere(&state, &session).await?;
    Ok(after_sign_out(&state, jar, htmx))
}

fn require_accounts(state: &AppState) -> AppResult<()> {
    match state.accounts.enabled() {
        true => Ok(()),
        false => Err(AppError::NotFound("page")),
    }
}

#[derive(Serialize)]
struct BringPage {
    frame: crate::routes::views::Frame,
    chats: u64,
}

fn offered(jar: &PrivateCookieJar) -> Option<SessionId> {
    jar.get(BRING_COOKIE)
        .and_then(|c| SessionId::parse(c.value()))
}

fn without_offer(jar: PrivateCookieJar) -> PrivateCookieJar {
    jar.remove(Cookie::build(BRING_COOKIE).path("/"))
}

/// `GET /account/bring`: the offer (it only asks).
pub async fn bring_offer(
    State(state): State<AppState>,
    session: Session,
    jar: PrivateCookieJar,
) -> AppResult<Response> {
    let chats = match offered(&jar) {
        Some(from) => chat::account::anonymous_chats(&state, &from).await?,
        None => 0,
    };
    if chats == 0 {
        return Ok((without_offer(jar), Redirect::to("/")).into_response());
    }
    let sidebar = chat::sidebar(&state, &session).await?;
    let page = render(
        &state,
        "bring.html",
        BringPage {
            frame: sidebar.into(),
            chats,
        },
    )?;
    Ok(page.into_response())
}

/// `POST /account/bring`: the chats come into the account.
pub async fn bring(
    State(state): State<AppState>,
    session: Session,
    jar: PrivateCookieJar,
    Htmx(htmx): Htmx,
) -> AppResult<Response> {
    if let Some(from) = offered(&jar) {
        let moved = chat::account::bring_chats(&state, &session, &from).await?;
        tracing::info!(moved, "brought anonymous chats into an account");
    }
    Ok((without_offer(jar), redirect(htmx, "/")).into_response())
}

/// `POST /account/bring/skip`: the offer is withdrawn; the chats stay where they were.
pub async fn skip_bring(jar: PrivateCookieJar, Htmx(htmx): Htmx) -> Response {
    (without_offer(jar), redirect(htmx, "/")).into_response()
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn only_this_sites_paths_are_gone_on_to() {
        assert_eq!(local_path(Some("/chats/1?x=2")), "/chats/1?x=2");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(None), "/");
    }
}
