//! Issue 17, item 4: a chat shared by link. A read-only snapshot at `/s/{token}` that anyone
//! can open without a cookie (and gets none), nothing of the session shown, not for search
//! engines; the chat page lists its links and revokes them; a revoked link is not found.
use serde_json::Value;

use crate::helpers::{TestApp, hrefs, post_form};

/// A client with no cookies at all, following nothing.
fn stranger() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `/s/...` paths a page lists, in order.
fn links_in(html: &str) -> Vec<String> {
    hrefs(html, "share-link")
}

#[tokio::test]
async fn a_link_shows_the_chat_as_it_was_to_anyone_until_it_is_revoked() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| {
        k.tokens = vec![
            "Here is **bold** ".into(),
            "<script>alert(1)</script> ".into(),
            "and code:\n\n```rust\nfn main() {}\n```\n".into(),
        ]
    });
    app.post("/profile", &[("display_name", "Secret Name")])
        .await;
    let chat = app.create_chat(&app.client, "Tell me a <b>thing</b>").await;
    app.post(
        &format!("/chats/{chat}/rename"),
        &[("title", "Shared chat title")],
    )
    .await;
    let other = app.create_chat(&app.client, "Another private chat").await;

    // Without JavaScript: a 303 back to the chat's links, which now list one (the page kept
    // before it is not served again: a link's row raises the session's version).
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("id=\"shares\"") && links_in(&page).is_empty());
    let response = app.post(&format!("/chats/{chat}/share"), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/chats/{chat}#shares")
    );
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    let links = links_in(&page);
    assert_eq!(links.len(), 1, "{page}");
    let link = &links[0];
    let token = link.trim_start_matches("/s/");
    assert_eq!(token.len(), 43, "{token}");

    // Anyone: no cookie sent, none set, the chat as it was, nothing else of the session.
    let response = stranger().get(app.url(link)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("set-cookie").is_none());
    assert_eq!(response.headers()["x-robots-tag"], "noindex, nofollow");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let shared = response.text().await.unwrap();
    assert!(shared.contains("<meta name=\"robots\" content=\"noindex, nofollow\">"));
    assert!(shared.contains("<h1>Shared chat title</h1>"), "{shared}");
    assert!(
        shared.contains("Tell me a &lt;b&gt;thing&lt;/b&gt;"),
        "{shared}"
    );
    assert!(shared.contains("<strong>bold</strong>"), "{shared}");
    assert!(!shared.contains("<script>alert"), "raw HTML is never run");
    assert!(
        shared.contains("class=\"hl-"),
        "code is highlighted as on the chat page"
    );
    for private in [
        "Secret Name",
        "Another private chat",
        &other.to_string(),
        &chat.to_string(),
        "class=\"sidebar\"",
        "<form",
        "sse-connect",
    ] {
        assert!(!shared.contains(private), "{private} is on the shared page");
    }

    // A snapshot: what is written later is not shown.
    app.send_and_wait(&app.client, chat, "A later question")
        .await;
    let shared = stranger()
        .get(app.url(link))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!shared.contains("A later question"));

    // htmx: a second link, the list comes back unfolded, newest first.
    let response = app.post_htmx(&format!("/chats/{chat}/share"), &[]).await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(
        fragment
            .trim_start()
            .starts_with("<details id=\"shares\" class=\"shares\" open>")
    );
    let both = links_in(&fragment);
    assert_eq!(both.len(), 2);
    assert_eq!(&both[1], link, "newest first");
    let newer = stranger().get(app.url(&both[0])).send().await.unwrap();
    assert!(newer.text().await.unwrap().contains("A later question"));

    // Another session can neither revoke nor list them.
    let intruder = crate::helpers::browser();
    let response = post_form(
        &intruder,
        &app.url(&format!("/chats/{chat}/share/revoke")),
        &[("token", token)],
        false,
    )
    .await;
    assert_eq!(response.status(), 404);
    let response = intruder
        .delete(app.url(&format!("/api/v1/shares/{token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = intruder
        .get(app.url(&format!("/api/v1/chats/{chat}/shares")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        stranger().get(app.url(link)).send().await.unwrap().status(),
        200
    );

    // Revoked: not found at once, for everyone; the other link still works.
    let response = app
        .post_htmx(&format!("/chats/{chat}/share/revoke"), &[("token", token)])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        links_in(&response.text().await.unwrap()),
        vec![both[0].clone()]
    );
    assert_eq!(
        stranger().get(app.url(link)).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        app.post(&format!("/chats/{chat}/share/revoke"), &[("token", token)])
            .await
            .status(),
        404,
        "revoking twice"
    );
    // Unknown and malformed tokens are not found either.
    for bad in [
        "nope",
        "../../etc/passwd",
        &"A".repeat(43),
        &"A".repeat(400),
    ] {
        let response = stranger()
            .get(app.url(&format!("/s/{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{bad}");
    }

    // Deleting the chat takes its links with it.
    app.post(&format!("/chats/{chat}/delete"), &[]).await;
    assert_eq!(
        stranger()
            .get(app.url(&both[0]))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(app.count("shares").await, 0);
}

#[tokio::test]
async fn the_api_makes_lists_and_revokes_links() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "From the API").await;
    let url = app.url(&format!("/api/v1/chats/{chat}/shares"));
    let response = app.client.post(&url).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let share: Value = response.json().await.unwrap();
    let token = share["token"].as_str().unwrap();
    assert_eq!(share["url"], format!("/s/{token}"));
    assert_eq!(share["title"], "From the API");
    assert!(share["created_at"].is_string());

    let list: Value = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["shares"].as_array().unwrap().len(), 1);
    assert_eq!(list["shares"][0]["token"], token);
    let page = stranger()
        .get(app.url(share["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("From the API"));

    let revoke = app.url(&format!("/api/v1/shares/{token}"));
    let response = app.client.delete(&revoke).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let response = app.client.delete(&revoke).send().await.unwrap();
    assert_eq!(response.status(), 404);
    let list: Value = app
        .client
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["shares"], serde_json::json!([]));
    // Another session's chat, or none: not found.
    let missing = app.url(&format!("/api/v1/chats/{}/shares", uuid::Uuid::nil()));
    assert_eq!(
        app.client.post(&missing).send().await.unwrap().status(),
        404
    );
}
