//! The text this replica's replies gain, published for followers on other replicas
//! (`live.rs`): every `PUBLISH_INTERVAL`, one statement for all replies, from where each was
//! published to (or from where a follower asked to have it again); a reply's end once it is
//! saved. PostgreSQL only.
use std::{collections::HashMap, sync::Arc};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Generations, Inner, Phase, Reply};
use crate::live::{PIECES_CHANNEL, PUBLISH_INTERVAL, Piece};

/// A reply being published, and how much of it (bytes of answer, of reasoning) has been.
struct Published {
    reply: Arc<Reply>,
    text: usize,
    reasoning: usize,
}

impl Generations {
    /// Publishes the replies' new text until `until` (after the replies in flight are saved at
    /// shutdown). Sleeps while no reply runs.
    pub async fn publish_pieces(self, until: CancellationToken) {
        let mut published: HashMap<Uuid, Published> = HashMap::new();
        let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if published.is_empty() && self.live_count() == 0 {
                tokio::select! {
                    _ = self.inner.started.notified() => {}
                    _ = until.cancelled() => return,
                }
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = until.cancelled() => return,
            }
            {
                let mut registry = self.lock();
                for (id, reply) in &registry.replies {
                    published.entry(*id).or_insert_with(|| Published {
                        reply: reply.clone(),
                        text: 0,
                        reasoning: 0,
                    });
                }
                // A follower lacks text: publish again from what it has.
                for (id, (text, reasoning)) in registry.resend.drain() {
                    if let Some(p) = published.get_mut(&id) {
                        p.text = p.text.min(text);
                        p.reasoning = p.reasoning.min(reasoning);
                    }
                }
            }
            let mut payloads = Vec::new();
            published.retain(|id, p| {
                let state = p.reply.state.borrow();
                // Earlier lengths of the same growing texts are boundaries; a follower's
                // offsets should be, and from the start is right whatever they are.
                let from = |at: usize, text: &str| if text.is_char_boundary(at) { at } else { 0 };
                let (text_at, reasoning_at) = (
                    from(p.text, &state.text),
                    from(p.reasoning, &state.reasoning),
                );
                let text = &state.text[text_at..];
                let reasoning = &state.reasoning[reasoning_at..];
                payloads.extend(Piece::split(*id, text_at, text, reasoning_at, reasoning));
                p.text = state.text.len();
                p.reasoning = state.reasoning.len();
                // Its end is published by its task, once saved (`publish_end`).
                !matches!(state.phase, Phase::Finished { .. })
            });
            if payloads.is_empty() {
                continue;
            }
            let payloads: Vec<String> = payloads
                .iter()
                .filter_map(|p| serde_json::to_string(p).ok())
                .collect();
            // Lost pieces cost followers a read of the row, never text: no retry.
            if let Err(e) = self.inner.store.notify(PIECES_CHANNEL, payloads).await {
                tracing::warn!(error = %e, "publishing replies' text for other replicas failed");
            }
        }
    }
}

/// Tells followers on other replicas that `reply` ended (it is saved: they read it whole).
pub(super) async fn publish_end(inner: &Inner, reply: &Reply) {
    if !inner.store.is_postgres() {
        return;
    }
    let (text, reasoning) = {
        let state = reply.state.borrow();
        (state.text.len(), state.reasoning.len())
    };
    let end = Piece {
        reply: reply.message_id,
        text_at: text,
        reasoning_at: reasoning,
        end: true,
        ..Piece::default()
    };
    let Ok(payload) = serde_json::to_string(&end) else {
        return;
    };
    // The reply stays registered (its chat busy here) until this is done: a database that is
    // slow to answer costs followers a read of the row instead (they make one every second).
    let notified = inner.store.notify(PIECES_CHANNEL, vec![payload]);
    match tokio::time::timeout(END_NOTICE_TIMEOUT, notified).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "publishing a reply's end for other replicas failed")
        }
        Err(_) => tracing::warn!("publishing a reply's end for other replicas timed out"),
    }
}

/// How long a reply's task waits to tell followers elsewhere of its end.
const END_NOTICE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
