//! The operator's changes to the library: downloads from the Hugging Face hub into its cache,
//! removing a downloaded model (from the library and the cache), and choosing the default model
//! (kept in the data directory across restarts). Who may call these is the routes' concern.
use std::{path::Path, sync::Arc};

use super::{EmbeddedEngine, Slot, library::Origin, lock};
use crate::{
    hub::{self, HubSettings},
    lm::{ModelDownload, ModelInfo},
};

/// Why a change to the library was refused; the text says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

/// A download the operator started: in progress, or failed (with why).
pub struct Download {
    /// The model's name once it is in the library.
    pub id: String,
    pub repo: String,
    pub progress: Arc<hub::Progress>,
    pub failed: Option<String>,
}

impl EmbeddedEngine {
    /// The operator's downloads, as the library lists them (those whose model is listed
    /// already are done and left out).
    pub(super) fn downloads(&self, listed: &[super::ModelFile]) -> Vec<ModelInfo> {
        let mut downloads = lock(&self.shared.downloads);
        downloads.retain(|d| d.failed.is_some() || !listed.iter().any(|m| m.id == d.id));
        downloads
            .iter()
            .map(|d| ModelInfo {
                id: d.id.clone(),
                size_bytes: Some(d.progress.total.load(std::sync::atomic::Ordering::Relaxed))
                    .filter(|&total| total > 0),
                source: Some(format!("hub: {}", d.repo)),
                download: Some(ModelDownload {
                    percent: d.progress.percent(),
                    error: d.failed.clone(),
                }),
                ..ModelInfo::default()
            })
            .collect()
    }

    /// Starts downloading `file` of the hub repository `repo` into the hub cache, with the
    /// configured hub, token and offline setting; the model joins the library when it is
    /// there. Answers the model's name at once.
    pub fn start_download(&self, repo: &str, file: &str) -> Result<String, ManageError> {
        if !file.ends_with(".gguf") {
            return Err(ManageError::Invalid(format!(
                "“{file}” is not a GGUF file: choose a file whose name ends in .gguf."
            )));
        }
        let settings = HubSettings {
            repo: repo.to_owned(),
            file: file.to_owned(),
            revision: "main".into(),
            ..self.shared.settings.hub.clone()
        };
        hub::check_names(&settings).map_err(|e| ManageError::Invalid(sentence_of(e)))?;
        let id = super::library::model_name(Path::new(file));
        self.rescan();
        if let Some(listed) = lock(&self.shared.library).library.find(&id) {
            return Err(ManageError::Conflict(format!(
                "The library already has a model named “{}”.",
                listed.id
            )));
        }
        let progress = Arc::new(hub::Progress::default());
        {
            let mut downloads = lock(&self.shared.downloads);
            if downloads.iter().any(|d| d.id == id && d.failed.is_none()) {
                return Err(ManageError::Conflict(format!(
                    "“{id}” is being downloaded already."
                )));
            }
            // A failed attempt is replaced by the new one (which resumes its bytes).
            downloads.retain(|d| d.id != id);
            downloads.push(Download {
                id: id.clone(),
                repo: repo.to_owned(),
                progress: progress.clone(),
                failed: None,
            });
        }
        tracing::info!(repo, file, "the operator started a model download");
        let engine = self.clone();
        let name = id.clone();
        tokio::spawn(async move {
            let fetched = hub::fetch_model(&settings, &progress).await;
            let engine_ = engine.clone();
            let _ = tokio::task::spawn_blocking(move || engine_.rescan()).await;
            let mut downloads = lock(&engine.shared.downloads);
            match fetched {
                Ok(path) => {
                    tracing::info!(model = %name, path = %path.display(), "downloaded into the library");
                    downloads.retain(|d| d.id != name);
                }
                Err(e) => {
                    tracing::warn!(model = %name, "the download failed: {e}");
                    if let Some(download) = downloads.iter_mut().find(|d| d.id == name) {
                        download.failed = Some(sentence_of(e));
                    }
                }
            }
        });
        Ok(id)
    }

    /// Removes a model downloaded into the hub cache: unloaded, its snapshot link and its bytes
    /// deleted. Never the default, one being loaded or writing a reply, or a file the operator
    /// put in the models folder or configured.
    pub fn remove(&self, id: &str) -> Result<(), ManageError> {
        // A failed download is only forgotten.
        {
            let mut downloads = lock(&self.shared.downloads);
            if let Some(at) = downloads.iter().position(|d| d.id == id) {
                if downloads[at].failed.is_none() {
                    return Err(ManageError::Conflict(format!(
                        "“{id}” is still downloading."
                    )));
                }
                downloads.remove(at);
                return Ok(());
            }
        }
        self.rescan();
        let file = lock(&self.shared.library)
            .library
            .find(id)
            .cloned()
            .ok_or_else(|| ManageError::NotFound(format!("The library has no model “{id}”.")))?;
        if file.id == self.default_id() {
            return Err(ManageError::Conflict(format!(
                "“{id}” is the default model: make another one the default first."
            )));
        }
        if !matches!(file.origin, Origin::Hub(_)) {
            return Err(ManageError::Conflict(format!(
                "“{id}” was not downloaded here (it is configured or in the models folder): remove its file on the server."
            )));
        }
        {
            let mut pool = lock(&self.shared.pool);
            match pool.get(id) {
                Some(Slot::Ready { loaded, .. }) if loaded.busy() => {
                    return Err(ManageError::Conflict(format!(
                        "“{id}” is writing a reply: wait for it to end (or stop it), then remove the model."
                    )));
                }
                Some(Slot::Loading) => {
                    return Err(ManageError::Conflict(format!(
                        "“{id}” is being loaded: try again in a moment."
                    )));
                }
                _ => {}
            }
            pool.remove(id);
        }
        // snapshots/<commit>/<file> links to ../../blobs/<etag>: both go.
        let blob = std::fs::canonicalize(&file.path).ok();
        std::fs::remove_file(&file.path).map_err(|e| {
            ManageError::Conflict(format!("“{id}” could not be removed from the cache: {e}"))
        })?;
        if let Some(blob) =
            blob.filter(|b| b.parent().and_then(Path::file_name) == Some("blobs".as_ref()))
            && let Err(e) = std::fs::remove_file(&blob)
        {
            tracing::warn!(blob = %blob.display(), "the model's bytes could not be deleted: {e}");
        }
        tracing::info!(model = %id, path = %file.path.display(), "the operator removed a model");
        self.rescan();
        Ok(())
    }

    /// Makes `id` the default model, kept across restarts in the data directory.
    pub fn set_default(&self, id: &str) -> Result<(), ManageError> {
        self.rescan();
        if lock(&self.shared.library).library.find(id).is_none() {
            return Err(ManageError::NotFound(format!(
                "The library has no model “{id}”."
            )));
        }
        *lock(&self.shared.default_id) = id.to_owned();
        if let Some(path) = &self.shared.settings.default_choice {
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(path, id));
            if let Err(e) = written {
                tracing::warn!(path = %path.display(), "the default model's choice could not be kept: {e}");
            }
        }
        tracing::info!(model = %id, "the operator made this the default model");
        Ok(())
    }

    /// The operator's choice of default from an earlier run, when that model is still there.
    pub(super) fn restore_default(&self) {
        let Some(path) = &self.shared.settings.default_choice else {
            return;
        };
        let Ok(chosen) = std::fs::read_to_string(path) else {
            return;
        };
        let chosen = chosen.trim();
        if lock(&self.shared.library).library.find(chosen).is_some() {
            *lock(&self.shared.default_id) = chosen.to_owned();
        } else if !chosen.is_empty() {
            tracing::warn!(model = %chosen, "the default model chosen earlier is gone; the configured one is the default");
        }
    }
}

/// A hub error as a sentence (they are written to follow "the model is not available: ").
fn sentence_of(error: hub::HubError) -> String {
    super::sentence(error.to_string())
}
