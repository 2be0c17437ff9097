//! Test harness: the real router served on 127.0.0.1:0 with a fresh database per test (SQLite
//! by default; PostgreSQL when `TEST_DATABASE_URL` names a server to create databases on). The
//! fake llama-server and the app-process runner are the `testkit` crate's (shared with bench).
pub mod api;
pub mod direct;
#[cfg(feature = "embedded")]
pub mod hub;
pub mod llama_server;
pub mod nginx;
pub mod oidc;
pub mod proxy;
pub mod sse;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use app::{AppState, config::Config, store::Store};
use sea_orm::{ConnectionTrait, Statement};
use testkit::{AppProcess, FakeLm, Knobs};
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    /// A browser: keeps cookies, does not follow redirects.
    pub client: reqwest::Client,
    /// Direct database access for assertions.
    pub store: Store,
    pub config: Config,
    /// The running app's state (for its generation registry).
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub data_dir: tempfile::TempDir,
    /// The fake llama-server the app talks to (unless the test pointed it elsewhere).
    pub fake_lm: FakeLm,
}

/// A program or server a test needs from outside is missing (`what`: what and how to get it).
/// Outside CI the test is skipped, saying so; under CI (`CI` set), where `.ci/run` provides
/// everything, it fails rather than pass without having run.
pub fn missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "needs {what}: under CI it must be there"
    );
    eprintln!("skipped: needs {what}");
}

/// The PostgreSQL server the suite runs against (`TEST_DATABASE_URL`), or `None` on SQLite: the
/// tests about a database server or several replicas then return at once, and CI runs the suite
/// on PostgreSQL too, where they run.
pub fn postgres_server() -> Option<String> {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
}

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// A config for tests: a fresh database and data directory.
pub async fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.bind_addr = "127.0.0.1:0".parse().unwrap();
    config.data_dir = data_dir.to_path_buf();
    config.database_url = Some(fresh_database_url(data_dir).await);
    config.session_key = None;
    config.cookie_secure = false;
    // Tests send far faster than people; the security tests turn the limits on where it checks them.
    config.rate_limits = false;
    // PDFs are read by the app binary started again (`pdf_text`); a test runs in its own binary.
    config.pdf_reader = Some(env!("CARGO_BIN_EXE_app").into());
    // So is each of llama.cpp's CPU builds tried (`embedded::cpu`).
    config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
    // Title requests would be extra upstream requests in tests that count them.
    config.title_generation = false;
    // One name across restarts, as one instance keeps its host name and port.
    config.replica_name = Some("test-app".into());
    config
}

/// SQLite in the test's own directory, or a new database on the PostgreSQL server named by
/// `TEST_DATABASE_URL`.
pub async fn fresh_database_url(data_dir: &std::path::Path) -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(server_url) if !server_url.is_empty() => {
            let name = format!("t_{}", uuid::Uuid::new_v4().simple());
            let admin = sea_orm::Database::connect(server_url.clone())
                .await
                .expect("connect TEST_DATABASE_URL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            admin.close().await.ok();
            let (prefix, _) = server_url
                .rsplit_once('/')
                .expect("TEST_DATABASE_URL has a database path");
            format!("{prefix}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", data_dir.join("test.db").display()),
    }
}

/// The test models in the shared folder (see `testkit::shared_dir`).
#[cfg(feature = "embedded")]
pub fn shared_model(file: &str) -> PathBuf {
    testkit::shared_dir().join("models").join(file)
}

/// An embedded engine on `model`, started once per test process and model (llama.cpp's
/// backend starts once per process; a model loads in well under a second), ready to answer.
#[cfg(feature = "embedded")]
pub async fn embedded_engine(model: &str) -> app::engine::Engine {
    use std::{collections::HashMap, sync::Mutex};
    static ENGINES: Mutex<Option<HashMap<String, app::engine::Engine>>> = Mutex::new(None);
    let engine = {
        let mut engines = ENGINES.lock().unwrap();
        engines
            .get_or_insert_with(HashMap::new)
            .entry(model.to_owned())
            .or_insert_with(|| {
                let mut config = Config::defaults();
                config.lm_model_path = Some(shared_model(model));
                config.lm_threads = Some(2);
                config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
                let settings = app::embedded_settings(&config);
                app::engine::Engine::Embedded(app::embedded::EmbeddedEngine::start(settings))
            })
            .clone()
    };
    wait_until_ready(&engine).await;
    engine
}

/// Waits until the engine's model is loaded; panics with its error if it failed.
#[cfg(feature = "embedded")]
pub async fn wait_until_ready(engine: &app::engine::Engine) {
    for _ in 0..600 {
        match engine.status().await {
            app::lm::ModelStatus::Ready => return,
            app::lm::ModelStatus::Failed(message) => panic!("the model failed: {message}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    panic!("the model was not ready after 30 s");
}

/// The `app` binary built with these tests, as a child process configured by `envs` only (see
/// [`AppProcess::spawn`]).
pub async fn spawn_app(data_dir: &Path, envs: &[(&str, String)]) -> AppProcess {
    AppProcess::spawn(Path::new(env!("CARGO_BIN_EXE_app")), data_dir, envs)
        .expect("start the app binary")
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// An app whose model server is a fresh fake; `configure` may change anything, including
    /// `lm_api_url`.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path()).await;
        let fake = FakeLm::start(Knobs::default()).await;
        config.lm_api_url = Some(fake.url());
        configure(&mut config);
        Self::start_with(config, data_dir, fake, None).await
    }

    /// Starts the app on an existing configuration and data directory (a restart).
    pub async fn start(config: Config, data_dir: tempfile::TempDir) -> Self {
        let fake = FakeLm::start(Knobs::default()).await;
        Self::start_with(config, data_dir, fake, None).await
    }

    /// An app on the embedded engine `engine` (no `LM_API_URL`); `configure` may change the rest.
    #[cfg(feature = "embedded")]
    pub async fn spawn_embedded(
        engine: app::engine::Engine,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let mut config = test_config(data_dir.path()).await;
        config.lm_api_url = None;
        configure(&mut config);
        // Unused, but a TestApp always has one.
        let fake = FakeLm::start(Knobs::default()).await;
        Self::start_with(config, data_dir, fake, Some(engine)).await
    }

    async fn start_with(
        config: Config,
        data_dir: tempfile::TempDir,
        fake_lm: FakeLm,
        engine: Option<app::engine::Engine>,
    ) -> Self {
        let state = match engine {
            Some(engine) => AppState::build_with(config.clone(), |_| Ok(engine)).await,
            None => AppState::build(config.clone()).await,
        }
        .expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app::serve_on(listener, state.clone(), async {
            let _ = rx.await;
        }));
        // Ready as a load balancer would see it (on PostgreSQL: listening for other replicas).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !state.live.has_listened() {
            assert!(std::time::Instant::now() < deadline, "never listened");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Acting as the app's replica: what it stores is the app's own.
        let store = Store::connect(config.database_url.as_deref().unwrap(), 2)
            .await
            .unwrap()
            .for_replica(app::store::Replica {
                name: config.replica_name(),
                lease: config.reply_lease,
            });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            client: browser(),
            store,
            config,
            state,
            shutdown: Some(tx),
            server: Some(server),
            data_dir,
            fake_lm,
        }
    }

    /// Stops the server and hands back what a restart needs.
    pub async fn stop(mut self) -> (Config, tempfile::TempDir) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        (self.config.clone(), data_dir)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// A page (or any body) as text, with this app's client.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path).await.text().await.unwrap()
    }

    /// A JSON body, with this app's client.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path).await.json().await.unwrap()
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        post_form(&self.client, &self.url(path), form, false).await
    }

    pub async fn post_htmx(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        post_form(&self.client, &self.url(path), form, true).await
    }

    /// Creates a chat through the no-JS form and returns its id, once the reply to the first
    /// message (if any) has ended.
    pub async fn create_chat(&self, client: &reqwest::Client, first_message: &str) -> uuid::Uuid {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let response = post_form(
            client,
            &self.url("/chats"),
            &[("content", first_message)],
            false,
        )
        .await;
        assert_eq!(response.status(), 303, "create chat");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let chat: uuid::Uuid = location.trim_start_matches("/chats/").parse().unwrap();
        let replies = app::store::message::Entity::find()
            .filter(app::store::message::Column::ChatId.eq(chat))
            .filter(app::store::message::Column::Status.eq(app::store::Status::Streaming))
            .all(self.store.connection())
            .await
            .unwrap();
        for reply in replies {
            self.finished(reply.id).await;
        }
        chat
    }

    /// Sends a message without JavaScript (POST, then 303); returns the reply's id.
    pub async fn send(
        &self,
        client: &reqwest::Client,
        chat: uuid::Uuid,
        content: &str,
    ) -> uuid::Uuid {
        let response = post_form(
            client,
            &self.url(&format!("/chats/{chat}/messages")),
            &[("content", content)],
            false,
        )
        .await;
        assert_eq!(response.status(), 303, "send");
        reply_id(&response)
    }

    /// Sends a message without JavaScript and waits until its reply has ended; returns the
    /// reply's id.
    pub async fn send_and_wait(
        &self,
        client: &reqwest::Client,
        chat: uuid::Uuid,
        content: &str,
    ) -> uuid::Uuid {
        let reply = self.send(client, chat, content).await;
        self.finished(reply).await;
        reply
    }

    /// A message as the database has it now.
    pub async fn store_message(&self, id: uuid::Uuid) -> app::store::message::Model {
        use sea_orm::EntityTrait;
        app::store::message::Entity::find_by_id(id)
            .one(self.store.connection())
            .await
            .unwrap()
            .unwrap()
    }

    /// Waits until a reply is no longer `streaming` and returns it.
    pub async fn finished(&self, id: uuid::Uuid) -> app::store::message::Model {
        use sea_orm::EntityTrait;
        for _ in 0..1000 {
            let m = app::store::message::Entity::find_by_id(id)
                .one(self.store.connection())
                .await
                .unwrap()
                .unwrap();
            if m.status != app::store::Status::Streaming {
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("reply {id} still streaming after 10 s");
    }

    /// A chat's messages as the API lists them (its first page).
    pub async fn api_messages(&self, chat: uuid::Uuid) -> Vec<serde_json::Value> {
        let response = self.get(&format!("/api/v1/chats/{chat}/messages")).await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        body["messages"].as_array().unwrap().clone()
    }

    pub async fn count(&self, table: &str) -> i64 {
        let db = self.store.connection();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }
}

/// The home page's import form carrying `export` as the chosen file.
pub fn import_form(export: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(export)
            .file_name("chat.json")
            .mime_str("application/json")
            .unwrap(),
    )
}

/// The `href`s of the links of `class` a page shows, in order (unescaped).
pub fn hrefs(html: &str, class: &str) -> Vec<String> {
    html.split(&format!("class=\"{class}\" href=\""))
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&#x2f;", "/"))
        .collect()
}

/// The reply id in a 303's `Location: /chats/{chat}#m-{reply}`.
pub fn reply_id(response: &reqwest::Response) -> uuid::Uuid {
    let location = response.headers()["location"].to_str().unwrap();
    location.split("#m-").nth(1).unwrap().parse().unwrap()
}

/// A GET as htmx sends it (`HX-Request: true`).
pub async fn get_htmx(client: &reqwest::Client, url: &str) -> reqwest::Response {
    client
        .get(url)
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap()
}

pub async fn post_form(
    client: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
    htmx: bool,
) -> reqwest::Response {
    let mut request = client.post(url).form(form);
    if htmx {
        request = request.header("HX-Request", "true");
    }
    request.send().await.unwrap()
}
