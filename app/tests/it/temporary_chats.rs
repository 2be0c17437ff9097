//! Temporary chats: not listed anywhere, never found by search, their page says so, and they
//! are deleted with everything in them once `TEMPORARY_CHAT_TTL` has passed since their last use.
use std::time::Duration;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, post_form};

/// Starts a chat through the home page's form, temporary or not, with a first message.
async fn start(app: &TestApp, content: &str, temporary: bool) -> Uuid {
    let mut form = vec![("content", content)];
    if temporary {
        form.push(("temporary", "true"));
    }
    let response = post_form(&app.client, &app.url("/chats"), &form, false).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = location
        .trim_start_matches("/chats/")
        .split('#')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    finish_replies(app, id).await;
    id
}

/// Waits for the chat's replies to end.
async fn finish_replies(app: &TestApp, chat: Uuid) {
    let replies = app::store::message::Entity::find()
        .filter(app::store::message::Column::ChatId.eq(chat))
        .filter(app::store::message::Column::Role.eq(app::store::Role::Assistant))
        .all(app.store.connection())
        .await
        .unwrap();
    for reply in replies {
        app.finished(reply.id).await;
    }
}

async fn body(app: &TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn a_temporary_chat_is_listed_nowhere_and_never_found_but_its_page_says_so() {
    let app = TestApp::spawn().await;
    let kept = start(&app, "keep this about zebras", false).await;
    let temporary = start(&app, "forget this about zebras", true).await;

    let page = body(&app, &format!("/chats/{temporary}")).await;
    assert!(page.contains("Temporary chat."), "{page}");
    assert!(page.contains("24 hours after its last use"), "{page}");
    assert!(
        !body(&app, &format!("/chats/{kept}"))
            .await
            .contains("Temporary chat.")
    );

    // The sidebar, the chats page, search (titles and messages), and the API list.
    for path in ["/", "/chats", "/search?q=zebras", &format!("/chats/{kept}")] {
        let page = body(&app, path).await;
        assert!(!page.contains(&temporary.to_string()), "{path} lists it");
    }
    assert!(
        body(&app, "/search?q=zebras")
            .await
            .contains(&kept.to_string())
    );
    let listed: Value = app
        .client
        .get(app.url("/api/v1/chats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = listed["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [kept.to_string()]);
    // Still the visitor's own: it opens, and says what it is in the API too.
    let chat: Value = app
        .client
        .get(app.url(&format!("/api/v1/chats/{temporary}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chat["chat"]["temporary"], true);
}

#[tokio::test]
async fn the_api_creates_temporary_chats() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .post(app.url("/api/v1/chats"))
        .header("origin", &app.base)
        .json(&json!({"temporary": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let chat: Value = response.json().await.unwrap();
    assert_eq!(chat["temporary"], true);
    let response = app
        .client
        .post(app.url("/api/v1/chats"))
        .header("origin", &app.base)
        .json(&json!({"temporary": "yes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "not a boolean");
    let listed: Value = app
        .client
        .get(app.url("/api/v1/chats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["chats"], json!([]));
}

#[tokio::test]
async fn an_unused_temporary_chat_is_deleted_with_everything_in_it() {
    let app = TestApp::spawn_with(|c| c.temporary_chat_ttl = Duration::from_millis(400)).await;
    let kept = start(&app, "a chat to keep", false).await;
    let temporary = start(&app, "a chat to forget", true).await;
    let in_use = start(&app, "a temporary chat still in use", true).await;
    let messages_of = |chat: Uuid| {
        let app = &app;
        async move {
            app::store::message::Entity::find()
                .filter(app::store::message::Column::ChatId.eq(chat))
                .all(app.store.connection())
                .await
                .unwrap()
                .len()
        }
    };
    assert!(messages_of(temporary).await > 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A message is a use: this one stays.
    app.send(&app.client, in_use, "still here").await;
    finish_replies(&app, in_use).await;
    let deleted = app::chat::delete_unused_temporary_chats(&app.state)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(app.get(&format!("/chats/{temporary}")).await.status(), 404);
    assert_eq!(messages_of(temporary).await, 0, "its messages went with it");
    assert_eq!(app.get(&format!("/chats/{in_use}")).await.status(), 200);
    assert_eq!(app.get(&format!("/chats/{kept}")).await.status(), 200);
    // A kept chat is never swept, however old.
    tokio::time::sleep(Duration::from_millis(500)).await;
    app::chat::delete_unused_temporary_chats(&app.state)
        .await
        .unwrap();
    assert_eq!(app.get(&format!("/chats/{kept}")).await.status(), 200);
    assert_eq!(app.get(&format!("/chats/{in_use}")).await.status(), 404);
}
