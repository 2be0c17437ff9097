//! Anonymous sessions: a random 128-bit id in an encrypted, signed cookie (axum-extra's
//! `PrivateCookieJar`). A missing, tampered or undecryptable cookie silently starts a new session.
//!
//! The cookie also names the browser's *device* (`{session}.{device}`): a session may be used
//! from several browsers (linked with a one-time code, `chat::devices`), and each can be signed
//! out on its own. A request with a cookie checks its device's row (one primary-key read), and
//! the replica then trusts that answer for [`DEVICE_CHECK_TTL`]: a read per request cost a
//! quarter of the cached chat page's throughput. A device signed out is refused at once on the
//! replica that signed it out (it forgets its answer) and within that second on the others;
//! that browser then starts afresh. The row is written on the device's second request (so
//! one-off visitors cost nothing) and its "last used" at most every [`RENEW_AFTER`], when the
//! cookie's lifetime is renewed too.
use std::time::Duration;

use axum::{
    extract::{FromRef, FromRequestParts, Request, State},
    http::{header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use base64::Engine;
use chrono::Utc;
use uuid::Uuid;

use crate::{error::AppError, store::Store};

/// The cookie over plain HTTP (`COOKIE_SECURE` off).
pub const COOKIE_NAME: &str = "chat_session";
/// The cookie with `COOKIE_SECURE`: the `__Host-` prefix makes browsers take it only over HTTPS,
/// for this host alone (no `Domain`) and the whole site, so no subdomain can set or shadow it.
pub const HOST_COOKIE_NAME: &str = "__Host-chat_session";

/// How long a device's "last used" may lag, and how often its cookie's lifetime is renewed.
pub const RENEW_AFTER: Duration = Duration::from_secs(3600);

/// How long a replica trusts that a device may go on before it reads its row again.
pub const DEVICE_CHECK_TTL: Duration = Duration::from_secs(1);

/// Devices this replica found signed in, and when it last read each one's row.
#[derive(Default)]
pub struct DevicesSeen {
    seen: std::sync::Mutex<std::collections::HashMap<Uuid, SeenDevice>>,
}

#[derive(Clone)]
struct SeenDevice {
    session: SessionId,
    checked: std::time::Instant,
    last_used: chrono::DateTime<Utc>,
    user: Option<Uuid>,
}

/// At most this many devices are remembered; past it the memory starts over.
const DEVICES_SEEN_MAX: usize = 100_000;

impl DevicesSeen {
    fn recent(&self, device: Uuid) -> Option<SeenDevice> {
        let seen = self.lock();
        seen.get(&device)
            .filter(|d| d.checked.elapsed() < DEVICE_CHECK_TTL)
            .cloned()
    }

    fn remember(
        &self,
        device: Uuid,
        session: SessionId,
        last_used: chrono::DateTime<Utc>,
        user: Option<Uuid>,
    ) {
        let mut seen = self.lock();
        if seen.len() >= DEVICES_SEEN_MAX {
            seen.clear();
        }
        seen.insert(
            device,
            SeenDevice {
                session,
                checked: std::time::Instant::now(),
                last_used,
                user,
            },
        );
    }

    /// A device signed out here is refused from the next request on.
    pub fn forget(&self, device: Uuid) {
        self.lock().remove(&device);
    }

    /// Every device is read again from its next request on (many signed out at once).
    pub fn forget_all(&self) {
        self.lock().clear();
    }

    /// A poisoned lock is recovered: each update is one insert or remove.
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Uuid, SeenDevice>> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The session cookie's name for this configuration.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        HOST_COOKIE_NAME
    } else {
        COOKIE_NAME
    }
}

/// Cookie settings, shared through the app state; the store checks each cookie's device.
#[derive(Clone)]
pub struct SessionConfig {
    pub key: Key,
    pub secure: bool,
    /// `ADMIN_TOKEN`: a bearer equal to it is the operator's, not a session's.
    pub admin_token: Option<std::sync::Arc<str>>,
    pub store: Store,
    pub devices: std::sync::Arc<DevicesSeen>,
}

impl FromRef<SessionConfig> for Key {
    fn from_ref(config: &SessionConfig) -> Key {
        config.key.clone()
    }
}

use crate::domain::SessionId;

/// The visitor's session, put in the request by [`session_layer`].
#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    /// The browser it came from, or the device an API token belongs to (always set by
    /// [`session_layer`]).
    pub device: Option<Uuid>,
    /// The person signed in (accounts on); `None` in anonymous mode.
    pub account: Option<std::sync::Arc<Account>>,
}

/// A signed-in person, as a request sees them (`accounts` puts it in the [`Session`]).
#[derive(Clone, Debug)]
pub struct Account {
    pub user_id: Uuid,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Named by `ADMIN_EMAILS` or `ADMIN_GROUPS`: the operator's controls are theirs.
    pub admin: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(session) = parts.extensions.get::<Session>() {
            return Ok(session.clone());
        }
        if parts.extensions.get::<OperatorCall>().is_some() {
            return Err(AppError::Unauthorized(
                "The operator's token opens the operator's endpoints only: this one needs a session's API token (POST /api/v1/tokens).".into(),
            ));
        }
        Err(AppError::Internal(anyhow::anyhow!(
            "session layer missing on this route"
        )))
    }
}

/// Put in a response's extensions by a handler that moves this browser to another session (a
/// device link): the session layer then writes that cookie instead.
#[derive(Clone, Debug)]
pub struct SwitchSession {
    pub id: SessionId,
    pub device: Uuid,
}

/// The cookie's value: the session and the device.
fn cookie_value(id: &SessionId, device: Uuid) -> String {
    format!("{id}.{}", device.simple())
}

/// A cookie's session and device; cookies from before devices carry only the session.
fn parse_cookie_value(value: &str) -> Option<(SessionId, Option<Uuid>)> {
    match value.split_once('.') {
        Some((id, device)) => Some((SessionId::parse(id)?, Some(Uuid::parse_str(device).ok()?))),
        None => Some((SessionId::parse(value)?, None)),
    }
}

/// A short, readable name for a browser from its `User-Agent` ("Firefox on Linux").
pub fn device_label(user_agent: &str) -> String {
    let has = |needle: &str| user_agent.contains(needle);
    let browser = if has("Firefox/") {
        "Firefox"
    } else if has("Edg/") {
        "Edge"
    } else if has("OPR/") {
        "Opera"
    } else if has("Chrome/") || has("Chromium/") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else if has("curl/") {
        "curl"
    } else {
        "A browser"
    };
    let system = if has("Android") {
        Some("Android")
    } else if has("iPhone") || has("iPad") {
        Some("iOS")
    } else if has("Mac OS X") || has("Macintosh") {
        Some("macOS")
    } else if has("Windows") {
        Some("Windows")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    };
    match system {
        Some(system) => format!("{browser} on {system}"),
        None => browser.to_owned(),
    }
}

/// Put in a request by the session layer when its bearer is the operator's token
/// (`ADMIN_TOKEN`): such a request carries no session (operator.rs checks the token).
#[derive(Clone, Copy, Debug)]
pub struct OperatorCall;

/// Whether `given` is the operator's token. Both are hashed before comparing, so the time the
/// comparison takes says nothing about the token.
pub fn is_admin_token(configured: Option<&str>, given: &str) -> bool {
    use sha2::{Digest, Sha256};
    configured.is_some_and(|configured| {
        !configured.is_empty() && Sha256::digest(configured) == Sha256::digest(given)
    })
}

/// Name under which API tokens are encrypted: it is authenticated with the value, so a token is
/// never accepted as a cookie, nor a cookie value as a token.
const TOKEN_NAME: &str = "chat_api_token";

/// An API token for a session's device: both ids, encrypted and authenticated with the session
/// key like the cookie, for clients without a cookie jar (`Authorization: Bearer`). A token minted
/// from a browser's cookie belongs to that browser's device: signing the device out on
/// `/devices` ends its tokens too, on every replica within [`DEVICE_CHECK_TTL`].
pub fn issue_token(key: &Key, session_id: &SessionId, device: Uuid) -> String {
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(key).add(cookie::Cookie::new(
        TOKEN_NAME,
        cookie_value(session_id, device),
    ));
    jar.get(TOKEN_NAME)
        .map(|c| c.value().to_owned())
        .unwrap_or_default()
}

/// The session and device inside a valid token (tokens from before devices name no device).
fn session_of_token(key: &Key, token: &str) -> Option<(SessionId, Option<Uuid>)> {
    let mut jar = cookie::CookieJar::new();
    jar.add_original(cookie::Cookie::new(TOKEN_NAME, token.to_owned()));
    jar.private(key)
        .get(TOKEN_NAME)
        .and_then(|c| parse_cookie_value(c.value()))
}

/// The token of `Authorization: Bearer <token>`, if the request has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// A device the session layer found signed in: its session, and whether its cookie is due for
/// renewal; `user` is the account it is signed in to, if any.
#[derive(Clone, Debug)]
pub struct KnownDevice {
    pub id: SessionId,
    pub device: Uuid,
    pub renew: bool,
    pub user: Option<Uuid>,
}

/// The browser's label for its device row, from the request's `User-Agent`.
pub fn request_label(headers: &axum::http::HeaderMap) -> String {
    device_label(
        headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

/// The device an API token names, if it may go on; otherwise the 401 to answer.
pub async fn device_of_token(
    config: &SessionConfig,
    token: &str,
    label: &str,
) -> Result<KnownDevice, Response> {
    let refused = |why: &str| {
        AppError::Unauthorized(format!("{why} Get a new one with POST /api/v1/tokens."))
            .into_response()
    };
    let (id, device) = match session_of_token(&config.key, token) {
        Some((id, Some(device))) => (id, device),
        // It could never be signed out: refused since tokens belong to devices.
        Some((_, None)) => {
            return Err(refused(
                "This API token is from before tokens belonged to a device.",
            ));
        }
        None => return Err(refused("The API token is not valid.")),
    };
    match check_device(config, (id, Some(device)), label).await {
        Ok(Some(known)) => Ok(known),
        Ok(None) => Err(refused("The API token's device was signed out.")),
        Err(e) => Err(e.into_response()),
    }
}

/// The session and device the request's cookie names (`None` without a readable one), and
/// whether it came under the plain cookie's name while `COOKIE_SECURE` is on (to be moved).
pub fn cookie_of(
    jar: &PrivateCookieJar,
    secure: bool,
) -> (Option<(SessionId, Option<Uuid>)>, bool) {
    let current = jar
        .get(cookie_name(secure))
        .and_then(|c| parse_cookie_value(c.value()));
    // Turning COOKIE_SECURE on keeps the sessions of the plain cookie, moved to the new name.
    let legacy = match (&current, secure) {
        (None, true) => jar
            .get(COOKIE_NAME)
            .and_then(|c| parse_cookie_value(c.value())),
        _ => None,
    };
    let moving = legacy.is_some();
    (current.or(legacy), moving)
}

/// The device the request's cookie names, if it may go on (see [`check_device`]), and whether
/// its cookie moves to the `__Host-` name.
pub async fn device_of_cookie(
    config: &SessionConfig,
    jar: &PrivateCookieJar,
    label: &str,
) -> Result<(Option<KnownDevice>, bool), AppError> {
    let (found, moving) = cookie_of(jar, config.secure);
    let known = match found {
        Some(found) => check_device(config, found, label).await?,
        None => None,
    };
    Ok((known, moving))
}

/// `jar` with the session cookie naming `id` and `device` (and without the plain one when it
/// moved to the `__Host-` name).
pub fn with_session_cookie(
    jar: PrivateCookieJar,
    secure: bool,
    id: &SessionId,
    device: Uuid,
    moving: bool,
) -> PrivateCookieJar {
    let cookie = Cookie::build((cookie_name(secure), cookie_value(id, device)))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .max_age(time_year())
        .build();
    let jar = jar.add(cookie);
    if moving {
        jar.remove(Cookie::build(COOKIE_NAME).path("/"))
    } else {
        jar
    }
}

/// `jar` without the session cookie (a browser signed out of its account).
pub fn without_session_cookie(jar: PrivateCookieJar, secure: bool) -> PrivateCookieJar {
    jar.remove(Cookie::build(cookie_name(secure)).path("/"))
}

/// Finds the session: from `Authorization: Bearer <token>` when present (a bad token is a 401,
/// never a new session), else from the cookie and its device, else a new one (its cookie set on
/// the response). A signed-out device's cookie is a new session too. With accounts on,
/// `accounts::account_layer` takes this one's place.
pub async fn session_layer(
    State(config): State<SessionConfig>,
    jar: PrivateCookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    let label = request_label(request.headers());
    if let Some(token) = bearer(request.headers()).map(str::to_owned) {
        // The operator's calls carry no session (operator.rs checks the token).
        if is_admin_token(config.admin_token.as_deref(), &token) {
            request.extensions_mut().insert(OperatorCall);
            return next.run(request).await;
        }
        return match device_of_token(&config, &token, &label).await {
            Ok(known) => {
                request.extensions_mut().insert(Session {
                    id: known.id,
                    device: Some(known.device),
                    account: None,
                });
                next.run(request).await
            }
            Err(refused) => refused,
        };
    }
    let (known, moving) = match device_of_cookie(&config, &jar, &label).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let (id, device, renew) = match known {
        Some(known) => (known.id, known.device, known.renew || moving),
        // A new visitor, or a device signed out: a new session, registered on its next request.
        None => (SessionId::random(), Uuid::now_v7(), true),
    };
    request.extensions_mut().insert(Session {
        id: id.clone(),
        device: Some(device),
        account: None,
    });
    let mut response = next.run(request).await;
    let (id, device) = match response.extensions_mut().remove::<SwitchSession>() {
        Some(switch) => (switch.id, switch.device),
        None if renew => (id, device),
        None => return response,
    };
    let jar = with_session_cookie(jar, config.secure, &id, device, moving);
    (jar, response).into_response()
}

/// The cookie's session and device if the device may go on, and whether its cookie is due for
/// renewal; `None` when it was signed out. A device seen for the first time is recorded (a
/// cookie from before devices gets a device of its own, and a new cookie).
async fn check_device(
    config: &SessionConfig,
    (id, device): (SessionId, Option<Uuid>),
    label: &str,
) -> Result<Option<KnownDevice>, AppError> {
    let store = &config.store;
    let Some(device) = device else {
        let device = Uuid::now_v7();
        store.register_device(&id, device, label).await?;
        config
            .devices
            .remember(device, id.clone(), Utc::now(), None);
        return Ok(Some(KnownDevice {
            id,
            device,
            renew: true,
            user: None,
        }));
    };
    let (last_used, user) = match config.devices.recent(device) {
        Some(seen) if seen.session == id => (seen.last_used, seen.user),
        _ => match store.find_device(device).await? {
            None => {
                store.register_device(&id, device, label).await?;
                (Utc::now(), None)
            }
            Some(row) if row.session_id == id.as_str() && row.revoked_at.is_none() => {
                (row.last_used_at, row.user_id)
            }
            Some(_) => return Ok(None),
        },
    };
    let idle = (Utc::now() - last_used).to_std().unwrap_or_default();
    let renew = idle >= RENEW_AFTER;
    let last_used = if renew {
        store.touch_device(device).await?;
        Utc::now()
    } else {
        last_used
    };
    config.devices.remember(device, id.clone(), last_used, user);
    Ok(Some(KnownDevice {
        id,
        device,
        renew,
        user,
    }))
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
}
