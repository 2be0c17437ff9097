//! Benchmarks of the chat app, driven the way browsers use it (HTTP + SSE with cookies), against
//! a configurable fake model server (or a real llama-server with `--model-url`). Prints a table
//! and, with `--json FILE`, the same figures as JSON. See BENCHMARKS.md.
mod app_overhead;
mod app_process;
mod engine;
mod fake_lm;
mod half_open;
mod load;
mod models;
mod nginx;
mod page_stream;
mod render;
mod wrk;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use app_process::{AppOptions, AppProcess};
use clap::{Args, Parser, Subcommand};
use eventsource_stream::Eventsource;
use fake_lm::{FakeModel, Text};
use futures::StreamExt;
use nginx::Nginx;
use serde_json::{Value, json};
use tokio::sync::Barrier;

/// Replies in the page and growth scenarios: about 1.5 KB of markdown, as a typical answer.
const REALISTIC_REPLY_TOKENS: usize = 250;
/// `streams` opens its streams in this many steps, reading RSS after each.
const STREAM_STEPS: usize = 5;

#[derive(Parser)]
#[command(about = "Benchmarks of the chat app (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// The app binary (default: the `app` built beside this bench binary).
    #[arg(long, global = true)]
    app_bin: Option<PathBuf>,
    /// A PostgreSQL server URL to create the benchmark's database on (default: SQLite).
    #[arg(long, global = true)]
    postgres: Option<String>,
    /// Append the results as JSON lines to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Scenario {
    /// N concurrent users send a message and read its stream to the end, through the app (or
    /// nginx in front of it) and straight to the model server, in the same run.
    Relay(RelayArgs),
    /// S concurrent slow streams held open: app memory per stream and CPU.
    Streams {
        #[arg(long, default_value_t = 1000)]
        count: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Tokens a second in each stream: how fast the replies held open grow.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
    },
    /// The chat page of a chat with `messages` messages under `wrk`, beside `/healthz`.
    Pages {
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// wrk's connections for the throughput runs (the latency run uses one).
        #[arg(long, default_value_t = 10)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Send latency (model excluded) and page render time as a chat grows.
    Growth {
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
        sizes: Vec<usize>,
    },
    /// The send and the first token as an independent client sees them (Python's standard
    /// library, `bench/browser_client.py`): the htmx POST, then the stream it names, beside the
    /// same request straight to the model. Reusing the connection, and on a new one as an
    /// EventSource may.
    Ttft {
        #[arg(long, default_value_t = 30)]
        rounds: usize,
    },
    /// Idle memory and time from start to ready.
    Footprint,
    /// N clients that never finish their request headers: how many the app still holds after
    /// `--wait-seconds` (its header timeout is 5 s), and its memory.
    HalfOpen {
        #[arg(long, default_value_t = 3000)]
        count: usize,
        #[arg(long, default_value_t = 8)]
        wait_seconds: u64,
    },
    /// The embedded engine against llama-server on the same model, threads, context and
    /// prompts: first token, tokens/s with one and four streams, a long chat's prompt time, RSS.
    Engine(engine::EngineArgs),
    /// The app around the embedded engine against the engine alone, in this process: first
    /// token and tokens/s (target: within 2%).
    AppOverhead(app_overhead::AppOverheadArgs),
    /// The embedded engine's model library, in this process: RSS with one and two models
    /// loaded, and the first token of a reply that switches models beside one that does not.
    Models(models::ModelsArgs),
    /// The markdown renderer on hostile input: each kind at each size, in this process.
    Render(render::RenderArgs),
    /// A long markdown reply streamed to a page: bytes sent against the final HTML.
    PageStream(page_stream::PageStreamArgs),
    /// Many users chatting at once against PostgreSQL; then every message and reply must be
    /// stored exactly once with exactly its text, and no request may have failed with a 5xx.
    Load {
        #[arg(long, default_value_t = 500)]
        users: usize,
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Pause between a reply's end and the user's next message.
        #[arg(long, default_value_t = 500)]
        think_ms: u64,
        #[arg(long, default_value_t = 40)]
        tokens: usize,
    },
}

#[derive(Args)]
struct RelayArgs {
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

fn main() -> anyhow::Result<std::process::ExitCode> {
    // The embedded engine runs in this process: it starts this binary again to try each of
    // llama.cpp's CPU builds, as the app does.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(app::embedded::cpu::SUBCOMMAND) {
        return Ok(app::embedded::cpu::child_main(&args[1..]));
    }
    run()?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[tokio::main]
async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()?;
    let binary = match cli.app_bin.clone() {
        Some(path) => path,
        None => app_process::default_binary()?,
    };
    let bench = Bench {
        repo,
        binary,
        postgres: cli.postgres.clone(),
    };
    let result = match cli.scenario {
        Scenario::Relay(args) => bench.relay(args).await?,
        Scenario::Streams {
            count,
            seconds,
            rate,
        } => bench.streams(count, seconds, rate).await?,
        Scenario::Pages {
            messages,
            connections,
            seconds,
        } => bench.pages(messages, connections, seconds).await?,
        Scenario::Growth { sizes } => bench.growth(&sizes).await?,
        Scenario::Load {
            users,
            seconds,
            think_ms,
            tokens,
        } => {
            bench
                .load(users, seconds, Duration::from_millis(think_ms), tokens)
                .await?
        }
        Scenario::Ttft { rounds } => bench.ttft(rounds).await?,
        Scenario::Footprint => bench.footprint().await?,
        Scenario::HalfOpen {
            count,
            wait_seconds,
        } => {
            bench
                .half_open(count, Duration::from_secs(wait_seconds))
                .await?
        }
        Scenario::Engine(args) => engine::run(&bench.repo, args).await?,
        Scenario::AppOverhead(args) => app_overhead::run(args).await?,
        Scenario::Models(args) => models::run(args).await?,
        Scenario::Render(args) => render::run(args)?,
        Scenario::PageStream(args) => page_stream::run(&bench, args).await?,
    };
    println!("{}", serde_json::to_string_pretty(&result)?);
    if let Some(path) = cli.json {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        writeln!(file, "{result}")?;
    }
    Ok(())
}

struct Bench {
    repo: PathBuf,
    binary: PathBuf,
    postgres: Option<String>,
}

impl Bench {
    async fn app(
        &self,
        model_url: String,
        max_concurrent: usize,
        max_tokens: usize,
    ) -> anyhow::Result<AppProcess> {
        let database_url = match &self.postgres {
            Some(server) => Some(fresh_postgres_database(server).await?),
            None => None,
        };
        AppProcess::start(AppOptions {
            binary: &self.binary,
            model_url,
            database_url,
            max_concurrent,
            max_tokens,
        })
        .await
    }

    async fn relay(&self, args: RelayArgs) -> anyhow::Result<Value> {
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

    /// Memory and CPU of `count` replies streaming at once. Measured in two steps, so that what
    /// an open stream costs is not mixed with what its browser's session and chat cost (a row
    /// each, a rate limiter's entry): first every browser gets its session and chat, then each
    /// sends and opens its reply's stream.
    async fn streams(&self, count: usize, seconds: u64, rate: f64) -> anyhow::Result<Value> {
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

    /// The chat page under `wrk`, beside `/healthz` in the same run: throughput at
    /// `connections`, and latency at one connection.
    async fn pages(
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

    async fn growth(&self, sizes: &[usize]) -> anyhow::Result<Value> {
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

    async fn ttft(&self, rounds: usize) -> anyhow::Result<Value> {
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

    async fn footprint(&self) -> anyhow::Result<Value> {
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

/// The text the fake model sends, when the URL is the fake's (a real model's text is unknown).
/// Counts each run's tokens with the model server's own tokenizer (llama-server's `/tokenize`),
/// the same way for both paths: events through the app carry several tokens each.
async fn count_tokens_by_model(model_url: &str, runs: &mut [StreamRun]) -> anyhow::Result<()> {
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

struct StreamRun {
    /// Through the app: when the send (the form POST) was answered.
    sent: Option<Duration>,
    first_token: Duration,
    /// When the last piece of text arrived (not the end of the stream: through the app, `done`
    /// also waits for the reply to be saved).
    last_token: Duration,
    /// Model tokens received: content chunks straight from the model; through the app, where
    /// several tokens share one event, the fake's `" t{i}"` pieces counted in the text (or the
    /// events, for a real model).
    tokens: usize,
    /// Through the app: the reply's text as stored; straight from the model: as it arrived.
    text: String,
    /// Through the app: the page's HTML once the stream ended, the stream's bytes, and its
    /// `html` events.
    page_html: String,
    stream_bytes: usize,
    page_updates: usize,
}

impl StreamRun {
    fn tokens_per_second(&self) -> f64 {
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
struct Start {
    barrier: Arc<Barrier>,
    delay: Duration,
}

impl Start {
    async fn wait(self) {
        self.barrier.wait().await;
        tokio::time::sleep(self.delay).await;
    }
}

/// Runs `n` users, started as [`Start`] says, through the app or direct alike.
async fn run_concurrently<F, Fut>(
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

fn browser() -> reqwest::Client {
    browser_with_cookies().0
}

/// A browser-like client and its cookie jar (to hand the session's cookie to another client).
fn browser_with_cookies() -> (reqwest::Client, Arc<reqwest::cookie::Jar>) {
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
async fn direct_stream(
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
async fn app_stream(base: String, start: Start) -> anyhow::Result<StreamRun> {
    let client = browser();
    let chat = create_chat(&client, &base).await?;
    start.wait().await;
    send_and_read(&client, &base, &chat, "Hello").await
}

/// Sends `content` to the chat and reads the reply's stream to its end, timed from the send.
async fn send_and_read(
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
async fn reply_text(client: &reqwest::Client, base: &str, reply: &str) -> anyhow::Result<String> {
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
async fn post_for_location(
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

async fn create_chat(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let location = post_for_location(client, format!("{base}/chats"), &[("content", "")]).await?;
    Ok(location.trim_start_matches("/chats/").to_owned())
}

/// Sends a message (no JavaScript: POST then 303) and returns the reply's id.
async fn send_message(
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

async fn wait_for_reply(
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
struct SeededChat {
    client: reqwest::Client,
    chat: String,
    /// The session's `Cookie` header, for clients other than `client`.
    cookie: String,
}

async fn seed_chat(base: &str, messages: usize) -> anyhow::Result<SeededChat> {
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
async fn open_held_stream(
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
struct HeldStream {
    _response: reqwest::Response,
    _client: reqwest::Client,
}

async fn fresh_postgres_database(server: &str) -> anyhow::Result<String> {
    let name = format!("bench_{}", std::process::id());
    let (prefix, _) = server
        .rsplit_once('/')
        .context("the PostgreSQL URL needs a database path")?;
    let status = std::process::Command::new("psql")
        .arg(server)
        .args([
            "-qc",
            &format!("DROP DATABASE IF EXISTS {name}"),
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .context("psql is needed to create the benchmark database")?;
    ensure!(status.success(), "creating database {name} failed");
    Ok(format!("{prefix}/{name}"))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
