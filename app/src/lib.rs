//! A self-hosted chat web app over llama.cpp (embedded, or llama-server's API). `serve`
//! connects the database, applies migrations, starts the engine, builds the state and the
//! router (`routes::router`), and serves until SIGINT/SIGTERM. ARCHITECTURE.md maps the modules.
pub mod accounts;
pub mod assets;
pub mod attachments;
pub mod chat;
pub mod config;
pub mod domain;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod engine;
pub mod error;
pub mod generation;
pub mod highlight;
pub mod hub;
pub mod limits;
pub mod live;
pub mod lm;
pub mod metrics;
pub mod operator;
pub mod page_cache;
pub mod pdf_text;
pub mod render;
pub mod routes;
pub mod server;
pub mod session;
pub mod store;
pub mod stream;
pub mod telemetry;
pub mod tools;

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use axum::extract::FromRef;
use axum_extra::extract::cookie::Key;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    engine::Engine,
    generation::{GenerationSettings, Generations},
    limits::{RateLimits, StreamSlots},
    lm::{LmClient, LmSettings},
    render::Templates,
    session::SessionConfig,
    store::Store,
};

/// Everything a request handler may use; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub templates: Templates,
    pub sessions: SessionConfig,
    pub lm: Engine,
    /// The tools replies may call (built in, and the MCP servers').
    pub tools: tools::Toolbox,
    pub generations: Generations,
    /// Cancelled when in-flight replies have been saved at shutdown: open streams end then.
    pub closing: CancellationToken,
    pub rate_limits: RateLimits,
    pub stream_slots: StreamSlots,
    /// Rendered chat pages (see `page_cache`).
    pub pages: Arc<page_cache::PageCache>,
    /// The streams here following replies other replicas write (`live`; PostgreSQL only).
    pub live: live::Feed,
    /// Accounts (`AUTH_MODE`): who may use the app, the OpenID provider, quotas.
    pub accounts: Arc<accounts::layer::Accounts>,
}

impl FromRef<AppState> for SessionConfig {
    fn from_ref(state: &AppState) -> SessionConfig {
        state.sessions.clone()
    }
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.sessions.key.clone()
    }
}

impl AppState {
    /// Connects the database (applying migrations unless told not to), loads the session key
    /// and the templates, and starts the engine the configuration names.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with(config, engine_from_config).await
    }

    /// [`Self::build`] with the engine made by `make_engine` (tests share one embedded engine:
    /// llama.cpp's backend starts once per process).
    pub async fn build_with(
        config: Config,
        make_engine: impl FnOnce(&Config) -> anyhow::Result<Engine>,
    ) -> anyhow::Result<Self> {
        let database_url = config.database_url();
        if database_url.starts_with("sqlite:") && config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir).with_context(|| {
                format!("cannot create data directory {}", config.data_dir.display())
            })?;
        }
        let store = connect_with_retry(
            &database_url,
            config.db_max_connections,
            config.db_startup_timeout,
        )
        .await?;
        if !config.skip_migrations {
            store
                .migrate()
                .await
                .context("cannot apply database migrations")?;
        }
        let accounts = Arc::new(accounts::layer::Accounts::new(config.account_settings()?)?);
        let store = store
            .for_replica(store::Replica {
                name: config.replica_name(),
                lease: config.reply_lease,
            })
            .counting_usage(accounts.enabled());
        // With SKIP_MIGRATIONS the schema may still be on its way (a migration Job): serve,
        // but not ready (/readyz), and recover once it is there (the lease watcher's sweep).
        match store.pending_migrations().await? {
            0 => {
                let interrupted = store.recover_replies().await?;
                if interrupted > 0 {
                    tracing::warn!(
                        interrupted,
                        "replies left streaming by an earlier run are now interrupted"
                    );
                }
            }
            pending => tracing::warn!(
                pending,
                "database migrations are pending (run `migration up`); not ready until they are applied"
            ),
        }
        let key = session::load_or_create_key(config.session_key.as_deref(), &config.data_dir)?;
        let templates = Templates::load(config.template_dir.as_deref())?;
        let lm = make_engine(&config)?;
        tracing::info!(engine = lm.kind(), "language model engine started");
        let tools = tools::Toolbox::new(config.tool_settings()?)?;
        let generations = Generations::new(
            store.clone(),
            lm.clone(),
            tools.clone(),
            GenerationSettings {
                system_prompt: config.system_prompt.clone(),
                max_tokens: config.lm_max_tokens,
                temperature: config.lm_temperature,
                top_p: config.lm_top_p,
                seed: config.lm_seed,
                first_token_timeout: config.lm_first_token_timeout,
                queue_timeout: config.lm_queue_timeout,
                idle_timeout: config.lm_idle_timeout,
                checkpoint_interval: config.checkpoint_interval,
                max_concurrent: config.max_concurrent_generations,
                context_tokens: config.lm_context_tokens,
                history_limit: 500,
                generate_titles: config.title_generation,
            },
        );
        // Several replicas share PostgreSQL, so their limits live there; SQLite is one process.
        let shared_limits = store.is_postgres().then(|| store.clone());
        let rate_limits = RateLimits::new(config.rate_limit_settings(), shared_limits);
        let stream_slots = StreamSlots::new(config.max_streams_per_session);
        let pages = Arc::new(page_cache::PageCache::new(
            config.page_cache_mib.saturating_mul(1 << 20),
        ));
        let live = live::Feed::new(store.is_postgres());
        Ok(Self {
            rate_limits,
            stream_slots,
            pages,
            live,
            accounts,
            sessions: SessionConfig {
                key,
                secure: config.cookie_secure,
                admin_token: config.admin_token.clone().map(Arc::from),
                store: store.clone(),
                devices: Default::default(),
            },
            config: Arc::new(config),
            store,
            templates,
            lm,
            tools,
            generations,
            closing: CancellationToken::new(),
        })
    }
}

/// The engine the configuration names: llama-server at `LM_API_URL`, else llama.cpp embedded
/// (its model from `LM_MODEL_PATH` or downloaded in the background).
pub fn engine_from_config(config: &Config) -> anyhow::Result<Engine> {
    if let Some(api_url) = &config.lm_api_url {
        return Ok(Engine::Server(Box::new(LmClient::new(LmSettings {
            api_url: api_url.clone(),
            api_key: config.lm_api_key.clone(),
            model: config.lm_model.clone(),
            context_tokens: config.lm_context_tokens,
        })?)));
    }
    #[cfg(feature = "embedded")]
    {
        Ok(Engine::Embedded(embedded::EmbeddedEngine::start(
            embedded_settings(config),
        )))
    }
    #[cfg(not(feature = "embedded"))]
    anyhow::bail!(
        "this build has no embedded engine (it was built without the `embedded` feature): set LM_API_URL to a llama-server's /v1 URL"
    )
}

/// The Hugging Face hub as configured (HF_*), for the configured model (LM_MODEL_REPO/FILE).
pub fn hub_settings(config: &Config) -> hub::HubSettings {
    hub::HubSettings {
        endpoint: config.hf_endpoint.clone(),
        token: config.hf_token.clone(),
        cache_dir: config.hf_hub_cache(),
        offline: config.hf_hub_offline,
        repo: config.lm_model_repo.clone(),
        file: config.lm_model_file.clone(),
        revision: "main".into(),
        retry_delay: hub::DEFAULT_RETRY_DELAY,
    }
}

/// What the embedded engine is started with.
#[cfg(feature = "embedded")]
pub fn embedded_settings(config: &Config) -> embedded::EmbeddedSettings {
    embedded::EmbeddedSettings {
        model_path: config.lm_model_path.clone(),
        hub: hub_settings(config),
        models_dir: config.lm_models_dir(),
        default_choice: Some(config.data_dir.join("default-model")),
        max_loaded: config.lm_max_loaded as usize,
        model_idle: config.lm_model_idle,
        threads: config.lm_threads(),
        slots: config.max_concurrent_generations.max(1),
        context_per_slot: config.lm_ctx_size,
        batch: 512,
        flash_attention: config.lm_flash_attention,
        gpu_layers: config.lm_gpu_layers,
        cpu: embedded::cpu::CpuSettings {
            variant: config.lm_cpu_variant.clone(),
            backends_dir: config.lm_backends_dir.clone(),
            probe_program: config
                .lm_cpu_probe
                .clone()
                .or_else(|| std::env::current_exe().ok())
                .unwrap_or_else(|| "app".into()),
        },
    }
}

/// Connects to the database, retrying with backoff while it is not reachable (a database that
/// starts after the app, as in compose), up to `timeout`.
async fn connect_with_retry(
    url: &str,
    max_connections: u32,
    timeout: std::time::Duration,
) -> anyhow::Result<Store> {
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(250);
    loop {
        let error = match Store::connect(url, max_connections).await {
            Ok(store) => return Ok(store),
            Err(error) => error,
        };
        // An SQLite file that cannot be opened will not start working by waiting.
        if url.starts_with("sqlite:") || started.elapsed() + wait > timeout {
            return Err(anyhow::Error::new(error).context(format!(
                "cannot connect to the database at {} (tried for {})",
                redact(url),
                humantime::format_duration(std::time::Duration::from_secs(
                    started.elapsed().as_secs()
                ))
            )));
        }
        tracing::warn!(
            "the database at {} is not reachable yet ({error}); retrying in {}",
            redact(url),
            humantime::format_duration(wait)
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(5));
    }
}

/// Binds `BIND_ADDR` and serves until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind_addr = config.bind_addr;
    // The port first: a second instance by mistake stops here, before it touches the model.
    let listener = TcpListener::bind(bind_addr)
        .await
        .with_context(|| format!("cannot listen on {bind_addr}"))?;
    let state = AppState::build(config).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    serve_on(listener, state, shutdown_signal()).await
}

/// Serves the app on `listener` until `shutdown` completes, then shuts down gracefully: no new
/// connections; replies in flight get `SHUTDOWN_GRACE` to finish, then are saved as
/// `interrupted`; their open streams end (axum#2673: open SSE streams would otherwise keep the
/// server waiting forever). Tests call this with a listener on `127.0.0.1:0`.
pub async fn serve_on(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let stopping = CancellationToken::new();
    let drain = {
        let (stopping, generations, closing) = (
            stopping.clone(),
            state.generations.clone(),
            state.closing.clone(),
        );
        let grace = state.config.shutdown_grace;
        tokio::spawn(async move {
            shutdown.await;
            stopping.cancel();
            generations.shutdown(grace).await;
            closing.cancel();
        })
    };
    // Rate-limit allowances that are full again are forgotten, so memory follows recent use.
    let forget_idle = {
        let (limits, stopping) = (state.rate_limits.clone(), stopping.clone());
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every_minute.tick() => limits.forget_idle().await,
                    _ = stopping.cancelled() => break,
                }
            }
        })
    };
    // Temporary chats past their time are deleted, every minute (on any replica).
    let sweep_temporary = {
        let (state, stopping) = (state.clone(), stopping.clone());
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every_minute.tick() => {
                        if let Err(e) = chat::delete_unused_temporary_chats(&state).await {
                            tracing::warn!(error = %e, "deleting temporary chats");
                        }
                    }
                    _ = stopping.cancelled() => break,
                }
            }
        })
    };
    // Leases on the replies written here, Stop asked for on other replicas, and replies whose
    // replica died; until the replies in flight are saved at shutdown.
    let leases = tokio::spawn(
        state
            .generations
            .clone()
            .watch_leases(state.closing.clone()),
    );
    // Other replicas' replies followed live, this replica's published for them, Stop told at
    // once (PostgreSQL): until the replies in flight are saved at shutdown.
    let live = state.live.is_enabled().then(|| {
        let (url, closing) = (state.config.database_url(), state.closing.clone());
        let listening = live::listen(
            url,
            state.live.clone(),
            state.generations.clone(),
            closing.clone(),
        );
        let publishing = state.generations.clone().publish_pieces(closing);
        (tokio::spawn(listening), tokio::spawn(publishing))
    });
    // Metrics on their own listener, up until the app has drained.
    let metrics_stop = CancellationToken::new();
    let metrics = match state.config.metrics_addr {
        Some(addr) => {
            let (listener, handle) = (metrics::listen(addr).await?, metrics::install()?);
            let store = state.store.clone();
            let serving = metrics::serve(listener, handle, store, metrics_stop.clone());
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    let limits = server::ConnectionLimits {
        max_connections: state.config.max_connections,
        header_read_timeout: state.config.header_read_timeout,
    };
    server::serve(listener, routes::router(state), limits, stopping.clone()).await;
    drain.await?;
    forget_idle.await?;
    sweep_temporary.await?;
    leases.await?;
    if let Some((listening, publishing)) = live {
        listening.await?;
        publishing.await?;
    }
    metrics_stop.cancel();
    if let Some(metrics) = metrics {
        metrics.await??;
    }
    tracing::info!("server stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!("cannot listen for SIGINT: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

/// Asks the app listening on `bind_addr` for `/healthz` (a wildcard address means this host).
pub async fn healthcheck(bind_addr: SocketAddr) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = bind_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(response)
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(3), check)
        .await
        .context("no answer within 3 s")??;
    let status_line = String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    anyhow::ensure!(
        status_line.split_whitespace().nth(1) == Some("200"),
        "answered {status_line:?}"
    );
    Ok(())
}

/// A database URL with its password hidden, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            super::redact("sqlite://data/app.db"),
            "sqlite://data/app.db"
        );
    }
}
