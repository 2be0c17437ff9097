//! Messages of a chat: sending one (which starts a reply), the reply's event stream, Stop, and
//! Regenerate/Retry.
use std::{collections::VecDeque, convert::Infallible, pin::Pin, sync::Arc, time::Duration};

use axum::{
    Form,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    AppState,
    error::{AppError, AppResult},
    generation::{Phase, Reply, ReplyState},
    limits::Action,
    render::escape_html,
    session::{Session, SessionId},
    store::{self, NewReply, ReplyEnd, Status, message},
};

use super::{
    ClientAddress, Htmx,
    chats::{FinishedReply, MessageView},
    parse_id, redirect, render, validate_message,
};

#[derive(Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    content: String,
}

#[derive(Serialize)]
struct MessagesFragment {
    messages: Vec<MessageView>,
    display_name: Option<String>,
}

pub const BUSY: &str = "A reply is still being written in this chat. Wait for it to finish or stop it, then send again.";

/// Stores the user's message and an empty assistant reply in one transaction, then starts the
/// reply. htmx gets both bubbles (the reply connected to its stream); browsers a 303.
pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
    Form(form): Form<MessageForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    validate_message(&form.content, state.config.max_message_bytes)?;
    state
        .rate_limits
        .check(Action::Send, &session.id, address)?;
    // "A reply is in progress" is decided by the database, in the same transaction as the insert.
    // The name for the user's bubble is read meanwhile, not after: one round trip less per send.
    let (outcome, display_name) = tokio::try_join!(
        state
            .store
            .add_exchange(&session.id, chat_id, &form.content),
        display_name_for(&state, &session, htmx),
    )?;
    respond_with_reply(&state, htmx, chat_id, outcome, display_name).await
}

/// The visitor's display name, which only the htmx fragment shows.
async fn display_name_for(
    state: &AppState,
    session: &Session,
    htmx: bool,
) -> Result<Option<String>, sea_orm::DbErr> {
    match htmx {
        true => state.store.display_name(&session.id).await,
        false => Ok(None),
    }
}

/// A new reply to the latest user message (Regenerate, or Retry after a failure).
pub async fn regenerate(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    state
        .rate_limits
        .check(Action::Send, &session.id, address)?;
    let (outcome, display_name) = tokio::try_join!(
        state.store.add_reply(&session.id, chat_id),
        display_name_for(&state, &session, htmx),
    )?;
    respond_with_reply(&state, htmx, chat_id, outcome, display_name).await
}

#[derive(Deserialize)]
pub struct EditForm {
    #[serde(default)]
    content: String,
}

/// Edit and resend: the chat's latest user message is replaced by the edited text and a new
/// reply starts. The earlier version and its replies are kept, folded under the new one. htmx
/// gets the whole history back (it changed above the new messages); browsers a 303.
pub async fn edit(
    State(state): State<AppState>,
    session: Session,
    ClientAddress(address): ClientAddress,
    Htmx(htmx): Htmx,
    Path((id, message_id)): Path<(String, String)>,
    Form(form): Form<EditForm>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    validate_message(&form.content, state.config.max_message_bytes)?;
    state
        .rate_limits
        .check(Action::Send, &session.id, address)?;
    let outcome = state
        .store
        .edit_exchange(&session.id, chat_id, message_id, &form.content)
        .await?;
    let (_, reply) = started(outcome)?;
    start_reply(&state, &reply).await?;
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}#m-{}", reply.id)));
    }
    let (history, display_name) = tokio::try_join!(
        super::chats::history(&state, &session, chat_id, None),
        async { Ok(state.store.display_name(&session.id).await?) },
    )?;
    Ok(render(
        &state,
        "fragments/messages.html",
        MessagesFragment {
            messages: history.messages,
            display_name,
        },
    )?
    .into_response())
}

/// The messages a new reply was stored with, or why there is none.
pub fn started(outcome: NewReply) -> AppResult<(Option<Box<message::Model>>, Box<message::Model>)> {
    match outcome {
        NewReply::Started { user, reply } => Ok((user, reply)),
        NewReply::NoSuchChat => Err(AppError::NotFound("chat")),
        NewReply::NoSuchMessage => Err(AppError::NotFound("message")),
        NewReply::Busy => Err(AppError::Conflict(BUSY.into())),
        NewReply::NothingToAnswer => Err(AppError::Invalid(
            "There is no message to answer yet: send one first.".into(),
        )),
        NewReply::NotLatestUserMessage => Err(AppError::Conflict(
            "Only your latest message can be edited.".into(),
        )),
    }
}

async fn respond_with_reply(
    state: &AppState,
    htmx: bool,
    chat_id: Uuid,
    outcome: NewReply,
    display_name: Option<String>,
) -> AppResult<Response> {
    let (user, reply) = started(outcome)?;
    start_reply(state, &reply).await?;
    if !htmx {
        return Ok(redirect(false, &format!("/chats/{chat_id}#m-{}", reply.id)));
    }
    let messages = user
        .iter()
        .chain([&reply])
        .map(|m| {
            let mut view = MessageView::from_model(&state.templates, m);
            view.can_edit = m.role == store::Role::User;
            view
        })
        .collect();
    Ok(render(
        state,
        "fragments/messages.html",
        MessagesFragment {
            messages,
            display_name,
        },
    )?
    .into_response())
}

/// Hands a stored reply to the generation task; when the app is shutting down, the reply is
/// saved as interrupted (the user's message stays) and the answer is 503.
pub async fn start_reply(state: &AppState, reply: &message::Model) -> AppResult<()> {
    // Stored a moment ago with the visitor's session id: it parses.
    let session_id = SessionId::parse(&reply.session_id).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("a stored reply's session id is invalid"))
    })?;
    if state.generations.start(&session_id, reply).is_err() {
        let end = ReplyEnd::new(
            Status::Interrupted,
            Some("The app was restarting. You can retry.".into()),
        );
        state
            .store
            .finish_reply(&session_id, reply.id, "", "", &end)
            .await?;
        return Err(AppError::Unavailable(
            "The app is restarting; your message is saved. Please retry in a moment.".into(),
        ));
    }
    Ok(())
}

/// Stops a reply: the upstream connection is dropped and the text so far is kept as `stopped`.
pub async fn stop(
    State(state): State<AppState>,
    session: Session,
    Htmx(htmx): Htmx,
    Path((id, message_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    let message = state
        .store
        .find_message(&session.id, chat_id, message_id)
        .await?
        .ok_or(AppError::NotFound("message"))?;
    stop_reply(&state, &session, &message).await?;
    if htmx {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(redirect(false, &format!("/chats/{chat_id}#m-{message_id}")))
}

/// Stops a reply being written; a finished one is left as it is. A reply another replica is
/// writing gets a stop flag that its replica acts on within a second; this waits (briefly) for
/// that, and stops a reply whose replica died (its lease ran out) itself.
pub async fn stop_reply(
    state: &AppState,
    session: &Session,
    message: &message::Model,
) -> AppResult<()> {
    if state.generations.stop(&session.id, message.id).await || message.status != Status::Streaming
    {
        return Ok(());
    }
    if !state.store.request_stop(&session.id, message.id).await? {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if state
            .store
            .stop_abandoned_reply(&session.id, message.id)
            .await?
        {
            return Ok(());
        }
        let now = state
            .store
            .find_message(&session.id, message.chat_id, message.id)
            .await?;
        if now.is_none_or(|m| m.status != Status::Streaming)
            || tokio::time::Instant::now() >= deadline
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

/// The reply's events (DESIGN.md "The stream contract"): what was written so far, then live
/// text, then `done` (after `error` when it failed). Attaches only; never starts a generation.
/// `Last-Event-ID` resumes after that byte offset.
pub async fn stream(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path((id, message_id)): Path<(String, String)>,
) -> AppResult<Response> {
    let chat_id = parse_id(&id, "chat")?;
    let message_id = parse_id(&message_id, "message")?;
    open_stream(
        &state,
        &session,
        &headers,
        Encoding::Html,
        Some(chat_id),
        message_id,
    )
    .await
}

/// How a stream's events are written: HTML fragments for htmx, JSON for the API.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Html,
    Json,
}

/// A reply's event stream: the text so far (after `Last-Event-ID`), then live until it ends;
/// a finished reply's end at once. `chat_id`, when given, must be the reply's chat.
pub async fn open_stream(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    encoding: Encoding,
    chat_id: Option<Uuid>,
    message_id: Uuid,
) -> AppResult<Response> {
    let slot = state.stream_slots.acquire(&session.id)?;
    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(Offsets::parse);
    let in_chat = |id: Uuid| chat_id.is_none_or(|chat| chat == id);

    let events: EventStream = match state.generations.attach(&session.id, message_id) {
        Some(reply) if in_chat(reply.chat_id) => live_events(state, encoding, reply, resume_from),
        _ => {
            let message = state
                .store
                .find_session_message(&session.id, message_id)
                .await?
                .filter(|m| in_chat(m.chat_id) && m.role == store::Role::Assistant)
                .ok_or(AppError::NotFound("message"))?;
            if message.status == Status::Streaming {
                stored_events_following(state, encoding, session.id.clone(), message, resume_from)
            } else {
                Box::pin(futures::stream::iter(final_events(
                    state,
                    encoding,
                    &finished_reply(&message),
                    false,
                )))
            }
        }
    };
    // The slot is given back when the stream is dropped: ended, or the browser went away.
    let events: EventStream = Box::pin(events.map(move |event| {
        let _held = &slot;
        event
    }));
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.sse_keepalive))
        .into_response();
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// Where a stream is: bytes of the answer and of the reasoning sent so far. As an event id:
/// the answer's offset alone while there is no reasoning (`"120"`), else both (`"120:48"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offsets {
    text: usize,
    reasoning: usize,
}

impl Offsets {
    fn parse(id: &str) -> Option<Self> {
        let id = id.trim();
        let (text, reasoning) = id.split_once(':').unwrap_or((id, "0"));
        Some(Self {
            text: text.parse().ok()?,
            reasoning: reasoning.parse().ok()?,
        })
    }

    fn id(self) -> String {
        match self.reasoning {
            0 => self.text.to_string(),
            r => format!("{}:{r}", self.text),
        }
    }

    /// A valid resume point for these texts: within them and on character boundaries;
    /// anything else replays all.
    fn resume(text: &str, reasoning: &str, requested: Option<Self>) -> Self {
        match requested {
            Some(o) if text.is_char_boundary(o.text) && reasoning.is_char_boundary(o.reasoning) => {
                o
            }
            _ => Self::default(),
        }
    }
}

/// The next event for text that arrived past `offsets`: reasoning first (it comes first), then
/// the answer. HTML: `reasoning`/`token` events, the piece as escaped text in a `<span>` (so
/// leading whitespace survives the swap). JSON: `reasoning`/`delta` events, `{"text": piece}`.
fn next_piece(
    encoding: Encoding,
    offsets: &mut Offsets,
    text: &str,
    reasoning: &str,
) -> Option<Event> {
    let (event, piece) = match reasoning.get(offsets.reasoning..).filter(|p| !p.is_empty()) {
        Some(piece) => {
            offsets.reasoning += piece.len();
            ("reasoning", piece)
        }
        None => {
            let piece = text.get(offsets.text..).filter(|p| !p.is_empty())?;
            offsets.text += piece.len();
            let name = match encoding {
                Encoding::Html => "token",
                Encoding::Json => "delta",
            };
            (name, piece)
        }
    };
    let data = match encoding {
        Encoding::Html => format!("<span>{}</span>", escape_html(piece)),
        Encoding::Json => serde_json::json!({ "text": piece }).to_string(),
    };
    Some(Event::default().id(offsets.id()).event(event).data(data))
}

/// A `status` event: the text in a `<span>`, so that even "no status" (clearing the waiting
/// line) has data; an event without data is never dispatched by browsers.
fn status_event(encoding: Encoding, text: &str) -> Event {
    let data = match encoding {
        Encoding::Html => format!("<span>{}</span>", escape_html(text)),
        Encoding::Json => serde_json::json!({ "text": text }).to_string(),
    };
    Event::default().event("status").data(data)
}

fn finished_reply(message: &message::Model) -> FinishedReply<'_> {
    FinishedReply {
        chat_id: message.chat_id,
        message_id: message.id,
        text: &message.content,
        reasoning: message.reasoning.as_deref().unwrap_or_default(),
        status: message.status,
        error: message.error.as_deref(),
    }
}

/// The end of a stream: `error` first when the reply failed, then `done` with the final reply
/// rendered as sanitised HTML (the browser closes on `done`).
fn final_events(
    state: &AppState,
    encoding: Encoding,
    reply: &FinishedReply,
    title_started: bool,
) -> Vec<Result<Event, Infallible>> {
    let offsets = Offsets {
        text: reply.text.len(),
        reasoning: reply.reasoning.len(),
    };
    if encoding == Encoding::Json {
        return json_final_events(reply, offsets);
    }
    let mut view = MessageView::final_reply(&state.templates, reply);
    view.title_pending = title_started || state.generations.title_pending(reply.chat_id);
    let html = match render(state, "fragments/reply_body.html", FinalReply { m: view }) {
        Ok(html) => html.0,
        Err(e) => {
            tracing::error!("rendering a finished reply: {e}");
            escape_html(reply.text)
        }
    };
    let mut events = Vec::with_capacity(2);
    if let Some(error) = reply.error.filter(|_| reply.status == Status::Error) {
        let fragment = format!("<p class=\"message-error\">{}</p>", escape_html(error));
        events.push(Ok(Event::default().event("error").data(fragment)));
    }
    events.push(Ok(Event::default()
        .event("done")
        .id(offsets.id())
        .data(html)));
    events
}

#[derive(Serialize)]
struct FinalReply {
    m: MessageView,
}

/// The API's end of a stream: `error` (`{"error": …}`) when the reply failed, then `done` with
/// the reply as stored.
fn json_final_events(reply: &FinishedReply, offsets: Offsets) -> Vec<Result<Event, Infallible>> {
    let mut events = Vec::with_capacity(2);
    if let Some(error) = reply.error.filter(|_| reply.status == Status::Error) {
        let data = serde_json::json!({ "error": error }).to_string();
        events.push(Ok(Event::default().event("error").data(data)));
    }
    let message = serde_json::json!({
        "id": reply.message_id, "chat_id": reply.chat_id, "role": "assistant",
        "status": reply.status, "content": reply.text,
        "reasoning": (!reply.reasoning.is_empty()).then_some(reply.reasoning),
        "error": reply.error,
    });
    events.push(Ok(Event::default()
        .event("done")
        .id(offsets.id())
        .data(message.to_string())));
    events
}

/// Least time between two `token` events of one stream. The first token goes out at once; text
/// arriving within this window after an event joins the next one. A fast model (the test model
/// writes ~1,500 tokens a second) would otherwise cost the browser one DOM swap per token.
const MIN_TOKEN_INTERVAL: Duration = Duration::from_millis(16);

struct LiveStream {
    state: AppState,
    encoding: Encoding,
    last_token_at: Option<tokio::time::Instant>,
    reply: Arc<Reply>,
    updates: watch::Receiver<ReplyState>,
    offsets: Offsets,
    queued_shown: Option<bool>,
    pending: VecDeque<Result<Event, Infallible>>,
    finished: bool,
    closing: CancellationToken,
    closing_seen: bool,
}

fn live_events(
    state: &AppState,
    encoding: Encoding,
    reply: Arc<Reply>,
    resume_from: Option<Offsets>,
) -> EventStream {
    let updates = reply.subscribe();
    let offsets = {
        let now = updates.borrow();
        Offsets::resume(&now.text, &now.reasoning, resume_from)
    };
    let live = LiveStream {
        state: state.clone(),
        encoding,
        last_token_at: None,
        reply,
        updates,
        offsets,
        queued_shown: None,
        pending: VecDeque::new(),
        finished: false,
        closing: state.closing.clone(),
        closing_seen: false,
    };
    Box::pin(futures::stream::unfold(live, |mut live| async move {
        loop {
            if let Some(event) = live.pending.pop_front() {
                return Some((event, live));
            }
            if live.finished {
                return None;
            }
            // Everything that arrived since the last event goes out as one: a fast model costs
            // one event per write (at most one per MIN_TOKEN_INTERVAL), not one per token, and the
            // first token is never held back.
            if let Some(at) = live.last_token_at {
                let ready_at = at + MIN_TOKEN_INTERVAL;
                tokio::time::sleep_until(ready_at).await;
            }
            let (piece, phase) = {
                let now = live.updates.borrow_and_update();
                let piece = next_piece(live.encoding, &mut live.offsets, &now.text, &now.reasoning);
                (piece, now.phase.clone())
            };
            if let Some(event) = piece {
                live.last_token_at = Some(tokio::time::Instant::now());
                return Some((Ok(event), live));
            }
            let queued = phase == Phase::Queued;
            if live.queued_shown != Some(queued) {
                live.queued_shown = Some(queued);
                let text = if queued {
                    "Waiting for the model: other replies are being written first…"
                } else {
                    ""
                };
                return Some((Ok(status_event(live.encoding, text)), live));
            }
            if let Phase::Finished {
                status,
                error,
                title_started,
            } = phase
            {
                let (text, reasoning) = {
                    let now = live.updates.borrow();
                    (now.text.clone(), now.reasoning.clone())
                };
                let reply = FinishedReply {
                    chat_id: live.reply.chat_id,
                    message_id: live.reply.message_id,
                    text: &text,
                    reasoning: &reasoning,
                    status,
                    error: error.as_deref(),
                };
                live.pending.extend(final_events(
                    &live.state,
                    live.encoding,
                    &reply,
                    title_started,
                ));
                live.finished = true;
                continue;
            }
            if live.closing_seen {
                // Shutting down, and the state was read once more since: nothing left to send.
                return None;
            }
            tokio::select! {
                biased;
                changed = live.updates.changed() => {
                    if changed.is_err() {
                        // The reply is gone without a word (cannot happen: it always finishes).
                        tracing::warn!(message_id = %live.reply.message_id, "reply vanished");
                        return None;
                    }
                }
                // Replies are saved before `closing` fires: one more pass sends their end.
                _ = live.closing.cancelled() => live.closing_seen = true,
            }
        }
    }))
}

/// A reply marked `streaming` that no task here is generating (another process is, or was):
/// follow its checkpoints in the database until it ends.
fn stored_events_following(
    state: &AppState,
    encoding: Encoding,
    session_id: SessionId,
    message: message::Model,
    resume_from: Option<Offsets>,
) -> EventStream {
    let offsets = Offsets::resume(
        &message.content,
        message.reasoning.as_deref().unwrap_or_default(),
        resume_from,
    );
    struct Following {
        state: AppState,
        session_id: SessionId,
        message: message::Model,
        offsets: Offsets,
        pending: VecDeque<Result<Event, Infallible>>,
        finished: bool,
    }
    let start = Following {
        state: state.clone(),
        session_id,
        message,
        offsets,
        pending: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures::stream::unfold(start, move |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((event, f));
            }
            if f.finished {
                return None;
            }
            let reasoning = f.message.reasoning.as_deref().unwrap_or_default();
            if let Some(event) = next_piece(encoding, &mut f.offsets, &f.message.content, reasoning)
            {
                return Some((Ok(event), f));
            }
            if f.message.status != Status::Streaming {
                let events = final_events(&f.state, encoding, &finished_reply(&f.message), false);
                f.pending.extend(events);
                f.finished = true;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = f.state.closing.cancelled() => return None,
            }
            match f
                .state
                .store
                .find_message(&f.session_id, f.message.chat_id, f.message.id)
                .await
            {
                Ok(Some(latest)) => f.message = latest,
                Ok(None) => return None,
                Err(e) => tracing::warn!(error = %e, "following a reply in the database"),
            }
        }
    }))
}
