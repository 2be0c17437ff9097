//! Hostile content (issue 29): pathological markdown in a shared chat does not stall the
//! server, share views are counted per address, and what a send refuses an import refuses.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A chat imported through the API from `messages`; its id.
async fn import(app: &TestApp, messages: Vec<Value>) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/chats/import"))
        .json(&json!({ "format": "chat-export", "version": 1, "title": "Imported", "messages": messages }))
        .send()
        .await
        .unwrap()
}

/// A new link to `chat`: its `/s/...` path.
async fn share(app: &TestApp, chat: &str) -> String {
    let url = app.url(&format!("/api/v1/chats/{chat}/shares"));
    let response = app.client.post(&url).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let share: Value = response.json().await.unwrap();
    share["url"].as_str().unwrap().to_owned()
}

fn stranger() -> reqwest::Client {
    reqwest::Client::new()
}

/// A shared chat whose replies are every kind of pathological markdown, as large as an import
/// accepts: its link.
async fn hostile_share(app: &TestApp) -> String {
    let size = app.config.max_message_bytes - 64;
    let mut messages = Vec::new();
    for (kind, text) in testkit::hostile::markdown_corpus(size) {
        let text: String = text.chars().take(size).collect();
        messages.push(json!({ "role": "user", "content": format!("Show me {kind}") }));
        messages.push(json!({ "role": "assistant", "content": text }));
    }
    let response = import(app, messages).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    share(app, body["id"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_markdown_in_a_shared_chat_never_holds_up_other_requests() {
    let app = TestApp::spawn().await;
    let link = hostile_share(&app).await;
    // Several strangers open it at once (before the bounds, one such page took 12.6 s and two
    // held /healthz for 11.6 s); meanwhile /healthz answers as it always does.
    let views: Vec<_> = (0..6)
        .map(|_| {
            let url = app.url(&link);
            tokio::spawn(async move { stranger().get(url).send().await.unwrap() })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while !views.iter().all(|v| v.is_finished()) {
        let started = Instant::now();
        assert_eq!(app.get("/healthz").await.status(), 200);
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "/healthz took {slowest:?}"
    );
    for view in views {
        let response = view.await.unwrap();
        assert_eq!(response.status(), 200);
        let page = response.text().await.unwrap();
        assert!(page.contains("Show me quotes"), "the page is whole");
        assert!(!page.contains("<div><div>"), "raw HTML stays text");
    }
}

#[tokio::test]
async fn a_cached_shared_page_is_gone_the_moment_its_link_is_revoked() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "Shared then revoked").await;
    let link = share(&app, &chat.to_string()).await;
    for _ in 0..3 {
        let response = stranger().get(app.url(&link)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let token = link.trim_start_matches("/s/");
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/shares/{token}")))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let response = stranger().get(app.url(&link)).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn share_views_are_limited_per_address() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits = true;
        config.share_view_rate_per_address = "3/min".parse().unwrap();
    })
    .await;
    let chat = app.create_chat(&app.client, "Popular").await;
    let link = share(&app, &chat.to_string()).await;
    for _ in 0..3 {
        let response = stranger().get(app.url(&link)).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let response = stranger().get(app.url(&link)).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let page = response.text().await.unwrap();
    assert!(page.contains("Too many shared pages opened"), "{page}");
    // Unknown tokens count too: guessing costs the same allowance.
    let response = stranger()
        .get(app.url(&format!("/s/{}", "a".repeat(43))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn the_profile_form_goes_back_only_to_a_path_of_the_app() {
    let app = TestApp::spawn().await;
    let host = app
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let back_to = |referer: String, return_to: Option<&'static str>| {
        let app = &app;
        async move {
            let mut form = vec![("display_name", "Ann")];
            if let Some(to) = return_to {
                form.push(("return_to", to));
            }
            let response = app
                .client
                .post(app.url("/profile"))
                .header("referer", referer)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 303);
            response.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    let ours = format!("http://{host}");
    assert_eq!(back_to(format!("{ours}/devices"), None).await, "/devices");
    for hostile in [
        "/\\evil.example",
        "//evil.example",
        "/\\/evil.example",
        "/\t/evil.example",
    ] {
        assert_eq!(
            back_to(format!("{ours}{hostile}"), None).await,
            "/",
            "{hostile:?}"
        );
    }
    assert_eq!(back_to("https://evil.example/x".into(), None).await, "/");
    assert_eq!(
        back_to(format!("{ours}/devices"), Some("/chats")).await,
        "/chats"
    );
    assert_eq!(
        back_to(format!("{ours}/devices"), Some("/\\evil.example")).await,
        "/devices"
    );
}

/// The status and error text of an import of `messages`, and that it stored no chat.
async fn refused_import(app: &TestApp, messages: Vec<Value>) -> (u16, String) {
    let before = app.count("chats").await;
    let response = import(app, messages).await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
    assert_eq!(app.count("chats").await, before, "nothing is stored");
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn an_import_is_held_to_the_limits_of_a_send() {
    let app = TestApp::spawn().await;
    let max = app.config.max_message_bytes;
    let user = |content: String| json!({ "role": "user", "content": content });
    let reply = |content: String| json!({ "role": "assistant", "content": content });

    // A person's message over MAX_MESSAGE_BYTES: the send's error, naming the message.
    let (status, error) = refused_import(
        &app,
        vec![
            user("hi".into()),
            reply("ok".into()),
            user("x".repeat(max + 1)),
        ],
    )
    .await;
    assert_eq!(status, 413, "{error}");
    assert!(error.starts_with("Message 3: That message is"), "{error}");
    // Exactly at the limit is fine, as for a send.
    let response = import(&app, vec![user("x".repeat(max)), reply("ok".into())]).await;
    assert_eq!(response.status(), 201);

    // A reply over what is shown formatted (the 20 MB reply of the report).
    let (status, error) = refused_import(
        &app,
        vec![
            user("hi".into()),
            reply("y".repeat(app::domain::MAX_REPLY_BYTES + 1)),
        ],
    )
    .await;
    assert_eq!(status, 413, "{error}");
    assert!(error.starts_with("Message 2: that reply is"), "{error}");

    // More files than a message may carry.
    let file =
        json!({ "name": "a.txt", "media_type": "text/plain", "size_bytes": 2, "data": "aGk=" });
    let files = vec![file; app.config.max_attachments + 1];
    let (status, error) = refused_import(
        &app,
        vec![json!({ "role": "user", "content": "files", "attachments": files })],
    )
    .await;
    assert_eq!(status, 413, "{error}");
    assert!(
        error.starts_with("Message 1: A message can carry at most"),
        "{error}"
    );

    // A blank message, as a send refuses it.
    let (status, error) = refused_import(&app, vec![user("  ".into())]).await;
    assert_eq!(status, 422, "{error}");
    assert!(error.contains("Please write a message"), "{error}");

    // Too many messages.
    let many = vec![user("hi".into()); app::chat::MAX_IMPORTED_MESSAGES + 1];
    let (status, error) = refused_import(&app, many).await;
    assert_eq!(status, 413, "{error}");
    assert!(error.starts_with("An import can hold at most"), "{error}");
}

#[tokio::test]
async fn an_import_over_the_rate_limit_is_refused_before_it_is_read() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limits = true;
        config.chat_rate_per_session = "1/min".parse().unwrap();
    })
    .await;
    let ok = vec![json!({ "role": "user", "content": "hi" })];
    assert_eq!(import(&app, ok).await.status(), 201);
    // A file that would be refused as unreadable (422) if it were read: 429 says it was not.
    let broken_pdf = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        b"%PDF-1.4 broken",
    );
    let file = json!({ "name": "x.pdf", "media_type": "application/pdf", "size_bytes": 15, "data": broken_pdf });
    let (status, error) = refused_import(
        &app,
        vec![json!({ "role": "user", "content": "pdf", "attachments": [file] })],
    )
    .await;
    assert_eq!(status, 429, "{error}");
}
