//! What a page's stream costs: a long markdown reply (the fake's markdown answer) streamed to a
//! page at several model speeds, through the app. Reports the stream's bytes against the final
//! HTML's (the page receives rendered markdown: finished blocks once, the open block as its
//! changes), the updates sent, and the app's CPU time per reply; checks that the page the
//! stream built is the reply's render.
use serde_json::{Value, json};

use crate::{
    Bench,
    client::{browser, create_chat, send_and_read},
    fake_lm::{self, FakeModel, Text},
};

#[derive(clap::Args)]
pub struct PageStreamArgs {
    /// Tokens in the reply.
    #[arg(long, default_value_t = 2000)]
    pub tokens: usize,
    /// Model speeds, tokens per second (0: as fast as it can).
    #[arg(long, value_delimiter = ',', default_value = "0,400,100")]
    pub rates: Vec<f64>,
}

pub async fn run(bench: &Bench, args: PageStreamArgs) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    eprintln!(
        "{:>10} {:>12} {:>12} {:>7} {:>9} {:>9} {:>8}",
        "tokens/s", "stream B", "final HTML B", "ratio", "updates", "app CPU", "matches"
    );
    for &rate in &args.rates {
        let fake = fake_lm::start(FakeModel {
            tokens: args.tokens,
            rate,
            text: Text::Markdown,
        })
        .await?;
        let app = bench
            .app(format!("http://{fake}/v1"), 4, args.tokens)
            .await?;
        let client = browser();
        let chat = create_chat(&client, &app.base).await?;
        let cpu_before = app.cpu_time();
        let run = send_and_read(&client, &app.base, &chat, "Explain it at length").await?;
        let cpu = app.cpu_time() - cpu_before;
        let rendered = app::render::markdown_to_html(&run.text);
        let ratio = run.stream_bytes as f64 / rendered.len().max(1) as f64;
        let matches = run.page_html == rendered;
        eprintln!(
            "{rate:>10} {:>12} {:>12} {ratio:>7.2} {:>9} {:>7.0}ms {matches:>8}",
            run.stream_bytes,
            rendered.len(),
            run.page_updates,
            cpu.as_secs_f64() * 1000.0,
        );
        anyhow::ensure!(
            matches,
            "the page the stream built is not the reply's render"
        );
        rows.push(json!({
            "tokens_per_s": rate, "tokens": args.tokens, "stream_bytes": run.stream_bytes,
            "final_html_bytes": rendered.len(), "ratio": ratio, "updates": run.page_updates, "app_cpu_ms": cpu.as_secs_f64() * 1000.0,
        }));
    }
    Ok(json!({ "scenario": "page-stream", "results": rows }))
}
