//! The built `app` binary as a child process, the way it runs in production (real socket,
//! signals), with its own data directory and log file.
//!
//! Its configuration is only what the caller sets: the child starts from an empty environment
//! (`PATH` and `HOME` kept), so a developer's `DATABASE_URL` or `LM_API_URL` never changes the
//! app under test or under measurement.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// What the child keeps from this process's environment: where programs are, and the home
/// directory (the default model cache lives under it). Nothing the app reads as configuration.
const INHERITED: &[&str] = &["PATH", "HOME"];

pub struct AppProcess {
    pub child: Child,
    /// `http://host:port`, once known: at once for a fixed `BIND_ADDR`, else (port 0) after
    /// [`AppProcess::wait_ready`] read it from the log.
    pub base: String,
    /// stdout and stderr of the app, both.
    pub log: PathBuf,
    started: Instant,
    client: reqwest::Client,
}

fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

impl AppProcess {
    /// Starts `binary` with the data directory `data_dir` and the configuration `envs`, on top of
    /// these defaults (which `envs` may override): `BIND_ADDR=127.0.0.1:0` (the app picks its own
    /// port, so parallel runs never race for one, and logs it), `DATA_DIR=data_dir`,
    /// `RATE_LIMITS=off`, `RUST_LOG=info`. The log goes to a new file in `data_dir`. The child is
    /// killed when this is dropped.
    pub fn spawn(binary: &Path, data_dir: &Path, envs: &[(&str, String)]) -> anyhow::Result<Self> {
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let log = data_dir.join(format!(
            "app-{}-{}.log",
            std::process::id(),
            SPAWNED.fetch_add(1, Ordering::Relaxed)
        ));
        let mut command = Command::new(binary);
        command.env_clear();
        for name in INHERITED {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        let defaults = [
            ("BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("DATA_DIR", data_dir.display().to_string()),
            ("RATE_LIMITS", "off".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ];
        for (name, value) in defaults.iter().chain(envs) {
            command.env(name, value);
        }
        let bind = envs
            .iter()
            .rev()
            .find(|(name, _)| *name == "BIND_ADDR")
            .map_or("127.0.0.1:0", |(_, value)| value.as_str());
        let base = match bind.parse::<SocketAddr>() {
            Ok(addr) if addr.port() != 0 => format!("http://{addr}"),
            _ => String::new(),
        };
        command
            .stdin(Stdio::null())
            // The log goes to stdout, fatal errors also to stderr: both into one file.
            .stdout(append(&log)?)
            .stderr(append(&log)?)
            .kill_on_drop(true);
        let started = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(AppProcess {
            child,
            base,
            log,
            started,
            client: reqwest::Client::new(),
        })
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where this process listens: its fixed `BIND_ADDR`, or once it said so in its log.
    pub fn listening(&self) -> Option<String> {
        if !self.base.is_empty() {
            return Some(self.base.clone());
        }
        let log = self.log();
        let at = log.find("listening on http://")? + "listening on ".len();
        let address: String = log[at..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '\u{1b}')
            .collect();
        Some(address)
    }

    pub async fn is_ready(&self) -> bool {
        let Some(base) = self.listening() else {
            return false;
        };
        matches!(self.client.get(format!("{base}/readyz")).send().await, Ok(r) if r.status() == 200)
    }

    /// Waits until the app answers `/readyz` (asking every `every`), sets `base`, and returns
    /// the time from the start to ready; an error with the log if not ready within `within`.
    pub async fn ready_within(
        &mut self,
        within: Duration,
        every: Duration,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_ready().await {
                self.base = self.listening().unwrap_or_default();
                return Ok(self.started.elapsed());
            }
            tokio::time::sleep(every).await;
        }
        bail!("the app was not ready within {within:?}:\n{}", self.log())
    }

    /// Waits until the app answers `/readyz`, and sets `base`; panics with the log if not ready
    /// within `within`.
    pub async fn wait_ready(&mut self, within: Duration) {
        if let Err(e) = self.ready_within(within, Duration::from_millis(50)).await {
            panic!("{e}");
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let pid = self.pid().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Stops the app as an orchestrator does (SIGTERM) and waits for its exit.
    pub async fn stop(mut self) -> std::io::Result<ExitStatus> {
        self.signal("TERM");
        self.child.wait().await
    }
}

/// A port free now (for a program that needs one named up front).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Resident set size in bytes of a process (`self`: this one), from /proc.
pub fn vm_rss(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}
