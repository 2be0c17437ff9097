//! `footprint`: the idle app's memory and start-up time.
use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    Bench, REALISTIC_REPLY_TOKENS,
    fake_lm::{self, FakeModel, Text},
    ms,
};

impl Bench {
    pub(crate) async fn footprint(&self) -> anyhow::Result<Value> {
        let fake = fake_lm::start(FakeModel {
            tokens: REALISTIC_REPLY_TOKENS,
            rate: 0.0,
            text: Text::Markdown,
        })
        .await?;
        let app = self.app(format!("http://{fake}/v1"), 4, 1000).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = app.rss();
        eprintln!(
            "footprint: idle RSS {} KiB, start to ready {:.1} ms",
            rss / 1024,
            ms(app.started_to_ready)
        );
        Ok(
            json!({"scenario": "footprint", "rss_idle_bytes": rss, "start_to_ready_ms": ms(app.started_to_ready)}),
        )
    }
}
