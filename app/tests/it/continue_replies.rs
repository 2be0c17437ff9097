//! Continue: a reply cut at its length, or stopped, goes on from its text; the same message
//! grows, the model is sent its text so far as the assistant's to go on from, and its stats
//! count both parts. Pages (htmx and plain forms) and the API.
use std::time::Duration;

use app::store::Status;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{
    TestApp, post_form,
    sse::{EventReader, page_html, token_text},
};

/// The latest chat completion request the fake model server received (titles aside).
fn last_request(app: &TestApp) -> Value {
    app.fake_lm
        .log(|log| {
            log.requests
                .iter()
                .rev()
                .find(|r| {
                    !r["messages"][0]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("You name conversations")
                })
                .cloned()
        })
        .expect("a request upstream")
}

/// A chat whose reply was cut at its length: `["One", " two"]`, finish reason `length`.
async fn cut_reply(app: &TestApp) -> (Uuid, Uuid) {
    app.fake_lm.set(|k| {
        k.tokens = vec!["One".into(), " two".into()];
        k.finish_reason = "length".into();
    });
    let chat = app.create_chat(&app.client, "").await;
    let reply = app.send(&app.client, chat, "Count for me").await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.content, "One two");
    assert_eq!(saved.finish_reason.as_deref(), Some("length"));
    (chat, reply)
}

async fn page(app: &TestApp, chat: Uuid) -> String {
    app.get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_reply_cut_at_its_length_goes_on_in_the_same_message() {
    let app = TestApp::spawn().await;
    let (chat, reply) = cut_reply(&app).await;
    let before = app.finished(reply).await;
    let shown = page(&app, chat).await;
    assert!(
        shown.contains(&format!("/chats/{chat}/messages/{reply}/continue")),
        "Continue offered"
    );

    app.fake_lm.set(|k| {
        k.tokens = vec![" three".into(), " four.".into()];
        k.finish_reason = "stop".into();
    });
    // htmx: the reply comes back being written, to take the finished one's place.
    let url = app.url(&format!("/chats/{chat}/messages/{reply}/continue"));
    let response = post_form(&app.client, &url, &[], true).await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(
        fragment.contains(&format!("id=\"m-{reply}\"")),
        "{fragment}"
    );
    assert!(fragment.contains("status-streaming"), "{fragment}");
    assert!(
        fragment.contains("One two"),
        "the text so far is there at once: {fragment}"
    );

    // The page's stream shows the whole text; the API's from its start.
    let stream = app.url(&format!("/chats/{chat}/messages/{reply}/stream"));
    let (_, _, events) = EventReader::open(&app.client, &stream, None).await;
    let events = events.unwrap().all().await;
    assert_eq!(page_html(&events), "<p>One two three four.</p>\n");
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Complete);
    assert_eq!(saved.content, "One two three four.");
    assert_eq!(saved.finish_reason.as_deref(), Some("stop"));
    assert_eq!(saved.seq, before.seq, "the same message");
    assert_eq!(
        saved.completion_tokens,
        Some(before.completion_tokens.unwrap() + 2),
        "the stats count both parts"
    );
    let (_, _, api) = EventReader::open(
        &app.client,
        &app.url(&format!("/api/v1/messages/{reply}/stream")),
        None,
    )
    .await;
    let done: Value = serde_json::from_str(&api.unwrap().all().await.last().unwrap().data).unwrap();
    assert_eq!(done["content"], "One two three four.");

    // The model was asked to go on from the text: the conversation, then the reply so far.
    let request = last_request(&app);
    let messages = request["messages"].as_array().unwrap();
    let last = messages.last().unwrap();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["content"], "One two");
    assert_eq!(messages[messages.len() - 2]["content"], "Count for me");
    // Finished by its own end now: no Continue.
    let shown = page(&app, chat).await;
    assert!(
        !shown.contains("/continue\""),
        "no Continue for a reply that ended"
    );
}

#[tokio::test]
async fn a_stopped_reply_goes_on_and_the_api_answers_where_it_streams() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| {
        k.tokens = (0..200).map(|i| format!(" w{i}")).collect();
        k.token_delay = Duration::from_millis(10);
    });
    let chat = app.create_chat(&app.client, "").await;
    let reply = app.send(&app.client, chat, "Go").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stop = app.url(&format!("/chats/{chat}/messages/{reply}/stop"));
    post_form(&app.client, &stop, &[], true).await;
    let stopped = app.finished(reply).await;
    assert_eq!(stopped.status, Status::Stopped);
    assert!(!stopped.content.is_empty());

    app.fake_lm.set(|k| {
        k.tokens = vec![" and the rest.".into()];
        k.token_delay = Duration::ZERO;
    });
    let response = app
        .client
        .post(app.url(&format!("/api/v1/messages/{reply}/continue")))
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["assistant_message_id"], reply.to_string());
    let stream_url = body["stream_url"].as_str().unwrap();
    assert_eq!(stream_url, format!("/api/v1/messages/{reply}/stream"));
    let (_, _, events) = EventReader::open(&app.client, &app.url(stream_url), None).await;
    let events = events.unwrap().all().await;
    let expected = format!("{} and the rest.", stopped.content);
    assert_eq!(
        token_text(&events),
        expected,
        "from its start: the text so far, then more"
    );
    assert_eq!(app.finished(reply).await.content, expected);
}

#[tokio::test]
async fn only_the_latest_reply_that_was_cut_or_stopped_goes_on() {
    let app = TestApp::spawn().await;
    let (chat, cut) = cut_reply(&app).await;
    // Without JavaScript: a form post and a 303 to the reply.
    app.fake_lm.set(|k| {
        k.tokens = vec![" more".into()];
        k.finish_reason = "stop".into();
    });
    let url = app.url(&format!("/chats/{chat}/messages/{cut}/continue"));
    let response = post_form(&app.client, &url, &[], false).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/chats/{chat}#m-{cut}").as_str()
    );
    assert_eq!(app.finished(cut).await.content, "One two more");
    // Ended by itself now: refused, and nothing changes.
    let response = post_form(&app.client, &url, &[], true).await;
    assert_eq!(response.status(), 409);
    let body = response.text().await.unwrap();
    assert!(body.contains("stopped or cut at its length"), "{body}");
    assert_eq!(app.finished(cut).await.content, "One two more");

    // An older reply: refused too.
    app.fake_lm.set(|k| k.finish_reason = "length".into());
    let newer = app.send(&app.client, chat, "Again").await;
    app.finished(newer).await;
    let (chat_b, older) = (chat, cut);
    let response = post_form(
        &app.client,
        &app.url(&format!("/chats/{chat_b}/messages/{older}/continue")),
        &[],
        true,
    )
    .await;
    assert_eq!(response.status(), 409);
    // A user message, another session's reply, a malformed id: not found or refused.
    let stranger = crate::helpers::browser();
    let response = post_form(
        &stranger,
        &app.url(&format!("/chats/{chat}/messages/{newer}/continue")),
        &[],
        true,
    )
    .await;
    assert_eq!(response.status(), 404);
    let response = stranger
        .post(app.url(&format!("/api/v1/messages/{newer}/continue")))
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = post_form(
        &app.client,
        &app.url(&format!("/chats/{chat}/messages/nope/continue")),
        &[],
        true,
    )
    .await;
    assert_eq!(response.status(), 404);
}
