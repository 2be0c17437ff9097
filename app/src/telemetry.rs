//! Logs and traces. `init` installs the one `tracing` subscriber of the process: the log on
//! stdout (`LOG_FORMAT`: text, coloured only on a terminal, or one JSON object a line with the
//! fields of its spans), filtered by `RUST_LOG`; and, only when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, the spans exported over OTLP
//! (http/protobuf) through our reqwest. Without an endpoint no OpenTelemetry layer exists: a
//! request costs what it did before. `Telemetry::shutdown` exports the last spans before the
//! process ends. docs/src/observability.md says what an operator sets and sees.
use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::Context;
use opentelemetry::{KeyValue, propagation::TextMapPropagator, trace::TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response, ResponseBodyTooLarge};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    resource::{EnvResourceDetector, TelemetryResourceDetector},
    trace::SdkTracerProvider,
};
use tracing::{Level, Metadata};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt,
};

/// `LOG_FORMAT`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line an event, its spans' fields before it (`reply{chat_id=… message_id=…}`).
    #[default]
    Text,
    /// One JSON object a line: `timestamp`, `level`, `message` and the event's fields, `target`,
    /// `span` (the innermost span's name and fields) and `spans` (all of them, outermost first).
    Json,
}

/// `service.name` when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
pub const DEFAULT_SERVICE_NAME: &str = "chat-app";

/// The OTLP exporter's wait for the collector, when `OTEL_EXPORTER_OTLP_TIMEOUT` does not say
/// (the specification's default).
const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a collector's answer read (as the exporter's own clients do).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Whether spans are exported: only then is a request's `traceparent` read.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The tracing set up by `init`; `shutdown` exports the spans still queued.
#[must_use = "call shutdown when the app stops, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// The log on stdout, and the OTLP export if configured. An error (e.g.
/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`) says what to change; nothing is installed then.
/// Called once, inside the runtime (the exporter's requests run on it).
pub fn init(format: LogFormat) -> anyhow::Result<Telemetry> {
    let export = export_settings(|name| std::env::var(name).ok())
        .map_err(anyhow::Error::msg)
        .context("OpenTelemetry")?;
    let provider = export
        .as_ref()
        .map(|export| tracer_provider(export.timeout))
        .transpose()?;

    // llama.cpp reports every detail of loading a model at info: only its warnings by default.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,llama-cpp-2=warn"));
    // Colours only for a person at a terminal: a file or a log collector gets plain text.
    let ansi = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
    let log = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(filter)
            .boxed(),
    };
    // Its own filter: the store's spans (debug) are exported whatever RUST_LOG keeps in the log.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("app"))
            .with_filter(filter_fn(exported))
    });
    tracing_subscriber::registry()
        .with(log)
        .with(traces)
        .try_init()
        .context("the tracing subscriber was installed already")?;
    if let Some(export) = &export {
        EXPORTING.store(true, Ordering::Relaxed);
        tracing::info!(
            endpoint = %crate::redact(&export.endpoint),
            "exporting traces over OTLP (http/protobuf)"
        );
    }
    Ok(Telemetry { provider })
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter (within the SDK's 5 s).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        EXPORTING.store(false, Ordering::Relaxed);
        // The SDK blocks until its exporting thread is done; that thread's requests run on this
        // runtime, so the wait must leave the runtime's workers free.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "exporting the last traces failed"),
            Err(error) => tracing::warn!(%error, "exporting the last traces failed"),
        }
    }
}

/// With OTLP on, a request carrying a W3C `traceparent` becomes part of the caller's trace:
/// `span` (the request's, not yet entered) gets the caller's span as its parent. Otherwise
/// nothing, not even a header lookup.
pub fn follow_traceparent(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !EXPORTING.load(Ordering::Relaxed) || !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    // Fails only for a span no layer records (filtered out): then there is nothing to link.
    let _ = span.set_parent(parent);
}

/// What the OTLP export is to be, from the standard variables the SDK does not check for us.
#[derive(Debug, PartialEq)]
struct ExportSettings {
    /// Where spans go (for the log; the exporter reads the variables itself).
    endpoint: String,
    /// How long one export may wait for the collector (our HTTP client's bound).
    timeout: Duration,
}

/// `None`: no export (no endpoint, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`).
/// An error for what this build cannot do, rather than the SDK's silent fallback: gRPC and
/// http/json are not built in. `var` gives a variable's value (unset or empty: none).
fn export_settings(var: impl Fn(&str) -> Option<String>) -> Result<Option<ExportSettings>, String> {
    let var = |name: &str| {
        var(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    };
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match var("OTEL_TRACES_EXPORTER").map(|v| v.to_ascii_lowercase()) {
        None => {}
        Some(exporter) if exporter == "otlp" => {}
        Some(exporter) if exporter == "none" => return Ok(None),
        Some(exporter) => {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={exporter} is not supported: use otlp (or none)"
            ));
        }
    }
    // The signal's own endpoint is used as it is; the general one gets the signal's path.
    let endpoint = match (
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        var("OTEL_EXPORTER_OTLP_ENDPOINT"),
    ) {
        (Some(traces), _) => traces,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) => return Ok(None),
    };
    let (protocol_var, protocol) = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| var(name).map(|value| (name, value)))
    .unwrap_or(("", "http/protobuf".to_owned()));
    match protocol.as_str() {
        "http/protobuf" => {}
        "grpc" | "http/json" => {
            return Err(format!(
                "{protocol_var}={protocol} is not built in: this app exports over http/protobuf \
                 only; set {protocol_var}=http/protobuf (or unset it) and point \
                 OTEL_EXPORTER_OTLP_ENDPOINT at the collector's OTLP/HTTP port (usually 4318)"
            ));
        }
        other => {
            return Err(format!(
                "{protocol_var}={other} is not a protocol: use http/protobuf"
            ));
        }
    }
    let timeout = match [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .into_iter()
    .find_map(|name| var(name).map(|value| (name, value)))
    {
        None => DEFAULT_EXPORT_TIMEOUT,
        Some((name, value)) => value
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| format!("{name}={value} is not a whole number of milliseconds"))?,
    };
    Ok(Some(ExportSettings { endpoint, timeout }))
}

/// The tracer provider: a batch of spans at a time to the OTLP endpoint (`OTEL_BSP_*`), sampled
/// as `OTEL_TRACES_SAMPLER` says (default: the caller's decision, else every trace), with
/// the resource `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` describe. The SDK reads
/// these, the endpoint, `OTEL_EXPORTER_OTLP_HEADERS` and the timeout itself.
fn tracer_provider(timeout: Duration) -> anyhow::Result<SdkTracerProvider> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("the OTLP exporter's HTTP client")?;
    let runtime = tokio::runtime::Handle::try_current()
        .context("the OTLP exporter needs the tokio runtime")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(OtlpHttp { client, runtime })
        .build()
        .context("the OTLP exporter")?;
    let mut resource = Resource::builder_empty()
        .with_service_name(DEFAULT_SERVICE_NAME)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_detector(Box::new(EnvResourceDetector::new()));
    if let Some(name) = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|name| !name.trim().is_empty())
    {
        resource = resource.with_service_name(name);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// What is exported: the app's spans from debug on (the store's are debug), other crates'
/// from info; events (a span's events) from info, llama.cpp's from warn. Never the SDK's own
/// messages (they would be about the export itself).
fn exported(metadata: &Metadata<'_>) -> bool {
    is_exported(metadata.target(), *metadata.level(), metadata.is_span())
}

fn is_exported(target: &str, level: Level, span: bool) -> bool {
    if target.starts_with("opentelemetry") {
        return false;
    }
    let ours = target == "app" || target.starts_with("app::");
    let least = if span && ours {
        Level::DEBUG
    } else if target.starts_with("llama") {
        Level::WARN
    } else {
        Level::INFO
    };
    level <= least
}

/// The exporter's HTTP client: our reqwest (one HTTP and TLS stack in the app). The SDK exports
/// from a thread of its own, outside the runtime, so each request is run on the runtime.
#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move {
                let mut response = client.execute(reqwest::Request::try_from(request)?).await?;
                let mut body = Vec::new();
                while let Some(chunk) = response.chunk().await? {
                    if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                        return Err(Box::new(ResponseBodyTooLarge::new()) as HttpError);
                    }
                    body.extend_from_slice(&chunk);
                }
                let mut answer = Response::new(Bytes::from(body));
                *answer.status_mut() = response.status();
                *answer.headers_mut() = std::mem::take(response.headers_mut());
                Ok(answer)
            })
            .await?
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use super::{ExportSettings, export_settings, is_exported};

    fn settings(vars: &[(&str, &str)]) -> Result<Option<ExportSettings>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        export_settings(|name| vars.get(name).cloned())
    }

    #[test]
    fn no_endpoint_no_export() {
        assert_eq!(settings(&[]), Ok(None));
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        // Other variables alone turn nothing on.
        assert_eq!(
            settings(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            ]),
            Ok(None)
        );
    }

    #[test]
    fn the_traces_path_follows_the_general_endpoint_only() {
        let export = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .unwrap();
        assert_eq!(export.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(export.timeout, Duration::from_secs(10));
        let export = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://other:4318/traces",
            ),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(export.endpoint, "http://other:4318/traces");
    }

    #[test]
    fn grpc_and_json_are_refused_with_what_to_set() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317");
        let grpc = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(grpc.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc"), "{grpc}");
        assert!(grpc.contains("http/protobuf"), "{grpc}");
        let json = settings(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ])
        .unwrap_err();
        assert!(
            json.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json"),
            "{json}"
        );
        let typo = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http")]).unwrap_err();
        assert!(typo.contains("not a protocol"), "{typo}");
        // The signal's own variable wins over the general one.
        assert!(
            settings(&[
                endpoint,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ])
            .unwrap()
            .is_some()
        );
        assert!(
            settings(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")])
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn disabled_none_and_other_exporters() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            settings(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]),
            Ok(None)
        );
        assert_eq!(
            settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            Ok(None)
        );
        assert!(
            settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")])
                .unwrap()
                .is_some()
        );
        assert!(
            settings(&[endpoint, ("OTEL_SDK_DISABLED", "false")])
                .unwrap()
                .is_some()
        );
        let zipkin = settings(&[endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(zipkin.contains("zipkin"), "{zipkin}");
    }

    #[test]
    fn the_timeout_is_in_milliseconds() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let export = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500")])
            .unwrap()
            .unwrap();
        assert_eq!(export.timeout, Duration::from_millis(2500));
        let export = settings(&[
            endpoint,
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "700"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(export.timeout, Duration::from_millis(700));
        let wrong = settings(&[endpoint, ("OTEL_EXPORTER_OTLP_TIMEOUT", "5s")]).unwrap_err();
        assert!(wrong.contains("milliseconds"), "{wrong}");
    }

    #[test]
    fn the_store_spans_are_exported_but_not_the_sdks_messages() {
        use tracing::Level;
        let (span, event) = (true, false);
        assert!(is_exported("app::store::exchanges", Level::DEBUG, span));
        assert!(is_exported("app", Level::INFO, span));
        assert!(!is_exported("app::store", Level::TRACE, span));
        assert!(!is_exported("app::store", Level::DEBUG, event));
        assert!(is_exported("app::generation::round", Level::INFO, event));
        assert!(!is_exported("application", Level::DEBUG, span));
        assert!(!is_exported("sqlx::query", Level::DEBUG, span));
        assert!(is_exported("tower_http::trace", Level::INFO, span));
        assert!(!is_exported("opentelemetry_sdk", Level::ERROR, event));
        assert!(!is_exported("opentelemetry-otlp", Level::WARN, event));
        assert!(!is_exported("llama-cpp-2", Level::INFO, event));
        assert!(is_exported("llama-cpp-2", Level::WARN, event));
    }
}
