//! `/api/v1/models`: the models a chat may choose, and the operator's changes to the library
//! (`Authorization: Bearer $ADMIN_TOKEN`, or a browser signed in at /admin): download from the
//! hub, list a hub repository's files, remove, choose the default.
use axum::{Json, extract::State, http::StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiPath, ApiQuery, ERRORS};
use crate::routes::documents::Models;
use crate::{
    AppState, chat, error::AppResult, hub::HubFile, lm::ModelInfo, operator::Operator,
    routes::Problem,
};

/// The models a chat may choose: the embedded engine's library (every GGUF model of
/// `LM_MODEL_PATH`, `LM_MODELS_DIR` and the Hugging Face cache, with what its file says and
/// whether it is loaded, and the operator's downloads in progress), or what llama-server serves.
#[utoipa::path(get, path = "/models", tag = "models", security(("bearer" = []), ("session_cookie" = []), ("admin_token" = [])),
    responses((status = 200, description = "The models", body = Models),
              (status = 503, description = "The model server is not reachable or still loading, or the embedded engine's default model is still downloading and no other is there", body = Problem, content_type = ERRORS)))]
pub async fn list_models(State(state): State<AppState>) -> AppResult<Json<Models>> {
    let models = chat::models(&state).await?;
    Ok(Json(Models { models }))
}

/// A file of a Hugging Face hub repository, to download.
#[derive(Deserialize, ToSchema)]
pub struct NewDownload {
    /// "owner/name".
    #[schema(example = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")]
    pub repo: String,
    /// The GGUF file's path in the repository.
    #[schema(example = "smollm2-135m-instruct-q4_k_m.gguf")]
    pub file: String,
}

/// The operator's: downloads a GGUF file from the Hugging Face hub into its cache (resumed
/// and checked against the hub's sha256, as the default model's download). The answer is the
/// model as listed, with `download` progress; it joins the library when done.
#[utoipa::path(post, path = "/models", tag = "models", request_body = NewDownload, security(("admin_token" = []), ("operator_cookie" = [])),
    responses((status = 202, description = "The download started", body = ModelInfo),
              (status = 401, description = "No operator's token or sign-in", body = Problem, content_type = ERRORS),
              (status = 403, description = "Not the operator's token, or no ADMIN_TOKEN is configured", body = Problem, content_type = ERRORS),
              (status = 409, description = "Already in the library or downloading, or the models are llama-server's", body = Problem, content_type = ERRORS),
              (status = 422, description = "Not a repository name or a GGUF file", body = Problem, content_type = ERRORS)))]
pub async fn download_model(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(body): ApiJson<NewDownload>,
) -> AppResult<(StatusCode, Json<ModelInfo>)> {
    let model = chat::download_model(&state, &operator, &body.repo, &body.file).await?;
    Ok((StatusCode::ACCEPTED, Json(model)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HubQuery {
    /// The repository, "owner/name".
    repo: String,
}

#[derive(Serialize, ToSchema)]
pub struct HubFiles {
    pub files: Vec<HubFile>,
}

/// The operator's: the GGUF files of a Hugging Face hub repository (from the hub's API), to
/// choose a download from.
#[utoipa::path(get, path = "/models/hub", tag = "models", params(HubQuery), security(("admin_token" = []), ("operator_cookie" = [])),
    responses((status = 200, description = "The repository's GGUF files", body = HubFiles),
              (status = "4XX", description = "Not the operator, not a repository name, or no such repository", body = Problem, content_type = ERRORS),
              (status = 503, description = "The hub cannot be reached (or HF_HUB_OFFLINE is set)", body = Problem, content_type = ERRORS)))]
pub async fn hub_files(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(query): ApiQuery<HubQuery>,
) -> AppResult<Json<HubFiles>> {
    let files = chat::hub_files(&state, &operator, &query.repo).await?;
    Ok(Json(HubFiles { files }))
}

/// The operator's: removes a model downloaded into the hub cache (its link and its bytes), or
/// forgets a failed download. Never the default model, one loading or writing a reply, or a
/// file configured or put in the models folder (409).
#[utoipa::path(delete, path = "/models/{id}", tag = "models", params(("id" = String, Path)), security(("admin_token" = []), ("operator_cookie" = [])),
    responses((status = 204, description = "Removed"),
              (status = 404, description = "No such model", body = Problem, content_type = ERRORS),
              (status = 409, description = "The model is in use, the default, or not a download", body = Problem, content_type = ERRORS),
              (status = "4XX", description = "Not the operator", body = Problem, content_type = ERRORS)))]
pub async fn remove_model(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<String>,
) -> AppResult<StatusCode> {
    chat::remove_model(&state, &operator, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
pub struct DefaultModel {
    /// A model of the library.
    pub id: String,
}

/// The operator's: makes a model the default (it answers every chat without a model of its
/// own), kept across restarts.
#[utoipa::path(put, path = "/models/default", tag = "models", request_body = DefaultModel, security(("admin_token" = []), ("operator_cookie" = [])),
    responses((status = 200, description = "The library, with its new default", body = Models),
              (status = 404, description = "No such model", body = Problem, content_type = ERRORS),
              (status = "4XX", description = "Not the operator", body = Problem, content_type = ERRORS)))]
pub async fn set_default_model(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(body): ApiJson<DefaultModel>,
) -> AppResult<Json<Models>> {
    chat::set_default_model(&state, &operator, &body.id).await?;
    Ok(Json(Models {
        models: chat::models(&state).await?,
    }))
}
