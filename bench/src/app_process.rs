//! Runs the app as a child process, the way it runs in production (release binary, real socket),
//! through the shared runner (testkit, which gives it only the configuration set here), and
//! reads its resident memory and CPU time from /proc.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

use testkit::app_process::free_port;

pub struct AppProcess {
    process: testkit::AppProcess,
    pub base: String,
    pub started_to_ready: Duration,
    pub database_url: String,
    _data: tempfile::TempDir,
}

pub struct AppOptions<'a> {
    pub binary: &'a Path,
    pub model_url: String,
    /// `None`: a fresh SQLite file.
    pub database_url: Option<String>,
    pub max_concurrent: usize,
    /// LM_MAX_TOKENS: the same reply length as the direct requests ask for.
    pub max_tokens: usize,
}

/// The app built beside this bench binary (same target directory and profile), so a stale
/// build elsewhere is never measured by mistake.
pub fn default_binary() -> anyhow::Result<PathBuf> {
    let bench = std::env::current_exe()?;
    let dir = bench
        .parent()
        .context("the bench binary has no directory")?;
    Ok(dir.join("app"))
}

impl AppProcess {
    pub async fn start(options: AppOptions<'_>) -> anyhow::Result<Self> {
        let port = free_port()?;
        let data = tempfile::tempdir()?;
        let database_url = options.database_url.unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data.path().join("bench.db").display()
            )
        });
        let mut envs = vec![
            // A port known up front: the warn-level log never names it.
            ("BIND_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", database_url.clone()),
            ("LM_API_URL", options.model_url),
            (
                "MAX_CONCURRENT_GENERATIONS",
                options.max_concurrent.to_string(),
            ),
            ("LM_MAX_TOKENS", options.max_tokens.to_string()),
            ("MAX_MESSAGE_BYTES", "32768".into()),
            ("RATE_LIMITS", "off".into()),
            ("RUST_LOG", "warn".into()),
        ];
        // Experiments: `BENCH_APP_ENV="DB_MAX_CONNECTIONS=1 PAGE_CACHE_MIB=0"` adds to (or
        // overrides) the app's configuration.
        let extra = std::env::var("BENCH_APP_ENV").unwrap_or_default();
        for setting in extra.split_whitespace() {
            let (name, value) = setting
                .split_once('=')
                .with_context(|| format!("BENCH_APP_ENV: `{setting}` is not NAME=value"))?;
            envs.push((name, value.to_owned()));
        }
        let mut process = testkit::AppProcess::spawn(options.binary, data.path(), &envs)
            .with_context(|| "build the app with `cargo build --release -p app`".to_owned())?;
        let started_to_ready = process
            .ready_within(Duration::from_secs(30), Duration::from_millis(2))
            .await?;
        Ok(Self {
            base: process.base.clone(),
            process,
            started_to_ready,
            database_url,
            _data: data,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> u64 {
        self.pid()
            .map_or(0, |pid| testkit::app_process::vm_rss(&pid.to_string()))
    }

    /// User + system CPU time so far.
    pub fn cpu_time(&self) -> Duration {
        let Some(pid) = self.pid() else {
            return Duration::ZERO;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the command name (which is in parentheses): utime is the 12th, stime 13th.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }
}
