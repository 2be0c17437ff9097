//! Following a reply another replica writes: its row, merged with the pieces the writer
//! publishes (`live.rs`), gaps filled by asking the writer to publish again or by reading the
//! row, and readers resuming past what the row holds.
use super::{FOLLOW_INTERVAL, Offsets};
use crate::{
    AppState,
    live::{Following, Piece, RESEND_CHANNEL, Resend, extend},
    store::{Status, message},
};

/// Least time between two requests of one stream to publish its reply again (`live.rs`).
const RESEND_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// A stored reply's pieces, from the replica writing it (`live.rs`).
pub(super) struct LiveFollow {
    pub(super) following: Following,
    /// Pieces after a gap, kept until the gap is filled (the writer sent it again, or a read
    /// of the row reached them).
    ahead: Vec<Piece>,
    row_read_at: tokio::time::Instant,
    resend_asked_at: Option<tokio::time::Instant>,
}

/// Most text kept after a gap; past it the oldest pieces go (the row has them by then). Also
/// the most a reader may resume past the row: the writer's text since its last checkpoint.
const MAX_AHEAD_BYTES: usize = 256 * 1024;

/// A reader resuming past the text its reply's row holds: it was sent that text live, and the
/// writer's checkpoint is older. Its offsets are taken as they are, and the row's text is
/// lengthened to them with spaces, which are never sent (the reader is past them); pieces
/// then add to it from there, and the reply's end is read whole from the row. `false`, with
/// nothing changed: the offsets are within the row (checked as usual), not a character
/// boundary of it, or further past it than a writer gets between checkpoints (no reader was
/// sent that: it replays all).
pub(super) fn resume_past_row(message: &mut message::Model, requested: Offsets) -> bool {
    let reasoning = message.reasoning.get_or_insert_default();
    let parts = [
        (&mut message.content, requested.text),
        (reasoning, requested.reasoning),
    ];
    let past = parts.iter().any(|(text, at)| *at > text.len());
    let valid = parts.iter().all(|(text, at)| {
        *at <= text.len().saturating_add(MAX_AHEAD_BYTES)
            && (*at > text.len() || text.is_char_boundary(*at))
    });
    if !(past && valid) {
        return false;
    }
    for (text, at) in parts {
        if at > text.len() {
            let missing = at - text.len();
            text.extend(std::iter::repeat_n(' ', missing));
        }
    }
    true
}

/// Adds a piece to a stored reply being followed. `false`: it starts after what is known (a
/// piece was missed), and only what fits is added.
fn add_piece(message: &mut message::Model, piece: &Piece) -> bool {
    if message.status != Status::Streaming {
        return true;
    }
    let reasoning = message.reasoning.get_or_insert_default();
    let reasoning_fits = extend(reasoning, piece.reasoning_at, &piece.reasoning);
    reasoning_fits && extend(&mut message.content, piece.text_at, &piece.text)
}

/// A new read of a followed row, merged with what is known: a finished reply as it is stored;
/// a streaming one keeps the longer of the two texts (each is a beginning of the same reply).
pub(super) fn merge_row(known: &mut message::Model, mut latest: message::Model) {
    if latest.status == Status::Streaming {
        if known.content.len() > latest.content.len() {
            latest.content = std::mem::take(&mut known.content);
        }
        let known_reasoning = known.reasoning.as_deref().map_or(0, str::len);
        if known_reasoning > latest.reasoning.as_deref().map_or(0, str::len) {
            latest.reasoning = known.reasoning.take();
        }
    }
    *known = latest;
}

impl LiveFollow {
    pub(super) fn new(following: Following) -> Self {
        Self {
            following,
            ahead: Vec::new(),
            row_read_at: tokio::time::Instant::now(),
            resend_asked_at: None,
        }
    }

    /// Whether text is missing before pieces that came (a gap not yet filled).
    pub(super) fn has_gap(&self) -> bool {
        !self.ahead.is_empty()
    }

    /// The row was read again (`message` is it merged with what was known): pieces kept after
    /// a gap may fit now.
    pub(super) fn row_read(&mut self, message: &mut message::Model) {
        self.row_read_at = tokio::time::Instant::now();
        self.ahead.retain(|piece| !add_piece(message, piece));
    }

    /// Adds `piece` and any others already waiting. Whether the row should be read now: the
    /// reply ended, or a piece was missed (at most four times a second while the gap lasts:
    /// the writer's checkpoints are what closes it).
    pub(super) fn take(&mut self, message: &mut message::Model, first: Piece) -> bool {
        let mut piece = Some(first);
        let mut ended = false;
        while let Some(next) = piece {
            ended |= next.end;
            if !add_piece(message, &next) {
                self.ahead.push(next);
            }
            piece = self.following.pieces.try_recv().ok();
        }
        // What came after a gap may fit now (the writer sent the gap again).
        self.ahead.retain(|piece| !add_piece(message, piece));
        let mut ahead_bytes: usize = self
            .ahead
            .iter()
            .map(|p| p.text.len() + p.reasoning.len())
            .sum();
        while ahead_bytes > MAX_AHEAD_BYTES && !self.ahead.is_empty() {
            let oldest = self.ahead.remove(0);
            ahead_bytes -= oldest.text.len() + oldest.reasoning.len();
        }
        let gap = !self.ahead.is_empty() && self.row_read_at.elapsed() >= FOLLOW_INTERVAL / 4;
        ended || gap
    }

    /// Asks the replica writing the reply to publish it again from what `message` holds (at
    /// most every [`RESEND_INTERVAL`]). What it sends back fills the gap within about one
    /// publication; the row is read all the same, in case the writer cannot be reached.
    pub(super) async fn ask_resend(&mut self, state: &AppState, message: &message::Model) {
        if self
            .resend_asked_at
            .is_some_and(|at| at.elapsed() < RESEND_INTERVAL)
        {
            return;
        }
        self.resend_asked_at = Some(tokio::time::Instant::now());
        let has = Offsets::end_of(message);
        let request = Resend {
            reply: message.id,
            text_at: has.text,
            reasoning_at: has.reasoning,
        };
        let Ok(payload) = serde_json::to_string(&request) else {
            return;
        };
        if let Err(e) = state.store.notify(RESEND_CHANNEL, vec![payload]).await {
            tracing::warn!(error = %e, "asking the writing replica to publish a reply again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_past_the_row_is_bounded_by_what_a_writer_holds_between_checkpoints() {
        let row = message::Model {
            content: "héllo".into(),
            status: Status::Streaming,
            ..crate::store::test_message()
        };
        let at = |text| Offsets {
            text,
            ..Offsets::default()
        };
        // A reader a little past the row: taken as it is, the row lengthened to it.
        let mut message = row.clone();
        assert!(resume_past_row(&mut message, at(40)));
        assert_eq!(message.content.len(), 40);
        assert!(message.content.starts_with("héllo"));
        // Within the row: checked as usual.
        assert!(!resume_past_row(&mut row.clone(), at(3)));
        // Further past it than any writer gets between checkpoints: no reader was sent that,
        // and nothing is allocated for it (it replays all).
        let mut message = row.clone();
        assert!(!resume_past_row(&mut message, at(99_999_999_999)));
        assert!(!resume_past_row(&mut message, at(6 + MAX_AHEAD_BYTES + 1)));
        assert_eq!(message.content, "héllo");
        assert!(resume_past_row(&mut message, at(6 + MAX_AHEAD_BYTES)));
    }
}
