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
//!
//! `cache`: that layout; `download`: the hub's answers, resumed downloads and their
//! verification; `progress`: what the page and the terminal show meanwhile.
mod cache;
mod download;
mod progress;
#[cfg(test)]
mod tests;

use std::{
    fmt, io,
    path::{Path, PathBuf},
    time::Duration,
};

use reqwest::StatusCode;

use cache::Names;
use download::{Hub, verify};
pub use progress::Progress;
use progress::mebibytes;

/// The usual wait before the first retry of a cut download (`HubSettings::retry_delay`).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(1);

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

/// Checks the repository, file and revision names without asking the hub.
pub fn check_names(settings: &HubSettings) -> Result<(), HubError> {
    Names::new(settings).map(|_| ())
}

/// A file of a hub repository.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct HubFile {
    /// Its path in the repository (what a download names as `file`).
    pub path: String,
    pub size_bytes: Option<u64>,
}

/// The GGUF files of `settings.repo` at `settings.revision`, from the hub's API
/// (`GET /api/models/{repo}/tree/{revision}?recursive=true`).
pub async fn list_gguf_files(settings: &HubSettings) -> Result<Vec<HubFile>, HubError> {
    let probe = HubSettings {
        file: "probe.gguf".into(),
        ..settings.clone()
    };
    Names::new(&probe)?;
    if settings.offline {
        return Err(HubError::Unreachable {
            endpoint: settings.endpoint.clone(),
            cause: "HF_HUB_OFFLINE is set".into(),
        });
    }
    Hub::new(settings)?.gguf_files().await
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
