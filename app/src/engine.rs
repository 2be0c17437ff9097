//! The one interface the reply lifecycle talks to: stream a chat completion (dropping the
//! stream cancels it), the model's name and context size, token counts, and health. Two
//! engines sit behind it: llama-server over HTTP ([`LmClient`], when `LM_API_URL` is set) and
//! llama.cpp in this process ([`crate::embedded`], the default). Knows no HTTP server and no
//! database.
use std::time::Duration;

use crate::lm::{
    LmClient, LmError, LmEvent, LmStream, ModelInfo, ModelStatus, PromptMessage, ReplyOptions,
    ToolDefinition, estimate_tokens,
};

#[derive(Clone)]
pub enum Engine {
    /// llama-server's OpenAI-compatible API (boxed: the client is large, the handle small).
    Server(Box<LmClient>),
    /// llama.cpp in-process, on its own thread.
    #[cfg(feature = "embedded")]
    Embedded(crate::embedded::EmbeddedEngine),
}

impl Engine {
    /// Which engine this is, for logs and the status indicator.
    pub fn kind(&self) -> &'static str {
        match self {
            Engine::Server(_) => "llama-server",
            #[cfg(feature = "embedded")]
            Engine::Embedded(_) => "embedded",
        }
    }

    /// Starts a streamed chat completion. Dropping the stream stops the generation. `tools`:
    /// what the model may call (none: the request is as it was before tools).
    pub async fn stream_chat(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        tools: &[ToolDefinition],
    ) -> Result<LmStream, LmError> {
        match self {
            Engine::Server(client) => client.stream_chat(messages, options, tools).await,
            #[cfg(feature = "embedded")]
            Engine::Embedded(engine) => engine.stream_chat(messages, options, tools),
        }
    }

    /// A short answer in one piece (the model's reasoning left out), e.g. a chat's title.
    pub async fn complete(
        &self,
        messages: &[PromptMessage],
        options: &ReplyOptions,
        limit: Duration,
    ) -> Result<String, LmError> {
        let collect = async {
            let mut stream = self.stream_chat(messages, options, &[]).await?;
            let mut text = String::new();
            while let Some(event) = stream.next().await? {
                if let LmEvent::Text(piece) = event {
                    text.push_str(&piece);
                }
            }
            Ok(text)
        };
        tokio::time::timeout(limit, collect)
            .await
            .map_err(|_| LmError::FirstTokenTimeout(limit))?
    }

    /// The prompt budget in tokens for `model` (`None`: the default one); `None` when unknown.
    pub async fn context_tokens(&self, model: Option<&str>) -> Option<u32> {
        match self {
            Engine::Server(client) => client.context_tokens(model).await,
            #[cfg(feature = "embedded")]
            Engine::Embedded(engine) => engine.context_tokens(model),
        }
    }

    /// The context as far as is known now, without waiting for the model server.
    pub async fn known_context_tokens(&self, model: Option<&str>) -> Option<u32> {
        match self {
            Engine::Server(client) => client.known_context_tokens(model).await,
            #[cfg(feature = "embedded")]
            Engine::Embedded(engine) => engine.context_tokens(model),
        }
    }

    /// A message's cost in prompt tokens with `model` (`None`: the default): exact from the
    /// embedded model's tokenizer (with its chat template's framing) while it is loaded, else
    /// an estimate that errs on the safe side.
    pub fn count_tokens(&self, model: Option<&str>, role: &str, text: &str) -> u32 {
        self.exact_tokens(model, role, text)
            .unwrap_or_else(|| estimate_tokens(text))
    }

    /// Whether `count_tokens` is exact for `model` (its tokenizer is loaded).
    pub fn counts_exactly(&self, model: Option<&str>) -> bool {
        self.exact_tokens(model, "user", "").is_some()
    }

    fn exact_tokens(&self, model: Option<&str>, role: &str, text: &str) -> Option<u32> {
        #[cfg(not(feature = "embedded"))]
        let _ = (model, role, text);
        match self {
            Engine::Server(_) => None,
            #[cfg(feature = "embedded")]
            Engine::Embedded(engine) => engine.count_tokens(model, role, text),
        }
    }

    /// Whether `model` (`None`: the default) can be sent images: llama-server's own answer (for
    /// its one model), or whether the embedded model has a vision projector.
    pub async fn has_vision(&self, model: Option<&str>) -> bool {
        #[cfg(not(feature = "embedded"))]
        let _ = model;
        match self {
            Engine::Server(client) => client.has_vision().await,
            #[cfg(feature = "embedded")]
            Engine::Embedded(engine) => engine.has_vision(model),
        }
    }

    /// Forgets what the server said about its models (it may have restarted with others).
    pub async fn forget_model_info(&self) {
        match self {
            Engine::Server(client) => client.forget_model_info().await,
            #[cfg(feature = "embedded")]
            Engine::Embedded(_) => {}
        }
    }

    /// The models that can answer.
    pub async fn models(&self) -> Result<Vec<ModelInfo>, LmError> {
        match self {
            Engine::Server(client) => client.models().await,
            #[cfg(feature = "embedded")]
            Engine::Embedded(engine) => engine.models().await,
        }
    }

    /// The model's state for the indicator (cheap: many open pages ask).
    pub async fn status(&self) -> ModelStatus {
        match self {
            Engine::Server(client) => client.status_cached().await,
            #[cfg(feature = "embedded")]
            Engine::Embedded(engine) => engine.status(),
        }
    }
}
