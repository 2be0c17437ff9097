//! The Hugging Face hub cache layout (see the module above): validated names, refs, snapshot
//! links.
use std::{
    io,
    path::{Path, PathBuf},
};

use super::{HubError, HubSettings, io_error};

/// The validated names and the repository's folder in the cache.
pub(super) struct Names<'a> {
    pub(super) repo_dir: PathBuf,
    pub(super) file_parts: Vec<&'a str>,
}

impl<'a> Names<'a> {
    pub(super) fn new(settings: &'a HubSettings) -> Result<Self, HubError> {
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
    pub(super) fn cached(&self, revision: &str) -> Result<Option<PathBuf>, HubError> {
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
    pub(super) fn write_ref(&self, revision: &str, commit: &str) -> Result<(), HubError> {
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
    pub(super) fn link_snapshot(&self, commit: &str, etag: &str) -> Result<PathBuf, HubError> {
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
pub(super) fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn is_commit(value: &str) -> bool {
    value.len() == 40 && value.chars().all(|c| c.is_ascii_hexdigit())
}

pub(super) fn is_sha256(value: &str) -> bool {
    value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit())
}
