//! Issue 17, item 6: pins keep chats at the top of the sidebar; folders group them there
//! (create, rename, delete, move a chat in and out). Plain forms, htmx and the API.
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// The chat ids of a sidebar section, in order: the part of `html` from `start` to the
/// section's end (`</ul>`).
fn ids_in(html: &str, start: &str) -> Vec<String> {
    let Some(at) = html.find(start) else {
        return Vec::new();
    };
    let section = &html[at..];
    let section = &section[..section.find("</ul>").unwrap_or(section.len())];
    section
        .split("id=\"chat-item-")
        .skip(1)
        .map(|rest| rest[..36].to_owned())
        .collect()
}

async fn page(app: &TestApp, path: &str) -> String {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.text().await.unwrap()
}

async fn chat_json(app: &TestApp, chat: uuid::Uuid) -> Value {
    let body: Value = app
        .get(&format!("/api/v1/chats/{chat}"))
        .await
        .json()
        .await
        .unwrap();
    body["chat"].clone()
}

#[tokio::test]
async fn pins_and_folders_arrange_the_sidebar_with_plain_forms_and_htmx() {
    let app = TestApp::spawn().await;
    let a = app.create_chat(&app.client, "Chat A").await;
    let b = app.create_chat(&app.client, "Chat B").await;
    let c = app.create_chat(&app.client, "Chat C").await;
    let (a_id, b_id, c_id) = (a.to_string(), b.to_string(), c.to_string());
    let (a_id, b_id, c_id) = (a_id.as_str(), b_id.as_str(), c_id.as_str());
    let before = page(&app, &format!("/chats/{a}")).await;
    assert_eq!(ids_in(&before, "id=\"chat-list\""), [c_id, b_id, a_id]);
    assert!(!before.contains("id=\"pinned-list\""));

    // Pin B without JavaScript: at the top, under "Pinned"; its activity time is kept.
    let updated = chat_json(&app, b).await["updated_at"].clone();
    let response = app
        .post(&format!("/chats/{b}/pin"), &[("pinned", "true")])
        .await;
    assert_eq!(response.status(), 303);
    let after = page(&app, &format!("/chats/{a}")).await;
    assert_eq!(ids_in(&after, "id=\"pinned-list\""), [b_id]);
    assert_eq!(ids_in(&after, "id=\"chat-list\""), [c_id, a_id]);
    assert_eq!(chat_json(&app, b).await["updated_at"], updated);
    assert_eq!(chat_json(&app, b).await["pinned"], true);
    let b_page = page(&app, &format!("/chats/{b}")).await;
    assert!(
        b_page.contains("name=\"pinned\" value=\"false\""),
        "offers Unpin"
    );
    assert!(b_page.contains(">Unpin</button>"));

    // Pinning with htmx answers the sidebar, and the chat's controls out of band.
    let response = app
        .post_htmx(&format!("/chats/{c}/pin"), &[("pinned", "true")])
        .await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert_eq!(
        ids_in(&fragment, "id=\"pinned-list\""),
        [c_id, b_id],
        "{fragment}"
    );
    assert_eq!(ids_in(&fragment, "id=\"chat-list\""), [a_id]);
    assert!(
        fragment.contains("class=\"chat-item current\""),
        "the chat stays marked current"
    );
    // Only the controls are out of band (a sidebar entry so marked would leave the sidebar).
    assert_eq!(fragment.matches("hx-swap-oob").count(), 1, "{fragment}");
    assert!(fragment.contains("name=\"pinned\" value=\"false\""));
    app.post(&format!("/chats/{c}/pin"), &[("pinned", "false")])
        .await;

    // A folder, made on /chats; A moved into it with htmx: the sidebar and the controls come back.
    let response = app.post("/folders", &[("name", "  Work   stuff ")]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/chats#folders");
    let listed: Value = app.get("/api/v1/folders").await.json().await.unwrap();
    assert_eq!(listed["folders"][0]["name"], "Work stuff");
    let folder = listed["folders"][0]["id"].as_str().unwrap().to_owned();
    assert!(
        page(&app, "/chats")
            .await
            .contains(&format!("id=\"folder-name-{folder}\""))
    );
    let response = app
        .post_htmx(&format!("/chats/{a}/folder"), &[("folder_id", &folder)])
        .await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    let in_folder = format!("<details class=\"folder\" id=\"folder-{folder}\" open>");
    assert!(fragment.contains(&in_folder), "{fragment}");
    assert_eq!(ids_in(&fragment, &in_folder), [a_id]);
    assert_eq!(ids_in(&fragment, "id=\"chat-list\""), [c_id]);
    assert!(fragment.contains("id=\"chat-organize\" class=\"chat-organize\" hx-swap-oob=\"true\""));
    assert!(fragment.contains(&format!(
        "<option value=\"{folder}\" selected>Work stuff</option>"
    )));
    assert_eq!(chat_json(&app, a).await["folder_id"], folder.as_str());

    // Renamed: the sidebar says so (the kept page is not served again).
    let response = app
        .post(
            &format!("/folders/{folder}/rename"),
            &[("name", "Projects")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert!(
        page(&app, &format!("/chats/{a}"))
            .await
            .contains("<span class=\"folder-name\">Projects</span>")
    );

    // Bad input is a clear error and changes nothing.
    let long_name = "x".repeat(61);
    let refusals = [
        (
            format!("/chats/{a}/pin"),
            vec![("pinned", "maybe")],
            422,
            "pinned=true",
        ),
        (
            "/folders".to_owned(),
            vec![("name", "   ")],
            422,
            "give the folder a name",
        ),
        (
            "/folders".to_owned(),
            vec![("name", long_name.as_str())],
            422,
            "at most 60",
        ),
        (
            format!("/chats/{a}/folder"),
            vec![("folder_id", "not-a-folder")],
            404,
            "not found",
        ),
        (
            format!("/chats/{a}/folder"),
            vec![("folder_id", "00000000-0000-0000-0000-000000000000")],
            404,
            "not found",
        ),
        (
            format!("/folders/{}/rename", uuid::Uuid::nil()),
            vec![("name", "x")],
            404,
            "not found",
        ),
    ];
    for (path, form, status, says) in refusals {
        let response = app.post(&path, &form).await;
        assert_eq!(response.status(), status, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.to_lowercase().contains(says), "{path}: {body}");
    }
    assert_eq!(chat_json(&app, a).await["folder_id"], folder.as_str());

    // Another session can neither use nor change the folder.
    let stranger = crate::helpers::browser();
    let theirs = app.create_chat(&stranger, "Theirs").await;
    for (path, form) in [
        (
            format!("/chats/{theirs}/folder"),
            vec![("folder_id", folder.as_str())],
        ),
        (
            format!("/folders/{folder}/rename"),
            vec![("name", "Mine now")],
        ),
        (format!("/folders/{folder}/delete"), vec![]),
        (format!("/chats/{a}/pin"), vec![("pinned", "true")]),
    ] {
        let response = crate::helpers::post_form(&stranger, &app.url(&path), &form, false).await;
        assert_eq!(response.status(), 404, "{path}");
    }

    // Deleting the folder keeps its chat, back among the others; unpinning B likewise.
    let response = app.post(&format!("/folders/{folder}/delete"), &[]).await;
    assert_eq!(response.status(), 303);
    app.post(&format!("/chats/{b}/pin"), &[("pinned", "false")])
        .await;
    let last = page(&app, &format!("/chats/{a}")).await;
    assert!(!last.contains("class=\"folder\"") && !last.contains("id=\"pinned-list\""));
    assert_eq!(ids_in(&last, "id=\"chat-list\""), [c_id, b_id, a_id]);
    assert!(chat_json(&app, a).await["folder_id"].is_null());
}

#[tokio::test]
async fn the_api_manages_folders_and_pins() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "Filed by the API").await;
    let post = |path: &str, body: Value| {
        app.client
            .post(app.url(&format!("/api/v1{path}")))
            .json(&body)
            .send()
    };
    let response = post("/folders", json!({ "name": "Reading" }))
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let folder: Value = response.json().await.unwrap();
    let id = folder["id"].as_str().unwrap();

    let put = |path: String, body: Value| {
        app.client
            .put(app.url(&format!("/api/v1{path}")))
            .json(&body)
            .send()
    };
    let moved: Value = put(format!("/chats/{chat}/folder"), json!({ "folder_id": id }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(moved["folder_id"], id);
    let pinned: Value = put(format!("/chats/{chat}/pin"), json!({ "pinned": true }))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pinned["pinned"], true);
    let response = put(format!("/chats/{chat}/pin"), json!({ "pinned": "yes" }))
        .await
        .unwrap();
    assert_eq!(response.status(), 422);

    let renamed = app
        .client
        .patch(app.url(&format!("/api/v1/folders/{id}")))
        .json(&json!({ "name": "Later" }))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    assert_eq!(renamed.json::<Value>().await.unwrap()["name"], "Later");

    // At most 100 folders.
    for i in 1..100 {
        let response = post("/folders", json!({ "name": format!("F{i}") }))
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "folder {i}");
    }
    let response = post("/folders", json!({ "name": "One too many" }))
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    let problem: Value = response.json().await.unwrap();
    assert!(problem["detail"].as_str().unwrap().contains("100 folders"));

    let delete = app
        .client
        .delete(app.url(&format!("/api/v1/folders/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 204);
    let chat_now = chat_json(&app, chat).await;
    assert!(chat_now["folder_id"].is_null(), "{chat_now}");
    assert_eq!(chat_now["pinned"], true);
    let again = app
        .client
        .delete(app.url(&format!("/api/v1/folders/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}
