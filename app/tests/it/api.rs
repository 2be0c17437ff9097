//! The JSON API: every endpoint, bearer tokens and cookies, isolation between sessions, problem
//! details, and the OpenAPI document.
use std::time::Duration;

use serde_json::{Value, json};
use testkit::Knobs;

use crate::helpers::{TestApp, api::ApiClient, browser, sse::EventReader};

use reqwest::Method;

fn delta_text(events: &[(String, Option<String>, Value)]) -> String {
    events
        .iter()
        .filter(|(name, _, _)| name == "delta")
        .map(|(_, _, data)| data["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn a_script_chats_through_every_endpoint_with_a_bearer_token() {
    let app = TestApp::spawn().await;
    let tokens: Vec<String> = ["Hi", " <there>", " & ✓", "\n", "done"]
        .map(str::to_owned)
        .to_vec();
    let expected = tokens.concat();
    app.fake_lm.set(|k| k.tokens = tokens);
    let api = ApiClient::new(&app).await;

    let (status, chat) = api
        .call(
            Method::POST,
            "/api/v1/chats",
            Some(json!({"title": "  From   curl "})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(chat["title"], "From curl");
    let id = chat["id"].as_str().unwrap().to_owned();

    let (status, page) = api.call(Method::GET, "/api/v1/chats", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["chats"][0]["id"], id.as_str());
    assert!(page["next"].is_null());

    let (status, sent) = api
        .call(
            Method::POST,
            &format!("/api/v1/chats/{id}/messages"),
            Some(json!({"content": "Hello <b>there</b> ✓"})),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(sent["user_message"]["content"], "Hello <b>there</b> ✓");
    assert_eq!(sent["user_message"]["role"], "user");
    let reply = sent["assistant_message_id"].as_str().unwrap().to_owned();
    assert_eq!(
        sent["stream_url"],
        format!("/api/v1/messages/{reply}/stream")
    );

    let events = api.stream(sent["stream_url"].as_str().unwrap(), None).await;
    assert_eq!(delta_text(&events), expected);
    let (name, id_of_done, done) = events.last().unwrap();
    assert_eq!(name, "done");
    assert_eq!(
        id_of_done.as_deref(),
        Some(expected.len().to_string().as_str())
    );
    assert_eq!(done["content"], expected.as_str());
    assert_eq!(done["status"], "complete");
    // Every delta's id is the byte offset after it: resuming there gives exactly the rest.
    let (_, resume_id, _) = events.iter().find(|(n, _, _)| n == "delta").unwrap();
    let resume_id = resume_id.clone().unwrap();
    let rest = api
        .stream(sent["stream_url"].as_str().unwrap(), Some(&resume_id))
        .await;
    let offset: usize = resume_id.parse().unwrap();
    // A finished reply sends only `done`; its content is the whole text.
    assert_eq!(rest.last().unwrap().2["content"], expected.as_str());
    assert!(offset <= expected.len());

    let (status, with_messages) = api
        .call(Method::GET, &format!("/api/v1/chats/{id}"), None)
        .await;
    assert_eq!(status, 200);
    let roles: Vec<&str> = with_messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["assistant", "user", "assistant"]); // greeting, message, reply
    // `done` is the message as the API lists it, whether the stream was live or read back.
    let listed = &with_messages["messages"][2];
    assert_eq!(done, listed);
    assert_eq!(&rest.last().unwrap().2, listed);

    let (status, messages) = api
        .call(
            Method::GET,
            &format!("/api/v1/chats/{id}/messages?limit=2"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(messages["messages"].as_array().unwrap().len(), 2);
    assert_eq!(messages["earlier"], 2);
    let (_, earlier) = api
        .call(
            Method::GET,
            &format!("/api/v1/chats/{id}/messages?before=2"),
            None,
        )
        .await;
    assert_eq!(earlier["messages"][0]["seq"], 1);

    // Stop on a finished reply leaves it as it is.
    let (status, stopped) = api
        .call(
            Method::POST,
            &format!("/api/v1/messages/{reply}/stop"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stopped["status"], "complete");

    let (status, renamed) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/chats/{id}"),
            Some(json!({"title": "Renamed"})),
        )
        .await;
    assert_eq!((status, renamed["title"].as_str()), (200, Some("Renamed")));

    let (status, _) = api
        .call(Method::DELETE, &format!("/api/v1/chats/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, problem) = api
        .call(Method::GET, &format!("/api/v1/chats/{id}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["title"], "Not Found");
    assert_eq!(problem["type"], "about:blank");
    assert!(problem["detail"].as_str().unwrap().contains("not found"));
}

#[tokio::test]
async fn stop_ends_a_reply_in_progress_and_keeps_its_text() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| {
        *k = Knobs {
            tokens: (0..200).map(|i| format!("s{i} ")).collect(),
            token_delay: Duration::from_millis(20),
            ..Knobs::default()
        }
    });
    let api = ApiClient::new(&app).await;
    let (_, chat) = api
        .call(Method::POST, "/api/v1/chats", Some(json!({})))
        .await;
    let id = chat["id"].as_str().unwrap();
    let (_, sent) = api
        .call(
            Method::POST,
            &format!("/api/v1/chats/{id}/messages"),
            Some(json!({"content": "long"})),
        )
        .await;
    let reply = sent["assistant_message_id"].as_str().unwrap();
    // A second message while the reply is written: 409.
    let (status, problem) = api
        .call(
            Method::POST,
            &format!("/api/v1/chats/{id}/messages"),
            Some(json!({"content": "again"})),
        )
        .await;
    assert_eq!(status, 409);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("still being written")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, stopped) = api
        .call(
            Method::POST,
            &format!("/api/v1/messages/{reply}/stop"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(stopped["status"], "stopped");
    let text = stopped["content"].as_str().unwrap();
    assert!(text.starts_with("s0 ") && text.len() < 200 * 4, "{text}");
}

#[tokio::test]
async fn the_cookie_and_the_token_are_the_same_session_and_others_see_nothing() {
    let app = TestApp::spawn().await;
    // A browser session's chat, seen through the API with the browser's cookie…
    let chat = app.create_chat(&app.client, "from the page").await;
    let listed: Value = app
        .client
        .get(app.url("/api/v1/chats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["chats"][0]["id"], chat.to_string());
    // …and with a token issued to that cookie's session.
    let token: Value = app
        .client
        .post(app.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let with_token: Value = reqwest::Client::new()
        .get(app.url("/api/v1/chats"))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(with_token["chats"][0]["id"], chat.to_string());

    // Another session: every endpoint answers 404 for this chat and its reply, and nothing changes.
    let reply = app.send(&app.client, chat, "mine").await;
    app.finished(reply).await;
    let intruder = ApiClient::new(&app).await;
    let attempts = [
        (Method::GET, format!("/api/v1/chats/{chat}"), None),
        (
            Method::PATCH,
            format!("/api/v1/chats/{chat}"),
            Some(json!({"title": "stolen"})),
        ),
        (Method::DELETE, format!("/api/v1/chats/{chat}"), None),
        (Method::GET, format!("/api/v1/chats/{chat}/messages"), None),
        (
            Method::POST,
            format!("/api/v1/chats/{chat}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (
            Method::GET,
            format!("/api/v1/messages/{reply}/stream"),
            None,
        ),
        (Method::POST, format!("/api/v1/messages/{reply}/stop"), None),
        (Method::GET, format!("/api/v1/chats?after={chat}"), None),
    ];
    let messages = app.count("messages").await;
    for (method, path, body) in attempts {
        let (status, _) = intruder.call(method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}");
    }
    assert_eq!(app.count("messages").await, messages);
    let (_, mine) = intruder.call(Method::GET, "/api/v1/chats", None).await;
    assert_eq!(mine["chats"], json!([]));

    // A forged or damaged token is a 401, never a new session.
    for token in ["nonsense", &format!("{}x", intruder.token)] {
        let response = reqwest::Client::new()
            .get(app.url("/api/v1/chats"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert!(response.headers().get("set-cookie").is_none());
    }
}

#[tokio::test]
async fn bad_requests_are_problem_details_with_clear_messages() {
    let app = TestApp::spawn_with(|c| {
        c.max_message_bytes = 100;
        c.rate_limits = true;
        c.chat_rate_per_session = "3/min".parse().unwrap();
    })
    .await;
    let api = ApiClient::new(&app).await;
    let (_, chat) = api
        .call(Method::POST, "/api/v1/chats", Some(json!({})))
        .await;
    let id = chat["id"].as_str().unwrap();
    let cases: Vec<(Method, String, Option<Value>, u16, &str)> = vec![
        (
            Method::POST,
            format!("/api/v1/chats/{id}/messages"),
            Some(json!({"content": "   "})),
            422,
            "write a message",
        ),
        (
            Method::POST,
            format!("/api/v1/chats/{id}/messages"),
            Some(json!({"content": "x".repeat(101)})),
            413,
            "101 bytes; the limit is 100 bytes",
        ),
        (
            Method::POST,
            format!("/api/v1/chats/{id}/messages"),
            Some(json!({"text": "wrong field"})),
            422,
            "content",
        ),
        (
            Method::POST,
            format!("/api/v1/chats/{id}/messages"),
            Some(json!({"content": "nul \u{0} here"})),
            422,
            "NUL",
        ),
        (
            Method::PATCH,
            format!("/api/v1/chats/{id}"),
            Some(json!({"title": " "})),
            422,
            "title",
        ),
        (
            Method::GET,
            "/api/v1/chats?limit=0".into(),
            None,
            422,
            "limit",
        ),
        (
            Method::GET,
            "/api/v1/chats?limit=many".into(),
            None,
            422,
            "query",
        ),
        (
            Method::GET,
            "/api/v1/chats/not-a-uuid".into(),
            None,
            404,
            "not found",
        ),
        (Method::GET, "/api/v1/no-such-thing".into(), None, 404, ""),
    ];
    for (method, path, body, status, words) in cases {
        let (got, problem) = api.call(method.clone(), &path, body).await;
        assert_eq!(got, status, "{method} {path}: {problem}");
        assert_eq!(problem["status"], status);
        let detail = problem["detail"].as_str().unwrap_or_default().to_owned();
        assert!(
            detail.to_lowercase().contains(&words.to_lowercase()),
            "{path}: {detail}"
        );
    }
    // Not JSON at all.
    let response = api
        .request(Method::POST, &format!("/api/v1/chats/{id}/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // Rate limited: 429 with Retry-After.
    let mut last = 0;
    for _ in 0..3 {
        last = api
            .call(Method::POST, "/api/v1/chats", Some(json!({})))
            .await
            .0;
    }
    assert_eq!(last, 429);
    assert_eq!(app.count("chats").await, 3);
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_the_docs_page_is_self_hosted() {
    let app = TestApp::spawn().await;
    let document: Value = reqwest::get(app.url("/api/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/chats", &["get", "post"][..]),
        ("/api/v1/chats/{id}", &["get", "patch", "delete"][..]),
        ("/api/v1/chats/{id}/messages", &["get", "post"][..]),
        ("/api/v1/messages/{id}/stream", &["get"][..]),
        ("/api/v1/messages/{id}/stop", &["post"][..]),
        ("/api/v1/messages/{id}/continue", &["post"][..]),
        ("/api/v1/tokens", &["post"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} is documented"
            );
        }
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["session_cookie"]["in"], "cookie");

    let docs = browser().get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.contains("/static/api-docs/swagger-ui-bundle.js"));
    assert!(!html.contains("<script>"), "no inline script");
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-init.js"] {
        let response = reqwest::get(app.url(&format!("/static/api-docs/{asset}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
    }
}

#[tokio::test]
async fn html_streams_are_unchanged_by_the_api() {
    // The page's stream of the same reply still speaks HTML fragments.
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "").await;
    let reply = app.send(&app.client, chat, "hi").await;
    let url = app.url(&format!("/chats/{chat}/messages/{reply}/stream"));
    let (_, _, reader) = EventReader::open(&app.client, &url, None).await;
    let events = reader.unwrap().all().await;
    assert!(
        events
            .iter()
            .any(|e| e.event == "html" && e.data.starts_with("r "))
    );
    assert!(!events.iter().any(|e| e.event == "delta"));
}
