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

use crate::helpers::{
    self, browser, fresh_database_url,
    nginx::{self, Nginx},
    postgres_server, repo_path, spawn_app,
    sse::EventReader,
};

/// How long a replica's claim lasts here: a dead replica's replies are taken over within about
/// this (plus a renewal period).
const LEASE: Duration = Duration::from_secs(2);

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
        Self::with(&[]).await
    }

    /// A cluster whose replicas have `overrides` in their environment.
    async fn with(overrides: &[(&'static str, &str)]) -> Option<Cluster> {
        postgres_server()?;
        let data = tempfile::tempdir().unwrap();
        let database = fresh_database_url(data.path()).await;
        let fake = FakeLm::start(paced(250, 20)).await;
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 64]>());
        let mut envs = vec![
            ("DATABASE_URL", database.clone()),
            ("LM_API_URL", fake.url()),
            ("SESSION_KEY", key),
            ("CHECKPOINT_INTERVAL", "200ms".to_owned()),
            ("REPLY_LEASE", format!("{}ms", LEASE.as_millis())),
            ("TITLE_GENERATION", "off".to_owned()),
        ];
        for (name, value) in overrides {
            envs.retain(|(n, _)| n != name);
            envs.push((name, (*value).to_owned()));
        }
        let store = Store::connect(&database, 2).await.unwrap();
        Some(Cluster {
            data,
            fake,
            envs,
            store,
        })
    }

    async fn replica(&self, name: &str) -> AppProcess {
        self.replica_with(name, &[]).await
    }

    /// A replica with `extra` in its environment.
    async fn replica_with(&self, name: &str, extra: &[(&'static str, &str)]) -> AppProcess {
        let dir = self.data.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut envs = self.envs.clone();
        envs.push(("REPLICA_NAME", name.to_owned()));
        envs.extend(extra.iter().map(|(n, v)| (*n, (*v).to_owned())));
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

/// Sends a message in `chat` through `base`; returns its reply (being written there).
async fn send_in(client: &reqwest::Client, base: &str, chat: Uuid, content: &str) -> Uuid {
    let sent = client
        .post(format!("{base}/chats/{chat}/messages"))
        .form(&[("content", content)])
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 303);
    helpers::reply_id(&sent)
}

/// Opens a reply's HTML stream and reads at least `bytes` of its text: (the reader, the text,
/// the last event's id).
async fn read_some(
    client: &reqwest::Client,
    url: &str,
    bytes: usize,
) -> (EventReader, String, String) {
    let (_, _, reader) = EventReader::open(client, url, None).await;
    let mut reader = reader.unwrap();
    let (mut seen, mut last_id) = (String::new(), String::new());
    while seen.len() < bytes {
        let event = reader.next().await.expect("text");
        if event.event == "delta" {
            seen.push_str(&helpers::sse::token_text(std::slice::from_ref(&event)));
            last_id = event.id.clone();
        }
    }
    (reader, seen, last_id)
}

/// Reads a reply's HTML stream to its end: (token texts in order, the `done` event's data).
async fn read_to_end(reader: &mut EventReader) -> (Vec<String>, String) {
    let mut pieces = Vec::new();
    while let Some(event) = reader.next().await {
        match event.event.as_str() {
            "delta" => pieces.push(helpers::sse::token_text(std::slice::from_ref(&event))),
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
    let url = format!("{}/api/v1/messages/{reply}/stream", b.base);
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
    let next_reply = send_in(&client, &b.base, chat, "and more").await;
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

/// A piece of a stream as a reader received it: when, the answer's offset after it, its text.
struct Received {
    at: Instant,
    offset: usize,
    text: String,
}

/// Reads a reply's HTML stream to its end, noting when each piece came.
async fn read_timed(client: &reqwest::Client, url: &str) -> Vec<Received> {
    let (status, _, reader) = EventReader::open(client, url, None).await;
    assert_eq!(status, 200);
    let mut reader = reader.unwrap();
    let mut received = Vec::new();
    while let Some(event) = reader.next().await {
        match event.event.as_str() {
            "delta" => received.push(Received {
                at: Instant::now(),
                offset: event.id.split(':').next().unwrap().parse().unwrap(),
                text: helpers::sse::token_text(std::slice::from_ref(&event)),
            }),
            "done" => return received,
            _ => {}
        }
    }
    panic!("the stream ended without done");
}

#[tokio::test]
async fn through_another_replica_a_reply_arrives_live_exactly_once() {
    // Checkpoints a minute apart: until the reply ends its row holds no text, so whatever a
    // reader on the other replica gets before then came live from the writer.
    let Some(cluster) = Cluster::with(&[("CHECKPOINT_INTERVAL", "60s")]).await else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let client = browser();
    let (chat, reply) = start_reply(&cluster.store, &client, &a.base, "write for a while").await;
    let stream = |base: &str| format!("{base}/api/v1/messages/{reply}/stream");
    let (url_a, url_b) = (stream(&a.base), stream(&b.base));
    let (on_a, on_b) = tokio::join!(read_timed(&client, &url_a), read_timed(&client, &url_b));
    let stored = cluster.message(reply).await;
    assert_eq!(stored.status, Status::Complete);
    let text = |pieces: &[Received]| pieces.iter().map(|p| p.text.as_str()).collect::<String>();
    assert_eq!(text(&on_b), stored.content, "every piece once, in order");
    assert!(
        on_b.len() >= 20,
        "followed token by token, not at checkpoints: {} pieces",
        on_b.len()
    );
    // How far behind the writer's own stream the other replica's is, at the same offsets.
    let mut lags: Vec<Duration> = on_b
        .iter()
        .filter_map(|p| {
            let first_on_a = on_a.iter().find(|q| q.offset >= p.offset)?;
            Some(p.at.saturating_duration_since(first_on_a.at))
        })
        .collect();
    lags.sort();
    eprintln!(
        "followed through another replica: {} pieces (the writer's stream: {}); behind it by p50 {:?}, p90 {:?}, max {:?}",
        on_b.len(),
        on_a.len(),
        lags[lags.len() / 2],
        lags[lags.len() * 9 / 10],
        lags[lags.len() - 1]
    );

    // B writes the next reply; a reader on A drops mid-reply and resumes from its last event.
    let next_reply = send_in(&client, &b.base, chat, "and more").await;
    let url = format!("{}/api/v1/messages/{next_reply}/stream", a.base);
    let (reader, seen, last_id) = read_some(&client, &url, 40).await;
    drop(reader);
    let (_, _, reader) = EventReader::open(&client, &url, Some(&last_id)).await;
    let (rest, _) = read_to_end(&mut reader.unwrap()).await;
    let stored = cluster.message(next_reply).await;
    assert_eq!(stored.status, Status::Complete);
    assert_eq!(
        seen + &rest.concat(),
        stored.content,
        "no gap, no duplicate"
    );
    assert!(
        rest.len() >= 5,
        "resumed live, not at the end: {} pieces",
        rest.len()
    );

    // A page opened through A in the middle of B's next reply (its row still empty) gets the
    // text written so far at once, from the writer, then the rest live.
    let third_reply = send_in(&client, &b.base, chat, "and more again").await;
    let on_writer = format!("{}/api/v1/messages/{third_reply}/stream", b.base);
    let (_writer_reader, written, _) = read_some(&client, &on_writer, 100).await;
    assert!(cluster.message(third_reply).await.content.is_empty());
    let url = format!("{}/api/v1/messages/{third_reply}/stream", a.base);
    let attached_at = Instant::now();
    let (_, _, reader) = EventReader::open(&client, &url, None).await;
    let mut reader = reader.unwrap();
    let first = loop {
        let event = reader.next().await.expect("an event");
        match event.event.as_str() {
            "delta" => break helpers::sse::token_text(std::slice::from_ref(&event)),
            "done" => panic!("nothing came before the end"),
            _ => {}
        }
    };
    eprintln!(
        "attached mid-reply through another replica: the text so far ({} bytes) {:?} after asking",
        first.len(),
        attached_at.elapsed()
    );
    assert_eq!(
        cluster.message(third_reply).await.status,
        Status::Streaming,
        "the first piece came while the reply was written"
    );
    assert!(
        first.starts_with(&written),
        "the first piece holds what was written before the page attached: {first:?} vs {written:?}"
    );
    let (rest, _) = read_to_end(&mut reader).await;
    let stored = cluster.message(third_reply).await;
    assert_eq!(
        first + &rest.concat(),
        stored.content,
        "no gap, no duplicate"
    );
}

#[tokio::test]
async fn a_follower_whose_notifications_are_lost_still_gets_every_piece_once() {
    // Checkpoints a minute apart: the row cannot fill the gap, the writer must send it again.
    let Some(cluster) = Cluster::with(&[("CHECKPOINT_INTERVAL", "60s")]).await else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let client = browser();
    let (_chat, reply) = start_reply(&cluster.store, &client, &a.base, "write for a while").await;
    let url = format!("{}/api/v1/messages/{reply}/stream", b.base);
    let (mut reader, seen, _) = read_some(&client, &url, 40).await;
    // Every replica's listening connection is cut mid-reply: what is published meanwhile
    // reaches nobody, and the replicas listen again.
    use sea_orm::ConnectionTrait;
    let cut = cluster
        .store
        .connection()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN \"chat_reply_pieces\"%'",
        ))
        .await
        .unwrap();
    assert_eq!(cut.len(), 2, "one listening connection per replica");
    let mut rest = Vec::new();
    let mut live_after_cut = false;
    while let Some(event) = reader.next().await {
        match event.event.as_str() {
            "delta" => {
                rest.push(helpers::sse::token_text(std::slice::from_ref(&event)));
                // The row holds no text until the end: a piece while the reply is still
                // being written came from the writer, through a listener connected again.
                if rest.len() >= 3 && !live_after_cut {
                    live_after_cut = cluster.message(reply).await.status == Status::Streaming;
                }
            }
            "done" => break,
            _ => {}
        }
    }
    assert!(
        live_after_cut,
        "followed live again after the cut: {rest:?}"
    );
    let listening = cluster
        .store
        .connection()
        .query_all_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN \"chat_reply_pieces\"%'",
        ))
        .await
        .unwrap();
    assert_eq!(listening.len(), 2, "each replica listens again");
    let stored = cluster.message(reply).await;
    assert_eq!(stored.status, Status::Complete);
    assert_eq!(
        seen + &rest.concat(),
        stored.content,
        "no gap, no duplicate"
    );
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
    let url = format!("{}/api/v1/messages/{reply}/stream", a.base);
    let (mut reader, seen, _) = read_some(&client, &url, 20).await;
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
    assert!(done.contains("\"status\":\"stopped\""), "{done}");
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
    let url = format!("{}/api/v1/messages/{reply}/stream", b.base);
    let (mut reader, seen, _) = read_some(&client, &url, 20).await;
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
    if !nginx::installed() {
        crate::helpers::missing("nginx (.ci/run installs it)");
        return;
    }
    let a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let dir = tempfile::tempdir().unwrap();
    let port = nginx::free_port();
    let upstreams = [
        a.base.trim_start_matches("http://"),
        b.base.trim_start_matches("http://"),
    ];
    let conf = nginx_config(dir.path(), port, &upstreams);
    let base = format!("http://127.0.0.1:{port}");
    let nginx = Nginx::start(&conf, dir.path(), &format!("{base}/healthz")).await;

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

/// libfaketime, which makes a process's clock say another time (Debian's `libfaketime`, under
/// the machine's multiarch directory). CI installs it, so there a missing one is a failure.
fn libfaketime() -> Option<String> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("faketime/libfaketime.so.1"))
        .find(|path| path.exists())
        .map(|path| path.display().to_string());
    if found.is_none() {
        crate::helpers::missing("libfaketime (.ci/run installs it)");
    }
    found
}

/// What a replica's clock says, from its `Date` header.
async fn replica_clock(base: &str) -> chrono::DateTime<chrono::Utc> {
    let response = reqwest::get(format!("{base}/healthz")).await.unwrap();
    let date = response.headers()["date"].to_str().unwrap();
    chrono::DateTime::parse_from_rfc2822(date).unwrap().to_utc()
}

#[tokio::test]
async fn replicas_whose_clocks_disagree_by_a_minute_never_interrupt_a_live_reply() {
    let Some(cluster) = Cluster::new().await else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let Some(faketime) = libfaketime() else {
        return;
    };
    // Timers run on the monotonic clock, which stays true; only the wall clock is off.
    let clock = |offset: &'static str| {
        [
            ("LD_PRELOAD", faketime.as_str()),
            ("FAKETIME", offset),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ]
    };
    let a = cluster.replica("replica-a").await;
    let ahead = cluster.replica_with("replica-ahead", &clock("+60s")).await;
    let behind = cluster.replica_with("replica-behind", &clock("-60s")).await;
    let true_time = replica_clock(&a.base).await;
    let skew = |at: chrono::DateTime<chrono::Utc>| (at - true_time).num_seconds();
    assert!((55..=65).contains(&skew(replica_clock(&ahead.base).await)));
    assert!((-65..=-55).contains(&skew(replica_clock(&behind.base).await)));

    // Each reply takes 5 s, more than two leases (2 s). By its own clock the replica ahead
    // would find A's lease long over; the replica behind would take leases that ended a
    // minute ago. By the database's clock neither happens.
    let client = browser();
    let (_, by_a) = start_reply(&cluster.store, &client, &a.base, "write for a while").await;
    let (_, by_behind) =
        start_reply(&cluster.store, &client, &behind.base, "write for a while").await;
    let (_, by_ahead) =
        start_reply(&cluster.store, &client, &ahead.base, "write for a while").await;
    for reply in [by_a, by_behind, by_ahead] {
        let ended = cluster.ended(reply, Duration::from_secs(30)).await;
        assert_eq!(
            ended.status,
            Status::Complete,
            "{:?}: {:?}",
            ended.owner,
            ended.error
        );
        assert!(ended.content.contains("w249"));
    }

    // A replica that really dies is still noticed: by the database's clock, within the lease.
    let (chat, reply) = start_reply(&cluster.store, &client, &behind.base, "again").await;
    let mut behind = behind;
    tokio::time::sleep(Duration::from_millis(300)).await;
    behind.child.start_kill().unwrap();
    behind.child.wait().await.unwrap();
    let interrupted = cluster
        .ended(reply, LEASE * 2 + Duration::from_secs(3))
        .await;
    assert_eq!(interrupted.status, Status::Interrupted);
    let page = client
        .get(format!("{}/chats/{chat}", ahead.base))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("Retry"));
}

#[tokio::test]
async fn rate_limits_hold_for_a_session_whichever_replica_it_reaches() {
    let Some(cluster) = Cluster::with(&[
        ("RATE_LIMITS", "on"),
        ("SEND_RATE_PER_SESSION", "3/min"),
        ("CHAT_RATE_PER_SESSION", "2/min"),
    ])
    .await
    else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    cluster.fake.set(|k| *k = paced(3, 0));
    let a = cluster.replica("replica-a").await;
    let b = cluster.replica("replica-b").await;
    let client = browser();
    // Sends alternate between the replicas: the fourth, wherever it goes, is one too many.
    let (chat, first) = start_reply(&cluster.store, &client, &a.base, "one").await;
    cluster.ended(first, Duration::from_secs(10)).await;
    for (base, content) in [(&b.base, "two"), (&a.base, "three")] {
        let sent = client
            .post(format!("{base}/chats/{chat}/messages"))
            .form(&[("content", content)])
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 303, "{content}");
        cluster
            .ended(helpers::reply_id(&sent), Duration::from_secs(10))
            .await;
    }
    for base in [&b.base, &a.base] {
        let refused = client
            .post(format!("{base}/chats/{chat}/messages"))
            .header("HX-Request", "true")
            .form(&[("content", "four")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 429);
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&wait), "one comes back in 20 s: {wait}");
        assert!(refused.text().await.unwrap().contains("Too many messages"));
    }
    // Another session has its own allowance.
    let other = browser();
    let (_, reply) = start_reply(&cluster.store, &other, &b.base, "mine").await;
    cluster.ended(reply, Duration::from_secs(10)).await;

    // New chats likewise (an import is one, and sends nothing): the first session made one.
    let export = serde_json::json!({"format": "chat-export", "version": 1, "title": "T",
        "messages": [{"role": "user", "content": "hello"}]});
    let import = |base: &str| {
        client
            .post(format!("{base}/chats/import"))
            .multipart(helpers::import_form(export.to_string().into_bytes()))
            .send()
    };
    assert_eq!(import(&b.base).await.unwrap().status(), 303);
    assert_eq!(import(&a.base).await.unwrap().status(), 429);
    assert_eq!(import(&b.base).await.unwrap().status(), 429);
}
