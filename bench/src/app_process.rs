//! Runs the app as a child process, the way it runs in production (release binary, real socket),
//! and reads its resident memory and CPU time from /proc.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

pub struct AppProcess {
    child: Child,
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
        let started = Instant::now();
        let child = Command::new(options.binary)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &database_url)
            .env("DATA_DIR", data.path())
            .env("LM_API_URL", options.model_url)
            .env(
                "MAX_CONCURRENT_GENERATIONS",
                options.max_concurrent.to_string(),
            )
            .env("LM_MAX_TOKENS", options.max_tokens.to_string())
            .env("MAX_MESSAGE_BYTES", "32768")
            .env("RATE_LIMITS", "off")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with `cargo build --release -p app`)",
                    options.binary.display()
                )
            })?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the app did not become ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(Self {
            child,
            base,
            started_to_ready: started.elapsed(),
            database_url,
            _data: data,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident set size in bytes.
    pub fn rss(&self) -> u64 {
        self.pid()
            .map_or(0, |pid| crate::engine::vm_rss(&pid.to_string()))
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

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
