//! Faults, as an operator meets them: the database down at start-up and while running, the app
//! killed with SIGKILL mid-reply, SIGTERM, and a model server that cannot list its models or
//! never answers. The process tests run the real `app` binary.
use std::time::{Duration, Instant};

use app::store::{Status, Store, message};
use sea_orm::EntityTrait;
use testkit::{FakeLm, Knobs};
use uuid::Uuid;

use crate::helpers::{
    self, TestApp, browser, fresh_database_url, postgres_server, proxy::Proxy, spawn_app,
    sse::EventReader,
};

/// `postgres://user:password@host:port/db` with host:port replaced by `addr`.
fn through(url: &str, addr: std::net::SocketAddr) -> (String, std::net::SocketAddr) {
    let (scheme_user, rest) = url.split_once('@').expect("user@host in the URL");
    let (host_port, db) = rest.split_once('/').expect("a database in the URL");
    let target = host_port
        .replace("localhost", "127.0.0.1")
        .parse()
        .expect("host:port");
    (format!("{scheme_user}@{addr}/{db}"), target)
}

fn paced(count: usize, delay_ms: u64) -> Knobs {
    Knobs {
        tokens: (0..count).map(|i| format!("w{i} ")).collect(),
        token_delay: Duration::from_millis(delay_ms),
        ..Knobs::default()
    }
}

async fn post_form(
    client: &reqwest::Client,
    url: String,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client.post(url).form(form).send().await.unwrap()
}

/// Creates a chat and sends `content`; returns (chat, reply).
async fn start_reply(client: &reqwest::Client, base: &str, content: &str) -> (Uuid, Uuid) {
    let created = post_form(client, format!("{base}/chats"), &[("content", "")]).await;
    assert_eq!(created.status(), 303);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let chat: Uuid = location.trim_start_matches("/chats/").parse().unwrap();
    let sent = post_form(
        client,
        format!("{base}/chats/{chat}/messages"),
        &[("content", content)],
    )
    .await;
    assert_eq!(sent.status(), 303, "{}", sent.text().await.unwrap());
    (chat, helpers::reply_id(&sent))
}

async fn stored(store: &Store, id: Uuid) -> message::Model {
    message::Entity::find_by_id(id)
        .one(store.connection())
        .await
        .unwrap()
        .expect("the message is stored")
}

#[tokio::test]
async fn database_down_at_start_up_is_retried_with_backoff_until_it_returns() {
    let Some(server) = postgres_server() else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let database = fresh_database_url(data.path()).await;
    let (_, target) = through(&server, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::reserve(target).await;
    let (proxied, _) = through(&database, proxy.addr);
    let fake = FakeLm::start(Knobs::default()).await;
    let mut app = spawn_app(
        data.path(),
        &[
            ("DATABASE_URL", proxied.clone()),
            ("LM_API_URL", fake.url()),
            ("DB_STARTUP_TIMEOUT", "60s".into()),
        ],
    )
    .await;
    // Each attempt waits up to the pool's 5 s acquire timeout before it reports.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !app.log().contains("retrying in") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!app.is_ready().await, "ready without a database?");
    let log = app.log();
    assert!(log.contains("is not reachable yet"), "{log}");
    assert!(log.contains("retrying in"), "{log}");
    assert!(
        !log.contains("chat:chat@"),
        "the password leaked into the log: {log}"
    );

    proxy.restore().await;
    app.wait_ready(Duration::from_secs(10)).await;
    let client = browser();
    let (_, reply) = start_reply(&client, &app.base, "hello").await;
    assert!(!reply.is_nil());

    // Given up after DB_STARTUP_TIMEOUT: a clear message and a failing exit, not a hang.
    proxy.cut().await;
    let data = tempfile::tempdir().unwrap();
    let mut gives_up = spawn_app(
        data.path(),
        &[
            ("DATABASE_URL", proxied),
            ("LM_API_URL", fake.url()),
            ("DB_STARTUP_TIMEOUT", "1s".into()),
        ],
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(10), gives_up.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(!status.success());
    let log = gives_up.log();
    assert!(log.contains("cannot connect to the database at"), "{log}");
}

#[tokio::test]
async fn an_sqlite_file_that_cannot_be_opened_stops_start_up_at_once() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeLm::start(Knobs::default()).await;
    let mut app = spawn_app(
        data.path(),
        &[
            (
                "DATABASE_URL",
                "sqlite:///nonexistent-dir/deeper/app.db?mode=rwc".into(),
            ),
            ("LM_API_URL", fake.url()),
        ],
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(10), app.child.wait())
        .await
        .expect("exits at once")
        .unwrap();
    assert!(!status.success());
    let log = app.log();
    assert!(log.contains("cannot connect to the database at"), "{log}");
}

#[tokio::test]
async fn database_down_while_running_is_a_503_then_recovers_and_saves_the_reply_in_flight() {
    let Some(server) = postgres_server() else {
        eprintln!("needs PostgreSQL (TEST_DATABASE_URL); the CI run on PostgreSQL covers it");
        return;
    };
    let (_, target) = through(&server, "127.0.0.1:1".parse().unwrap());
    let proxy = Proxy::reserve(target).await;
    proxy.restore().await;
    let proxy_addr = proxy.addr;
    let app = TestApp::spawn_with(|c| {
        let database = c.database_url.clone().unwrap();
        c.database_url = Some(through(&database, proxy_addr).0);
    })
    .await;
    app.fake_lm.set(|k| *k = paced(30, 30));
    let chat = app.create_chat(&app.client, "").await;
    let reply = app.send(&app.client, chat, "while it lasts").await;
    let url = app.url(&format!("/api/v1/messages/{reply}/stream"));
    let (_, _, reader) = EventReader::open(&app.client, &url, None).await;
    let mut reader = reader.unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut().await;
    // Pages say so in plain words, with Retry-After; nothing is half-saved.
    let page = app.get("/").await;
    assert_eq!(page.status(), 503);
    assert!(page.headers().contains_key("retry-after"));
    let body = page.text().await.unwrap();
    assert!(body.contains("database is not reachable"), "{body}");
    let other_chat_send = app
        .post(&format!("/chats/{chat}/messages"), &[("content", "lost?")])
        .await;
    assert_eq!(other_chat_send.status(), 503);

    // The reply goes on streaming; it ends (at ~0.9 s) while the database is still down.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    proxy.restore().await;
    let restored_at = Instant::now();
    let events = reader.all().await;
    let text = helpers::sse::token_text(&events);
    let expected: String = (0..30).map(|i| format!("w{i} ")).collect();
    assert_eq!(text, expected);
    assert!(events.iter().any(|e| e.event == "done"));
    assert!(restored_at.elapsed() < Duration::from_secs(10));

    // Saved with all its text once the database was back; pages work without a restart.
    let message = app.finished(reply).await;
    assert_eq!(message.status, Status::Complete);
    assert_eq!(message.content, expected);
    assert_eq!(app.get("/").await.status(), 200);
    assert!(
        !app.get(&format!("/chats/{chat}"))
            .await
            .text()
            .await
            .unwrap()
            .contains("lost?")
    );
}

#[tokio::test]
async fn killed_mid_reply_then_restarted_the_reply_is_interrupted_with_its_checkpointed_text() {
    let data = tempfile::tempdir().unwrap();
    let database = fresh_database_url(data.path()).await;
    let fake = FakeLm::start(paced(400, 10)).await;
    let envs = [
        ("DATABASE_URL", database.clone()),
        ("LM_API_URL", fake.url()),
        ("CHECKPOINT_INTERVAL", "1s".to_owned()),
        // The same instance restarted (on another port here): it knows its own replies.
        ("REPLICA_NAME", "the-only-replica".to_owned()),
    ];
    let mut app = spawn_app(data.path(), &envs).await;
    app.wait_ready(Duration::from_secs(10)).await;
    let client = browser();
    let (chat, reply) = start_reply(&client, &app.base, "a long answer please").await;
    let url = format!("{}/api/v1/messages/{reply}/stream", app.base);
    let (_, _, reader) = EventReader::open(&client, &url, None).await;
    let mut reader = reader.unwrap();

    // Read for 2.5 s, remembering what had arrived by each moment.
    let started = Instant::now();
    let mut seen: Vec<(Duration, String)> = Vec::new();
    let mut text = String::new();
    while started.elapsed() < Duration::from_millis(2500) {
        match tokio::time::timeout(Duration::from_millis(100), reader.next()).await {
            Ok(Some(event)) if event.event == "delta" => {
                text.push_str(&helpers::sse::token_text(std::slice::from_ref(&event)));
                seen.push((started.elapsed(), text.clone()));
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("the stream ended before the kill"),
        }
    }
    app.child.start_kill().unwrap(); // SIGKILL
    app.child.wait().await.unwrap();
    let killed_at = started.elapsed();
    // What had arrived about a second (plus a margin for the checkpoint's own write) before.
    let floor = seen
        .iter()
        .rev()
        .find(|(at, _)| *at + Duration::from_millis(1300) <= killed_at)
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    assert!(
        !floor.is_empty(),
        "the reply should have streamed for more than a second"
    );

    let mut app = spawn_app(data.path(), &envs).await;
    app.wait_ready(Duration::from_secs(10)).await;
    let store = Store::connect(&database, 1).await.unwrap();
    let message = stored(&store, reply).await;
    assert_eq!(message.status, Status::Interrupted);
    assert!(
        text.starts_with(&message.content),
        "the saved text is what was streamed"
    );
    assert!(
        message.content.len() >= floor.len(),
        "saved {} bytes, but {} had streamed more than a second before the kill",
        message.content.len(),
        floor.len()
    );
    // The page says so, and Retry starts a new reply that completes.
    let page = client
        .get(format!("{}/chats/{chat}", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Retry") || page.contains("Regenerate"),
        "{page}"
    );
    let retried = post_form(
        &client,
        format!("{}/chats/{chat}/regenerate", app.base),
        &[],
    )
    .await;
    assert_eq!(retried.status(), 303);
    let new_reply = helpers::reply_id(&retried);
    let url = format!("{}/chats/{chat}/messages/{new_reply}/stream", app.base);
    let (_, _, reader) = EventReader::open(&client, &url, None).await;
    let events = reader.unwrap().all().await;
    assert!(events.iter().any(|e| e.event == "done"));
    assert_eq!(stored(&store, new_reply).await.status, Status::Complete);
    app.signal("TERM");
    app.child.wait().await.unwrap();
}

#[tokio::test]
async fn sigterm_lets_replies_finish_within_the_grace_period_then_saves_the_rest_interrupted() {
    let data = tempfile::tempdir().unwrap();
    let database = fresh_database_url(data.path()).await;
    let fake = FakeLm::start(paced(10, 50)).await; // 0.5 s: finishes within the grace period
    let envs = [
        ("DATABASE_URL", database.clone()),
        ("LM_API_URL", fake.url()),
        ("SHUTDOWN_GRACE", "1500ms".to_owned()),
    ];
    let mut app = spawn_app(data.path(), &envs).await;
    app.wait_ready(Duration::from_secs(10)).await;
    let client = browser();
    let (_, short) = start_reply(&client, &app.base, "short").await;
    // The fake reads its knobs per request: change them only once the short one is under way.
    while fake.log(|l| l.request_count) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fake.set(|k| *k = paced(1000, 20)); // 20 s: outlives it
    let (_chat, long) = start_reply(&client, &app.base, "long").await;
    let url = format!("{}/api/v1/messages/{long}/stream", app.base);
    let (_, _, reader) = EventReader::open(&client, &url, None).await;
    let mut reader = reader.unwrap();

    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    app.signal("TERM");
    // New work is refused while draining (the listener is closed).
    let events = reader.all().await;
    let status = tokio::time::timeout(Duration::from_secs(10), app.child.wait())
        .await
        .expect("exits after the grace period")
        .unwrap();
    assert!(status.success(), "{}", app.log());
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(6),
        "{took:?}"
    );
    let streamed = helpers::sse::token_text(&events);
    assert!(
        events.iter().any(|e| e.event == "done"),
        "the stream ends cleanly"
    );

    let store = Store::connect(&database, 1).await.unwrap();
    let short = stored(&store, short).await;
    assert_eq!(short.status, Status::Complete);
    assert_eq!(
        short.content,
        (0..10).map(|i| format!("w{i} ")).collect::<String>()
    );
    let long = stored(&store, long).await;
    assert_eq!(long.status, Status::Interrupted);
    assert!(!long.content.is_empty());
    assert_eq!(
        long.content, streamed,
        "everything streamed is saved, and nothing else"
    );
}

/// A model server that cannot list its models (here: it hangs up at once) is asked once per
/// couple of seconds, not on every chat page: each page would otherwise wait for it in turn.
#[tokio::test]
async fn chat_pages_do_not_ask_a_failing_model_server_each_time() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    let app = TestApp::spawn_with(|c| c.lm_api_url = Some(format!("http://{addr}/v1"))).await;
    let chat = app.create_chat(&app.client, "").await;
    let before = accepted.load(Ordering::SeqCst);
    for _ in 0..10 {
        let page = app.get(&format!("/chats/{chat}")).await;
        assert_eq!(
            page.status(),
            200,
            "the page is served without the model's list"
        );
    }
    let asked = accepted.load(Ordering::SeqCst) - before;
    // Connections the client retries on its own may add one; not one per page.
    assert!(
        asked <= 2,
        "10 pages asked the failing server {asked} times"
    );
}

/// A model server whose host stops answering (blackholed: connections open, nothing comes
/// back) holds up only the very first page; after that, pages are served from the last answer
/// while a new one is asked for in the background.
#[tokio::test]
async fn a_model_server_that_never_answers_holds_up_no_page_after_the_first() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Connections accepted and still open: the app's client gives up on one after its timeout.
    let (accepted, open) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    tokio::spawn({
        let (accepted, open) = (accepted.clone(), open.clone());
        async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                open.fetch_add(1, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    while matches!(socket.read(&mut sink).await, Ok(n) if n > 0) {}
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        }
    });
    let app = TestApp::spawn_with(|c| c.lm_api_url = Some(format!("http://{addr}/v1"))).await;
    let chat = app.create_chat(&app.client, "").await;
    let page = app.get(&format!("/chats/{chat}")).await;
    assert_eq!(
        page.status(),
        200,
        "the first page waits for the client's timeout"
    );
    // Past the 2 s that a failure is believed, wait for the first asks to have given up.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open.load(Ordering::SeqCst), 0, "the first asks timed out");

    let before = accepted.load(Ordering::SeqCst);
    for _ in 0..5 {
        let page = app.get(&format!("/chats/{chat}")).await;
        assert_eq!(page.status(), 200);
    }
    // The pages were answered while the app's new ask is still waiting on the silent server:
    // none of them waited for it.
    assert!(
        accepted.load(Ordering::SeqCst) > before,
        "the old answer is refreshed in the background"
    );
    assert!(
        open.load(Ordering::SeqCst) > 0,
        "the pages came back before the model server's ask gave up"
    );
    assert!(
        accepted.load(Ordering::SeqCst) - before <= 2,
        "one refresh (models, health), not one per page"
    );
}
