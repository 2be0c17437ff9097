//! One round of a reply: one answer of the model streamed into the reply (its text, reasoning
//! and stats), bounded by the first-token, idle and loading timeouts; the calls of tools it
//! asked for are what the round gives back.
use tokio::time::{Instant, timeout_at};

use super::{Inner, Phase, Reply, failed};
use crate::{
    lm::{LmError, LmEvent, PromptMessage, ReplyOptions, ToolCall, ToolDefinition},
    metrics::ReplyMetrics,
    store::ReplyEnd,
};

/// What one round asks the model.
pub(super) struct Round<'a> {
    pub prompt: &'a [PromptMessage],
    pub options: &'a ReplyOptions,
    pub tools: &'a [ToolDefinition],
}

/// A reply's times, over all its rounds.
pub(super) struct ReplyClock {
    /// When the model was first asked.
    pub asked: Instant,
    /// The first and the latest piece of text.
    pub text_at: Option<(Instant, Instant)>,
    /// The engine's own generation time, summed over rounds, when it reports one.
    pub engine_ms: Option<f64>,
}

/// Streams one answer of the model into the reply: its text, reasoning and stats (into `end`).
/// `Ok`: the calls of tools it asked for (none: the reply is done); `Err`: how the reply ends.
pub(super) async fn stream_round(
    inner: &Inner,
    reply: &Reply,
    metrics: &mut ReplyMetrics,
    round: Round<'_>,
    end: &mut ReplyEnd,
    clock: &mut ReplyClock,
) -> Result<Vec<ToolCall>, ReplyEnd> {
    let settings = &inner.settings;
    let mut first_token_deadline = Instant::now() + settings.first_token_timeout;
    let started = timeout_at(
        first_token_deadline,
        inner
            .lm
            .stream_chat(round.prompt, round.options, round.tools),
    );
    let mut stream = match started.await {
        Err(_) => {
            return Err(failed(LmError::FirstTokenTimeout(
                settings.first_token_timeout,
            )));
        }
        Ok(Err(error)) => {
            if matches!(error, LmError::ContextOverflow { .. }) {
                inner.lm.forget_model_info().await;
            }
            return Err(failed(error));
        }
        Ok(Ok(stream)) => stream,
    };
    // Cut to what the column holds: a long name must never keep the reply's end from saving.
    end.model = Some(
        stream
            .model()
            .chars()
            .take(crate::domain::MAX_MODEL_NAME_CHARS)
            .collect(),
    );
    end.finish_reason = None;
    let mut calls = Vec::new();
    let mut got_text = false;
    let mut last_checkpoint = Instant::now();
    // While the model loads, its wait is bounded like the queue's.
    let mut loading = false;
    loop {
        let deadline = if got_text {
            Instant::now() + settings.idle_timeout
        } else if loading {
            Instant::now() + settings.queue_timeout
        } else {
            first_token_deadline
        };
        let event = match timeout_at(deadline, stream.next()).await {
            Err(_) if got_text => return Err(failed(LmError::IdleTimeout(settings.idle_timeout))),
            Err(_) if loading => {
                return Err(failed(LmError::NotReady(format!(
                    "The model did not load within {}. Please retry.",
                    humantime::format_duration(settings.queue_timeout)
                ))));
            }
            Err(_) => {
                return Err(failed(LmError::FirstTokenTimeout(
                    settings.first_token_timeout,
                )));
            }
            Ok(Err(error)) => return Err(failed(error)),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(event))) => event,
        };
        match event {
            LmEvent::Text(_) | LmEvent::Reasoning(_) => {
                let now = Instant::now();
                got_text = true;
                clock.text_at = Some((clock.text_at.map_or(now, |(first, _)| first), now));
                metrics.token();
                match event {
                    LmEvent::Text(piece) => reply.append(&piece, false),
                    LmEvent::Reasoning(piece) => reply.append(&piece, true),
                    _ => {}
                }
                if last_checkpoint.elapsed() >= settings.checkpoint_interval {
                    last_checkpoint = Instant::now();
                    reply.checkpoint(&inner.store).await;
                }
            }
            LmEvent::ToolCalls(asked) => calls.extend(asked),
            LmEvent::ModelLoading(model) => {
                loading = true;
                reply
                    .state
                    .send_modify(|s| s.phase = Phase::LoadingModel(model));
            }
            LmEvent::ModelReady => {
                loading = false;
                first_token_deadline = Instant::now() + settings.first_token_timeout;
                reply.state.send_modify(|s| s.phase = Phase::Generating);
            }
            LmEvent::Finish(reason) => end.finish_reason = Some(reason),
            LmEvent::Usage(usage) => {
                // The last round's prompt holds the earlier ones; the tokens written add up.
                end.prompt_tokens = i32::try_from(usage.prompt_tokens).ok();
                if let Ok(written) = i32::try_from(usage.completion_tokens) {
                    end.completion_tokens =
                        Some(end.completion_tokens.unwrap_or(0).saturating_add(written));
                }
            }
            LmEvent::Timings(t) => {
                // The engine's own clock, when it has one, over ours.
                clock.engine_ms = Some(clock.engine_ms.unwrap_or(0.0) + t.predicted_ms);
                let per_second = |n: u32, ms: f64| {
                    if ms > 0.0 {
                        f64::from(n) * 1000.0 / ms
                    } else {
                        0.0
                    }
                };
                tracing::info!(
                    message_id = %reply.message_id,
                    prompt_n = t.prompt_n,
                    cached_n = t.cache_n,
                    prompt_ms = t.prompt_ms,
                    predicted_n = t.predicted_n,
                    predicted_ms = t.predicted_ms,
                    predicted_per_second = per_second(t.predicted_n, t.predicted_ms),
                    "reply timings"
                );
            }
        }
    }
    if end.finish_reason.is_none() {
        return Err(failed(LmError::Truncated));
    }
    Ok(calls)
}
