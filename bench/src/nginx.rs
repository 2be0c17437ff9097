//! Runs nginx with the repository's `nginx.conf` in front of the app: the same file, with only the
//! upstream address, the listen port and the pid file changed (as the e2e suite does).
use std::{path::Path, process::Stdio, time::Duration};

use anyhow::{Context, bail, ensure};
use tokio::process::{Child, Command};

use testkit::app_process::free_port;

pub struct Nginx {
    _child: Child,
    pub base: String,
    conf: String,
    dir: tempfile::TempDir,
}

impl Drop for Nginx {
    /// Stops the master and its workers; killing only the master would leave the workers running.
    fn drop(&mut self) {
        let _ = std::process::Command::new("nginx")
            .args(["-s", "stop", "-q", "-c", &self.conf, "-p"])
            .arg(self.dir.path())
            .stderr(Stdio::null())
            .status();
    }
}

impl Nginx {
    pub async fn start(repo: &Path, app_base: &str) -> anyhow::Result<Self> {
        let app_address = app_base
            .strip_prefix("http://")
            .context("the app's address must be http://host:port")?;
        let port = free_port()?;
        let dir = tempfile::tempdir()?;
        let original = std::fs::read_to_string(repo.join("nginx.conf"))?;
        let mut config = original.clone();
        for (from, to) in [
            ("server app:3000", format!("server {app_address}")),
            ("listen 80;", format!("listen {port};")),
            (
                "pid /tmp/nginx.pid;",
                format!("pid {};", dir.path().join("nginx.pid").display()),
            ),
        ] {
            ensure!(
                config.contains(from),
                "nginx.conf no longer contains `{from}`; update bench/src/nginx.rs"
            );
            config = config.replace(from, &to);
        }
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, config)?;
        let prefix = dir.path().to_string_lossy().into_owned();
        let conf = path.to_string_lossy().into_owned();
        let test = Command::new("nginx")
            .args(["-t", "-q", "-c", &conf, "-p", &prefix])
            .status()
            .await
            .context("nginx is needed for --nginx (apt-get install nginx)")?;
        ensure!(test.success(), "nginx -t rejected the configuration");
        let child = Command::new("nginx")
            .args(["-c", &conf, "-p", &prefix, "-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null()) // the access log
            .stderr(std::fs::File::create(dir.path().join("error.log"))?)
            .kill_on_drop(true)
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..500 {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                return Ok(Self {
                    _child: child,
                    base,
                    conf,
                    dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        bail!("nginx did not answer /healthz within 5 s:\n{log}")
    }
}
