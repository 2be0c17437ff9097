//! The benchmarks' model: the shared fake llama-server (testkit, replaying the recorded format in
//! ../shared/fixtures/llama-server/) sending `tokens` pieces per reply at `rate` tokens per second
//! (0: as fast as possible). Pieces are `" t{i}"`, so a client can check that what arrived is
//! exactly what was sent, or, for page scenarios, words of a typical markdown answer (a
//! paragraph, a list, a code block), which cost what real replies cost to render.
use std::{net::SocketAddr, time::Duration};

use testkit::{FakeLm, Knobs};

#[derive(Clone, Copy, Debug)]
pub struct FakeModel {
    pub tokens: usize,
    /// Tokens per second; 0 means no delay at all.
    pub rate: f64,
    pub text: Text,
}

#[derive(Clone, Copy, Debug)]
pub enum Text {
    /// `" t0 t1 t2 …"`: every piece different, so lost or repeated text shows.
    Numbered,
    /// The words of [`MARKDOWN_ANSWER`] over and over.
    Markdown,
}

const MARKDOWN_ANSWER: &str = "Here is **one way** to do it, with [the docs](https://example.com/docs) \
for details:\n\n1. Read the `input` line by line\n2. Parse each *field*\n3. Print the result\n\n\
```rust\nfn main() {\n    let total: u32 = (1..=10).sum();\n    println!(\"{total}\");\n}\n```\n\n\
| step | cost |\n| --- | --- |\n| parse | low |\n| print | lower |\n\n";

impl Text {
    pub fn piece(self, i: usize) -> String {
        match self {
            Text::Numbered => format!(" t{i}"),
            Text::Markdown => {
                let words: Vec<&str> = MARKDOWN_ANSWER.split_inclusive(' ').collect();
                words[i % words.len()].to_owned()
            }
        }
    }

    pub fn reply(self, tokens: usize) -> String {
        (0..tokens).map(|i| self.piece(i)).collect()
    }
}

pub async fn start(model: FakeModel) -> anyhow::Result<SocketAddr> {
    let fake = FakeLm::start(Knobs {
        tokens: (0..model.tokens).map(|i| model.text.piece(i)).collect(),
        token_delay: if model.rate > 0.0 {
            Duration::from_secs_f64(1.0 / model.rate)
        } else {
            Duration::ZERO
        },
        // Every reply is cut at the app's LM_MAX_TOKENS, which the scenarios set to `tokens`.
        finish_reason: "length".into(),
        // Long chats (growth) are never trimmed to fit.
        n_ctx: 1_000_000,
        // Streams as fast as the client reads, a few frames ahead.
        stream_buffer: 16,
        ..Knobs::default()
    })
    .await;
    Ok(fake.addr)
}
