//! A reply's events as server-sent events (ARCHITECTURE.md "The stream contract"): the use-case
//! stream (`crate::stream`) encoded as HTML fragments for the
//! pages (`html` and `reasoning`: rendered markdown, block by block; `tool_call` and
//! `tool_result`: the reply's steps, the whole list each time; `status`, `error`, `done`)
//! or JSON for the API (`delta`, `reasoning`, `tool_call` and `tool_result` (the step),
//! `status`, `error`, `done` with the message as `GET .../messages` returns it).
use std::{convert::Infallible, time::Duration};

use axum::{
    http::{HeaderMap, HeaderValue},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::{
    documents::MessageJson,
    steps::ToolStepView,
    views::{MessageView, VersionsView, render_replies_ahead},
};
use crate::{
    AppState,
    domain::ToolStep,
    error::AppResult,
    render::{LiveHtml, escape_html},
    session::Session,
    store::{Status, Versions},
    stream::{Offsets, PieceKind, ReplyEvent, Waiting},
};

/// How a stream's events are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Fragments for htmx's SSE extension.
    Html,
    /// JSON for the API.
    Json,
}

/// Least time between two pieces of a page's stream: each carries HTML (the open block's
/// change and its header), so a page gets fewer, larger updates than an API client's deltas.
const PAGE_PIECE_INTERVAL: Duration = Duration::from_millis(60);
/// Least time between two pieces of the API's stream (raw deltas).
const API_PIECE_INTERVAL: Duration = Duration::from_millis(16);

/// The response for `GET .../stream`: the reply's events after `Last-Event-ID`.
pub async fn respond(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    encoding: Encoding,
    chat_id: Option<Uuid>,
    message_id: Uuid,
) -> AppResult<Response> {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let response = match encoding {
        Encoding::Json => {
            let events = crate::stream::open(
                state,
                session,
                chat_id,
                message_id,
                last_event_id,
                API_PIECE_INTERVAL,
            )
            .await?;
            let encoder = state.clone();
            let events = events.flat_map(move |event| {
                futures::stream::iter(encode(&encoder, Encoding::Json, event).into_iter().map(Ok))
            });
            sse_response(state, events)
        }
        Encoding::Html => {
            // A page's text is HTML rendered from the start: the stream reads the reply from
            // its start and sends the page its render anew once it reaches where the page was.
            let events = crate::stream::open(
                state,
                session,
                chat_id,
                message_id,
                None,
                PAGE_PIECE_INTERVAL,
            )
            .await?;
            let page = PageStream {
                shown_from: last_event_id.and_then(Offsets::parse),
                reply_path: chat_id.map(|chat| format!("/chats/{chat}/messages/{message_id}")),
                ..PageStream::default()
            };
            let events = futures::stream::unfold(
                (events, page, state.clone()),
                |(mut events, page, state)| async move {
                    let event = events.next().await?;
                    let (page, encoded) = page.encode(&state, event).await;
                    Some((
                        futures::stream::iter(encoded.into_iter().map(Ok)),
                        (events, page, state),
                    ))
                },
            )
            .flatten();
            sse_response(state, events)
        }
    };
    Ok(response)
}

fn sse_response(
    state: &AppState,
    events: impl futures::Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.sse_keepalive))
        .into_response();
    let headers = response.headers_mut();
    // nginx passes events on as they come (no buffering); nothing caches them.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// A page's stream: the reply's answer and reasoning as the page shows them (rendered
/// markdown), and what the page had when it reconnected.
#[derive(Default)]
struct PageStream {
    answer: String,
    reasoning: String,
    answer_html: LiveHtml,
    reasoning_html: LiveHtml,
    /// The reply's steps so far, as the page shows them.
    steps: Vec<ToolStep>,
    /// `/chats/{id}/messages/{message_id}`: where calls that wait for approval are answered.
    reply_path: Option<String>,
    /// The page's `Last-Event-ID`: nothing is sent until the text is at least there, so the
    /// page's text never goes back (a replica reading the row may be behind the page).
    shown_from: Option<Offsets>,
}

impl PageStream {
    async fn encode(mut self, state: &AppState, event: ReplyEvent) -> (Self, Vec<Event>) {
        match event {
            ReplyEvent::Piece {
                kind,
                text,
                offsets,
            } => {
                match kind {
                    PieceKind::Text => self.answer.push_str(&text),
                    PieceKind::Reasoning => self.reasoning.push_str(&text),
                }
                if let Some(shown) = self.shown_from {
                    if offsets.text < shown.text || offsets.reasoning < shown.reasoning {
                        return (self, Vec::new());
                    }
                    self.shown_from = None;
                }
                let both = !self.answer_html.started() || !self.reasoning_html.started();
                self.render(state, offsets, kind, both, false).await
            }
            ReplyEvent::Step { step, offsets } => {
                let name = step_event_name(&step);
                match self.steps.iter_mut().find(|s| s.id == step.id) {
                    Some(known) => *known = step,
                    None => self.steps.push(step),
                }
                #[derive(Serialize)]
                struct Steps {
                    steps: Vec<ToolStepView>,
                }
                let list = Steps {
                    steps: ToolStepView::all(&self.steps, self.reply_path.as_deref()),
                };
                let events = match super::render(state, "fragments/tool_steps.html", list) {
                    Ok(html) => vec![Event::default().id(offsets.id()).event(name).data(html.0)],
                    Err(e) => {
                        tracing::error!("rendering a reply's steps: {e}");
                        Vec::new()
                    }
                };
                (self, events)
            }
            ReplyEvent::Done {
                reply,
                title_pending,
                versions,
            } => {
                self.answer.clone_from(&reply.content);
                self.reasoning = reply.reasoning.clone().unwrap_or_default();
                let (page, mut events) = self
                    .render(state, Offsets::end_of(&reply), PieceKind::Text, true, true)
                    .await;
                render_replies_ahead(&state.templates, [reply.as_ref()]).await;
                events.extend(encode(
                    state,
                    Encoding::Html,
                    ReplyEvent::Done {
                        reply,
                        title_pending,
                        versions,
                    },
                ));
                (page, events)
            }
            other => {
                let events = encode(state, Encoding::Html, other);
                (self, events)
            }
        }
    }

    /// The page's next updates: of the text `kind` names, or of both; the whole text when
    /// `finished`. Long texts are rendered off the async workers.
    async fn render(
        mut self,
        state: &AppState,
        offsets: Offsets,
        kind: PieceKind,
        both: bool,
        finished: bool,
    ) -> (Self, Vec<Event>) {
        let long =
            self.answer.len() + self.reasoning.len() >= crate::render::bounds::OFF_WORKER_BYTES;
        let work = move || {
            let mut updates = Vec::with_capacity(2);
            for (which, name) in [
                (PieceKind::Reasoning, "reasoning"),
                (PieceKind::Text, "html"),
            ] {
                if !both && which != kind {
                    continue;
                }
                let (text, live) = match which {
                    PieceKind::Text => (&self.answer, &mut self.answer_html),
                    PieceKind::Reasoning => (&self.reasoning, &mut self.reasoning_html),
                };
                let update = match finished {
                    true => live.finish(text),
                    false => live.update(text),
                };
                if let Some(update) = update {
                    updates.push(
                        Event::default()
                            .id(offsets.id())
                            .event(name)
                            .data(update.encode()),
                    );
                }
            }
            (self, updates)
        };
        match long {
            false => work(),
            true => match state.templates.off_workers(work).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!("rendering a reply's stream: {e}");
                    (PageStream::default(), Vec::new())
                }
            },
        }
    }
}

/// One use-case event as server-sent events (a failed reply's end is two: `error`, `done`).
fn encode(state: &AppState, encoding: Encoding, event: ReplyEvent) -> Vec<Event> {
    match event {
        ReplyEvent::Piece {
            kind,
            text,
            offsets,
        } => {
            // A page's pieces are rendered by `PageStream`; these are the API's.
            let name = match kind {
                PieceKind::Reasoning => "reasoning",
                PieceKind::Text => "delta",
            };
            vec![
                Event::default()
                    .id(offsets.id())
                    .event(name)
                    .data(text_data(encoding, &text)),
            ]
        }
        ReplyEvent::Step { step, offsets } => {
            let data = match step.result {
                None => serde_json::json!({
                    "id": step.id,
                    "name": step.name,
                    "arguments": step.arguments,
                    "approval": step.approval,
                }),
                Some(_) => serde_json::json!({
                    "id": step.id,
                    "name": step.name,
                    "result": step.result,
                    "is_error": step.is_error,
                    "duration_ms": step.duration_ms,
                    "approval": step.approval,
                }),
            };
            // A page's steps are rendered by `PageStream`; these are the API's.
            vec![
                Event::default()
                    .id(offsets.id())
                    .event(step_event_name(&step))
                    .data(data.to_string()),
            ]
        }
        ReplyEvent::Waiting(waiting) => {
            let text = match waiting {
                Waiting::OtherReplies => {
                    "Waiting for the model: other replies are being written first…".to_owned()
                }
                Waiting::ModelLoading(model) => format!("Loading the model {model}…"),
                Waiting::Nothing => String::new(),
            };
            // Even "no status" has data: browsers never dispatch an event without any.
            vec![
                Event::default()
                    .event("status")
                    .data(text_data(encoding, &text)),
            ]
        }
        ReplyEvent::Done {
            reply,
            title_pending,
            versions,
        } => {
            let end = Offsets::end_of(&reply);
            let mut events = Vec::with_capacity(2);
            if let Some(error) = reply
                .error
                .as_deref()
                .filter(|_| reply.status == Status::Error)
            {
                let data = match encoding {
                    Encoding::Html => {
                        format!("<p class=\"message-error\">{}</p>", escape_html(error))
                    }
                    Encoding::Json => serde_json::json!({ "error": error }).to_string(),
                };
                events.push(Event::default().event("error").data(data));
            }
            let data = match encoding {
                Encoding::Html => finished_reply_html(state, &reply, title_pending, versions),
                Encoding::Json => json(&MessageJson {
                    versions: versions.map(|v| v.ids),
                    ..MessageJson::from(*reply)
                }),
            };
            events.push(Event::default().event("done").id(end.id()).data(data));
            events
        }
    }
}

/// A step's event: its call, or its result.
fn step_event_name(step: &ToolStep) -> &'static str {
    match step.result {
        None => "tool_call",
        Some(_) => "tool_result",
    }
}

fn text_data(encoding: Encoding, text: &str) -> String {
    match encoding {
        Encoding::Html => format!("<span>{}</span>", escape_html(text)),
        Encoding::Json => serde_json::json!({ "text": text }).to_string(),
    }
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| {
        tracing::error!("writing an event: {e}");
        "{}".into()
    })
}

/// What follows a finished reply's text on the page (its notes, error, stats and controls): the
/// chat's latest message, offering Regenerate. The text itself is the page's already.
fn finished_reply_html(
    state: &AppState,
    reply: &crate::store::message::Model,
    title_pending: bool,
    versions: Option<Versions>,
) -> String {
    let mut view = MessageView::new(&state.templates, reply);
    view.versions = versions.as_ref().map(VersionsView::new);
    view.can_regenerate = true;
    view.can_continue = crate::store::can_continue(reply);
    view.title_pending = title_pending;
    view.refresh_context = true;
    #[derive(Serialize)]
    struct FinalReply {
        m: MessageView,
    }
    match super::render(state, "fragments/reply_end.html", FinalReply { m: view }) {
        Ok(html) => html.0,
        Err(e) => {
            tracing::error!("rendering a finished reply: {e}");
            escape_html(&reply.content)
        }
    }
}
