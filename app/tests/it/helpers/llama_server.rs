//! A real llama-server as a child process on a free port, killed when dropped.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::nginx;

pub struct LlamaServer {
    child: tokio::process::Child,
    /// `127.0.0.1:port`.
    pub address: String,
}

impl LlamaServer {
    /// Starts `binary` with `args` (the model and its flags; the address is added) on a free
    /// port, its output in `log`, and waits until it serves.
    pub async fn start(binary: &Path, args: &[&str], log: PathBuf) -> LlamaServer {
        let port = nginx::free_port();
        let log = std::fs::File::create(log).unwrap();
        let child = tokio::process::Command::new(binary)
            .args(args)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = reqwest::get(format!("http://{address}/health")).await;
            if health.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(Instant::now() < deadline, "llama-server did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        LlamaServer { child, address }
    }

    /// Whether it is generating now (its slots say so).
    pub async fn is_busy(&self) -> bool {
        let slots: serde_json::Value = reqwest::get(format!("http://{}/slots", self.address))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        slots
            .as_array()
            .unwrap()
            .iter()
            .any(|slot| slot["is_processing"] == true)
    }

    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}
