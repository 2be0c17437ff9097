//! `relay`: the app's overhead on one reply's stream, against the model directly.
use std::time::Duration;

use anyhow::ensure;
use clap::Args;
use serde_json::{Value, json};

use crate::{
    Bench,
    client::{StreamRun, app_stream, count_tokens_by_model, direct_stream, run_concurrently},
    fake_lm::{self, FakeModel, Text},
    ms,
    nginx::Nginx,
    percentile,
};

#[derive(Args)]
pub(crate) struct RelayArgs {
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Model speed in tokens per second (0: as fast as it can).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// A real model server's base URL (e.g. http://127.0.0.1:8080/v1) instead of the fake.
    #[arg(long)]
    model_url: Option<String>,
    /// Start the users this many milliseconds apart instead of all at once: with a slow enough
    /// model, each send then meets the streams already in flight rather than a burst of sends.
    #[arg(long, default_value_t = 0.0)]
    stagger_ms: f64,
    /// Go through nginx running the repository's nginx.conf in front of the app.
    #[arg(long)]
    nginx: bool,
    /// Alternate direct and through-the-app rounds this many times (a real model's speed
    /// drifts; alternating spreads the drift over both sides).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

impl Bench {
    pub(crate) async fn relay(&self, args: RelayArgs) -> anyhow::Result<Value> {
        let RelayArgs {
            users,
            tokens,
            rate,
            model_url,
            stagger_ms,
            nginx,
            rounds,
        } = args;
        let stagger = Duration::from_secs_f64(stagger_ms.max(0.0) / 1000.0);
        // The fake's reply is known, so lost or duplicated text is checked exactly; a real model's
        // text is checked for being non-empty, and its tokens are counted by its own tokenizer.
        let (model_url, expected) = match model_url {
            Some(url) => (url, None),
            None => {
                let fake = fake_lm::start(FakeModel {
                    tokens,
                    rate,
                    text: Text::Numbered,
                })
                .await?;
                (
                    format!("http://{fake}/v1"),
                    Some(Text::Numbered.reply(tokens)),
                )
            }
        };
        let app = self.app(model_url.clone(), users, tokens).await?;
        let proxy = match nginx {
            true => Some(Nginx::start(&self.repo, &app.base).await?),
            false => None,
        };
        let front = proxy.as_ref().map_or(&app.base, |p| &p.base).clone();

        let (mut direct, mut via_app) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            direct.extend(
                run_concurrently(users, stagger, |start| {
                    direct_stream(model_url.clone(), tokens, start)
                })
                .await?,
            );
            via_app.extend(
                run_concurrently(users, stagger, |start| app_stream(front.clone(), start)).await?,
            );
        }
        if expected.is_none() {
            count_tokens_by_model(&model_url, &mut direct).await?;
            count_tokens_by_model(&model_url, &mut via_app).await?;
        }
        let lost_or_duplicated = match &expected {
            Some(text) => via_app.iter().filter(|r| &r.text != text).count(),
            None => via_app.iter().filter(|r| r.text.is_empty()).count(),
        };
        let summary = |runs: &[StreamRun]| {
            let ttft: Vec<f64> = runs.iter().map(|r| ms(r.first_token)).collect();
            let tps: Vec<f64> = runs.iter().map(StreamRun::tokens_per_second).collect();
            json!({"ttft_p50_ms": percentile(&ttft, 50.0), "ttft_p99_ms": percentile(&ttft, 99.0),
                   "tokens_per_s_p50": percentile(&tps, 50.0), "tokens_per_s_p99_low": percentile(&tps, 1.0)})
        };
        let (d, mut a) = (summary(&direct), summary(&via_app));
        let sent: Vec<f64> = via_app.iter().filter_map(|r| r.sent.map(ms)).collect();
        a["send_p50_ms"] = json!(percentile(&sent, 50.0));
        a["send_p99_ms"] = json!(percentile(&sent, 99.0));
        let overhead =
            a["ttft_p50_ms"].as_f64().unwrap_or(0.0) - d["ttft_p50_ms"].as_f64().unwrap_or(0.0);
        let ratio = a["tokens_per_s_p50"].as_f64().unwrap_or(0.0)
            / d["tokens_per_s_p50"].as_f64().unwrap_or(1.0);
        let path = if nginx {
            "nginx and the app"
        } else {
            "the app"
        };
        eprintln!(
            "relay: {users} users {stagger_ms} ms apart, {tokens} tokens at {rate} tok/s, through {path}"
        );
        eprintln!(
            "  direct  ttft p50 {:>8.2} ms  p99 {:>8.2} ms  tok/s p50 {:>10.0}",
            d["ttft_p50_ms"].as_f64().unwrap_or(0.0),
            d["ttft_p99_ms"].as_f64().unwrap_or(0.0),
            d["tokens_per_s_p50"].as_f64().unwrap_or(0.0)
        );
        eprintln!(
            "  app     ttft p50 {:>8.2} ms  p99 {:>8.2} ms  tok/s p50 {:>10.0}",
            a["ttft_p50_ms"].as_f64().unwrap_or(0.0),
            a["ttft_p99_ms"].as_f64().unwrap_or(0.0),
            a["tokens_per_s_p50"].as_f64().unwrap_or(0.0)
        );
        eprintln!(
            "  app     send p50 {:>8.2} ms  p99 {:>8.2} ms (the POST answered)",
            a["send_p50_ms"].as_f64().unwrap_or(0.0),
            a["send_p99_ms"].as_f64().unwrap_or(0.0),
        );
        eprintln!(
            "  overhead ttft p50 {overhead:.2} ms, tokens/s ratio {ratio:.3}, lost or duplicated: {lost_or_duplicated}"
        );
        ensure!(
            lost_or_duplicated == 0,
            "{lost_or_duplicated} replies arrived with lost or duplicated text"
        );
        Ok(
            json!({"scenario": "relay", "users": users, "rounds": rounds, "tokens": tokens, "rate": rate, "stagger_ms": stagger_ms, "nginx": nginx, "direct": d, "app": a,
                  "ttft_overhead_p50_ms": overhead, "tokens_per_s_ratio": ratio, "lost_or_duplicated": lost_or_duplicated}),
        )
    }
}
