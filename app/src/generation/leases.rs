//! This replica's claims on the replies it writes, and its watch over the others' (see
//! ARCHITECTURE.md "Several replicas").
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Generations;
use crate::live::Writer;

impl Generations {
    /// Keeps this replica's claims and watches the others', until `until` is cancelled: renews
    /// the leases of the replies written here (every third of the lease), stops those whose
    /// Stop was asked for on another replica (every second at most: on PostgreSQL the listener
    /// in `live.rs` delivers it at once; this catches a notification missed), and marks `interrupted`
    /// the replies whose replica stopped renewing (it died).
    pub async fn watch_leases(self, until: CancellationToken) {
        let store = &self.inner.store;
        let renew_every = store.replica().lease / 3;
        let mut tick = tokio::time::interval(renew_every.min(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut renewed: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = until.cancelled() => return,
            }
            let live: Vec<Uuid> = self.lock().replies.keys().copied().collect();
            match store.stops_requested(&live).await {
                Ok(stopped) => stopped.into_iter().for_each(|id| self.stop_here(id)),
                Err(e) => tracing::warn!(error = %e, "checking for Stop from other replicas"),
            }
            if renewed.is_some_and(|at| at.elapsed() < renew_every) {
                continue;
            }
            renewed = Some(Instant::now());
            // Renew first: after an outage, this replica's own replies must not look abandoned.
            if let Err(e) = store.renew_leases(&live).await {
                tracing::warn!(error = %e, "renewing the leases of replies being written");
                continue;
            }
            match store.interrupt_expired_replies().await {
                Ok(0) => {}
                Ok(interrupted) => tracing::warn!(
                    interrupted,
                    "replies whose replica stopped while writing them are now interrupted"
                ),
                Err(e) => tracing::warn!(error = %e, "looking for abandoned replies"),
            }
        }
    }
}
