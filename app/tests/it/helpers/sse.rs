//! Reading the app's event streams as a browser's EventSource would (eventsource-stream).
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;

pub struct EventReader {
    inner: std::pin::Pin<Box<dyn futures::Stream<Item = Result<Event, String>> + Send>>,
}

impl EventReader {
    /// Opens a stream: its status, headers, and (when 200) its events.
    pub async fn open(
        client: &reqwest::Client,
        url: &str,
        last_event_id: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Option<Self>) {
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        if status != 200 {
            return (status, headers, None);
        }
        let inner = response
            .bytes_stream()
            .eventsource()
            .map(|e| e.map_err(|e| e.to_string()));
        (
            status,
            headers,
            Some(EventReader {
                inner: Box::pin(inner),
            }),
        )
    }

    /// The next event, or `None` when the stream ended (or nothing came within 10 s).
    pub async fn next(&mut self) -> Option<Event> {
        match tokio::time::timeout(Duration::from_secs(10), self.inner.next()).await {
            Ok(Some(Ok(event))) => Some(event),
            Ok(Some(Err(e))) => panic!("SSE error: {e}"),
            Ok(None) | Err(_) => None,
        }
    }

    /// Every event until the stream ends.
    pub async fn all(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }
}

/// The text of `token` events as the browser shows it: spans removed, entities decoded.
pub fn token_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| unescape_token(&e.data))
        .collect()
}

pub fn unescape_token(data: &str) -> String {
    let inner = data
        .strip_prefix("<span>")
        .and_then(|d| d.strip_suffix("</span>"))
        .expect("token wrapped in one span");
    assert!(
        !inner.contains('<') && !inner.contains('>'),
        "token data must be escaped text: {data}"
    );
    unescape_html(inner)
}

/// Decodes the entities the app's escaping produces.
pub fn unescape_html(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#13;", "\r")
        .replace("&amp;", "&")
}
