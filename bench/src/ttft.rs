//! `ttft`: the time to a reply's first token, through the app and directly.
use anyhow::ensure;
use serde_json::{Value, json};

use crate::{
    Bench,
    fake_lm::{self, FakeModel, Text},
    percentile,
};

impl Bench {
    pub(crate) async fn ttft(&self, rounds: usize) -> anyhow::Result<Value> {
        // 10 ms before each piece, the first too, on both paths: the reply is still being
        // written when the stream attaches, as with a real model.
        let fake = fake_lm::start(FakeModel {
            tokens: 20,
            rate: 100.0,
            text: Text::Numbered,
        })
        .await?;
        let model = format!("http://{fake}/v1");
        let app = self.app(model.clone(), 4, 20).await?;
        let script = self.repo.join("bench/browser_client.py");
        let mut rows = Vec::new();
        for new_connection in [false, true] {
            let (app_base, model, script) = (app.base.clone(), model.clone(), script.clone());
            let output = tokio::task::spawn_blocking(move || {
                let mut command = std::process::Command::new("python3");
                command.arg(&script).args([
                    "--app",
                    &app_base,
                    "--model",
                    &model,
                    "--rounds",
                    &rounds.to_string(),
                ]);
                if new_connection {
                    command.arg("--new-connection");
                }
                command.output()
            })
            .await??;
            ensure!(
                output.status.success(),
                "browser_client.py failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let report: Value = serde_json::from_slice(&output.stdout)?;
            let column = |name: &str| -> Vec<f64> {
                report["rounds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r[name].as_f64())
                    .collect()
            };
            let (direct, send, via_app) = (
                column("direct_ttft_ms"),
                column("send_ms"),
                column("app_ttft_ms"),
            );
            let overheads: Vec<f64> = via_app.iter().zip(&direct).map(|(a, d)| a - d).collect();
            let connection = if new_connection { "new" } else { "reused" };
            let row = json!({"stream_connection": connection,
                "direct_ttft_p50_ms": percentile(&direct, 50.0),
                "send_p50_ms": percentile(&send, 50.0),
                "app_ttft_p50_ms": percentile(&via_app, 50.0),
                "ttft_overhead_p50_ms": percentile(&overheads, 50.0)});
            eprintln!(
                "ttft (independent client, stream on a {connection} connection): direct {:.2} ms, \
                 send {:.2} ms, first token through the app {:.2} ms: overhead p50 {:.2} ms",
                row["direct_ttft_p50_ms"].as_f64().unwrap_or_default(),
                row["send_p50_ms"].as_f64().unwrap_or_default(),
                row["app_ttft_p50_ms"].as_f64().unwrap_or_default(),
                row["ttft_overhead_p50_ms"].as_f64().unwrap_or_default(),
            );
            rows.push(row);
        }
        Ok(json!({"scenario": "ttft", "rounds": rounds, "rows": rows}))
    }
}
