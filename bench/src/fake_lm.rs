//! A configurable model server in llama-server's streaming format (see
//! ../shared/fixtures/llama-server/stream-with-usage.sse): `tokens` pieces per reply at `rate`
//! tokens per second (0: as fast as possible). Pieces are `" t{i}"`, so a client can check that
//! what arrived is exactly what was sent, or, for page scenarios, words of a typical markdown
//! answer (a paragraph, a list, a code block), which cost what real replies cost to render.
use std::{convert::Infallible, net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::header,
    response::{IntoResponse, Response},
    routing::{get, post},
};

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
    let app = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .with_state(model);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn models() -> Json<serde_json::Value> {
    Json(
        serde_json::json!({"object": "list", "data": [{"id": "bench", "object": "model", "meta": {"n_ctx": 1_000_000}}]}),
    )
}

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> Bytes {
    let chunk = serde_json::json!({
        "choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
        "created": 1795487764, "id": "chatcmpl-bench", "model": "bench",
        "system_fingerprint": "b1-0c1e570", "object": "chat.completion.chunk"
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

async fn chat(State(model): State<FakeModel>) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    tokio::spawn(async move {
        let pause = (model.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / model.rate));
        if tx
            .send(Ok(chunk(
                serde_json::json!({"role": "assistant", "content": null}),
                None,
            )))
            .await
            .is_err()
        {
            return;
        }
        for i in 0..model.tokens {
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            if tx
                .send(Ok(chunk(
                    serde_json::json!({"content": model.text.piece(i)}),
                    None,
                )))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = tx
            .send(Ok(chunk(serde_json::json!({}), Some("length"))))
            .await;
        let usage = serde_json::json!({"choices": [], "usage": {"completion_tokens": model.tokens, "prompt_tokens": 20, "total_tokens": model.tokens + 20}});
        let _ = tx.send(Ok(Bytes::from(format!("data: {usage}\n\n")))).await;
        let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
    });
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}
