//! The chat page cache (issue 16): a page served again is the same page, and after any write
//! (through the pages, through the API, by the generation task, or straight to the database as
//! another replica would) the next view shows it. Never a stale page.
use std::time::Duration;

use app::store::message;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use testkit::Knobs;
use uuid::Uuid;

use crate::helpers::{TestApp, browser, test_config};

async fn page(app: &TestApp, client: &reqwest::Client, chat: Uuid) -> String {
    let response = client
        .get(app.url(&format!("/chats/{chat}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Views the page twice (the second from the cache when nothing changed) and returns it.
async fn viewed(app: &TestApp, client: &reqwest::Client, chat: Uuid) -> String {
    let first = page(app, client, chat).await;
    let second = page(app, client, chat).await;
    assert_eq!(first, second, "a page viewed twice with no write between");
    first
}

async fn post_ok(client: &reqwest::Client, url: String, form: &[(&str, &str)]) {
    let response = client.post(url).form(form).send().await.unwrap();
    assert!(
        response.status().is_redirection() || response.status().is_success(),
        "POST answered {}",
        response.status()
    );
}

#[tokio::test]
async fn every_write_shows_on_the_next_view_of_a_cached_page() {
    let app = TestApp::spawn().await;
    let client = &app.client;
    let chat = app.create_chat(client, "first question").await;
    let before = viewed(&app, client, chat).await;
    assert!(before.contains("first question"));
    assert!(app.state.pages.bytes() > 0, "the page was kept");

    // A message and its reply, written by the send and then by the generation task.
    app.fake_lm
        .set(|k| k.tokens = vec!["the ".into(), "answer".into()]);
    app.send_and_wait(client, chat, "second question").await;
    let page_now = viewed(&app, client, chat).await;
    assert!(page_now.contains("second question") && page_now.contains("the answer"));

    // The title, the settings, the display name.
    post_ok(
        client,
        app.url(&format!("/chats/{chat}/rename")),
        &[("title", "Renamed chat")],
    )
    .await;
    assert!(viewed(&app, client, chat).await.contains("Renamed chat"));
    post_ok(
        client,
        app.url(&format!("/chats/{chat}/settings")),
        &[
            ("system_prompt", "Answer like a pirate"),
            ("temperature", ""),
            ("max_tokens", ""),
            ("model", ""),
        ],
    )
    .await;
    assert!(
        viewed(&app, client, chat)
            .await
            .contains("Answer like a pirate")
    );
    post_ok(
        client,
        app.url("/profile"),
        &[("display_name", "Ada Lovelace")],
    )
    .await;
    assert!(viewed(&app, client, chat).await.contains("Ada Lovelace"));

    // Another chat of the session appears in the sidebar, and goes when it is deleted.
    let other = app.create_chat(client, "").await;
    post_ok(
        client,
        app.url(&format!("/chats/{other}/rename")),
        &[("title", "Sidebar newcomer")],
    )
    .await;
    assert!(
        viewed(&app, client, chat)
            .await
            .contains("Sidebar newcomer")
    );
    post_ok(client, app.url(&format!("/chats/{other}/delete")), &[]).await;
    assert!(
        !viewed(&app, client, chat)
            .await
            .contains("Sidebar newcomer")
    );

    // An edit of the last message, and its new reply.
    let last_user = last_user_message(&app, chat).await;
    app.fake_lm
        .set(|k| k.tokens = vec!["edited ".into(), "reply".into()]);
    post_ok(
        client,
        app.url(&format!("/chats/{chat}/messages/{}/edit", last_user.id)),
        &[("content", "second question, edited")],
    )
    .await;
    wait_for_no_streaming(&app, chat).await;
    let page_now = viewed(&app, client, chat).await;
    assert!(page_now.contains("second question, edited") && page_now.contains("edited reply"));

    // Back to the version before the edit: a path's change shows at once.
    post_ok(
        client,
        app.url(&format!("/chats/{chat}/messages/{}/select", last_user.id)),
        &[],
    )
    .await;
    let page_now = viewed(&app, client, chat).await;
    assert!(!page_now.contains("second question, edited"), "{page_now}");
    let edited = message::Entity::find()
        .filter(message::Column::Content.eq("second question, edited"))
        .one(app.store.connection())
        .await
        .unwrap()
        .unwrap();
    post_ok(
        client,
        app.url(&format!("/chats/{chat}/messages/{}/select", edited.id)),
        &[],
    )
    .await;
    assert!(
        viewed(&app, client, chat)
            .await
            .contains("second question, edited")
    );

    // A write no code path of this replica made: another replica's, or an operator's.
    // (sea-orm's statement, not the store's: no function of the app's runs.)
    let edited = last_user_message(&app, chat).await;
    let updated = message::Entity::update_many()
        .col_expr(
            message::Column::Content,
            sea_orm::sea_query::Expr::value("changed behind the app's back"),
        )
        .filter(message::Column::Id.eq(edited.id))
        .exec(app.store.connection())
        .await
        .unwrap();
    assert_eq!(updated.rows_affected, 1);
    assert!(
        viewed(&app, client, chat)
            .await
            .contains("changed behind the app"),
        "a write straight to the database shows"
    );

    // Another session's page of its own chat is its own, never this one's.
    let stranger = browser();
    let response = stranger
        .get(app.url(&format!("/chats/{chat}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_page_with_a_reply_being_written_follows_its_checkpoints_and_its_end() {
    let app = TestApp::spawn_with(|c| c.checkpoint_interval = Duration::from_millis(100)).await;
    let client = &app.client;
    let chat = app.create_chat(client, "").await;
    app.fake_lm.set(|k| {
        *k = Knobs {
            tokens: (0..40).map(|i| format!("w{i} ")).collect(),
            token_delay: Duration::from_millis(25),
            ..Knobs::default()
        }
    });
    let reply = app.send(client, chat, "write slowly").await;
    // While it is written, each view shows at least what the last one did, and more over time.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(page(&app, client, chat).await.matches(" w").count());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert!(seen.last() > seen.first(), "checkpoints show: {seen:?}");
    app.finished(reply).await;
    let done = viewed(&app, client, chat).await;
    assert!(done.contains("w39"), "the finished reply shows in full");
    assert!(!done.contains("status-streaming"));
}

#[tokio::test]
async fn a_replica_sees_what_another_replica_wrote() {
    // Two app states on one database: the first keeps the page; the second writes.
    let first = TestApp::spawn().await;
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = test_config(data_dir.path()).await;
    config.database_url = first.config.database_url.clone();
    config.session_key = Some(first_session_key(&first));
    config.replica_name = Some("second".into());
    config.lm_api_url = Some(first.fake_lm.url());
    let second = TestApp::start(config, data_dir).await;
    // One browser, one session, both replicas (as behind a balancer).
    let client = &first.client;
    let chat = first.create_chat(client, "asked on the first").await;
    assert!(
        viewed(&first, client, chat)
            .await
            .contains("asked on the first")
    );
    // The same cookie jar against the second replica (cookies do not name a port).
    let reply = second.send(client, chat, "asked on the second").await;
    second.finished(reply).await;
    let page_now = viewed(&first, client, chat).await;
    assert!(
        page_now.contains("asked on the second"),
        "the first replica shows the second's write"
    );
    first.stop().await;
    second.stop().await;
}

fn first_session_key(app: &TestApp) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(app.state.sessions.key.master())
}

async fn last_user_message(app: &TestApp, chat: Uuid) -> message::Model {
    use sea_orm::QueryOrder;
    message::Entity::find()
        .filter(message::Column::ChatId.eq(chat))
        .filter(message::Column::Role.eq(app::store::Role::User))
        .order_by_desc(message::Column::Seq)
        .one(app.store.connection())
        .await
        .unwrap()
        .unwrap()
}

async fn wait_for_no_streaming(app: &TestApp, chat: Uuid) {
    for _ in 0..200 {
        let streaming = message::Entity::find()
            .filter(message::Column::ChatId.eq(chat))
            .filter(message::Column::Status.eq(app::store::Status::Streaming))
            .all(app.store.connection())
            .await
            .unwrap();
        if streaming.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("a reply is still being written");
}
