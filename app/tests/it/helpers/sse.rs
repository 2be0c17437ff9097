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

/// The text of the API stream's `delta` events, in order.
pub fn token_text(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| unescape_token(&e.data))
        .collect()
}

/// One `delta` event's text.
pub fn unescape_token(data: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(data).expect("a delta is JSON");
    value["text"].as_str().expect("a delta has text").to_owned()
}

/// What a page shows after the HTML stream's `html` events (finished blocks and the open
/// block), applied as `static/app.js` applies them.
pub fn page_html(events: &[Event]) -> String {
    let mut page = (String::new(), String::new());
    for event in events.iter().filter(|e| e.event == "html") {
        page = apply_update(&page, &event.data);
    }
    page.0 + &page.1
}

/// One `html` or `reasoning` event applied to a page's (finished blocks, open block).
pub fn apply_update(page: &(String, String), data: &str) -> (String, String) {
    let (header, body) = data.split_once('\n').expect("a header line");
    let fields: Vec<&str> = header.split(' ').collect();
    let number = |i: usize| fields[i].parse::<usize>().expect("a number");
    let (blocks, open) = match fields[0] {
        "r" => (String::new(), String::new()),
        "a" => page.clone(),
        other => panic!("unknown mode {other}"),
    };
    let body: Vec<u16> = body.encode_utf16().collect();
    let new_blocks = String::from_utf16(&body[..number(1)]).unwrap();
    let open = match new_blocks.is_empty() {
        true => open,
        false => String::new(),
    };
    let had: Vec<u16> = open.encode_utf16().collect();
    let end = had.len().saturating_sub(number(3)).max(number(2));
    let open = String::from_utf16(&had[..number(2)]).unwrap()
        + &String::from_utf16(&body[number(1)..]).unwrap()
        + &String::from_utf16(&had[end..]).unwrap();
    (blocks + &new_blocks, open)
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
