//! `bench models`: the embedded engine's model library, in this process. Memory with one and
//! with two models loaded (`LM_MAX_LOADED=2`), and after both are unloaded; then, with one model
//! loaded at a time (`LM_MAX_LOADED=1`, the default), the first token of a reply on the model
//! already loaded beside one that has to switch models first (unload one, load the other).
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use app::{
    engine::Engine,
    lm::{LmEvent, ReplyOptions},
};
use clap::Args;
use serde_json::{Value, json};

use testkit::app_process::vm_rss;

use crate::{
    engine::{asking, median},
    ms,
};

#[derive(Args)]
pub struct ModelsArgs {
    /// The default model (LM_MODEL_PATH).
    #[arg(long)]
    model: PathBuf,
    /// The second model, put in the library's folder.
    #[arg(long)]
    other: PathBuf,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Switches to each model (each followed by a reply on the model just loaded).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
}

/// One reply's times from the request.
struct Timed {
    /// The model was loaded (only when it had to be).
    ready: Option<Duration>,
    first_text: Duration,
}

fn rss_mib() -> f64 {
    vm_rss("self") as f64 / (1024.0 * 1024.0)
}

async fn start(
    dir: &Path,
    model: &Path,
    threads: usize,
    max_loaded: u32,
) -> anyhow::Result<Engine> {
    let mut config = app::config::Config::defaults();
    config.lm_model_path = Some(model.to_owned());
    config.lm_models_dir = Some(dir.join("models"));
    config.hf_hub_cache = Some(dir.join("hub"));
    config.lm_threads = Some(threads);
    config.lm_max_loaded = max_loaded;
    config.data_dir = dir.join("data");
    crate::engine::until_ready(Engine::Embedded(app::embedded::EmbeddedEngine::start(
        app::embedded_settings(&config),
    )))
    .await
}

async fn reply(engine: &Engine, model: &str) -> anyhow::Result<Timed> {
    let options = ReplyOptions {
        model: Some(model.to_owned()),
        max_tokens: 8,
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(1),
    };
    let asked = Instant::now();
    let mut stream = engine
        .stream_chat(&asking("Say hello."), &options, &[])
        .await?;
    let mut ready = None;
    let mut first_text = None;
    while let Some(event) = stream.next().await? {
        match event {
            LmEvent::ModelReady => ready = Some(asked.elapsed()),
            LmEvent::Text(_) => {
                first_text.get_or_insert_with(|| asked.elapsed());
            }
            _ => {}
        }
    }
    Ok(Timed {
        ready,
        first_text: first_text.context("the reply had no text")?,
    })
}

pub async fn run(args: ModelsArgs) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("models"))?;
    let other_id = "other";
    std::os::unix::fs::symlink(
        args.other.canonicalize()?,
        dir.path().join("models").join(format!("{other_id}.gguf")),
    )?;
    let default_id = args
        .model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .context("the model's file name")?;

    // Memory: nothing, one model, two models, both unloaded.
    let before = rss_mib();
    let engine = start(dir.path(), &args.model, args.threads, 2).await?;
    reply(&engine, &default_id).await?;
    let one = rss_mib();
    reply(&engine, other_id).await?;
    let two = rss_mib();
    drop(engine);
    // The threads end once their last handle is gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let unloaded = rss_mib();
    println!(
        "RSS: {before:.0} MiB before, {one:.0} with one model, {two:.0} with two, {unloaded:.0} after both are unloaded"
    );

    // Switching: one model at a time.
    let engine = start(dir.path(), &args.model, args.threads, 1).await?;
    reply(&engine, &default_id).await?;
    // Per model switched to: (first token, until loaded), and the first token without a switch.
    let mut switch: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    let mut same = Vec::new();
    for round in 0..args.rounds * 2 {
        // Back and forth: each switch unloads the model of the round before.
        let to = (round + 1) % 2;
        let there = [default_id.as_str(), other_id][to];
        let switched = reply(&engine, there).await?;
        switch[to].0.push(ms(switched.first_text));
        switch[to]
            .1
            .push(ms(switched.ready.context("a switch loads a model")?));
        let again = reply(&engine, there).await?;
        anyhow::ensure!(again.ready.is_none(), "a loaded model was loaded again");
        same.push(ms(again.first_text));
    }
    let same = median(&same);
    let to = |i: usize| (median(&switch[i].0), median(&switch[i].1));
    let (to_default, to_other) = (to(0), to(1));
    println!(
        "first token: {same:.1} ms on the loaded model; switching to {default_id}: {:.1} ms ({:.1} ms until loaded); to {}: {:.1} ms ({:.1} ms until loaded)",
        to_default.0,
        to_default.1,
        args.other.display(),
        to_other.0,
        to_other.1
    );
    Ok(json!({
        "scenario": "models",
        "model": args.model.display().to_string(),
        "other": args.other.display().to_string(),
        "threads": args.threads,
        "rounds": args.rounds,
        "rss_mib": {"before": before, "one_model": one, "two_models": two, "unloaded": unloaded},
        "first_token_ms": {
            "loaded": same,
            "switching_to_model": {"first_token": to_default.0, "until_loaded": to_default.1},
            "switching_to_other": {"first_token": to_other.0, "until_loaded": to_other.1},
        },
    }))
}
