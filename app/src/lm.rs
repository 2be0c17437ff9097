//! The llama-server client, over async-openai (chat completions, streaming, bring-your-own
//! types so that `reasoning_content`, error objects and usage survive). Every failure becomes an
//! [`LmError`] whose text a user can read. Knows no HTTP server and no database.
use std::{pin::Pin, sync::Arc, time::Duration};

use async_openai::{Client, config::OpenAIConfig, error::OpenAIError};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

/// What the client needs from the configuration.
#[derive(Clone, Debug)]
pub struct LmSettings {
    pub api_url: String,
    pub api_key: Option<String>,
    pub model: Option<String>,
    pub max_tokens: u32,
    pub temperature: f32,
    /// A configured prompt budget; `None`: ask the server for its `n_ctx`.
    pub context_tokens: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LmError {
    /// Carries the server's address for the log; visitors are not told internal addresses.
    #[error("The language model server is not reachable right now. Please retry in a moment.")]
    Unreachable(String),
    #[error("The language model is still loading. Please retry in a moment.")]
    Loading,
    #[error(
        "This conversation is too long for the model: the prompt needs {n_prompt_tokens} tokens but the model's context holds {n_ctx}. Start a new chat or send a shorter message."
    )]
    ContextOverflow { n_prompt_tokens: u64, n_ctx: u64 },
    #[error(
        "Your message is too long for the model's context (about {tokens} tokens; at most {budget} fit). Please shorten it."
    )]
    MessageTooLarge { tokens: u32, budget: u32 },
    #[error("The language model server answered {status}: {message}")]
    Http { status: u16, message: String },
    #[error("The language model server refused the request: {0}")]
    Refused(String),
    #[error("The language model reported an error while answering: {0}")]
    MidStream(String),
    #[error(
        "The language model's reply ended unexpectedly, before it was finished. You can retry."
    )]
    Truncated,
    #[error(
        "The language model did not start answering within {} (it may be busy with other replies). Please retry.",
        humantime::format_duration(*.0)
    )]
    FirstTokenTimeout(Duration),
    #[error("The language model stopped sending for {}, so the reply was ended. You can retry.", humantime::format_duration(*.0))]
    IdleTimeout(Duration),
    #[error("The language model server sent something that could not be read: {0}")]
    Protocol(String),
}

/// One message of the prompt.
#[derive(Debug, Clone, Serialize)]
pub struct PromptMessage {
    pub role: &'static str,
    pub content: String,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: &'a [PromptMessage],
    stream: bool,
    stream_options: StreamOptions,
    max_tokens: u32,
    temperature: f32,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// A streamed item: a chunk, or llama-server's mid-stream `{"error": {...}}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum StreamItem {
    Error { error: ErrorBody },
    Chunk(Chunk),
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    content: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

#[derive(Deserialize, Debug)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    n_prompt_tokens: Option<u64>,
    n_ctx: Option<u64>,
}

/// What the stream yields, in order: text pieces, then a finish reason, then (maybe) usage.
#[derive(Debug, Clone, PartialEq)]
pub enum LmEvent {
    Text(String),
    Finish(String),
    Usage(Usage),
}

type ItemStream = Pin<Box<dyn Stream<Item = Result<StreamItem, OpenAIError>> + Send>>;

/// An upstream reply in progress. Dropping it closes the connection, which makes llama-server
/// stop generating and free its slot.
pub struct LmStream {
    inner: ItemStream,
    pending: std::collections::VecDeque<LmEvent>,
}

impl LmStream {
    /// The next event; `Ok(None)` when upstream ended the stream.
    pub async fn next(&mut self) -> Result<Option<LmEvent>, LmError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            match self.inner.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(map_error(e, "", Origin::Stream)),
                Some(Ok(StreamItem::Error { error })) => {
                    return Err(error_from_body(error, Origin::Stream));
                }
                Some(Ok(StreamItem::Chunk(chunk))) => {
                    for choice in chunk.choices {
                        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                            self.pending.push_back(LmEvent::Text(text));
                        }
                        if let Some(reason) = choice.finish_reason {
                            self.pending.push_back(LmEvent::Finish(reason));
                        }
                    }
                    if let Some(usage) = chunk.usage {
                        self.pending.push_back(LmEvent::Usage(usage));
                    }
                }
            }
        }
    }
}

#[derive(Clone)]
pub struct LmClient {
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    settings: Arc<LmSettings>,
    /// What the server told us about its model (`None` until it answered once).
    model_info: Arc<Mutex<Option<ModelInfo>>>,
    /// The last health answer, so that many open pages cost one upstream request.
    last_status: Arc<Mutex<Option<(tokio::time::Instant, ModelStatus)>>>,
}

#[derive(Clone, Debug)]
struct ModelInfo {
    id: String,
    n_ctx: Option<u32>,
}

/// The model server's state for the status indicator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelStatus {
    Ready,
    Loading,
    Unreachable,
}

impl LmClient {
    pub fn new(settings: LmSettings) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        let mut config = OpenAIConfig::new().with_api_base(settings.api_url.trim_end_matches('/'));
        if let Some(key) = &settings.api_key {
            config = config.with_api_key(key.clone());
        }
        let client = Client::with_config(config).with_http_client(http.clone());
        Ok(Self {
            client,
            http,
            settings: Arc::new(settings),
            model_info: Arc::new(Mutex::new(None)),
            last_status: Arc::new(Mutex::new(None)),
        })
    }

    pub fn settings(&self) -> &LmSettings {
        &self.settings
    }

    /// Starts a streamed chat completion. Answers once llama-server sent its response headers
    /// (which it delays while every slot is busy).
    pub async fn stream_chat(
        &self,
        messages: &[PromptMessage],
        max_tokens: u32,
        temperature: f32,
    ) -> Result<LmStream, LmError> {
        let model = self.model_name().await;
        let request = ChatRequest {
            model: &model,
            messages,
            stream: true,
            stream_options: StreamOptions {
                include_usage: true,
            },
            max_tokens,
            temperature,
        };
        let inner: ItemStream = self
            .client
            .chat()
            .create_stream_byot(request)
            .await
            .map_err(|e| map_error(e, &self.settings.api_url, Origin::Response))?;
        Ok(LmStream {
            inner,
            pending: Default::default(),
        })
    }

    /// The prompt budget in tokens: configured, or the server's `n_ctx`; `None` when unknown.
    pub async fn context_tokens(&self) -> Option<u32> {
        if let Some(configured) = self.settings.context_tokens {
            return Some(configured);
        }
        self.model_info().await.and_then(|info| info.n_ctx)
    }

    /// Forgets what the server said about its model (it may have restarted with another one).
    pub async fn forget_model_info(&self) {
        *self.model_info.lock().await = None;
    }

    async fn model_name(&self) -> String {
        if let Some(model) = &self.settings.model {
            return model.clone();
        }
        match self.model_info().await {
            Some(info) => info.id,
            None => "default".to_owned(),
        }
    }

    async fn model_info(&self) -> Option<ModelInfo> {
        let mut cached = self.model_info.lock().await;
        if cached.is_none() {
            *cached = self.fetch_model_info().await;
        }
        cached.clone()
    }

    /// `GET /v1/models`: llama-server lists its model with `meta.n_ctx`.
    async fn fetch_model_info(&self) -> Option<ModelInfo> {
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
        let response = request.send().await.ok()?.error_for_status().ok()?;
        let models: Models = response.json().await.ok()?;
        let model = models.data.into_iter().next()?;
        Some(ModelInfo {
            id: model.id,
            n_ctx: model.meta.and_then(|m| m.n_ctx),
        })
    }

    /// [`Self::status`], at most once every two seconds.
    pub async fn status_cached(&self) -> ModelStatus {
        let mut last = self.last_status.lock().await;
        if let Some((at, status)) = *last
            && at.elapsed() < Duration::from_secs(2)
        {
            return status;
        }
        let status = self.status().await;
        *last = Some((tokio::time::Instant::now(), status));
        status
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
            Ok(r) if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => ModelStatus::Loading,
            Ok(_) | Err(_) => ModelStatus::Unreachable,
        }
    }
}

/// Estimated tokens of a text. There is no tokenizer here: about 3 bytes a token errs on the
/// safe side for English and code (real tokenizers average about 4) and for other scripts.
pub fn estimate_tokens(text: &str) -> u32 {
    (text.len() as u32).div_ceil(3) + 4
}

/// Where an upstream error showed up: in the HTTP response, or inside the event stream.
#[derive(Clone, Copy)]
enum Origin {
    Response,
    Stream,
}

fn map_error(error: OpenAIError, api_url: &str, origin: Origin) -> LmError {
    match error {
        OpenAIError::Reqwest(e) if e.is_connect() || e.is_timeout() => {
            tracing::warn!(api_url, error = %e, "the language model server is not reachable");
            LmError::Unreachable(api_url.to_owned())
        }
        OpenAIError::Reqwest(e) => LmError::Protocol(e.to_string()),
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            // Server errors come back with the raw body as message; it may still be JSON.
            let message = match serde_json::from_str::<WrappedError>(&api.api_error.message) {
                Ok(wrapped) => {
                    if let Some(overflow) = context_overflow(&wrapped.error) {
                        return overflow;
                    }
                    wrapped.error.message
                }
                Err(_) => api.api_error.message,
            };
            if status == 503 {
                return LmError::Loading;
            }
            LmError::Http {
                status,
                message: short(&message),
            }
        }
        // async-openai cannot parse llama-server's error body (numeric `code`) and hands it
        // over as it came: parse it ourselves.
        OpenAIError::JSONDeserialize(_, body) => {
            match serde_json::from_str::<WrappedError>(&body) {
                Ok(wrapped) => error_from_body(wrapped.error, origin),
                Err(_) => LmError::Protocol(short(&body)),
            }
        }
        OpenAIError::StreamError(e) => LmError::Protocol(short(&e.to_string())),
        other => LmError::Protocol(short(&other.to_string())),
    }
}

#[derive(Deserialize)]
struct WrappedError {
    error: ErrorBody,
}

fn context_overflow(body: &ErrorBody) -> Option<LmError> {
    match (body.kind.as_deref(), body.n_prompt_tokens, body.n_ctx) {
        (Some("exceed_context_size_error"), Some(n_prompt_tokens), Some(n_ctx)) => {
            Some(LmError::ContextOverflow {
                n_prompt_tokens,
                n_ctx,
            })
        }
        _ => None,
    }
}

fn error_from_body(body: ErrorBody, origin: Origin) -> LmError {
    if let Some(overflow) = context_overflow(&body) {
        return overflow;
    }
    if body.kind.as_deref() == Some("unavailable_error") {
        return LmError::Loading;
    }
    match origin {
        Origin::Response => LmError::Refused(short(&body.message)),
        Origin::Stream => LmError::MidStream(short(&body.message)),
    }
}

/// Upstream text shown to users: one line, bounded.
fn short(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_server_error_bodies_become_readable_errors() {
        let body = r#"{"error":{"code":400,"message":"request (2028 tokens) exceeds the available context size (256 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":2028,"n_ctx":256}}"#;
        let error = map_error(parse_failure(body), "", Origin::Response);
        assert_eq!(
            error,
            LmError::ContextOverflow {
                n_prompt_tokens: 2028,
                n_ctx: 256
            }
        );
        assert!(error.to_string().contains("2028 tokens"));

        let bad = r#"{"error":{"code":400,"message":"Expected 'messages' to be an array","type":"invalid_request_error"}}"#;
        let error = map_error(parse_failure(bad), "", Origin::Response);
        assert_eq!(
            error,
            LmError::Refused("Expected 'messages' to be an array".into())
        );
        let error = map_error(parse_failure(bad), "", Origin::Stream);
        assert_eq!(
            error,
            LmError::MidStream("Expected 'messages' to be an array".into())
        );
    }

    fn parse_failure(body: &str) -> OpenAIError {
        OpenAIError::JSONDeserialize(serde_json::from_str::<()>("x").unwrap_err(), body.into())
    }

    #[test]
    fn token_estimate_is_conservative() {
        assert!(estimate_tokens("hello world, how are you?") >= 6);
        assert_eq!(estimate_tokens(""), 4);
    }
}
