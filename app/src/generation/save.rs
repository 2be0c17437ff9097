//! Saving a reply's end, through database outages.
use std::{sync::atomic::Ordering, time::Duration};

use tokio::time::Instant;

use super::{Inner, Reply};
use crate::store::{ReplyEnd, Status};

/// Saves how the reply ended. While the database is unreachable it keeps trying (the text is
/// safe in memory meanwhile), for up to five minutes, or ten seconds once shutting down. An error
/// that retrying cannot mend ends in a last save that marks the reply as failed, so that the chat
/// is never left blocked by a reply that stays `streaming`.
pub(super) async fn save_end(
    inner: &Inner,
    reply: &Reply,
    text: &str,
    reasoning: &str,
    end: &ReplyEnd,
) {
    let started = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        let error = match inner
            .store
            .finish_reply(&reply.session_id, reply.message_id, text, reasoning, end)
            .await
        {
            Ok(()) => return,
            Err(error) => error,
        };
        let unreachable = crate::error::is_unreachable(&error);
        let limit = if inner.interrupt.is_cancelled() || !inner.accepting.load(Ordering::SeqCst) {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(300)
        };
        if !unreachable || started.elapsed() > limit {
            tracing::error!(error = %error, message_id = %reply.message_id, "could not save the end of a reply");
            let failed = ReplyEnd::new(
                Status::Error,
                Some("This reply could not be saved. Please retry.".into()),
            );
            // With its text if that can be stored; without it (e.g. text the database refuses)
            // rather than leave the reply `streaming` and its chat blocked.
            for (text, reasoning) in [(text, reasoning), ("", "")] {
                match inner
                    .store
                    .finish_reply(
                        &reply.session_id,
                        reply.message_id,
                        text,
                        reasoning,
                        &failed,
                    )
                    .await
                {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(error = %e, message_id = %reply.message_id, "could not mark the reply as failed")
                    }
                }
            }
            return;
        }
        tracing::warn!(error = %error, message_id = %reply.message_id, "saving the reply failed; retrying");
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
