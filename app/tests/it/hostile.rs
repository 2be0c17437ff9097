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
