//! The llama-server client over async-openai (its bring-your-own-types chat completions), with
//! the server's list of models and its health.
use std::{sync::Arc, time::Duration};

use async_openai::{Client, config::OpenAIConfig};
use serde::{Deserialize, Serialize};

use super::{
    LmError, LmSettings, LmStream, ModelInfo, ModelStatus, PromptMessage, ReplyOptions,
    ToolDefinition,
    kept::Kept,
    stream::{ItemStream, Source},
    wire::{Origin, map_error, short},
};

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [PromptMessage],
    stream: bool,
    stream_options: StreamOptions,
    max_tokens: u32,
    temperature: f32,
    top_p: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
    /// Not sent at all when there are none: a server without `--jinja` refuses `tools`.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tools: &'a [ToolDefinition],
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Clone)]
pub struct LmClient {
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    settings: Arc<LmSettings>,
    /// What the server said it serves (the list, or why there is none).
    models: Kept<Result<Vec<ModelInfo>, LmError>>,
    /// The last health answer, so that many open pages cost one upstream request.
    last_status: Kept<ModelStatus>,
    /// Whether the server's model can see images (`/props`), kept like the list of models.
    vision: Kept<Result<bool, LmError>>,
}

/// How long the list of models is believed before it is asked for again (in the background).
const MODELS_TTL: Duration = Duration::from_secs(30);
/// How long a failure to list them is: the server may be back soon.
const MODELS_FAILURE_TTL: Duration = Duration::from_secs(2);
/// How long an answer about the server (its models, its vision) is believed.
fn answer_max_age<T>(answer: &Result<T, LmError>) -> Duration {
    match answer {
        Ok(_) => MODELS_TTL,
        Err(_) => MODELS_FAILURE_TTL,
    }
}

/// How long a health answer is.
const STATUS_TTL: Duration = Duration::from_secs(2);

impl LmClient {
    pub fn new(settings: LmSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let mut config = OpenAIConfig::new().with_api_base(settings.api_url.trim_end_matches('/'));
        if let Some(key) = &settings.api_key {
            config = config.with_api_key(key.clone());
        }
        // llama-server closes the connection after each streamed reply (despite its Keep-Alive
        // header), so a pooled connection for the next completion may already be closing and
        // fail the send: completions get a fresh connection each time (cheap next to a reply).
        let streams = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(0)
            .build()?;
        let client = Client::with_config(config).with_http_client(streams);
        Ok(Self {
            client,
            http,
            settings: Arc::new(settings),
            models: Kept::new(),
            last_status: Kept::new(),
            vision: Kept::new(),
        })
    }

    /// Starts a streamed chat completion, with the tools the model may call. Answers once
    /// llama-server sent its response headers (which it delays while every slot is busy).
    pub async fn stream_chat(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        tools: &[ToolDefinition],
    ) -> Result<LmStream, LmError> {
        let model = self.model_name(options.model.as_deref()).await;
        let request = ChatRequest {
            model: &model,
            messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_tokens: options.max_tokens,
            temperature: options.temperature,
            top_p: options.top_p,
            seed: options.seed,
            tools,
        };
        let inner: ItemStream = self
            .client
            .chat()
            .create_stream_byot(request)
            .await
            .map_err(|e| map_error(e, &self.settings.api_url, Origin::Response))?;
        Ok(LmStream::new(Source::Server(inner), model))
    }

    /// The prompt budget in tokens for `model` (`None`: the default one): configured, or the
    /// server's `n_ctx`; `None` when unknown.
    pub async fn context_tokens(&self, model: Option<&str>) -> Option<u32> {
        if let Some(configured) = self.settings.context_tokens {
            return Some(configured);
        }
        let models = self.models().await.ok()?;
        self.n_ctx_of(&models, model)
    }

    /// The context of `model` as far as is known now, without asking the server.
    pub async fn known_context_tokens(&self, model: Option<&str>) -> Option<u32> {
        if let Some(configured) = self.settings.context_tokens {
            return Some(configured);
        }
        let models = self.models.peek().await?.ok()?;
        self.n_ctx_of(&models, model)
    }

    fn n_ctx_of(&self, models: &[ModelInfo], model: Option<&str>) -> Option<u32> {
        let wanted = model.or(self.settings.model.as_deref());
        match wanted {
            Some(id) => models.iter().find(|m| m.id == id),
            None => models.first(),
        }
        .and_then(|m| m.n_ctx)
    }

    /// Forgets what the server said about its models (it may have restarted with others).
    pub async fn forget_model_info(&self) {
        self.models.forget().await;
    }

    async fn model_name(&self, chosen: Option<&str>) -> String {
        if let Some(model) = chosen.or(self.settings.model.as_deref()) {
            return model.to_owned();
        }
        match self.models().await {
            Ok(models) if !models.is_empty() => models[0].id.clone(),
            _ => "default".to_owned(),
        }
    }

    /// What the server serves (`GET /v1/models`), asked at most every 30 seconds (every 2
    /// seconds while it cannot be asked); an old answer is served while a new one is asked for.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, LmError> {
        let this = self.clone();
        self.models
            .get(answer_max_age, async move { this.fetch_models().await })
            .await
    }

    /// `GET /v1/models`: llama-server lists each model with `meta.n_ctx`.
    async fn fetch_models(&self) -> Result<Vec<ModelInfo>, LmError> {
        #[derive(Deserialize)]
        struct Models {
            data: Vec<Model>,
        }
        #[derive(Deserialize)]
        struct Model {
            id: String,
            meta: Option<Meta>,
        }
        #[derive(Deserialize)]
        struct Meta {
            n_ctx: Option<u32>,
        }
        let url = format!("{}/models", self.settings.api_url.trim_end_matches('/'));
        let mut request = self.http.get(url).timeout(Duration::from_secs(5));
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key);
        }
        let unreachable = |e: reqwest::Error| {
            tracing::warn!(error = %e, "listing the models failed");
            LmError::Unreachable(self.settings.api_url.clone())
        };
        let response = request.send().await.map_err(unreachable)?;
        if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(LmError::Loading);
        }
        let response = response.error_for_status().map_err(unreachable)?;
        let models: Models = response
            .json()
            .await
            .map_err(|e| LmError::Protocol(short(&e.to_string())))?;
        // The configured model is the default, else the first the server lists (as a reply
        // without a model asks for).
        let default = self
            .settings
            .model
            .clone()
            .or_else(|| models.data.first().map(|m| m.id.clone()));
        let vision = self.has_vision().await;
        Ok(models
            .data
            .into_iter()
            .map(|m| ModelInfo {
                default: Some(&m.id) == default.as_ref(),
                vision,
                n_ctx: m.meta.and_then(|m| m.n_ctx),
                id: m.id,
                loaded: true,
                ..ModelInfo::default()
            })
            .collect())
    }

    /// Whether the server's model takes images: llama-server's `GET /props` says so in
    /// `modalities.vision` (started with a multimodal projector, `--mmproj`). Asked at most
    /// every 30 seconds; a server that cannot be asked is taken to have no vision.
    pub async fn has_vision(&self) -> bool {
        let this = self.clone();
        self.vision
            .get(answer_max_age, async move { this.fetch_vision().await })
            .await
            .unwrap_or(false)
    }

    async fn fetch_vision(&self) -> Result<bool, LmError> {
        #[derive(Deserialize)]
        struct Props {
            #[serde(default)]
            modalities: Modalities,
        }
        #[derive(Deserialize, Default)]
        struct Modalities {
            #[serde(default)]
            vision: bool,
        }
        let base = self.settings.api_url.trim_end_matches('/');
        let root = base.strip_suffix("/v1").unwrap_or(base);
        let mut request = self
            .http
            .get(format!("{root}/props"))
            .timeout(Duration::from_secs(5));
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            tracing::warn!(error = %e, "asking the model server for its props failed");
            LmError::Unreachable(self.settings.api_url.clone())
        })?;
        if !response.status().is_success() {
            return Ok(false);
        }
        let props: Props = response
            .json()
            .await
            .map_err(|e| LmError::Protocol(short(&e.to_string())))?;
        Ok(props.modalities.vision)
    }

    /// [`Self::status`], asked at most once every two seconds, in the background once known.
    pub async fn status_cached(&self) -> ModelStatus {
        let this = self.clone();
        self.last_status
            .get(|_| STATUS_TTL, async move { this.status().await })
            .await
    }

    /// llama-server's `GET /health` (beside `/v1`): 200 ready, 503 loading.
    pub async fn status(&self) -> ModelStatus {
        let base = self.settings.api_url.trim_end_matches('/');
        let root = base.strip_suffix("/v1").unwrap_or(base);
        match self
            .http
            .get(format!("{root}/health"))
            .timeout(Duration::from_secs(3))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => ModelStatus::Ready,
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                ModelStatus::Loading(None)
            }
            Ok(_) | Err(_) => ModelStatus::Unreachable,
        }
    }
}
