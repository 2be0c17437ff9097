//! Half-open connections: clients that connect and never finish their request headers (a
//! slowloris, or just broken clients), straight to the app as `cargo run` serves it. How many
//! the app still holds once `HEADER_READ_TIMEOUT` (5 s by default) has passed, and its memory
//! with them and after.
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::{Bench, fake_lm, ms};

/// The app's default `HEADER_READ_TIMEOUT`.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Bench {
    pub async fn half_open(&self, count: usize, wait: Duration) -> anyhow::Result<Value> {
        let fake = fake_lm::start(fake_lm::FakeModel {
            tokens: 10,
            rate: 0.0,
            text: fake_lm::Text::Numbered,
        })
        .await?;
        let app = self.app(format!("http://{fake}/v1"), 4, 100).await?;
        let address = app.base.trim_start_matches("http://").to_owned();
        let rss_before = app.rss();
        let started = Instant::now();
        let mut streams = Vec::with_capacity(count);
        for _ in 0..count {
            let mut stream = TcpStream::connect(&address).await?;
            // Half a request: it never ends.
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .await?;
            streams.push(stream);
        }
        let opened_in = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_held = app.rss();
        tokio::time::sleep(wait.saturating_sub(started.elapsed())).await;
        let still_open = streams.iter().filter(|s| is_open(s)).count();
        let rss_after = app.rss();
        eprintln!(
            "half-open: {count} connections opened in {:.0} ms; RSS +{} KiB while held; after {:.0} s, {still_open} still held by the app, RSS +{} KiB",
            ms(opened_in),
            rss_held.saturating_sub(rss_before) / 1024,
            started.elapsed().as_secs_f64(),
            rss_after.saturating_sub(rss_before) / 1024,
        );
        Ok(json!({
            "scenario": "half_open",
            "connections": count,
            "header_read_timeout_s": HEADER_READ_TIMEOUT.as_secs(),
            "waited_s": started.elapsed().as_secs_f64(),
            "still_open": still_open,
            "rss_before_bytes": rss_before,
            "rss_held_bytes": rss_held,
            "rss_after_bytes": rss_after,
        }))
    }
}

/// Whether the server still holds the connection: a read would wait (it did not close it).
fn is_open(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; 512];
    loop {
        match stream.try_read(&mut buffer) {
            // Closed by the server.
            Ok(0) => return false,
            // A 408 before closing: read on to see the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}
