//! Fetches a GGUF model file from a Hugging Face hub into the standard hub cache layout, as
//! `huggingface-cli download` and `llama-server -hf` do, so a file fetched by either is reused
//! and a file fetched here is found by them:
//!
//! ```text
//! <cache_dir>/models--<owner>--<name>/
//!     blobs/<etag>                  the bytes (for LFS files the etag is their sha256)
//!     blobs/<etag>.incomplete       a download in progress, resumed with Range
//!     refs/<revision>               the commit hash the revision pointed at, no newline
//!     snapshots/<commit>/<file>     a relative symlink to ../../blobs/<etag>
//! ```

use std::{
    fmt,
    io::{self, Read},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{
    StatusCode, Url,
    header::{self, HeaderMap, HeaderValue},
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// How many times a download is tried before giving up (the bytes on disk are kept).
const ATTEMPTS: u32 = 5;
/// The usual wait before the first retry of a cut download (`HubSettings::retry_delay`).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Renamed repositories answer with a redirect to the new name; more than this is a loop.
const MAX_RENAME_HOPS: usize = 5;
/// Writes to the `.incomplete` file go out in blocks this large, not one per network chunk.
const WRITE_BUFFER: usize = 1 << 20;

/// Where and what to fetch. `Debug` hides the token.
#[derive(Clone)]
pub struct HubSettings {
    /// The hub, e.g. "https://huggingface.co" (HF_ENDPOINT); a trailing slash is fine.
    pub endpoint: String,
    /// HF_TOKEN, sent as "Authorization: Bearer ..." to the hub's own host only; never logged.
    pub token: Option<String>,
    /// The hub cache root (what HF_HUB_CACHE names): see `default_cache_dir`.
    pub cache_dir: PathBuf,
    /// HF_HUB_OFFLINE: use the cache only, never the network.
    pub offline: bool,
    /// "owner/name", e.g. "Qwen/Qwen2.5-0.5B-Instruct-GGUF".
    pub repo: String,
    /// The file's path in the repository, e.g. "qwen2.5-0.5b-instruct-q4_k_m.gguf".
    pub file: String,
    /// A branch, tag or commit hash, e.g. "main".
    pub revision: String,
    /// The wait before the first retry of a cut download; it doubles with each attempt (1 s,
    /// 2 s, 4 s, 8 s with `DEFAULT_RETRY_DELAY`). Tests use a few milliseconds.
    pub retry_delay: Duration,
}

impl fmt::Debug for HubSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSettings")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("cache_dir", &self.cache_dir)
            .field("offline", &self.offline)
            .field("repo", &self.repo)
            .field("file", &self.file)
            .field("revision", &self.revision)
            .field("retry_delay", &self.retry_delay)
            .finish()
    }
}

/// The cache root from the environment's values: HF_HUB_CACHE, else HF_HOME/hub, else
/// ~/.cache/huggingface/hub (HOME). An empty value counts as unset; with no HOME either, the
/// path is relative to the working directory.
pub fn default_cache_dir(
    hf_hub_cache: Option<&Path>,
    hf_home: Option<&Path>,
    home: Option<&Path>,
) -> PathBuf {
    fn set(value: Option<&Path>) -> Option<&Path> {
        value.filter(|path| !path.as_os_str().is_empty())
    }
    if let Some(dir) = set(hf_hub_cache) {
        return dir.to_path_buf();
    }
    if let Some(dir) = set(hf_home) {
        return dir.join("hub");
    }
    set(home)
        .unwrap_or(Path::new(""))
        .join(".cache")
        .join("huggingface")
        .join("hub")
}

/// Shared with the page's model indicator: bytes so far and total (0 = unknown yet).
#[derive(Debug, Default)]
pub struct Progress {
    pub downloaded: AtomicU64,
    pub total: AtomicU64,
}

impl Progress {
    /// 0..=100, or None while the total is unknown.
    pub fn percent(&self) -> Option<u8> {
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            return None;
        }
        let downloaded = self.downloaded.load(Ordering::Relaxed).min(total);
        Some(u8::try_from(u128::from(downloaded) * 100 / u128::from(total)).unwrap_or(100))
    }

    fn set(&self, downloaded: u64, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.downloaded.store(downloaded, Ordering::Relaxed);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "LM_MODEL_REPO {0:?} is not a Hugging Face repository name: use the form owner/name, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    )]
    InvalidRepo(String),
    #[error(
        "LM_MODEL_FILE {0:?} is not a file name in a repository: use a relative path without empty, . or .. parts, e.g. qwen2.5-0.5b-instruct-q4_k_m.gguf"
    )]
    InvalidFile(String),
    #[error(
        "the model revision {0:?} is not a branch, tag or commit name: use a name without empty, . or .. parts, e.g. main"
    )]
    InvalidRevision(String),
    #[error("HF_ENDPOINT {0:?} is not an http(s) URL: use e.g. https://huggingface.co")]
    InvalidEndpoint(String),
    #[error(
        "HF_TOKEN contains characters that cannot be sent in an HTTP header: set it to the token exactly as the hub shows it"
    )]
    InvalidToken,
    #[error(
        "the model {repo}/{file} is not in the cache at {} and HF_HUB_OFFLINE is set: set LM_MODEL_PATH to a local GGUF file or LM_API_URL to a llama-server, or unset HF_HUB_OFFLINE to download it",
        cache_dir.display()
    )]
    OfflineNotCached {
        repo: String,
        file: String,
        cache_dir: PathBuf,
    },
    #[error(
        "the hub at {endpoint} is not reachable ({cause}): set LM_MODEL_PATH to a local GGUF file or LM_API_URL to a llama-server, or HF_ENDPOINT to a reachable hub"
    )]
    Unreachable { endpoint: String, cause: String },
    #[error(
        "the hub at {endpoint} needs a token for {repo} ({status}): set HF_TOKEN to a Hugging Face access token that can read it, or check LM_MODEL_REPO if the repository is public"
    )]
    TokenNeeded {
        endpoint: String,
        repo: String,
        status: StatusCode,
    },
    #[error(
        "the hub at {endpoint} refused HF_TOKEN for {repo} ({status}): check that the token is valid and may read the repository (a gated model's terms must be accepted on the hub first)"
    )]
    TokenRefused {
        endpoint: String,
        repo: String,
        status: StatusCode,
    },
    #[error(
        "the hub at {endpoint} has no file {file} in {repo} at revision {revision} (404 Not Found): check LM_MODEL_REPO and LM_MODEL_FILE"
    )]
    NotFound {
        endpoint: String,
        repo: String,
        file: String,
        revision: String,
    },
    #[error(
        "the hub at {endpoint} answered {status} for {repo}/{file}: try again later, or set LM_MODEL_PATH to a local GGUF file or LM_API_URL to a llama-server"
    )]
    Status {
        endpoint: String,
        repo: String,
        file: String,
        status: StatusCode,
    },
    #[error(
        "the hub at {endpoint} answered for {repo}/{file} without a usable {missing}: check that HF_ENDPOINT names a Hugging Face hub"
    )]
    BadResponse {
        endpoint: String,
        repo: String,
        file: String,
        missing: &'static str,
    },
    #[error(
        "the download of {file} failed after {attempts} attempts ({cause}); the {bytes} bytes so far are kept in {} and the next start resumes from them",
        partial.display()
    )]
    Download {
        file: String,
        attempts: u32,
        cause: String,
        bytes: u64,
        partial: PathBuf,
    },
    #[error(
        "the download of {file} did not match the hub's checksum (expected {expected}, got {actual}); the file was deleted and the next start will download it again"
    )]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },
    #[error(
        "the download of {file} has {actual} bytes where the hub announced {expected}; the file was deleted and the next start will download it again"
    )]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "cannot use the model cache at {}: {source}; check that HF_HUB_CACHE (or HF_HOME) names a writable directory with enough free space",
        path.display()
    )]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> HubError + '_ {
    move |source| HubError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Returns the local path of the model file (the snapshots/<commit>/<file> path), downloading
/// it if needed. A cached file is returned without any network request, offline or not.
pub async fn fetch_model(settings: &HubSettings, progress: &Progress) -> Result<PathBuf, HubError> {
    let names = Names::new(settings)?;
    if let Some(path) = names.cached(&settings.revision)? {
        let len = std::fs::metadata(&path).map_err(io_error(&path))?.len();
        progress.set(len, len);
        tracing::info!(
            "model {}/{} found in the cache",
            settings.repo,
            settings.file
        );
        return Ok(path);
    }
    if settings.offline {
        return Err(HubError::OfflineNotCached {
            repo: settings.repo.clone(),
            file: settings.file.clone(),
            cache_dir: settings.cache_dir.clone(),
        });
    }
    let hub = Hub::new(settings)?;
    let remote = hub.head(&names).await?;
    let blob = names.repo_dir.join("blobs").join(&remote.etag);
    // The same bytes may be there already under another revision.
    if !blob.is_file() {
        let mut partial = blob.clone().into_os_string();
        partial.push(".incomplete");
        let partial = PathBuf::from(partial);
        let blobs = names.repo_dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io_error(&blobs))?;
        tracing::info!(
            "downloading model {}/{} ({}) into {}",
            settings.repo,
            settings.file,
            remote
                .size
                .map_or_else(|| "size unknown".to_owned(), mebibytes),
            settings.cache_dir.display()
        );
        hub.download(&remote, &partial, progress).await?;
        verify(&settings.file, &remote, &partial).await?;
        std::fs::rename(&partial, &blob).map_err(io_error(&blob))?;
    }
    if settings.revision != remote.commit {
        names.write_ref(&settings.revision, &remote.commit)?;
    }
    let path = names.link_snapshot(&remote.commit, &remote.etag)?;
    let len = std::fs::metadata(&path).map_err(io_error(&path))?.len();
    progress.set(len, len);
    tracing::info!(
        "model {}/{} is at {}",
        settings.repo,
        settings.file,
        path.display()
    );
    Ok(path)
}

/// The validated names and the repository's folder in the cache.
struct Names<'a> {
    repo_dir: PathBuf,
    file_parts: Vec<&'a str>,
}

impl<'a> Names<'a> {
    fn new(settings: &'a HubSettings) -> Result<Self, HubError> {
        let repo_parts: Vec<&str> = settings.repo.split('/').collect();
        if repo_parts.len() != 2 || !repo_parts.iter().all(|part| is_path_part(part)) {
            return Err(HubError::InvalidRepo(settings.repo.clone()));
        }
        let file_parts: Vec<&str> = settings.file.split('/').collect();
        if !file_parts.iter().all(|part| is_path_part(part)) {
            return Err(HubError::InvalidFile(settings.file.clone()));
        }
        if !settings.revision.split('/').all(is_path_part) {
            return Err(HubError::InvalidRevision(settings.revision.clone()));
        }
        let repo_dir = settings
            .cache_dir
            .join(format!("models--{}", settings.repo.replace('/', "--")));
        Ok(Self {
            repo_dir,
            file_parts,
        })
    }

    fn snapshot(&self, commit: &str) -> PathBuf {
        let mut path = self.repo_dir.join("snapshots").join(commit);
        path.extend(&self.file_parts);
        path
    }

    fn ref_path(&self, revision: &str) -> PathBuf {
        let mut path = self.repo_dir.join("refs");
        path.extend(revision.split('/'));
        path
    }

    /// The snapshot path when the revision's commit (or the revision as a commit) has the file.
    fn cached(&self, revision: &str) -> Result<Option<PathBuf>, HubError> {
        let ref_path = self.ref_path(revision);
        match std::fs::read_to_string(&ref_path) {
            Ok(commit) => {
                let commit = commit.trim();
                if is_token(commit) {
                    let path = self.snapshot(commit);
                    if path.is_file() {
                        return Ok(Some(path));
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&ref_path)(error)),
        }
        if is_commit(revision) {
            let path = self.snapshot(revision);
            if path.is_file() {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// Written beside and renamed, so a reader never sees half a hash.
    fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
        let path = self.ref_path(revision);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut temporary = path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        std::fs::write(&temporary, commit).map_err(io_error(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io_error(&path))
    }

    /// snapshots/<commit>/<file> -> ../../blobs/<etag> (one more `..` per sub-folder of the file).
    fn link_snapshot(&self, commit: &str, etag: &str) -> Result<PathBuf, HubError> {
        let link = self.snapshot(commit);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let mut target = PathBuf::new();
        for _ in 0..self.file_parts.len() + 1 {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        match std::fs::symlink_metadata(&link) {
            Ok(_) => std::fs::remove_file(&link).map_err(io_error(&link))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&link)(error)),
        }
        symlink(&target, &link).map_err(io_error(&link))?;
        Ok(link)
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &Path, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

/// A folder or file name that stays where it is put: no separators, no `.` or `..`.
fn is_path_part(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\', '\0'])
}

/// A commit hash or an etag from the hub, used as a file name: letters, digits, `-`, `_`.
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_commit(value: &str) -> bool {
    value.len() == 40 && value.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_sha256(value: &str) -> bool {
    value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit())
}

fn mebibytes(bytes: u64) -> String {
    // Display only: the precision lost in the conversion does not matter.
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The error text of a request error and its causes, without the URL (a CDN URL carries a
/// signature).
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// What the hub said about the file.
struct Remote {
    commit: String,
    etag: String,
    size: Option<u64>,
    /// Where the bytes are: the CDN the hub redirected to, or the resolve URL itself.
    url: Url,
}

/// One download attempt's end when it is not success.
enum Failure {
    /// The connection failed or was cut: try again from the bytes on disk.
    Retry(String),
    Fatal(HubError),
}

struct Hub<'a> {
    settings: &'a HubSettings,
    endpoint: Url,
    /// `settings.endpoint` without its trailing slash, for messages.
    endpoint_text: &'a str,
    client: reqwest::Client,
    auth: Option<HeaderValue>,
}

impl<'a> Hub<'a> {
    fn new(settings: &'a HubSettings) -> Result<Self, HubError> {
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
    async fn head(&self, names: &Names<'_>) -> Result<Remote, HubError> {
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

    /// Downloads into `partial`, resuming from the bytes on disk, retrying cut connections with
    /// backoff.
    async fn download(
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
fn normalize_etag(etag: &str) -> String {
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    etag.trim_matches('"').to_owned()
}

/// `bytes 100-299/300` -> 100.
fn content_range_start(value: &str) -> Option<u64> {
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
async fn verify(file: &str, remote: &Remote, partial: &Path) -> Result<(), HubError> {
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

/// Progress to the shared `Progress`, a terminal bar on stderr, or (when stderr is not a
/// terminal, as in a container's log) a log line at each 10% step.
struct Reporter<'a> {
    progress: &'a Progress,
    bar: ProgressBar,
    total: u64,
    logged_tenths: u64,
    file: &'a str,
}

impl<'a> Reporter<'a> {
    fn new(progress: &'a Progress, total: Option<u64>, file: &'a str, on_disk: u64) -> Self {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(file.to_owned());
        let total = total.unwrap_or(0);
        progress.set(on_disk, total);
        bar.set_position(on_disk);
        let logged_tenths = tenths(on_disk, total);
        if on_disk > 0 {
            tracing::info!(
                "resuming the download of {file} at {} ({}%)",
                mebibytes(on_disk),
                logged_tenths * 10
            );
        }
        Self {
            progress,
            bar,
            total,
            logged_tenths,
            file,
        }
    }

    fn set(&mut self, bytes: u64) {
        self.progress.downloaded.store(bytes, Ordering::Relaxed);
        self.bar.set_position(bytes);
        let tenths = tenths(bytes, self.total);
        // In a terminal the bar shows it; log lines would only break the bar.
        if tenths > self.logged_tenths && self.bar.is_hidden() {
            self.logged_tenths = tenths;
            tracing::info!(
                "downloading {}: {}% ({} of {})",
                self.file,
                tenths * 10,
                mebibytes(bytes),
                mebibytes(self.total)
            );
        }
    }

    /// Back to byte 0 (the server sent the whole file again).
    fn restart(&mut self) {
        self.logged_tenths = 0;
        self.bar.reset();
        self.set(0);
    }
}

/// How many tenths of `total` `bytes` are (0 while the total is unknown).
fn tenths(bytes: u64, total: u64) -> u64 {
    match total {
        0 => 0,
        total => u64::try_from(u128::from(bytes.min(total)) * 10 / u128::from(total)).unwrap_or(10),
    }
}

#[cfg(test)]
mod tests {
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

    #[tokio::test]
    async fn first_download_lands_in_the_hub_cache_layout() {
        let (hub, endpoint) = start(Knobs::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let progress = Progress::default();

        let path = fetch_model(&settings(&endpoint, cache.path()), &progress)
            .await
            .unwrap();

        let repo = repo_dir(cache.path());
        assert_eq!(path, repo.join("snapshots").join(COMMIT).join(FILE));
        assert_eq!(
            std::fs::read_link(&path).unwrap(),
            Path::new("../../blobs").join(&hub.sha)
        );
        assert_eq!(std::fs::read(&path).unwrap(), hub.model);
        assert_eq!(
            std::fs::read(repo.join("blobs").join(&hub.sha)).unwrap(),
            hub.model
        );
        assert_eq!(entries(&repo.join("blobs")), [hub.sha.as_str()]);
        assert_eq!(
            std::fs::read_to_string(repo.join("refs/main")).unwrap(),
            COMMIT
        );
        assert_eq!(entries(&repo.join("refs")), ["main"]);
        assert_eq!(progress.percent(), Some(100));
        assert_eq!(progress.downloaded.load(Ordering::SeqCst), SIZE as u64);
        assert_eq!(progress.total.load(Ordering::SeqCst), SIZE as u64);
        let seen = hub.seen();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0].method, Method::HEAD);
        assert_eq!(seen[0].path, format!("/{REPO}/resolve/main/{FILE}"));
        assert_eq!(seen[1].method, Method::GET);
        assert_eq!(seen[1].range, None);
    }

    #[tokio::test]
    async fn second_call_is_served_from_the_cache_without_requests() {
        let (hub, endpoint) = start(Knobs::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let settings = settings(&endpoint, cache.path());
        let first = fetch_model(&settings, &Progress::default()).await.unwrap();
        let requests = hub.seen().len();

        let progress = Progress::default();
        let second = fetch_model(&settings, &progress).await.unwrap();

        assert_eq!(second, first);
        assert_eq!(hub.seen().len(), requests);
        assert_eq!(progress.percent(), Some(100));
    }

    #[tokio::test]
    async fn cut_connection_is_resumed_with_range() {
        const CUT: usize = 100_000;
        let (hub, endpoint) = start(Knobs {
            cut_after: Some(CUT),
            cuts: 1,
            ..Knobs::default()
        })
        .await;
        let cache = tempfile::tempdir().unwrap();
        let progress = Progress::default();

        let path = fetch_model(&settings(&endpoint, cache.path()), &progress)
            .await
            .unwrap();

        assert_eq!(std::fs::read(&path).unwrap(), hub.model);
        let gets = hub.cdn_gets();
        assert_eq!(gets.len(), 2, "{gets:?}");
        assert_eq!(gets[0].range, None);
        assert_eq!(gets[1].range.as_deref(), Some("bytes=100000-"));
        // Each byte crossed the wire once: the first part was not fetched again.
        assert_eq!(hub.sent(), SIZE as u64);
        assert_eq!(progress.percent(), Some(100));
        assert_eq!(
            entries(&repo_dir(cache.path()).join("blobs")),
            [hub.sha.as_str()]
        );
    }

    #[tokio::test]
    async fn incomplete_file_from_an_earlier_run_is_resumed() {
        const HAVE: usize = 123_456;
        let (hub, endpoint) = start(Knobs::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let blobs = repo_dir(cache.path()).join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(
            blobs.join(format!("{}.incomplete", hub.sha)),
            &hub.model[..HAVE],
        )
        .unwrap();

        let path = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
            .await
            .unwrap();

        assert_eq!(std::fs::read(&path).unwrap(), hub.model);
        let gets = hub.cdn_gets();
        assert_eq!(gets.len(), 1, "{gets:?}");
        assert_eq!(gets[0].range.as_deref(), Some("bytes=123456-"));
        assert_eq!(hub.sent(), (SIZE - HAVE) as u64);
        assert_eq!(entries(&blobs), [hub.sha.as_str()]);
    }

    #[tokio::test]
    async fn server_ignoring_range_starts_over_from_zero() {
        let (hub, endpoint) = start(Knobs {
            ignore_range: true,
            ..Knobs::default()
        })
        .await;
        let cache = tempfile::tempdir().unwrap();
        let blobs = repo_dir(cache.path()).join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(
            blobs.join(format!("{}.incomplete", hub.sha)),
            &hub.model[..1000],
        )
        .unwrap();

        let path = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
            .await
            .unwrap();

        // Appending the whole file after the first 1000 bytes would fail the size check.
        assert_eq!(std::fs::read(&path).unwrap(), hub.model);
        assert_eq!(hub.cdn_gets()[0].range.as_deref(), Some("bytes=1000-"));
    }

    #[tokio::test]
    async fn retries_give_up_and_keep_the_bytes_so_far() {
        let (hub, endpoint) = start(Knobs {
            cut_after: Some(1000),
            cuts: usize::MAX,
            ..Knobs::default()
        })
        .await;
        let cache = tempfile::tempdir().unwrap();

        let error = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                HubError::Download {
                    attempts: 5,
                    bytes: 5000,
                    ..
                }
            ),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("next start resumes"), "{text}");
        let gets = hub.cdn_gets();
        assert_eq!(gets.len(), 5);
        assert_eq!(gets[4].range.as_deref(), Some("bytes=4000-"));
        let partial = repo_dir(cache.path())
            .join("blobs")
            .join(format!("{}.incomplete", hub.sha));
        assert_eq!(std::fs::read(partial).unwrap(), hub.model[..5000]);
        assert!(entries(&repo_dir(cache.path()).join("snapshots")).is_empty());
    }

    #[tokio::test]
    async fn checksum_mismatch_is_refused_and_the_file_deleted() {
        let mut wrong = model_bytes();
        wrong[SIZE / 2] ^= 0xff;
        let wrong_sha = sha256_hex(&wrong);
        let (hub, endpoint) = start(Knobs {
            served: Some(wrong),
            ..Knobs::default()
        })
        .await;
        let cache = tempfile::tempdir().unwrap();

        let error = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
            .await
            .unwrap_err();

        assert!(
            matches!(error, HubError::ChecksumMismatch { .. }),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "the download of {FILE} did not match the hub's checksum (expected {}, got {wrong_sha})",
                hub.sha
            )),
            "{text}"
        );
        assert!(text.contains("deleted"), "{text}");
        let repo = repo_dir(cache.path());
        assert!(entries(&repo.join("blobs")).is_empty());
        assert!(entries(&repo.join("snapshots")).is_empty());
        assert!(entries(&repo.join("refs")).is_empty());
    }

    #[tokio::test]
    async fn offline_with_a_cache_makes_no_requests() {
        let (hub, endpoint) = start(Knobs::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let mut settings = settings(&endpoint, cache.path());
        let online = fetch_model(&settings, &Progress::default()).await.unwrap();
        let requests = hub.seen().len();

        settings.offline = true;
        let offline = fetch_model(&settings, &Progress::default()).await.unwrap();

        assert_eq!(offline, online);
        assert_eq!(hub.seen().len(), requests);
    }

    #[tokio::test]
    async fn offline_without_a_cache_says_what_to_set() {
        let (hub, endpoint) = start(Knobs::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let mut settings = settings(&endpoint, cache.path());
        settings.offline = true;

        let error = fetch_model(&settings, &Progress::default())
            .await
            .unwrap_err();

        assert!(
            matches!(error, HubError::OfflineNotCached { .. }),
            "{error:?}"
        );
        let text = error.to_string();
        for needle in [
            &format!("{REPO}/{FILE}"),
            &cache.path().display().to_string(),
            "HF_HUB_OFFLINE",
            "LM_MODEL_PATH",
            "LM_API_URL",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
        assert!(hub.seen().is_empty());
    }

    /// A cache laid out by huggingface-cli (or llama-server -hf) is used as it is.
    #[tokio::test]
    async fn cache_made_by_another_tool_is_reused() {
        let cache = tempfile::tempdir().unwrap();
        let repo = repo_dir(cache.path());
        let model = model_bytes();
        let sha = sha256_hex(&model);
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::write(repo.join("blobs").join(&sha), &model).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
        let snapshot = repo.join("snapshots").join(COMMIT);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::os::unix::fs::symlink(Path::new("../../blobs").join(&sha), snapshot.join(FILE))
            .unwrap();
        // Any request would fail: nothing listens there.
        let mut settings = settings(&closed_endpoint(), cache.path());

        let by_branch = fetch_model(&settings, &Progress::default()).await.unwrap();
        settings.revision = COMMIT.to_owned();
        std::fs::remove_file(repo.join("refs/main")).unwrap();
        let by_commit = fetch_model(&settings, &Progress::default()).await.unwrap();

        assert_eq!(by_branch, snapshot.join(FILE));
        assert_eq!(by_commit, snapshot.join(FILE));
    }

    #[tokio::test]
    async fn file_in_a_subfolder_gets_a_deeper_relative_link() {
        let file = "quants/q4/tiny-q4_k_m.gguf";
        let (hub, endpoint) = start(Knobs {
            file: Some(file),
            ..Knobs::default()
        })
        .await;
        let cache = tempfile::tempdir().unwrap();
        let mut settings = settings(&endpoint, cache.path());
        settings.file = file.to_owned();

        let path = fetch_model(&settings, &Progress::default()).await.unwrap();

        let repo = repo_dir(cache.path());
        assert_eq!(path, repo.join("snapshots").join(COMMIT).join(file));
        assert_eq!(
            std::fs::read_link(&path).unwrap(),
            Path::new("../../../../blobs").join(&hub.sha)
        );
        assert_eq!(std::fs::read(&path).unwrap(), hub.model);
    }

    #[tokio::test]
    async fn missing_file_is_a_404_naming_repo_and_file() {
        let (_hub, endpoint) = start(Knobs::default()).await;
        let cache = tempfile::tempdir().unwrap();
        let mut settings = settings(&endpoint, cache.path());
        settings.file = "absent.gguf".to_owned();

        let error = fetch_model(&settings, &Progress::default())
            .await
            .unwrap_err();

        assert!(matches!(error, HubError::NotFound { .. }), "{error:?}");
        let text = error.to_string();
        for needle in [REPO, "absent.gguf", "LM_MODEL_REPO", "LM_MODEL_FILE"] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[tokio::test]
    async fn token_is_required_and_sent_to_the_hub_only() {
        let (hub, endpoint) = start(Knobs {
            token: Some("hf_secret"),
            // The same server under another host name: a CDN elsewhere, for the client.
            cdn_host: Some("localhost"),
            ..Knobs::default()
        })
        .await;
        let cache = tempfile::tempdir().unwrap();
        let mut settings = settings(&endpoint, cache.path());

        let error = fetch_model(&settings, &Progress::default())
            .await
            .unwrap_err();
        assert!(matches!(error, HubError::TokenNeeded { .. }), "{error:?}");
        assert!(error.to_string().contains("HF_TOKEN"), "{error}");

        settings.token = Some("hf_wrong".to_owned());
        let error = fetch_model(&settings, &Progress::default())
            .await
            .unwrap_err();
        assert!(matches!(error, HubError::TokenRefused { .. }), "{error:?}");
        assert!(error.to_string().contains("HF_TOKEN"), "{error}");
        assert!(!error.to_string().contains("hf_wrong"), "{error}");

        settings.token = Some("hf_secret".to_owned());
        assert!(!format!("{settings:?}").contains("hf_secret"));
        let path = fetch_model(&settings, &Progress::default()).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), hub.model);
        let seen = hub.seen();
        assert_eq!(seen.len(), 4, "{seen:?}");
        let head = &seen[2];
        assert_eq!(head.method, Method::HEAD);
        assert_eq!(head.auth.as_deref(), Some("Bearer hf_secret"));
        let gets = hub.cdn_gets();
        assert_eq!(gets.len(), 1, "{gets:?}");
        assert_eq!(gets[0].auth, None);
    }

    #[tokio::test]
    async fn unreachable_endpoint_says_what_to_set() {
        let cache = tempfile::tempdir().unwrap();
        let endpoint = closed_endpoint();

        let error = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
            .await
            .unwrap_err();

        assert!(matches!(error, HubError::Unreachable { .. }), "{error:?}");
        let text = error.to_string();
        for needle in [
            &format!("the hub at {endpoint} is not reachable"),
            "LM_MODEL_PATH",
            "LM_API_URL",
            "HF_ENDPOINT",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[tokio::test]
    async fn names_that_would_leave_the_cache_are_refused() {
        let cache = tempfile::tempdir().unwrap();
        let endpoint = closed_endpoint();
        for (repo, file, revision) in [
            ("acme", FILE, "main"),
            ("acme/../x", FILE, "main"),
            (REPO, "../escape.gguf", "main"),
            (REPO, "sub//x.gguf", "main"),
            (REPO, FILE, "../main"),
        ] {
            let mut settings = settings(&endpoint, cache.path());
            settings.repo = repo.to_owned();
            settings.file = file.to_owned();
            settings.revision = revision.to_owned();
            let error = fetch_model(&settings, &Progress::default())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    error,
                    HubError::InvalidRepo(_)
                        | HubError::InvalidFile(_)
                        | HubError::InvalidRevision(_)
                ),
                "{repo} {file} {revision}: {error:?}"
            );
        }
        assert!(entries(cache.path()).is_empty());
    }

    #[test]
    fn default_cache_dir_precedence() {
        let cache = Some(Path::new("/c"));
        let hf_home = Some(Path::new("/h"));
        let home = Some(Path::new("/home/u"));
        assert_eq!(default_cache_dir(cache, hf_home, home), Path::new("/c"));
        assert_eq!(default_cache_dir(None, hf_home, home), Path::new("/h/hub"));
        assert_eq!(
            default_cache_dir(None, None, home),
            Path::new("/home/u/.cache/huggingface/hub")
        );
        assert_eq!(
            default_cache_dir(Some(Path::new("")), Some(Path::new("")), home),
            Path::new("/home/u/.cache/huggingface/hub")
        );
        assert_eq!(
            default_cache_dir(None, None, None),
            Path::new(".cache/huggingface/hub")
        );
    }

    #[test]
    fn progress_percent() {
        let progress = Progress::default();
        assert_eq!(progress.percent(), None);
        progress.total.store(200, Ordering::SeqCst);
        assert_eq!(progress.percent(), Some(0));
        progress.downloaded.store(99, Ordering::SeqCst);
        assert_eq!(progress.percent(), Some(49));
        progress.downloaded.store(300, Ordering::SeqCst);
        assert_eq!(progress.percent(), Some(100));
    }

    #[test]
    fn etags_and_ranges_are_parsed() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
        assert_eq!(content_range_start("bytes 100-299/300"), Some(100));
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
