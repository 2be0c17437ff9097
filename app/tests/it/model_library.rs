//! The embedded engine's model library: the models it finds (LM_MODEL_PATH, LM_MODELS_DIR, the
//! hub cache), each chat answered by its own, loaded on first use and unloaded least recently
//! used first (never one writing a reply) or when idle; files that are not models, that fail to
//! load or that went away.
#![cfg(feature = "embedded")]
use std::{path::Path, time::Duration};

use app::{config::Config, engine::Engine, store::Status};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{TestApp, shared_model, sse::EventReader, wait_until_ready};

const TINY: &str = "llama-2-tiny-random.gguf";
const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// An engine whose default is the tiny model, with `models/` and `hub/` under `dir`.
async fn library_engine(dir: &Path, configure: impl FnOnce(&mut Config)) -> Engine {
    let mut config = Config::defaults();
    config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
    config.lm_model_path = Some(shared_model(TINY));
    config.lm_threads = Some(2);
    config.lm_ctx_size = 1024;
    config.max_concurrent_generations = 2;
    config.lm_models_dir = Some(dir.join("models"));
    config.hf_hub_cache = Some(dir.join("hub"));
    config.data_dir = dir.join("data");
    configure(&mut config);
    let engine = Engine::Embedded(app::embedded::EmbeddedEngine::start(
        app::embedded_settings(&config),
    ));
    wait_until_ready(&engine).await;
    engine
}

fn link(target: &Path, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

async fn models(app: &TestApp) -> Vec<Value> {
    let response = app.get("/api/v1/models").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["models"].as_array().unwrap().clone()
}

/// `id` → (loaded, loading).
async fn loaded(app: &TestApp) -> Vec<(String, bool)> {
    models(app)
        .await
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["loaded"] == true))
        .collect()
}

async fn chat_on(app: &TestApp, model: &str) -> Uuid {
    let chat = app.create_chat(&app.client, "").await;
    let response = app
        .post(&format!("/chats/{chat}/settings"), &[("model", model)])
        .await;
    assert!(
        response.status().is_redirection(),
        "{}",
        response.text().await.unwrap()
    );
    chat
}

/// The stream's events up to the first piece of text (or its end).
async fn until_text(app: &TestApp, reply: Uuid) -> (Vec<(String, String)>, EventReader) {
    let url = app.url(&format!("/api/v1/messages/{reply}/stream"));
    let (status, _, events) = EventReader::open(&app.client, &url, None).await;
    assert_eq!(status, 200);
    let mut events = events.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        let done = matches!(event.event.as_str(), "delta" | "done" | "error");
        seen.push((event.event, event.data));
        if done {
            break;
        }
    }
    (seen, events)
}

#[tokio::test]
async fn each_chat_is_answered_by_its_own_model_loaded_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    link(&shared_model(SMOL), &dir.path().join("models/smol.gguf"));
    std::fs::write(dir.path().join("models/notes.gguf"), b"not a model").unwrap();
    let engine = library_engine(dir.path(), |_| {}).await;
    let app = TestApp::spawn_embedded(engine, |c| c.lm_max_tokens = 8).await;

    // The library: the default (loaded at start) and the folder's model, described by its
    // header; the file that is not a model is left out.
    let listed = models(&app).await;
    assert_eq!(listed.len(), 2, "{listed:#?}");
    let (tiny, smol) = (&listed[0], &listed[1]);
    assert_eq!(tiny["id"], "llama-2-tiny-random");
    assert_eq!(tiny["default"], true);
    assert_eq!(tiny["loaded"], true);
    assert_eq!(tiny["source"], "configured");
    assert_eq!(smol["id"], "smol");
    assert_eq!(smol["default"], false);
    assert_eq!(smol["loaded"], false);
    assert_eq!(smol["quantization"], "Q4_1");
    assert_eq!(smol["context_length"], 8192);
    assert_eq!(smol["n_ctx"], 1024);
    assert_eq!(smol["template"], "chatml");
    assert_eq!(smol["source"], "models folder");
    assert_eq!(
        smol["size_bytes"],
        std::fs::metadata(shared_model(SMOL)).unwrap().len()
    );
    let page = app.get("/models").await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    for shown in [
        "smol",
        "llama-2-tiny-random",
        "Q4_1",
        "chatml",
        "default",
        "not loaded",
        "8,192 tokens",
    ] {
        assert!(html.contains(shown), "the Models page shows {shown}");
    }

    // A chat on the other model: its reply says the model is loading, then is written by it.
    let chat = chat_on(&app, "smol").await;
    let reply = app.send(&app.client, chat, "Say hello.").await;
    let (events, _) = until_text(&app, reply).await;
    assert!(
        events
            .iter()
            .any(|(name, data)| name == "status" && data.contains("Loading the model smol…")),
        "{events:?}"
    );
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Complete, "{:?}", saved.error);
    assert_eq!(saved.model.as_deref(), Some("smol"));
    // One model at a time (LM_MAX_LOADED=1): the default made room.
    assert_eq!(
        loaded(&app).await,
        [("llama-2-tiny-random".into(), false), ("smol".into(), true)]
    );

    // A chat on the default is answered by it, loaded again; the other one goes.
    let other = app.create_chat(&app.client, "").await;
    let reply = app.send_and_wait(&app.client, other, "Hello").await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Complete, "{:?}", saved.error);
    assert_eq!(saved.model.as_deref(), Some("llama-2-tiny-random"));
    assert_eq!(
        loaded(&app).await,
        [("llama-2-tiny-random".into(), true), ("smol".into(), false)]
    );

    // A model nobody serves cannot be chosen.
    let refused = app
        .post(&format!("/chats/{chat}/settings"), &[("model", "nothing")])
        .await;
    assert_eq!(refused.status(), 422);
}

#[tokio::test]
async fn a_model_writing_a_reply_is_never_unloaded_for_another() {
    let dir = tempfile::tempdir().unwrap();
    link(&shared_model(SMOL), &dir.path().join("models/smol.gguf"));
    // Room for a reply long enough to be stopped by hand.
    let engine = library_engine(dir.path(), |c| c.lm_ctx_size = 4096).await;
    let app = TestApp::spawn_embedded(engine, |c| c.lm_max_tokens = 3500).await;

    // A long reply on the default model…
    let long_chat = app.create_chat(&app.client, "").await;
    let long = app.send(&app.client, long_chat, "Go on for ever").await;
    let (events, _long_events) = until_text(&app, long).await;
    assert_eq!(events.last().unwrap().0, "delta", "{events:?}");
    // …keeps it loaded: a reply on another model waits, saying so.
    let chat = chat_on(&app, "smol").await;
    let short = app
        .post(
            &format!("/chats/{chat}/settings"),
            &[("model", "smol"), ("max_tokens", "8")],
        )
        .await;
    assert!(short.status().is_redirection());
    let waiting = app.send(&app.client, chat, "Hello").await;
    let url = app.url(&format!("/api/v1/messages/{waiting}/stream"));
    let (_, _, events) = EventReader::open(&app.client, &url, None).await;
    let mut events = events.unwrap();
    loop {
        let event = events.next().await.expect("a status");
        assert_eq!(event.event, "status", "no text before the model is loaded");
        if event.data.contains("Loading the model smol…") {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.store_message(waiting).await.status, Status::Streaming);
    assert_eq!(app.store_message(long).await.status, Status::Streaming);
    assert_eq!(
        loaded(&app).await,
        [("llama-2-tiny-random".into(), true), ("smol".into(), false)]
    );

    // Once the long reply ends, the waiting one is loaded and answered.
    let stop = app
        .post(&format!("/chats/{long_chat}/messages/{long}/stop"), &[])
        .await;
    assert!(stop.status().is_redirection() || stop.status().is_success());
    assert_eq!(app.finished(long).await.status, Status::Stopped);
    let saved = app.finished(waiting).await;
    assert_eq!(saved.status, Status::Complete, "{:?}", saved.error);
    assert_eq!(saved.model.as_deref(), Some("smol"));
}

#[tokio::test]
async fn an_idle_model_is_unloaded_and_loaded_again_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = library_engine(dir.path(), |c| {
        c.lm_model_idle = Some(Duration::from_millis(400));
    })
    .await;
    let app = TestApp::spawn_embedded(engine, |c| c.lm_max_tokens = 4).await;
    let chat = app.create_chat(&app.client, "").await;
    app.send_and_wait(&app.client, chat, "Hello").await;
    let mut unloaded = false;
    for _ in 0..50 {
        if loaded(&app).await == [("llama-2-tiny-random".to_owned(), false)] {
            unloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(unloaded, "the model is unloaded after LM_MODEL_IDLE");
    // The indicator is still ready: the model loads on use.
    let status = app.get("/model/status").await.text().await.unwrap();
    assert!(status.contains("Model ready"), "{status}");
    let reply = app.send(&app.client, chat, "Again").await;
    let (events, _) = until_text(&app, reply).await;
    assert!(
        events.iter().any(|(name, data)| name == "status"
            && data.contains("Loading the model llama-2-tiny-random…")),
        "{events:?}"
    );
    assert_eq!(app.finished(reply).await.status, Status::Complete);
}

#[tokio::test]
async fn a_model_that_fails_to_load_or_went_away_is_a_clear_error_and_the_others_work() {
    let dir = tempfile::tempdir().unwrap();
    // A GGUF whose header reads but whose weights are cut off, and a model that will be
    // removed after a chat chose it.
    let smol = std::fs::read(shared_model(SMOL)).unwrap();
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::write(dir.path().join("models/cut.gguf"), &smol[..smol.len() / 2]).unwrap();
    link(&shared_model(SMOL), &dir.path().join("models/gone.gguf"));
    let engine = library_engine(dir.path(), |_| {}).await;
    let app = TestApp::spawn_embedded(engine, |c| c.lm_max_tokens = 4).await;

    let cut = chat_on(&app, "cut").await;
    let reply = app.send(&app.client, cut, "Hello").await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Error);
    let error = saved.error.unwrap_or_default();
    assert!(error.contains("could not load the model file"), "{error}");

    let gone = chat_on(&app, "gone").await;
    std::fs::remove_file(dir.path().join("models/gone.gguf")).unwrap();
    let reply = app.send(&app.client, gone, "Hello").await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Error);
    let error = saved.error.unwrap_or_default();
    assert!(
        error.contains("“gone” is not in the library any more"),
        "{error}"
    );

    // The default still answers.
    let chat = app.create_chat(&app.client, "").await;
    let reply = app.send_and_wait(&app.client, chat, "Hello").await;
    assert_eq!(app.finished(reply).await.status, Status::Complete);
}

#[tokio::test]
async fn models_in_the_hub_cache_join_the_library() {
    let dir = tempfile::tempdir().unwrap();
    link(
        &shared_model(SMOL),
        &dir.path().join(
            "hub/models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF/snapshots/0123abcd/smollm2.gguf",
        ),
    );
    let engine = library_engine(dir.path(), |_| {}).await;
    let app = TestApp::spawn_embedded(engine, |c| c.lm_max_tokens = 4).await;
    let listed = models(&app).await;
    let hub = listed
        .iter()
        .find(|m| m["id"] == "smollm2")
        .expect("listed");
    assert_eq!(
        hub["source"],
        "hub: HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    );
    let chat = chat_on(&app, "smollm2").await;
    let reply = app.send(&app.client, chat, "Hello").await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Complete, "{:?}", saved.error);
    assert_eq!(saved.model.as_deref(), Some("smollm2"));
}

const ADMIN: &str = "operator-secret-0123456789";

/// A request with the operator's token.
fn as_operator(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request.bearer_auth(ADMIN)
}

async fn wait_for_model(app: &TestApp, id: &str) -> Value {
    for _ in 0..200 {
        let listed = models(app).await;
        if let Some(model) = listed.iter().find(|m| m["id"] == id)
            && model["download"].is_null()
        {
            return model.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{id} never joined the library: {:#?}", models(app).await);
}

#[tokio::test]
async fn only_the_operator_changes_the_library() {
    // Without ADMIN_TOKEN nobody can.
    let dir = tempfile::tempdir().unwrap();
    let engine = library_engine(dir.path(), |_| {}).await;
    let app = TestApp::spawn_embedded(engine, |_| {}).await;
    let refused = app
        .client
        .post(app.url("/api/v1/models"))
        .json(&serde_json::json!({"repo": "a/b", "file": "c.gguf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("set ADMIN_TOKEN"));
    let page = app.get("/admin").await.text().await.unwrap();
    assert!(page.contains("No operator is configured"), "{page}");
    let sign_in = app.post("/admin", &[("token", "")]).await;
    assert_eq!(sign_in.status(), 403);

    // With it: the token or a signed-in browser, nobody else.
    let dir = tempfile::tempdir().unwrap();
    let engine = library_engine(dir.path(), |_| {}).await;
    let app = TestApp::spawn_embedded(engine, |c| c.admin_token = Some(ADMIN.into())).await;
    let url = app.url("/api/v1/models/default");
    let body = serde_json::json!({"id": "llama-2-tiny-random"});
    let anonymous = app.client.put(&url).json(&body).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .client
        .put(&url)
        .bearer_auth("not-the-token")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = as_operator(reqwest::Client::new().put(&url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200, "{}", right.text().await.unwrap());
    // The operator's token opens the operator's endpoints (and the list), not a session's.
    let chats = as_operator(reqwest::Client::new().get(app.url("/api/v1/chats")))
        .send()
        .await
        .unwrap();
    assert_eq!(chats.status(), 401);
    assert!(
        chats
            .text()
            .await
            .unwrap()
            .contains("operator's endpoints only")
    );
    let listed = as_operator(reqwest::Client::new().get(app.url("/api/v1/models")))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);

    // A browser: the page hides the controls until it signs in with the token.
    let page = app.get("/admin").await.text().await.unwrap();
    assert!(
        page.contains("Operator's token") && !page.contains("Make default"),
        "{page}"
    );
    let bad = app.post("/admin", &[("token", "guess")]).await;
    assert_eq!(bad.status(), 403);
    let bad = bad.text().await.unwrap();
    assert!(bad.contains("That is not the operator"), "{bad}");
    let good = app.post("/admin", &[("token", ADMIN)]).await;
    assert_eq!(good.status(), 303);
    let page = app.get("/admin").await.text().await.unwrap();
    assert!(
        page.contains("Model library") && page.contains("Sign out"),
        "{page}"
    );
    let form = app
        .post("/admin/models/llama-2-tiny-random/default", &[])
        .await;
    assert_eq!(form.status(), 303);
    // Another browser is not signed in.
    let other = crate::helpers::browser();
    let refused = other
        .post(app.url("/admin/models/llama-2-tiny-random/default"))
        .header("origin", app.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // Signing out ends it.
    assert_eq!(app.post("/admin/signout", &[]).await.status(), 303);
    let page = app.get("/admin").await.text().await.unwrap();
    assert!(page.contains("Operator's token"), "{page}");
}

#[tokio::test]
async fn the_operator_downloads_chooses_the_default_and_removes_models() {
    let tiny = shared_model(TINY);
    let hub = crate::helpers::hub::FakeHub::start(&[
        ("tiny-copy.gguf", tiny.clone()),
        ("sub/other.gguf", tiny.clone()),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = hub.endpoint.clone();
    let engine = library_engine(dir.path(), |c| c.hf_endpoint = endpoint.clone()).await;
    let app = TestApp::spawn_embedded(engine, |c| {
        c.admin_token = Some(ADMIN.into());
        c.hf_endpoint = hub.endpoint.clone();
        c.lm_max_tokens = 3000;
    })
    .await;
    let operator = reqwest::Client::new();
    let post = |body: Value| {
        as_operator(operator.post(app.url("/api/v1/models")))
            .json(&body)
            .send()
    };

    // A repository's GGUF files, to choose from.
    let listed = as_operator(operator.get(app.url("/api/v1/models/hub?repo=test-owner/tiny-GGUF")))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let size = std::fs::metadata(&tiny).unwrap().len();
    assert_eq!(
        listed["files"],
        serde_json::json!([
            {"path": "sub/other.gguf", "size_bytes": size},
            {"path": "tiny-copy.gguf", "size_bytes": size},
        ])
    );
    let page = app.post("/admin", &[("token", ADMIN)]).await;
    assert_eq!(page.status(), 303);
    let page = app
        .get("/admin?repo=test-owner/tiny-GGUF")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("tiny-copy.gguf") && page.contains(">Download</button>"),
        "{page}"
    );

    // Bad requests change nothing.
    for (body, status) in [
        (
            serde_json::json!({"repo": "test-owner/tiny-GGUF", "file": "notes.txt"}),
            422,
        ),
        (
            serde_json::json!({"repo": "no-owner", "file": "x.gguf"}),
            422,
        ),
        (
            serde_json::json!({"repo": "test-owner/tiny-GGUF", "file": "../x.gguf"}),
            422,
        ),
        (
            serde_json::json!({"repo": "test-owner/tiny-GGUF", "file": TINY}),
            409,
        ),
    ] {
        let answer = post(body.clone()).await.unwrap();
        assert_eq!(
            answer.status(),
            status,
            "{body}: {}",
            answer.text().await.unwrap()
        );
    }

    // A download: listed with its progress, then in the library, then answering a chat.
    let started =
        post(serde_json::json!({"repo": "test-owner/tiny-GGUF", "file": "tiny-copy.gguf"}))
            .await
            .unwrap();
    assert_eq!(started.status(), 202);
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["id"], "tiny-copy");
    assert!(started["download"].is_object(), "{started}");
    // A page following the download gets the table until it is done, then `done`.
    let (status, _, events) =
        EventReader::open(&app.client, &app.url("/models/events?admin=true"), None).await;
    assert_eq!(status, 200);
    let events = events.unwrap().all().await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    let last_table = &events[events.len() - 2];
    assert_eq!(last_table.event, "library");
    assert!(last_table.data.contains("tiny-copy") && last_table.data.contains("Make default"));
    let model = wait_for_model(&app, "tiny-copy").await;
    assert_eq!(model["source"], "hub: test-owner/tiny-GGUF");
    assert_eq!(model["size_bytes"], size);
    let blob = dir.path().join("hub/models--test-owner--tiny-GGUF/blobs");
    assert_eq!(
        std::fs::read_dir(&blob).unwrap().count(),
        1,
        "the bytes, in the hub cache"
    );

    // The default: changed, used by a chat without a model, kept across a restart.
    let changed = as_operator(operator.put(app.url("/api/v1/models/default")))
        .json(&serde_json::json!({"id": "tiny-copy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.unwrap();
    let default: Vec<&Value> = changed["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["default"] == true)
        .map(|m| &m["id"])
        .collect();
    assert_eq!(default, [&Value::from("tiny-copy")]);
    let chat = app.create_chat(&app.client, "").await;
    let short = app
        .post(&format!("/chats/{chat}/settings"), &[("max_tokens", "4")])
        .await;
    assert!(short.status().is_redirection());
    let reply = app.send_and_wait(&app.client, chat, "Hello").await;
    assert_eq!(
        app.finished(reply).await.model.as_deref(),
        Some("tiny-copy")
    );
    let endpoint = hub.endpoint.clone();
    let again = library_engine(dir.path(), |c| c.hf_endpoint = endpoint.clone()).await;
    let listed = again.models().await.unwrap();
    assert!(
        listed.iter().any(|m| m.id == "tiny-copy" && m.default),
        "{listed:#?}"
    );
    drop(again);

    // Removing: never the default, nor a model writing a reply, nor a file not downloaded here.
    let remove =
        |id: &str| as_operator(operator.delete(app.url(&format!("/api/v1/models/{id}")))).send();
    let refused = remove("tiny-copy").await.unwrap();
    assert_eq!(refused.status(), 409);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("is the default model")
    );
    let back = as_operator(operator.put(app.url("/api/v1/models/default")))
        .json(&serde_json::json!({"id": "llama-2-tiny-random"}))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    let refused = remove("llama-2-tiny-random").await.unwrap();
    assert_eq!(refused.status(), 409);
    assert_eq!(remove("no-such-model").await.unwrap().status(), 404);
    let busy_chat = chat_on(&app, "tiny-copy").await;
    let long = app.send(&app.client, busy_chat, "Go on for ever").await;
    let (events, _long_events) = until_text(&app, long).await;
    assert_eq!(events.last().unwrap().0, "delta", "{events:?}");
    let refused = remove("tiny-copy").await.unwrap();
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("is writing a reply"));
    app.post(&format!("/chats/{busy_chat}/messages/{long}/stop"), &[])
        .await;
    assert_eq!(app.finished(long).await.status, Status::Stopped);
    let mut removed = remove("tiny-copy").await.unwrap().status();
    for _ in 0..50 {
        if removed == 204 {
            break;
        }
        // The stopped reply's sequence is freed at the engine's next step.
        tokio::time::sleep(Duration::from_millis(50)).await;
        removed = remove("tiny-copy").await.unwrap().status();
    }
    assert_eq!(removed, 204);
    assert!(!models(&app).await.iter().any(|m| m["id"] == "tiny-copy"));
    assert_eq!(
        std::fs::read_dir(&blob).unwrap().count(),
        0,
        "its bytes are gone"
    );

    // A download that fails says why in the list, and can be forgotten.
    let missing = post(serde_json::json!({"repo": "test-owner/tiny-GGUF", "file": "missing.gguf"}))
        .await
        .unwrap();
    assert_eq!(missing.status(), 202);
    let mut error = Value::Null;
    for _ in 0..100 {
        let listed = models(&app).await;
        error = listed
            .iter()
            .find(|m| m["id"] == "missing")
            .map(|m| m["download"]["error"].clone())
            .unwrap_or_default();
        if !error.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        error.as_str().unwrap_or_default().contains("404"),
        "{error}"
    );
    assert_eq!(remove("missing").await.unwrap().status(), 204);
    assert!(!models(&app).await.iter().any(|m| m["id"] == "missing"));
}
