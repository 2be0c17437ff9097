//! The hub over HTTP: what it says about the file, the download (resumed from the bytes on
//! disk, retried with backoff) and the check of what arrived.
use std::{
    io::{self, Read},
    path::Path,
    time::Duration,
};

use reqwest::{
    StatusCode, Url,
    header::{self, HeaderMap, HeaderValue},
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{
    HubError, HubSettings, Progress,
    cache::{Names, is_sha256, is_token},
    io_error,
    progress::Reporter,
};

/// How many times a download is tried before giving up (the bytes on disk are kept).
const ATTEMPTS: u32 = 5;
/// Renamed repositories answer with a redirect to the new name; more than this is a loop.
const MAX_RENAME_HOPS: usize = 5;
/// Writes to the `.incomplete` file go out in blocks this large, not one per network chunk.
const WRITE_BUFFER: usize = 1 << 20;

/// The error text of a request error and its causes, without the URL (a CDN URL carries a
/// signature).
fn describe(error: reqwest::Error) -> String {
    crate::error::chain(&error.without_url())
}

/// What the hub said about the file.
pub(super) struct Remote {
    pub(super) commit: String,
    pub(super) etag: String,
    pub(super) size: Option<u64>,
    /// Where the bytes are: the CDN the hub redirected to, or the resolve URL itself.
    url: Url,
}

/// One download attempt's end when it is not success.
enum Failure {
    /// The connection failed or was cut: try again from the bytes on disk.
    Retry(String),
    Fatal(HubError),
}

pub(super) struct Hub<'a> {
    settings: &'a HubSettings,
    endpoint: Url,
    /// `settings.endpoint` without its trailing slash, for messages.
    endpoint_text: &'a str,
    client: reqwest::Client,
    auth: Option<HeaderValue>,
}

impl<'a> Hub<'a> {
    pub(super) fn new(settings: &'a HubSettings) -> Result<Self, HubError> {
        let endpoint_text = settings.endpoint.trim_end_matches('/');
        let endpoint = Url::parse(endpoint_text)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base())
            .ok_or_else(|| HubError::InvalidEndpoint(settings.endpoint.clone()))?;
        let auth = match &settings.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| HubError::InvalidToken)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        // Redirects are not followed: the hub's answer carries the commit and the etag, and the
        // token must not follow a redirect to another host.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| HubError::Unreachable {
                endpoint: endpoint_text.to_owned(),
                cause: describe(error),
            })?;
        Ok(Self {
            settings,
            endpoint,
            endpoint_text,
            client,
            auth,
        })
    }

    /// The token goes to the hub's own host only, not to a CDN elsewhere (as huggingface_hub).
    fn request(&self, method: reqwest::Method, url: &Url) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url.clone());
        match &self.auth {
            Some(auth) if url.origin() == self.endpoint.origin() => {
                request.header(header::AUTHORIZATION, auth.clone())
            }
            _ => request,
        }
    }

    fn status_error(&self, status: StatusCode) -> HubError {
        let settings = self.settings;
        let endpoint = self.endpoint_text.to_owned();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if settings.token.is_none() => {
                HubError::TokenNeeded {
                    endpoint,
                    repo: settings.repo.clone(),
                    status,
                }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => HubError::TokenRefused {
                endpoint,
                repo: settings.repo.clone(),
                status,
            },
            StatusCode::NOT_FOUND => HubError::NotFound {
                endpoint,
                repo: settings.repo.clone(),
                file: settings.file.clone(),
                revision: settings.revision.clone(),
            },
            _ => HubError::Status {
                endpoint,
                repo: settings.repo.clone(),
                file: settings.file.clone(),
                status,
            },
        }
    }

    fn bad_response(&self, missing: &'static str) -> HubError {
        HubError::BadResponse {
            endpoint: self.endpoint_text.to_owned(),
            repo: self.settings.repo.clone(),
            file: self.settings.file.clone(),
            missing,
        }
    }

    /// `HEAD {endpoint}/{repo}/resolve/{revision}/{file}`: the commit, etag, size and where the
    /// bytes are.
    pub(super) async fn head(&self, names: &Names<'_>) -> Result<Remote, HubError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| HubError::InvalidEndpoint(self.settings.endpoint.clone()))?
            .pop_if_empty()
            .extend(self.settings.repo.split('/'))
            .push("resolve")
            // One segment: a revision such as refs/pr/1 is sent as refs%2Fpr%2F1.
            .push(&self.settings.revision)
            .extend(&names.file_parts);
        for _ in 0..=MAX_RENAME_HOPS {
            let response = self
                .request(reqwest::Method::HEAD, &url)
                .send()
                .await
                .map_err(|error| HubError::Unreachable {
                    endpoint: self.endpoint_text.to_owned(),
                    cause: describe(error),
                })?;
            let status = response.status();
            if !status.is_success() && !status.is_redirection() {
                return Err(self.status_error(status));
            }
            let headers = response.headers();
            let location = header_text(headers, header::LOCATION.as_str())
                .map(|location| url.join(location))
                .transpose()
                .map_err(|_| self.bad_response("Location header"))?;
            let commit = header_text(headers, "x-repo-commit");
            let Some(commit) = commit else {
                // A renamed repository redirects to its new name; the answer there has the commit.
                match (status.is_redirection(), location) {
                    (true, Some(location)) => {
                        url = location;
                        continue;
                    }
                    _ => return Err(self.bad_response("X-Repo-Commit header")),
                }
            };
            if !is_token(commit) {
                return Err(self.bad_response("X-Repo-Commit header"));
            }
            let etag = header_text(headers, "x-linked-etag")
                .or_else(|| header_text(headers, header::ETAG.as_str()))
                .map(normalize_etag)
                .filter(|etag| is_token(etag))
                .ok_or_else(|| self.bad_response("ETag header"))?;
            // A redirect's Content-Length is that of the redirect's own body.
            let size = header_text(headers, "x-linked-size")
                .or_else(|| {
                    status
                        .is_success()
                        .then(|| header_text(headers, header::CONTENT_LENGTH.as_str()))
                        .flatten()
                })
                .and_then(|size| size.parse::<u64>().ok());
            let url = if status.is_redirection() {
                location.ok_or_else(|| self.bad_response("Location header"))?
            } else {
                url
            };
            return Ok(Remote {
                commit: commit.to_owned(),
                etag,
                size,
                url,
            });
        }
        Err(self.bad_response("answer (too many redirects)"))
    }

    /// The repository's `.gguf` files (`GET {endpoint}/api/models/{repo}/tree/{revision}`), from
    /// an answer of at most `MAX_TREE_BYTES`.
    pub(super) async fn gguf_files(&self) -> Result<Vec<super::HubFile>, HubError> {
        /// A repository's listing is a few KB; a hub answering more is not one.
        const MAX_TREE_BYTES: usize = 4 * 1024 * 1024;
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(rename = "type")]
            kind: String,
            path: String,
            size: Option<u64>,
            lfs: Option<Lfs>,
        }
        #[derive(serde::Deserialize)]
        struct Lfs {
            size: Option<u64>,
        }
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| HubError::InvalidEndpoint(self.settings.endpoint.clone()))?
            .pop_if_empty()
            .extend(["api", "models"])
            .extend(self.settings.repo.split('/'))
            .push("tree")
            .push(&self.settings.revision);
        url.set_query(Some("recursive=true"));
        let unreachable = |error| HubError::Unreachable {
            endpoint: self.endpoint_text.to_owned(),
            cause: describe(error),
        };
        let mut response = self
            .request(reqwest::Method::GET, &url)
            .send()
            .await
            .map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(self.status_error(response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_TREE_BYTES {
                return Err(self.bad_response("file list (the answer is too large)"));
            }
            body.extend_from_slice(&chunk);
        }
        let entries: Vec<Entry> =
            serde_json::from_slice(&body).map_err(|_| self.bad_response("file list"))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == "file" && e.path.ends_with(".gguf"))
            .map(|e| super::HubFile {
                size_bytes: e.lfs.and_then(|l| l.size).or(e.size),
                path: e.path,
            })
            .collect())
    }

    /// Downloads into `partial`, resuming from the bytes on disk, retrying cut connections with
    /// backoff.
    pub(super) async fn download(
        &self,
        remote: &Remote,
        partial: &Path,
        progress: &Progress,
    ) -> Result<(), HubError> {
        let on_disk = file_len(partial).map_err(io_error(partial))?;
        let mut reporter = Reporter::new(progress, remote.size, &self.settings.file, on_disk);
        let mut delay = self.settings.retry_delay;
        let mut attempt = 1;
        loop {
            let cause = match self.attempt(remote, partial, &mut reporter).await {
                Ok(()) => {
                    reporter.bar.finish();
                    return Ok(());
                }
                Err(Failure::Fatal(error)) => {
                    reporter.bar.abandon();
                    return Err(error);
                }
                Err(Failure::Retry(cause)) => cause,
            };
            if attempt == ATTEMPTS {
                reporter.bar.abandon();
                return Err(HubError::Download {
                    file: self.settings.file.clone(),
                    attempts: ATTEMPTS,
                    cause,
                    bytes: file_len(partial).map_err(io_error(partial))?,
                    partial: partial.to_path_buf(),
                });
            }
            tracing::warn!(
                "the download of {} was interrupted ({cause}); retrying in {}",
                self.settings.file,
                humantime::format_duration(delay)
            );
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        remote: &Remote,
        partial: &Path,
        reporter: &mut Reporter<'_>,
    ) -> Result<(), Failure> {
        let fatal_io = |error| Failure::Fatal(io_error(partial)(error));
        let mut have = file_len(partial).map_err(fatal_io)?;
        if let Some(size) = remote.size {
            if have > size {
                // Not a prefix of this file: start over.
                truncate(partial).await.map_err(fatal_io)?;
                have = 0;
                reporter.restart();
            } else if have == size {
                return Ok(());
            }
        }
        reporter.set(have);
        let mut request = self.request(reqwest::Method::GET, &remote.url);
        if have > 0 {
            request = request.header(header::RANGE, format!("bytes={have}-"));
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| Failure::Retry(describe(error)))?;
        let status = response.status();
        let append = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                let start = header_text(response.headers(), header::CONTENT_RANGE.as_str())
                    .and_then(content_range_start);
                if start.is_some_and(|start| start != have) {
                    truncate(partial).await.map_err(fatal_io)?;
                    reporter.restart();
                    return Err(Failure::Retry(format!(
                        "the server resumed at another offset than byte {have}"
                    )));
                }
                true
            }
            // A server that ignores Range sends the whole file: start over.
            _ if status.is_success() => false,
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                truncate(partial).await.map_err(fatal_io)?;
                reporter.restart();
                return Err(Failure::Retry(format!(
                    "the server could not resume at byte {have}"
                )));
            }
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                return Err(Failure::Retry(format!("the server answered {status}")));
            }
            _ if status.is_server_error() => {
                return Err(Failure::Retry(format!("the server answered {status}")));
            }
            _ => return Err(Failure::Fatal(self.status_error(status))),
        };
        let file = if append {
            tokio::fs::OpenOptions::new()
                .append(true)
                .open(partial)
                .await
        } else {
            have = 0;
            reporter.restart();
            tokio::fs::File::create(partial).await
        }
        .map_err(fatal_io)?;
        let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) => {
                    // Keep what arrived: the next attempt resumes after it.
                    out.flush().await.map_err(fatal_io)?;
                    return Err(Failure::Retry(describe(error)));
                }
            };
            out.write_all(&chunk).await.map_err(fatal_io)?;
            have += chunk.len() as u64;
            if let Some(size) = remote.size
                && have > size
            {
                drop(out);
                tokio::fs::remove_file(partial).await.map_err(fatal_io)?;
                return Err(Failure::Fatal(HubError::SizeMismatch {
                    file: self.settings.file.clone(),
                    expected: size,
                    actual: have,
                }));
            }
            reporter.set(have);
        }
        out.flush().await.map_err(fatal_io)?;
        match remote.size {
            Some(size) if have < size => Err(Failure::Retry(format!(
                "the connection closed after {have} of {size} bytes"
            ))),
            _ => Ok(()),
        }
    }
}

fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// `W/"abc"` or `"abc"` -> `abc`.
pub(super) fn normalize_etag(etag: &str) -> String {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_owned()
}

/// `bytes 100-299/300` -> 100.
pub(super) fn content_range_start(value: &str) -> Option<u64> {
    let range = value.strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

fn file_len(path: &Path) -> io::Result<u64> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(metadata.len()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(error) => Err(error),
    }
}

async fn truncate(path: &Path) -> io::Result<()> {
    tokio::fs::File::create(path).await.map(drop)
}

/// The size and, for an LFS file (its etag is a sha256), the hash of every byte; a bad file is
/// deleted so the next start downloads it again.
pub(super) async fn verify(file: &str, remote: &Remote, partial: &Path) -> Result<(), HubError> {
    let actual_size = std::fs::metadata(partial).map_err(io_error(partial))?.len();
    if let Some(expected) = remote.size
        && expected != actual_size
    {
        std::fs::remove_file(partial).map_err(io_error(partial))?;
        return Err(HubError::SizeMismatch {
            file: file.to_owned(),
            expected,
            actual: actual_size,
        });
    }
    if !is_sha256(&remote.etag) {
        return Ok(());
    }
    tracing::info!("verifying the checksum of {file}");
    let path = partial.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || sha256_file(&path))
        .await
        .map_err(|error| io_error(partial)(io::Error::other(error)))?
        .map_err(io_error(partial))?;
    let expected = remote.etag.to_ascii_lowercase();
    if actual != expected {
        std::fs::remove_file(partial).map_err(io_error(partial))?;
        return Err(HubError::ChecksumMismatch {
            file: file.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; WRITE_BUFFER];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
