//! The operator: whoever holds `ADMIN_TOKEN`. The changes to the machine (downloading and
//! removing models, choosing the default) are theirs alone: an API call sends
//! `Authorization: Bearer $ADMIN_TOKEN` (no session: the session layer lets it through as an
//! [`OperatorCall`], `session.rs`), a browser signs in at `/admin` with the token and then carries an encrypted
//! cookie for [`SIGN_IN_LIFETIME`]. Without `ADMIN_TOKEN` nobody is the operator.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::session::{OperatorCall, is_admin_token};
use crate::{AppState, error::AppError, session::Session};
use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, request::Parts},
};
use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};

/// The cookie of a browser signed in at `/admin`: its value is when the sign-in ends.
pub const COOKIE: &str = "chat_operator";
/// How long a browser stays signed in as the operator.
pub const SIGN_IN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A request made by the operator (an extractor: anyone else is refused). Only this module
/// makes one, so a use case that takes it cannot be reached without the check.
#[derive(Clone, Copy, Debug)]
pub struct Operator(());

/// Who a request comes from, as far as operator actions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Operator,
    /// `ADMIN_TOKEN` is not set: nobody may.
    NoOperator,
    /// No token and no sign-in.
    Visitor,
    /// A bearer that is not the operator's (nor a session's, on these routes).
    WrongToken,
    /// Accounts are on and the person signed in is not an admin.
    NotAdmin,
}

/// Where a request stands: with accounts on, an admin's session (or the operator's bearer, for
/// scripts); otherwise the bearer first, else the sign-in cookie.
pub fn standing(state: &AppState, headers: &HeaderMap, session: Option<&Session>) -> Standing {
    if state.accounts.enabled() {
        if session
            .and_then(|s| s.account.as_ref())
            .is_some_and(|account| account.admin)
        {
            return Standing::Operator;
        }
        let bearer = crate::session::bearer(headers);
        return match (state.config.admin_token.as_deref(), bearer) {
            (Some(configured), Some(token)) if is_admin_token(Some(configured), token) => {
                Standing::Operator
            }
            _ => Standing::NotAdmin,
        };
    }
    let Some(configured) = state.config.admin_token.as_deref() else {
        return Standing::NoOperator;
    };
    if let Some(token) = crate::session::bearer(headers) {
        return match is_admin_token(Some(configured), token) {
            true => Standing::Operator,
            false => Standing::WrongToken,
        };
    }
    let jar = PrivateCookieJar::from_headers(headers, state.sessions.key.clone());
    let until = jar.get(COOKIE).and_then(|c| c.value().parse::<u64>().ok());
    match until {
        Some(until) if until > now_seconds() => Standing::Operator,
        _ => Standing::Visitor,
    }
}

/// The operator, when the request is theirs.
pub fn operator_of(
    state: &AppState,
    headers: &HeaderMap,
    session: Option<&Session>,
) -> Option<Operator> {
    (standing(state, headers, session) == Standing::Operator).then_some(Operator(()))
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let session = parts.extensions.get::<Session>();
        match standing(state, &parts.headers, session) {
            Standing::Operator => Ok(Operator(())),
            Standing::NoOperator => Err(AppError::Forbidden(
                "Only the operator may change the model library, and none is configured: set ADMIN_TOKEN.".into(),
            )),
            Standing::Visitor => Err(AppError::Unauthorized(
                "This is the operator's: send Authorization: Bearer with ADMIN_TOKEN, or sign in at /admin.".into(),
            )),
            Standing::WrongToken => Err(AppError::Forbidden(
                "That is not the operator's token.".into(),
            )),
            Standing::NotAdmin => Err(AppError::Forbidden(
                "Only the app's admins may do this (ADMIN_EMAILS, ADMIN_GROUPS).".into(),
            )),
        }
    }
}

/// `jar` with the operator's sign-in cookie.
pub fn sign_in(jar: PrivateCookieJar, secure: bool) -> PrivateCookieJar {
    let until = now_seconds() + SIGN_IN_LIFETIME.as_secs();
    jar.add(
        Cookie::build((COOKIE, until.to_string()))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .secure(secure)
            .max_age(time::Duration::seconds(
                i64::try_from(SIGN_IN_LIFETIME.as_secs()).unwrap_or(i64::MAX),
            ))
            .build(),
    )
}

/// `jar` without it.
pub fn sign_out(jar: PrivateCookieJar) -> PrivateCookieJar {
    jar.remove(Cookie::build(COOKIE).path("/"))
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::is_admin_token;

    #[test]
    fn only_the_configured_token_is_the_operators() {
        assert!(is_admin_token(
            Some("s3cret-s3cret-s3cret"),
            "s3cret-s3cret-s3cret"
        ));
        assert!(!is_admin_token(Some("s3cret-s3cret-s3cret"), "s3cret"));
        assert!(!is_admin_token(None, "anything"));
        assert!(!is_admin_token(Some(""), ""));
    }
}
