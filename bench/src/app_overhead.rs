//! `bench app-overhead`: what the app adds on top of the embedded engine. One embedded engine
//! in this process serves both sides: calling it directly (as the app's reply task does), and
//! the whole app around it (its real router on a local port, a SQLite database), driven like a
//! browser: the form POST, then the reply's event stream. Same prompts' length, same greedy
//! sampling, the side that goes first alternating by round.
use std::{path::PathBuf, time::Duration};

use app::{
    AppState,
    engine::Engine,
    lm::{FlashAttention, ReplyOptions},
};
use clap::Args;
use serde_json::{Value, json};

use crate::{
    client::{browser, create_chat, send_and_read},
    engine::{SYSTEM_PROMPT, asking, generate, median, start_embedded},
    ms,
};

#[derive(Args)]
pub struct AppOverheadArgs {
    /// The GGUF model.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
}

/// The target: the app within 2% of the engine alone.
const TARGET: f64 = 0.02;

struct Timed {
    ttft: Duration,
    streaming: Duration,
    text: String,
}

pub async fn run(args: AppOverheadArgs) -> anyhow::Result<Value> {
    let engine = start_embedded(&args.model, args.threads, FlashAttention::Auto).await?;
    let data = tempfile::tempdir()?;
    let mut config = app::config::Config::defaults();
    config.data_dir = data.path().to_owned();
    config.database_url = Some(format!(
        "sqlite://{}?mode=rwc",
        data.path().join("bench.db").display()
    ));
    config.lm_model_path = Some(args.model.clone());
    config.lm_max_tokens = args.max_tokens;
    config.lm_temperature = 0.0;
    config.lm_seed = Some(1);
    config.system_prompt = SYSTEM_PROMPT.to_owned();
    // No greeting: the app's prompt is then the system prompt and the message, as `asking`.
    config.greeting = String::new();
    config.title_generation = false;
    config.rate_limits = false;
    let options = ReplyOptions {
        model: None,
        max_tokens: args.max_tokens,
        temperature: 0.0,
        top_p: config.lm_top_p,
        seed: Some(1),
    };
    let shared = engine.clone();
    let state = AppState::build_with(config, move |_| Ok(shared)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(app::serve_on(listener, state, std::future::pending()));

    let (mut direct, mut via_app) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Prompts of one length that no side has seen (the engine keeps a slot's prompt).
        let prompt = |side: char| {
            format!("Tell me a short story about a lighthouse keeper. Story {round}{side}.")
        };
        // Which side goes first, and which of the two prompts each gets, alternate by round.
        let even = round % 2 == 0;
        let (direct_prompt, app_prompt) = if even {
            (prompt('a'), prompt('b'))
        } else {
            (prompt('b'), prompt('a'))
        };
        for side in 0..2 {
            if (side == 0) == even {
                direct.push(engine_alone(&engine, &direct_prompt, &options).await?);
            } else {
                via_app.push(through_app(&base, &app_prompt).await?);
            }
        }
    }
    server.abort();

    let tokens = |runs: &[Timed]| -> Vec<f64> {
        runs.iter()
            .map(|r| {
                let n = engine
                    .count_tokens(None, "assistant", &r.text)
                    .saturating_sub(1);
                f64::from(n) / r.streaming.as_secs_f64().max(1e-9)
            })
            .collect()
    };
    let ttft = |runs: &[Timed]| -> Vec<f64> { runs.iter().map(|r| ms(r.ttft)).collect() };
    let (direct_ttft, app_ttft) = (median(&ttft(&direct)), median(&ttft(&via_app)));
    let (direct_rate, app_rate) = (median(&tokens(&direct)), median(&tokens(&via_app)));
    let ttft_added = app_ttft / direct_ttft - 1.0;
    let rate_lost = 1.0 - app_rate / direct_rate;
    let verdict = |x: f64| if x <= TARGET { "met" } else { "missed" };
    eprintln!(
        "app-overhead ({} rounds, {} tokens): first token {direct_ttft:.1} ms alone, \
         {app_ttft:.1} ms through the app ({:+.1}%, target ≤ +2%: {}); tokens/s {direct_rate:.1} \
         alone, {app_rate:.1} through the app ({:+.1}%, target ≥ −2%: {})",
        args.rounds,
        args.max_tokens,
        ttft_added * 100.0,
        verdict(ttft_added),
        -rate_lost * 100.0,
        verdict(rate_lost),
    );
    Ok(
        json!({"scenario": "app-overhead", "rounds": args.rounds, "max_tokens": args.max_tokens,
        "direct_ttft_ms": direct_ttft, "app_ttft_ms": app_ttft, "ttft_added": ttft_added,
        "direct_tokens_per_s": direct_rate, "app_tokens_per_s": app_rate, "tokens_per_s_lost": rate_lost}),
    )
}

/// The engine called as the app's reply task calls it.
async fn engine_alone(
    engine: &Engine,
    prompt: &str,
    options: &ReplyOptions,
) -> anyhow::Result<Timed> {
    let reply = generate(engine, &asking(prompt), options).await?;
    Ok(Timed {
        ttft: reply.first_text - reply.started,
        streaming: reply.last_text - reply.first_text,
        text: reply.text,
    })
}

/// The same through the app, timed as a browser sees it: from the send to the first token.
async fn through_app(base: &str, prompt: &str) -> anyhow::Result<Timed> {
    let client = browser();
    let chat = create_chat(&client, base).await?;
    let run = send_and_read(&client, base, &chat, prompt).await?;
    Ok(Timed {
        ttft: run.first_token,
        streaming: run.last_token - run.first_token,
        text: run.text,
    })
}
