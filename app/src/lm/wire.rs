//! What llama-server sends back: the chunks of a streamed reply and its error bodies, read into
//! [`LmEvent`]s and into [`LmError`]s whose text a user can read.
use async_openai::error::{OpenAIError, StreamError};
use serde::Deserialize;

use super::{LmError, LmEvent, Timings, ToolCall, Usage};

/// A streamed item: a chunk, or llama-server's mid-stream `{"error": {...}}`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StreamItem {
    Error { error: ErrorBody },
    Chunk(Chunk),
}

#[derive(Deserialize)]
pub(super) struct Chunk {
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
    /// Calls of tools, in pieces: the first piece of each names it (`id`, `function.name`),
    /// the rest add to its `function.arguments`; `index` says which call a piece is of.
    #[serde(default)]
    tool_calls: Vec<ToolCallPiece>,
}

#[derive(Deserialize)]
struct ToolCallPiece {
    #[serde(default)]
    index: usize,
    id: Option<String>,
    #[serde(default)]
    function: FunctionPiece,
}

#[derive(Deserialize, Default)]
struct FunctionPiece {
    name: Option<String>,
    arguments: Option<String>,
}

/// The calls of tools of a reply so far, gathered from their pieces.
#[derive(Default)]
pub(super) struct ToolCallParts {
    calls: Vec<ToolCall>,
}

/// More calls than this in one reply are a broken stream, not a model's wish.
const MAX_CALLS_PER_REPLY: usize = 64;

impl ToolCallParts {
    fn add(&mut self, piece: ToolCallPiece) {
        if piece.index >= MAX_CALLS_PER_REPLY {
            return;
        }
        while self.calls.len() <= piece.index {
            self.calls.push(ToolCall {
                id: String::new(),
                name: String::new(),
                arguments: String::new(),
            });
        }
        let call = &mut self.calls[piece.index];
        if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
            call.id = id;
        }
        if let Some(name) = piece.function.name {
            call.name.push_str(&name);
        }
        if let Some(arguments) = piece.function.arguments {
            call.arguments.push_str(&arguments);
        }
    }

    /// The calls gathered, each with an id (a server that sent none gets one made up).
    fn take(&mut self) -> Option<LmEvent> {
        if self.calls.is_empty() {
            return None;
        }
        let mut calls = std::mem::take(&mut self.calls);
        for (i, call) in calls.iter_mut().enumerate() {
            if call.id.is_empty() {
                call.id = format!("call_{i}");
            }
        }
        Some(LmEvent::ToolCalls(calls))
    }
}

#[derive(Deserialize, Debug)]
pub(super) struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    n_prompt_tokens: Option<u64>,
    n_ctx: Option<u64>,
}

/// One llama-server chunk as events, in the order they mean; pieces of tool calls are
/// gathered in `calls` and come out whole before the finish.
pub(super) fn chunk_events(chunk: Chunk, calls: &mut ToolCallParts) -> Vec<LmEvent> {
    let mut events = Vec::new();
    for choice in chunk.choices {
        if let Some(text) = choice.delta.reasoning_content.filter(|t| !t.is_empty()) {
            events.push(LmEvent::Reasoning(text));
        }
        if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
            events.push(LmEvent::Text(text));
        }
        for piece in choice.delta.tool_calls {
            calls.add(piece);
        }
        if let Some(reason) = choice.finish_reason {
            events.extend(calls.take());
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

/// Where an upstream error showed up: in the HTTP response, or inside the event stream.
#[derive(Clone, Copy)]
pub(super) enum Origin {
    Response,
    Stream,
}

pub(super) fn map_error(error: OpenAIError, api_url: &str, origin: Origin) -> LmError {
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
        // eventsource-stream says "Transport error" when reading the body failed: the
        // connection broke, not the format.
        OpenAIError::StreamError(e) => match *e {
            StreamError::EventStream(message) if message.starts_with("Transport error") => {
                tracing::warn!(api_url, error = %message, "the model server's stream broke off");
                LmError::ConnectionLost
            }
            other => LmError::Protocol(short(&other.to_string())),
        },
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

pub(super) fn error_from_body(body: ErrorBody, origin: Origin) -> LmError {
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
pub(super) fn short(text: &str) -> String {
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

    /// The events of a recorded llama-server stream (testkit/fixtures/llama-server-tools/).
    fn replay(recording: &str) -> Vec<LmEvent> {
        let mut calls = ToolCallParts::default();
        recording
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|l| *l != "[DONE]")
            .flat_map(|l| match serde_json::from_str::<StreamItem>(l) {
                Ok(StreamItem::Chunk(chunk)) => chunk_events(chunk, &mut calls),
                _ => panic!("a chunk: {l}"),
            })
            .filter(|e| !matches!(e, LmEvent::Usage(_) | LmEvent::Timings(_)))
            .collect()
    }

    #[test]
    fn llama_servers_recorded_calls_of_tools_come_out_whole_before_the_finish() {
        let events = replay(include_str!(
            "../../../testkit/fixtures/llama-server-tools/tool-call.sse"
        ));
        let [LmEvent::ToolCalls(calls), LmEvent::Finish(reason)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(reason, "tool_calls");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(calls[0].id.len(), 32, "llama-server's own id: {calls:?}");
        let arguments: serde_json::Value =
            serde_json::from_str(&calls[0].arguments).expect("JSON arguments");
        assert_eq!(arguments, serde_json::json!({"city": "Paris"}));

        let events = replay(include_str!(
            "../../../testkit/fixtures/llama-server-tools/parallel-tool-calls.sse"
        ));
        let [LmEvent::ToolCalls(calls), LmEvent::Finish(_)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_ne!(calls[0].id, calls[1].id);
        for call in calls {
            serde_json::from_str::<serde_json::Value>(&call.arguments).expect("JSON arguments");
        }
    }

    #[test]
    fn text_before_a_call_streams_as_text() {
        let events = replay(include_str!(
            "../../../testkit/fixtures/llama-server-tools/text-then-tool-call.sse"
        ));
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                LmEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert!(text.starts_with("Let's check the weather"), "{text:?}");
        assert!(!text.contains("<tool_call>"), "{text:?}");
        assert!(matches!(
            events[events.len() - 2..],
            [LmEvent::ToolCalls(_), LmEvent::Finish(_)]
        ));
    }

    #[test]
    fn a_stream_that_breaks_off_is_a_lost_connection_not_a_format_error() {
        let broken = |message: &str| {
            let error =
                OpenAIError::StreamError(Box::new(StreamError::EventStream(message.into())));
            map_error(error, "http://lm", Origin::Stream)
        };
        assert_eq!(
            broken("Transport error: error decoding response body"),
            LmError::ConnectionLost
        );
        assert!(matches!(broken("Invalid UTF-8"), LmError::Protocol(_)));
    }

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
}
