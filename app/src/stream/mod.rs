//! A reply's events, for any kind of client (ARCHITECTURE.md "The stream contract"): the text written
//! after the client's resume point, then the text as it arrives, then the reply as stored.
//!
//! There is one source per stream: the live reply when this process is writing it, or else the
//! row in the database, followed through its checkpoints (another replica is writing it). One
//! loop reads either; `routes::stream` encodes its events as HTML fragments or JSON. Event ids
//! are byte offsets into the answer and the reasoning, so `Last-Event-ID` resumes without a gap
//! or a duplicate. Knows no HTTP.
mod remote;

use std::{pin::Pin, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use uuid::Uuid;

use self::remote::{LiveFollow, merge_row, resume_past_row};
use crate::{
    AppState,
    domain::{SessionId, ToolStep},
    error::{AppError, AppResult},
    generation::{Phase, Reply, ReplyState},
    session::Session,
    store::{Role, Status, Versions, message},
};

/// How often a reply written by another replica is read again.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Where a stream is: bytes of the answer and of the reasoning sent so far, and events of
/// the reply's steps (calls of tools: two each, the call and its result). As an event id: the
/// answer's offset alone while there is nothing else (`"120"`), else all
/// (`"120:48"`, `"120:0:3"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub text: usize,
    pub reasoning: usize,
    pub steps: usize,
}

impl Offsets {
    /// An event id, as `Last-Event-ID` sends it back.
    pub fn parse(id: &str) -> Option<Self> {
        let mut parts = id.trim().split(':');
        let mut next = || parts.next().map_or(Some(0), |p| p.parse().ok());
        let offsets = Self {
            text: next()?,
            reasoning: next()?,
            steps: next()?,
        };
        parts.next().is_none().then_some(offsets)
    }

    pub fn id(self) -> String {
        match (self.reasoning, self.steps) {
            (0, 0) => self.text.to_string(),
            (r, 0) => format!("{}:{r}", self.text),
            (r, s) => format!("{}:{r}:{s}", self.text),
        }
    }

    /// A valid resume point for these texts and steps: within them and on character
    /// boundaries; anything else replays all.
    fn resume(text: &str, reasoning: &str, steps: &[ToolStep], requested: Option<Self>) -> Self {
        match requested {
            Some(o)
                if text.is_char_boundary(o.text)
                    && reasoning.is_char_boundary(o.reasoning)
                    && o.steps <= step_events(steps) =>
            {
                o
            }
            _ => Self::default(),
        }
    }

    /// The end of a stored reply's texts and steps.
    pub fn end_of(message: &message::Model) -> Self {
        Self {
            text: message.content.len(),
            reasoning: message.reasoning.as_deref().map_or(0, str::len),
            steps: step_events(&message.tool_steps()),
        }
    }
}

/// Which text a piece adds to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PieceKind {
    /// What a thinking model writes before its answer (it comes first).
    Reasoning,
    Text,
}

/// What a reply that has no text yet waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Waiting {
    Nothing,
    /// Other replies hold every generation slot.
    OtherReplies,
    /// Its model is being loaded (by this name).
    ModelLoading(String),
}

/// The events steps make: a call, then its result once there is one.
fn step_events(steps: &[ToolStep]) -> usize {
    steps
        .iter()
        .map(|s| 1 + usize::from(s.result.is_some()))
        .sum()
}

/// What a stream tells its client.
#[derive(Debug)]
pub enum ReplyEvent {
    /// A call of a tool began (`step.result` is `None`), or ended (it is there). `offsets`:
    /// where the stream is after it (the event's id).
    Step { step: ToolStep, offsets: Offsets },
    /// More text; `offsets` is where the stream is after it (the event's id).
    Piece {
        kind: PieceKind,
        text: String,
        offsets: Offsets,
    },
    /// What the reply waits for now (`Nothing` once it is being written).
    Waiting(Waiting),
    /// The reply ended; this is it as stored. The stream ends after it.
    Done {
        reply: Box<message::Model>,
        /// The page should look for the chat's title: the model is writing it, or may have
        /// written it since the page was rendered.
        title_pending: bool,
        /// The reply's versions, when it has more than one (a regeneration has).
        versions: Option<Versions>,
    },
}

pub type ReplyEvents = Pin<Box<dyn Stream<Item = ReplyEvent> + Send>>;

/// The events of this session's reply `message_id` (in chat `chat_id`, when given), after the
/// event id `last_event_id`. Pieces are at least `piece_interval` apart: the first goes out at
/// once, text arriving within the interval after a piece joins the next one (a fast model, like
/// the test model's ~1,500 tokens a second, would otherwise cost a page one update per token). Takes one of the session's stream slots for as long as the stream
/// lives. Attaches only: never starts a generation.
#[tracing::instrument(skip_all, fields(%message_id))]
pub async fn open(
    state: &AppState,
    session: &Session,
    chat_id: Option<Uuid>,
    message_id: Uuid,
    last_event_id: Option<&str>,
    piece_interval: Duration,
) -> AppResult<ReplyEvents> {
    let slot = state.stream_slots.acquire(&session.id)?;
    let resume_from = last_event_id.and_then(Offsets::parse);
    let in_chat = |id: Uuid| chat_id.is_none_or(|chat| chat == id);
    let mut source = match state.generations.attach(&session.id, message_id) {
        Some(reply) if in_chat(reply.chat_id) => Source::Live {
            updates: reply.subscribe(),
            reply,
        },
        _ => {
            // Subscribed before the row is read, so no piece falls between the two.
            let following = state.live.follow(message_id);
            let message = state
                .store
                .find_session_message(&session.id, message_id)
                .await?
                .filter(|m| in_chat(m.chat_id) && m.role == Role::Assistant)
                .ok_or(AppError::NotFound("message"))?;
            Source::Stored {
                session_id: session.id.clone(),
                message: Box::new(message),
                live: following.map(LiveFollow::new),
            }
        }
    };
    let resumed_past_row = match (&mut source, resume_from) {
        (
            Source::Stored {
                message,
                live: Some(_),
                ..
            },
            Some(requested),
        ) if message.status == Status::Streaming => resume_past_row(message, requested),
        _ => false,
    };
    let offsets = match &source {
        // A finished reply's end at once: its `done` carries the whole reply.
        Source::Stored { message, .. } if message.status != Status::Streaming => {
            Offsets::end_of(message)
        }
        _ if resumed_past_row => resume_from.unwrap_or_default(),
        _ => source.resume_point(resume_from),
    };
    // The row is the writer's last checkpoint: ask it for what it has written since.
    if let Source::Stored {
        message,
        live: Some(live),
        ..
    } = &mut source
        && message.status == Status::Streaming
    {
        live.ask_resend(state, message).await;
    }
    let follow = Follow {
        state: state.clone(),
        session_id: session.id.clone(),
        source,
        offsets,
        waiting_shown: None,
        last_piece_at: None,
        piece_interval,
        finished: false,
        closing_seen: false,
    };
    // The slot is given back when the stream is dropped: ended, or the client went away.
    let open = crate::metrics::OpenStream::open();
    let events = futures::stream::unfold(follow, Follow::next).map(move |event| {
        let _held = (&slot, &open);
        event
    });
    Ok(Box::pin(events))
}

/// Where a stream's text comes from.
enum Source {
    /// This process is writing the reply: its text and phase, as they change.
    Live {
        reply: Arc<Reply>,
        updates: watch::Receiver<ReplyState>,
    },
    /// The row, read again every [`FOLLOW_INTERVAL`] while it is `streaming`; on PostgreSQL
    /// with the writer's pieces added as they arrive (`live`), and the row read only when
    /// they stop or one was missed.
    Stored {
        session_id: SessionId,
        message: Box<message::Model>,
        live: Option<LiveFollow>,
    },
}

/// What a source says after its text.
enum Progress {
    Running {
        /// `None`: not known (another replica writes the reply).
        waiting: Option<Waiting>,
    },
    /// The reply as stored, and whether the chat's title may be, or may have been, written
    /// since the reader's page was rendered (the page should then look for it).
    Finished(Box<message::Model>, bool),
}

impl Source {
    fn resume_point(&self, requested: Option<Offsets>) -> Offsets {
        match self {
            Source::Live { updates, .. } => {
                let now = updates.borrow();
                Offsets::resume(&now.text, &now.reasoning, &now.steps, requested)
            }
            Source::Stored { message, .. } => Offsets::resume(
                &message.content,
                message.reasoning.as_deref().unwrap_or_default(),
                &message.tool_steps(),
                requested,
            ),
        }
    }

    /// What is past `offsets` (reasoning first, then text and steps in the order they came;
    /// `offsets` moves past it), and where the reply is.
    fn read(&mut self, offsets: &mut Offsets) -> (Option<Next>, Progress) {
        match self {
            Source::Live { updates, .. } => {
                let now = updates.borrow_and_update();
                let piece = next_piece(offsets, &now.text, &now.reasoning, &now.steps);
                let progress = match &now.phase {
                    Phase::Queued => Progress::Running {
                        waiting: Some(Waiting::OtherReplies),
                    },
                    Phase::LoadingModel(model) => Progress::Running {
                        waiting: Some(Waiting::ModelLoading(model.clone())),
                    },
                    Phase::Generating => Progress::Running {
                        waiting: Some(Waiting::Nothing),
                    },
                    Phase::Finished {
                        reply,
                        title_started,
                    } => Progress::Finished(reply.clone(), *title_started),
                };
                (piece, progress)
            }
            Source::Stored { message, .. } => {
                let reasoning = message.reasoning.as_deref().unwrap_or_default();
                let steps = message.tool_steps();
                let piece = next_piece(offsets, &message.content, reasoning, &steps);
                let progress = match message.status {
                    // Whether another replica's reply waits for its model is not known here.
                    Status::Streaming => Progress::Running { waiting: None },
                    // Whether a title followed is not known here either: it may have been
                    // written before this stream attached, or by another replica. Looking
                    // costs the page one request.
                    _ => Progress::Finished(message.clone(), message.status == Status::Complete),
                };
                (piece, progress)
            }
        }
    }
}

/// What comes next past `offsets`.
#[derive(Debug, PartialEq)]
enum Next {
    Piece(PieceKind, String),
    Step(ToolStep),
}

/// The next thing past `offsets`: reasoning first (it comes first), then the answer up to
/// the next step, the step's call, its result once it has one, the answer after it, ….
fn next_piece(
    offsets: &mut Offsets,
    text: &str,
    reasoning: &str,
    steps: &[ToolStep],
) -> Option<Next> {
    if let Some(piece) = reasoning.get(offsets.reasoning..).filter(|p| !p.is_empty()) {
        offsets.reasoning += piece.len();
        return Some(Next::Piece(PieceKind::Reasoning, piece.to_owned()));
    }
    let step = steps.get(offsets.steps / 2);
    // Text written before the step goes out before it; a step's `at` is a boundary of the text.
    let until = step.map_or(text.len(), |s| s.at.min(text.len()));
    if let Some(piece) = text.get(offsets.text..until).filter(|p| !p.is_empty()) {
        offsets.text += piece.len();
        return Some(Next::Piece(PieceKind::Text, piece.to_owned()));
    }
    let step = step?;
    let call_sent = offsets.steps % 2 == 1;
    if call_sent && step.result.is_none() {
        // Running: nothing comes after it yet.
        return None;
    }
    offsets.steps += 1;
    Some(Next::Step(match call_sent {
        true => step.clone(),
        // The call alone first, even when its result is known already.
        false => ToolStep {
            result: None,
            is_error: false,
            duration_ms: None,
            ..step.clone()
        },
    }))
}

/// The one loop of every stream.
struct Follow {
    state: AppState,
    session_id: SessionId,
    source: Source,
    offsets: Offsets,
    waiting_shown: Option<Waiting>,
    last_piece_at: Option<tokio::time::Instant>,
    piece_interval: Duration,
    finished: bool,
    /// Shutting down: one more read sends what is left, then the stream ends.
    closing_seen: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(ReplyEvent, Self)> {
        loop {
            if self.finished {
                return None;
            }
            // Everything that arrived since the last piece goes out as one.
            if let Some(at) = self.last_piece_at {
                tokio::time::sleep_until(at + self.piece_interval).await;
            }
            let (next, progress) = self.source.read(&mut self.offsets);
            let offsets = self.offsets;
            match next {
                Some(Next::Piece(kind, text)) => {
                    self.last_piece_at = Some(tokio::time::Instant::now());
                    let event = ReplyEvent::Piece {
                        kind,
                        text,
                        offsets,
                    };
                    return Some((event, self));
                }
                Some(Next::Step(step)) => return Some((ReplyEvent::Step { step, offsets }, self)),
                None => {}
            }
            match progress {
                Progress::Running {
                    waiting: Some(waiting),
                } if self.waiting_shown.as_ref() != Some(&waiting) => {
                    self.waiting_shown = Some(waiting.clone());
                    return Some((ReplyEvent::Waiting(waiting), self));
                }
                Progress::Running { .. } => {}
                Progress::Finished(reply, title_may_change) => {
                    self.finished = true;
                    let title_pending =
                        title_may_change || self.state.generations.title_pending(reply.chat_id);
                    let versions = self
                        .state
                        .store
                        .message_versions(
                            &self.session_id,
                            reply.chat_id,
                            std::slice::from_ref(&*reply),
                        )
                        .await
                        .map_err(|e| tracing::warn!(error = %e, "reading a reply's versions"))
                        .ok()
                        .and_then(|mut v| v.remove(&reply.id));
                    let event = ReplyEvent::Done {
                        reply,
                        title_pending,
                        versions,
                    };
                    return Some((event, self));
                }
            }
            if self.closing_seen || !self.wait_for_change().await {
                return None;
            }
        }
    }

    /// Waits until the source may have more; `false` when the stream should end without more.
    async fn wait_for_change(&mut self) -> bool {
        let closing = self.state.closing.clone();
        match &mut self.source {
            Source::Live { reply, updates } => tokio::select! {
                biased;
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The reply is gone without a word (cannot happen: it always finishes).
                        tracing::warn!(message_id = %reply.message_id, "reply vanished");
                        return false;
                    }
                    true
                }
                // Replies are saved before `closing` fires: one more pass sends their end.
                _ = closing.cancelled() => {
                    self.closing_seen = true;
                    true
                }
            },
            Source::Stored {
                session_id,
                message,
                live,
            } => {
                let mut feed_closed = false;
                // Text is missing here: pieces were lost, or one came after a gap.
                let mut lacking = false;
                let read_row = match live {
                    None => {
                        tokio::select! {
                            _ = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                            _ = closing.cancelled() => return false,
                        }
                        true
                    }
                    Some(follow) if follow.following.take_missed() => {
                        lacking = true;
                        true
                    }
                    Some(follow) => tokio::select! {
                        piece = follow.following.pieces.recv() => match piece {
                            Some(piece) => {
                                let read_row = follow.take(message, piece);
                                lacking = follow.has_gap();
                                read_row
                            }
                            // The feed holds the sender while this lives: not expected. From
                            // here on the row alone is followed.
                            None => {
                                feed_closed = true;
                                true
                            }
                        },
                        _ = tokio::time::sleep(FOLLOW_INTERVAL) => true,
                        _ = closing.cancelled() => return false,
                    },
                };
                if feed_closed {
                    *live = None;
                }
                if let Some(follow) = live
                    && lacking
                    && message.status == Status::Streaming
                {
                    follow.ask_resend(&self.state, message).await;
                }
                if !read_row {
                    return true;
                }
                match self
                    .state
                    .store
                    .find_message(session_id, message.chat_id, message.id)
                    .await
                {
                    Ok(Some(latest)) => merge_row(message, latest),
                    Ok(None) => return false,
                    Err(e) => tracing::warn!(error = %e, "following a reply in the database"),
                }
                if let Some(live) = live {
                    live.row_read(message);
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_as_event_ids() {
        let plain = Offsets {
            text: 120,
            ..Offsets::default()
        };
        assert_eq!(plain.id(), "120");
        assert_eq!(Offsets::parse("120"), Some(plain));
        let both = Offsets {
            text: 120,
            reasoning: 48,
            steps: 0,
        };
        assert_eq!(both.id(), "120:48");
        assert_eq!(Offsets::parse(" 120:48 "), Some(both));
        let with_steps = Offsets {
            text: 120,
            reasoning: 0,
            steps: 3,
        };
        assert_eq!(with_steps.id(), "120:0:3");
        assert_eq!(Offsets::parse("120:0:3"), Some(with_steps));
        assert_eq!(Offsets::parse("x"), None);
        assert_eq!(Offsets::parse("1:y"), None);
        assert_eq!(Offsets::parse("1:2:3:4"), None);
    }

    #[test]
    fn resuming_mid_character_or_past_the_end_replays_all() {
        let requested = |text| {
            Some(Offsets {
                text,
                ..Offsets::default()
            })
        };
        assert_eq!(Offsets::resume("héllo", "", &[], requested(1)).text, 1);
        assert_eq!(
            Offsets::resume("héllo", "", &[], requested(2)),
            Offsets::default()
        );
        assert_eq!(
            Offsets::resume("hi", "", &[], requested(9)),
            Offsets::default()
        );
        let past_the_steps = Some(Offsets {
            steps: 1,
            ..Offsets::default()
        });
        assert_eq!(
            Offsets::resume("hi", "", &[], past_the_steps),
            Offsets::default()
        );
    }

    #[test]
    fn reasoning_goes_out_before_the_answer() {
        let mut offsets = Offsets::default();
        assert_eq!(
            next_piece(&mut offsets, "answer", "thought", &[]),
            Some(Next::Piece(PieceKind::Reasoning, "thought".into()))
        );
        assert_eq!(
            next_piece(&mut offsets, "answer", "thought", &[]),
            Some(Next::Piece(PieceKind::Text, "answer".into()))
        );
        assert_eq!(next_piece(&mut offsets, "answer", "thought", &[]), None);
        assert_eq!(offsets.id(), "6:7");
    }

    #[test]
    fn steps_go_out_where_they_were_made_and_a_running_one_holds_what_follows() {
        let step = |result: Option<&str>| ToolStep {
            id: "c1".into(),
            name: "fetch_url".into(),
            arguments: "{}".into(),
            at: 6,
            result: result.map(str::to_owned),
            is_error: false,
            duration_ms: result.map(|_| 5),
            approval: None,
        };
        let mut offsets = Offsets::default();
        let running = [step(None)];
        let text = "Let me";
        assert_eq!(
            next_piece(&mut offsets, text, "", &running),
            Some(Next::Piece(PieceKind::Text, "Let me".into()))
        );
        assert_eq!(
            next_piece(&mut offsets, text, "", &running),
            Some(Next::Step(step(None)))
        );
        assert_eq!(next_piece(&mut offsets, text, "", &running), None);
        // The result came, and text after it.
        let done = [step(Some("page text"))];
        let text = "Let me look. Found it.";
        assert_eq!(
            next_piece(&mut offsets, text, "", &done),
            Some(Next::Step(step(Some("page text"))))
        );
        assert_eq!(
            next_piece(&mut offsets, text, "", &done),
            Some(Next::Piece(PieceKind::Text, " look. Found it.".into()))
        );
        assert_eq!(offsets.id(), "22:0:2");
        // A reader from the start of a finished reply gets the call before its result.
        let mut fresh = Offsets::default();
        next_piece(&mut fresh, text, "", &done);
        assert_eq!(
            next_piece(&mut fresh, text, "", &done),
            Some(Next::Step(step(None)))
        );
    }
}
