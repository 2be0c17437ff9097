//! Issue 3: replies generated in the background from a (fake) llama-server and streamed to the
//! page. Each test runs on a fresh database (SQLite, or PostgreSQL with TEST_DATABASE_URL).
use std::time::Duration;

use app::store::{Status, message};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use testkit::{
    FakeLm, Knobs,
    fake_lm::{fixture_http_body, fixture_tokens},
};
use uuid::Uuid;

use crate::helpers::{
    self, TestApp, browser, post_form, reply_id,
    sse::{EventReader, token_text, unescape_html},
};

async fn spawn(
    knobs: Knobs,
    configure: impl FnOnce(&mut app::config::Config),
) -> (TestApp, FakeLm) {
    let app = TestApp::spawn_with(configure).await;
    app.fake_lm.set(|k| *k = knobs);
    let fake = app.fake_lm.clone();
    (app, fake)
}

async fn new_chat(app: &TestApp) -> Uuid {
    app.create_chat(&app.client, "").await
}

fn stream_url(app: &TestApp, _chat: Uuid, reply: Uuid) -> String {
    app.url(&format!("/api/v1/messages/{reply}/stream"))
}

async fn stored(app: &TestApp, id: Uuid) -> message::Model {
    message::Entity::find_by_id(id)
        .one(app.store.connection())
        .await
        .unwrap()
        .unwrap()
}

/// A model that sends `tokens` one every `delay_ms`.
fn paced(tokens: &[String], delay_ms: u64) -> Knobs {
    Knobs {
        tokens: tokens.to_vec(),
        token_delay: Duration::from_millis(delay_ms),
        ..Knobs::default()
    }
}

fn tricky_tokens() -> Vec<String> {
    [
        "**bold** and",
        " Hello",
        " ",
        "   ",
        "\n",
        "line one\nline two",
        "\n\n",
        "<script>alert(1)</script>",
        " & ",
        "&amp;",
        "<",
        ">",
        "\"quoted\" 'single'",
        "漢字かな",
        " 🎉👍🏽",
        "\r\n",
        "\ttab",
        " end ",
    ]
    .map(str::to_owned)
    .to_vec()
}

#[tokio::test]
async fn streamed_and_stored_text_equal_exactly_what_the_model_sent() {
    let tokens = tricky_tokens();
    let (app, fake) = spawn(
        Knobs {
            tokens: tokens.clone(),
            token_delay: Duration::from_millis(2),
            ..Knobs::default()
        },
        |_| {},
    )
    .await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "Say tricky things").await;

    let (status, headers, events) =
        EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["x-accel-buffering"], "no");
    let events = events.unwrap().all().await;
    let expected: String = tokens.concat();
    assert_eq!(token_text(&events), expected);
    // Ids are increasing byte offsets, ending at the full length.
    let ids: Vec<usize> = events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| e.id.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert_eq!(*ids.last().unwrap(), expected.len());
    let last = events.last().unwrap();
    assert_eq!(last.event, "done", "ends with done");
    let done: serde_json::Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(done["content"], expected.as_str());
    // The page's stream shows the raw HTML as text.
    let (_, _, page) =
        EventReader::open(&app.client, &page_stream_url(&app, chat, reply), None).await;
    let page = helpers::sse::page_html(&page.unwrap().all().await);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "raw HTML shown as text: {page}"
    );
    assert!(
        page.contains("<strong>bold</strong>"),
        "markdown rendered: {page}"
    );
    assert!(!page.contains("<script"), "{page}");

    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Complete);
    assert_eq!(saved.content, expected);
    assert_eq!(saved.finish_reason.as_deref(), Some("stop"));
    assert_eq!(saved.completion_tokens, Some(tokens.len() as i32));
    assert_eq!(saved.prompt_tokens, Some(21));

    // What was sent upstream: the system prompt, the greeting, the user's message, with usage.
    let request = fake.log(|l| l.requests[0].clone());
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"]["include_usage"], true);
    let roles: Vec<&str> = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "assistant", "user"]);
    assert_eq!(request["messages"][2]["content"], "Say tricky things");

    // A finished reply answers `done` at once.
    let (_, _, events) = EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
    let events = events.unwrap().all().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "done");
}

#[tokio::test]
async fn a_nul_from_the_model_is_kept_as_a_replacement_character() {
    // PostgreSQL cannot store NUL in text: before this, such a reply could never be saved.
    let tokens: Vec<String> = ["before", "\0", " after\0"].map(str::to_owned).to_vec();
    let (app, _fake) = spawn(paced(&tokens, 1), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "say nothing").await;
    let (_, _, reader) = EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
    let events = reader.unwrap().all().await;
    let expected = "before\u{FFFD} after\u{FFFD}";
    assert_eq!(token_text(&events), expected);
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Complete);
    assert_eq!(saved.content, expected, "streamed and saved alike");
}

#[tokio::test]
async fn the_recorded_fixture_stream_replays_exactly() {
    let (app, _fake) = spawn(Knobs::default(), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "hi").await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.content, fixture_tokens().concat());
    assert_eq!(
        saved.content,
        " BetweenemeteryActivitylik CityČ @identifier factച"
    );
}

#[tokio::test]
async fn last_event_id_resumes_with_no_gap_and_no_duplicate() {
    let tokens: Vec<String> = (0..40).map(|i| format!(" t{i}")).collect();
    let (app, _fake) = spawn(paced(&tokens, 15), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "count").await;
    let url = stream_url(&app, chat, reply);

    let (_, _, reader) = EventReader::open(&app.client, &url, None).await;
    let mut reader = reader.unwrap();
    let mut first = Vec::new();
    while first.len() < 5 {
        let event = reader.next().await.unwrap();
        if event.event == "delta" {
            first.push(event);
        }
    }
    drop(reader); // the browser loses its connection
    let last_id = first.last().unwrap().id.clone();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (_, _, reader) = EventReader::open(&app.client, &url, Some(&last_id)).await;
    let rest = reader.unwrap().all().await;
    let text = token_text(&first) + &token_text(&rest);
    assert_eq!(text, tokens.concat());
    assert_eq!(
        first.last().unwrap().id.parse::<usize>().unwrap(),
        token_text(&first).len()
    );

    // Resuming a finished reply at its end: just `done`.
    app.finished(reply).await;
    let end = tokens.concat().len().to_string();
    let (_, _, reader) = EventReader::open(&app.client, &url, Some(&end)).await;
    let events = reader.unwrap().all().await;
    assert_eq!(
        events.iter().map(|e| e.event.as_str()).collect::<Vec<_>>(),
        ["done"]
    );
    // A bogus Last-Event-ID replays from the start rather than losing text.
    let saved = stored(&app, reply).await;
    assert_eq!(saved.content, tokens.concat());
}

#[tokio::test]
async fn two_subscribers_see_the_same_text() {
    let tokens: Vec<String> = (0..30).map(|i| format!("w{i} ")).collect();
    let (app, _fake) = spawn(paced(&tokens, 5), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "hello").await;
    let url = stream_url(&app, chat, reply);
    let (_, _, a) = EventReader::open(&app.client, &url, None).await;
    tokio::time::sleep(Duration::from_millis(40)).await;
    let (_, _, b) = EventReader::open(&app.client, &url, None).await;
    let (a, b) = tokio::join!(async { a.unwrap().all().await }, async {
        b.unwrap().all().await
    });
    assert_eq!(token_text(&a), tokens.concat());
    assert_eq!(token_text(&b), tokens.concat());
}

#[tokio::test]
async fn a_disconnected_browser_does_not_stop_the_reply() {
    let tokens: Vec<String> = (0..30).map(|i| format!("p{i} ")).collect();
    let (app, fake) = spawn(paced(&tokens, 10), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "go").await;
    let (_, _, reader) = EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
    let mut reader = reader.unwrap();
    reader.next().await.unwrap();
    drop(reader);
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Complete);
    assert_eq!(saved.content, tokens.concat());
    assert_eq!(fake.log(|l| (l.completed, l.disconnected)), (1, 0));
    // The task unregisters the reply just after saving its end.
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while app.state.generations.live_count() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.state.generations.live_count(), 0);
}

#[tokio::test]
async fn stop_closes_the_upstream_connection_and_keeps_the_partial_text() {
    let tokens: Vec<String> = (0..500).map(|i| format!("s{i} ")).collect();
    let (app, fake) = spawn(paced(&tokens, 10), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "long answer please").await;
    let (_, _, reader) = EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
    let mut reader = reader.unwrap();
    let mut seen = 0;
    while seen < 3 {
        if reader.next().await.unwrap().event == "delta" {
            seen += 1;
        }
    }
    let response = app
        .post_htmx(&format!("/chats/{chat}/messages/{reply}/stop"), &[])
        .await;
    assert_eq!(response.status(), 204);
    // The upstream connection is closed at once (observed by the fake server).
    assert!(
        fake.wait_for(Duration::from_millis(500), |l| l.disconnected == 1)
            .await,
        "upstream closed"
    );
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Stopped);
    assert!(!saved.content.is_empty());
    assert!(tokens.concat().starts_with(&saved.content));
    assert!(saved.content.len() < tokens.concat().len());
    // The stream ends with done, whose body says it was stopped.
    let rest = reader.all().await;
    let done = rest.last().unwrap();
    assert_eq!(done.event, "done");
    assert!(
        done.data.contains("\"status\":\"stopped\""),
        "{}",
        done.data
    );
    // Without JavaScript, Stop is a form post and a 303; stopping a finished reply changes nothing.
    let response = app
        .post(&format!("/chats/{chat}/messages/{reply}/stop"), &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(stored(&app, reply).await.content, saved.content);
}

struct FailureCase {
    name: &'static str,
    knobs: Knobs,
    expect: &'static str,
}

#[tokio::test]
async fn every_upstream_failure_ends_in_a_readable_error_and_keeps_the_users_message() {
    let few: Vec<String> = ["one ", "two ", "three "].map(str::to_owned).to_vec();
    let cases = vec![
        FailureCase { name: "loading", knobs: Knobs { http_error: Some((503, r#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#.into())), ..Knobs::default() }, expect: "still loading" },
        FailureCase { name: "context overflow", knobs: Knobs { http_error: Some(fixture_http_body("context-overflow.http")), ..Knobs::default() }, expect: "needs 2028 tokens but the model's context holds 256" },
        FailureCase { name: "bad request", knobs: Knobs { http_error: Some(fixture_http_body("bad-request.http")), ..Knobs::default() }, expect: "refused the request: Expected 'messages' to be an array" },
        FailureCase { name: "http 500", knobs: Knobs { http_error: Some((500, "upstream exploded".into())), ..Knobs::default() }, expect: "answered 500: upstream exploded" },
        FailureCase { name: "mid-stream error", knobs: Knobs { tokens: few.clone(), error_after: Some(2), ..Knobs::default() }, expect: "reported an error while answering: the model crashed mid-stream" },
        FailureCase { name: "dropped", knobs: Knobs { tokens: few.clone(), drop_after: Some(2), ..Knobs::default() }, expect: "ended unexpectedly" },
        FailureCase { name: "first-token timeout", knobs: Knobs { hang: true, ..Knobs::default() }, expect: "did not start answering" },
        FailureCase { name: "idle timeout", knobs: Knobs { tokens: few.clone(), hang_after: Some(2), ..Knobs::default() }, expect: "stopped sending" },
    ];
    let (app, fake) = spawn(Knobs::default(), |c| {
        c.lm_first_token_timeout = Duration::from_millis(1500);
        c.lm_idle_timeout = Duration::from_millis(300);
    })
    .await;
    for case in cases {
        fake.set(|k| *k = case.knobs.clone());
        let chat = new_chat(&app).await;
        let text = format!("question for {}", case.name);
        let reply = app.send(&app.client, chat, &text).await;
        let (_, _, reader) =
            EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
        let events = reader.unwrap().all().await;
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e.event.as_str())
            .filter(|k| *k != "status")
            .collect();
        assert_eq!(
            kinds.iter().rev().take(2).collect::<Vec<_>>(),
            [&"done", &"error"],
            "{}: {kinds:?}",
            case.name
        );
        let error = events.iter().find(|e| e.event == "error").unwrap();
        assert!(
            unescape_html(&error.data).contains(case.expect),
            "{}: {}",
            case.name,
            error.data
        );
        let saved = app.finished(reply).await;
        assert_eq!(saved.status, Status::Error, "{}", case.name);
        assert!(
            saved.error.as_deref().unwrap().contains(case.expect),
            "{}: {:?}",
            case.name,
            saved.error
        );
        if case.knobs.error_after.is_some()
            || case.knobs.drop_after.is_some()
            || case.knobs.hang_after.is_some()
        {
            assert_eq!(
                saved.content, "one two ",
                "{}: partial text kept",
                case.name
            );
        }
        // The user's message is intact, and the page shows the error with a Retry button.
        let page = app
            .get(&format!("/chats/{chat}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(page.contains(&format!("{text}</div>")), "{}", case.name);
        assert!(page.contains("Retry</button>"), "{}", case.name);
    }
}

#[tokio::test]
async fn an_unreachable_model_server_is_a_readable_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/v1");
    let app = TestApp::spawn_with(|c| c.lm_api_url = Some(url.clone())).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "anyone there?").await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Error);
    let error = saved.error.unwrap();
    assert!(
        error.contains("The language model server is not reachable right now"),
        "{error}"
    );
    // Internal addresses are for the log, not for visitors.
    assert!(!error.contains(&closed.to_string()), "{error}");
    // The status indicator says so too.
    let status = app.get("/model/status").await.text().await.unwrap();
    assert!(status.contains("unreachable"), "{status}");
}

#[tokio::test]
async fn model_status_shows_ready_and_loading() {
    let (app, fake) = spawn(Knobs::default(), |_| {}).await;
    assert!(
        app.get("/model/status")
            .await
            .text()
            .await
            .unwrap()
            .contains("Model ready")
    );
    fake.set(|k| k.health_status = 503);
    tokio::time::sleep(Duration::from_millis(2100)).await; // past the status cache
    // The first ask after that still gets the kept answer and refreshes it behind; the
    // indicator shows the change as soon as the refresh is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut status = String::new();
    while std::time::Instant::now() < deadline {
        status = app.get("/model/status").await.text().await.unwrap();
        if status.contains("Model loading") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(status.contains("Model loading"), "{status}");
}

#[tokio::test]
async fn the_prompt_is_trimmed_oldest_first_to_fit_the_context() {
    let (app, fake) = spawn(
        Knobs {
            tokens: vec!["ok".into()],
            n_ctx: 256,
            ..Knobs::default()
        },
        |c| {
            c.lm_max_tokens = 64;
            c.system_prompt = "Be brief.".into();
        },
    )
    .await;
    let chat = new_chat(&app).await;
    for i in 0..6 {
        let reply = app
            .send(
                &app.client,
                chat,
                &format!("old message {i} {}", "x".repeat(120)),
            )
            .await;
        app.finished(reply).await;
    }
    let reply = app.send(&app.client, chat, "the newest question").await;
    app.finished(reply).await;
    let request = fake.log(|l| l.requests.back().unwrap().clone());
    let messages = request["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[0]["content"], "Be brief.");
    assert_eq!(messages.last().unwrap()["content"], "the newest question");
    assert!(messages.len() < 14, "trimmed: {} messages", messages.len());
    assert!(
        !messages
            .iter()
            .any(|m| m["content"].as_str().unwrap().starts_with("old message 0")),
        "oldest dropped first"
    );
    assert!(
        messages
            .iter()
            .any(|m| m["content"].as_str().unwrap().starts_with("old message 5")),
        "recent kept"
    );

    // One message too large for the context: a clear error, and the model is not called. With
    // the context known, the send itself is refused (`context_gauge`); here the app has not
    // heard the model server's context yet (it forgot it), so the reply finds out.
    let calls = fake.log(|l| l.request_count);
    app.state.lm.forget_model_info().await;
    let reply = app.send(&app.client, chat, &"word ".repeat(400)).await;
    let saved = app.finished(reply).await;
    assert_eq!(saved.status, Status::Error);
    assert!(
        saved
            .error
            .unwrap()
            .contains("too long for the model's context")
    );
    assert_eq!(fake.log(|l| l.request_count), calls);
}

#[tokio::test]
async fn one_reply_per_chat_and_a_global_limit_with_a_waiting_state() {
    let tokens: Vec<String> = (0..40).map(|i| format!("c{i} ")).collect();
    let (app, fake) = spawn(paced(&tokens, 10), |c| {
        c.max_concurrent_generations = 1;
    })
    .await;
    let first_chat = new_chat(&app).await;
    let first = app.send(&app.client, first_chat, "first").await;

    // A second send to the same chat while the reply is written: 409, nothing stored.
    let count = app.count("messages").await;
    let response = app
        .post(
            &format!("/chats/{first_chat}/messages"),
            &[("content", "too soon")],
        )
        .await;
    assert_eq!(response.status(), 409);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("still being written")
    );
    let response = app
        .post_htmx(
            &format!("/chats/{first_chat}/messages"),
            &[("content", "too soon")],
        )
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(response.headers()["hx-retarget"], "#flash");
    assert_eq!(app.count("messages").await, count);
    let response = app
        .post(&format!("/chats/{first_chat}/regenerate"), &[])
        .await;
    assert_eq!(response.status(), 409);

    // Another chat waits for the only slot, and says so.
    let second_chat = new_chat(&app).await;
    let second = app.send(&app.client, second_chat, "second").await;
    let (_, _, reader) =
        EventReader::open(&app.client, &stream_url(&app, second_chat, second), None).await;
    let events = reader.unwrap().all().await;
    let waiting = events
        .iter()
        .position(|e| e.event == "status" && e.data.contains("Waiting for the model"))
        .expect("a waiting status");
    let first_token = events.iter().position(|e| e.event == "delta").unwrap();
    assert!(waiting < first_token);
    // Once the slot is free, the waiting line is cleared (an event with data, so that browsers
    // dispatch it), before the text.
    let cleared = events
        .iter()
        .position(|e| e.event == "status" && e.data == r#"{"text":""}"#)
        .expect("the waiting status is cleared");
    assert!(waiting < cleared && cleared < first_token);
    assert_eq!(app.finished(first).await.status, Status::Complete);
    assert_eq!(app.finished(second).await.content, tokens.concat());
    assert_eq!(fake.log(|l| l.completed), 2);
}

#[tokio::test]
async fn replies_left_streaming_by_a_dead_process_become_interrupted_with_their_text() {
    let (app, _fake) = spawn(Knobs::default(), |_| {}).await;
    let chat = new_chat(&app).await;
    // What a crash leaves behind: a reply marked streaming with a checkpoint and no task.
    let session: String = app::store::chat::Entity::find_by_id(chat)
        .one(app.store.connection())
        .await
        .unwrap()
        .unwrap()
        .session_id;
    let session = app::domain::SessionId::parse(&session).unwrap();
    let app::store::NewReply::Started { reply, .. } = app
        .store
        .add_exchange(&session, chat, "before the crash", &[])
        .await
        .unwrap()
    else {
        panic!("exchange");
    };
    app.store
        .checkpoint(&session, reply.id, "partial answer", "", &[])
        .await
        .unwrap();
    let client = app.client.clone();
    let (config, data_dir) = app.stop().await;

    let app = TestApp::start(config, data_dir).await;
    let saved = stored(&app, reply.id).await;
    assert_eq!(saved.status, Status::Interrupted);
    assert_eq!(saved.content, "partial answer");
    let page = client
        .get(app.url(&format!("/chats/{chat}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("partial answer")
            && page.contains("interrupted")
            && page.contains("Retry</button>")
    );
    // Retry starts a new reply to the same question.
    let response = post_form(
        &client,
        &app.url(&format!("/chats/{chat}/regenerate")),
        &[],
        false,
    )
    .await;
    assert_eq!(response.status(), 303);
    let retried = app.finished(reply_id(&response)).await;
    assert_eq!(retried.status, Status::Complete);
}

#[tokio::test]
async fn regenerate_answers_the_last_question_again_and_keeps_the_earlier_reply() {
    let (app, fake) = spawn(
        Knobs {
            tokens: vec!["first answer".into()],
            ..Knobs::default()
        },
        |_| {},
    )
    .await;
    let chat = new_chat(&app).await;
    let first = app.send(&app.client, chat, "the question").await;
    app.finished(first).await;
    fake.set(|k| k.tokens = vec!["second answer".into()]);
    let response = app
        .post_htmx(&format!("/chats/{chat}/regenerate"), &[])
        .await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(fragment.contains("sse-connect="), "{fragment}");
    let id: Uuid = fragment.split("id=\"m-").nth(1).unwrap()[..36]
        .parse()
        .unwrap();
    assert_eq!(app.finished(id).await.content, "second answer");
    let request = fake.log(|l| l.requests.back().unwrap().clone());
    let last = request["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["content"], "the question",
        "the prompt ends with the question, not the old reply"
    );
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    // In place: the new version is shown, the first one behind "Previous version".
    assert!(page.contains("second answer") && !page.contains("first answer"));
    assert!(page.contains("aria-label=\"Previous version\""), "{page}");
    assert_eq!(
        page.matches("class=\"message assistant").count(),
        2,
        "the greeting and one reply"
    );
    // Nothing to answer in a chat without a user message.
    let empty = new_chat(&app).await;
    assert_eq!(
        app.post(&format!("/chats/{empty}/regenerate"), &[])
            .await
            .status(),
        422
    );
}

#[tokio::test]
async fn model_output_cannot_inject_anything_executable() {
    let corpus = [
        "<script>alert('x')</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)><circle/></svg>",
        "<iframe src=\"javascript:alert(1)\"></iframe>",
        "[click](javascript:alert(1)) [data](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "![img](javascript:alert(1))",
        "<a href=\"javascript:alert(1)\">x</a>",
        "<div style=\"background:url(javascript:alert(1))\">y</div>",
        "<math><mi xlink:href=\"javascript:alert(1)\">z</mi></math>",
        "[vb](vbscript:msgbox(1)) <object data=x></object> <embed src=x>",
        "<form action=javascript:alert(1)><button>go</button></form>",
        "```html\n<script>alert(2)</script>\n```",
        "<p onmouseover=alert(1)>hover</p> <details open ontoggle=alert(1)>",
    ];
    let (app, fake) = spawn(Knobs::default(), |_| {}).await;
    let chat = new_chat(&app).await;
    for payload in corpus {
        fake.set(|k| k.tokens = vec![payload.to_owned()]);
        let reply = app.send(&app.client, chat, "show me").await;
        let (_, _, reader) =
            EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
        let events = reader.unwrap().all().await;
        let done = events.last().unwrap().data.to_lowercase();
        let page = app
            .get(&format!("/chats/{chat}"))
            .await
            .text()
            .await
            .unwrap()
            .to_lowercase();
        // What the model wrote is inside each message's content element (markdown makes no divs).
        for html in done
            .split("<div class=\"content")
            .skip(1)
            .chain(page.split("<div class=\"content").skip(1))
        {
            let content = html
                .split_once('>')
                .unwrap()
                .1
                .split("</div>")
                .next()
                .unwrap();
            assert_only_safe_markup(content, payload);
        }
        // ...and the user still sees what the model wrote, as text.
        let word = payload
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| w.len() >= 4)
            .unwrap()
            .to_lowercase();
        assert!(
            done.contains(&word),
            "{payload:?} not shown ({word}): {done}"
        );
    }
}

/// Every tag in `html` (a literal `<` can only start one: text is escaped) is harmless markup:
/// an allowed element, no event handlers or styles, and links only to http(s) or mailto.
fn assert_only_safe_markup(html: &str, payload: &str) {
    const ALLOWED: [&str; 24] = [
        "p",
        "span",
        "a",
        "code",
        "pre",
        "strong",
        "em",
        "ul",
        "ol",
        "li",
        "br",
        "h1",
        "h2",
        "h3",
        "h4",
        "blockquote",
        "del",
        "hr",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
    ];
    for tag in html.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        assert!(
            ALLOWED.contains(&name.as_str()),
            "{payload:?} produced <{tag}>"
        );
        let mut rest = tag.trim_start_matches('/')[name.len()..].trim_start();
        while !rest.is_empty() && rest != "/" {
            let key: String = rest
                .chars()
                .take_while(|c| *c != '=' && !c.is_whitespace())
                .collect();
            rest = &rest[key.len()..];
            let mut value = "";
            if let Some(after) = rest.strip_prefix("=\"") {
                let end = after.find('"').expect("closing quote");
                value = &after[..end];
                rest = &after[end + 1..];
            }
            rest = rest.trim_start();
            assert!(
                ["href", "rel", "class", "title"].contains(&key.as_str()),
                "{payload:?} produced attribute {key}={value:?}"
            );
            if key == "class" {
                assert!(
                    value.split(' ').all(|class| class.starts_with("language-")
                        || (name == "span" && class.starts_with("hl-"))),
                    "{payload:?} produced class {value:?} on <{name}>"
                );
            }
            if key == "href" {
                assert!(
                    value.starts_with("http://")
                        || value.starts_with("https://")
                        || value.starts_with("mailto:"),
                    "{payload:?} produced link {value:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn streams_and_stops_of_another_session_are_not_found() {
    let tokens: Vec<String> = (0..100).map(|i| format!("z{i} ")).collect();
    let (app, _fake) = spawn(paced(&tokens, 5), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "private").await;
    let intruder = browser();
    let (status, _, _) = EventReader::open(&intruder, &stream_url(&app, chat, reply), None).await;
    assert_eq!(status, 404);
    let response = post_form(
        &intruder,
        &app.url(&format!("/chats/{chat}/messages/{reply}/stop")),
        &[],
        false,
    )
    .await;
    assert_eq!(response.status(), 404);
    let response = post_form(
        &intruder,
        &app.url(&format!("/chats/{chat}/regenerate")),
        &[],
        false,
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        app.finished(reply).await.status,
        Status::Complete,
        "not stopped by the intruder"
    );
    // Malformed and mismatched ids are 404 too.
    let (status, _, _) = EventReader::open(
        &app.client,
        &app.url(&format!("/chats/{chat}/messages/nope/stream")),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let other_chat = new_chat(&app).await;
    let (status, _, _) =
        EventReader::open(&app.client, &page_stream_url(&app, other_chat, reply), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn keep_alive_comments_flow_while_the_model_is_quiet() {
    let (app, _fake) = spawn(
        Knobs {
            hang: true,
            ..Knobs::default()
        },
        |c| {
            c.sse_keepalive = Duration::from_millis(100);
            c.lm_first_token_timeout = Duration::from_secs(3);
        },
    )
    .await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "hello?").await;
    let mut response = app
        .client
        .get(stream_url(&app, chat, reply))
        .send()
        .await
        .unwrap();
    let mut raw = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
        raw.push_str(&String::from_utf8_lossy(&chunk));
    }
    let comments = raw.lines().filter(|l| l.starts_with(':')).count();
    assert!(comments >= 3, "keep-alive comments: {raw:?}");
}

#[tokio::test]
async fn without_javascript_the_page_refreshes_until_the_reply_is_there() {
    // A reply of 2 s: the page is read while it is written, even with a busy machine.
    let tokens: Vec<String> = (0..20).map(|i| format!("n{i} ")).collect();
    let (app, _fake) = spawn(paced(&tokens, 100), |_| {}).await;
    let response = app
        .post("/chats", &[("content", "first message starts a reply")])
        .await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let page = app.get(&location).await.text().await.unwrap();
    assert!(
        page.contains("<noscript><meta http-equiv=\"refresh\""),
        "refreshes while streaming"
    );
    assert!(page.contains("sse-connect="));
    let chat: Uuid = location.trim_start_matches("/chats/").parse().unwrap();
    let reply = app::store::message::Entity::find()
        .all(app.store.connection())
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.chat_id == chat && m.role == app::store::Role::Assistant && m.seq == 3)
        .unwrap();
    app.finished(reply.id).await;
    let page = app.get(&location).await.text().await.unwrap();
    assert!(!page.contains("http-equiv=\"refresh\""));
    assert!(page.contains(tokens.concat().trim_end()));
}

#[tokio::test]
async fn shutdown_saves_replies_in_flight_as_interrupted_and_ends_their_streams() {
    let tokens: Vec<String> = (0..1000).map(|i| format!("q{i} ")).collect();
    let (app, fake) = spawn(paced(&tokens, 10), |c| {
        c.shutdown_grace = Duration::from_millis(300);
        c.checkpoint_interval = Duration::from_millis(100);
    })
    .await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "a long story").await;
    let (_, _, reader) = EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
    let mut reader = reader.unwrap();
    reader.next().await.unwrap();
    let store = app.store.clone();
    let stopping = tokio::time::timeout(Duration::from_secs(10), app.stop()).await;
    assert!(stopping.is_ok(), "shutdown must not hang on open streams");
    let events = reader.all().await;
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("done"),
        "the open stream ends with done"
    );
    let saved = message::Entity::find_by_id(reply)
        .one(store.connection())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.status, Status::Interrupted);
    assert!(!saved.content.is_empty() && tokens.concat().starts_with(&saved.content));
    assert!(
        fake.wait_for(Duration::from_millis(500), |l| l.disconnected == 1)
            .await
    );
}

#[tokio::test]
async fn checkpoints_save_the_text_while_it_streams() {
    let tokens: Vec<String> = (0..300).map(|i| format!("k{i} ")).collect();
    let (app, _fake) = spawn(paced(&tokens, 5), |c| {
        c.checkpoint_interval = Duration::from_millis(100);
    })
    .await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "go on").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let midway = stored(&app, reply).await;
    assert_eq!(midway.status, Status::Streaming);
    assert!(!midway.content.is_empty(), "checkpointed while streaming");
}

/// Resident memory of this process (the app and the test share it), in bytes.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Resident memory is the process's, and this binary runs every test at once (some load models
/// and keep them): the measurement runs in a process of its own, this test binary again with
/// only the test below.
#[test]
fn finished_replies_leave_nothing_behind() {
    let name = "streaming::finished_replies_leave_nothing_behind_in_a_process_of_its_own";
    let run = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--test-threads", "1"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{out}\n{err}");
    assert!(
        out.contains("1 passed"),
        "the measurement did not run: {out}"
    );
}

#[tokio::test]
#[ignore = "run by finished_replies_leave_nothing_behind, in a process of its own"]
async fn finished_replies_leave_nothing_behind_in_a_process_of_its_own() {
    let tokens: Vec<String> = (0..20).map(|i| format!("memory {i} ")).collect();
    let (app, fake) = spawn(paced(&tokens, 0), |_| {}).await;
    let mut after_warm_up = 0;
    let mut chat = Uuid::nil();
    for i in 0..2000 {
        if i == 500 {
            after_warm_up = resident_bytes();
        }

        // A chat per reply: the test measures the replies, not a growing history.
        let response = app.post("/chats", &[("content", &format!("m{i}"))]).await;
        assert_eq!(response.status(), 303);
        chat = response.headers()["location"]
            .to_str()
            .unwrap()
            .trim_start_matches("/chats/")
            .parse()
            .unwrap();
        while app.state.generations.live_count() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // 1,500 more replies must not grow memory: flat, within allocator noise and SQLite's page
    // cache (measured here: about 1.5 MiB, flattening).
    let growth = resident_bytes().saturating_sub(after_warm_up);
    assert!(
        growth < 8 * 1024 * 1024,
        "memory grew by {growth} bytes over 1,500 replies"
    );
    assert_eq!(fake.log(|l| l.completed), 2000);
    let complete = message::Entity::find()
        .all(app.store.connection())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| {
            m.role == app::store::Role::Assistant
                && m.status == Status::Complete
                && m.content == tokens.concat()
        })
        .count();
    assert_eq!(complete, 2000, "every reply saved complete");
    // Registry entries are removed just after the end is saved.
    for _ in 0..100 {
        if app.state.generations.live_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(app.state.generations.live_count(), 0);
    assert!(!app.state.generations.is_busy(chat));
}

/// Sends that race for one chat over several database connections: exactly one starts a reply,
/// the others are told 409, and the chat holds one new exchange with consecutive positions.
#[tokio::test]
async fn simultaneous_sends_to_one_chat_start_exactly_one_reply() {
    let tokens: Vec<String> = (0..20).map(|i| format!("r{i} ")).collect();
    let (app, _fake) = spawn(paced(&tokens, 10), |c| c.db_max_connections = 8).await;
    let chat = new_chat(&app).await;
    let before = app.count("messages").await;
    let sends = (0..12).map(|i| {
        let (client, url) = (
            app.client.clone(),
            app.url(&format!("/chats/{chat}/messages")),
        );
        async move {
            let content = format!("racer {i}");
            post_form(&client, &url, &[("content", &content)], true)
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(sends).await;
    let started = statuses.iter().filter(|s| s.is_success()).count();
    let refused = statuses.iter().filter(|s| s.as_u16() == 409).count();
    assert_eq!((started, refused), (1, 11), "{statuses:?}");
    assert_eq!(app.count("messages").await, before + 2);
    let seqs: Vec<i64> = message::Entity::find()
        .filter(message::Column::ChatId.eq(chat))
        .order_by_asc(message::Column::Seq)
        .all(app.store.connection())
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
}

/// A reply that cannot get a generation slot in time ends with a readable error instead of
/// waiting for ever; the user's message stays, and Retry works once the slot is free.
#[tokio::test]
async fn a_reply_that_waits_too_long_for_a_slot_ends_with_a_readable_error() {
    let (app, fake) = spawn(
        Knobs {
            hang_after: Some(1),
            ..Knobs::default()
        },
        |c| {
            c.max_concurrent_generations = 1;
            c.lm_queue_timeout = Duration::from_millis(300);
        },
    )
    .await;
    let first_chat = new_chat(&app).await;
    let first = app.send(&app.client, first_chat, "takes the slot").await;
    while fake.log(|l| l.request_count) < 1 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second_chat = new_chat(&app).await;
    let second = app.send(&app.client, second_chat, "waits").await;
    let waited = app.finished(second).await;
    assert_eq!(waited.status, Status::Error);
    let error = waited.error.unwrap();
    assert!(
        error.contains("busy with other replies for 300ms"),
        "{error}"
    );
    assert_eq!(
        fake.log(|l| l.request_count),
        1,
        "the model was never asked"
    );
    let page = app
        .get(&format!("/chats/{second_chat}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("waits"), "the user's message stays");

    // Stop the first; Retry on the second now gets the slot and an answer.
    let stop = app
        .post(&format!("/chats/{first_chat}/messages/{first}/stop"), &[])
        .await;
    assert!(stop.status().is_redirection());
    fake.set(|k| k.hang_after = None);
    let retried = app
        .post(&format!("/chats/{second_chat}/regenerate"), &[])
        .await;
    let retry = reply_id(&retried);
    assert_eq!(app.finished(retry).await.status, Status::Complete);
}

#[tokio::test]
async fn a_reply_whose_chat_is_deleted_while_it_waits_never_reaches_the_model() {
    let (app, fake) = spawn(Knobs::default(), |c| c.max_concurrent_generations = 1).await;
    let busy_chat = app.create_chat(&app.client, "first").await;
    let doomed_chat = app.create_chat(&app.client, "second").await;
    let asked_before = fake.log(|l| l.request_count);
    fake.set(|k| {
        k.tokens = vec!["word ".into(); 40];
        k.token_delay = Duration::from_millis(10);
    });
    let running = app.send(&app.client, busy_chat, "a long answer").await;
    // The first reply holds the one slot before the second is sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.log(|l| l.open) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no stream opened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app.send(&app.client, doomed_chat, "never mind").await;
    let deleted = app.post(&format!("/chats/{doomed_chat}/delete"), &[]).await;
    assert_eq!(deleted.status(), 303);
    assert_eq!(app.finished(running).await.status, Status::Complete);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while app.state.generations.live_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a reply task is left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.log(|l| l.request_count),
        asked_before + 1,
        "only the first reply asked the model"
    );
    assert!(!app.state.generations.is_busy(doomed_chat));
}

/// A markdown reply as a model writes it, token by token.
fn markdown_tokens() -> Vec<String> {
    let text = "# Plan\n\nSome **bold** text, `code` and $x^2$.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\
        ```rust\nfn main() {}\n```\n\n- one\n- two <script>alert(1)</script>\n";
    text.as_bytes()
        .chunks(3)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect()
}

fn page_stream_url(app: &TestApp, chat: Uuid, reply: Uuid) -> String {
    app.url(&format!("/chats/{chat}/messages/{reply}/stream"))
}

#[tokio::test]
async fn a_page_streams_the_reply_rendered_and_done_leaves_the_text_alone() {
    let tokens = markdown_tokens();
    let (app, _fake) = spawn(paced(&tokens, 3), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "Plan it").await;
    let (status, _, events) =
        EventReader::open(&app.client, &page_stream_url(&app, chat, reply), None).await;
    assert_eq!(status, 200);
    let events = events.unwrap().all().await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert!(!names.contains(&"token"), "{names:?}");
    assert!(
        names.iter().filter(|n| **n == "html").count() > 3,
        "{names:?}"
    );
    assert_eq!(names.last(), Some(&"done"));
    // The first update starts the page's text afresh; what the page ends with is the render.
    assert!(
        events
            .iter()
            .find(|e| e.event == "html")
            .unwrap()
            .data
            .starts_with("r ")
    );
    let saved = stored(&app, reply).await;
    assert_eq!(saved.content, tokens.concat());
    let page = helpers::sse::page_html(&events);
    assert_eq!(page, app::render::markdown_to_html(&saved.content));
    assert!(page.contains("<h1>Plan</h1>") && page.contains("<table>") && page.contains("<math"));
    assert!(!page.contains("<script"), "{page}");
    // The chat page, loaded afterwards, shows the same HTML.
    let chat_page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(chat_page.contains(&page), "{chat_page}");
    // `done` brings what follows the text (stats, Regenerate), not the text.
    let done = &events.last().unwrap().data;
    assert!(!done.contains("class=\"content\""), "{done}");
    assert!(done.contains("Regenerate"), "{done}");
    // Every moment the page showed had nothing executable and only finished blocks that the
    // final render begins with.
    let mut shown = (String::new(), String::new());
    for event in events.iter().filter(|e| e.event == "html") {
        shown = helpers::sse::apply_update(&shown, &event.data);
        assert!(page.starts_with(&shown.0), "{}", shown.0);
        assert!(!format!("{}{}", shown.0, shown.1).contains("<script"));
    }
}

#[tokio::test]
async fn a_page_reconnecting_gets_its_text_anew_never_behind_where_it_was() {
    let tokens = markdown_tokens();
    let (app, _fake) = spawn(paced(&tokens, 15), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "Plan it").await;
    let url = page_stream_url(&app, chat, reply);
    let (_, _, first) = EventReader::open(&app.client, &url, None).await;
    let mut first = first.unwrap();
    let mut last_id = String::new();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = first.next().await.expect("an update");
        if event.event == "html" {
            last_id = event.id.clone();
            seen.push(event);
        }
    }
    drop(first);
    let (status, _, resumed) = EventReader::open(&app.client, &url, Some(&last_id)).await;
    assert_eq!(status, 200);
    let resumed = resumed.unwrap().all().await;
    let first_update = resumed.iter().find(|e| e.event == "html").unwrap();
    assert!(first_update.data.starts_with("r "), "{}", first_update.data);
    let at: usize = first_update.id.parse().unwrap();
    assert!(at >= last_id.parse::<usize>().unwrap(), "{at} < {last_id}");
    let saved = stored(&app, reply).await;
    assert_eq!(
        helpers::sse::page_html(&resumed),
        app::render::markdown_to_html(&saved.content)
    );
}

#[tokio::test]
async fn the_no_javascript_page_shows_the_text_so_far_rendered() {
    let tokens = markdown_tokens();
    let (app, _fake) = spawn(paced(&tokens, 40), |_| {}).await;
    let chat = new_chat(&app).await;
    let reply = app.send(&app.client, chat, "Plan it").await;
    // Wait until some of the reply is there, then load the page as a browser without scripts.
    let mut page = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        page = app
            .get(&format!("/chats/{chat}"))
            .await
            .text()
            .await
            .unwrap();
        if page.contains("<h1>Plan</h1>") {
            break;
        }
    }
    assert!(page.contains("<h1>Plan</h1>"), "{page}");
    assert!(page.contains(&format!("id=\"m-{reply}\"")), "{page}");
    assert!(!page.contains("# Plan"), "{page}");
}
