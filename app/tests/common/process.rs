//! The real `app` binary as a child process (start-up, signals, several replicas).
use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use tokio::process::{Child, Command};

/// The release-like `app` binary as a child process, with its own data directory.
pub struct AppProcess {
    pub child: Child,
    pub base: String,
    pub log: std::path::PathBuf,
}

fn append(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

impl AppProcess {
    pub async fn spawn(data_dir: &Path, envs: &[(&str, String)]) -> AppProcess {
        // The app picks its own port (so parallel tests never race for one) and logs it.
        let log = data_dir.join(format!("app-{}.log", uuid::Uuid::new_v4().simple()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_app"));
        command
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("DATA_DIR", data_dir)
            .env("RATE_LIMITS", "off")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            // The log goes to stdout, fatal errors also to stderr: both into one file.
            .stdout(append(&log))
            .stderr(append(&log))
            .kill_on_drop(true);
        for (name, value) in envs {
            command.env(name, value);
        }
        AppProcess {
            child: command.spawn().unwrap(),
            base: String::new(),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where this process listens, once it said so in its log.
    pub fn listening(&self) -> Option<String> {
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
        matches!(reqwest::get(format!("{base}/readyz")).await, Ok(r) if r.status() == 200)
    }

    /// Waits until the app answers `/readyz`, and sets `base`.
    pub async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.is_ready().await {
                self.base = self.listening().unwrap_or_default();
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the app was not ready within {within:?}:\n{}", self.log());
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
