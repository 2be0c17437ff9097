//! The llama-server client, over async-openai (chat completions, streaming, bring-your-own
//! types so that `reasoning_content`, error objects, usage and timings survive), and the types
//! both engines share ([`LmStream`], [`LmEvent`], [`LmError`]). Every failure becomes an
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
    /// The embedded engine has no model to answer with (yet): downloading, loading or failed.
    #[error("{0}")]
    NotReady(String),
    /// The embedded engine failed while generating.
    #[error("The language model failed while answering: {0}. You can retry.")]
    Engine(String),
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
    top_p: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u32>,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// How to generate one reply: the chat's settings, or the configured defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplyOptions {
    /// `None`: the configured `LM_MODEL`, else the first model the server lists.
    pub model: Option<String>,
    pub max_tokens: u32,
    pub temperature: f32,
    pub top_p: f32,
    /// `None`: a random seed for each reply.
    pub seed: Option<u32>,
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
    timings: Option<Timings>,
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
    /// Thinking models (llama-server's default `--reasoning-format`) stream their reasoning here.
    reasoning_content: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// How long the model took, as llama-server reports it (`timings`) and the embedded engine
/// measures it.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// Prompt tokens taken from the cache (not evaluated again).
    #[serde(default)]
    pub cache_n: u32,
    /// Prompt tokens evaluated, and how long that took.
    #[serde(default)]
    pub prompt_n: u32,
    #[serde(default)]
    pub prompt_ms: f64,
    /// Tokens generated, and how long that took.
    #[serde(default)]
    pub predicted_n: u32,
    #[serde(default)]
    pub predicted_ms: f64,
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

/// What the stream yields, in order: reasoning and text pieces, then a finish reason, then
/// (maybe) usage and timings.
#[derive(Debug, Clone, PartialEq)]
pub enum LmEvent {
    Reasoning(String),
    Text(String),
    Finish(String),
    Usage(Usage),
    Timings(Timings),
}

type ItemStream = Pin<Box<dyn Stream<Item = Result<StreamItem, OpenAIError>> + Send>>;

/// What an engine sends a stream: events in order (text not yet split from a `<think>` block),
/// or the error that ends it.
pub type EngineEvents = tokio::sync::mpsc::UnboundedReceiver<Result<Vec<LmEvent>, LmError>>;

/// Where a stream's events come from.
enum Source {
    /// llama-server's SSE response.
    Server(ItemStream),
    /// The embedded engine's thread.
    Engine(EngineEvents),
}

/// A reply in progress, from either engine. Dropping it stops the generation: llama-server's
/// connection closes (it frees its slot), or the embedded engine sees its channel closed at its
/// next decode step and frees the sequence.
pub struct LmStream {
    source: Source,
    pending: std::collections::VecDeque<LmEvent>,
    think: ThinkSplitter,
}

impl LmStream {
    /// A stream fed by the embedded engine.
    pub fn from_engine(events: EngineEvents) -> Self {
        Self::new(Source::Engine(events))
    }

    fn new(source: Source) -> Self {
        Self {
            source,
            pending: Default::default(),
            think: ThinkSplitter::default(),
        }
    }

    /// The next event; `Ok(None)` when upstream ended the stream.
    pub async fn next(&mut self) -> Result<Option<LmEvent>, LmError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            // Text held back because it might open a `<think>` block goes out as text when the
            // model pauses: the start of a reply is never held for long.
            let next = if self.think.holding() {
                match tokio::time::timeout(THINK_HOLD, self.next_events()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.pending.extend(self.think.give_up());
                        continue;
                    }
                }
            } else {
                self.next_events().await
            };
            match next? {
                None => {
                    self.pending.extend(self.think.finish());
                    if self.pending.is_empty() {
                        return Ok(None);
                    }
                }
                Some(events) => {
                    for event in events {
                        match event {
                            LmEvent::Text(text) => self.pending.extend(self.think.push(&text)),
                            LmEvent::Finish(reason) => {
                                self.pending.extend(self.think.finish());
                                self.pending.push_back(LmEvent::Finish(reason));
                            }
                            other => self.pending.push_back(other),
                        }
                    }
                }
            }
        }
    }

    /// The next batch of raw events from the source; `Ok(None)` at its end.
    async fn next_events(&mut self) -> Result<Option<Vec<LmEvent>>, LmError> {
        match &mut self.source {
            Source::Engine(events) => events.recv().await.transpose(),
            Source::Server(items) => match items.next().await {
                None => Ok(None),
                Some(Err(e)) => Err(map_error(e, "", Origin::Stream)),
                Some(Ok(StreamItem::Error { error })) => {
                    Err(error_from_body(error, Origin::Stream))
                }
                Some(Ok(StreamItem::Chunk(chunk))) => Ok(Some(chunk_events(chunk))),
            },
        }
    }
}

/// One llama-server chunk as events, in the order they mean.
fn chunk_events(chunk: Chunk) -> Vec<LmEvent> {
    let mut events = Vec::new();
    for choice in chunk.choices {
        if let Some(text) = choice.delta.reasoning_content.filter(|t| !t.is_empty()) {
            events.push(LmEvent::Reasoning(text));
        }
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            events.push(LmEvent::Text(text));
        }
        if let Some(reason) = choice.finish_reason {
            events.push(LmEvent::Finish(reason));
        }
    }
    if let Some(usage) = chunk.usage {
        events.push(LmEvent::Usage(usage));
    }
    if let Some(timings) = chunk.timings {
        events.push(LmEvent::Timings(timings));
    }
    events
}

/// Splits a `<think>…</think>` block at the start of a reply (models whose server does not
/// separate reasoning itself) from the answer, as the text streams in: tags may be cut across
/// pieces. Text that only might be the start of a tag is held back until the next piece.
#[derive(Default)]
pub struct ThinkSplitter {
    state: ThinkState,
    /// Text not yet given out: a possible start of `<think>` or `</think>`.
    held: String,
}

#[derive(Default, PartialEq)]
enum ThinkState {
    /// Nothing but whitespace yet: the reply may still open with `<think>`.
    #[default]
    Start,
    Thinking,
    /// After `</think>`, before the answer's first visible character.
    AnswerStart,
    Answer,
}

const THINK_OPEN: &str = "<think>";
/// Longest a possible `<think>` at the start of a reply is held back while the model is silent.
const THINK_HOLD: Duration = Duration::from_millis(250);
const THINK_CLOSE: &str = "</think>";

impl ThinkSplitter {
    /// Events for a piece of the reply's content.
    pub fn push(&mut self, piece: &str) -> Vec<LmEvent> {
        let mut events = Vec::new();
        self.held.push_str(piece);
        loop {
            match self.state {
                ThinkState::Start => {
                    let trimmed = self.held.trim_start();
                    if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                        self.held = rest.to_owned();
                        self.state = ThinkState::Thinking;
                        continue;
                    }
                    if !THINK_OPEN.starts_with(trimmed) {
                        self.state = ThinkState::Answer;
                        continue;
                    }
                    return events;
                }
                ThinkState::Thinking => {
                    if let Some(at) = self.held.find(THINK_CLOSE) {
                        let rest = self.held.split_off(at);
                        push_piece(
                            &mut events,
                            LmEvent::Reasoning(std::mem::take(&mut self.held)),
                        );
                        self.held = rest[THINK_CLOSE.len()..].to_owned();
                        self.state = ThinkState::AnswerStart;
                        continue;
                    }
                    // Keep back a tail that could be the start of `</think>`.
                    let keep = (1..THINK_CLOSE.len())
                        .rev()
                        .find(|&n| {
                            self.held.len() >= n
                                && self.held.is_char_boundary(self.held.len() - n)
                                && THINK_CLOSE.starts_with(&self.held[self.held.len() - n..])
                        })
                        .unwrap_or(0);
                    let tail = self.held.split_off(self.held.len() - keep);
                    push_piece(
                        &mut events,
                        LmEvent::Reasoning(std::mem::replace(&mut self.held, tail)),
                    );
                    return events;
                }
                ThinkState::AnswerStart => {
                    // The blank lines between the reasoning and the answer are not the answer.
                    let trimmed = self.held.trim_start();
                    if trimmed.is_empty() {
                        self.held.clear();
                        return events;
                    }
                    self.held = trimmed.to_owned();
                    self.state = ThinkState::Answer;
                }
                ThinkState::Answer => {
                    push_piece(&mut events, LmEvent::Text(std::mem::take(&mut self.held)));
                    return events;
                }
            }
        }
    }

    /// Whether text is held back because it might still open a `<think>` block.
    pub fn holding(&self) -> bool {
        self.state == ThinkState::Start && !self.held.is_empty()
    }

    /// The reply did not go on to open a `<think>` block: what was held back is answer text.
    pub fn give_up(&mut self) -> Vec<LmEvent> {
        if self.state != ThinkState::Start {
            return Vec::new();
        }
        self.state = ThinkState::Answer;
        let mut events = Vec::new();
        push_piece(&mut events, LmEvent::Text(std::mem::take(&mut self.held)));
        events
    }

    /// The reply ended: whatever was held back, as what it turned out to be.
    pub fn finish(&mut self) -> Vec<LmEvent> {
        let held = std::mem::take(&mut self.held);
        let mut events = Vec::new();
        match self.state {
            ThinkState::Thinking => push_piece(&mut events, LmEvent::Reasoning(held)),
            ThinkState::AnswerStart => {}
            ThinkState::Start | ThinkState::Answer => push_piece(&mut events, LmEvent::Text(held)),
        }
        events
    }
}

fn push_piece(events: &mut Vec<LmEvent>, event: LmEvent) {
    match &event {
        LmEvent::Reasoning(t) | LmEvent::Text(t) if t.is_empty() => {}
        _ => events.push(event),
    }
}

#[derive(Clone)]
pub struct LmClient {
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    settings: Arc<LmSettings>,
    /// What the server said it serves, and when (`None` until it answered once).
    models: Arc<Mutex<Option<ListedModels>>>,
    /// The last health answer, so that many open pages cost one upstream request.
    last_status: Arc<Mutex<Option<(tokio::time::Instant, ModelStatus)>>>,
}

/// A model the server serves.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The name to ask for it by.
    pub id: String,
    /// Its context size in tokens, when the server says.
    pub n_ctx: Option<u32>,
}

/// The models the server listed, and when.
type ListedModels = (tokio::time::Instant, Vec<ModelInfo>);

/// How long the list of models is believed before it is asked for again.
const MODELS_TTL: Duration = Duration::from_secs(30);

/// The model's state for the status indicator, from either engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelStatus {
    Ready,
    Loading,
    Unreachable,
    /// The embedded engine is fetching its model: the percentage, once the size is known.
    Downloading(Option<u8>),
    /// The embedded engine has no usable model; the text says why and what to do.
    Failed(String),
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
            models: Arc::new(Mutex::new(None)),
            last_status: Arc::new(Mutex::new(None)),
        })
    }

    /// Starts a streamed chat completion. Answers once llama-server sent its response headers
    /// (which it delays while every slot is busy).
    pub async fn stream_chat(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
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
        };
        let inner: ItemStream = self
            .client
            .chat()
            .create_stream_byot(request)
            .await
            .map_err(|e| map_error(e, &self.settings.api_url, Origin::Response))?;
        Ok(LmStream::new(Source::Server(inner)))
    }

    /// The prompt budget in tokens for `model` (`None`: the default one): configured, or the
    /// server's `n_ctx`; `None` when unknown.
    pub async fn context_tokens(&self, model: Option<&str>) -> Option<u32> {
        if let Some(configured) = self.settings.context_tokens {
            return Some(configured);
        }
        let models = self.models().await.ok()?;
        let wanted = model.or(self.settings.model.as_deref());
        match wanted {
            Some(id) => models.iter().find(|m| m.id == id),
            None => models.first(),
        }
        .and_then(|m| m.n_ctx)
    }

    /// Forgets what the server said about its models (it may have restarted with others).
    pub async fn forget_model_info(&self) {
        *self.models.lock().await = None;
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

    /// What the server serves (`GET /v1/models`), asked at most every 30 seconds.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, LmError> {
        let mut cached = self.models.lock().await;
        if let Some((at, models)) = &*cached
            && at.elapsed() < MODELS_TTL
        {
            return Ok(models.clone());
        }
        let models = self.fetch_models().await?;
        *cached = Some((tokio::time::Instant::now(), models.clone()));
        Ok(models)
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
        Ok(models
            .data
            .into_iter()
            .map(|m| ModelInfo {
                id: m.id,
                n_ctx: m.meta.and_then(|m| m.n_ctx),
            })
            .collect())
    }

    /// [`Self::status`], at most once every two seconds.
    pub async fn status_cached(&self) -> ModelStatus {
        let mut last = self.last_status.lock().await;
        if let Some((at, status)) = &*last
            && at.elapsed() < Duration::from_secs(2)
        {
            return status.clone();
        }
        let status = self.status().await;
        *last = Some((tokio::time::Instant::now(), status.clone()));
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

    fn split(pieces: &[&str]) -> (String, String) {
        let mut splitter = ThinkSplitter::default();
        let mut events: Vec<LmEvent> = pieces.iter().flat_map(|p| splitter.push(p)).collect();
        events.extend(splitter.finish());
        let (mut reasoning, mut text) = (String::new(), String::new());
        for event in events {
            match event {
                LmEvent::Reasoning(t) => reasoning.push_str(&t),
                LmEvent::Text(t) => text.push_str(&t),
                other => panic!("unexpected {other:?}"),
            }
        }
        (reasoning, text)
    }

    #[test]
    fn a_think_block_is_reasoning_however_the_tags_are_cut() {
        let whole = "\n<think>Let me see: 2 < 3.</think>\n\nThe answer is **yes**.";
        for cut_a in 0..whole.len() {
            for cut_b in cut_a..whole.len() {
                let pieces = [&whole[..cut_a], &whole[cut_a..cut_b], &whole[cut_b..]];
                assert_eq!(
                    split(&pieces),
                    ("Let me see: 2 < 3.".into(), "The answer is **yes**.".into()),
                    "{pieces:?}"
                );
            }
        }
    }

    #[test]
    fn text_without_a_think_block_passes_through_exactly() {
        for whole in [
            "  <b>hi</b>",
            " <thin",
            "\n\n",
            "a <think> in the middle",
            "<",
        ] {
            for cut in 0..=whole.len() {
                assert_eq!(
                    split(&[&whole[..cut], &whole[cut..]]),
                    (String::new(), whole.to_owned())
                );
            }
        }
        // An unfinished think block is all reasoning, even a partial closing tag.
        assert_eq!(
            split(&["<think>hmm</thi"]),
            ("hmm</thi".into(), String::new())
        );
    }

    #[test]
    fn text_held_for_a_possible_think_block_is_given_up_as_text() {
        let mut splitter = ThinkSplitter::default();
        assert!(splitter.push("\n <th").is_empty());
        assert!(splitter.holding());
        assert_eq!(splitter.give_up(), [LmEvent::Text("\n <th".into())]);
        assert!(!splitter.holding());
        // From then on it is all answer, even a late `<think>`.
        assert_eq!(splitter.push("ink>x"), [LmEvent::Text("ink>x".into())]);
    }
}
