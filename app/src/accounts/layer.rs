//! The session layer with accounts on (`AUTH_MODE=oidc` or `header`), in place of
//! `session::session_layer`: every request must be a signed-in person's. A browser's cookie
//! names a device signed in to its user's session (checked as in anonymous mode: its row once a
//! second per replica); an API token names such a device too. With `header`, the proxy's header
//! names the person on each request, and only a connection from `TRUSTED_PROXIES` may send it.
//! Anyone else is sent to `/login` (pages) or answered 401 (the API).
use std::{net::SocketAddr, sync::Arc, time::Instant};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::PrivateCookieJar;
use uuid::Uuid;

use super::{AccountSettings, AuthMode, oidc::Provider};
use crate::{
    AppState,
    domain::SessionId,
    error::AppError,
    session::{self, Account, KnownDevice, OperatorCall, Session},
    store::{SignedInAs, Store, user},
};

/// How long a replica trusts what it read of a user (disabled or not, e-mail) before reading
/// the row again: the same second as a device's.
const USER_CHECK_TTL: std::time::Duration = session::DEVICE_CHECK_TTL;
/// At most this many users are remembered; past it the memory starts over.
const USERS_SEEN_MAX: usize = 100_000;

/// Accounts as this replica runs them: the settings, the OpenID provider, and the users it
/// read in the last second.
pub struct Accounts {
    pub settings: AccountSettings,
    pub provider: Option<Provider>,
    seen: std::sync::Mutex<std::collections::HashMap<String, (Instant, Option<SeenUser>)>>,
}

#[derive(Clone)]
struct SeenUser {
    session: SessionId,
    account: Arc<Account>,
}

impl Accounts {
    pub fn new(settings: AccountSettings) -> anyhow::Result<Self> {
        let provider = match &settings.oidc {
            Some(oidc) => Some(Provider::new(oidc.clone())?),
            None => None,
        };
        Ok(Self {
            settings,
            provider,
            seen: Default::default(),
        })
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled()
    }

    fn account_of(&self, row: &user::Model) -> Option<SeenUser> {
        let session = SessionId::parse(&row.session_id)?;
        (row.disabled_at.is_none()).then(|| SeenUser {
            session,
            account: Arc::new(Account {
                user_id: row.id,
                email: row.email.clone(),
                name: row.name.clone(),
                admin: self
                    .settings
                    .is_admin(row.email.as_deref(), row.in_admin_group),
            }),
        })
    }

    /// A user by a key (`id:{uuid}` or their subject), from this second's memory or `read`.
    async fn remembered(
        &self,
        key: String,
        read: impl Future<Output = Result<Option<user::Model>, AppError>>,
    ) -> Result<Option<SeenUser>, AppError> {
        if let Some((checked, seen)) = self.lock().get(&key)
            && checked.elapsed() < USER_CHECK_TTL
        {
            return Ok(seen.clone());
        }
        let seen = read.await?.and_then(|row| self.account_of(&row));
        let mut memory = self.lock();
        if memory.len() >= USERS_SEEN_MAX {
            memory.clear();
        }
        memory.insert(key, (Instant::now(), seen.clone()));
        Ok(seen)
    }

    /// The signed-in person of a device's user, unless they are disabled (or gone).
    async fn user(&self, store: &Store, user_id: Uuid) -> Result<Option<SeenUser>, AppError> {
        self.remembered(format!("id:{user_id}"), async {
            Ok(store.find_user(user_id).await?)
        })
        .await
    }

    /// The person a trusted proxy names, created on their first request.
    async fn proxied_user(&self, store: &Store, name: &str) -> Result<Option<SeenUser>, AppError> {
        let subject = format!("header:{name}");
        self.remembered(subject.clone(), async {
            if let Some(row) = store.find_user_by_subject(&subject).await? {
                return Ok(Some(row));
            }
            let email = name.contains('@').then(|| name.to_owned());
            Ok(Some(
                store
                    .sign_in_user(&SignedInAs {
                        subject: subject.clone(),
                        email,
                        name: None,
                        in_admin_group: false,
                    })
                    .await?,
            ))
        })
        .await
    }

    /// A user disabled or enabled here is read again from the next request on (the other
    /// replicas read it within [`USER_CHECK_TTL`]).
    pub fn forget_users(&self) {
        self.lock().clear();
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (Instant, Option<SeenUser>)>>
    {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// See the module's comment.
pub async fn account_layer(
    State(state): State<AppState>,
    jar: PrivateCookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    let accounts = &state.accounts;
    let config = &state.sessions;
    let label = session::request_label(request.headers());
    if let Some(proxy) = &accounts.settings.proxy {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if !peer.is_some_and(|peer| proxy.trusts(peer)) {
            tracing::warn!(
                ?peer,
                "refused a request that did not come through the sign-in proxy"
            );
            return AppError::Forbidden(
                "This app signs people in through a proxy, and this request did not come through it.".into(),
            )
            .into_response();
        }
    }
    if let Some(token) = session::bearer(request.headers()).map(str::to_owned) {
        if session::is_admin_token(config.admin_token.as_deref(), &token) {
            request.extensions_mut().insert(OperatorCall);
            return next.run(request).await;
        }
        let known = match session::device_of_token(config, &token, &label).await {
            Ok(known) => known,
            Err(refused) => return refused,
        };
        let Some(user_id) = known.user else {
            return AppError::Unauthorized(
                "This API token is from before accounts were switched on: sign in and get a new one with POST /api/v1/tokens.".into(),
            )
            .into_response();
        };
        return match accounts.user(&state.store, user_id).await {
            Ok(Some(seen)) if seen.session == known.id => {
                request.extensions_mut().insert(Session {
                    id: known.id,
                    device: Some(known.device),
                    account: Some(seen.account),
                });
                next.run(request).await
            }
            Ok(_) => {
                AppError::Unauthorized("This API token's account is disabled or signed out.".into())
                    .into_response()
            }
            Err(e) => e.into_response(),
        };
    }
    let (known, moving) = match session::device_of_cookie(config, &jar, &label).await {
        Ok(found) => found,
        Err(e) => return e.into_response(),
    };
    let signed_in = match accounts.settings.mode {
        AuthMode::Header => {
            match proxied(&state, request.headers(), known.as_ref(), &label).await {
                Ok(signed_in) => signed_in,
                Err(e) => return e.into_response(),
            }
        }
        _ => match signed_in_device(&state, known).await {
            Ok(Some(signed_in)) => signed_in,
            Ok(None) => return to_sign_in(&request),
            Err(e) => return e.into_response(),
        },
    };
    let SignedIn {
        seen,
        device,
        renew,
    } = signed_in;
    request.extensions_mut().insert(Session {
        id: seen.session.clone(),
        device: Some(device),
        account: Some(seen.account),
    });
    let response = next.run(request).await;
    if renew || moving {
        let jar = session::with_session_cookie(jar, config.secure, &seen.session, device, moving);
        return (jar, response).into_response();
    }
    response
}

struct SignedIn {
    seen: SeenUser,
    device: Uuid,
    /// The cookie is written (renewed, or new).
    renew: bool,
}

/// The cookie's device, if it is signed in to a user who may go on.
async fn signed_in_device(
    state: &AppState,
    known: Option<KnownDevice>,
) -> Result<Option<SignedIn>, AppError> {
    let Some(known) = known else {
        return Ok(None);
    };
    let Some(user_id) = known.user else {
        return Ok(None);
    };
    Ok(state
        .accounts
        .user(&state.store, user_id)
        .await?
        .filter(|seen| seen.session == known.id)
        .map(|seen| SignedIn {
            seen,
            device: known.device,
            renew: known.renew,
        }))
}

/// `AUTH_MODE=header`: the person the proxy names, on the cookie's device when it is theirs,
/// else on a new one.
async fn proxied(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    known: Option<&KnownDevice>,
    label: &str,
) -> Result<SignedIn, AppError> {
    let Some(proxy) = &state.accounts.settings.proxy else {
        return Err(AppError::Internal(anyhow::anyhow!("no proxy settings")));
    };
    let name = proxy
        .user(headers)
        .map_err(|why| AppError::BadRequest(why.into()))?
        .ok_or_else(|| {
            AppError::Unauthorized(format!(
                "The sign-in proxy named no user: it should send {}.",
                proxy.header
            ))
        })?;
    let seen = state
        .accounts
        .proxied_user(&state.store, &name)
        .await?
        .ok_or_else(|| {
            AppError::Forbidden("Your account is disabled. Ask an admin to enable it.".into())
        })?;
    if let Some(known) = known
        && known.id == seen.session
        && known.user == Some(seen.account.user_id)
    {
        return Ok(SignedIn {
            device: known.device,
            renew: known.renew,
            seen,
        });
    }
    let device = Uuid::now_v7();
    state
        .store
        .register_user_device(seen.account.user_id, &seen.session, device, label)
        .await?;
    Ok(SignedIn {
        seen,
        device,
        renew: true,
    })
}

/// Someone not signed in: a page sends them to `/login` (and back here after), the API says 401.
fn to_sign_in(request: &Request) -> Response {
    let path = request.uri().path();
    if path.starts_with("/api/") {
        return AppError::Unauthorized(
            "Sign in first: open /login in a browser, or send Authorization: Bearer with a token from POST /api/v1/tokens made while signed in.".into(),
        )
        .into_response();
    }
    let next = match request.method() {
        &Method::GET | &Method::HEAD => request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
        _ => "/".to_owned(),
    };
    let to = format!("/login?next={}", urlencode(&next));
    let htmx = request.headers().get("hx-request").is_some();
    let mut response = if htmx {
        StatusCode::UNAUTHORIZED.into_response()
    } else {
        (StatusCode::SEE_OTHER, [(header::LOCATION, to.clone())]).into_response()
    };
    if htmx && let Ok(value) = HeaderValue::from_str(&to) {
        response.headers_mut().insert("hx-redirect", value);
    }
    response
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
