//! Every option, as a CLI flag with an environment variable of the same meaning. The names are
//! a contract other tools rely on (compose.yaml, deploy/k8s); `app --help` lists them all, and
//! so does the book's reference, docs/src/running/configuration-reference.md, generated from
//! these definitions by app/tests/it/docs.rs (which fails while it is stale).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};

use crate::{
    limits::{Rate, RateLimitSettings},
    lm::FlashAttention,
};

/// `on`/`off` as well as `true`/`false`, as operators write it.
fn parse_on_off(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(format!("`{text}` is not on or off")),
    }
}

/// A path, or none for an empty value.
fn optional_path(text: &str) -> Result<Option<PathBuf>, String> {
    Ok((!text.trim().is_empty()).then(|| PathBuf::from(text.trim())))
}

/// A whole number, or none for an empty value (compose's `${USER_DAILY_REPLIES:-}`).
fn optional_count(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "" => Ok(None),
        count => count
            .parse()
            .map(Some)
            .map_err(|_| format!("`{count}` is not a whole number")),
    }
}

/// A URL, or none for an empty value.
fn optional_url(text: &str) -> Result<Option<url::Url>, String> {
    match text.trim() {
        "" => Ok(None),
        url => url::Url::parse(url)
            .map(Some)
            .map_err(|e| format!("`{url}` is not a URL: {e}")),
    }
}

/// `web_search,fetch_url`: the built-in tools named (an empty value: none).
fn builtin_tools(text: &str) -> Result<Vec<crate::tools::Builtin>, String> {
    use clap::ValueEnum;
    text.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            crate::tools::Builtin::from_str(name, true).map_err(|_| {
                format!("`{name}` is not a built-in tool (they are web_search and fetch_url)")
            })
        })
        .collect()
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "app",
    version,
    about = "A self-hosted chat web app over llama.cpp: embedded, or llama-server's API"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:3000")]
    pub bind_addr: SocketAddr,

    /// `sqlite://...` or `postgres://...`. Default: an SQLite file in the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Where the default SQLite database and the generated session key live.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Database connections in the pool. SQLite readers work in parallel beside its one writer
    /// (WAL); without this, sea-orm gives SQLite a single connection.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub db_max_connections: u32,

    /// How long start-up keeps retrying (with backoff) while the database is not reachable.
    #[arg(long, env = "DB_STARTUP_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub db_startup_timeout: Duration,

    /// Do not apply pending database migrations at start-up.
    #[arg(long, env = "SKIP_MIGRATIONS", action = ArgAction::Set, default_value_t = false)]
    pub skip_migrations: bool,

    /// The OpenAI-compatible base URL of llama-server (e.g. `http://127.0.0.1:8080/v1`). Unset:
    /// the embedded engine answers (llama.cpp in this process).
    #[arg(long, env = "LM_API_URL")]
    pub lm_api_url: Option<String>,

    /// Embedded engine: a local GGUF model file. Unset: LM_MODEL_REPO/LM_MODEL_FILE from the
    /// Hugging Face hub, downloaded once into its cache.
    #[arg(long, env = "LM_MODEL_PATH")]
    pub lm_model_path: Option<PathBuf>,

    /// Embedded engine: the hub repository of the model to download.
    #[arg(
        long,
        env = "LM_MODEL_REPO",
        default_value = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    )]
    pub lm_model_repo: String,

    /// Embedded engine: the GGUF file in LM_MODEL_REPO.
    #[arg(
        long,
        env = "LM_MODEL_FILE",
        default_value = "qwen2.5-0.5b-instruct-q4_k_m.gguf"
    )]
    pub lm_model_file: String,

    /// The Hugging Face hub to download from.
    #[arg(long, env = "HF_ENDPOINT", default_value = "https://huggingface.co")]
    pub hf_endpoint: String,

    /// A Hugging Face token, for gated or private models.
    #[arg(long, env = "HF_TOKEN", hide_env_values = true)]
    pub hf_token: Option<String>,

    /// The Hugging Face home; the model cache is `HF_HOME/hub` unless HF_HUB_CACHE says.
    #[arg(long, env = "HF_HOME")]
    pub hf_home: Option<PathBuf>,

    /// The Hugging Face model cache (default `HF_HOME/hub`, else `~/.cache/huggingface/hub`),
    /// shared with `huggingface-cli` and `llama-server -hf`.
    #[arg(long, env = "HF_HUB_CACHE")]
    pub hf_hub_cache: Option<PathBuf>,

    /// Use only the model cache, never the network.
    #[arg(long, env = "HF_HUB_OFFLINE", action = ArgAction::Set, default_value_t = false, value_parser = parse_on_off)]
    pub hf_hub_offline: bool,

    /// Embedded engine: a folder whose GGUF files (and those in its subfolders) join the model
    /// library, beside the Hugging Face cache and LM_MODEL_PATH. Default: DATA_DIR/models.
    #[arg(long, env = "LM_MODELS_DIR")]
    pub lm_models_dir: Option<PathBuf>,

    /// Embedded engine: models kept loaded at once. Loading another unloads the one used least
    /// recently first (never one writing a reply: the new one waits).
    #[arg(long, env = "LM_MAX_LOADED", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub lm_max_loaded: u32,

    /// Embedded engine: unload a model unused for this long (e.g. `30m`). Unset: models stay
    /// loaded until another needs the room.
    #[arg(long, env = "LM_MODEL_IDLE", value_parser = humantime::parse_duration)]
    pub lm_model_idle: Option<Duration>,

    /// Embedded engine: decoding threads. Default: the machine's physical cores.
    #[arg(long, env = "LM_THREADS")]
    pub lm_threads: Option<usize>,

    /// Embedded engine: context of each concurrent reply in tokens (prompt and reply), at most
    /// the model's training context. The engine holds MAX_CONCURRENT_GENERATIONS of them.
    #[arg(long, env = "LM_CTX_SIZE", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(256..))]
    pub lm_ctx_size: u32,

    /// Embedded engine: layers offloaded to a GPU (a build with the `cuda` or `vulkan`
    /// feature). Default: every layer when a GPU device is found, else 0.
    #[arg(long, env = "LM_GPU_LAYERS")]
    pub lm_gpu_layers: Option<u32>,

    /// Embedded engine: which of llama.cpp's CPU builds to run (`x64`, `sse42`, `sandybridge`,
    /// `haswell`, `skylakex`, `icelake`, `zen4`, `alderlake`, …: the `libggml-cpu-NAME.so` files).
    /// Default: the best one this CPU really runs, each tried first in a child process.
    #[arg(long, env = "LM_CPU_VARIANT")]
    pub lm_cpu_variant: Option<String>,

    /// Embedded engine: the folder of llama.cpp's backends (the CPU builds, and a GPU's).
    /// Default: `backends` beside this binary when it is there, else where the build put them.
    #[arg(long, env = "LM_BACKENDS_DIR")]
    pub lm_backends_dir: Option<PathBuf>,

    /// The program that tries a CPU build in a child process (`<program> probe-cpu-variant`).
    /// Default: this binary.
    #[arg(long, env = "LM_CPU_PROBE")]
    pub lm_cpu_probe: Option<PathBuf>,

    /// Embedded engine: flash attention. `auto` lets llama.cpp turn it on where the backend
    /// runs it for the model (as llama-server's `-fa auto`); `on` and `off` force it.
    #[arg(long, env = "LM_FLASH_ATTENTION", value_enum, default_value_t = FlashAttention::Auto)]
    pub lm_flash_attention: FlashAttention,

    /// Nucleus sampling: the smallest set of likeliest tokens whose probability reaches this.
    #[arg(long, env = "LM_TOP_P", default_value_t = 0.95)]
    pub lm_top_p: f32,

    /// Sampling seed, for repeatable replies. Default: a random seed for each reply.
    #[arg(long, env = "LM_SEED")]
    pub lm_seed: Option<u32>,

    /// Model name sent upstream. Default: whatever llama-server serves.
    #[arg(long, env = "LM_MODEL")]
    pub lm_model: Option<String>,

    /// API key sent upstream as a bearer token, if the server wants one.
    #[arg(long, env = "LM_API_KEY", hide_env_values = true)]
    pub lm_api_key: Option<String>,

    /// Upper bound on tokens generated for one reply.
    #[arg(long, env = "LM_MAX_TOKENS", default_value_t = 1024)]
    pub lm_max_tokens: u32,

    /// Sampling temperature.
    #[arg(long, env = "LM_TEMPERATURE", default_value_t = 0.7)]
    pub lm_temperature: f32,

    /// Context budget in tokens for the prompt sent upstream. Default: the server's `n_ctx`.
    #[arg(long, env = "LM_CONTEXT_TOKENS")]
    pub lm_context_tokens: Option<u32>,

    /// How long to wait for the first token (llama-server queues requests when its slots are busy).
    #[arg(long, env = "LM_FIRST_TOKEN_TIMEOUT", default_value = "120s", value_parser = humantime::parse_duration)]
    pub lm_first_token_timeout: Duration,

    /// How long a reply may wait for a generation slot (`MAX_CONCURRENT_GENERATIONS`) before it
    /// ends with an error.
    #[arg(long, env = "LM_QUEUE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub lm_queue_timeout: Duration,

    /// How long the model may go silent between two tokens before the reply is an error.
    #[arg(long, env = "LM_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub lm_idle_timeout: Duration,

    /// Memory for rendered chat pages, in MiB (0: none). A kept page is served only while the
    /// session's version in the database and this replica's model list still match it.
    #[arg(long, env = "PAGE_CACHE_MIB", default_value_t = 64)]
    pub page_cache_mib: usize,

    /// Connections served at once; further clients wait in the listen backlog until one closes
    /// (each open reply stream holds one; raise the process's file limit to match).
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Time a client has to send a request's headers; a client that does not is dropped (a
    /// half-open connection otherwise holds its memory for ever).
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub header_read_timeout: Duration,

    /// Replies generated at once across all chats (match llama-server's `--parallel`).
    #[arg(long, env = "MAX_CONCURRENT_GENERATIONS", default_value_t = 4)]
    pub max_concurrent_generations: usize,

    /// How often a streaming reply's text is saved to the database.
    #[arg(long, env = "CHECKPOINT_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: Duration,

    /// This replica's name among the app's replicas (it owns the replies it writes). Default:
    /// the host name and the port of `BIND_ADDR`, stable across restarts of one instance.
    #[arg(long, env = "REPLICA_NAME")]
    pub replica_name: Option<String>,

    /// How long a replica's claim on a reply it writes lasts without renewal (it renews every
    /// third of it). A reply whose replica died is marked interrupted by a survivor within
    /// about this long.
    #[arg(long, env = "REPLY_LEASE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub reply_lease: std::time::Duration,

    /// Serve Prometheus metrics at `http://<this>/metrics` (a separate listener, for the scraper
    /// only; nginx does not expose it). Unset: no metrics are recorded.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// The log's format on stdout: `text` (a line an event, coloured only on a terminal) or
    /// `json` (one JSON object a line, with the fields of the spans the event happened in: the
    /// request's, the chat and message ids), for log shippers. RUST_LOG filters both. Traces
    /// are the OTEL_* variables' (docs/src/observability.md).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
    pub log_format: crate::telemetry::LogFormat,

    /// Interval of SSE keep-alive comments.
    #[arg(long, env = "SSE_KEEPALIVE", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_keepalive: Duration,

    /// How long in-flight replies may go on after SIGTERM before they are saved as interrupted.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// The operator's secret: with it (`Authorization: Bearer`, or signed in at /admin) the
    /// model library can be changed (downloads, removals, the default). Unset: nobody can.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Cookie encryption key: base64 of at least 64 bytes (`openssl rand -base64 64`).
    /// Default: generated once and kept in the data directory.
    #[arg(long, env = "SESSION_KEY", hide_env_values = true)]
    pub session_key: Option<String>,

    /// Mark the session cookie `Secure` (set when served over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", action = ArgAction::Set, default_value_t = false)]
    pub cookie_secure: bool,

    /// The system prompt sent first in every chat.
    #[arg(
        long,
        env = "SYSTEM_PROMPT",
        default_value = "You are a helpful assistant."
    )]
    pub system_prompt: String,

    /// The assistant message a new chat opens with (empty: none).
    #[arg(
        long,
        env = "GREETING",
        default_value = "Hello! How can I help you today?"
    )]
    pub greeting: String,

    /// After a chat's first reply, ask the model for a short title in the background (`off`:
    /// the first words of the first message stay the title).
    #[arg(long, env = "TITLE_GENERATION", action = ArgAction::Set, default_value_t = true, value_parser = parse_on_off)]
    pub title_generation: bool,

    /// Largest chat export that can be imported, in bytes (an export carries its chat's files,
    /// base64: a third larger than they are).
    #[arg(long, env = "MAX_IMPORT_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_import_bytes: usize,

    /// Memory a PDF's text extraction may use, in MiB: it runs in a child process the kernel
    /// holds to this (a compressed PDF can unpack to thousands of times its size).
    #[arg(long, env = "PDF_MEMORY_MIB", default_value_t = 512)]
    pub pdf_memory_mib: u64,

    /// CPU seconds a PDF's text extraction may take (the wall-clock limit is twice this).
    #[arg(long, env = "PDF_SECONDS", default_value_t = 10)]
    pub pdf_seconds: u64,

    /// The program that extracts a PDF's text (`<program> extract-pdf`). Default: this binary.
    #[arg(long, env = "PDF_READER")]
    pub pdf_reader: Option<PathBuf>,

    /// Most files one message may carry (0: attachments are off).
    #[arg(long, env = "MAX_ATTACHMENTS", default_value_t = 5)]
    pub max_attachments: usize,

    /// Largest file that can be attached to a message, in bytes.
    #[arg(long, env = "MAX_ATTACHMENT_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_attachment_bytes: usize,

    /// Largest message a user may send, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 32 * 1024)]
    pub max_message_bytes: usize,

    /// Rate limits on sends and chat creation (`off` turns them all off).
    #[arg(long, env = "RATE_LIMITS", action = ArgAction::Set, default_value_t = true, value_parser = parse_on_off)]
    pub rate_limits: bool,

    /// Messages (and regenerations) one session may send: the whole amount at once, then evenly
    /// over the period.
    #[arg(long, env = "SEND_RATE_PER_SESSION", default_value = "20/min")]
    pub send_rate_per_session: Rate,

    /// Messages one client address may send, across its sessions.
    #[arg(long, env = "SEND_RATE_PER_ADDRESS", default_value = "120/min")]
    pub send_rate_per_address: Rate,

    /// Chats one session may create.
    #[arg(long, env = "CHAT_RATE_PER_SESSION", default_value = "10/min")]
    pub chat_rate_per_session: Rate,

    /// Chats one client address may create, across its sessions.
    #[arg(long, env = "CHAT_RATE_PER_ADDRESS", default_value = "60/min")]
    pub chat_rate_per_address: Rate,

    /// Views of shared links (`/s/...`) one client address may open: anyone may open a link.
    #[arg(long, env = "SHARE_VIEW_RATE_PER_ADDRESS", default_value = "120/min")]
    pub share_view_rate_per_address: Rate,

    /// How long a temporary chat is kept after its last use; then it is deleted with everything
    /// in it.
    #[arg(long, env = "TEMPORARY_CHAT_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub temporary_chat_ttl: std::time::Duration,

    /// A JSON file listing MCP servers whose tools replies may call, in the `mcpServers`
    /// shape (Claude Desktop, VS Code, Cursor): `command`/`args`/`env` for stdio, `url`/`headers`
    /// for streamable HTTP. Empty: none.
    // (`::std::option::Option`: clap's own handling of `Option` would refuse an empty value,
    // which compose's `${MCP_SERVERS:-}` gives.)
    #[arg(long, env = "MCP_SERVERS", default_value = "", value_parser = optional_path)]
    pub mcp_servers: ::std::option::Option<PathBuf>,

    /// Built-in tools replies may call, comma-separated: `web_search` (needs SEARXNG_URL),
    /// `fetch_url`. Empty: none.
    #[arg(long, env = "BUILTIN_TOOLS", default_value = "", value_parser = builtin_tools)]
    pub builtin_tools: ::std::vec::Vec<crate::tools::Builtin>,

    /// SearXNG's base URL for `web_search` (its `json` format enabled in its settings).
    /// Empty: none.
    #[arg(long, env = "SEARXNG_URL", default_value = "", value_parser = optional_url)]
    pub searxng_url: ::std::option::Option<url::Url>,

    /// Let `fetch_url` reach loopback, private, link-local and unique-local addresses (this
    /// machine and its networks). Off: only public addresses, however written.
    #[arg(long, env = "FETCH_ALLOW_PRIVATE", action = ArgAction::Set, default_value_t = false, value_parser = parse_on_off)]
    pub fetch_allow_private: bool,

    /// Rounds of tool calls one reply may make; then it must answer in words.
    #[arg(long, env = "TOOL_MAX_STEPS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub tool_max_steps: u32,

    /// Longest one tool call may take.
    #[arg(long, env = "TOOL_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub tool_timeout: Duration,

    /// Most bytes of a tool's result given to the model (and kept with the reply).
    #[arg(long, env = "TOOL_RESULT_BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u64).range(256..=1_048_576))]
    pub tool_result_bytes: u64,

    /// Who may use the app: `anonymous` (anyone, each browser its own session), `oidc` (people
    /// sign in with OpenID Connect: OIDC_*, PUBLIC_URL) or `header` (a trusted proxy names them:
    /// AUTH_HEADER, TRUSTED_PROXIES).
    #[arg(long, env = "AUTH_MODE", value_enum, default_value_t = crate::accounts::AuthMode::Anonymous)]
    pub auth_mode: crate::accounts::AuthMode,

    /// The OpenID provider's issuer URL (its `/.well-known/openid-configuration` is read).
    #[arg(long, env = "OIDC_ISSUER", default_value = "")]
    pub oidc_issuer: ::std::string::String,

    /// This app's client id at the provider.
    #[arg(long, env = "OIDC_CLIENT_ID", default_value = "")]
    pub oidc_client_id: ::std::string::String,

    /// This app's client secret at the provider (empty: a public client, PKCE alone).
    #[arg(
        long,
        env = "OIDC_CLIENT_SECRET",
        default_value = "",
        hide_env_values = true
    )]
    pub oidc_client_secret: ::std::string::String,

    /// The scopes asked for, space-separated.
    #[arg(long, env = "OIDC_SCOPES", default_value = "openid email profile")]
    pub oidc_scopes: String,

    /// Where people reach the app (`https://chat.example.org`): the sign-in's redirect URI is
    /// PUBLIC_URL/auth/callback.
    #[arg(long, env = "PUBLIC_URL", default_value = "", value_parser = optional_url)]
    pub public_url: ::std::option::Option<url::Url>,

    /// The header a trusted proxy names the user in (`X-Forwarded-Email` for oauth2-proxy,
    /// `Remote-Email` for Authelia, `Cf-Access-Authenticated-User-Email` for Cloudflare Access).
    #[arg(long, env = "AUTH_HEADER", default_value = "")]
    pub auth_header: ::std::string::String,

    /// The addresses or CIDR ranges the proxy connects from, comma-separated; a request from
    /// anywhere else is refused (AUTH_MODE=header).
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = crate::accounts::parse_trusted_proxies)]
    pub trusted_proxies: ::std::vec::Vec<ipnet::IpNet>,

    /// The e-mail addresses of the admins, comma-separated (accounts on).
    #[arg(long, env = "ADMIN_EMAILS", default_value = "")]
    pub admin_emails: String,

    /// Groups (the ID token's `groups` claim) whose members are admins, comma-separated.
    #[arg(long, env = "ADMIN_GROUPS", default_value = "")]
    pub admin_groups: String,

    /// Replies one person may ask for in a UTC day (accounts on). Unset: no limit.
    #[arg(long, env = "USER_DAILY_REPLIES", default_value = "", value_parser = optional_count)]
    pub user_daily_replies: ::std::option::Option<u64>,

    /// Tokens the model may write for one person in a UTC day (accounts on). Unset: no limit.
    #[arg(long, env = "USER_DAILY_TOKENS", default_value = "", value_parser = optional_count)]
    pub user_daily_tokens: ::std::option::Option<u64>,

    /// Reply streams one session may hold open at once.
    #[arg(long, env = "MAX_STREAMS_PER_SESSION", default_value_t = 8)]
    pub max_streams_per_session: usize,

    /// Take the client address from `X-Real-IP` (set by our nginx.conf) when the request comes
    /// from this host or a private network. Only behind a proxy that sets it.
    #[arg(long, env = "TRUST_PROXY_HEADERS", action = ArgAction::Set, default_value_t = false)]
    pub trust_proxy_headers: bool,

    /// Read the minijinja templates from this directory (development). Default: the ones built
    /// into the binary.
    #[arg(long, env = "TEMPLATE_DIR")]
    pub template_dir: Option<PathBuf>,

    /// Do not serve: check that the app listening on BIND_ADDR answers /healthz, exit 0 if so
    /// (for container health checks).
    #[arg(long)]
    pub healthcheck: bool,

    /// Serve the static files (htmx, CSS, JS) from this directory (development). Default: the
    /// ones built into the binary.
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
}

impl Config {
    /// Every option at its default, whatever the environment says: for tests and tools, which
    /// then set what they need, so that a developer's `LM_API_URL` or `DATABASE_URL` never
    /// changes what a test runs against.
    pub fn defaults() -> Self {
        use clap::{CommandFactory, FromArgMatches};
        let command = Self::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["app"]);
        // Every option has a default or is optional, so the empty command line always parses.
        Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    pub fn rate_limit_settings(&self) -> Option<RateLimitSettings> {
        self.rate_limits.then_some(RateLimitSettings {
            sends_per_session: self.send_rate_per_session,
            sends_per_address: self.send_rate_per_address,
            chats_per_session: self.chat_rate_per_session,
            chats_per_address: self.chat_rate_per_address,
            share_views_per_address: self.share_view_rate_per_address,
        })
    }
    /// This replica's name: `REPLICA_NAME`, or `<host name>:<port>`.
    pub fn replica_name(&self) -> String {
        if let Some(name) = self
            .replica_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
        {
            return name.trim().to_owned();
        }
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "app".into());
        format!("{host}:{}", self.bind_addr.port())
    }

    /// Threads of the embedded engine: `LM_THREADS`, or the physical cores.
    pub fn lm_threads(&self) -> usize {
        self.lm_threads
            .unwrap_or_else(num_cpus::get_physical)
            .max(1)
    }

    /// The model library's folder: `LM_MODELS_DIR`, else `DATA_DIR/models`.
    pub fn lm_models_dir(&self) -> PathBuf {
        self.lm_models_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// The Hugging Face model cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`.
    pub fn hf_hub_cache(&self) -> PathBuf {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        crate::hub::default_cache_dir(
            self.hf_hub_cache.as_deref(),
            self.hf_home.as_deref(),
            home.as_deref(),
        )
    }

    /// The database to use: `DATABASE_URL`, or an SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("app.db").display()
            ),
        }
    }

    /// The largest request body accepted: a message at the size limit, form-encoded (each byte
    /// may become `%XX`), plus room for the other fields.
    pub fn body_limit(&self) -> usize {
        self.max_message_bytes * 3 + 16 * 1024
    }

    /// The largest request that sends a message: the message and its files at their limits,
    /// as base64 (the JSON API's encoding, larger than a form's multipart), plus room.
    pub fn message_body_limit(&self) -> usize {
        self.body_limit() + self.max_attachments * self.max_attachment_bytes.div_ceil(3) * 4
    }

    /// How PDFs are read: by which program, within what limits.
    pub fn pdf_limits(&self) -> crate::pdf_text::PdfLimits {
        crate::pdf_text::PdfLimits {
            program: self
                .pdf_reader
                .clone()
                .or_else(|| std::env::current_exe().ok())
                .unwrap_or_else(|| PathBuf::from("app")),
            memory_bytes: self.pdf_memory_mib.saturating_mul(1024 * 1024),
            seconds: self.pdf_seconds.max(1),
        }
    }

    /// What the tools are and their bounds; the `MCP_SERVERS` file is read here.
    pub fn tool_settings(&self) -> anyhow::Result<crate::tools::ToolSettings> {
        let mcp_servers = match &self.mcp_servers {
            Some(path) => crate::tools::mcp::read_config(path)?,
            None => Vec::new(),
        };
        Ok(crate::tools::ToolSettings {
            mcp_servers,
            builtins: self.builtin_tools.clone(),
            searxng_url: self.searxng_url.clone(),
            fetch: crate::tools::FetchPolicy {
                allow_private: self.fetch_allow_private,
                exempt: Vec::new(),
            },
            max_steps: self.tool_max_steps,
            timeout: self.tool_timeout,
            result_bytes: usize::try_from(self.tool_result_bytes).unwrap_or(usize::MAX),
        })
    }

    /// Who may use the app and how they sign in: checked at start (a missing OIDC_ISSUER with
    /// AUTH_MODE=oidc stops it with a message saying what to set).
    pub fn account_settings(&self) -> anyhow::Result<crate::accounts::AccountSettings> {
        crate::accounts::AccountSettings::new(crate::accounts::AccountOptions {
            mode: self.auth_mode,
            oidc_issuer: &self.oidc_issuer,
            oidc_client_id: &self.oidc_client_id,
            oidc_client_secret: &self.oidc_client_secret,
            oidc_scopes: &self.oidc_scopes,
            public_url: self.public_url.as_ref(),
            auth_header: &self.auth_header,
            trusted_proxies: &self.trusted_proxies,
            admin_emails: &self.admin_emails,
            admin_groups: &self.admin_groups,
            daily_replies: self.user_daily_replies,
            daily_tokens: self.user_daily_tokens,
        })
    }

    /// What the attachment limits are.
    pub fn attachment_limits(&self) -> crate::attachments::Limits {
        crate::attachments::Limits {
            max_count: self.max_attachments,
            max_bytes: self.max_attachment_bytes,
        }
    }

    /// The largest import request: the export plus room for the multipart framing.
    pub fn import_body_limit(&self) -> usize {
        self.max_import_bytes + 64 * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::Config;

    /// The flags alone, without the environment (another test's to change): an environment
    /// variable's value goes through the same parsers. The error as clap writes it.
    fn parse(args: &[&str]) -> Result<Config, String> {
        use clap::{CommandFactory, FromArgMatches};
        Config::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(args)
            .and_then(|matches| Config::from_arg_matches(&matches))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn tool_settings_take_empty_values_as_none_and_name_a_wrong_tool() {
        let parsed = parse(&[
            "app",
            "--builtin-tools",
            "",
            "--mcp-servers",
            "",
            "--searxng-url",
            "",
        ])
        .expect("empty values are none");
        assert!(parsed.builtin_tools.is_empty());
        assert_eq!(parsed.mcp_servers, None);
        assert_eq!(parsed.searxng_url, None);
        let parsed =
            parse(&["app", "--builtin-tools", "fetch_url, web_search"]).expect("two tools");
        assert_eq!(
            parsed.builtin_tools,
            [
                crate::tools::Builtin::FetchUrl,
                crate::tools::Builtin::WebSearch
            ]
        );
        let wrong = parse(&["app", "--builtin-tools", "fetch_url,rm_rf"])
            .expect_err("no such tool")
            .to_string();
        assert!(wrong.contains("`rm_rf` is not a built-in tool"), "{wrong}");
    }

    #[test]
    fn an_empty_quota_is_no_quota() {
        let config = parse(&[
            "app",
            "--user-daily-replies",
            "",
            "--user-daily-tokens",
            " 5000 ",
        ])
        .unwrap();
        assert_eq!(config.user_daily_replies, None);
        assert_eq!(config.user_daily_tokens, Some(5000));
        assert!(parse(&["app", "--user-daily-replies", "many"]).is_err());
    }

    #[test]
    fn the_log_format_is_text_or_json() {
        use crate::telemetry::LogFormat;
        assert_eq!(parse(&["app"]).unwrap().log_format, LogFormat::Text);
        assert_eq!(
            parse(&["app", "--log-format", "json"]).unwrap().log_format,
            LogFormat::Json
        );
        let wrong = parse(&["app", "--log-format", "logfmt"]).unwrap_err();
        assert!(wrong.contains("text") && wrong.contains("json"), "{wrong}");
    }

    #[test]
    fn defaults_ignore_the_environment() {
        // SAFETY: no other test of this crate reads these variables.
        unsafe {
            std::env::set_var("LM_CTX_SIZE", "123");
            std::env::set_var("LM_API_URL", "http://elsewhere:1/v1");
        }
        let config = Config::defaults();
        assert_eq!(config.lm_ctx_size, 4096);
        assert_eq!(config.lm_api_url, None);
        unsafe {
            std::env::remove_var("LM_CTX_SIZE");
            std::env::remove_var("LM_API_URL");
        }
    }
}
