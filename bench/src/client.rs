//! What the scenarios share: a browser-like client, streams read through the app or directly,
//! chats seeded and read back.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::ms;

/// The text the fake model sends, when the URL is the fake's (a real model's text is unknown).
/// Counts each run's tokens with the model server's own tokenizer (llama-server's `/tokenize`),
/// the same way for both paths: events through the app carry several tokens each.
pub(crate) async fn count_tokens_by_model(
    model_url: &str,
    runs: &mut [StreamRun],
) -> anyhow::Result<()> {
    let root = model_url.trim_end_matches('/').trim_end_matches("/v1");
    let client = reqwest::Client::new();
    for run in runs {
        let answer: Value = client
            .post(format!("{root}/tokenize"))
            .json(&json!({"content": run.text}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        run.tokens = answer["tokens"]
            .as_array()
            .context("/tokenize answered without tokens")?
            .len();
    }
    Ok(())
}

pub(crate) struct StreamRun {
    /// Through the app: when the send (the form POST) was answered.
    pub(crate) sent: Option<Duration>,
    pub(crate) first_token: Duration,
    /// When the last piece of text arrived (not the end of the stream: through the app, `done`
    /// also waits for the reply to be saved).
    pub(crate) last_token: Duration,
    /// Model tokens received: content chunks straight from the model; through the app, where
    /// several tokens share one event, the fake's `" t{i}"` pieces counted in the text (or the
    /// events, for a real model).
    pub(crate) tokens: usize,
    /// Through the app: the reply's text as stored; straight from the model: as it arrived.
    pub(crate) text: String,
    /// Through the app: the page's HTML once the stream ended, the stream's bytes, and its
    /// `html` events.
    pub(crate) page_html: String,
    pub(crate) stream_bytes: usize,
    pub(crate) page_updates: usize,
}

impl StreamRun {
    pub(crate) fn tokens_per_second(&self) -> f64 {
        let streaming = (self.last_token - self.first_token).as_secs_f64();
        if streaming <= 0.0 {
            f64::INFINITY
        } else {
            self.tokens.saturating_sub(1) as f64 / streaming
        }
    }
}

/// When a user starts: all together at a barrier (after each has prepared its client and chat),
/// then after its own delay.
pub(crate) struct Start {
    pub(crate) barrier: Arc<Barrier>,
    pub(crate) delay: Duration,
}

impl Start {
    async fn wait(self) {
        self.barrier.wait().await;
        tokio::time::sleep(self.delay).await;
    }
}

/// Runs `n` users, started as [`Start`] says, through the app or direct alike.
pub(crate) async fn run_concurrently<F, Fut>(
    n: usize,
    stagger: Duration,
    make: F,
) -> anyhow::Result<Vec<StreamRun>>
where
    F: Fn(Start) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<StreamRun>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            tokio::spawn(make(Start {
                barrier: barrier.clone(),
                delay: stagger * i as u32,
            }))
        })
        .collect();
    let mut runs = Vec::with_capacity(n);
    for handle in handles {
        runs.push(handle.await??);
    }
    Ok(runs)
}

pub(crate) fn browser() -> reqwest::Client {
    browser_with_cookies().0
}

/// A browser-like client and its cookie jar (to hand the session's cookie to another client).
pub(crate) fn browser_with_cookies() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .build()
        .unwrap_or_default();
    (client, jar)
}

/// A streamed completion straight from the model server, timed like a browser would see it.
pub(crate) async fn direct_stream(
    model_url: String,
    max_tokens: usize,
    start: Start,
) -> anyhow::Result<StreamRun> {
    let client = reqwest::Client::builder().tcp_nodelay(true).build()?;
    start.wait().await;
    let started = Instant::now();
    let response = client
        .post(format!("{model_url}/chat/completions"))
        .json(&json!({"model": "bench", "messages": [{"role": "user", "content": "Hello"}], "stream": true, "max_tokens": max_tokens,
                      "stream_options": {"include_usage": true}}))
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "model answered {}",
        response.status()
    );
    let mut events = response.bytes_stream().eventsource();
    let (mut first, mut last, mut text, mut pieces) = (None, Duration::ZERO, String::new(), 0);
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| anyhow::anyhow!("{e}"))?;
        if event.data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&event.data)?;
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            first.get_or_insert_with(|| started.elapsed());
            last = started.elapsed();
            text.push_str(piece);
            pieces += 1;
        }
    }
    Ok(StreamRun {
        sent: None,
        first_token: first.context("no token")?,
        last_token: last,
        tokens: pieces,
        text,
        page_html: String::new(),
        stream_bytes: 0,
        page_updates: 0,
    })
}

/// Through the app, as a browser without htmx would: create a chat, send a message, read its
/// stream. The clock starts when the message is sent.
pub(crate) async fn app_stream(base: String, start: Start) -> anyhow::Result<StreamRun> {
    let client = browser();
    let chat = create_chat(&client, &base).await?;
    start.wait().await;
    send_and_read(&client, &base, &chat, "Hello").await
}

/// Sends `content` to the chat and reads the reply's stream to its end, timed from the send.
pub(crate) async fn send_and_read(
    client: &reqwest::Client,
    base: &str,
    chat: &str,
    content: &str,
) -> anyhow::Result<StreamRun> {
    let started = Instant::now();
    let reply = send_message(client, base, chat, content).await?;
    let sent = started.elapsed();
    let response = client
        .get(format!("{base}/chats/{chat}/messages/{reply}/stream"))
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "stream answered {}",
        response.status()
    );
    // What the page shows, built from the stream as static/app.js builds it.
    let mut page = (String::new(), String::new());
    let (mut first, mut last, mut pieces, mut stream_bytes) = (None, Duration::ZERO, 0, 0);
    let (mut last_id, mut page_updates) = (String::new(), 0);
    let mut events = response
        .bytes_stream()
        .inspect(|chunk| {
            if let Ok(chunk) = chunk {
                stream_bytes += chunk.len();
            }
        })
        .eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| anyhow::anyhow!("{e}"))?;
        if std::env::var_os("BENCH_TRACE").is_some() {
            eprintln!(
                "{:>8.2} ms {} {}",
                ms(started.elapsed()),
                event.event,
                event.data.len()
            );
        }
        match event.event.as_str() {
            "html" => {
                page_updates += 1;
                let update = app::render::HtmlUpdate::decode(&event.data)
                    .context("an html event the page could not read")?;
                page = update.apply((&page.0, &page.1));
                // The update that finishes the page comes with `done`, at the last piece's id:
                // it is not text arriving.
                if (!page.0.is_empty() || !page.1.is_empty()) && event.id != last_id {
                    first.get_or_insert_with(|| started.elapsed());
                    last = started.elapsed();
                    pieces += 1;
                }
                last_id.clone_from(&event.id);
            }
            "done" => break,
            "error" => bail!("reply failed: {}", event.data),
            _ => {}
        }
    }
    drop(events);
    let text = reply_text(client, base, &reply).await?;
    let fake_pieces = text.matches(" t").count();
    Ok(StreamRun {
        sent: Some(sent),
        first_token: first.context("no token")?,
        last_token: last,
        tokens: if fake_pieces > 0 { fake_pieces } else { pieces },
        text,
        page_html: page.0 + &page.1,
        stream_bytes,
        page_updates,
    })
}

/// A finished reply's text as stored (the API's stream of a finished reply is its `done`).
pub(crate) async fn reply_text(
    client: &reqwest::Client,
    base: &str,
    reply: &str,
) -> anyhow::Result<String> {
    let response = client
        .get(format!("{base}/api/v1/messages/{reply}/stream"))
        .send()
        .await?;
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| anyhow::anyhow!("{e}"))?;
        if event.event == "done" {
            let done: Value = serde_json::from_str(&event.data)?;
            return Ok(done["content"].as_str().unwrap_or_default().to_owned());
        }
    }
    bail!("the finished reply's stream ended without done")
}

/// POSTs a form the way a browser without JavaScript does and returns the 303's `Location`.
pub(crate) async fn post_for_location(
    client: &reqwest::Client,
    url: String,
    form: &[(&str, &str)],
) -> anyhow::Result<String> {
    let response = client.post(&url).form(form).send().await?;
    ensure!(
        response.status() == 303,
        "POST {url} answered {}",
        response.status()
    );
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("no location")?;
    Ok(location.to_owned())
}

pub(crate) async fn create_chat(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let location = post_for_location(client, format!("{base}/chats"), &[("content", "")]).await?;
    Ok(location.trim_start_matches("/chats/").to_owned())
}

/// Sends a message (no JavaScript: POST then 303) and returns the reply's id.
pub(crate) async fn send_message(
    client: &reqwest::Client,
    base: &str,
    chat: &str,
    content: &str,
) -> anyhow::Result<String> {
    let location = post_for_location(
        client,
        format!("{base}/chats/{chat}/messages"),
        &[("content", content)],
    )
    .await?;
    Ok(location
        .split("#m-")
        .nth(1)
        .context("no reply id")?
        .to_owned())
}

pub(crate) async fn wait_for_reply(
    client: &reqwest::Client,
    base: &str,
    chat: &str,
    reply: &str,
) -> anyhow::Result<()> {
    let response = client
        .get(format!("{base}/chats/{chat}/messages/{reply}/stream"))
        .send()
        .await?;
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        if event.map_err(|e| anyhow::anyhow!("{e}"))?.event == "done" {
            return Ok(());
        }
    }
    bail!("the stream ended without done")
}

/// A chat with about `messages` messages (the greeting, then message/reply pairs).
/// A chat of `messages` messages (the greeting, then messages and their replies).
pub(crate) struct SeededChat {
    pub(crate) client: reqwest::Client,
    pub(crate) chat: String,
    /// The session's `Cookie` header, for clients other than `client`.
    pub(crate) cookie: String,
}

pub(crate) async fn seed_chat(base: &str, messages: usize) -> anyhow::Result<SeededChat> {
    let (client, jar) = browser_with_cookies();
    let chat = create_chat(&client, base).await?;
    for i in 0..messages.saturating_sub(1) / 2 {
        let reply = send_message(&client, base, &chat, &format!("message {i}")).await?;
        wait_for_reply(&client, base, &chat, &reply).await?;
    }
    use reqwest::cookie::CookieStore;
    let cookie = jar
        .cookies(&base.parse()?)
        .context("the app set no session cookie")?
        .to_str()?
        .to_owned();
    Ok(SeededChat {
        client,
        chat,
        cookie,
    })
}

/// Opens a chat whose reply streams slowly, and returns the open stream once its first token came.
/// `client` sends in its `chat` and opens the reply's stream, which it then holds.
pub(crate) async fn open_held_stream(
    client: reqwest::Client,
    base: &str,
    chat: &str,
) -> anyhow::Result<HeldStream> {
    let reply = send_message(&client, base, chat, "hold").await?;
    let response = client
        .get(format!("{base}/chats/{chat}/messages/{reply}/stream"))
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "stream answered {}",
        response.status()
    );
    Ok(HeldStream {
        _response: response,
        _client: client,
    })
}

/// An open stream; dropping it closes the connection.
pub(crate) struct HeldStream {
    pub(crate) _response: reqwest::Response,
    pub(crate) _client: reqwest::Client,
}
