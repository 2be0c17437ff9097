//! Benchmarks of the chat app, driven the way browsers use it (HTTP + SSE with cookies), against
//! a configurable fake model server (or a real llama-server with `--model-url`). Prints a table
//! and, with `--json FILE`, the same figures as JSON. See BENCHMARKS.md.
mod app_overhead;
mod app_process;
mod client;
mod engine;
mod fake_lm;
mod footprint;
mod half_open;
mod load;
mod models;
mod nginx;
mod page_stream;
mod pages;
mod relay;
mod render;
mod streams;
mod ttft;
mod wrk;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, ensure};
use app_process::{AppOptions, AppProcess};
use clap::{Parser, Subcommand};

/// Replies in the page and growth scenarios: about 1.5 KB of markdown, as a typical answer.
const REALISTIC_REPLY_TOKENS: usize = 250;

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
    Relay(relay::RelayArgs),
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
