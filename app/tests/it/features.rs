//! The chat features of issue 8: per-chat settings and the model picker,
//! reasoning, export and import, search, and generated titles. Through the pages (with and
//! without htmx) and the JSON API, against the fake llama-server.
use std::time::Duration;

use crate::helpers::{self, TestApp, browser, import_form, sse::EventReader};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use uuid::Uuid;

use app::store::{Role, Status, chat, message};

async fn messages_of(app: &TestApp, chat_id: Uuid) -> Vec<message::Model> {
    message::Entity::find()
        .filter(message::Column::ChatId.eq(chat_id))
        .order_by_asc(message::Column::Seq)
        .all(app.store.connection())
        .await
        .unwrap()
}

async fn chat_row(app: &TestApp, chat_id: Uuid) -> chat::Model {
    chat::Entity::find_by_id(chat_id)
        .one(app.store.connection())
        .await
        .unwrap()
        .unwrap()
}

async fn text(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The latest chat completion request the fake model server received.
fn last_request(app: &TestApp) -> Value {
    app.fake_lm
        .log(|log| log.requests.back().cloned())
        .expect("a request upstream")
}

fn bearer(
    app: &TestApp,
    token: &str,
    method: reqwest::Method,
    path: &str,
) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .request(method, app.url(path))
        .bearer_auth(token)
}

async fn token_for(app: &TestApp) -> String {
    let response = app
        .client
        .post(app.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

// ---- 1 and 8: settings and models ---------------------------------------------------------------

#[tokio::test]
async fn chat_settings_are_shown_saved_validated_and_sent_upstream() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "hello").await;
    let first = last_request(&app);
    assert_eq!(first["messages"][0]["role"], "system");
    assert_eq!(first["messages"][0]["content"], app.config.system_prompt);
    assert_eq!(first["max_tokens"], app.config.lm_max_tokens);

    // The chat page shows the form with the defaults as placeholders.
    let (status, page) = text(app.get(&format!("/chats/{chat}")).await).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"chat-settings\""), "{page}");
    assert!(page.contains(&format!("placeholder=\"{}\"", app.config.system_prompt)));
    assert!(
        !page.contains("<select id=\"model\""),
        "one model: no picker"
    );

    // htmx: the form comes back, saying so.
    let settings = format!("/chats/{chat}/settings");
    let response = app
        .post_htmx(
            &settings,
            &[
                ("system_prompt", "  Answer like a pirate.  "),
                ("temperature", "0,25"),
                ("max_tokens", "77"),
                ("model", ""),
            ],
        )
        .await;
    let (status, fragment) = text(response).await;
    assert_eq!(status, 200, "{fragment}");
    assert!(fragment.contains("Saved."), "{fragment}");
    assert!(
        fragment.contains("Answer like a pirate.</textarea>"),
        "{fragment}"
    );
    let row = chat_row(&app, chat).await;
    assert_eq!(row.system_prompt.as_deref(), Some("Answer like a pirate."));
    assert_eq!(row.temperature, Some(0.25));
    assert_eq!(row.max_tokens, Some(77));
    assert_eq!(row.model, None);

    // Really sent upstream with the next reply.
    app.send_and_wait(&app.client, chat, "who are you?").await;
    let request = last_request(&app);
    assert_eq!(request["messages"][0]["content"], "Answer like a pirate.");
    assert_eq!(request["temperature"], 0.25);
    assert_eq!(request["max_tokens"], 77);

    // Bad values: a clear error, and nothing changes.
    for (field, value, status, says) in [
        ("temperature", "3", 422, "from 0 to 2"),
        ("temperature", "warm", 422, "not “warm”"),
        ("temperature", "NaN", 422, "from 0 to 2"),
        ("max_tokens", "0", 422, "from 1 to"),
        ("max_tokens", "1.5", 422, "whole number"),
        ("max_tokens", "9999999", 422, "from 1 to"),
        ("model", "no-such-model", 422, "does not serve"),
        ("system_prompt", "a\0b", 422, "NUL"),
    ] {
        let mut form = vec![
            ("system_prompt", "kept"),
            ("temperature", ""),
            ("max_tokens", ""),
        ];
        form.retain(|(name, _)| *name != field);
        form.push((field, value));
        let (got, body) = text(app.post_htmx(&settings, &form).await).await;
        assert_eq!(got, status, "{field}={value}: {body}");
        assert!(body.contains(says), "{field}={value}: {body}");
    }
    let big = "x".repeat(app.config.max_message_bytes + 1);
    let (got, body) = text(app.post_htmx(&settings, &[("system_prompt", &big)]).await).await;
    assert_eq!(got, 413, "{body}");
    let now = chat_row(&app, chat).await;
    assert_eq!(
        (
            now.system_prompt,
            now.temperature,
            now.max_tokens,
            now.model
        ),
        (
            row.system_prompt,
            row.temperature,
            row.max_tokens,
            row.model
        ),
        "refused settings change nothing"
    );

    // Without JavaScript: 303 back to the chat; blank fields mean the defaults again.
    let response = app
        .post(
            &settings,
            &[
                ("system_prompt", ""),
                ("temperature", ""),
                ("max_tokens", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("/chats/{chat}"));
    let row = chat_row(&app, chat).await;
    assert_eq!(
        (row.system_prompt, row.temperature, row.max_tokens),
        (None, None, None)
    );
    app.send_and_wait(&app.client, chat, "and now?").await;
    let request = last_request(&app);
    assert_eq!(request["messages"][0]["content"], app.config.system_prompt);
    assert_eq!(request["max_tokens"], app.config.lm_max_tokens);

    // Another session cannot see or change them.
    let stranger = browser();
    let response = crate::helpers::post_form(
        &stranger,
        &app.url(&settings),
        &[("max_tokens", "5")],
        false,
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(chat_row(&app, chat).await.max_tokens, None);
}

#[tokio::test]
async fn with_several_models_each_chat_picks_its_own() {
    let app = TestApp::spawn().await;
    app.fake_lm
        .set(|k| k.extra_models = vec!["second-model".into(), "third-model".into()]);
    let chat = app.create_chat(&app.client, "hello").await;
    assert_eq!(
        last_request(&app)["model"],
        "llama-2-tiny-random",
        "the first listed by default"
    );

    let (_, page) = text(app.get(&format!("/chats/{chat}")).await).await;
    assert!(
        page.contains("<select id=\"model\" name=\"model\">"),
        "{page}"
    );
    for model in ["llama-2-tiny-random", "second-model", "third-model"] {
        assert!(
            page.contains(&format!("<option value=\"{model}\"")),
            "{model}"
        );
    }
    let response = app
        .post(
            &format!("/chats/{chat}/settings"),
            &[("model", "third-model")],
        )
        .await;
    assert_eq!(response.status(), 303);
    app.send_and_wait(&app.client, chat, "which model?").await;
    assert_eq!(last_request(&app)["model"], "third-model");
    let (_, page) = text(app.get(&format!("/chats/{chat}")).await).await;
    assert!(
        page.contains("<option value=\"third-model\" selected>"),
        "{page}"
    );

    // Another chat keeps the default.
    let other = app.create_chat(&app.client, "hi").await;
    assert_ne!(other, chat);
    assert_eq!(last_request(&app)["model"], "llama-2-tiny-random");

    // The API lists them, and sets them.
    let token = token_for(&app).await;
    let models: Value = bearer(&app, &token, reqwest::Method::GET, "/api/v1/models")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["llama-2-tiny-random", "second-model", "third-model"]);
    assert_eq!(models["models"][0]["n_ctx"], 4096);
    let response = bearer(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/chats/{other}/settings"),
    )
    .json(&json!({"model": "second-model", "temperature": 1.5, "system_prompt": "Be terse."}))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["settings"]["model"], "second-model");
    assert_eq!(body["settings"]["temperature"], 1.5);
    assert_eq!(body["settings"]["max_tokens"], Value::Null);
    let response = bearer(
        &app,
        &token,
        reqwest::Method::PUT,
        &format!("/api/v1/chats/{other}/settings"),
    )
    .json(&json!({"model": "gone"}))
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 422);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    // The model server is down: listing says so, and the chat page still renders (no picker).
    let down = TestApp::spawn_with(|c| c.lm_api_url = Some("http://127.0.0.1:9/v1".into())).await;
    let response = bearer(
        &down,
        &token_for(&down).await,
        reqwest::Method::GET,
        "/api/v1/models",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
}

// ---- 7: reasoning -------------------------------------------------------------------------------

#[tokio::test]
async fn reasoning_streams_live_and_is_stored_apart_from_the_answer() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| {
        k.reasoning = vec!["Let me ".into(), "think <b>hard</b>.".into()];
        k.tokens = vec!["The ".into(), "answer.".into()];
        k.token_delay = Duration::from_millis(30);
    });
    let chat = app.create_chat(&app.client, "hi").await;
    let reply = app.send(&app.client, chat, "think first").await;
    let url = app.url(&format!("/chats/{chat}/messages/{reply}/stream"));
    let (status, _, reader) = EventReader::open(&app.client, &url, None).await;
    assert_eq!(status, 200);
    let events = reader.unwrap().all().await;
    // Both texts come rendered, the reasoning first, each ending as its final render.
    let of = |name: &str| -> String {
        let mut page = (String::new(), String::new());
        for event in events.iter().filter(|e| e.event == name) {
            page = helpers::sse::apply_update(&page, &event.data);
        }
        page.0 + &page.1
    };
    assert_eq!(
        of("reasoning"),
        "<p>Let me think &lt;b&gt;hard&lt;/b&gt;.</p>\n",
        "escaped, live"
    );
    assert_eq!(of("html"), "<p>The answer.</p>\n");
    let first_answer = events
        .iter()
        .position(|e| {
            e.event == "html" && e.data.split_once('\n').is_some_and(|(_, b)| !b.is_empty())
        })
        .unwrap();
    assert!(
        events[..first_answer]
            .iter()
            .any(|e| e.event == "reasoning"),
        "reasoning comes before the answer"
    );
    let done = events.iter().find(|e| e.event == "done").unwrap();
    assert_eq!(
        done.id,
        format!(
            "{}:{}",
            "The answer.".len(),
            "Let me think <b>hard</b>.".len()
        )
    );

    let stored = app.finished(reply).await;
    assert_eq!(stored.content, "The answer.");
    assert_eq!(
        stored.reasoning.as_deref(),
        Some("Let me think <b>hard</b>.")
    );

    // Resuming from an id with both offsets sends the rest of each, once.
    let (_, _, reader) = EventReader::open(&app.client, &url, Some("4:7")).await;
    let resumed = reader.unwrap().all().await;
    // A finished reply answers at once: its texts rendered anew, then done.
    let names: Vec<&str> = resumed.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["reasoning", "html", "done"]);
    assert!(resumed[..2].iter().all(|e| e.data.starts_with("r ")));
    // The page shows it folded; the prompt of the next reply leaves it out.
    let (_, page) = text(app.get(&format!("/chats/{chat}")).await).await;
    assert!(page.contains("<summary>Thinking</summary>"));
    app.fake_lm.set(|k| k.reasoning.clear());
    app.send_and_wait(&app.client, chat, "next").await;
    let prompt = last_request(&app).to_string();
    assert!(!prompt.contains("think <b>hard"), "{prompt}");
    assert!(prompt.contains("The answer."));
}

#[tokio::test]
async fn a_think_block_in_the_text_is_reasoning_and_resuming_mid_reasoning_loses_nothing() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| {
        k.tokens = [
            "<thi",
            "nk>Step one. ",
            "Step two.</th",
            "ink>\n\n",
            "Done",
            " here.",
        ]
        .map(String::from)
        .to_vec();
        k.token_delay = Duration::from_millis(40);
    });
    let chat = app.create_chat(&app.client, "hi").await;
    let reply = app.send(&app.client, chat, "solve").await;

    // The API's JSON stream, cut after the first reasoning event and resumed from its id.
    let token = token_for(&app).await;
    let stream = |last: Option<String>| {
        let mut request = bearer(
            &app,
            &token,
            reqwest::Method::GET,
            &format!("/api/v1/messages/{reply}/stream"),
        );
        if let Some(id) = last {
            request = request.header("last-event-id", id);
        }
        request.send()
    };
    use eventsource_stream::Eventsource;
    use futures::StreamExt;
    let mut first = stream(None).await.unwrap().bytes_stream().eventsource();
    let cut = loop {
        let event = first.next().await.unwrap().unwrap();
        if event.event == "reasoning" {
            break event;
        }
    };
    drop(first);
    let mut reasoning: String = serde_json::from_str::<Value>(&cut.data).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut answer = String::new();
    let mut rest = stream(Some(cut.id.clone()))
        .await
        .unwrap()
        .bytes_stream()
        .eventsource();
    let done = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), rest.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let data: Value = serde_json::from_str(&event.data).unwrap();
        match event.event.as_str() {
            "reasoning" => reasoning.push_str(data["text"].as_str().unwrap()),
            "delta" => answer.push_str(data["text"].as_str().unwrap()),
            "done" => break data,
            _ => {}
        }
    };
    assert_eq!(reasoning, "Step one. Step two.");
    assert_eq!(answer, "Done here.");
    assert_eq!(done["content"], "Done here.");
    assert_eq!(done["reasoning"], "Step one. Step two.");
    let stored = app.finished(reply).await;
    assert_eq!(stored.reasoning.as_deref(), Some("Step one. Step two."));
    assert_eq!(stored.content, "Done here.");
}

// ---- 4: export and import -----------------------------------------------------------------------

#[tokio::test]
async fn a_chat_exports_as_markdown_and_json_and_the_json_imports_as_a_new_chat() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| k.reasoning = vec!["Pondering.".into()]);
    let chat = app
        .create_chat(&app.client, "First <question> & more")
        .await;
    app.post(
        &format!("/chats/{chat}/settings"),
        &[
            ("system_prompt", "Be kind."),
            ("temperature", "0.5"),
            ("max_tokens", "100"),
        ],
    )
    .await;
    app.send_and_wait(&app.client, chat, "Second question")
        .await;
    let latest = messages_of(&app, chat).await;
    let latest_user = latest
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .unwrap()
        .id;
    let edit = app
        .post(
            &format!("/chats/{chat}/messages/{latest_user}/edit"),
            &[("content", "Second, edited")],
        )
        .await;
    app.finished(crate::helpers::reply_id(&edit)).await;
    let original = messages_of(&app, chat).await;

    // Markdown, for people.
    let response = app.get(&format!("/chats/{chat}/export?format=md")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/markdown; charset=utf-8"
    );
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"first-question-more.md\""
    );
    let markdown = response.text().await.unwrap();
    assert!(
        markdown.starts_with("# First <question> & more\n"),
        "{markdown}"
    );
    assert!(markdown.contains("**System prompt:**\n\n> Be kind."));
    assert!(markdown.contains("## You\n\nFirst <question> & more"));
    // The chat as it reads now: the edited message's other version is left out.
    assert!(!markdown.contains("Second question"), "{markdown}");
    assert!(markdown.contains("## You\n\nSecond, edited"));
    assert!(markdown.contains("**Thinking:**\n\n> Pondering."));
    assert_eq!(markdown.matches("## Assistant").count(), 3, "{markdown}");

    // JSON, to keep and import.
    let response = app.get(&format!("/chats/{chat}/export?format=json")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let export: Value = response.json().await.unwrap();
    assert_eq!(export["format"], "chat-export");
    assert_eq!(export["version"], 1);
    assert_eq!(export["title"], "First <question> & more");
    assert_eq!(export["settings"]["system_prompt"], "Be kind.");
    assert_eq!(export["messages"].as_array().unwrap().len(), original.len());

    // Imported through the home page's form: a new chat with the same messages and settings.
    let form = import_form(export.to_string().into_bytes());
    let response = app
        .client
        .post(app.url("/chats/import"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let imported: Uuid = location.trim_start_matches("/chats/").parse().unwrap();
    assert_ne!(imported, chat);
    let copy = messages_of(&app, imported).await;
    // Every version, each following the same message as before (by position), on the same path.
    type Summary = (Role, String, Option<String>, Status, bool, Option<usize>);
    let summary = |ms: &[message::Model]| -> Vec<Summary> {
        let position = |id: Option<Uuid>| id.and_then(|id| ms.iter().position(|m| m.id == id));
        ms.iter()
            .map(|m| {
                (
                    m.role,
                    m.content.clone(),
                    m.reasoning.clone(),
                    m.status,
                    m.superseded,
                    position(m.parent_id),
                )
            })
            .collect()
    };
    assert_eq!(summary(&copy), summary(&original));
    assert!(
        copy.iter().any(|m| m.superseded),
        "the other version came too"
    );
    let row = chat_row(&app, imported).await;
    assert_eq!(row.title, "First <question> & more");
    assert_eq!(
        (
            row.system_prompt.as_deref(),
            row.temperature,
            row.max_tokens
        ),
        (Some("Be kind."), Some(0.5), Some(100))
    );
    let (_, page) = text(app.get(&location).await).await;
    assert!(page.contains("Second, edited") && page.contains("Previous version"));
    assert!(!page.contains("Second question"), "{page}");
    // And the imported chat goes on like any other.
    app.send_and_wait(&app.client, imported, "Continue").await;
    assert_eq!(last_request(&app)["messages"][0]["content"], "Be kind.");

    // The API: export JSON, import it.
    let token = token_for(&app).await;
    let response = bearer(&app, &token, reqwest::Method::POST, "/api/v1/chats/import")
        .json(&export)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["title"], "First <question> & more");
    let response = bearer(
        &app,
        &token,
        reqwest::Method::GET,
        &format!("/api/v1/chats/{chat}/export?format=md"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);

    // Others' chats are not found; an unknown format is a clear error.
    let stranger = browser();
    let response = stranger
        .get(app.url(&format!("/chats/{chat}/export?format=json")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (status, body) = text(app.get(&format!("/chats/{chat}/export?format=pdf")).await).await;
    assert_eq!(status, 422);
    assert!(body.contains("md or json"), "{body}");
}

#[tokio::test]
async fn a_bad_import_is_a_clear_error_and_creates_nothing() {
    let app = TestApp::spawn_with(|c| c.max_import_bytes = 64 * 1024).await;
    let chats_before = app.count("chats").await;
    let valid = json!({"format": "chat-export", "version": 1, "title": "T", "messages": [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "partial", "status": "streaming"},
    ]});
    let upload = |bytes: Vec<u8>| {
        let form = import_form(bytes);
        app.client
            .post(app.url("/chats/import"))
            .header("hx-request", "true")
            .multipart(form)
            .send()
    };
    let mut cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"not json".to_vec(), 422, "not a chat export"),
        (b"{\"nope\": 1}".to_vec(), 422, "not a chat export"),
        (Vec::new(), 422, "Please choose a chat export"),
    ];
    let mut wrong_format = valid.clone();
    wrong_format["format"] = "something-else".into();
    cases.push((
        wrong_format.to_string().into_bytes(),
        422,
        "format “something-else”",
    ));
    let mut wrong_role = valid.clone();
    wrong_role["messages"][1]["role"] = "robot".into();
    cases.push((
        wrong_role.to_string().into_bytes(),
        422,
        "Message 2: the role “robot”",
    ));
    let mut nul = valid.clone();
    nul["messages"][0]["content"] = "a\u{0}b".into();
    cases.push((
        nul.to_string().into_bytes(),
        422,
        "Message 1: That text contains a NUL",
    ));
    let mut hot = valid.clone();
    hot["settings"] = json!({"temperature": 9});
    cases.push((hot.to_string().into_bytes(), 422, "temperature"));
    let mut huge = valid.clone();
    huge["messages"][0]["content"] = "x".repeat(200 * 1024).into();
    cases.push((huge.to_string().into_bytes(), 413, "too large"));
    for (bytes, status, says) in cases {
        let response = upload(bytes).await.unwrap();
        let (got, body) = text(response).await;
        assert_eq!(got, status, "{says}: {body}");
        assert!(body.contains(says), "{says}: {body}");
    }
    assert_eq!(
        app.count("chats").await,
        chats_before,
        "nothing was created"
    );

    // A valid one: a reply exported while being written comes back interrupted, so the chat
    // is not blocked.
    let response = upload(valid.to_string().into_bytes()).await.unwrap();
    assert_eq!(response.status(), 204);
    let chat: Uuid = response.headers()["hx-redirect"]
        .to_str()
        .unwrap()
        .trim_start_matches("/chats/")
        .parse()
        .unwrap();
    let messages = messages_of(&app, chat).await;
    assert_eq!(messages[1].status, Status::Interrupted);
    app.send_and_wait(&app.client, chat, "go on").await;
}

// ---- 5: search ----------------------------------------------------------------------------------

#[tokio::test]
async fn search_finds_titles_and_messages_of_this_session_only_and_links_to_the_message() {
    let app = TestApp::spawn().await;
    let chat = app
        .create_chat(&app.client, "Planning the Zanzibar trip")
        .await;
    app.send_and_wait(
        &app.client,
        chat,
        "Pack the <b>SUNSCREEN</b> & 100% cotton_shirts",
    )
    .await;
    let other = app.create_chat(&app.client, "Something else").await;
    app.send_and_wait(&app.client, other, "nothing to see")
        .await;
    let stranger = browser();
    crate::helpers::post_form(
        &stranger,
        &app.url("/chats"),
        &[("content", "zanzibar sunscreen, a stranger's")],
        false,
    )
    .await;

    let (status, page) = text(app.get("/search?q=zanzibar").await).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("class=\"home-list search-chats\""),
        "title match: {page}"
    );
    assert!(page.contains(&format!(
        "href=\"/chats/{chat}\">Planning the Zanzibar trip"
    )));
    assert!(
        page.contains("<mark>Zanzibar</mark>"),
        "message match, as written: {page}"
    );
    assert!(
        !page.contains("a stranger"),
        "another session's chats are not searched"
    );

    // Case-insensitive; the snippet is escaped; LIKE's wildcards are literal.
    let (_, page) = text(app.get("/search?q=sunscreen").await).await;
    assert!(
        page.contains(
            "Pack the &lt;b&gt;<mark>SUNSCREEN</mark>&lt;&#x2f;b&gt; &amp; 100% cotton_shirts"
        ),
        "{page}"
    );
    let (_, page) = text(app.get("/search?q=100%25%20cotton_").await).await;
    assert!(page.contains("<mark>100% cotton_</mark>"), "{page}");
    let (_, page) = text(app.get("/search?q=1_0").await).await;
    assert!(
        page.contains("Nothing in your chats matches"),
        "_ is not a wildcard: {page}"
    );
    let (_, page) = text(app.get("/search?q=%25").await).await;
    assert!(page.contains("<mark>%</mark>"), "{page}");
    let (_, page) = text(app.get("/search?q=n!o").await).await;
    assert!(
        page.contains("Nothing in your chats matches"),
        "! is not special: {page}"
    );

    // The link opens the chat at a page that holds the message.
    let hit = messages_of(&app, chat)
        .await
        .into_iter()
        .find(|m| m.content.contains("SUNSCREEN"))
        .unwrap();
    let (_, page) = text(app.get("/search?q=sunscreen").await).await;
    let link = format!("/chats/{chat}?before={}#m-{}", hit.seq + 50, hit.id);
    assert!(page.contains(&link), "{page}");
    let (status, chat_page) = text(app.get(link.split('#').next().unwrap()).await).await;
    assert_eq!(status, 200);
    assert!(chat_page.contains(&format!("id=\"m-{}\"", hit.id)));
    assert!(
        !chat_page.contains("Back to the latest messages"),
        "the newest page, not paged"
    );

    // Blank shows the form; too long is a clear error.
    let (status, page) = text(app.get("/search?q=%20%20").await).await;
    assert_eq!(status, 200);
    assert!(!page.contains("Nothing in your chats matches"));
    let (status, page) = text(app.get(&format!("/search?q={}", "a".repeat(201))).await).await;
    assert_eq!(status, 422);
    assert!(page.contains("at most 200 characters"));

    // The API.
    let token = token_for(&app).await;
    let results: Value = bearer(
        &app,
        &token,
        reqwest::Method::GET,
        "/api/v1/search?q=ZANZIBAR",
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(results["chats"][0]["id"], json!(chat));
    assert_eq!(
        results["messages"][0]["chat_title"],
        "Planning the Zanzibar trip"
    );
    assert_eq!(results["messages"][0]["snippet"]["matched"], "Zanzibar");
    let response = bearer(&app, &token, reqwest::Method::GET, "/api/v1/search?q=")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
}

#[tokio::test]
async fn a_search_result_deep_in_a_long_chat_opens_the_page_that_holds_it() {
    let app = TestApp::spawn().await;
    let messages: Vec<Value> = (1..=400)
        .map(|i| {
            let role = if i % 2 == 1 { "user" } else { "assistant" };
            let content = if i == 101 {
                "the needle is here".to_owned()
            } else {
                format!("message {i}")
            };
            json!({"role": role, "content": content})
        })
        .collect();
    let export =
        json!({"format": "chat-export", "version": 1, "title": "Long", "messages": messages});
    let token = token_for(&app).await;
    let response = bearer(&app, &token, reqwest::Method::POST, "/api/v1/chats/import")
        .json(&export)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let (_, page) = text(app.get("/search?q=needle").await).await;
    let results = &page[page.find("class=\"search-results\"").expect("a result")..];
    let start = results.find("href=\"").unwrap() + "href=\"".len();
    let link = &results[start..start + results[start..].find('"').unwrap()];
    let (path, anchor) = link.split_once('#').unwrap();
    let (status, chat_page) = text(app.get(path).await).await;
    assert_eq!(status, 200);
    assert!(chat_page.contains(&format!("id=\"{anchor}\"")), "{link}");
    assert!(chat_page.contains("Back to the latest messages"));
}

// ---- 6: titles ----------------------------------------------------------------------------------

#[tokio::test]
async fn after_the_first_reply_the_model_names_the_chat_in_the_background() {
    let app = TestApp::spawn_with(|c| c.title_generation = true).await;
    app.fake_lm
        // Long enough that the first look at the title URL comes before it, even on a loaded
        // machine.
        .set(|k| k.title_delay = Duration::from_millis(1500));
    let chat = app
        .create_chat(&app.client, "hello there, how are you today")
        .await;
    assert_eq!(
        chat_row(&app, chat).await.title,
        "hello there, how are you today"
    );

    // The page waits for it: the title URL says "not yet" (204), then sends it (286).
    let title_url = format!("/chats/{chat}/title");
    assert_eq!(app.get(&title_url).await.status(), 204);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let fragment = loop {
        let response = app.get(&title_url).await;
        if response.status() == 286 {
            break response.text().await.unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "no title in 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        fragment.contains("value=\"Greetings, Numbers and More\""),
        "cleaned: {fragment}"
    );
    assert!(
        fragment.contains(&format!("id=\"chat-item-{chat}\"")) && fragment.contains("hx-swap-oob")
    );
    assert_eq!(
        chat_row(&app, chat).await.title,
        "Greetings, Numbers and More"
    );
    let requests = app.fake_lm.log(|l| l.title_requests.clone());
    assert_eq!(requests.len(), 1);
    let prompt = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        prompt.contains("hello there, how are you today"),
        "{prompt}"
    );
    assert_eq!(requests[0]["max_tokens"], 24);

    // Only once: later replies do not rename it.
    app.send_and_wait(&app.client, chat, "more").await;
    title_settled(&app, chat).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.fake_lm.log(|l| l.title_requests.len()), 1);

    // The `done` event of the first reply carries the watcher while the title is pending.
    let second = app
        .post("/chats", &[("content", "tell me about rust")])
        .await;
    let location = second.headers()["location"].to_str().unwrap().to_owned();
    let second_chat: Uuid = location.trim_start_matches("/chats/").parse().unwrap();
    let reply = messages_of(&app, second_chat).await.last().unwrap().id;
    let url = app.url(&format!("/chats/{second_chat}/messages/{reply}/stream"));
    let (_, _, reader) = EventReader::open(&app.client, &url, None).await;
    let events = reader.unwrap().all().await;
    let done = events.iter().find(|e| e.event == "done").unwrap();
    assert!(
        done.data
            .contains(&format!("hx-get=\"/chats/{second_chat}/title\"")),
        "{}",
        done.data
    );

    // Even when the title is written before the reply's end goes out, the end asks for it.
    app.fake_lm.set(|k| k.title_delay = Duration::ZERO);
    let third = app.post("/chats", &[("content", "a quick one")]).await;
    let third_chat: Uuid = third.headers()["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/chats/")
        .parse()
        .unwrap();
    let reply = messages_of(&app, third_chat).await.last().unwrap().id;
    let url = app.url(&format!("/chats/{third_chat}/messages/{reply}/stream"));
    let (_, _, reader) = EventReader::open(&app.client, &url, None).await;
    let events = reader.unwrap().all().await;
    let done = events.iter().find(|e| e.event == "done").unwrap();
    assert!(
        done.data
            .contains(&format!("hx-get=\"/chats/{third_chat}/title\"")),
        "{}",
        done.data
    );
    title_settled(&app, third_chat).await;

    // A page rendered while the reply was written, whose stream attaches only after the reply
    // and its title are both done (a slow browser, or a reply another replica wrote), looks for
    // the title as well: it cannot know the page still shows the old one.
    let events = EventReader::open(&app.client, &url, None)
        .await
        .2
        .unwrap()
        .all()
        .await;
    let done = events.iter().find(|e| e.event == "done").unwrap();
    assert!(
        done.data
            .contains(&format!("hx-get=\"/chats/{third_chat}/title\"")),
        "{}",
        done.data
    );
    app.fake_lm
        // Long enough that the first look at the title URL comes before it, even on a loaded
        // machine.
        .set(|k| k.title_delay = Duration::from_millis(1500));

    // A page opened while the model writes the title looks for it too.
    let fourth = app.create_chat(&app.client, "one more chat").await;
    let (_, page) = text(app.get(&format!("/chats/{fourth}")).await).await;
    assert!(
        page.contains(&format!("hx-get=\"/chats/{fourth}/title\"")),
        "{page}"
    );
    title_settled(&app, fourth).await;

    // A rename by the user while the model writes is not overwritten.
    app.post(
        &format!("/chats/{second_chat}/rename"),
        &[("title", "My own title")],
    )
    .await;
    title_settled(&app, second_chat).await;
    assert_eq!(app.fake_lm.log(|l| l.title_requests.len()), 4);
    assert_eq!(chat_row(&app, second_chat).await.title, "My own title");
}

#[tokio::test]
async fn shutdown_waits_for_a_title_the_model_is_writing() {
    let app = TestApp::spawn_with(|c| c.title_generation = true).await;
    app.fake_lm
        .set(|k| k.title_delay = Duration::from_millis(500));
    let chat = app
        .create_chat(&app.client, "hello there, how are you")
        .await;
    assert!(app.state.generations.title_pending(chat));
    let store = app.store.clone();
    // Shutdown's grace period (the test config's) is longer than the title takes.
    app.stop().await;
    let row = chat::Entity::find_by_id(chat)
        .one(store.connection())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.title, "Greetings, Numbers and More");
}

/// Waits until the model is no longer writing the chat's title (the title URL answers 286).
async fn title_settled(app: &TestApp, chat: Uuid) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.get(&format!("/chats/{chat}/title")).await.status() != 286 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "title still pending after 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn when_the_model_cannot_name_the_chat_the_first_words_stay() {
    let app = TestApp::spawn_with(|c| c.title_generation = true).await;
    app.fake_lm.set(|k| k.title_reply = None);
    let chat = app
        .create_chat(&app.client, "first words of the chat")
        .await;
    // (async-openai retries a 5xx a few times; each try is a request.)
    assert!(
        app.fake_lm
            .wait_for(Duration::from_secs(5), |l| !l.title_requests.is_empty())
            .await
    );
    title_settled(&app, chat).await;
    assert_eq!(chat_row(&app, chat).await.title, "first words of the chat");

    // Unusable answers (blank, only quotes) leave it too.
    app.fake_lm.set(|k| k.title_reply = Some("  \"\"  ".into()));
    let asked = app.fake_lm.log(|l| l.title_requests.len());
    let chat = app.create_chat(&app.client, "another first message").await;
    assert!(
        app.fake_lm
            .wait_for(Duration::from_secs(5), |l| l.title_requests.len()
                == asked + 1)
            .await
    );
    title_settled(&app, chat).await;
    assert_eq!(chat_row(&app, chat).await.title, "another first message");

    // Off: no title requests at all.
    let off = TestApp::spawn().await;
    let chat = off.create_chat(&off.client, "no titles here").await;
    title_settled(&off, chat).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(off.fake_lm.log(|l| l.title_requests.len()), 0);
}
