//! The operator's use cases on the model library: download a model from the Hugging Face hub,
//! list a hub repository's GGUF files, remove a downloaded model, choose the default. Each takes
//! the [`Operator`] (only the routes' extractor makes one); the embedded engine does the work.
use crate::{
    AppState,
    error::{AppError, AppResult},
    hub::HubFile,
    lm::ModelInfo,
    operator::Operator,
};

/// Longest repository name and file path accepted (the hub's own limits are lower).
const MAX_NAME_CHARS: usize = 512;

#[cfg(feature = "embedded")]
fn library(state: &AppState) -> AppResult<&crate::embedded::EmbeddedEngine> {
    match &state.lm {
        crate::engine::Engine::Embedded(engine) => Ok(engine),
        crate::engine::Engine::Server(_) => Err(not_embedded()),
    }
}

#[cfg(not(feature = "embedded"))]
fn library(_: &AppState) -> AppResult<std::convert::Infallible> {
    Err(not_embedded())
}

#[cfg(feature = "embedded")]
fn refused(error: crate::embedded::ManageError) -> AppError {
    use crate::embedded::ManageError;
    match error {
        ManageError::NotFound(_) => AppError::NotFound("model"),
        ManageError::Conflict(message) => AppError::Conflict(message),
        ManageError::Invalid(message) => AppError::Invalid(message),
    }
}

fn not_embedded() -> AppError {
    AppError::Conflict(
        "The models are the model server's (LM_API_URL is set): change them on llama-server."
            .into(),
    )
}

fn name<'a>(what: &str, value: &'a str) -> AppResult<&'a str> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::Invalid(format!(
            "Give the {what} (at most {MAX_NAME_CHARS} characters)."
        )));
    }
    Ok(value)
}

/// Starts downloading `file` from the hub repository `repo`; the model as the library lists
/// it now (with its download's progress).
#[tracing::instrument(skip_all, fields(repo, file))]
pub async fn download_model(
    state: &AppState,
    _operator: &Operator,
    repo: &str,
    file: &str,
) -> AppResult<ModelInfo> {
    let (repo, file) = (name("repository", repo)?, name("file", file)?);
    #[cfg(feature = "embedded")]
    {
        let id = library(state)?
            .start_download(repo, file)
            .map_err(refused)?;
        let models = super::models(state).await?;
        models
            .into_iter()
            .find(|m| m.id == id)
            .ok_or_else(|| AppError::Internal(anyhow::anyhow!("a download vanished from the list")))
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = (repo, file);
        match library(state)? {}
    }
}

/// The GGUF files of a hub repository, to choose a download from.
pub async fn hub_files(
    state: &AppState,
    _operator: &Operator,
    repo: &str,
) -> AppResult<Vec<HubFile>> {
    let repo = name("repository", repo)?;
    let settings = crate::hub::HubSettings {
        repo: repo.to_owned(),
        ..crate::hub_settings(&state.config)
    };
    crate::hub::list_gguf_files(&settings)
        .await
        .map_err(|e| match e {
            crate::hub::HubError::InvalidRepo(_) => AppError::Invalid(format!(
                "“{repo}” is not a hub repository's name: use owner/name."
            )),
            crate::hub::HubError::NotFound { .. } => AppError::NotFound("hub repository"),
            other => AppError::Unavailable(format!("The hub could not list {repo}: {other}.")),
        })
}

/// Removes a model downloaded into the hub cache.
#[tracing::instrument(skip_all, fields(model = id))]
pub async fn remove_model(state: &AppState, _operator: &Operator, id: &str) -> AppResult<()> {
    #[cfg(feature = "embedded")]
    {
        let engine = library(state)?.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || engine.remove(&id))
            .await
            .map_err(|e| AppError::Internal(e.into()))?
            .map_err(refused)?;
        Ok(())
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = id;
        match library(state)? {}
    }
}

/// Makes `id` the default model (of chats without one of their own), kept across restarts.
#[tracing::instrument(skip_all, fields(model = id))]
pub async fn set_default_model(state: &AppState, _operator: &Operator, id: &str) -> AppResult<()> {
    #[cfg(feature = "embedded")]
    {
        library(state)?.set_default(id).map_err(refused)?;
        Ok(())
    }
    #[cfg(not(feature = "embedded"))]
    {
        let _ = id;
        match library(state)? {}
    }
}
