//! Following a reply live through a replica that is not writing it (PostgreSQL
//! `LISTEN`/`NOTIFY`; ARCHITECTURE.md "Several replicas").
//!
//! The writing replica publishes what each of its replies gained, every [`PUBLISH_INTERVAL`],
//! all of them in one statement (`generation/publish.rs`). Every replica listens on one
//! connection of its own ([`listen`]) and hands each piece to the streams following that reply
//! here ([`Feed`], read by `stream/remote.rs`). Pieces carry their byte offsets, so a follower can tell a
//! piece it already has (skipped) from one after a gap (kept until the gap is filled). A
//! notification can be missed: the listening connection dropped, or a follower fell behind.
//! A follower that lacks text (it attached between two checkpoints, or a piece after a gap
//! arrived) asks the writer to publish again from where it is ([`RESEND_CHANNEL`]), and the
//! writer does at its next publication; it also reads the row, as it does every second when
//! nothing arrives, so nothing is lost even when the writer cannot be reached. The offsets keep
//! it exactly once. Stop goes the same way, to the writer at once. SQLite is one process: none
//! of this runs there.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::sqlx::postgres::PgListener;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel of the replies' pieces (each payload one [`Piece`]).
pub const PIECES_CHANNEL: &str = "chat_reply_pieces";
/// The channel of Stop asked on one replica for a reply another is writing (payload: its id).
pub const STOP_CHANNEL: &str = "chat_reply_stop";
/// The channel of a follower's request to publish a reply again from its offsets (payload: one
/// [`Resend`]).
pub const RESEND_CHANNEL: &str = "chat_reply_resend";
/// How often a writing replica publishes its replies' new text: the most a follower elsewhere
/// lags behind one here, plus the database's round trip.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(40);
/// The most text one notification carries. PostgreSQL refuses payloads over 8,000 bytes, and
/// JSON may write a byte as six (`\u0001`).
pub const MAX_PIECE_BYTES: usize = 1_200;
/// Pieces waiting for a follower that is busy sending earlier ones; past this it is told it
/// missed some, and reads the row.
const FOLLOWER_QUEUE: usize = 256;

/// The replies this replica writes, as the listener hands them the requests other replicas
/// send (`generation::Generations`: the listener does not depend on it).
pub trait Writer: Send + Sync + 'static {
    /// Stops the reply if this replica is writing it (Stop asked on another replica), without
    /// waiting for its end.
    fn stop_here(&self, reply: Uuid);
    /// Publishes the reply again from the follower's offsets, if this replica is writing it.
    fn resend_here(&self, request: Resend);
}

/// What a reply gained since the last notification: answer text and reasoning, each with
/// the byte offset it starts at; or its end (saved, so the row is the reply as it ended).
/// Keys are short: every notification carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    #[serde(rename = "m")]
    pub reply: Uuid,
    #[serde(rename = "t", default)]
    pub text_at: usize,
    #[serde(rename = "x", default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(rename = "r", default)]
    pub reasoning_at: usize,
    #[serde(rename = "y", default, skip_serializing_if = "String::is_empty")]
    pub reasoning: String,
    #[serde(rename = "e", default, skip_serializing_if = "std::ops::Not::not")]
    pub end: bool,
}

impl Piece {
    /// The notifications that carry `text` from byte `text_at` and `reasoning` from
    /// `reasoning_at` (reasoning first, as it was written), each at most [`MAX_PIECE_BYTES`].
    pub fn split(
        reply: Uuid,
        text_at: usize,
        text: &str,
        reasoning_at: usize,
        reasoning: &str,
    ) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let mut at = reasoning_at;
        for chunk in chunks(reasoning) {
            pieces.push(Piece {
                reply,
                text_at,
                reasoning_at: at,
                reasoning: chunk.to_owned(),
                ..Piece::default()
            });
            at += chunk.len();
        }
        let mut at = text_at;
        for chunk in chunks(text) {
            pieces.push(Piece {
                reply,
                text_at: at,
                text: chunk.to_owned(),
                reasoning_at: reasoning_at + reasoning.len(),
                ..Piece::default()
            });
            at += chunk.len();
        }
        pieces
    }
}

/// A follower's request to the replica writing `reply`: publish it again from these byte
/// offsets of its answer and reasoning (what the follower has).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resend {
    #[serde(rename = "m")]
    pub reply: Uuid,
    #[serde(rename = "t")]
    pub text_at: usize,
    #[serde(rename = "r")]
    pub reasoning_at: usize,
}

/// `text` in pieces of at most [`MAX_PIECE_BYTES`], cut between characters.
fn chunks(mut text: &str) -> impl Iterator<Item = &str> {
    std::iter::from_fn(move || {
        if text.is_empty() {
            return None;
        }
        let mut cut = text.len().min(MAX_PIECE_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, rest) = text.split_at(cut);
        text = rest;
        Some(piece)
    })
}

/// Adds to `current` what `piece` (starting at byte `at`) has past its end. `false`: the piece
/// starts after `current` ends (a gap: a notification was missed), and nothing is added.
pub fn extend(current: &mut String, at: usize, piece: &str) -> bool {
    if at > current.len() {
        return false;
    }
    let known = current.len() - at;
    match piece.get(known..) {
        Some(rest) => {
            current.push_str(rest);
            true
        }
        // Already have all of it; or, cut mid-character, not the same text: read the row.
        None => known >= piece.len(),
    }
}

/// The streams of this replica that follow replies written elsewhere, by reply. Disabled (no
/// streams are registered) on SQLite.
#[derive(Clone, Default)]
pub struct Feed {
    inner: Option<Arc<FeedInner>>,
}

#[derive(Default)]
struct FeedInner {
    followers: Mutex<HashMap<Uuid, Vec<Follower>>>,
    next_id: AtomicU64,
    /// The listener has been connected (once is enough: after a lost connection, followers
    /// read rows until it is back).
    listened: AtomicBool,
}

struct Follower {
    id: u64,
    pieces: mpsc::Sender<Piece>,
    missed: Arc<AtomicBool>,
}

/// One stream's subscription to a reply's pieces; unregistered when dropped.
pub struct Following {
    pub pieces: mpsc::Receiver<Piece>,
    missed: Arc<AtomicBool>,
    feed: Arc<FeedInner>,
    reply: Uuid,
    id: u64,
}

impl Following {
    /// Whether pieces were lost since last asked (the stream should read the row).
    pub fn take_missed(&self) -> bool {
        self.missed.swap(false, Ordering::AcqRel)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let mut followers = self.feed.lock();
        if let Some(list) = followers.get_mut(&self.reply) {
            list.retain(|f| f.id != self.id);
            if list.is_empty() {
                followers.remove(&self.reply);
            }
        }
    }
}

impl FeedInner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Follower>>> {
        // Each update is one insert or remove: a poisoned lock is still consistent.
        self.followers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Feed {
    /// A feed for PostgreSQL (`enabled`), or the disabled one.
    pub fn new(enabled: bool) -> Self {
        Self {
            inner: enabled.then(Arc::default),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether this replica has started listening (always, when disabled). Until then it is
    /// not ready: pages following other replicas' replies through it would lag.
    pub fn has_listened(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|feed| feed.listened.load(Ordering::Acquire))
    }

    fn listening(&self) {
        if let Some(feed) = &self.inner {
            feed.listened.store(true, Ordering::Release);
        }
    }

    /// Subscribes to the pieces of `reply` (before its row is read, so that none falls between
    /// the two). `None` when disabled.
    pub fn follow(&self, reply: Uuid) -> Option<Following> {
        let feed = self.inner.as_ref()?;
        let (tx, rx) = mpsc::channel(FOLLOWER_QUEUE);
        let missed = Arc::new(AtomicBool::new(false));
        let id = feed.next_id.fetch_add(1, Ordering::Relaxed);
        feed.lock().entry(reply).or_default().push(Follower {
            id,
            pieces: tx,
            missed: missed.clone(),
        });
        Some(Following {
            pieces: rx,
            missed,
            feed: feed.clone(),
            reply,
            id,
        })
    }

    /// Streams here following `reply`.
    #[cfg(test)]
    fn is_followed(&self, reply: &Uuid) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|feed| feed.lock().contains_key(reply))
    }

    /// Hands a piece to the streams following its reply; one that cannot take it now is told
    /// it missed one.
    fn deliver(&self, piece: Piece) {
        let Some(feed) = &self.inner else { return };
        if let Some(list) = feed.lock().get(&piece.reply) {
            for follower in list {
                if follower.pieces.try_send(piece.clone()).is_err() {
                    follower.missed.store(true, Ordering::Release);
                }
            }
        }
    }

    /// Every follower may have missed pieces (the listening connection was lost).
    fn missed_all(&self) {
        let Some(feed) = &self.inner else { return };
        for follower in feed.lock().values().flatten() {
            follower.missed.store(true, Ordering::Release);
        }
    }
}

/// Listens for pieces, Stop and resend requests on its own connection to `database_url`, until
/// `until`: pieces go to this replica's followers, Stop and resend requests to the replies
/// written here. Reconnects after a lost connection (telling every follower it may have missed
/// pieces).
pub async fn listen(
    database_url: String,
    feed: Feed,
    writer: impl Writer,
    until: CancellationToken,
) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    let mut retry_in = FIRST_RETRY;
    loop {
        let connected = tokio::select! {
            connected = connect(&database_url) => connected,
            _ = until.cancelled() => return,
        };
        match connected {
            Ok(mut listener) => {
                let since = tokio::time::Instant::now();
                feed.listening();
                // Whatever was published before now reached nobody here.
                feed.missed_all();
                loop {
                    let received = tokio::select! {
                        received = listener.try_recv() => received,
                        _ = until.cancelled() => return,
                    };
                    match received {
                        Ok(Some(notification)) => handle(
                            &feed,
                            &writer,
                            notification.channel(),
                            notification.payload(),
                        ),
                        // Lost and connected again (listening again): what came meanwhile is
                        // lost.
                        Ok(None) => feed.missed_all(),
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for other replicas' replies failed; reconnecting");
                            feed.missed_all();
                            break;
                        }
                    }
                }
                // A connection that served a while: connect again at once. One that failed
                // soon after connecting waits as a refused one does, so a server that accepts
                // and then drops connections is not asked in a tight loop.
                if since.elapsed() >= Duration::from_secs(10) {
                    retry_in = FIRST_RETRY;
                    continue;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for replies written by other replicas; retrying");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry_in) => {}
            _ = until.cancelled() => return,
        }
        retry_in = (retry_in * 2).min(Duration::from_secs(5));
    }
}

async fn connect(database_url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener
        .listen_all([PIECES_CHANNEL, STOP_CHANNEL, RESEND_CHANNEL])
        .await?;
    Ok(listener)
}

fn handle(feed: &Feed, writer: &impl Writer, channel: &str, payload: &str) {
    match channel {
        PIECES_CHANNEL => {
            let piece: Piece = match serde_json::from_str(payload) {
                Ok(piece) => piece,
                Err(e) => {
                    tracing::warn!(error = %e, "a reply's piece that cannot be read");
                    return;
                }
            };
            feed.deliver(piece);
        }
        STOP_CHANNEL => {
            if let Ok(reply) = payload.parse::<Uuid>() {
                writer.stop_here(reply);
            }
        }
        RESEND_CHANNEL => match serde_json::from_str::<Resend>(payload) {
            Ok(resend) => writer.resend_here(resend),
            Err(e) => tracing::warn!(error = %e, "a resend request that cannot be read"),
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_split_between_characters_with_its_offsets() {
        let reply = Uuid::nil();
        let text = "é".repeat(1_000); // 2,000 bytes
        let pieces = Piece::split(reply, 10, &text, 4, "hmm");
        assert_eq!(pieces.len(), 3);
        assert_eq!(
            (pieces[0].reasoning_at, pieces[0].reasoning.as_str()),
            (4, "hmm")
        );
        assert_eq!(pieces[1].text_at, 10);
        assert_eq!(pieces[1].reasoning_at, 7);
        assert_eq!(pieces[1].text.len(), MAX_PIECE_BYTES);
        assert_eq!(pieces[2].text_at, 10 + MAX_PIECE_BYTES);
        assert_eq!(format!("{}{}", pieces[1].text, pieces[2].text), text);
        // Each fits a notification even when JSON escapes every byte.
        let worst = Piece::split(reply, 0, &"\u{1}".repeat(5_000), 0, "");
        for piece in &worst {
            assert!(serde_json::to_string(piece).unwrap().len() < 8_000);
        }
    }

    #[test]
    fn extending_skips_what_is_known_and_refuses_a_gap() {
        let mut text = "Hello".to_owned();
        assert!(extend(&mut text, 3, "lo, wor"));
        assert_eq!(text, "Hello, wor");
        assert!(extend(&mut text, 0, "Hello"), "all known: nothing added");
        assert_eq!(text, "Hello, wor");
        assert!(!extend(&mut text, 12, "ld"), "a gap");
        assert_eq!(text, "Hello, wor");
        assert!(extend(&mut text, 10, "ld"));
        assert_eq!(text, "Hello, world");
    }

    #[test]
    fn a_piece_round_trips_in_few_bytes() {
        let piece = Piece {
            reply: Uuid::nil(),
            text_at: 120,
            text: " word".into(),
            ..Piece::default()
        };
        let json = serde_json::to_string(&piece).unwrap();
        assert_eq!(
            json,
            r#"{"m":"00000000-0000-0000-0000-000000000000","t":120,"x":" word","r":0}"#
        );
        assert_eq!(serde_json::from_str::<Piece>(&json).unwrap(), piece);
    }

    #[tokio::test]
    async fn a_follower_that_falls_behind_is_told_it_missed_pieces() {
        let feed = Feed::new(true);
        let reply = Uuid::now_v7();
        let following = feed.follow(reply).unwrap();
        assert!(feed.is_followed(&reply));
        for i in 0..FOLLOWER_QUEUE + 1 {
            feed.deliver(Piece {
                reply,
                text_at: i,
                text: "x".into(),
                ..Piece::default()
            });
        }
        assert!(following.take_missed());
        assert!(!following.take_missed(), "told once");
        drop(following);
        assert!(!feed.is_followed(&reply), "unregistered when dropped");
        assert!(Feed::new(false).follow(reply).is_none());
        assert!(Feed::new(false).has_listened() && !feed.has_listened());
    }
}
