//! A reply's events as server-sent events (ARCHITECTURE.md "The stream contract"): the use-case
//! stream (`crate::stream`) encoded as HTML fragments for the
//! pages (`token`, `reasoning`, `status`, `error`, `done`) or JSON for the API (`delta`,
//! `reasoning`, `status`, `error`, `done` with the message as `GET .../messages` returns it).
use std::convert::Infallible;

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
    api::MessageJson,
    views::{MessageView, render_replies_ahead},
};
use crate::{
    AppState,
    error::AppResult,
    render::escape_html,
    session::Session,
    store::Status,
    stream::{Offsets, PieceKind, ReplyEvent},
};

/// How a stream's events are written.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Fragments for htmx's SSE extension.
    Html,
    /// JSON for the API.
    Json,
}

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
    let events = crate::stream::open(state, session, chat_id, message_id, last_event_id).await?;
    let encoder = state.clone();
    let events = events
        .then(move |event| {
            let state = encoder.clone();
            async move {
                if let (ReplyEvent::Done { reply, .. }, Encoding::Html) = (&event, encoding) {
                    render_replies_ahead(&state.templates, [reply.as_ref()]).await;
                }
                encode(&state, encoding, event)
            }
        })
        .flat_map(|encoded| {
            futures::stream::iter(encoded.into_iter().map(Ok::<Event, Infallible>))
        });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(state.config.sse_keepalive))
        .into_response();
    let headers = response.headers_mut();
    // nginx passes events on as they come (no buffering); nothing caches them.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert("cache-control", HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// One use-case event as server-sent events (a failed reply's end is two: `error`, `done`).
fn encode(state: &AppState, encoding: Encoding, event: ReplyEvent) -> Vec<Event> {
    match event {
        ReplyEvent::Piece {
            kind,
            text,
            offsets,
        } => {
            let name = match (kind, encoding) {
                (PieceKind::Reasoning, _) => "reasoning",
                (PieceKind::Text, Encoding::Html) => "token",
                (PieceKind::Text, Encoding::Json) => "delta",
            };
            // HTML: escaped text in a `<span>`, so that leading whitespace survives the swap.
            vec![
                Event::default()
                    .id(offsets.id())
                    .event(name)
                    .data(text_data(encoding, &text)),
            ]
        }
        ReplyEvent::Queued(queued) => {
            let text = match queued {
                true => "Waiting for the model: other replies are being written first…",
                false => "",
            };
            // Even "no status" has data: browsers never dispatch an event without any.
            vec![
                Event::default()
                    .event("status")
                    .data(text_data(encoding, text)),
            ]
        }
        ReplyEvent::Done {
            reply,
            title_pending,
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
                Encoding::Html => finished_reply_html(state, &reply, title_pending),
                Encoding::Json => json(&MessageJson::from(*reply)),
            };
            events.push(Event::default().event("done").id(end.id()).data(data));
            events
        }
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

/// The finished reply as the page shows it: the chat's latest message, offering Regenerate.
fn finished_reply_html(
    state: &AppState,
    reply: &crate::store::message::Model,
    title_pending: bool,
) -> String {
    let mut view = MessageView::new(&state.templates, reply);
    view.can_regenerate = true;
    view.title_pending = title_pending;
    view.refresh_context = true;
    #[derive(Serialize)]
    struct FinalReply {
        m: MessageView,
    }
    match super::render(state, "fragments/reply_body.html", FinalReply { m: view }) {
        Ok(html) => html.0,
        Err(e) => {
            tracing::error!("rendering a finished reply: {e}");
            escape_html(&reply.content)
        }
    }
}
