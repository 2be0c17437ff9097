//! Logs and traces of the real `app` binary (a process has one tracing subscriber): spans
//! exported over OTLP to a collector stand-in, in the trace of the caller's `traceparent`, and
//! flushed at exit; nothing sent without an endpoint; JSON logs; no colour codes in a file.
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    http::{HeaderMap, StatusCode, Uri, header},
    response::IntoResponse,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{KeyValue, any_value::Value},
};
use prost::Message;
use testkit::{AppProcess, FakeLm, Knobs, app_process::free_port};
use uuid::Uuid;

use crate::helpers::{browser, fresh_database_url, reply_id, spawn_app, sse::EventReader};

/// The caller's trace and span, as its `traceparent` names them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// A span as the collector received it (ids in hex).
#[derive(Clone, Debug)]
struct Recorded {
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    /// Its resource's attributes (`service.name`, …).
    resource: HashMap<String, String>,
}

/// One request the collector got.
#[derive(Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
}

#[derive(Default)]
struct Seen {
    requests: Vec<Received>,
    spans: Vec<Recorded>,
}

/// An OTLP/HTTP collector stand-in: answers every request, decodes `POST /v1/traces`
/// (protobuf) and records its spans.
struct Collector {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    server: tokio::task::JoinHandle<()>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

impl Collector {
    async fn start(listener: tokio::net::TcpListener) -> Collector {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let recorder = seen.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let seen = recorder.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                seen.requests.push(Received {
                    path: uri.path().to_owned(),
                    headers: headers.clone(),
                });
                if uri.path() != "/v1/traces" {
                    return StatusCode::NOT_FOUND.into_response();
                }
                assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for resource_spans in request.resource_spans {
                    let resource = resource_spans
                        .resource
                        .map(|r| attributes(&r.attributes))
                        .unwrap_or_default();
                    for scope in resource_spans.scope_spans {
                        for span in scope.spans {
                            seen.spans.push(Recorded {
                                name: span.name,
                                trace_id: hex(&span.trace_id),
                                span_id: hex(&span.span_id),
                                parent_span_id: hex(&span.parent_span_id),
                                attributes: attributes(&span.attributes),
                                resource: resource.clone(),
                            });
                        }
                    }
                }
                (
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
                    .into_response()
            }
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Collector { addr, seen, server }
    }

    async fn on_any_port() -> Collector {
        Self::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spans(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().spans.clone()
    }

    fn requests(&self) -> usize {
        self.seen.lock().unwrap().requests.len()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An app process on a fake model server (titles off: one model request a message).
async fn start_app(
    data: &tempfile::TempDir,
    fake: &FakeLm,
    extra: &[(&str, String)],
) -> AppProcess {
    let mut envs = vec![
        ("DATABASE_URL", fresh_database_url(data.path()).await),
        ("LM_API_URL", fake.url()),
        ("TITLE_GENERATION", "off".to_owned()),
    ];
    envs.extend(extra.iter().cloned());
    let mut app = spawn_app(data.path(), &envs).await;
    app.wait_ready(Duration::from_secs(30)).await;
    app
}

/// A new chat, and a message in it sent with `traceparent` (when given) whose reply is read to
/// its end: the chat's and the reply's ids.
async fn chat_with_a_reply(base: &str, traceparent: Option<&str>) -> (Uuid, Uuid) {
    let client = browser();
    let created = client
        .post(format!("{base}/chats"))
        .form(&[("content", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    let chat: Uuid = created.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/chats/")
        .parse()
        .unwrap();
    let mut send = client
        .post(format!("{base}/chats/{chat}/messages"))
        .form(&[("content", "trace me")]);
    if let Some(traceparent) = traceparent {
        send = send.header("traceparent", traceparent);
    }
    let sent = send.send().await.unwrap();
    assert_eq!(sent.status(), 303);
    let reply = reply_id(&sent);
    let stream = format!("{base}/chats/{chat}/messages/{reply}/stream");
    let (status, _, reader) = EventReader::open(&client, &stream, None).await;
    assert_eq!(status, 200);
    let events = reader.unwrap().all().await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("done"));
    (chat, reply)
}

/// Stops the app with SIGTERM; it must exit cleanly.
async fn stop(app: AppProcess) -> String {
    let log = app.log.clone();
    let status = tokio::time::timeout(Duration::from_secs(30), app.stop())
        .await
        .expect("the app exits within 30 s")
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(status.success(), "exit {status}; the log:\n{log}");
    log
}

#[tokio::test]
async fn spans_reach_the_collector_in_the_callers_trace_and_are_flushed_at_exit() {
    let collector = Collector::on_any_port().await;
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLm::start(Knobs::default()).await;
    let secret = "collector-secret-7d1f";
    let app = start_app(
        &data,
        &fake,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                format!("x-collector-token={secret}"),
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=it".into(),
            ),
            // Nothing leaves before the exit (a batch waits a minute): what arrives was flushed.
            ("OTEL_BSP_SCHEDULE_DELAY", "60000".into()),
            // The SDK's own messages too, to show that they never carry the headers.
            (
                "RUST_LOG",
                "info,opentelemetry_sdk=debug,opentelemetry-otlp=debug,opentelemetry_http=debug"
                    .into(),
            ),
        ],
    )
    .await;
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let (chat, reply) = chat_with_a_reply(&app.base, Some(&traceparent)).await;
    assert_eq!(collector.requests(), 0, "exported before the batch was due");

    let log = stop(app).await;
    assert!(log.contains("exporting traces over OTLP"), "{log}");
    assert!(
        !log.contains(secret),
        "the collector's header is in the log:\n{log}"
    );
    let spans = collector.spans();
    let requests = collector.seen.lock().unwrap().requests.len();
    assert!(requests >= 1, "nothing exported at exit; the log:\n{log}");
    for received in &collector.seen.lock().unwrap().requests {
        assert_eq!(received.path, "/v1/traces");
        assert_eq!(received.headers["x-collector-token"], secret);
    }
    let in_trace: Vec<&Recorded> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let names: Vec<&str> = in_trace.iter().map(|s| s.name.as_str()).collect();
    let find = |name: &str| {
        in_trace
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in the trace: {names:?}; all: {spans:#?}"))
    };

    // The request is the caller's span's child.
    let request = in_trace
        .iter()
        .find(|s| {
            s.name == "request" && s.attributes.get("method").map(String::as_str) == Some("POST")
        })
        .unwrap_or_else(|| panic!("no POST request span in the trace: {in_trace:#?}"));
    assert_eq!(request.parent_span_id, PARENT_SPAN_ID);
    assert_eq!(request.attributes["path"], "/chats/{id}/messages");
    assert!(request.attributes.contains_key("request_id"));
    // The use case under it, the store's spans under that; the reply task's span under the use
    // case, and the store's spans of the reply under it.
    let send = find("send");
    assert_eq!(send.parent_span_id, request.span_id);
    assert_eq!(send.attributes["chat_id"], chat.to_string());
    assert_eq!(find("add_exchange").parent_span_id, send.span_id);
    let reply_span = find("reply");
    assert_eq!(reply_span.parent_span_id, send.span_id);
    assert_eq!(reply_span.attributes["chat_id"], chat.to_string());
    assert_eq!(reply_span.attributes["message_id"], reply.to_string());
    let finish = find("finish_reply");
    assert_eq!(finish.parent_span_id, reply_span.span_id);
    assert_eq!(finish.attributes["message_id"], reply.to_string());

    // Who sent them: the default service name, and what OTEL_RESOURCE_ATTRIBUTES adds.
    assert_eq!(request.resource["service.name"], "chat-app");
    assert_eq!(request.resource["deployment.environment"], "it");
    // Requests without a traceparent are traces of their own.
    assert!(
        spans
            .iter()
            .any(|s| s.name == "request" && s.trace_id != TRACE_ID && s.parent_span_id.is_empty()),
        "{spans:#?}"
    );
}

/// OTLP/HTTP's default endpoint: an app that exported without being told where would send here.
async fn collector_on_the_default_port() -> Collector {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::net::TcpListener::bind("127.0.0.1:4318").await {
            Ok(listener) => return Collector::start(listener).await,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                panic!("port 4318 (OTLP/HTTP's default) stays busy ({e}): stop what listens there")
            }
        }
    }
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported() {
    let collector = collector_on_the_default_port().await;
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLm::start(Knobs::default()).await;
    let app = start_app(
        &data,
        &fake,
        &[
            // The other variables alone turn nothing on; an empty endpoint is none.
            ("OTEL_EXPORTER_OTLP_ENDPOINT", String::new()),
            ("OTEL_SERVICE_NAME", "chat-it".into()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50".into()),
        ],
    )
    .await;
    chat_with_a_reply(
        &app.base,
        Some(&format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = stop(app).await;
    assert_eq!(
        collector.requests(),
        0,
        "sent to the default endpoint: {:#?}",
        collector.seen.lock().unwrap().requests
    );
    assert!(!log.contains("OTLP"), "{log}");
}

#[tokio::test]
async fn grpc_is_refused_at_start_with_what_to_set() {
    let data = tempfile::tempdir().unwrap();
    let mut app = spawn_app(
        data.path(),
        &[
            ("DATABASE_URL", fresh_database_url(data.path()).await),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4317".into(),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".into()),
        ],
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(30), app.child.wait())
        .await
        .expect("the app stops by itself")
        .unwrap();
    let log = app.log();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not built in"),
        "{log}"
    );
    assert!(log.contains("http/protobuf"), "{log}");
    assert!(!log.contains("listening on"), "{log}");
}

#[tokio::test]
async fn json_logs_are_one_object_a_line_with_the_spans_fields() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLm::start(Knobs::default()).await;
    // A fixed port: the test harness finds a port 0's address in a text log only.
    let port = free_port().unwrap();
    let app = start_app(
        &data,
        &fake,
        &[
            ("LOG_FORMAT", "json".into()),
            ("BIND_ADDR", format!("127.0.0.1:{port}")),
        ],
    )
    .await;
    let (chat, reply) = chat_with_a_reply(&app.base, None).await;
    let log = stop(app).await;

    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["target"].is_string(), "{line}");
    }
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with(&format!("listening on http://127.0.0.1:{port}")))),
        "{log}"
    );
    // The reply task's lines carry its span's fields: the chat and the message.
    let timings = lines
        .iter()
        .find(|l| l["message"] == "reply timings")
        .unwrap_or_else(|| panic!("no reply timings line: {log}"));
    assert_eq!(timings["span"]["name"], "reply", "{timings}");
    assert_eq!(timings["span"]["chat_id"], chat.to_string(), "{timings}");
    assert_eq!(
        timings["span"]["message_id"],
        reply.to_string(),
        "{timings}"
    );
    assert!(timings["predicted_n"].is_number(), "{timings}");
    let spans = timings["spans"].as_array().expect("the span list");
    assert!(spans.iter().any(|s| s["name"] == "reply"), "{timings}");
    assert!(!log.contains('\u{1b}'), "{log}");
}

#[tokio::test]
async fn a_text_log_in_a_file_has_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLm::start(Knobs::default()).await;
    let app = start_app(&data, &fake, &[]).await;
    let (chat, _) = chat_with_a_reply(&app.base, None).await;
    let log = stop(app).await;
    assert!(log.contains("listening on http://"), "{log}");
    // The span's fields still lead the reply task's lines.
    assert!(log.contains(&format!("reply{{chat_id={chat}")), "{log}");
    assert!(
        !log.contains("\u{1b}["),
        "colour codes in the log file:\n{log}"
    );
}
