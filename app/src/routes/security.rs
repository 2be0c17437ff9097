//! Request-level defences: same-origin checks on state-changing requests (CSRF), the security
//! headers of every response, and the client address that rate limits key on.
use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts, Request},
    http::{HeaderMap, HeaderValue, Method, header, request::Parts},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{AppState, error::AppError};

/// No inline script or style, nothing from other origins, no framing, forms post only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every response carries (set unless a handler set its own).
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

const CROSS_SITE: &str = "This request came from another site, so it was refused and nothing \
    changed. If you clicked something here, reload the page and try again.";

/// Refuses state-changing requests that a browser says come from another origin. Browsers send
/// `Sec-Fetch-Site` (or at least `Origin`) with every cross-site POST; clients that send neither
/// (curl, scripts) are not browsers a forged page could drive, and pass.
pub async fn same_origin_only(request: Request, next: Next) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe && is_cross_origin(request.headers()) {
        tracing::warn!(
            method = %request.method(),
            path = request.uri().path(),
            "refused a cross-origin request"
        );
        return AppError::Forbidden(CROSS_SITE.into()).into_response();
    }
    next.run(request).await
}

fn is_cross_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        // `none`: the user typed or bookmarked it; `same-origin`: our own pages.
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, authority)| authority);
    // `Origin: null` (sandboxed frames, some redirects) has no host and is refused.
    origin_host.is_none_or(|origin_host| !origin_host.eq_ignore_ascii_case(host))
}

/// The client's address: the TCP peer, or `X-Real-IP` when `TRUST_PROXY_HEADERS` says the peer
/// is our nginx.
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        // Only a proxy on this host or a private network (ours, in compose) may say who the
        // client is; a client reaching the app directly cannot choose its own address.
        let forwarded = (state.config.trust_proxy_headers && is_local_or_private(peer))
            .then(|| {
                parts
                    .headers
                    .get("x-real-ip")?
                    .to_str()
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            })
            .flatten();
        Ok(ClientAddress(forwarded.unwrap_or(peer)))
    }
}

fn is_local_or_private(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    }
}

/// Bounds guessing of tokens (`RateLimits::check_token_guesses`): a request that presents one (a
/// bearer, or the operator's sign-in form at `POST /admin`) from an address that has used up its
/// wrong ones is refused before the token is looked at; a bearer answered 401 (not a valid API
/// token, nor `ADMIN_TOKEN`) or a sign-in answered 403 counts as a wrong one. Cookies are not
/// tokens here: they are encrypted and authenticated, so guessing one is hopeless.
pub async fn limit_token_guesses(
    axum::extract::State(state): axum::extract::State<AppState>,
    ClientAddress(address): ClientAddress,
    request: Request,
    next: Next,
) -> Response {
    let bearer = crate::session::bearer(request.headers()).is_some();
    let sign_in = request.method() == Method::POST && request.uri().path() == "/admin";
    if !bearer && !sign_in {
        return next.run(request).await;
    }
    if let Err(refused) = state.rate_limits.check_token_guesses(address) {
        return refused.into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let wrong = (bearer && status == axum::http::StatusCode::UNAUTHORIZED)
        || (sign_in && status == axum::http::StatusCode::FORBIDDEN);
    if wrong {
        tracing::warn!(%address, "a wrong token was presented");
        state.rate_limits.token_guess_failed(address);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_local_or_private_peers_may_name_the_client() {
        for trusted in [
            "127.0.0.1",
            "10.1.2.3",
            "172.18.0.5",
            "192.168.1.9",
            "::1",
            "fd00::7",
        ] {
            assert!(is_local_or_private(trusted.parse().unwrap()), "{trusted}");
        }
        for public in ["8.8.8.8", "203.0.113.9", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_local_or_private(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn fetch_metadata_decides_when_present() {
        assert!(!is_cross_origin(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(!is_cross_origin(&headers(&[("sec-fetch-site", "none")])));
        assert!(is_cross_origin(&headers(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(is_cross_origin(&headers(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        // Fetch metadata wins over a matching Origin.
        assert!(is_cross_origin(&headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://chat.example"),
            ("host", "chat.example"),
        ])));
    }

    #[test]
    fn origin_must_match_host_without_fetch_metadata() {
        let check = |origin: &str, host: &str| {
            is_cross_origin(&headers(&[("origin", origin), ("host", host)]))
        };
        assert!(!check("http://chat.example", "chat.example"));
        assert!(!check("https://Chat.Example:8443", "chat.example:8443"));
        assert!(check("https://evil.example", "chat.example"));
        assert!(check("http://chat.example:8080", "chat.example"));
        assert!(check("null", "chat.example"));
        // No Origin and no fetch metadata: not a browser request a forged page could make.
        assert!(!is_cross_origin(&headers(&[("host", "chat.example")])));
    }
}
