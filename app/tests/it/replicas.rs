//! Several app replicas on one PostgreSQL database (issue 9): any replica follows a reply
//! another one writes, Stop reaches the writer, a replica that dies has its replies marked
//! interrupted by a survivor within a bounded time (lease), Retry works, and replicas starting
//! leave the others' replies alone. Through nginx (our nginx.conf, two upstreams), a session
//! sticks to one replica and moves to the survivor when its replica dies. These run the real
//! `app` binary; they need PostgreSQL (`TEST_DATABASE_URL`), and nginx for the last one.
use std::time::{Duration, Instant};

use app::store::{Status, Store, message};
use base64::Engine;
use sea_orm::EntityTrait;
use testkit::{AppProcess, FakeLm, Knobs};
use uuid::Uuid;

use crate::helpers::{self, browser, fresh_database_url, repo_path, spawn_app, sse::EventReader};

/// How long a replica's claim lasts here: a dead replica's replies are taken over within about
/// this (plus a renewal period).
const LEASE: Duration = Duration::from_secs(2);

fn postgres_server() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

/// A reply of `count` pieces, `delay_ms` apart.
fn paced(count: usize, delay_ms: u64) -> Knobs {
    Knobs {
        tokens: (0..count).map(|i| format!("w{i} ")).collect(),
        token_delay: Duration::from_millis(delay_ms),
        ..Knobs::default()
    }
}

struct Cluster {
    data: tempfile::TempDir,
    fake: FakeLm,
    envs: Vec<(&'static str, String)>,
    store: Store,
}

impl Cluster {
    async fn new() -> Option<Cluster> {
        postgres_server()?;
        let data = tempfile::tempdir().unwrap();
        let database = fresh_database_url(data.path()).await;
        let fake = FakeLm::start(paced(250, 20)).await;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 64]>());
        let envs = vec![
            ("DATABASE_URL", database.clone()),
            ("LM_API_URL", fake.url()),
            ("SESSION_KEY", key),
            ("CHECKPOINT_INTERVAL", "200ms".to_owned()),
            ("REPLY_LEASE", format!("{}ms", LEASE.as_millis())),
            ("TITLE_GENERATION", "off".to_owned()),
        ];
        let store = Store::connect(&database, 2).await.unwrap();
        Some(Cluster {
            data,
            fake,
            envs,
            store,
        })
    }

    async fn replica(&self, name: &str) -> AppProcess {
        let dir = self.data.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut envs = self.envs.clone();
        envs.push(("REPLICA_NAME", name.to_owned()));
        let mut app = spawn_app(&dir, &envs).await;
        app.wait_ready(Duration::from_secs(15)).await;
        app
    }

    async fn message(&self, id: Uuid) -> message::Model {
        message::Entity::find_by_id(id)
            .one(self.store.connection())
            .await
            .unwrap()
            .expect("stored")
    }

    /// Waits until the reply is no longer `streaming` (at most `within`).
    async fn ended(&self, id: Uuid, within: Duration) -> message::Model {
        let deadline = Instant::now() + within;
        loop {
            let m = self.message(id).await;
            if m.status != Status::Streaming {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "reply {id} still streaming after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Starts a chat on `base` with a message; returns (chat, reply).
async fn start_reply(
    store: &Store,
    client: &reqwest::Client,
    base: &str,
    content: &str,
) -> (Uuid, Uuid) {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder};
    let created = client
        .post(format!("{base}/chats"))
        .form(&[("content", content)])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let chat: Uuid = location.trim_start_matches("/chats/").parse().unwrap();
    let reply = message::Entity::find()
        .filter(message::Column::ChatId.eq(chat))
        .order_by_desc(message::Column::Seq)
        .one(store.connection())
        .await
        .unwrap()
        .expect("the reply");
    (chat, reply.id)
}

/// Reads a reply's HTML stream to its end: (token texts in order, the `done` event's data).
async fn read_to_end(reader: &mut EventReader) -> (Vec<String>, String) {
    let mut pieces = Vec::new();
    while let Some(event) = reader.next().await {
        match event.event.as_str() {
            "token" => pieces.push(helpers::sse::token_text(std::slice::from_ref(&event))),
            "done" => return (pieces, event.data),
            _ => {}
        }
    }
    panic!("the stream ended without done");
}

#[tokio::test]
async fn a_reply_written_by_one_replica_is_followed_through_another() {
    let Some(cluster) = Cluster::new().await else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let client = browser();
    let (chat, reply) = start_reply(&cluster.store, &client, &a.base, "write for a while").await;
    assert_eq!(
        cluster.message(reply).await.owner.as_deref(),
        Some("replica-a")
    );

    // The same session (the cookie works on both: one SESSION_KEY) re-attaches through B.
    let url = format!("{}/chats/{chat}/messages/{reply}/stream", b.base);
    let (status, _, reader) = EventReader::open(&client, &url, None).await;
    assert_eq!(status, 200);
    let (pieces, done) = read_to_end(&mut reader.unwrap()).await;
    assert!(
        pieces.len() >= 3,
        "followed live, in {} pieces",
        pieces.len()
    );
    let stored = cluster.message(reply).await;
    assert_eq!(stored.status, Status::Complete);
    assert_eq!(
        pieces.concat(),
        stored.content,
        "every piece once, in order"
    );
    assert!(done.contains("w249"), "the end carries the whole reply");
    // B's page shows it, and B starts the next reply in the same chat.
    let next = client
        .post(format!("{}/chats/{chat}/messages", b.base))
        .form(&[("content", "and more")])
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), 303);
    let next_reply = helpers::reply_id(&next);
    assert_eq!(
        cluster.message(next_reply).await.owner.as_deref(),
        Some("replica-b")
    );
    // While B writes it, A refuses a second one in the chat (the database decides).
    let busy = client
        .post(format!("{}/chats/{chat}/messages", a.base))
        .form(&[("content", "too soon")])
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 409);
    cluster.ended(next_reply, Duration::from_secs(20)).await;
}

#[tokio::test]
async fn stop_through_another_replica_stops_the_writer() {
    let Some(cluster) = Cluster::new().await else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let client = browser();
    let (chat, reply) = start_reply(&cluster.store, &client, &a.base, "write for a while").await;
    let url = format!("{}/chats/{chat}/messages/{reply}/stream", a.base);
    let (_, _, reader) = EventReader::open(&client, &url, None).await;
    let mut reader = reader.unwrap();
    let mut seen = String::new();
    while seen.len() < 20 {
        let event = reader.next().await.expect("text");
        if event.event == "token" {
            seen.push_str(&helpers::sse::token_text(std::slice::from_ref(&event)));
        }
    }
    let disconnected = cluster.fake.log(|l| l.disconnected);
    let asked = Instant::now();
    let stop = client
        .post(format!("{}/chats/{chat}/messages/{reply}/stop", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 303);
    let stopped = cluster.ended(reply, Duration::from_secs(5)).await;
    assert_eq!(stopped.status, Status::Stopped);
    eprintln!(
        "stop through the other replica: stopped {:?} after asking",
        asked.elapsed()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        asked.elapsed()
    );
    // The writer really stopped: it closed its upstream request (llama-server frees the slot).
    assert!(
        cluster
            .fake
            .wait_for(Duration::from_secs(2), |l| l.disconnected > disconnected)
            .await
    );
    assert!(
        stopped.content.starts_with(&seen),
        "the text so far is kept"
    );
    assert!(!stopped.content.contains("w249"), "stopped before the end");
    // A's own stream ends too, as stopped.
    let (_, done) = read_to_end(&mut reader).await;
    assert!(done.contains("Stopped."), "{done}");
}

#[tokio::test]
async fn when_a_replica_dies_a_survivor_interrupts_its_replies_and_retry_works() {
    let Some(cluster) = Cluster::new().await else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let mut a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let client = browser();
    let (chat, reply) = start_reply(&cluster.store, &client, &a.base, "write for a while").await;

    // A third replica starting meanwhile leaves A's reply alone.
    let c = cluster.replica("replica-c").await;
    assert_eq!(cluster.message(reply).await.status, Status::Streaming);
    drop(c);

    // Follow it through B, then kill A mid-reply.
    let url = format!("{}/chats/{chat}/messages/{reply}/stream", b.base);
    let (_, _, reader) = EventReader::open(&client, &url, None).await;
    let mut reader = reader.unwrap();
    let mut seen = String::new();
    while seen.len() < 20 {
        let event = reader.next().await.expect("text");
        if event.event == "token" {
            seen.push_str(&helpers::sse::token_text(std::slice::from_ref(&event)));
        }
    }
    a.child.start_kill().unwrap(); // SIGKILL: no chance to save anything
    a.child.wait().await.unwrap();
    let killed = Instant::now();

    // B notices within the lease and a renewal period, and its follower sees the end.
    let (more, done) = read_to_end(&mut reader).await;
    let interrupted = cluster.message(reply).await;
    assert_eq!(interrupted.status, Status::Interrupted);
    eprintln!(
        "a replica killed: its reply interrupted and its follower told {:?} later (lease {LEASE:?})",
        killed.elapsed()
    );
    assert!(
        killed.elapsed() < LEASE * 2 + Duration::from_secs(2),
        "interrupted after {:?}",
        killed.elapsed()
    );
    assert!(done.contains("interrupted"), "{done}");
    let streamed = seen + &more.concat();
    assert!(
        streamed.starts_with(&interrupted.content) || interrupted.content.starts_with(&streamed),
        "the checkpointed text is what streamed"
    );
    assert!(!interrupted.content.is_empty());

    // Retry through B writes a new, complete reply.
    let retry = client
        .post(format!("{}/chats/{chat}/regenerate", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 303);
    let again = cluster
        .ended(helpers::reply_id(&retry), Duration::from_secs(20))
        .await;
    assert_eq!(again.status, Status::Complete);
    assert!(again.content.contains("w249"));
}

/// Our nginx.conf with two app upstreams, listening on `port`.
fn nginx_config(dir: &std::path::Path, port: u16, upstreams: &[&str]) -> std::path::PathBuf {
    let conf = std::fs::read_to_string(repo_path("nginx.conf")).unwrap();
    let servers: String = upstreams
        .iter()
        .map(|u| format!("server {u} max_fails=1 fail_timeout=10s;\n        "))
        .collect();
    let conf = conf
        .replace(
            "server app:3000 max_fails=3 fail_timeout=10s;",
            servers.trim_end(),
        )
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("listen [::]:80;", "")
        .replace(
            "pid /tmp/nginx.pid;",
            &format!("pid {}/nginx.pid;", dir.display()),
        )
        .replace("access_log /dev/stdout;", "access_log off;");
    assert!(
        conf.contains(upstreams[0]),
        "nginx.conf's upstream line changed"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

#[tokio::test]
async fn through_nginx_a_session_sticks_to_one_replica_and_moves_when_it_dies() {
    let Some(cluster) = Cluster::new().await else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    if std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("needs nginx; .ci/run installs it");
        return;
    }
    let a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let upstreams = [
        a.base.trim_start_matches("http://"),
        b.base.trim_start_matches("http://"),
    ];
    let conf = nginx_config(dir.path(), port, &upstreams);
    let nginx = tokio::process::Command::new("nginx")
        .args([
            "-c",
            conf.to_str().unwrap(),
            "-p",
            dir.path().to_str().unwrap(),
            "-g",
            "daemon off;",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let nginx = Nginx(nginx);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "nginx did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Several sessions, a few replies each: each session's replies are all written by one
    // replica (the hash of its cookie).
    cluster.fake.set(|k| *k = paced(5, 0));
    let mut sessions = Vec::new();
    for _ in 0..6 {
        let client = browser();
        // A browser opens a page first, which gives it its session (and so its replica); a
        // request without the cookie is routed by the hash of nothing.
        assert_eq!(
            client
                .get(format!("{base}/"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let mut owners = std::collections::BTreeSet::new();
        let (chat, first) = start_reply(&cluster.store, &client, &base, "hello").await;
        owners.insert(cluster.ended(first, Duration::from_secs(10)).await.owner);
        for i in 0..3 {
            let sent = client
                .post(format!("{base}/chats/{chat}/messages"))
                .form(&[("content", format!("message {i}"))])
                .send()
                .await
                .unwrap();
            assert_eq!(sent.status(), 303);
            let reply = cluster
                .ended(helpers::reply_id(&sent), Duration::from_secs(10))
                .await;
            owners.insert(reply.owner);
        }
        assert_eq!(owners.len(), 1, "one session, one replica: {owners:?}");
        sessions.push((client, chat, owners.into_iter().next().unwrap().unwrap()));
    }

    // Kill the replica of the first session mid-reply: through nginx the session reaches the
    // survivor, which shows the reply interrupted (within the lease) and retries it.
    cluster.fake.set(|k| *k = paced(250, 20));
    let (client, chat, owner) = &sessions[0];
    let sent = client
        .post(format!("{base}/chats/{chat}/messages"))
        .form(&[("content", "a long one")])
        .send()
        .await
        .unwrap();
    let reply = helpers::reply_id(&sent);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut dead, survivor) = if owner == "replica-a" {
        (a, "replica-b")
    } else {
        (b, "replica-a")
    };
    dead.child.start_kill().unwrap();
    dead.child.wait().await.unwrap();
    let interrupted = cluster
        .ended(reply, LEASE * 2 + Duration::from_secs(3))
        .await;
    assert_eq!(interrupted.status, Status::Interrupted);
    let page = client
        .get(format!("{base}/chats/{chat}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Retry"));
    let retry = client
        .post(format!("{base}/chats/{chat}/regenerate"))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 303);
    let again = cluster
        .ended(helpers::reply_id(&retry), Duration::from_secs(20))
        .await;
    assert_eq!(again.status, Status::Complete);
    assert_eq!(
        again.owner.as_deref(),
        Some(survivor),
        "written by the survivor"
    );
    drop(nginx);
}

/// nginx, stopped with SIGTERM (its master then stops its workers) when dropped.
struct Nginx(tokio::process::Child);

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
