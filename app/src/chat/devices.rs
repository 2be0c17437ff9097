//! Your chats on another device: a session's browsers (devices), signing one out, and the
//! one-time codes that link another browser to the session. A code is 8 characters of
//! Crockford's base32 (40 bits), shown once, kept only as its SHA-256, valid for
//! [`LINK_LIFETIME`] and for one use; making, looking at and using codes are rate-limited, so
//! that they cannot be guessed.
use std::{net::IpAddr, time::Duration};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    AppState,
    domain::SessionId,
    error::{AppError, AppResult},
    limits::Action,
    session::Session,
    store::device,
};

const WITH_ACCOUNTS: &str = "With accounts, another browser shows your chats once you sign in there: there are no link codes.";

/// Link codes are for anonymous sessions: with accounts, signing in is the way.
fn refuse_with_accounts(state: &AppState) -> AppResult<()> {
    match state.accounts.enabled() {
        true => Err(AppError::Conflict(WITH_ACCOUNTS.into())),
        false => Ok(()),
    }
}

/// How long a link code works.
pub const LINK_LIFETIME: Duration = Duration::from_secs(10 * 60);
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_CHARS: usize = 8;

const USED: &str = "This link code was used already: each one links one browser, once. Make a new one on the Devices page of the browser with the chats.";
const EXPIRED: &str = "This link code has expired: each one works for 10 minutes. Make a new one on the Devices page of the browser with the chats.";
const UNKNOWN: &str = "There is no such link code. Check it against the one shown on the other browser (8 letters and digits), or make a new one there.";
const SAME: &str = "This link is for another browser: this one already has these chats. Open the link, or type the code, in the browser you want to add.";

/// A new link code, shown once.
pub struct NewLink {
    /// As people read and type it: `ABCD-EFGH`.
    pub code: String,
    /// In the link: `ABCDEFGH`.
    pub code_in_url: String,
    pub expires_at: DateTime<Utc>,
}

/// The session's browsers that are signed in, the most recently used first.
#[tracing::instrument(skip_all)]
pub async fn devices(state: &AppState, session: &Session) -> AppResult<Vec<device::Model>> {
    Ok(state.store.list_devices(&session.id).await?)
}

/// Signs one of the session's browsers out: its cookie is refused from its next request on.
#[tracing::instrument(skip_all, fields(%device_id))]
pub async fn sign_out(state: &AppState, session: &Session, device_id: Uuid) -> AppResult<()> {
    match state.store.revoke_device(&session.id, device_id).await? {
        true => {
            state.sessions.devices.forget(device_id);
            Ok(())
        }
        false => Err(AppError::NotFound("device")),
    }
}

/// A one-time code that links another browser to this session.
#[tracing::instrument(skip_all)]
pub async fn new_link(state: &AppState, session: &Session, address: IpAddr) -> AppResult<NewLink> {
    refuse_with_accounts(state)?;
    state
        .rate_limits
        .check(Action::Link, &session.id, address)
        .await?;
    let bytes: [u8; CODE_CHARS] = rand::random();
    let code_in_url: String = bytes
        .iter()
        .map(|b| char::from(CODE_ALPHABET[usize::from(b % 32)]))
        .collect();
    let expires_at = Utc::now() + LINK_LIFETIME;
    state
        .store
        .create_device_link(&session.id, hash(&code_in_url), expires_at)
        .await?;
    Ok(NewLink {
        code: format!("{}-{}", &code_in_url[..4], &code_in_url[4..]),
        code_in_url,
        expires_at,
    })
}

/// Whether `code` can link this browser now (the confirmation page), without using it up.
#[tracing::instrument(skip_all)]
pub async fn check_link(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    code: &str,
) -> AppResult<()> {
    refuse_with_accounts(state)?;
    state
        .rate_limits
        .check(Action::Link, &session.id, address)
        .await?;
    let Some(code) = normalize(code) else {
        return Err(AppError::Gone(UNKNOWN.into()));
    };
    let Some(link) = state.store.find_device_link(&hash(&code)).await? else {
        return Err(AppError::Gone(UNKNOWN.into()));
    };
    if link.used_at.is_some() {
        return Err(AppError::Gone(USED.into()));
    }
    if link.expires_at <= Utc::now() {
        return Err(AppError::Gone(EXPIRED.into()));
    }
    if link.session_id == session.id.as_str() {
        return Err(AppError::Conflict(SAME.into()));
    }
    Ok(())
}

/// Uses `code` up: the session this browser joins. The browser's own device in its old session
/// is signed out (it no longer uses that session).
#[tracing::instrument(skip_all)]
pub async fn redeem_link(
    state: &AppState,
    session: &Session,
    address: IpAddr,
    code: &str,
) -> AppResult<SessionId> {
    check_link(state, session, address, code).await?;
    let code = normalize(code).ok_or_else(|| AppError::Gone(UNKNOWN.into()))?;
    let Some(joined) = state.store.redeem_device_link(&hash(&code)).await? else {
        // Used or expired between the check and now.
        return Err(AppError::Gone(USED.into()));
    };
    let joined = SessionId::parse(&joined)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a link names a malformed session")))?;
    if let Some(device) = session.device {
        state.store.revoke_device(&session.id, device).await?;
        state.sessions.devices.forget(device);
    }
    Ok(joined)
}

/// A code as typed: case and dashes or spaces do not matter, nor O for 0 or I and L for 1.
fn normalize(code: &str) -> Option<String> {
    let code: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| match c.to_ascii_uppercase() {
            'O' => '0',
            'I' | 'L' => '1',
            other => other,
        })
        .collect();
    (code.len() == CODE_CHARS && code.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(code)
}

fn hash(code: &str) -> String {
    Sha256::digest(code.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_read_forgivingly_and_hashed() {
        assert_eq!(normalize("abcd-efgh").as_deref(), Some("ABCDEFGH"));
        assert_eq!(normalize(" o1il 2345 ").as_deref(), Some("01112345"));
        assert_eq!(normalize("ABCDEFG"), None, "too short");
        assert_eq!(normalize("ABCDEFGU"), None, "U is not in the alphabet");
        assert_eq!(normalize("../../x"), None);
        assert_eq!(hash("ABCDEFGH").len(), 64);
        assert_ne!(hash("ABCDEFGH"), hash("ABCDEFGJ"));
    }
}
