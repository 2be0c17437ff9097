//! `bench engine`: the embedded engine (llama.cpp in this process) against llama-server on the
//! same model, threads, context per slot, prompts and greedy sampling. Both sides go through
//! the app's own [`Engine`], so they share the client-side code and the events (llama-server's
//! `timings` are parsed by the app's client). The two never generate at the same time: each
//! measurement runs on one side, then on the other, and the side that goes first alternates by
//! round.
use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use app::{
    engine::Engine,
    lm::{FlashAttention, LmEvent, LmSettings, ModelStatus, PromptMessage, ReplyOptions, Timings},
};
use clap::Args;
use serde_json::{Value, json};

use testkit::app_process::{free_port, vm_rss};

use crate::ms;

/// Replies generated at once (llama-server `--parallel`, the app's MAX_CONCURRENT_GENERATIONS).
const SLOTS: usize = 4;
/// Context of each slot in tokens (llama-server `-c` is SLOTS times this).
const CONTEXT_PER_SLOT: u32 = 4096;
/// The longest one reply may take before the run fails.
const REPLY_LIMIT: Duration = Duration::from_secs(600);
/// The longest either engine may take to load its model.
const LOAD_LIMIT: Duration = Duration::from_secs(120);
/// The targets of the tokens/s ratios (embedded / llama-server).
const ONE_STREAM_TARGET: f64 = 0.95;
const FOUR_STREAMS_TARGET: f64 = 0.9;
/// The app's default SYSTEM_PROMPT, first in every prompt as the app sends it. Without one,
/// the two sides' prompts would differ: llama-server renders a model's Jinja template, which
/// may add a default system message (SmolLM2's does), and the embedded engine's built-in
/// template does not.
pub(crate) const SYSTEM_PROMPT: &str = "You are a helpful assistant.";

#[derive(Args)]
pub struct EngineArgs {
    /// The GGUF model both engines load.
    #[arg(long)]
    model: PathBuf,
    /// The llama-server binary (default: the one `.ci/build-llama-server.sh` has cached, or
    /// builds).
    #[arg(long)]
    llama_server: Option<PathBuf>,
    /// Threads of both engines (llama-server: `-t N -tb N`).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Rounds of every measurement on each side; the side that goes first alternates.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Tokens of each reply.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Flash attention on both sides (the embedded engine's `LM_FLASH_ATTENTION`,
    /// llama-server's `-fa`).
    #[arg(long, value_enum, default_value_t = FlashAttention::Auto)]
    flash_attention: FlashAttention,
}

pub async fn run(repo: &Path, args: EngineArgs) -> anyhow::Result<Value> {
    let EngineArgs {
        model,
        llama_server,
        threads,
        rounds,
        max_tokens,
        flash_attention,
    } = args;
    let rounds = rounds.max(1);
    let threads = threads.max(1);
    ensure!(model.is_file(), "no model file at {}", model.display());
    let binary = match llama_server {
        Some(path) => path,
        None => built_llama_server(repo)?,
    };
    let options = ReplyOptions {
        model: None,
        max_tokens,
        temperature: 0.0,
        top_p: 0.95,
        seed: Some(1),
    };

    // The embedded engine first, so that the bench's own growth is the engine's alone.
    let rss_before = vm_rss("self");
    let embedded = start_embedded(&model, threads, flash_attention).await?;
    let embedded_loaded = vm_rss("self");
    let server = LlamaServer::start(&binary, &model, threads, flash_attention).await?;
    let server_loaded = server.rss();
    let sides = [
        Side {
            name: "embedded",
            engine: embedded,
        },
        Side {
            name: "llama-server",
            engine: Engine::Server(
                app::lm::LmClient::new(LmSettings {
                    api_url: server.api_url.clone(),
                    api_key: None,
                    model: None,
                    context_tokens: None,
                })?
                .into(),
            ),
        },
    ];
    // One short reply each, unmeasured: the first decode of a process is slower.
    for side in &sides {
        let warm = ReplyOptions {
            max_tokens: 8,
            ..options.clone()
        };
        generate(&side.engine, &asking("Say hello."), &warm)
            .await
            .with_context(|| format!("{}: the warm-up reply failed", side.name))?;
    }

    let mut runs = [Runs::default(), Runs::default()];
    for round in 0..rounds {
        let order = if round.is_multiple_of(2) {
            [0, 1]
        } else {
            [1, 0]
        };
        eprintln!(
            "engine: round {}/{rounds}, {} first",
            round + 1,
            sides[order[0]].name
        );
        // Each measurement on one side and at once on the other: the machine's drift falls on
        // both alike.
        for phase in [Phase::OneStream, Phase::FourStreams, Phase::LongChat] {
            for index in order {
                let side = &sides[index];
                let ran = phase
                    .run(&side.engine, round, &options, &mut runs[index])
                    .await;
                if let Err(e) = ran {
                    if index == 1 {
                        eprintln!("llama-server's log ends:\n{}", server.log_tail());
                    }
                    return Err(e.context(format!("{} (round {})", side.name, round + 1)));
                }
            }
        }
    }
    let embedded_after = vm_rss("self");
    let server_after = server.rss();
    drop(sides);
    drop(server);

    let [e, s] = &runs;
    let same_text = e
        .stories
        .iter()
        .zip(&s.stories)
        .filter(|(a, b)| a.text == b.text)
        .count();
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let rows = [
        Row::new("one stream: TTFT ms", e.ttft(), s.ttft(), 1),
        Row::new(
            "one stream: prompt ms (timings)",
            e.story_prompt_ms(),
            s.story_prompt_ms(),
            1,
        ),
        Row::new(
            "one stream: tokens/s",
            e.tokens_per_s(),
            s.tokens_per_s(),
            1,
        ),
        Row::new(
            "one stream: tokens/s by the engine's timings",
            e.decode_tokens_per_s(),
            s.decode_tokens_per_s(),
            1,
        ),
        Row::new(
            "one stream: completion tokens",
            e.story_tokens(),
            s.story_tokens(),
            0,
        ),
        Row::new(
            "four streams: aggregate tokens/s",
            median(&e.four_tokens_per_s),
            median(&s.four_tokens_per_s),
            1,
        ),
        Row::new(
            "chat turn 1: prompt ms (timings)",
            e.turn(1, |t| t.prompt_ms),
            s.turn(1, |t| t.prompt_ms),
            1,
        ),
        Row::new(
            "chat turn 1: prompt_n evaluated",
            e.turn(1, |t| t.prompt_n),
            s.turn(1, |t| t.prompt_n),
            0,
        ),
        Row::new(
            "chat turn 1: cache_n reused",
            e.turn(1, |t| t.cache_n),
            s.turn(1, |t| t.cache_n),
            0,
        ),
        Row::new(
            "chat turn 1: TTFT ms",
            e.turn(1, |t| t.ttft_ms),
            s.turn(1, |t| t.ttft_ms),
            1,
        ),
        Row::new(
            "chat turn 2: prompt ms (timings)",
            e.turn(2, |t| t.prompt_ms),
            s.turn(2, |t| t.prompt_ms),
            1,
        ),
        Row::new(
            "chat turn 2: prompt_n evaluated",
            e.turn(2, |t| t.prompt_n),
            s.turn(2, |t| t.prompt_n),
            0,
        ),
        Row::new(
            "chat turn 2: cache_n reused",
            e.turn(2, |t| t.cache_n),
            s.turn(2, |t| t.cache_n),
            0,
        ),
        Row::new(
            "chat turn 2: TTFT ms",
            e.turn(2, |t| t.ttft_ms),
            s.turn(2, |t| t.ttft_ms),
            1,
        ),
        Row::new(
            "RSS after loading MiB (embedded: bench growth)",
            mib(embedded_loaded.saturating_sub(rss_before)),
            mib(server_loaded),
            1,
        ),
        Row::new(
            "RSS after the runs MiB (embedded: bench growth)",
            mib(embedded_after.saturating_sub(rss_before)),
            mib(server_after),
            1,
        ),
    ];

    let name = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    eprintln!(
        "engine: {name}, {threads} threads, {SLOTS} slots x {CONTEXT_PER_SLOT} tokens, {max_tokens} tokens a reply, flash attention {flash_attention:?}, greedy, medians of {rounds} rounds"
    );
    eprintln!(
        "  {:<50} {:>12} {:>12} {:>8}",
        "figure", "embedded", "llama-server", "ratio"
    );
    for row in &rows {
        eprintln!("  {row}");
    }
    let one = ratio(e.tokens_per_s(), s.tokens_per_s());
    let four = ratio(median(&e.four_tokens_per_s), median(&s.four_tokens_per_s));
    let verdict = |ratio: f64, target: f64| if ratio >= target { "met" } else { "missed" };
    eprintln!(
        "  tokens/s ratio, one stream:   {one:.3} (target >= {ONE_STREAM_TARGET}): {}",
        verdict(one, ONE_STREAM_TARGET)
    );
    eprintln!(
        "  tokens/s ratio, four streams: {four:.3} (target >= {FOUR_STREAMS_TARGET}): {}",
        verdict(four, FOUR_STREAMS_TARGET)
    );
    eprintln!(
        "  one-stream replies with the same text on both sides (greedy): {same_text} of {rounds}"
    );
    eprintln!("  llama-server: {}", binary.display());

    let figures: Vec<Value> = rows
        .iter()
        .map(|r| json!({"figure": r.label, "embedded": r.embedded, "llama_server": r.server, "ratio": r.ratio()}))
        .collect();
    Ok(json!({
        "scenario": "engine", "model": name, "threads": threads, "rounds": rounds,
        "max_tokens": max_tokens, "slots": SLOTS, "context_per_slot": CONTEXT_PER_SLOT,
        "flash_attention": flash_attention,
        "figures": figures,
        "one_stream_tokens_per_s_ratio": one, "one_stream_target_met": one >= ONE_STREAM_TARGET,
        "four_streams_tokens_per_s_ratio": four, "four_streams_target_met": four >= FOUR_STREAMS_TARGET,
        "same_text_rounds": same_text,
        "rounds_embedded": e.rounds(), "rounds_llama_server": s.rounds(),
    }))
}

struct Side {
    name: &'static str,
    engine: Engine,
}

/// One side's measurements, one entry per round.
#[derive(Default)]
struct Runs {
    stories: Vec<Reply>,
    four_tokens_per_s: Vec<f64>,
    turns: Vec<[Turn; 2]>,
}

impl Runs {
    fn ttft(&self) -> f64 {
        median(&self.stories.iter().map(|r| r.ttft_ms()).collect::<Vec<_>>())
    }

    fn tokens_per_s(&self) -> f64 {
        median(
            &self
                .stories
                .iter()
                .map(Reply::tokens_per_s)
                .collect::<Vec<_>>(),
        )
    }

    fn decode_tokens_per_s(&self) -> f64 {
        let rates: Vec<f64> = self
            .stories
            .iter()
            .filter_map(|r| r.timings)
            .filter(|t| t.predicted_ms > 0.0)
            .map(|t| f64::from(t.predicted_n) / t.predicted_ms * 1000.0)
            .collect();
        median(&rates)
    }

    /// The story's prompt time as the engine measured it (llama-server: without HTTP).
    fn story_prompt_ms(&self) -> f64 {
        let times: Vec<f64> = self
            .stories
            .iter()
            .filter_map(|r| r.timings)
            .map(|t| t.prompt_ms)
            .collect();
        median(&times)
    }

    fn story_tokens(&self) -> f64 {
        median(
            &self
                .stories
                .iter()
                .map(|r| f64::from(r.tokens))
                .collect::<Vec<_>>(),
        )
    }

    /// Every round's figures, for the JSON.
    fn rounds(&self) -> Vec<Value> {
        let turn = |t: &Turn| json!({"ttft_ms": t.ttft_ms, "prompt_ms": t.prompt_ms, "prompt_n": t.prompt_n, "cache_n": t.cache_n});
        self.stories
            .iter()
            .zip(&self.four_tokens_per_s)
            .zip(&self.turns)
            .map(|((story, four), turns)| {
                json!({"one_stream": {"ttft_ms": story.ttft_ms(), "tokens_per_s": story.tokens_per_s(),
                                      "tokens": story.tokens, "timings": story.timings.map(|t| json!({
                                          "prompt_n": t.prompt_n, "prompt_ms": t.prompt_ms, "predicted_n": t.predicted_n, "predicted_ms": t.predicted_ms}))},
                       "four_streams_tokens_per_s": four,
                       "chat_turn_1": turn(&turns[0]), "chat_turn_2": turn(&turns[1])})
            })
            .collect()
    }

    /// The median over the rounds of one figure of turn 1 or 2.
    fn turn<T: Into<f64>>(&self, turn: usize, figure: impl Fn(&Turn) -> T) -> f64 {
        median(
            &self
                .turns
                .iter()
                .map(|t| figure(&t[turn - 1]).into())
                .collect::<Vec<_>>(),
        )
    }
}

/// One turn of the long chat: the engine's own timings, and the first token as the app sees it.
struct Turn {
    ttft_ms: f64,
    prompt_ms: f64,
    prompt_n: u32,
    cache_n: u32,
}

impl Turn {
    fn of(reply: &Reply) -> anyhow::Result<Self> {
        let timings = reply.timings.context("the reply came without timings")?;
        Ok(Self {
            ttft_ms: reply.ttft_ms(),
            prompt_ms: timings.prompt_ms,
            prompt_n: timings.prompt_n,
            cache_n: timings.cache_n,
        })
    }
}

/// The measurements; each is run on both sides before the next.
#[derive(Clone, Copy)]
enum Phase {
    /// One story: time to first token and tokens/s.
    OneStream,
    /// Four stories at once: aggregate tokens/s.
    FourStreams,
    /// A 100-message chat, then its follow-up: prompt time without and with the cache.
    LongChat,
}

impl Phase {
    /// One measurement of one round on one engine. The prompts name the round, at their start,
    /// so that no round finds the previous round's prompts in a cache.
    async fn run(
        self,
        engine: &Engine,
        round: usize,
        options: &ReplyOptions,
        runs: &mut Runs,
    ) -> anyhow::Result<()> {
        settle(engine).await;
        match self {
            Phase::OneStream => {
                let story = generate(
                    engine,
                    &asking(&format!(
                        "Round {round}. Write a long story about a lighthouse keeper who finds a message in a bottle. Tell it in many chapters, with a lot of detail."
                    )),
                    options,
                )
                .await
                .context("the one-stream story")?;
                runs.stories.push(story);
            }
            Phase::FourStreams => {
                let subjects = [
                    "a dragon who is afraid of heights",
                    "a robot who learns to paint",
                    "two friends sailing around the world",
                    "a baker in a small mountain town",
                ];
                let prompts: Vec<Vec<PromptMessage>> = subjects
                    .iter()
                    .enumerate()
                    .map(|(i, subject)| {
                        asking(&format!(
                            "Round {round}, story {i}. Write a long story about {subject}."
                        ))
                    })
                    .collect();
                let started = Instant::now();
                let replies =
                    futures::future::join_all(prompts.iter().map(|p| generate(engine, p, options)))
                        .await;
                let mut tokens = 0u32;
                let mut last_end = started;
                for reply in replies {
                    let reply = reply.context("four concurrent stories")?;
                    tokens += reply.tokens;
                    last_end = last_end.max(reply.ended);
                }
                let elapsed = (last_end - started).as_secs_f64();
                runs.four_tokens_per_s
                    .push(f64::from(tokens) / elapsed.max(f64::EPSILON));
            }
            Phase::LongChat => {
                let mut chat = long_chat(round);
                let first = generate(engine, &chat, options)
                    .await
                    .context("the long chat's first turn")?;
                chat.push(PromptMessage {
                    role: "assistant",
                    images: Vec::new(),
                    content: first.text.clone(),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                });
                chat.push(user(
                    "Thank you. And which one should I read about second, and why?",
                ));
                settle(engine).await;
                let second = generate(engine, &chat, options)
                    .await
                    .context("the long chat's follow-up")?;
                runs.turns.push([Turn::of(&first)?, Turn::of(&second)?]);
            }
        }
        Ok(())
    }
}

/// What comes before each measured request, outside its timing. llama-server closes the
/// connection after every streamed response although it answers `Keep-Alive`: a request sent
/// at once may go out on the pooled connection that is being closed, and fail ("error sending
/// request"). A short pause lets the client see the close first. And the app's client asks
/// for the model list at most every 30 s: that request is made here, not inside a timing.
async fn settle(engine: &Engine) {
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _ = engine.models().await;
}

/// A chat of 100 messages as the app keeps them, after the system prompt: its greeting, 49
/// exchanges of a sentence or two each, and a question (50 assistant and 50 user messages).
fn long_chat(round: usize) -> Vec<PromptMessage> {
    let topics = [
        "volcanoes",
        "the history of printing",
        "honey bees",
        "the moons of Jupiter",
        "sourdough bread",
        "ancient Rome",
        "how bicycles balance",
        "coral reefs",
        "the piano",
        "glaciers",
    ];
    let mut chat = vec![
        system(),
        PromptMessage {
            role: "assistant",
            images: Vec::new(),
            content: format!(
                "Hello! This is conversation number {round}. How can I help you today?"
            ),
            tool_calls: Vec::new(),
            tool_call_id: None,
        },
    ];
    for i in 0..49 {
        let topic = topics[i % topics.len()];
        chat.push(user(&format!(
            "Question {i}: what is one interesting thing about {topic}?"
        )));
        chat.push(PromptMessage {
            role: "assistant",
            images: Vec::new(),
            content: format!(
                "One interesting thing about {topic} is that people have studied it for centuries and still find surprises."
            ), tool_calls: Vec::new(), tool_call_id: None });
    }
    chat.push(user(
        "Thanks. To sum up our conversation: which of these topics should I read about first, and why?",
    ));
    chat
}

/// A one-message chat, as the app sends it: the system prompt, then the user's message.
pub(crate) fn asking(content: &str) -> Vec<PromptMessage> {
    vec![system(), user(content)]
}

fn system() -> PromptMessage {
    PromptMessage {
        role: "system",
        images: Vec::new(),
        content: SYSTEM_PROMPT.to_owned(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

fn user(content: &str) -> PromptMessage {
    PromptMessage {
        role: "user",
        images: Vec::new(),
        content: content.to_owned(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// A reply as the app's reply task receives it, with the time of each stage.
pub(crate) struct Reply {
    pub(crate) started: Instant,
    pub(crate) first_text: Instant,
    pub(crate) last_text: Instant,
    ended: Instant,
    pub(crate) text: String,
    /// Completion tokens: the engine's usage, else the text pieces.
    tokens: u32,
    timings: Option<Timings>,
}

impl Reply {
    /// From calling `stream_chat` to the first piece of text.
    fn ttft_ms(&self) -> f64 {
        ms(self.first_text - self.started)
    }

    /// (tokens − 1) / (last piece − first piece): the first token's time is the TTFT's.
    fn tokens_per_s(&self) -> f64 {
        let streaming = (self.last_text - self.first_text).as_secs_f64();
        if streaming <= 0.0 {
            return 0.0;
        }
        f64::from(self.tokens.saturating_sub(1)) / streaming
    }
}

pub(crate) async fn generate(
    engine: &Engine,
    messages: &[PromptMessage],
    options: &ReplyOptions,
) -> anyhow::Result<Reply> {
    let reply = async {
        let started = Instant::now();
        let mut stream = engine.stream_chat(messages, options, &[]).await?;
        let (mut first, mut last) = (None, started);
        let (mut text, mut pieces, mut usage, mut timings) = (String::new(), 0u32, None, None);
        while let Some(event) = stream.next().await? {
            match event {
                LmEvent::Text(piece) => {
                    let now = Instant::now();
                    first.get_or_insert(now);
                    last = now;
                    text.push_str(&piece);
                    pieces += 1;
                }
                LmEvent::Usage(u) => usage = Some(u.completion_tokens),
                LmEvent::Timings(t) => timings = Some(t),
                LmEvent::Reasoning(_)
                | LmEvent::Finish(_)
                | LmEvent::ModelLoading(_)
                | LmEvent::ModelReady
                | LmEvent::ToolCalls(_) => {}
            }
        }
        anyhow::Ok(Reply {
            started,
            first_text: first.context("the reply had no text")?,
            last_text: last,
            ended: Instant::now(),
            text,
            tokens: usage.unwrap_or(pieces),
            timings,
        })
    };
    tokio::time::timeout(REPLY_LIMIT, reply)
        .await
        .with_context(|| format!("a reply took longer than {} s", REPLY_LIMIT.as_secs()))?
}

pub(crate) async fn start_embedded(
    model: &Path,
    threads: usize,
    flash_attention: FlashAttention,
) -> anyhow::Result<Engine> {
    let mut config = app::config::Config::defaults();
    config.lm_flash_attention = flash_attention;
    // Which of llama.cpp's CPU builds, as the app reads it (default: the best that runs here).
    config.lm_cpu_variant = std::env::var("LM_CPU_VARIANT").ok();
    config.lm_model_path = Some(model.to_owned());
    config.lm_threads = Some(threads);
    config.max_concurrent_generations = SLOTS;
    config.lm_ctx_size = CONTEXT_PER_SLOT;
    until_ready(Engine::Embedded(app::embedded::EmbeddedEngine::start(
        app::embedded_settings(&config),
    )))
    .await
}

/// `engine` once its default model is ready (within `LOAD_LIMIT`).
pub(crate) async fn until_ready(engine: Engine) -> anyhow::Result<Engine> {
    let started = Instant::now();
    loop {
        match engine.status().await {
            ModelStatus::Ready => return Ok(engine),
            ModelStatus::Failed(message) => bail!("the embedded engine failed: {message}"),
            _ if started.elapsed() > LOAD_LIMIT => {
                bail!(
                    "the embedded engine was not ready within {} s",
                    LOAD_LIMIT.as_secs()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The llama-server that `.ci/build-llama-server.sh` has cached (or builds now, a few minutes).
fn built_llama_server(repo: &Path) -> anyhow::Result<PathBuf> {
    let script = repo.join(".ci/build-llama-server.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} failed ({}); pass --llama-server",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .last()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .context("the build script printed no path")?;
    Ok(PathBuf::from(path))
}

/// llama-server as a child process on a free port, with as many slots and as much context per
/// slot as the embedded engine. Killed (and waited for) when dropped, on every path.
struct LlamaServer {
    child: Child,
    api_url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl LlamaServer {
    async fn start(
        binary: &Path,
        model: &Path,
        threads: usize,
        flash_attention: FlashAttention,
    ) -> anyhow::Result<Self> {
        let fa = match flash_attention {
            FlashAttention::Auto => "auto",
            FlashAttention::On => "on",
            FlashAttention::Off => "off",
        };
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("llama-server.log");
        let output = File::create(&log)?;
        let threads = threads.to_string();
        let child = Command::new(binary)
            .arg("-m")
            .arg(model)
            .args(["-t", &threads, "-tb", &threads])
            .args(["-c", &(SLOTS as u32 * CONTEXT_PER_SLOT).to_string()])
            .args(["--parallel", &SLOTS.to_string()])
            .args(["-fa", fa])
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut server = Self {
            child,
            api_url: format!("http://127.0.0.1:{port}/v1"),
            log,
            _dir: dir,
        };
        let health = format!("http://127.0.0.1:{port}/health");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!(
                    "llama-server exited ({status}) before it was ready:\n{}",
                    server.log_tail()
                );
            }
            if let Ok(r) = client
                .get(&health)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(server);
            }
            if started.elapsed() > LOAD_LIMIT {
                bail!(
                    "llama-server was not healthy within {} s:\n{}",
                    LOAD_LIMIT.as_secs(),
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn rss(&self) -> u64 {
        vm_rss(&self.child.id().to_string())
    }

    /// The end of llama-server's log, for an error.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of the table: a figure on both sides and their ratio (embedded / llama-server).
struct Row {
    label: &'static str,
    embedded: f64,
    server: f64,
    decimals: usize,
}

impl Row {
    fn new(label: &'static str, embedded: f64, server: f64, decimals: usize) -> Self {
        Self {
            label,
            embedded,
            server,
            decimals,
        }
    }

    fn ratio(&self) -> f64 {
        ratio(self.embedded, self.server)
    }
}

impl std::fmt::Display for Row {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.decimals;
        let ratio = self.ratio();
        write!(
            f,
            "{:<50} {:>12.d$} {:>12.d$} ",
            self.label, self.embedded, self.server
        )?;
        if ratio.is_finite() {
            write!(f, "{ratio:>8.3}")
        } else {
            write!(f, "{:>8}", "-")
        }
    }
}

/// embedded / llama-server; NaN when llama-server's figure is 0.
fn ratio(embedded: f64, server: f64) -> f64 {
    if server == 0.0 {
        f64::NAN
    } else {
        embedded / server
    }
}

/// The median (the mean of the two middle values for an even count); 0 for none.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}
