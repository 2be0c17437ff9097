//! Versions in place: an edited message and a regenerated reply are versions of one message,
//! shown as `‹ 2/3 ›`; choosing one makes its branch the chat's path (what the page shows and
//! what the next prompt sends). Pages with and without htmx, the JSON API, export and import,
//! and the migration that reads older history as a tree.
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Statement};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, browser, post_form, reply_id};
use app::store::{Role, message};

async fn rows(app: &TestApp, chat: Uuid) -> Vec<message::Model> {
    message::Entity::find()
        .filter(message::Column::ChatId.eq(chat))
        .order_by_asc(message::Column::Seq)
        .all(app.store.connection())
        .await
        .unwrap()
}

/// The contents of the chat's path after its greeting, in order.
async fn path(app: &TestApp, chat: Uuid) -> Vec<String> {
    rows(app, chat)
        .await
        .into_iter()
        .filter(|m| !m.superseded)
        .skip(1)
        .map(|m| m.content)
        .collect()
}

/// The chat's messages after its greeting (every version), in order.
async fn after_greeting(app: &TestApp, chat: Uuid) -> Vec<message::Model> {
    let mut all = rows(app, chat).await;
    assert_eq!(all[0].seq, 1, "the greeting");
    all.remove(0);
    all
}

async fn page(app: &TestApp, chat: Uuid) -> String {
    let response = app.get(&format!("/chats/{chat}")).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The contents of the latest prompt the model was sent (the system prompt and the greeting
/// left out).
fn last_prompt(app: &TestApp) -> Vec<String> {
    app.fake_lm.log(|l| {
        l.requests.back().unwrap()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] != "system")
            .skip(1)
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    })
}

fn select(chat: Uuid, message: Uuid) -> String {
    format!("/chats/{chat}/messages/{message}/select")
}

/// The `‹ n/m ›` of one message on a page, as a screen reader reads it ("2 of 3 versions").
fn versions_shown(page: &str, message: Uuid) -> Option<String> {
    let start = page.find(&format!("id=\"m-{message}\""))?;
    let rest = &page[start..];
    let end = rest[1..].find("<li id=\"m-").map_or(rest.len(), |i| i + 1);
    let number = rest[..end].split("class=\"version-number\">").nth(1)?;
    let number = number.split("</span>\n").next()?;
    // Its text without the tags, and without the "/" that is for the eye only.
    let mut text = String::new();
    let mut in_tag = false;
    for c in number
        .replace("<span aria-hidden=\"true\">/</span>", "")
        .chars()
    {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text)
}

#[tokio::test]
async fn edits_and_regenerations_are_versions_in_place_and_choosing_one_sets_the_path() {
    let app = TestApp::spawn().await;
    app.fake_lm.set(|k| k.tokens = vec!["answer one".into()]);
    let chat = app.create_chat(&app.client, "Q1").await;
    let a1 = after_greeting(&app, chat).await[1].id;
    app.fake_lm.set(|k| k.tokens = vec!["answer two".into()]);
    let b1 = app.send_and_wait(&app.client, chat, "Q2").await;
    let q2 = after_greeting(&app, chat).await[2].id;

    // Regenerate (htmx): the new reply takes the old one's place; the old one is a version.
    app.fake_lm
        .set(|k| k.tokens = vec!["answer two, again".into()]);
    let response = app
        .post_htmx(&format!("/chats/{chat}/regenerate"), &[])
        .await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    let b2: Uuid = fragment.split("id=\"m-").nth(1).unwrap()[..36]
        .parse()
        .unwrap();
    assert_eq!(fragment.matches("id=\"m-").count(), 1, "{fragment}");
    app.finished(b2).await;
    assert_eq!(
        path(&app, chat).await,
        ["Q1", "answer one", "Q2", "answer two, again"]
    );
    let shown = page(&app, chat).await;
    assert!(
        !shown.contains(">answer two<"),
        "the old reply is not shown"
    );
    assert_eq!(
        versions_shown(&shown, b2).as_deref(),
        Some("2 of 2 versions")
    );
    assert!(shown.contains(&format!("formaction=\"{}\"", select(chat, b1))));
    assert!(
        shown.contains("aria-label=\"Next version\" title=\"Next version\" disabled"),
        "the newest has no next: {shown}"
    );
    assert_eq!(versions_shown(&shown, q2), None, "Q2 has one version");

    // Edit an earlier message (no JavaScript): a new version of Q1, and a reply to it, alone.
    app.fake_lm
        .set(|k| k.tokens = vec!["answer one, edited".into()]);
    let response = app
        .post(
            &format!(
                "/chats/{chat}/messages/{}/edit",
                after_greeting(&app, chat).await[0].id
            ),
            &[("content", "Q1, edited")],
        )
        .await;
    assert_eq!(response.status(), 303);
    let a1_edited = reply_id(&response);
    app.finished(a1_edited).await;
    assert_eq!(path(&app, chat).await, ["Q1, edited", "answer one, edited"]);
    assert_eq!(
        last_prompt(&app),
        ["Q1, edited"],
        "the prompt is the new path"
    );
    let q1_edited = app.store_message(a1_edited).await.parent_id.unwrap();
    let shown = page(&app, chat).await;
    assert_eq!(
        versions_shown(&shown, q1_edited).as_deref(),
        Some("2 of 2 versions")
    );
    assert!(
        !shown.contains("Q2"),
        "what followed the other version is not shown"
    );

    // Back to the first version (no JavaScript): its branch returns whole, with the newest
    // reply at each step.
    let q1 = after_greeting(&app, chat).await[0].id;
    let response = app.post(&select(chat, q1), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        format!("/chats/{chat}#m-{q1}").as_str()
    );
    assert_eq!(
        path(&app, chat).await,
        ["Q1", "answer one", "Q2", "answer two, again"]
    );
    let shown = page(&app, chat).await;
    assert_eq!(
        versions_shown(&shown, q1).as_deref(),
        Some("1 of 2 versions")
    );
    assert!(shown.contains(&format!("formaction=\"{}\"", select(chat, q1_edited))));

    // The older reply (htmx): the messages come back along the new path.
    let response = app.post_htmx(&select(chat, b1), &[]).await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(fragment.contains(">answer two<") && !fragment.contains("answer two, again"));
    assert_eq!(
        versions_shown(&fragment, b1).as_deref(),
        Some("1 of 2 versions")
    );

    // The next message follows the chosen path, and so does its prompt.
    app.fake_lm.set(|k| k.tokens = vec!["answer three".into()]);
    app.send_and_wait(&app.client, chat, "Q3").await;
    assert_eq!(
        last_prompt(&app),
        ["Q1", "answer one", "Q2", "answer two", "Q3"]
    );
    let q3 = after_greeting(&app, chat)
        .await
        .into_iter()
        .find(|m| m.content == "Q3")
        .unwrap();
    assert_eq!(q3.parent_id, Some(b1));

    // Nothing was ever deleted: the greeting and nine messages, every version.
    let all = rows(&app, chat).await;
    assert_eq!(all.len(), 10);
    assert!(all.iter().any(|m| m.id == a1));
}

#[tokio::test]
async fn choosing_a_version_is_refused_while_a_reply_is_written_and_across_sessions() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "first").await;
    let first_reply = after_greeting(&app, chat).await[1].id;
    let response = app.post(&format!("/chats/{chat}/regenerate"), &[]).await;
    app.finished(reply_id(&response)).await;
    let before = after_greeting(&app, chat).await;

    // Another session sees no such message, by the page or the API.
    let stranger = browser();
    let response = post_form(&stranger, &app.url(&select(chat, first_reply)), &[], false).await;
    assert_eq!(response.status(), 404);
    let response = stranger
        .post(app.url(&format!("/api/v1/messages/{first_reply}/select")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    // A message of another chat, named under this one; an id that is nobody's.
    let other = app.create_chat(&app.client, "other").await;
    let response = app.post(&select(other, first_reply), &[]).await;
    assert_eq!(response.status(), 404);
    let response = app.post(&select(chat, Uuid::now_v7()), &[]).await;
    assert_eq!(response.status(), 404);
    let response = app
        .post(&format!("/chats/{chat}/messages/nonsense/select"), &[])
        .await;
    assert_eq!(response.status(), 404);

    // While a reply is being written the path stays.
    app.fake_lm
        .set(|k| k.token_delay = Duration::from_millis(30));
    let writing = app.send(&app.client, chat, "slowly").await;
    let response = app.post_htmx(&select(chat, first_reply), &[]).await;
    assert_eq!(response.status(), 409);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("still being written")
    );
    app.finished(writing).await;
    let after = after_greeting(&app, chat).await;
    assert_eq!(
        after[..before.len()]
            .iter()
            .map(|m| m.superseded)
            .collect::<Vec<_>>(),
        before.iter().map(|m| m.superseded).collect::<Vec<_>>(),
        "refusals change nothing"
    );
}

#[tokio::test]
async fn edits_are_refused_for_replies_other_versions_blank_text_and_strangers() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "first").await;
    let reply = app.send_and_wait(&app.client, chat, "second").await;
    let all = after_greeting(&app, chat).await;
    let second = all[2].id;
    let edit = |id: Uuid| format!("/chats/{chat}/messages/{id}/edit");
    let status = |response: reqwest::Response| response.status().as_u16();
    assert_eq!(
        status(app.post(&edit(reply), &[("content", "x")]).await),
        409
    );
    assert_eq!(
        status(app.post_htmx(&edit(second), &[("content", "  ")]).await),
        422
    );
    assert_eq!(
        status(app.post(&edit(Uuid::now_v7()), &[("content", "x")]).await),
        404
    );
    let stranger = browser();
    let response = post_form(
        &stranger,
        &app.url(&edit(second)),
        &[("content", "x")],
        false,
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        after_greeting(&app, chat).await,
        all,
        "refused edits change nothing"
    );

    // A version off the path is not on the page, and cannot be edited until it is chosen.
    let response = app
        .post(&edit(second), &[("content", "second, edited")])
        .await;
    app.finished(reply_id(&response)).await;
    let response = app.post_htmx(&edit(second), &[("content", "again")]).await;
    assert_eq!(response.status(), 409);
    assert!(response.text().await.unwrap().contains("versions shown"));
    // Every message of yours on the path offers Edit.
    let shown = page(&app, chat).await;
    assert_eq!(shown.matches("class=\"edit-link\"").count(), 2, "{shown}");
}

#[tokio::test]
async fn the_api_lists_versions_and_selects_one() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "question").await;
    let first = after_greeting(&app, chat).await[1].id;
    let response = app.post(&format!("/chats/{chat}/regenerate"), &[]).await;
    let second = reply_id(&response);
    app.finished(second).await;

    let listed = app.api_messages(chat).await;
    assert_eq!(
        listed.len(),
        3,
        "the greeting and the path only: {listed:?}"
    );
    assert_eq!(listed[2]["id"], json!(second));
    assert_eq!(listed[2]["versions"], json!([first, second]));
    assert_eq!(listed[2]["parent_id"], listed[1]["id"]);
    assert_eq!(
        listed[1]["parent_id"], listed[0]["id"],
        "the question follows the greeting"
    );
    assert!(
        listed[1].get("versions").is_none(),
        "one version lists none"
    );
    assert_eq!(listed[0]["parent_id"], Value::Null);

    // The reply's stream ends with it, its versions included.
    let done = app
        .client
        .get(app.url(&format!("/api/v1/messages/{second}/stream")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        done.contains(&format!("\"versions\":[\"{first}\",\"{second}\"]")),
        "{done}"
    );

    let response = app
        .client
        .post(app.url(&format!("/api/v1/messages/{first}/select")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3);
    assert_eq!(messages[2]["id"], json!(first));
    assert_eq!(messages[2]["superseded"], false);
    assert_eq!(app.api_messages(chat).await[2]["id"], json!(first));
    assert!(
        app.store_message(second).await.superseded,
        "kept, off the path"
    );
}

#[tokio::test]
async fn an_export_without_parents_imports_as_the_line_it_was() {
    let app = TestApp::spawn().await;
    // As exported before versions: an edited question (superseded) with its reply, the edit,
    // and two replies to the edit (a regeneration).
    let export = json!({
        "format": "chat-export", "version": 1, "title": "Old",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "old", "superseded": true},
            {"role": "assistant", "content": "old answer", "superseded": true},
            {"role": "user", "content": "new"},
            {"role": "assistant", "content": "new answer"},
            {"role": "assistant", "content": "new answer, again"},
        ]
    });
    let response = app
        .client
        .post(app.url("/api/v1/chats/import"))
        .json(&export)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let chat: Uuid = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let on_path: Vec<String> = rows(&app, chat)
        .await
        .into_iter()
        .filter(|m| !m.superseded)
        .map(|m| m.content)
        .collect();
    assert_eq!(
        on_path,
        ["q", "a", "new", "new answer, again"],
        "no greeting in an import"
    );
    let listed = app.api_messages(chat).await;
    assert_eq!(listed.len(), 4);
    assert_eq!(
        listed[2]["versions"].as_array().unwrap().len(),
        2,
        "old and new"
    );
    assert_eq!(
        listed[3]["versions"].as_array().unwrap().len(),
        2,
        "two replies"
    );

    // A parent that is not an earlier message is refused, saying which message.
    let bad = json!({
        "format": "chat-export", "version": 1, "title": "Bad",
        "messages": [
            {"role": "user", "content": "q", "id": Uuid::now_v7()},
            {"role": "assistant", "content": "a", "parent_id": Uuid::now_v7()},
        ]
    });
    let response = app
        .client
        .post(app.url("/api/v1/chats/import"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Message 2: its parent_id")
    );
}

/// Migration 12 reads history written before it (a line, edits marked superseded, several
/// replies to one message) as the tree it was.
#[tokio::test]
async fn the_migration_reads_older_history_as_a_tree() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let db = sea_orm::Database::connect(url).await.unwrap();
    // Every migration before the versions' one (m20261207_000012_message_versions).
    let before_versions = Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261207_000012_message_versions")
        .expect("the versions migration") as u32;
    Migrator::up(&db, Some(before_versions)).await.unwrap();
    let chat = Uuid::now_v7();
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        match backend {
            sea_orm::DbBackend::Postgres => "INSERT INTO chats (id, session_id, title, created_at, updated_at) VALUES ($1, 's', 't', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            _ => "INSERT INTO chats (id, session_id, title, created_at, updated_at) VALUES (?, 's', 't', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        },
        [chat.into()],
    ))
    .await
    .unwrap();
    // seq, role, superseded
    let line = [
        (1, "user", false),
        (2, "assistant", false),
        (3, "user", true),
        (4, "assistant", true),
        (5, "user", false),
        (6, "assistant", false),
        (7, "assistant", false),
        (8, "user", false),
        (9, "assistant", false),
    ];
    let mut ids = Vec::new();
    for (seq, role, superseded) in line {
        let id = Uuid::now_v7();
        ids.push(id);
        let sql = match backend {
            sea_orm::DbBackend::Postgres => {
                "INSERT INTO messages (id, chat_id, session_id, seq, role, content, status, superseded, created_at, updated_at) VALUES ($1, $2, 's', $3, $4, 'x', 'complete', $5, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            }
            _ => {
                "INSERT INTO messages (id, chat_id, session_id, seq, role, content, status, superseded, created_at, updated_at) VALUES (?, ?, 's', ?, ?, 'x', 'complete', ?, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            }
        };
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                id.into(),
                chat.into(),
                i64::from(seq).into(),
                role.into(),
                superseded.into(),
            ],
        ))
        .await
        .unwrap();
    }
    Migrator::up(&db, None).await.unwrap();
    let migrated = message::Entity::find()
        .filter(message::Column::ChatId.eq(chat))
        .order_by_asc(message::Column::Seq)
        .all(&db)
        .await
        .unwrap();
    let parent = |m: &message::Model| {
        m.parent_id
            .map(|p| ids.iter().position(|id| *id == p).unwrap() + 1)
    };
    let tree: Vec<(Option<usize>, bool)> =
        migrated.iter().map(|m| (parent(m), m.superseded)).collect();
    assert_eq!(
        tree,
        [
            (None, false),
            (Some(1), false),
            (Some(2), true), // the edited-away question follows the first answer
            (Some(3), true),
            (Some(2), false), // its edit follows the same answer: a version of it
            (Some(5), true),  // the earlier of two replies leaves the path
            (Some(5), false),
            (Some(7), false), // the next question follows the reply the prompt used
            (Some(8), false),
        ]
    );
    assert_eq!(migrated[0].role, Role::User);
}

/// The edit form is fetched when Edit is chosen, so a long chat's page carries no copy of each
/// message; without JavaScript the page opens with it.
#[tokio::test]
async fn the_edit_form_comes_when_asked_for_with_or_without_javascript() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "a <first> message").await;
    let all = after_greeting(&app, chat).await;
    let (mine, reply) = (all[0].id, all[1].id);
    let form_url = format!("/chats/{chat}/messages/{mine}/edit");
    let shown = page(&app, chat).await;
    assert!(
        !shown.contains("<textarea id=\"edit-"),
        "no form until asked for"
    );
    assert!(shown.contains(&format!("href=\"/chats/{chat}?edit={mine}#m-{mine}\"")));

    // htmx: the form, prefilled (escaped), posting the edit.
    let response = crate::helpers::get_htmx(&app.client, &app.url(&form_url)).await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(
        fragment.contains(">a &lt;first&gt; message</textarea>"),
        "{fragment}"
    );
    assert!(fragment.contains(&format!("hx-post=\"{form_url}\"")));

    // Without JavaScript: to the chat page, opened with the form at the message.
    let response = app.get(&form_url).await;
    assert_eq!(response.status(), 303);
    let to = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(to, format!("/chats/{chat}?edit={mine}#m-{mine}"));
    let opened = app.get(&to).await.text().await.unwrap();
    assert_eq!(
        opened.matches("<textarea id=\"edit-").count(),
        1,
        "{opened}"
    );
    assert!(opened.contains(&format!("action=\"{form_url}\"")));
    // A page opened with a form is not the cached page: the plain one has none.
    assert!(!page(&app, chat).await.contains("<textarea id=\"edit-"));
    // Nonsense in `edit` opens the page as usual.
    let plain = app.get(&format!("/chats/{chat}?edit=nonsense")).await;
    assert_eq!(plain.status(), 200);

    // A reply has no edit form; another session sees no message.
    let response = crate::helpers::get_htmx(
        &app.client,
        &app.url(&format!("/chats/{chat}/messages/{reply}/edit")),
    )
    .await;
    assert_eq!(response.status(), 409);
    let response = browser().get(app.url(&form_url)).send().await.unwrap();
    assert_eq!(response.status(), 404);
}
