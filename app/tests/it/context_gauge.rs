//! Issue 17, item 2: beside the composer, how much of the model's context the chat's next
//! prompt uses; the messages that no longer reach the model marked; a message that cannot fit
//! refused before anything is stored or the model is asked.
use app::lm::estimate_tokens;
use serde_json::Value;

use crate::helpers::{TestApp, sse::EventReader};

async fn context_json(app: &TestApp, chat: uuid::Uuid) -> Value {
    let response = app.get(&format!("/api/v1/chats/{chat}/context")).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The estimate the app uses with llama-server, summed over a request's messages.
fn estimated_prompt(request: &Value) -> u64 {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| u64::from(estimate_tokens(m["content"].as_str().unwrap())))
        .sum()
}

/// The gauge element of a page or fragment.
fn gauge_of(html: &str) -> &str {
    let start = html
        .find("<p id=\"context-gauge\"")
        .unwrap_or_else(|| panic!("no gauge: {html}"));
    let end = html[start..].find("</p>").unwrap() + start;
    &html[start..end]
}

#[tokio::test]
async fn the_gauge_counts_the_next_prompt_and_follows_each_message() {
    let app = TestApp::spawn_with(|c| c.lm_max_tokens = 512).await;
    let chat = app.create_chat(&app.client, "hello").await;

    let before = context_json(&app, chat).await;
    assert_eq!(before["context_tokens"], 4096, "{before}");
    assert_eq!(before["budget_tokens"], 4096 - 512, "{before}");
    assert_eq!(
        before["exact"], false,
        "llama-server's counts are estimates"
    );
    assert!(before["first_sent_seq"].is_null() && before["left_out"] == 0);
    let used = before["used_tokens"].as_u64().unwrap();

    // The page shows the same number, beside the composer, with a meter.
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    let composer = &page[page.find("id=\"composer\"").unwrap()..];
    let gauge = gauge_of(composer);
    assert!(
        gauge.contains(&format!("about {used} of 4,096 tokens")),
        "{gauge}"
    );
    assert!(
        gauge.contains(&format!(
            "max=\"4096\" low=\"2688\" high=\"3584\" optimum=\"0\" value=\"{used}\""
        )),
        "{gauge}"
    );
    assert!(!page.contains("id=\"context-boundary\""));

    // What the gauge counted is what the next prompt is: the model gets it plus the new message.
    let question = "And how far is the moon from the earth, roughly?";
    let reply = app.send_and_wait(&app.client, chat, question).await;
    let request = app.fake_lm.log(|log| log.requests.back().cloned()).unwrap();
    assert_eq!(
        estimated_prompt(&request),
        used + u64::from(estimate_tokens(question)),
        "{request}"
    );

    // After the reply the gauge has grown by the question and the answer.
    let after = context_json(&app, chat).await;
    let answer = app.store_message(reply).await.content;
    assert_eq!(
        after["used_tokens"].as_u64().unwrap(),
        used + u64::from(estimate_tokens(question) + estimate_tokens(&answer)),
        "{after}"
    );

    // The stream's end asks the page to fetch the gauge again, and that fragment has the new count.
    let url = app.url(&format!("/chats/{chat}/messages/{reply}/stream"));
    let events = EventReader::open(&app.client, &url, None)
        .await
        .2
        .unwrap()
        .all()
        .await;
    let done = events.iter().find(|e| e.event == "done").unwrap();
    assert!(
        done.data.contains(&format!(
            "hx-get=\"/chats/{chat}/context\" hx-trigger=\"load\" hx-target=\"#context-gauge\""
        )),
        "{}",
        done.data
    );
    let fragment = app.get(&format!("/chats/{chat}/context")).await;
    assert_eq!(fragment.status(), 200);
    let fragment = fragment.text().await.unwrap();
    assert!(
        gauge_of(&fragment).contains(&format!("about {} of 4,096", after["used_tokens"])),
        "{fragment}"
    );

    // Saving the chat's settings (a shorter reply leaves more room) brings the gauge along.
    let response = app
        .post_htmx(
            &format!("/chats/{chat}/settings"),
            &[
                ("system_prompt", ""),
                ("temperature", ""),
                ("max_tokens", "100"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    let gauge = gauge_of(&fragment);
    assert!(gauge.contains("hx-swap-oob=\"true\""), "{gauge}");
    assert!(gauge.contains("high=\"3996\""), "{gauge}");

    // Another session's chat, or none: not found, as everywhere.
    let stranger = crate::helpers::browser();
    for url in [
        format!("/chats/{chat}/context"),
        format!("/api/v1/chats/{chat}/context"),
    ] {
        let response = stranger.get(app.url(&url)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{url}");
    }
}

#[tokio::test]
async fn messages_that_no_longer_fit_are_marked_on_the_page_and_in_the_api() {
    let app = TestApp::spawn_with(|c| {
        c.lm_context_tokens = Some(400);
        c.lm_max_tokens = 16;
    })
    .await;
    let chat = app.create_chat(&app.client, "hello").await;
    let paragraph = "The quick brown fox jumps over the lazy dog again and again. ".repeat(2);
    let mut turns = 0;
    while context_json(&app, chat).await["left_out"] == 0 {
        turns += 1;
        assert!(turns < 20, "nothing was ever left out");
        app.send_and_wait(&app.client, chat, &format!("{turns}: {paragraph}"))
            .await;
    }
    let context = context_json(&app, chat).await;
    let budget = context["budget_tokens"].as_u64().unwrap();
    assert_eq!(budget, 400 - 16);
    let used = context["used_tokens"].as_u64().unwrap();
    let first_sent = context["first_sent_seq"].as_i64().unwrap();
    let messages = app.api_messages(chat).await;
    let (left_out, sent): (Vec<&Value>, Vec<&Value>) = messages
        .iter()
        .partition(|m| m["seq"].as_i64().unwrap() < first_sent);
    assert_eq!(
        context["left_out"].as_u64().unwrap(),
        left_out.len() as u64,
        "{context}"
    );
    // What is sent fits, and one more message would not have: the line is where it must be.
    let cost = |m: &Value| u64::from(estimate_tokens(m["content"].as_str().unwrap()));
    let system = u64::from(estimate_tokens(&app.config.system_prompt));
    assert_eq!(used, system + sent.iter().map(|m| cost(m)).sum::<u64>());
    assert!(used <= budget && used + cost(left_out.last().unwrap()) > budget);

    // The next reply's prompt has none of the messages left out.
    app.send_and_wait(&app.client, chat, "ok").await;
    let request = app.fake_lm.log(|log| log.requests.back().cloned()).unwrap();
    let prompt = request["messages"].to_string();
    for m in &left_out {
        let text = serde_json::to_string(m["content"].as_str().unwrap()).unwrap();
        assert!(!prompt.contains(&text), "{text} was sent");
    }

    // The page draws the line just above the first message sent and says how many are out.
    let context = context_json(&app, chat).await;
    let first_sent = context["first_sent_seq"].as_i64().unwrap();
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    let line = page
        .find("<li id=\"context-boundary\" class=\"context-boundary\">")
        .unwrap_or_else(|| panic!("no line: {page}"));
    let next_message = page[line..].find("<li id=\"m-").unwrap() + line;
    assert!(
        page[next_message..].starts_with(&format!(
            "<li id=\"m-{}\" data-seq=\"{first_sent}\"",
            messages
                .iter()
                .chain(app.api_messages(chat).await.iter())
                .find(|m| m["seq"] == first_sent)
                .unwrap()["id"]
                .as_str()
                .unwrap()
        )),
        "{}",
        &page[line..next_message + 80]
    );
    let n = context["left_out"].as_u64().unwrap();
    assert!(
        page[line..next_message].contains(&format!(
            "{n} messages above this line no longer reach the model"
        )),
        "{}",
        &page[line..next_message]
    );
    let gauge = gauge_of(&page);
    assert!(gauge.contains("class=\"context-gauge full\""), "{gauge}");
    assert!(
        gauge.contains(&format!(" · {n} messages left out")),
        "{gauge}"
    );
    assert!(
        gauge.contains(&format!("data-first-sent-seq=\"{first_sent}\"")),
        "{gauge}"
    );
}

#[tokio::test]
async fn a_message_that_cannot_fit_is_refused_before_anything_is_stored_or_asked() {
    let app = TestApp::spawn_with(|c| {
        c.lm_context_tokens = Some(400);
        c.lm_max_tokens = 16;
    })
    .await;
    let chat = app.create_chat(&app.client, "hello").await;
    let last_reply = app.send_and_wait(&app.client, chat, "a question").await;
    let messages = app.count("messages").await;
    let asked = app.fake_lm.log(|log| log.request_count);
    // 384 tokens for the system prompt and the message: about 1,671 do not fit.
    let huge = "word ".repeat(1000);
    let path = format!("/chats/{chat}/messages");

    // Without JavaScript: a page saying so.
    let response = app.post(&path, &[("content", &huge)]).await;
    assert_eq!(response.status(), 413);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("Your message is too long for the model&#x27;s context (about 1671 tokens"),
        "{body}"
    );
    // htmx: the same words in the flash; the composer keeps the text (nothing is swapped).
    let response = app.post_htmx(&path, &[("content", &huge)]).await;
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["hx-retarget"], "#flash");
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("too long for the model")
    );
    // The API: problem details.
    let response = app
        .client
        .post(app.url(&format!("/api/v1/chats/{chat}/messages")))
        .json(&serde_json::json!({ "content": huge }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let problem: Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("too long for the model's context"),
        "{problem}"
    );
    // Edit and resend, and a new chat's first message, likewise.
    let edited = app
        .api_messages(chat)
        .await
        .into_iter()
        .rfind(|m| m["role"] == "user")
        .unwrap();
    let edit = format!(
        "/chats/{chat}/messages/{}/edit",
        edited["id"].as_str().unwrap()
    );
    assert_eq!(app.post(&edit, &[("content", &huge)]).await.status(), 413);
    let chats = app.count("chats").await;
    assert_eq!(
        app.post("/chats", &[("content", &huge)]).await.status(),
        413
    );
    assert_eq!(app.count("chats").await, chats, "no chat was created");

    // Nothing was stored and the model was not asked.
    assert_eq!(app.count("messages").await, messages);
    assert_eq!(app.fake_lm.log(|log| log.request_count), asked);
    assert!(!app.store_message(last_reply).await.superseded);

    // A message that fits still goes (with as much history as fits).
    let reply = app
        .send_and_wait(&app.client, chat, &"word ".repeat(200))
        .await;
    assert_eq!(
        app.store_message(reply).await.status,
        app::store::Status::Complete
    );
}
