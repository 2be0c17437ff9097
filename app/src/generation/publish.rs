//! The text this replica's replies gain, published for followers on other replicas
//! (`live.rs`): every `PUBLISH_INTERVAL`, one statement for all replies; a reply's end after it
//! is saved. PostgreSQL only.
use std::{collections::HashMap, sync::Arc};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Generations, Phase, Reply};
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
            for (id, reply) in &self.lock().replies {
                published.entry(*id).or_insert_with(|| Published {
                    reply: reply.clone(),
                    text: 0,
                    reasoning: 0,
                });
            }
            let mut payloads = Vec::new();
            published.retain(|id, p| {
                let state = p.reply.state.borrow();
                // Offsets of earlier lengths of the same growing texts: always boundaries.
                let text = state.text.get(p.text..).unwrap_or_default();
                let reasoning = state.reasoning.get(p.reasoning..).unwrap_or_default();
                payloads.extend(Piece::split(*id, p.text, text, p.reasoning, reasoning));
                p.text = state.text.len();
                p.reasoning = state.reasoning.len();
                let ended = matches!(state.phase, Phase::Finished { .. });
                if ended {
                    payloads.push(Piece {
                        reply: *id,
                        text_at: p.text,
                        reasoning_at: p.reasoning,
                        end: true,
                        ..Piece::default()
                    });
                }
                !ended
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
