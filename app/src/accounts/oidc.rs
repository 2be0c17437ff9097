//! `AUTH_MODE=oidc`: sign-in with OpenID Connect (the `openidconnect` crate), authorization code
//! flow with PKCE (S256). `/login` sends the browser to the provider with a fresh state, nonce
//! and PKCE verifier, kept until the callback in an encrypted cookie ([`Pending`], minutes
//! long), so any replica can take the callback. The callback must bring that state back; the
//! code is exchanged with the verifier, and the ID token is checked (the provider's signature
//! with its published keys, issuer, audience, expiry, nonce) before anyone is signed in. The
//! provider's discovery document and keys are read when first needed and kept for
//! [`DISCOVERY_TTL`] (read again at once when a token is signed with a key not in them), so a
//! provider that is down at start or later only stops new sign-ins: people signed in go on.
use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl,
    RedirectUrl, Scope, TokenResponse,
    core::{CoreAuthenticationFlow, CoreClient},
};
use serde::{Deserialize, Serialize};

use super::AccountOptions;

pub use openidconnect::ProviderMetadataWithLogout as Metadata;

/// How long the provider's discovery document and keys are kept.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// How long a browser may take at the provider between `/login` and the callback.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(600);
/// Longest answer read from the provider.
const MAX_ANSWER_BYTES: usize = 1 << 20;
/// How long one request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct OidcSettings {
    pub issuer: IssuerUrl,
    pub client_id: ClientId,
    pub client_secret: Option<ClientSecret>,
    pub scopes: Vec<String>,
    pub redirect: RedirectUrl,
    /// Where the provider sends the browser after signing out there.
    pub after_logout: PostLogoutRedirectUrl,
}

impl OidcSettings {
    pub fn new(options: &AccountOptions<'_>) -> anyhow::Result<Self> {
        let needed = |value: &str, name: &str, what: &str| -> anyhow::Result<String> {
            match value.trim() {
                "" => anyhow::bail!("AUTH_MODE=oidc needs {name}: {what}"),
                value => Ok(value.to_owned()),
            }
        };
        let issuer = needed(
            options.oidc_issuer,
            "OIDC_ISSUER",
            "the provider's issuer URL (e.g. https://keycloak.example.org/realms/team)",
        )?;
        let issuer = IssuerUrl::new(issuer.trim_end_matches('/').to_owned())
            .map_err(|e| anyhow::anyhow!("OIDC_ISSUER is not a URL: {e}"))?;
        let client_id = needed(
            options.oidc_client_id,
            "OIDC_CLIENT_ID",
            "this app's client id at the provider",
        )?;
        let Some(public_url) = options.public_url else {
            anyhow::bail!(
                "AUTH_MODE=oidc needs PUBLIC_URL: where people reach the app (the provider sends them back to PUBLIC_URL/auth/callback)"
            );
        };
        let base = public_url.as_str().trim_end_matches('/');
        let redirect = RedirectUrl::new(format!("{base}/auth/callback"))
            .map_err(|e| anyhow::anyhow!("PUBLIC_URL: {e}"))?;
        let after_logout = PostLogoutRedirectUrl::new(format!("{base}/signed-out?from=provider"))
            .map_err(|e| anyhow::anyhow!("PUBLIC_URL: {e}"))?;
        let scopes: Vec<String> = options
            .oidc_scopes
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !scopes.iter().any(|s| s == "openid") {
            anyhow::bail!(
                "OIDC_SCOPES must include `openid` (it is `{}`)",
                options.oidc_scopes
            );
        }
        let secret = options.oidc_client_secret.trim();
        Ok(Self {
            issuer,
            client_id: ClientId::new(client_id),
            client_secret: (!secret.is_empty()).then(|| ClientSecret::new(secret.to_owned())),
            scopes,
            redirect,
            after_logout,
        })
    }
}

/// Why a sign-in did not happen, in words for the person at the browser.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The provider cannot be reached or answers nonsense: worth trying again later.
    #[error(
        "The sign-in service ({issuer}) cannot be reached right now: {why}. People already signed in are not affected; try again in a minute."
    )]
    ProviderDown { issuer: String, why: String },
    /// The callback does not belong to a sign-in this browser started (forged, replayed, or
    /// too late).
    #[error("{0}")]
    NotThisSignIn(String),
    /// The provider said no (the person cancelled, or is not allowed).
    #[error("The sign-in service refused: {0}")]
    Refused(String),
    /// The ID token is not one to trust.
    #[error("The sign-in could not be verified ({0}), so nobody was signed in.")]
    Unverified(String),
    /// The token is fine, but says too little.
    #[error("{0}")]
    Incomplete(String),
}

/// What `/login` keeps in the browser (encrypted) until the callback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to go after signing in (a path of this site).
    pub next: String,
    /// This browser's anonymous session before signing in, whose chats may be brought in.
    pub anonymous: Option<String>,
    /// Unix seconds after which the callback is refused.
    pub until: u64,
}

/// The person the provider vouched for.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `oidc:{issuer} {sub}`.
    pub subject: String,
    pub email: String,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// The provider: its settings, an HTTP client, and its discovery document as last read.
pub struct Provider {
    settings: OidcSettings,
    http: Http,
    discovered: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Metadata>)>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(String);

impl Provider {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // The library follows no redirect: a token endpoint that redirects is refused.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(PROVIDER_TIMEOUT)
            .build()?;
        Ok(Self {
            settings,
            http: Http(http),
            discovered: tokio::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    fn down(&self, why: impl std::fmt::Display) -> SignInError {
        SignInError::ProviderDown {
            issuer: self.settings.issuer.to_string(),
            why: why.to_string(),
        }
    }

    /// The discovery document with the provider's keys: kept, or read again when older than
    /// [`DISCOVERY_TTL`] or when `fresh`.
    pub async fn metadata(&self, fresh: bool) -> Result<Arc<Metadata>, SignInError> {
        let mut discovered = self.discovered.lock().await;
        if let Some((at, metadata)) = discovered.as_ref()
            && !fresh
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(metadata.clone());
        }
        let metadata = Metadata::discover_async(self.settings.issuer.clone(), &self.http)
            .await
            .map_err(|e| self.down(error_chain(&e)))?;
        let metadata = Arc::new(metadata);
        *discovered = Some((std::time::Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn client(&self, metadata: &Metadata) -> Client {
        CoreClient::from_provider_metadata(
            metadata.clone(),
            self.settings.client_id.clone(),
            self.settings.client_secret.clone(),
        )
        .set_redirect_uri(self.settings.redirect.clone())
    }

    /// Where to send the browser to sign in, and what to keep until it comes back.
    pub async fn begin(
        &self,
        next: String,
        anonymous: Option<String>,
        now_seconds: u64,
    ) -> Result<(url::Url, Pending), SignInError> {
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next,
            anonymous,
            until: now_seconds + SIGN_IN_WINDOW.as_secs(),
        };
        Ok((url, pending))
    }

    /// The person the callback's `code` names, once every check has passed.
    pub async fn finish(
        &self,
        pending: &Pending,
        code: &str,
        state: &str,
        now_seconds: u64,
    ) -> Result<Identity, SignInError> {
        if now_seconds > pending.until {
            return Err(SignInError::NotThisSignIn(
                "This sign-in took too long. Please sign in again.".into(),
            ));
        }
        // Compared as hashes, so the time taken says nothing about the state.
        use sha2::{Digest, Sha256};
        if Sha256::digest(&pending.state) != Sha256::digest(state) {
            return Err(SignInError::NotThisSignIn(
                "This sign-in answer does not belong to a sign-in this browser started, so nobody was signed in. Please sign in again.".into(),
            ));
        }
        let metadata = self.metadata(false).await?;
        let client = self.client(&metadata);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| self.down(e))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                openidconnect::RequestTokenError::ServerResponse(answer) => {
                    SignInError::Refused(answer.to_string())
                }
                openidconnect::RequestTokenError::Parse(e, _) => {
                    SignInError::Unverified(format!("the token answer could not be read: {e}"))
                }
                other => self.down(error_chain(&other)),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| SignInError::Unverified("the provider sent no ID token".into()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            // Keys rotate: a signature by a key not yet known is checked once more with the
            // keys read again.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                let metadata = self.metadata(true).await?;
                let client = self.client(&metadata);
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|e| SignInError::Unverified(e.to_string()))?
                    .clone()
            }
            Err(e) => return Err(SignInError::Unverified(e.to_string())),
        };
        let email = claims
            .email()
            .map(|e| e.as_str().trim().to_lowercase())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                SignInError::Incomplete(
                    "The sign-in service did not say your e-mail address, which this app needs to know who you are. Ask whoever runs it to release the `email` claim (and the `email` scope) to this app.".into(),
                )
            })?;
        if claims.email_verified() == Some(false) {
            return Err(SignInError::Incomplete(format!(
                "The sign-in service says your e-mail address {email} is not verified yet. Verify it there, then sign in again."
            )));
        }
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().trim().to_owned())
            .filter(|n| !n.is_empty());
        Ok(Identity {
            subject: format!(
                "oidc:{} {}",
                self.settings.issuer.as_str(),
                claims.subject().as_str()
            ),
            email,
            name,
            groups: groups_of(&id_token.to_string()),
        })
    }

    /// Where to send a browser that signs out, when the provider offers RP-initiated logout.
    pub async fn logout_url(&self) -> Option<url::Url> {
        let metadata = self.metadata(false).await.ok()?;
        let end = metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        Some(
            openidconnect::LogoutRequest::from(end)
                .set_client_id(self.settings.client_id.clone())
                .set_post_logout_redirect_uri(self.settings.after_logout.clone())
                .http_get_url(),
        )
    }
}

/// The client `from_provider_metadata` builds: authorization endpoint set, token and user-info
/// endpoints as the discovery document says.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The `groups` claim of an ID token whose signature has been checked (the library's standard
/// claims do not name it): its payload read again.
fn groups_of(jwt: &str) -> Vec<String> {
    use base64::Engine;
    #[derive(Deserialize)]
    struct Groups {
        #[serde(default)]
        groups: Vec<serde_json::Value>,
    }
    let Some(payload) = jwt.split('.').nth(1) else {
        return Vec::new();
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Groups>(&bytes).ok())
        .map(|g| {
            g.groups
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Our reqwest client as the library's HTTP client (a closure's future would not be `Send`
/// for every lifetime, which axum's handlers need).
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = HttpFailure;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpFailure>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// One request of the library's, through our reqwest client, its answer read up to
/// [`MAX_ANSWER_BYTES`].
async fn send(
    http: &reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpFailure> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpFailure(error_chain(&e)))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| HttpFailure(error_chain(&e)))?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(HttpFailure("the provider's answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    let mut answer = openidconnect::http::Response::new(body);
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::error::chain(error)
}

#[cfg(test)]
mod tests {
    use super::groups_of;
    use base64::Engine;

    #[test]
    fn groups_come_from_the_tokens_payload() {
        let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let jwt = format!(
            "{}.{}.sig",
            encode(r#"{"alg":"RS256"}"#),
            encode(r#"{"sub":"1","groups":["staff","chat-admins",7]}"#)
        );
        assert_eq!(groups_of(&jwt), ["staff", "chat-admins"]);
        assert!(groups_of(&format!("x.{}.y", encode(r#"{"sub":"1"}"#))).is_empty());
        assert!(groups_of("not a token").is_empty());
    }
}
