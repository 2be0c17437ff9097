//! Prometheus metrics on their own listener (`METRICS_ADDR`; unset: none are recorded). Every
//! metric the app records is named here, once, with what it means; the rest of the code calls
//! these functions. Recorded through the `metrics` facade, rendered by its Prometheus exporter.
//! nginx never forwards to this listener: it is for the scraper on the internal network.
use std::{
    net::SocketAddr,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::Context;
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Request and first-token latencies: from a fast page (a millisecond) to a model that is slow
/// to start (a minute).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The process's recorder: installed once (a process has one global recorder), on the first
/// call; later calls get the same handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for name in [
        "http_request_duration_seconds",
        "chat_time_to_first_token_seconds",
    ] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), LATENCY_BUCKETS)?;
    }
    let handle = builder
        .install_recorder()
        .context("installing the metrics recorder")?;
    describe();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route (the matched pattern) and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to the response's headers (a stream's lifetime is not counted), by route"
    );
    describe_counter!(
        "chat_replies_total",
        "Replies that ended, by status (complete, stopped, error, interrupted)"
    );
    describe_gauge!(
        "chat_replies_in_progress",
        "Replies being generated now (holding a generation slot)"
    );
    describe_gauge!(
        "chat_reply_queue_depth",
        "Replies waiting for a generation slot"
    );
    describe_histogram!(
        "chat_time_to_first_token_seconds",
        metrics::Unit::Seconds,
        "From a reply's start (including its wait for a slot) to its first token"
    );
    describe_counter!(
        "chat_tokens_total",
        "Tokens of finished replies as the engine counted them, by kind (prompt, completion)"
    );
    describe_gauge!("chat_streams_open", "Reply event streams open now");
    describe_gauge!(
        "db_pool_connections",
        "Database pool connections, by state (idle, active), read at each scrape"
    );
}

/// The metrics listener, bound at start-up so that a taken port stops the app at once.
pub async fn listen(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// Serves `GET /metrics` on `listener` until `until` is cancelled.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    store: Store,
    until: CancellationToken,
) -> anyhow::Result<()> {
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    // Histograms are kept as samples until upkeep folds them in: bounded memory between scrapes.
    let upkeep = {
        let (handle, until) = (handle.clone(), until.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => handle.run_upkeep(),
                    _ = until.cancelled() => break,
                }
            }
        })
    };
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state((handle, store));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { until.cancelled().await })
        .await?;
    upkeep.await?;
    Ok(())
}

async fn scrape(State((handle, store)): State<(PrometheusHandle, Store)>) -> impl IntoResponse {
    let (open, idle) = store.pool_connections();
    gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
    gauge!("db_pool_connections", "state" => "active")
        .set((open as usize).saturating_sub(idle) as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// An answered request. `route` is the matched pattern (`/chats/{id}`), never the path, so
/// that ids do not make a series each.
pub fn request(method: &str, route: &str, status: u16, took: Duration) {
    counter!(
        "http_requests_total",
        "method" => method.to_owned(),
        "route" => route.to_owned(),
        "status" => status.to_string()
    )
    .increment(1);
    histogram!("http_request_duration_seconds", "route" => route.to_owned())
        .record(took.as_secs_f64());
}

/// A reply's way through the generation task: queued, then generating, then ended. Dropping it
/// takes the reply out of whichever gauge it is in, however the task ends.
pub struct ReplyMetrics {
    started: Instant,
    generating: bool,
    first_token_seen: bool,
}

impl ReplyMetrics {
    /// A reply that starts waiting for a slot.
    pub fn queued() -> Self {
        gauge!("chat_reply_queue_depth").increment(1.0);
        Self {
            started: Instant::now(),
            generating: false,
            first_token_seen: false,
        }
    }

    /// It got a slot.
    pub fn generating(&mut self) {
        if !self.generating {
            self.generating = true;
            gauge!("chat_reply_queue_depth").decrement(1.0);
            gauge!("chat_replies_in_progress").increment(1.0);
        }
    }

    /// Text arrived; the first time, its time since the start is the time to first token.
    pub fn token(&mut self) {
        if !self.first_token_seen {
            self.first_token_seen = true;
            histogram!("chat_time_to_first_token_seconds")
                .record(self.started.elapsed().as_secs_f64());
        }
    }

    /// It ended with `status` (`complete`, `stopped`, ...) and the engine's token counts.
    pub fn ended(&self, status: &str, prompt_tokens: Option<i32>, completion_tokens: Option<i32>) {
        counter!("chat_replies_total", "status" => status.to_owned()).increment(1);
        for (kind, tokens) in [("prompt", prompt_tokens), ("completion", completion_tokens)] {
            if let Some(tokens) = tokens.and_then(|n| u64::try_from(n).ok()) {
                counter!("chat_tokens_total", "kind" => kind).increment(tokens);
            }
        }
    }
}

impl Drop for ReplyMetrics {
    fn drop(&mut self) {
        match self.generating {
            true => gauge!("chat_replies_in_progress").decrement(1.0),
            false => gauge!("chat_reply_queue_depth").decrement(1.0),
        }
    }
}

/// An open reply stream, counted in `chat_streams_open` until dropped.
pub struct OpenStream(());

impl OpenStream {
    pub fn open() -> Self {
        gauge!("chat_streams_open").increment(1.0);
        Self(())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        gauge!("chat_streams_open").decrement(1.0);
    }
}
