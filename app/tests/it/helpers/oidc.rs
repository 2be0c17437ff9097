//! A stand-in OpenID provider for the sign-in's failure cases (the third-party one, npm's
//! oauth2-mock-server, covers the happy path in `accounts.rs`): discovery, keys, a
//! non-interactive `/authorize` (it signs in whoever `user` says and redirects at once), and a
//! token endpoint that checks PKCE and signs the ID token, or breaks it as `fault` says.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine;
use openidconnect::{
    AccessToken, AdditionalClaims, Audience, EndUserEmail, EndUserName, IssuerUrl, JsonWebKeyId,
    LocalizedClaim, Nonce, PrivateSigningKey, StandardClaims, SubjectIdentifier,
    core::{
        CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
    },
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How the next ID token is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Expired an hour ago.
    Expired,
    /// Signed by a key the provider does not publish (under its key's id).
    WronglySigned,
    /// Issued to another client.
    WrongAudience,
    /// No `email` claim.
    NoEmail,
    /// The nonce of another sign-in.
    WrongNonce,
}

#[derive(Clone, Debug)]
pub struct Person {
    pub sub: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
}

pub fn person(name: &str) -> Person {
    Person {
        sub: format!("sub-{name}"),
        email: format!("{name}@example.org"),
        name: name.to_owned(),
        groups: Vec::new(),
    }
}

struct Inner {
    fault: Fault,
    user: Person,
    /// code -> (PKCE challenge, nonce, the person)
    codes: HashMap<String, (String, String, Person)>,
    token_requests: usize,
}

#[derive(Clone)]
pub struct StandIn {
    pub issuer: String,
    inner: Arc<Mutex<Inner>>,
    key: Arc<CoreRsaPrivateSigningKey>,
    forger: Arc<CoreRsaPrivateSigningKey>,
}

pub const CLIENT_ID: &str = "chat-app";

#[derive(Serialize, Deserialize, Debug, Clone)]
struct Groups {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
}
impl AdditionalClaims for Groups {}

type IdToken = openidconnect::IdToken<
    Groups,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

fn key(file: &str) -> CoreRsaPrivateSigningKey {
    let pem = std::fs::read_to_string(super::repo_path(&format!("app/tests/it/fixtures/{file}")))
        .unwrap();
    CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new("key-1".into()))).unwrap()
}

impl StandIn {
    /// Serves on 127.0.0.1 until the returned handle is aborted (the provider is then down).
    pub async fn start() -> (Self, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let provider = StandIn {
            issuer,
            inner: Arc::new(Mutex::new(Inner {
                fault: Fault::None,
                user: person("ada"),
                codes: HashMap::new(),
                token_requests: 0,
            })),
            key: Arc::new(key("oidc-provider-key.pem")),
            forger: Arc::new(key("oidc-forger-key.pem")),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(provider.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (provider, server)
    }

    pub fn set_fault(&self, fault: Fault) {
        self.inner.lock().unwrap().fault = fault;
    }

    pub fn sign_in_as(&self, person: Person) {
        self.inner.lock().unwrap().user = person;
    }

    pub fn token_requests(&self) -> usize {
        self.inner.lock().unwrap().token_requests
    }
}

async fn discovery(State(provider): State<StandIn>) -> Json<serde_json::Value> {
    let base = &provider.issuer;
    Json(serde_json::json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "end_session_endpoint": format!("{base}/logout"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(provider): State<StandIn>) -> Json<CoreJsonWebKeySet> {
    Json(CoreJsonWebKeySet::new(vec![
        provider.key.as_verification_key(),
    ]))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

async fn authorize(
    State(provider): State<StandIn>,
    Query(query): Query<AuthorizeQuery>,
) -> Response {
    if query.code_challenge_method.as_deref() != Some("S256") {
        return (StatusCode::BAD_REQUEST, "PKCE S256 is required").into_response();
    }
    let code = format!("code-{}", uuid::Uuid::new_v4().simple());
    let mut inner = provider.inner.lock().unwrap();
    let user = inner.user.clone();
    inner.codes.insert(
        code.clone(),
        (query.code_challenge.unwrap_or_default(), query.nonce, user),
    );
    let location = format!(
        "{}?code={code}&state={}",
        query.redirect_uri,
        url::form_urlencoded::byte_serialize(query.state.as_bytes()).collect::<String>()
    );
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    code: String,
    code_verifier: Option<String>,
}

async fn token(State(provider): State<StandIn>, Form(form): Form<TokenForm>) -> Response {
    let (fault, found) = {
        let mut inner = provider.inner.lock().unwrap();
        inner.token_requests += 1;
        // A code works once.
        (inner.fault, inner.codes.remove(&form.code))
    };
    let Some((challenge, nonce, user)) = found else {
        return invalid_grant("unknown or used code");
    };
    let verifier = form.code_verifier.unwrap_or_default();
    let computed =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(&verifier));
    if computed != challenge {
        return invalid_grant("PKCE verification failed");
    }
    let now = chrono::Utc::now();
    let expires = match fault {
        Fault::Expired => now - chrono::Duration::hours(1),
        _ => now + chrono::Duration::minutes(5),
    };
    let audience = match fault {
        Fault::WrongAudience => "another-app",
        _ => CLIENT_ID,
    };
    let mut standard = StandardClaims::new(SubjectIdentifier::new(user.sub.clone()));
    if fault != Fault::NoEmail {
        standard = standard.set_email(Some(EndUserEmail::new(user.email.clone())));
    }
    let mut names = LocalizedClaim::new();
    names.insert(None, EndUserName::new(user.name.clone()));
    standard = standard.set_name(Some(names));
    let nonce = match fault {
        Fault::WrongNonce => "another-sign-in".to_owned(),
        _ => nonce,
    };
    let claims = openidconnect::IdTokenClaims::new(
        IssuerUrl::new(provider.issuer.clone()).unwrap(),
        vec![Audience::new(audience.into())],
        expires,
        now - chrono::Duration::minutes(1),
        standard,
        Groups {
            groups: user.groups.clone(),
        },
    )
    .set_nonce(Some(Nonce::new(nonce)));
    let access = AccessToken::new("access-token".into());
    let signer = match fault {
        Fault::WronglySigned => &provider.forger,
        _ => &provider.key,
    };
    let id_token = IdToken::new(
        claims,
        signer.as_ref(),
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(&access),
        None,
    )
    .unwrap();
    Json(serde_json::json!({
        "access_token": "access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token.to_string(),
    }))
    .into_response()
}

fn invalid_grant(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": "invalid_grant", "error_description": why})),
    )
        .into_response()
}
