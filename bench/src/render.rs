//! The markdown renderer on hostile input (`testkit::hostile`): each kind at each size, rendered
//! `rounds` times in this process (release build); the slowest round is what a request would
//! wait for.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(clap::Args)]
pub struct RenderArgs {
    /// Input sizes in bytes.
    #[arg(long, value_delimiter = ',', default_value = "5000,20000,262144")]
    pub sizes: Vec<usize>,
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

pub fn run(args: RenderArgs) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    eprintln!(
        "{:<16} {:>8} {:>10} {:>10} {:>12}",
        "kind", "bytes", "median ms", "max ms", "html bytes"
    );
    for &size in &args.sizes {
        for (kind, text) in testkit::hostile::markdown_corpus(size) {
            let mut times: Vec<Duration> = Vec::with_capacity(args.rounds);
            let mut html_bytes = 0;
            for _ in 0..args.rounds.max(1) {
                let started = Instant::now();
                html_bytes = app::render::markdown_to_html(&text).len();
                times.push(started.elapsed());
            }
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let (median, max) = (ms(times[times.len() / 2]), ms(times[times.len() - 1]));
            eprintln!(
                "{kind:<16} {:>8} {median:>10.2} {max:>10.2} {html_bytes:>12}",
                text.len()
            );
            rows.push(json!({
                "kind": kind, "bytes": text.len(), "median_ms": median, "max_ms": max,
                "html_bytes": html_bytes,
            }));
        }
    }
    Ok(json!({ "scenario": "render", "results": rows }))
}
