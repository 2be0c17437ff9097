//! The llama-server client, over async-openai (chat completions, streaming, bring-your-own
//! types so that `reasoning_content`, error objects, usage and timings survive), and the types
//! both engines share ([`LmStream`], [`LmEvent`], [`LmError`]). Every failure becomes an
//! [`LmError`] whose text a user can read. Knows no HTTP server and no database.
//!
//! `client`: the llama-server client; `kept`: its answers kept and refreshed behind; `wire`: what llama-server sends back, read into events
//! and errors; `stream`: a reply in progress from either engine; `think`: the `<think>` splitter.
mod client;
mod kept;
mod stream;
mod think;
mod wire;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use client::LmClient;
pub use stream::LmStream;
pub use think::ThinkSplitter;

/// `LM_FLASH_ATTENTION`: llama.cpp's choice, or forced on or off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    #[default]
    Auto,
    On,
    Off,
}

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
    /// The connection broke in the middle of a reply (the server stopped, or a balancer
    /// in front of it lost it).
    #[error(
        "The connection to the language model server was lost in the middle of the reply. The text so far is kept; you can retry."
    )]
    ConnectionLost,
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
#[derive(Debug, Clone)]
pub struct PromptMessage {
    pub role: &'static str,
    pub content: String,
    /// Images sent with the message, for a model that can see (their bytes are read just
    /// before the prompt is sent).
    pub images: Vec<PromptImage>,
    /// An assistant turn's calls of tools (the next messages are their results).
    pub tool_calls: Vec<ToolCall>,
    /// A tool's result (role `tool`): the call it answers.
    pub tool_call_id: Option<String>,
}

/// A tool the model may call, as the OpenAI API describes one: a name, what it does, and its
/// arguments as a JSON Schema object.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

impl Serialize for ToolDefinition {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        })
        .serialize(serializer)
    }
}

/// A call of a tool the model asked for: its id (the result names it), the tool, and the
/// arguments as the model wrote them (JSON, unless the model erred).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// An image attached to a prompt's message.
#[derive(Debug, Clone)]
pub struct PromptImage {
    pub attachment_id: uuid::Uuid,
    pub media_type: String,
    /// `None` until read from the store.
    pub data: Option<axum::body::Bytes>,
}

/// Tokens an image is taken to cost: vision models spend from a few hundred to over a
/// thousand on one; the larger figure keeps the context check on the safe side.
pub const IMAGE_TOKENS: u32 = 1024;

/// As the OpenAI-compatible API takes it: the content a string, or with images a list of parts
/// (text, then each image as a `data:` URL).
impl Serialize for PromptMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("role", self.role)?;
        if let Some(id) = &self.tool_call_id {
            map.serialize_entry("tool_call_id", id)?;
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<_> = self
                .tool_calls
                .iter()
                .map(|call| {
                    serde_json::json!({
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            map.serialize_entry("tool_calls", &calls)?;
        }
        let images: Vec<_> = self
            .images
            .iter()
            .filter_map(|i| i.data.as_ref().map(|data| (&i.media_type, data)))
            .collect();
        if images.is_empty() {
            map.serialize_entry("content", &self.content)?;
        } else {
            let mut parts = vec![serde_json::json!({"type": "text", "text": self.content})];
            for (media_type, data) in images {
                let encoded = base64::engine::general_purpose::STANDARD.encode(data);
                parts.push(serde_json::json!({
                    "type": "image_url",
                    "image_url": {"url": format!("data:{media_type};base64,{encoded}")},
                }));
            }
            map.serialize_entry("content", &parts)?;
        }
        map.end()
    }
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

/// What the stream yields, in order: reasoning and text pieces, then a finish reason, then
/// (maybe) usage and timings.
#[derive(Debug, Clone, PartialEq)]
pub enum LmEvent {
    Reasoning(String),
    Text(String),
    Finish(String),
    Usage(Usage),
    Timings(Timings),
    /// The embedded engine is loading the model the reply asked for (by its name), or waiting
    /// for room to: the reply waits.
    ModelLoading(String),
    /// The model is loaded; the reply's prompt is on its way.
    ModelReady,
    /// The model asked for these tools to be called (each call whole: its arguments
    /// gathered from their pieces); comes before `Finish("tool_calls")`.
    ToolCalls(Vec<ToolCall>),
}

/// What an engine sends a stream: events in order (text not yet split from a `<think>` block),
/// or the error that ends it.
pub type EngineEvents = tokio::sync::mpsc::UnboundedReceiver<Result<Vec<LmEvent>, LmError>>;

/// A model the engine serves: llama-server's list, or the embedded engine's library.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The name to ask for it by (a chat's `model` setting).
    #[schema(example = "SmolLM2-135M-Instruct.Q4_1")]
    pub id: String,
    /// The context each reply has in tokens, when known.
    pub n_ctx: Option<u32>,
    /// The file's size (the embedded engine's models).
    pub size_bytes: Option<u64>,
    /// The weights' type, e.g. "Q4_K_M" (from the file's header).
    #[schema(example = "Q4_1")]
    pub quantization: Option<String>,
    /// The context the model was trained with (from the file's header).
    pub context_length: Option<u32>,
    /// The family of the model's chat template ("chatml", "llama3", …), "custom", or
    /// "none (ChatML is used)".
    #[schema(example = "chatml")]
    pub template: Option<String>,
    /// In memory now (llama-server's models always are).
    pub loaded: bool,
    /// Being loaded now.
    pub loading: bool,
    /// The model a chat without one of its own is answered by.
    pub default: bool,
    /// Takes images: llama-server's model started with a projector (`modalities.vision`), or
    /// an embedded model with its vision projector (an `mmproj` GGUF) beside it.
    pub vision: bool,
    /// Where the embedded engine found it: "configured" (LM_MODEL_PATH or the configured hub
    /// file), "models folder" (LM_MODELS_DIR), or "hub: owner/name" (the Hugging Face cache).
    #[schema(example = "hub: HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")]
    pub source: Option<String>,
    /// Being downloaded by the operator (or failed to): not usable yet.
    pub download: Option<ModelDownload>,
}

/// A download in progress, or why it failed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelDownload {
    /// 0–100, once the size is known.
    pub percent: Option<u8>,
    /// Why it stopped; the next attempt resumes the bytes it has.
    pub error: Option<String>,
}

/// The model's state for the status indicator, from either engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelStatus {
    Ready,
    /// A model is being loaded: its name, when known.
    Loading(Option<String>),
    Unreachable,
    /// The embedded engine is fetching its model: the percentage, once the size is known.
    Downloading(Option<u8>),
    /// The embedded engine has no usable model; the text says why and what to do.
    Failed(String),
}

/// Estimated tokens of a text. There is no tokenizer here: about 3 bytes a token errs on the
/// safe side for English and code (real tokenizers average about 4) and for other scripts.
pub fn estimate_tokens(text: &str) -> u32 {
    (text.len() as u32).div_ceil(3) + 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_estimate_is_conservative() {
        assert!(estimate_tokens("hello world, how are you?") >= 6);
        assert_eq!(estimate_tokens(""), 4);
    }
}
