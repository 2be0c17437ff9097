//! Issue 17, item 1: what each finished reply cost (model, tokens, time to first token,
//! tokens/s), under the reply, in the API's messages and its stream's `done`, and in the JSON
//! export, which an import carries back, checked.
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, sse::EventReader};

#[tokio::test]
async fn a_finished_reply_shows_its_model_tokens_and_timings_in_the_page_the_api_and_the_export() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| {
        k.tokens = (0..10).map(|i| format!(" w{i}")).collect();
        k.token_delay = Duration::from_millis(30);
    });
    let chat = app.create_chat(&app.client, "hello").await;

    // The API: the reply's stats, none for the user's message.
    let messages = app.api_messages(chat).await;
    let user = messages.iter().find(|m| m["role"] == "user").unwrap();
    assert!(user["stats"].is_null(), "{user}");
    let reply = messages.last().unwrap();
    let stats = &reply["stats"];
    assert_eq!(stats["model"], "llama-2-tiny-random", "{stats}");
    assert_eq!(stats["prompt_tokens"], 21);
    assert_eq!(stats["completion_tokens"], 10);
    // The fake waits 30 ms before each of its 10 tokens.
    let ttft = stats["time_to_first_token_ms"].as_i64().unwrap();
    assert!((30..5_000).contains(&ttft), "{stats}");
    let generation = stats["generation_ms"].as_i64().unwrap();
    assert!((270..10_000).contains(&generation), "{stats}");
    let rate = stats["tokens_per_second"].as_f64().unwrap();
    let expected = 10.0 * 1000.0 / generation as f64;
    assert!((rate - expected).abs() < 0.06, "{rate} vs {expected}");

    // The page, under the reply.
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    let line = page
        .split("<p class=\"reply-stats\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no stats under the reply: {page}"));
    assert!(line.contains("<span>llama-2-tiny-random</span>"), "{line}");
    assert!(
        line.contains("<span>21 prompt + 10 reply tokens</span>"),
        "{line}"
    );
    assert!(
        line.contains(&format!("<span>first token in {ttft} ms</span>")),
        "{line}"
    );
    assert!(
        // (minijinja escapes the slash.)
        line.contains(&format!("<span>{rate:.1} tokens&#x2f;s</span>")),
        "{line}"
    );
    // Only under replies: the greeting was not written by a model.
    assert_eq!(page.matches("class=\"reply-stats\"").count(), 1, "{page}");

    // The stream's end, for a page (HTML) and for the API (JSON).
    let id = reply["id"].as_str().unwrap();
    let url = app.url(&format!("/chats/{chat}/messages/{id}/stream"));
    let events = EventReader::open(&app.client, &url, None)
        .await
        .2
        .unwrap()
        .all()
        .await;
    let done = events.iter().find(|e| e.event == "done").unwrap();
    assert!(done.data.contains("reply-stats"), "{}", done.data);
    let url = app.url(&format!("/api/v1/messages/{id}/stream"));
    let events = EventReader::open(&app.client, &url, None)
        .await
        .2
        .unwrap()
        .all()
        .await;
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(&done["stats"], stats);

    // The JSON export carries them, and an import brings them back.
    let export: Value = app
        .get(&format!("/chats/{chat}/export?format=json"))
        .await
        .json()
        .await
        .unwrap();
    let exported = export["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(&exported["stats"], stats);
    let imported = import(&app, &export).await;
    assert_eq!(
        &app.api_messages(imported).await.last().unwrap()["stats"],
        stats
    );
}

async fn import(app: &TestApp, export: &Value) -> uuid::Uuid {
    let response = app
        .client
        .post(app.url("/api/v1/chats/import"))
        .json(export)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn imported_stats_are_checked_and_only_replies_keep_them() {
    let app = TestApp::spawn().await;
    let export = json!({
        "format": "chat-export", "version": 1, "title": "Imported",
        "messages": [
            {"role": "user", "content": "hi", "stats": {"model": "nobody", "completion_tokens": 5}},
            {"role": "assistant", "content": "hello", "stats": {
                "model": "m".repeat(201), "prompt_tokens": -3, "completion_tokens": 40,
                "time_to_first_token_ms": 12, "generation_ms": 400, "tokens_per_second": 9999.0}},
            {"role": "user", "content": "and?"},
            {"role": "assistant", "content": "again", "stats": {"model": "  ", "prompt_tokens": -1}},
        ]
    });
    let chat = import(&app, &export).await;
    let messages = app.api_messages(chat).await;
    assert!(
        messages[0]["stats"].is_null(),
        "a user message has no stats"
    );
    // Negative counts and an overlong name are dropped; the rate is worked out again.
    assert_eq!(
        messages[1]["stats"],
        json!({"model": null, "prompt_tokens": null, "completion_tokens": 40,
               "time_to_first_token_ms": 12, "generation_ms": 400, "tokens_per_second": 100.0})
    );
    assert!(messages[3]["stats"].is_null(), "nothing sensible was left");
}

#[tokio::test]
async fn replies_that_did_not_finish_show_no_made_up_stats() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| k.error_after = Some(2));
    let chat = app.create_chat(&app.client, "hello").await;
    let reply = app.api_messages(chat).await.pop().unwrap();
    assert_eq!(reply["status"], "error");
    assert!(reply["stats"].is_null(), "{reply}");
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("reply-stats"), "{page}");
}

#[tokio::test]
async fn a_model_name_longer_than_its_column_never_keeps_a_reply_from_being_saved() {
    // PostgreSQL holds 200 characters there and refuses more; the name is cut, the reply kept.
    let app = TestApp::spawn_with(|c| c.lm_model = Some("m".repeat(300))).await;
    let chat = app.create_chat(&app.client, "hello").await;
    let reply = app.api_messages(chat).await.pop().unwrap();
    assert_eq!(reply["status"], "complete", "{reply}");
    assert_eq!(reply["stats"]["model"], "m".repeat(200));
}
