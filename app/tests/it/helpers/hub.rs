//! A stand-in for the Hugging Face hub: `resolve/main/<file>` answers each file it serves with
//! the hub's headers (commit, sha256 as the linked ETag, size) and its bytes (404 for others),
//! and `api/models/<repo>/tree/main` lists them, as the hub's API does, with a README beside.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    extract::{Path, State},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use sha2::Digest;

pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct Served {
    bytes: Arc<Vec<u8>>,
    sha: String,
}

#[derive(Clone)]
struct Hub {
    files: Arc<HashMap<String, Served>>,
    requests: Arc<AtomicUsize>,
}

pub struct FakeHub {
    pub endpoint: String,
    /// Requests for files so far.
    pub requests: Arc<AtomicUsize>,
}

impl FakeHub {
    /// Serves each `(name, local file)` under every repository.
    pub async fn start(files: &[(&str, PathBuf)]) -> Self {
        let files = files
            .iter()
            .map(|(name, path)| {
                let bytes = std::fs::read(path).unwrap();
                let sha = sha2::Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                (
                    (*name).to_owned(),
                    Served {
                        bytes: Arc::new(bytes),
                        sha,
                    },
                )
            })
            .collect();
        let requests = Arc::new(AtomicUsize::new(0));
        let hub = Hub {
            files: Arc::new(files),
            requests: requests.clone(),
        };
        let router = axum::Router::new()
            .route("/{owner}/{name}/resolve/main/{*file}", get(resolve))
            .route("/api/models/{owner}/{name}/tree/main", get(tree))
            .with_state(hub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            endpoint: format!("http://{addr}"),
            requests,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn resolve(
    State(hub): State<Hub>,
    Path((_owner, _name, file)): Path<(String, String, String)>,
    method: Method,
) -> Response {
    hub.requests.fetch_add(1, Ordering::SeqCst);
    let Some(served) = hub.files.get(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let headers = [
        ("x-repo-commit", COMMIT.to_owned()),
        ("x-linked-etag", format!("\"{}\"", served.sha)),
        ("x-linked-size", served.bytes.len().to_string()),
        (header::ETAG.as_str(), format!("\"{}\"", served.sha)),
    ];
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        served.bytes.to_vec()
    };
    (headers, body).into_response()
}

async fn tree(State(hub): State<Hub>) -> Response {
    let mut entries = vec![serde_json::json!({"type": "file", "path": "README.md", "size": 12})];
    entries.push(serde_json::json!({"type": "directory", "path": "sub"}));
    let mut names: Vec<_> = hub.files.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, served) in names {
        let size = served.bytes.len();
        entries.push(serde_json::json!({
            "type": "file", "path": name, "size": 134, "lfs": {"size": size, "oid": served.sha},
        }));
    }
    axum::Json(entries).into_response()
}
