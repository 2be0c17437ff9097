//! `streams`: many held streams at once, and what each costs in memory.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    Bench,
    client::{browser, create_chat, open_held_stream},
    fake_lm::{self, FakeModel, Text},
};

/// `streams` opens its streams in this many steps, reading RSS after each.
const STREAM_STEPS: usize = 5;

impl Bench {
    /// Memory and CPU of `count` replies streaming at once. Measured in two steps, so that what
    /// an open stream costs is not mixed with what its browser's session and chat cost (a row
    /// each, a rate limiter's entry): first every browser gets its session and chat, then each
    /// sends and opens its reply's stream.
    pub(crate) async fn streams(
        &self,
        count: usize,
        seconds: u64,
        rate: f64,
    ) -> anyhow::Result<Value> {
        // A model slow enough that every stream stays open for the whole measurement.
        let fake = fake_lm::start(FakeModel {
            tokens: 1_000_000,
            rate,
            text: Text::Numbered,
        })
        .await?;
        let app = self.app(format!("http://{fake}/v1"), count, 1000).await?;
        let idle = app.rss();
        let mut browsers = Vec::with_capacity(count);
        for _ in 0..count {
            let client = browser();
            let chat = create_chat(&client, &app.base).await?;
            browsers.push((client, chat));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let with_chats = app.rss();
        // The streams open in five steps, RSS read after each: the growth from step to step is
        // the marginal cost of a stream, apart from what the first ones pay once.
        let step = count.div_ceil(STREAM_STEPS).max(1);
        let mut open = Vec::with_capacity(count);
        let mut steps = Vec::with_capacity(STREAM_STEPS);
        for (client, chat) in browsers {
            open.push(open_held_stream(client, &app.base, &chat).await?);
            if open.len() % step == 0 || open.len() == count {
                tokio::time::sleep(Duration::from_millis(500)).await;
                steps.push(json!({"open": open.len(), "rss_bytes": app.rss()}));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let loaded = app.rss();
        let marginal: Vec<String> = steps
            .windows(2)
            .map(|w| {
                let (a, b) = (&w[0], &w[1]);
                let streams = b["open"].as_u64().unwrap_or(0) - a["open"].as_u64().unwrap_or(0);
                let bytes = b["rss_bytes"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(a["rss_bytes"].as_u64().unwrap_or(0));
                format!("{} B", bytes / streams.max(1))
            })
            .collect();
        let cpu_before = app.cpu_time();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cpu = (app.cpu_time() - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
        // The same streams, `seconds` later: what their replies' growth costs over time.
        let held = app.rss();
        let n = count.max(1) as u64;
        let per_chat = with_chats.saturating_sub(idle) / n;
        let per_stream = loaded.saturating_sub(with_chats) / n;
        drop(open);
        eprintln!(
            "streams: {count} open; RSS idle {} KiB, with {count} sessions and chats {} KiB \
             ({per_chat} B each), streaming {} KiB: {per_stream} B per stream (from step to \
             step of {step}: {}); {} KiB after {seconds} s more; CPU {:.1}% of one core",
            idle / 1024,
            with_chats / 1024,
            loaded / 1024,
            marginal.join(", "),
            held / 1024,
            cpu * 100.0
        );
        Ok(
            json!({"scenario": "streams", "count": count, "rate": rate, "rss_idle_bytes": idle,
                  "rss_with_chats_bytes": with_chats, "rss_loaded_bytes": loaded,
                  "rss_per_chat_bytes": per_chat, "rss_per_stream_bytes": per_stream,
                  "rss_steps": steps, "rss_after_hold_bytes": held, "cpu_cores": cpu}),
        )
    }
}
