//! A real nginx for the tests, on a configuration they write: started in the foreground and
//! stopped (SIGTERM: its master then stops its workers) when dropped.
use std::{
    path::Path,
    time::{Duration, Instant},
};

/// Whether nginx is installed (`.ci/run` installs it).
pub fn installed() -> bool {
    std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok()
}

pub struct Nginx(tokio::process::Child);

impl Nginx {
    /// Starts nginx on `conf` (its prefix `dir`) and waits until `ready_url` answers.
    pub async fn start(conf: &Path, dir: &Path, ready_url: &str) -> Nginx {
        let child = tokio::process::Command::new("nginx")
            .args([
                "-c",
                conf.to_str().unwrap(),
                "-p",
                dir.to_str().unwrap(),
                "-g",
                "daemon off;",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let nginx = Nginx(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::get(ready_url).await.is_err() {
            assert!(Instant::now() < deadline, "nginx did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = self.0.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
