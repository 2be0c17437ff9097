//! `pages` and `growth`: a chat page served under load, and how its cost grows with the chat.
use std::time::Instant;

use anyhow::ensure;
use serde_json::{Value, json};

use crate::{
    Bench, REALISTIC_REPLY_TOKENS,
    client::{SeededChat, seed_chat, send_message, wait_for_reply},
    fake_lm::{self, FakeModel, Text},
    ms, percentile, wrk,
};

impl Bench {
    /// The chat page under `wrk`, beside `/healthz` in the same run: throughput at
    /// `connections`, and latency at one connection.
    pub(crate) async fn pages(
        &self,
        messages: usize,
        connections: usize,
        seconds: u64,
    ) -> anyhow::Result<Value> {
        let fake = fake_lm::start(FakeModel {
            tokens: REALISTIC_REPLY_TOKENS,
            rate: 0.0,
            text: Text::Markdown,
        })
        .await?;
        let app = self.app(format!("http://{fake}/v1"), 4, 1000).await?;
        let SeededChat {
            client,
            chat,
            cookie,
        } = seed_chat(&app.base, messages).await?;
        let url = format!("{}/chats/{chat}", app.base);
        let page = client.get(&url).send().await?.text().await?;
        ensure!(
            page.matches("class=\"message ").count()
                >= (1 + messages.saturating_sub(1) / 2 * 2).min(100),
            "the page does not show the chat's messages"
        );
        let healthz = format!("{}/healthz", app.base);
        let threads = connections.min(2);
        let wrk = |url: String, connections: usize, cookie: Option<String>| {
            tokio::task::spawn_blocking(move || {
                wrk::run(
                    &url,
                    threads.min(connections),
                    connections,
                    seconds,
                    cookie.as_deref(),
                )
            })
        };
        let health = wrk(healthz, connections, None).await??;
        let loaded = wrk(url.clone(), connections, Some(cookie.clone())).await??;
        let single = wrk(url, 1, Some(cookie)).await??;
        let ratio = loaded.requests_per_s / health.requests_per_s;
        let database = if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        };
        eprintln!(
            "pages: {messages}-message chat ({} KB), {database}, wrk -t{threads} -c{connections}: \
             /healthz {:.0} req/s, page {:.0} req/s ({ratio:.2}x /healthz), p50 {:.3} ms, p99 {:.3} ms; \
             one connection: page p50 {:.3} ms, p99 {:.3} ms",
            page.len() / 1000,
            health.requests_per_s,
            loaded.requests_per_s,
            loaded.p50_ms,
            loaded.p99_ms,
            single.p50_ms,
            single.p99_ms,
        );
        Ok(
            json!({"scenario": "pages", "database": database, "messages": messages,
                  "page_bytes": page.len(), "connections": connections,
                  "healthz_requests_per_s": health.requests_per_s,
                  "requests_per_s": loaded.requests_per_s, "ratio_to_healthz": ratio,
                  "p50_ms": loaded.p50_ms, "p99_ms": loaded.p99_ms,
                  "one_connection_p50_ms": single.p50_ms, "one_connection_p99_ms": single.p99_ms}),
        )
    }

    pub(crate) async fn growth(&self, sizes: &[usize]) -> anyhow::Result<Value> {
        let fake = fake_lm::start(FakeModel {
            tokens: REALISTIC_REPLY_TOKENS,
            rate: 0.0,
            text: Text::Markdown,
        })
        .await?;
        let app = self.app(format!("http://{fake}/v1"), 4, 1000).await?;
        let mut rows = Vec::new();
        for &size in sizes {
            let SeededChat { client, chat, .. } = seed_chat(&app.base, size).await?;
            let mut sends = Vec::new();
            let mut pages = Vec::new();
            for i in 0..20 {
                let started = Instant::now();
                let reply = send_message(&client, &app.base, &chat, &format!("probe {i}")).await?;
                sends.push(ms(started.elapsed()));
                wait_for_reply(&client, &app.base, &chat, &reply).await?;
                let started = Instant::now();
                let page = client
                    .get(format!("{}/chats/{chat}", app.base))
                    .send()
                    .await?;
                page.bytes().await?;
                pages.push(ms(started.elapsed()));
            }
            let (send, page) = (percentile(&sends, 50.0), percentile(&pages, 50.0));
            eprintln!("growth: {size:>6} messages: send p50 {send:.2} ms, page p50 {page:.2} ms");
            rows.push(json!({"messages": size, "send_p50_ms": send, "page_p50_ms": page}));
        }
        Ok(json!({"scenario": "growth", "rows": rows}))
    }
}
