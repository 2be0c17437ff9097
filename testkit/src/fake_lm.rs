//! A fake llama-server that replays the byte format recorded in
//! ../shared/fixtures/llama-server/ (chunk shapes, headers, error bodies), with knobs: the tokens,
//! a delay between them, a mid-stream error or a dropped connection after N tokens, HTTP errors,
//! and hanging (before the headers, or after N tokens). Calls of tools are answered in the
//! format recorded in testkit/fixtures/llama-server-tools/ (`tool_rounds`). It logs each
//! request and whether the client went away before the end. The app's tests and the
//! benchmarks both use it.
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Knobs {
    pub tokens: Vec<String>,
    pub token_delay: Duration,
    /// Send `data: {"error": ...}` after this many tokens, then end without `[DONE]`.
    pub error_after: Option<usize>,
    /// Close the connection after this many tokens, with no finish chunk.
    pub drop_after: Option<usize>,
    /// Never answer (no headers), like a server whose slots are all busy.
    pub hang: bool,
    /// Go silent after this many tokens, keeping the connection open.
    pub hang_after: Option<usize>,
    /// Answer with this status and body instead of streaming.
    pub http_error: Option<(u16, String)>,
    pub finish_reason: String,
    pub n_ctx: u32,
    pub health_status: u16,
    /// `reasoning_content` pieces streamed before the tokens (a thinking model).
    pub reasoning: Vec<String>,
    /// Models listed by `/v1/models` besides the recorded one (each with `n_ctx`).
    pub extra_models: Vec<String>,
    /// What a title request (system prompt "You name conversations…") is answered with;
    /// `None`: an HTTP 500.
    pub title_reply: Option<String>,
    /// Delay before a title request is answered.
    pub title_delay: Duration,
    /// Frames a stream may have sent ahead of what the client read (1: each waits for the
    /// client, so a client that goes away is seen at once; the benchmarks use more).
    pub stream_buffer: usize,
    /// What `/props` says in `modalities.vision` (a server started with `--mmproj`).
    pub vision: bool,
    /// Calls of tools to answer with, one round each: a request whose messages hold N
    /// assistant turns with `tool_calls` after the last user message gets round N's calls
    /// (after `tool_text`); one past the last round gets the tokens.
    pub tool_rounds: Vec<Vec<FakeCall>>,
    /// Text streamed before a round's calls.
    pub tool_text: Vec<String>,
}

/// A call of a tool the fake model makes.
#[derive(Clone, Debug)]
pub struct FakeCall {
    pub name: String,
    /// As the model writes them (sent in pieces of a few characters, as llama-server does).
    pub arguments: String,
}

impl FakeCall {
    pub fn new(name: &str, arguments: &str) -> Self {
        Self {
            name: name.into(),
            arguments: arguments.into(),
        }
    }
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            tokens: fixture_tokens(),
            token_delay: Duration::ZERO,
            error_after: None,
            drop_after: None,
            hang: false,
            hang_after: None,
            http_error: None,
            finish_reason: "stop".into(),
            n_ctx: 4096,
            health_status: 200,
            reasoning: Vec::new(),
            extra_models: Vec::new(),
            title_reply: Some("\"Greetings, Numbers and More.\"".into()),
            title_delay: Duration::ZERO,
            stream_buffer: 1,
            vision: false,
            tool_rounds: Vec::new(),
            tool_text: Vec::new(),
        }
    }
}

#[derive(Default, Debug)]
pub struct Log {
    /// The latest request bodies of /v1/chat/completions (at most 50), oldest first; title
    /// requests are in `title_requests` instead.
    pub requests: std::collections::VecDeque<Value>,
    pub title_requests: Vec<Value>,
    /// How many chat completion requests came in.
    pub request_count: usize,
    /// Streams whose client went away before the end.
    pub disconnected: usize,
    /// Streams sent to the end.
    pub completed: usize,
    /// Streams being sent now.
    pub open: usize,
}

#[derive(Clone)]
pub struct FakeLm {
    pub addr: SocketAddr,
    knobs: Arc<Mutex<Arc<Knobs>>>,
    log: Arc<Mutex<Log>>,
}

#[derive(Clone)]
struct Shared {
    /// Each request takes the knobs as they are then (a cheap clone, however many tokens).
    knobs: Arc<Mutex<Arc<Knobs>>>,
    log: Arc<Mutex<Log>>,
    fixtures: Arc<Fixtures>,
}

struct Fixtures {
    role_chunk: String,
    content_chunk: Value,
    finish_chunk: Value,
    usage_chunk: Value,
    models: Value,
    /// From the tool-call recording: a call's first piece (id, type, name, the first of its
    /// arguments) and a later one (arguments only).
    tool_first_chunk: Value,
    tool_piece_chunk: Value,
}

/// The recordings of llama-server's calls of tools (in this repository).
pub fn tool_fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/llama-server-tools")
}

/// The recordings, in the shared folder (see [`crate::shared_dir`]).
pub fn fixture_dir() -> std::path::PathBuf {
    crate::shared_dir().join("fixtures/llama-server")
}

fn fixture_lines(name: &str) -> Vec<String> {
    let path = fixture_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the fixture {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// The content pieces of the recorded stream, in order.
pub fn fixture_tokens() -> Vec<String> {
    fixture_lines("stream-with-usage.sse")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn load_fixtures() -> Fixtures {
    let lines = fixture_lines("stream-with-usage.sse");
    let parsed: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |pred: &dyn Fn(&Value) -> bool| {
        parsed
            .iter()
            .find(|v| pred(v))
            .cloned()
            .expect("fixture chunk")
    };
    assert_eq!(
        lines.last().map(String::as_str),
        Some("[DONE]"),
        "the recording ends with [DONE]"
    );
    let tool_chunks: Vec<Value> = std::fs::read_to_string(tool_fixture_dir().join("tool-call.sse"))
        .expect("the tool-call recording")
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &Value| v["choices"][0]["delta"]["tool_calls"].is_array())
        .collect();
    Fixtures {
        tool_first_chunk: tool_chunks
            .iter()
            .find(|v| v["choices"][0]["delta"]["tool_calls"][0]["id"].is_string())
            .cloned()
            .expect("a call's first piece"),
        tool_piece_chunk: tool_chunks
            .iter()
            .find(|v| v["choices"][0]["delta"]["tool_calls"][0]["id"].is_null())
            .cloned()
            .expect("a later piece"),
        role_chunk: lines[0].clone(),
        content_chunk: find(&|v| v["choices"][0]["delta"]["content"].is_string()),
        finish_chunk: find(&|v| v["choices"][0]["finish_reason"].is_string()),
        usage_chunk: find(&|v| v["usage"].is_object()),
        models: serde_json::from_str(
            &std::fs::read_to_string(fixture_dir().join("models.json")).unwrap(),
        )
        .unwrap(),
    }
}

/// The recorded error bodies.
pub fn fixture_http_body(name: &str) -> (u16, String) {
    let text = std::fs::read_to_string(fixture_dir().join(name)).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .or_else(|| text.split("\n\n").nth(1))
        .unwrap()
        .trim()
        .to_owned();
    (status, body)
}

impl FakeLm {
    pub async fn start(knobs: Knobs) -> Self {
        let shared = Shared {
            knobs: Arc::new(Mutex::new(Arc::new(knobs))),
            log: Arc::new(Mutex::new(Log::default())),
            fixtures: Arc::new(load_fixtures()),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/v1/models", get(models))
            .route("/health", get(health))
            .route("/props", get(props))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeLm {
            addr,
            knobs: shared.knobs,
            log: shared.log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set(&self, change: impl FnOnce(&mut Knobs)) {
        change(Arc::make_mut(&mut self.knobs.lock().unwrap()));
    }

    pub fn log<T>(&self, read: impl FnOnce(&Log) -> T) -> T {
        read(&self.log.lock().unwrap())
    }

    /// Waits (up to `limit`) until `check` holds for the log.
    pub async fn wait_for(&self, limit: Duration, check: impl Fn(&Log) -> bool) -> bool {
        let end = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < end {
            if self.log(&check) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.log(&check)
    }
}

/// `/props` as llama-server 0.3.36 answered it (`testkit/fixtures/props.json`, recorded from
/// the build CI makes), with the knobs' context size and vision.
async fn props(State(shared): State<Shared>) -> Json<Value> {
    let mut props: Value = serde_json::from_str(include_str!("../fixtures/props.json")).unwrap();
    let knobs = shared.knobs.lock().unwrap().clone();
    props["default_generation_settings"]["n_ctx"] = knobs.n_ctx.into();
    props["modalities"]["vision"] = knobs.vision.into();
    Json(props)
}

async fn models(State(shared): State<Shared>) -> Json<Value> {
    let mut models = shared.fixtures.models.clone();
    let knobs = shared.knobs.lock().unwrap().clone();
    models["data"][0]["meta"]["n_ctx"] = knobs.n_ctx.into();
    let recorded = models["data"][0].clone();
    for id in &knobs.extra_models {
        let mut model = recorded.clone();
        model["id"] = id.as_str().into();
        models["data"].as_array_mut().unwrap().push(model);
    }
    Json(models)
}

fn is_title_request(request: &Value) -> bool {
    request["messages"][0]["content"]
        .as_str()
        .is_some_and(|c| c.starts_with("You name conversations"))
}

async fn health(State(shared): State<Shared>) -> Response {
    match shared.knobs.lock().unwrap().health_status {
        200 => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        status => (
            StatusCode::from_u16(status).unwrap(),
            Json(serde_json::json!({"error": {"code": status, "message": "Loading model", "type": "unavailable_error"}})),
        )
            .into_response(),
    }
}

async fn chat(State(shared): State<Shared>, Json(request): Json<Value>) -> Response {
    if is_title_request(&request) {
        let knobs = shared.knobs.lock().unwrap().clone();
        shared.log.lock().unwrap().title_requests.push(request);
        tokio::time::sleep(knobs.title_delay).await;
        let Some(title) = knobs.title_reply.clone() else {
            return (StatusCode::INTERNAL_SERVER_ERROR, "title failed").into_response();
        };
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(knobs.stream_buffer.max(1));
        tokio::spawn(send_stream(shared.clone(), knobs, Some(title), tx));
        return Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    }
    // A model offered no tools calls none.
    let round = match request["tools"].is_array() {
        true => tool_round(&request),
        false => usize::MAX,
    };
    {
        let mut log = shared.log.lock().unwrap();
        log.request_count += 1;
        if log.requests.len() == 50 {
            log.requests.pop_front();
        }
        log.requests.push_back(request);
    }
    let knobs = shared.knobs.lock().unwrap().clone();
    if knobs.hang {
        std::future::pending::<()>().await;
    }
    if let Some((status, body)) = &knobs.http_error {
        let mut response = (StatusCode::from_u16(*status).unwrap(), body.clone()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        return response;
    }
    let (tx, rx) =
        tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(knobs.stream_buffer.max(1));
    match knobs.tool_rounds.get(round).cloned() {
        Some(calls) => {
            tokio::spawn(send_tool_calls(shared.clone(), knobs, round, calls, tx));
        }
        None => {
            tokio::spawn(send_stream(shared.clone(), knobs, None, tx));
        }
    }
    let mut response =
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::SERVER, HeaderValue::from_static("llama.cpp"));
    response
}

/// Which round of calls a request is in: its assistant turns with `tool_calls` after the
/// last user message.
fn tool_round(request: &Value) -> usize {
    let empty = Vec::new();
    let messages = request["messages"].as_array().unwrap_or(&empty);
    let last_user = messages
        .iter()
        .rposition(|m| m["role"] == "user")
        .unwrap_or(0);
    messages[last_user..]
        .iter()
        .filter(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .count()
}

/// A reply that calls tools, chunk for chunk as llama-server sends one (the recording's
/// chunks with these calls' ids, names and arguments).
async fn send_tool_calls(
    shared: Shared,
    knobs: Arc<Knobs>,
    round: usize,
    calls: Vec<FakeCall>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>,
) {
    shared.log.lock().unwrap().open += 1;
    let fixtures = &shared.fixtures;
    let frame = |json: &str| Ok(Bytes::from(format!("data: {json}\n\n")));
    let sent_all = async {
        tx.send(frame(&fixtures.role_chunk)).await.ok()?;
        let mut chunks = Vec::new();
        for piece in &knobs.tool_text {
            let mut chunk = fixtures.content_chunk.clone();
            chunk["choices"][0]["delta"]["content"] = piece.as_str().into();
            chunks.push(chunk);
        }
        for (i, call) in calls.iter().enumerate() {
            let pieces = argument_pieces(&call.arguments);
            let mut first = fixtures.tool_first_chunk.clone();
            let part = &mut first["choices"][0]["delta"]["tool_calls"][0];
            part["index"] = i.into();
            part["id"] = format!("fakeCall{round}x{i}qK3vXb9LmT2pWz7RcN4").into();
            part["function"]["name"] = call.name.as_str().into();
            part["function"]["arguments"] = pieces.first().cloned().unwrap_or_default().into();
            chunks.push(first);
            for piece in pieces.iter().skip(1) {
                let mut next = fixtures.tool_piece_chunk.clone();
                let part = &mut next["choices"][0]["delta"]["tool_calls"][0];
                part["index"] = i.into();
                part["function"]["arguments"] = piece.as_str().into();
                chunks.push(next);
            }
        }
        let count = chunks.len();
        for chunk in chunks {
            if !knobs.token_delay.is_zero() {
                tokio::select! {
                    _ = tx.closed() => return None,
                    _ = tokio::time::sleep(knobs.token_delay) => {}
                }
            }
            tx.send(frame(&chunk.to_string())).await.ok()?;
        }
        let mut finish = fixtures.finish_chunk.clone();
        finish["choices"][0]["finish_reason"] = "tool_calls".into();
        tx.send(frame(&finish.to_string())).await.ok()?;
        let mut usage = fixtures.usage_chunk.clone();
        usage["usage"]["completion_tokens"] = count.into();
        usage["usage"]["prompt_tokens"] = 21.into();
        tx.send(frame(&usage.to_string())).await.ok()?;
        tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n")))
            .await
            .ok()?;
        Some(())
    }
    .await;
    let mut log = shared.log.lock().unwrap();
    log.open -= 1;
    match sent_all {
        Some(()) => log.completed += 1,
        None => log.disconnected += 1,
    }
}

/// Arguments in pieces of up to four characters, as a model's tokens bring them.
fn argument_pieces(arguments: &str) -> Vec<String> {
    let chars: Vec<char> = arguments.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

async fn send_stream(
    shared: Shared,
    knobs: Arc<Knobs>,
    // A title request's reply: this one piece instead of the reasoning and the tokens.
    title: Option<String>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, Infallible>>,
) {
    let (reasoning, tokens): (&[String], &[String]) = match &title {
        Some(title) => (&[], std::slice::from_ref(title)),
        None => (&knobs.reasoning, &knobs.tokens),
    };
    shared.log.lock().unwrap().open += 1;
    let fixtures = &shared.fixtures;
    let frame = |json: &str| Ok(Bytes::from(format!("data: {json}\n\n")));
    let sent_all = async {
        tx.send(frame(&fixtures.role_chunk)).await.ok()?;
        // The timings say what this reply took to generate, as llama-server's do.
        let first_token_at = std::time::Instant::now();
        for piece in reasoning {
            if !knobs.token_delay.is_zero() {
                tokio::time::sleep(knobs.token_delay).await;
            }
            let mut chunk = fixtures.content_chunk.clone();
            chunk["choices"][0]["delta"] = serde_json::json!({ "reasoning_content": piece });
            tx.send(frame(&chunk.to_string())).await.ok()?;
        }
        for (i, token) in tokens.iter().enumerate() {
            if knobs.error_after == Some(i) {
                let error = serde_json::json!({"error": {"code": 500, "message": "the model crashed mid-stream", "type": "server_error"}});
                tx.send(frame(&error.to_string())).await.ok()?;
                return Some(());
            }
            if knobs.drop_after == Some(i) {
                return Some(());
            }
            if knobs.hang_after == Some(i) {
                tx.closed().await;
                return None;
            }
            if !knobs.token_delay.is_zero() {
                tokio::select! {
                    _ = tx.closed() => return None,
                    _ = tokio::time::sleep(knobs.token_delay) => {}
                }
            }
            let mut chunk = fixtures.content_chunk.clone();
            chunk["choices"][0]["delta"]["content"] = token.as_str().into();
            tx.send(frame(&chunk.to_string())).await.ok()?;
        }
        let mut finish = fixtures.finish_chunk.clone();
        finish["choices"][0]["finish_reason"] = knobs.finish_reason.as_str().into();
        tx.send(frame(&finish.to_string())).await.ok()?;
        let mut usage = fixtures.usage_chunk.clone();
        usage["usage"]["completion_tokens"] = tokens.len().into();
        usage["usage"]["prompt_tokens"] = 21.into();
        usage["timings"]["predicted_n"] = tokens.len().into();
        usage["timings"]["predicted_ms"] = (first_token_at.elapsed().as_secs_f64() * 1000.0).into();
        tx.send(frame(&usage.to_string())).await.ok()?;
        tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await.ok()?;
        Some(())
    }
    .await;
    let mut log = shared.log.lock().unwrap();
    log.open -= 1;
    match sent_all {
        Some(()) => log.completed += 1,
        None => log.disconnected += 1,
    }
}
