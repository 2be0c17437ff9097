//! Several model servers as one (issue 18): two real llama-servers behind nginx with our pool
//! configuration (`deploy/k8s/lm-pool.conf.template`, least_conn, unbuffered), the app's
//! LM_API_URL pointing at nginx. Concurrent replies use both servers; a server killed
//! mid-reply ends that reply with a readable error, keeping its text, and Retry goes to the
//! survivor; the model indicator says what the pool can do. Needs llama-server (`LLAMA_SERVER`,
//! the binary `.ci/build-llama-server.sh` prints) and nginx; `.ci/run` runs it on its own. A
//! server still loading its model is passed over (two fake servers: it runs with the rest).
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use app::store::{Status, message};
use sea_orm::EntityTrait;
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    llama_server::LlamaServer,
    nginx::{self, Nginx},
    repo_path,
};

/// One of the pool's servers on the tiny test model. Sampling over the whole vocabulary (top-k
/// off) slows it to a few hundred tokens a second, and the end-of-stream token is banned (its
/// random weights would otherwise end a reply at any token), so that a reply lasts its whole
/// `max_tokens`: long enough to kill its server in the middle of it.
async fn pool_server(binary: &Path, log: PathBuf) -> LlamaServer {
    let model = testkit::shared_dir().join("models/llama-2-tiny-random.gguf");
    let args = [
        "-m",
        model.to_str().unwrap(),
        "--alias",
        "pool-model",
        "-c",
        "16384",
        "--parallel",
        "2",
        "-t",
        "1",
        "--top-k",
        "0",
        "--top-p",
        "0.99",
        "--ignore-eos",
    ];
    LlamaServer::start(binary, &args, log).await
}

/// The pool's nginx configuration, as compose and Kubernetes run it but on these servers and
/// port, inside a main configuration that logs which server took each request.
fn pool_config(dir: &Path, port: u16, servers: &[&str]) -> PathBuf {
    let template = std::fs::read_to_string(repo_path("deploy/k8s/lm-pool.conf.template")).unwrap();
    // Each `server ${LLAMA_SERVERS}:8080 resolve <parameters>;` becomes one line per server.
    let pool: String = template
        .lines()
        .map(|line| {
            let Some(parameters) = line
                .trim()
                .strip_prefix("server ${LLAMA_SERVERS}:8080 resolve ")
            else {
                return format!("{line}\n");
            };
            servers
                .iter()
                .map(|s| format!("    server {s} {parameters}\n"))
                .collect()
        })
        .collect();
    assert_eq!(
        pool.matches("server 127.0.0.1:").count(),
        2 * servers.len(),
        "the pool and its health checks name every server"
    );
    let pool = pool
        .replace("${NGINX_LOCAL_RESOLVERS}", "127.0.0.1")
        .replace("listen 8080;", &format!("listen 127.0.0.1:{port};"));
    let pool: String = pool
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!pool.contains("${"), "every variable filled in: {pool}");
    let conf = format!(
        "pid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nevents {{}}\nhttp {{\n\
         log_format pool '$request_method $uri $status $upstream_addr';\n\
         access_log {dir}/pool.log pool;\n{pool}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

/// The servers that took chat completions, as nginx logged them (the last one tried).
fn completions_served_by(dir: &Path) -> Vec<String> {
    completions_by_status(dir)
        .into_iter()
        .map(|(_, server)| server)
        .collect()
}

/// Each chat completion nginx passed on: the status its answer went out with, and the server
/// that gave it (the last one tried: `$upstream_addr` lists every one, comma-separated).
fn completions_by_status(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("pool.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("POST /v1/chat/completions"))
        .filter_map(|l| {
            let status = l.split(' ').nth(2)?;
            let server = l.rsplit([' ', ',']).next()?;
            Some((status.to_owned(), server.to_owned()))
        })
        .collect()
}

async fn reply_row(app: &TestApp, id: Uuid) -> message::Model {
    message::Entity::find_by_id(id)
        .one(app.store.connection())
        .await
        .unwrap()
        .unwrap()
}

/// Waits until the reply has ended (at most `within`).
async fn ended(app: &TestApp, id: Uuid, within: Duration) -> message::Model {
    let deadline = Instant::now() + within;
    loop {
        let m = reply_row(app, id).await;
        if m.status != Status::Streaming {
            return m;
        }
        assert!(Instant::now() < deadline, "reply {id} still streaming");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates a chat with a first message: (the chat, its reply, being written).
async fn start_chat(app: &TestApp, content: &str) -> (Uuid, Uuid) {
    let created = app.post("/chats", &[("content", content)]).await;
    assert_eq!(created.status(), 303);
    let chat: Uuid = created.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/chats/")
        .parse()
        .unwrap();
    let reply = app.api_messages(chat).await.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (chat, reply)
}

/// What the model indicator says now.
async fn indicator(app: &TestApp) -> String {
    app.get("/model/status").await.text().await.unwrap()
}

/// Waits until the indicator says `wanted` (it is kept for 2 s).
async fn indicator_says(app: &TestApp, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = indicator(app).await;
        if now.contains(wanted) {
            return;
        }
        assert!(Instant::now() < deadline, "the indicator says {now}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// Two model servers take both cores for half a minute, which would slow the tests beside it:
// `.ci/run` runs it alone (`cargo test -p app --test it model_pool -- --ignored`).
#[tokio::test]
#[ignore = "runs alone: .ci/run"]
async fn a_pool_of_model_servers_shares_replies_and_survives_losing_one() {
    let Some(binary) = std::env::var_os("LLAMA_SERVER").map(PathBuf::from) else {
        crate::helpers::missing("llama-server (LLAMA_SERVER=$(bash .ci/build-llama-server.sh))");
        return;
    };
    if !nginx::installed() {
        crate::helpers::missing("nginx (.ci/run installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = tokio::join!(
        pool_server(&binary, dir.path().join("llama-1.log")),
        pool_server(&binary, dir.path().join("llama-2.log"))
    );
    let mut servers = [first, second];
    let port = nginx::free_port();
    let addresses = [servers[0].address.clone(), servers[1].address.clone()];
    let conf = pool_config(dir.path(), port, &[&addresses[0], &addresses[1]]);
    let pool = format!("http://127.0.0.1:{port}");
    let _nginx = Nginx::start(&conf, dir.path(), &format!("{pool}/health")).await;
    let app = TestApp::spawn_with(|c| {
        c.lm_api_url = Some(format!("{pool}/v1"));
        c.lm_max_tokens = 3000;
        c.max_concurrent_generations = 8;
        c.title_generation = false;
    })
    .await;
    indicator_says(&app, "Model ready").await;

    // Four replies at once: both servers take some.
    let client = app.client.clone();
    let mut replies = Vec::new();
    for i in 0..4 {
        let (_, reply) = start_chat(&app, &format!("Tell me a long story, number {i}.")).await;
        replies.push(reply);
    }
    for reply in &replies {
        let done = ended(&app, *reply, Duration::from_secs(60)).await;
        assert_eq!(done.status, Status::Complete, "{:?}", done.error);
        assert!(!done.content.is_empty());
    }
    let served = completions_served_by(dir.path());
    for address in &addresses {
        assert!(
            served.iter().any(|s| s == address),
            "{address} took none of {served:?}"
        );
    }

    // A reply whose server dies in the middle of it ends with a readable error and keeps what
    // it had; Retry goes to the survivor.
    let (chat, reply) = start_chat(&app, "One more long story, please.").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while reply_row(&app, reply).await.content.len() < 200 {
        assert!(Instant::now() < deadline, "no text checkpointed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let busy = match (servers[0].is_busy().await, servers[1].is_busy().await) {
        (true, false) => 0,
        (false, true) => 1,
        other => {
            let row = reply_row(&app, reply).await;
            panic!(
                "one server should be writing the reply: {other:?}; the reply is {:?} with {} bytes",
                row.status,
                row.content.len()
            )
        }
    };
    let before = reply_row(&app, reply).await.content;
    servers[busy].kill().await;
    let failed = ended(&app, reply, Duration::from_secs(30)).await;
    assert_eq!(failed.status, Status::Error);
    let error = failed.error.clone().unwrap_or_default();
    assert!(
        !error.is_empty() && !error.contains("reqwest") && !error.contains("error decoding"),
        "a readable error: {error}"
    );
    assert!(
        failed.content.starts_with(&before) && failed.content.len() >= before.len(),
        "the text so far is kept"
    );
    let page = client
        .get(app.url(&format!("/chats/{chat}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Retry"), "the page offers Retry");
    let retry = client
        .post(app.url(&format!("/chats/{chat}/regenerate")))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 303);
    let again = crate::helpers::reply_id(&retry);
    let done = ended(&app, again, Duration::from_secs(60)).await;
    assert_eq!(done.status, Status::Complete, "{:?}", done.error);
    let survivor = &addresses[1 - busy];
    assert_eq!(
        completions_served_by(dir.path()).last(),
        Some(survivor),
        "the retry was written by the survivor"
    );

    // The indicator says what the pool can do: ready while one server answers, unreachable
    // once none does. Readiness is the app's own (its database): pages and history still work.
    indicator_says(&app, "Model ready").await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\nmodel: ready\n");
    servers[1 - busy].kill().await;
    indicator_says(&app, "Model unreachable").await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200, "pages and history still work");
    assert_eq!(ready.text().await.unwrap(), "ready\nmodel: unreachable\n");
    assert_eq!(
        client
            .get(app.url(&format!("/chats/{chat}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

// Fake servers: quick, so it runs with the rest (it needs nginx, which `.ci/run` installs).
#[tokio::test]
async fn a_model_server_still_loading_is_passed_over_and_the_indicator_says_what_the_pool_can_do() {
    if !nginx::installed() {
        crate::helpers::missing("nginx (.ci/run installs it)");
        return;
    }
    // llama-server answers 503 with `unavailable_error` while it loads its model, to every
    // request. nginx sends a GET on to the other server, but never a POST already sent: the
    // app asks again, and nginx, having left the loading server out, sends it to the other.
    let loading = testkit::FakeLm::start(testkit::Knobs::default()).await;
    let serving = testkit::FakeLm::start(testkit::Knobs::default()).await;
    let address = |url: String| {
        url.trim_start_matches("http://")
            .trim_end_matches("/v1")
            .to_owned()
    };
    let (loading_at, serving_at) = (address(loading.url()), address(serving.url()));
    let dir = tempfile::tempdir().unwrap();
    let port = nginx::free_port();
    let conf = pool_config(dir.path(), port, &[&loading_at, &serving_at]);
    let pool = format!("http://127.0.0.1:{port}");
    let _nginx = Nginx::start(&conf, dir.path(), &format!("{pool}/health")).await;
    let app = TestApp::spawn_with(|c| {
        c.lm_api_url = Some(format!("{pool}/v1"));
        c.title_generation = false;
    })
    .await;
    indicator_says(&app, "Model ready").await;
    // One server restarts and loads its model again. Replies one after another: with none
    // busy, nginx takes the servers in turn, so one of them is sent to the loading server.
    let (status, body) = (
        503,
        r#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#,
    );
    loading.set(|k| {
        k.health_status = status;
        k.http_error = Some((status, body.to_owned()));
    });

    for i in 0..4 {
        let (_, reply) = start_chat(&app, &format!("Hello, number {i}.")).await;
        let done = ended(&app, reply, Duration::from_secs(20)).await;
        assert_eq!(done.status, Status::Complete, "{:?}", done.error);
        assert!(!done.content.is_empty());
    }
    let served = completions_by_status(dir.path());
    assert!(
        served.contains(&("503".to_owned(), loading_at.clone())),
        "the loading server was tried: {served:?}"
    );
    assert!(
        served
            .iter()
            .filter(|(status, _)| status == "200")
            .all(|(_, server)| *server == serving_at),
        "every reply was written by the server that serves: {served:?}"
    );
    assert_eq!(
        serving.log(|log| log.completed),
        4,
        "each reply was written once"
    );

    // Both loading: the indicator and readiness's body say so, not that the pool is gone.
    serving.set(|k| {
        k.health_status = status;
        k.http_error = Some((status, body.to_owned()));
    });
    indicator_says(&app, "Model loading").await;
    // It stays so (nginx leaves no server out of its health checks), and readiness says so.
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = indicator(&app).await;
        assert!(now.contains("Model loading"), "while both load: {now}");
    }
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().await.unwrap(), "ready\nmodel: loading\n");
    // One has loaded: ready again, and replies are written again.
    serving.set(|k| {
        k.health_status = 200;
        k.http_error = None;
    });
    indicator_says(&app, "Model ready").await;
    let (_, reply) = start_chat(&app, "Back?").await;
    let done = ended(&app, reply, Duration::from_secs(20)).await;
    assert_eq!(done.status, Status::Complete, "{:?}", done.error);
}
