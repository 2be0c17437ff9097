//! Anonymous sessions: a random 128-bit id in an encrypted, signed cookie (axum-extra's
//! `PrivateCookieJar`). A missing, tampered or undecryptable cookie silently starts a new session.
use axum::{
    extract::{FromRef, FromRequestParts, Request, State},
    http::request::Parts,
    middleware::Next,
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use base64::Engine;

use crate::error::AppError;

pub const COOKIE_NAME: &str = "chat_session";

/// Cookie settings, shared through the app state.
#[derive(Clone)]
pub struct SessionConfig {
    pub key: Key,
    pub secure: bool,
}

impl FromRef<SessionConfig> for Key {
    fn from_ref(config: &SessionConfig) -> Key {
        config.key.clone()
    }
}

/// A session's id: 128 random bits as 32 lowercase hex digits. Only [`SessionId::parse`] and
/// [`SessionId::random`] make one, so every id the store sees has that shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// A new random id.
    pub fn random() -> Self {
        let bytes: [u8; 16] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The id in a cookie or token, if it has the shape of one.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        valid.then(|| Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SessionId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The visitor's session, put in the request by [`session_layer`].
#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!("session layer missing on this route"))
        })
    }
}

/// Name under which API tokens are encrypted: it is authenticated with the value, so a token is
/// never accepted as a cookie, nor a cookie value as a token.
const TOKEN_NAME: &str = "chat_api_token";

/// An API token for a session: its id, encrypted and authenticated with the session key like the
/// cookie. It is as good as the cookie, for clients without a cookie jar (`Authorization: Bearer`).
pub fn issue_token(key: &Key, session_id: &SessionId) -> String {
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(key)
        .add(cookie::Cookie::new(TOKEN_NAME, session_id.to_string()));
    jar.get(TOKEN_NAME)
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

/// The session id inside a valid token.
fn session_of_token(key: &Key, token: &str) -> Option<SessionId> {
    let mut jar = cookie::CookieJar::new();
    jar.add_original(cookie::Cookie::new(TOKEN_NAME, token.to_owned()));
    jar.private(key)
        .get(TOKEN_NAME)
        .and_then(|c| SessionId::parse(c.value()))
}

/// Finds the session: from `Authorization: Bearer <token>` when present (a bad token is a 401,
/// never a new session), else from the cookie, else a new one (its cookie set on the response).
pub async fn session_layer(
    State(config): State<SessionConfig>,
    jar: PrivateCookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    let bearer = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    if let Some(token) = bearer {
        let Some(id) = session_of_token(&config.key, &token) else {
            return AppError::Unauthorized(
                "The API token is not valid. Get a new one with POST /api/v1/tokens.".into(),
            )
            .into_response();
        };
        request.extensions_mut().insert(Session { id });
        return next.run(request).await;
    }
    let existing = jar
        .get(COOKIE_NAME)
        .and_then(|c| SessionId::parse(c.value()));
    let (id, is_new) = match existing {
        Some(id) => (id, false),
        None => (SessionId::random(), true),
    };
    request.extensions_mut().insert(Session { id: id.clone() });
    let response = next.run(request).await;
    if !is_new {
        return response;
    }
    let cookie = Cookie::build((COOKIE_NAME, id.to_string()))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(config.secure)
        .max_age(time_year())
        .build();
    (jar.add(cookie), response).into_response()
}

fn time_year() -> time::Duration {
    time::Duration::days(365)
}

/// Decodes `SESSION_KEY`: base64 (standard or URL-safe) of at least 64 bytes.
pub fn parse_key(encoded: &str) -> anyhow::Result<Key> {
    let trimmed = encoded.trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(trimmed))
        .map_err(|_| anyhow::anyhow!("SESSION_KEY is not valid base64; expected base64 of at least 64 random bytes, e.g. the output of `openssl rand -base64 64`"))?;
    if bytes.len() < 64 {
        anyhow::bail!(
            "SESSION_KEY decodes to {} bytes; expected at least 64 random bytes, e.g. the output of `openssl rand -base64 64`",
            bytes.len()
        );
    }
    Key::try_from(bytes.as_slice()).map_err(|e| anyhow::anyhow!("SESSION_KEY is unusable: {e}"))
}

/// The key from `SESSION_KEY`, or else the one kept in `data_dir/session.key`, generated (mode
/// 0600) on first start so that sessions survive restarts.
pub fn load_or_create_key(
    configured: Option<&str>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Key> {
    if let Some(encoded) = configured {
        return parse_key(encoded);
    }
    let path = data_dir.join("session.key");
    match std::fs::read_to_string(&path) {
        Ok(encoded) => {
            return parse_key(&encoded).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display()))?;
    let mut bytes = [0u8; 64];
    rand::fill(&mut bytes);
    let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
    write_private(&path, &encoded)?;
    tracing::warn!(
        path = %path.display(),
        "SESSION_KEY is not set: generated a session key and saved it; set SESSION_KEY to manage it yourself"
    );
    parse_key(&encoded)
}

fn write_private(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_base64_of_64_bytes() {
        assert!(parse_key("not base64!").is_err());
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(
            parse_key(&short)
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
        assert!(parse_key(&good).is_ok());
    }

    #[test]
    fn generated_key_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_key(None, dir.path()).unwrap();
        let second = load_or_create_key(None, dir.path()).unwrap();
        assert_eq!(first.master(), second.master());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("session.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn session_ids_are_128_bit_hex() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(id.as_str()), Some(id.clone()));
        assert_ne!(id, SessionId::random());
        assert_eq!(SessionId::parse("../etc"), None);
        assert_eq!(SessionId::parse(&"A".repeat(32)), None);
    }
}
