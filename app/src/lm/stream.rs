//! A reply in progress, from either engine: its events in order, with a `<think>` block at the
//! start split off as reasoning.
use std::{pin::Pin, time::Duration};

use async_openai::error::OpenAIError;
use futures::{Stream, StreamExt};

use super::{
    EngineEvents, LmError, LmEvent,
    think::ThinkSplitter,
    wire::{Origin, StreamItem, ToolCallParts, chunk_events, error_from_body, map_error},
};

pub(super) type ItemStream = Pin<Box<dyn Stream<Item = Result<StreamItem, OpenAIError>> + Send>>;

/// Where a stream's events come from.
pub(super) enum Source {
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
    /// The model asked to write the reply, by the name its engine gives it.
    model: String,
    pending: std::collections::VecDeque<LmEvent>,
    think: ThinkSplitter,
    /// llama-server's calls of tools, gathered from their pieces.
    calls: ToolCallParts,
}

/// Longest a possible `<think>` at the start of a reply is held back while the model is silent.
const THINK_HOLD: Duration = Duration::from_millis(250);

impl LmStream {
    /// A stream fed by the embedded engine, writing with `model`.
    pub fn from_engine(events: EngineEvents, model: String) -> Self {
        Self::new(Source::Engine(events), model)
    }

    pub(super) fn new(source: Source, model: String) -> Self {
        Self {
            source,
            model,
            pending: Default::default(),
            think: ThinkSplitter::default(),
            calls: ToolCallParts::default(),
        }
    }

    /// The model writing this reply.
    pub fn model(&self) -> &str {
        &self.model
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
                Some(Ok(StreamItem::Chunk(chunk))) => {
                    Ok(Some(chunk_events(chunk, &mut self.calls)))
                }
            },
        }
    }
}
