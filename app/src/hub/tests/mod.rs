//! The hub against a fake one on localhost (resolve URL, CDN redirect, Range, cuts, tokens):
//! the fake and its helpers here, the tests in `download` and `cache`.
mod cache;
mod download;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, Response, StatusCode, Uri, header},
};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use super::*;

const REPO: &str = "acme/tiny-GGUF";
const FILE: &str = "tiny-q4_k_m.gguf";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// The git oid the hub sends as ETag for an LFS pointer: the blob must not be named by it.
const POINTER_ETAG: &str = "fedcba9876543210fedcba9876543210fedcba98";
const SIZE: usize = 300 * 1024;

/// Deterministic pseudo-random bytes (xorshift64) standing in for a model.
fn model_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

/// How the fake hub behaves.
#[derive(Default)]
struct Knobs {
    /// The file's path in the repository (default FILE).
    file: Option<&'static str>,
    /// Bytes the CDN serves instead of the model (a checksum mismatch).
    served: Option<Vec<u8>>,
    /// Cut the connection after this many body bytes, on the first `cuts` CDN GETs.
    cut_after: Option<usize>,
    cuts: usize,
    /// Answer 401 to the resolve URL without "Bearer <token>".
    token: Option<&'static str>,
    /// Answer 200 with the whole file even to a Range request.
    ignore_range: bool,
    /// Redirect to an absolute URL on this host name (same server, another host for the
    /// client) instead of a relative /cdn/<sha>.
    cdn_host: Option<&'static str>,
}

struct FakeHub {
    knobs: Knobs,
    port: u16,
    model: Vec<u8>,
    sha: String,
    cuts_left: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    /// Body bytes the CDN has sent, over all GETs.
    sent: AtomicU64,
}

impl FakeHub {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn cdn_gets(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|seen| seen.path.starts_with("/cdn/"))
            .collect()
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }
}

async fn start(knobs: Knobs) -> (Arc<FakeHub>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let model = model_bytes();
    let hub = Arc::new(FakeHub {
        cuts_left: AtomicUsize::new(knobs.cuts),
        knobs,
        port,
        sha: sha256_hex(&model),
        model,
        seen: Mutex::new(Vec::new()),
        sent: AtomicU64::new(0),
    });
    let app = Router::new().fallback(answer).with_state(hub.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (hub, format!("http://127.0.0.1:{port}"))
}

async fn answer(
    State(hub): State<Arc<FakeHub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let text = |name| {
        headers
            .get(name)
            .map(|value: &header::HeaderValue| value.to_str().unwrap().to_owned())
    };
    hub.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        range: text(header::RANGE),
        auth: text(header::AUTHORIZATION),
    });
    if let Some(sha) = uri.path().strip_prefix("/cdn/") {
        assert_eq!(sha, hub.sha);
        return cdn(&hub, text(header::RANGE));
    }
    if let Some(token) = hub.knobs.token
        && text(header::AUTHORIZATION) != Some(format!("Bearer {token}"))
    {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(Body::empty())
            .unwrap();
    }
    let file = hub.knobs.file.unwrap_or(FILE);
    if uri.path() != format!("/{REPO}/resolve/main/{file}") {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-error-code", "EntryNotFound")
            .body(Body::empty())
            .unwrap();
    }
    let location = match hub.knobs.cdn_host {
        Some(host) => format!("http://{host}:{}/cdn/{}", hub.port, hub.sha),
        None => format!("/cdn/{}", hub.sha),
    };
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, location)
        .header("x-repo-commit", COMMIT)
        .header("x-linked-etag", format!("\"{}\"", hub.sha))
        .header("x-linked-size", hub.model.len().to_string())
        .header(header::ETAG, format!("W/\"{POINTER_ETAG}\""))
        .body(Body::empty())
        .unwrap()
}

fn cdn(hub: &FakeHub, range: Option<String>) -> Response<Body> {
    let bytes = hub.knobs.served.as_ref().unwrap_or(&hub.model);
    let start = match range {
        Some(_) if hub.knobs.ignore_range => 0,
        Some(range) => range
            .strip_prefix("bytes=")
            .and_then(|range| range.strip_suffix('-'))
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        None => 0,
    };
    if start >= bytes.len() {
        return Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .body(Body::empty())
            .unwrap();
    }
    let body = Bytes::copy_from_slice(&bytes[start..]);
    let response = Response::builder()
        .header(header::CONTENT_LENGTH, body.len().to_string())
        .header(header::ETAG, format!("\"{}\"", hub.sha));
    let response = if start > 0 {
        response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
        )
    } else {
        response.status(StatusCode::OK)
    };
    let cut = hub.knobs.cut_after.filter(|&cut| {
        cut < body.len()
            && hub
                .cuts_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
    });
    match cut {
        Some(cut) => {
            hub.sent.fetch_add(cut as u64, Ordering::SeqCst);
            // Send `cut` bytes, let them reach the client, then fail the body while
            // Content-Length still promises more: the connection is dropped.
            let first = futures::stream::iter([Ok::<_, io::Error>(body.slice(..cut))]);
            let broken = futures::stream::once(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(io::Error::other("connection cut by the test"))
            });
            response
                .body(Body::from_stream(first.chain(broken)))
                .unwrap()
        }
        None => {
            hub.sent.fetch_add(body.len() as u64, Ordering::SeqCst);
            response.body(Body::from(body)).unwrap()
        }
    }
}

fn settings(endpoint: &str, cache_dir: &Path) -> HubSettings {
    HubSettings {
        endpoint: endpoint.to_owned(),
        token: None,
        cache_dir: cache_dir.to_path_buf(),
        offline: false,
        repo: REPO.to_owned(),
        file: FILE.to_owned(),
        revision: "main".to_owned(),
        retry_delay: Duration::from_millis(5),
    }
}

fn repo_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("models--acme--tiny-GGUF")
}

/// Names of the entries in a folder (none when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Nothing listens on the port: bound, then released.
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
