//! Issue 2: sessions, chats, pages, validation, migrations, restarts. Each test runs on a fresh
//! database (SQLite, or PostgreSQL with TEST_DATABASE_URL).
use crate::helpers::{TestApp, browser, post_form};
use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("chat_session="))
        .map(str::to_owned)
}

#[tokio::test]
async fn a_new_visitor_gets_a_private_session_cookie() {
    let app = TestApp::spawn().await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    let cookie = session_cookie(&response).expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // The value is encrypted: the 32-hex-digit id is not readable in it.
    let value = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("chat_session=");
    assert!(
        value.len() > 32 && !value.chars().all(|c| c.is_ascii_hexdigit()),
        "{value}"
    );

    // A returning visitor keeps the session: no new cookie.
    let again = app.get("/").await;
    assert!(session_cookie(&again).is_none());
}

#[tokio::test]
async fn cookie_is_secure_when_configured() {
    let app = TestApp::spawn_with(|c| c.cookie_secure = true).await;
    let response = app.get("/").await;
    let cookie = response.headers()["set-cookie"].to_str().unwrap();
    // The `__Host-` prefix: Secure, the whole site, this host only (`devices` has more).
    assert!(cookie.starts_with("__Host-chat_session="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
}

#[tokio::test]
async fn a_tampered_cookie_silently_starts_a_new_session() {
    let app = TestApp::spawn().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = plain.get(app.url("/")).send().await.unwrap();
    let cookie = session_cookie(&first).unwrap();
    let value = cookie.split(';').next().unwrap().to_owned();
    // Make a chat in that session.
    let created = plain
        .post(app.url("/chats"))
        .header("cookie", &value)
        .form(&[("content", "secret plans")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    let page = plain
        .get(app.url("/"))
        .header("cookie", &value)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("secret plans"));

    // Flip one character of the encrypted value.
    let mut bytes = value.into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let response = plain
        .get(app.url("/"))
        .header("cookie", &tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        session_cookie(&response).is_some(),
        "a new session cookie is issued"
    );
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("secret plans"),
        "the tampered cookie must not reach the old session"
    );
}

#[tokio::test]
async fn create_shows_greeting_and_titles_the_chat_after_the_first_message() {
    let app = TestApp::spawn().await;
    let id = app
        .create_chat(&app.client, "How do I bake   bread\nat home?")
        .await;
    let page = app.get(&format!("/chats/{id}")).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Hello! How can I help you today?"),
        "greeting shown"
    );
    assert!(
        html.contains("How do I bake   bread\nat home?"),
        "user text kept exactly"
    );
    assert!(
        html.contains("value=\"How do I bake bread at home?\""),
        "title from the first message"
    );
    assert!(
        html.contains("aria-current=\"page\""),
        "current chat marked in the sidebar"
    );

    // An empty new chat is titled "New chat" until its first message.
    let empty = app.create_chat(&app.client, "   ").await;
    let html = app
        .get(&format!("/chats/{empty}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("value=\"New chat\""));
    app.send_and_wait(&app.client, empty, "Second chat topic")
        .await;
    let html = app
        .get(&format!("/chats/{empty}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("value=\"Second chat topic\""));
}

#[tokio::test]
async fn home_lists_chats_newest_first_and_has_an_empty_state() {
    let app = TestApp::spawn().await;
    let html = app.get("/").await.text().await.unwrap();
    assert!(html.contains("You have no chats yet"));
    let first = app.create_chat(&app.client, "first topic").await;
    let _second = app.create_chat(&app.client, "second topic").await;
    let html = app.get("/").await.text().await.unwrap();
    let a = html.find("second topic").unwrap();
    let b = html.find("first topic").unwrap();
    assert!(a < b, "newest first");
    // Activity moves a chat to the top.
    app.send_and_wait(&app.client, first, "more").await;
    let html = app.get("/").await.text().await.unwrap();
    assert!(html.find("first topic").unwrap() < html.find("second topic").unwrap());
}

#[tokio::test]
async fn rename_and_delete_without_javascript() {
    let app = TestApp::spawn().await;
    let id = app.create_chat(&app.client, "to be renamed").await;
    let response = app
        .post(
            &format!("/chats/{id}/rename"),
            &[("title", "  Renamed   chat ")],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("/chats/{id}"));
    let html = app.get(&format!("/chats/{id}")).await.text().await.unwrap();
    assert!(html.contains("value=\"Renamed chat\""));

    // Deleting without JavaScript goes through a confirmation page.
    let confirm = app.get(&format!("/chats/{id}/delete")).await;
    assert_eq!(confirm.status(), 200);
    assert!(confirm.text().await.unwrap().contains("cannot be undone"));
    assert_eq!(app.count("messages").await, 3, "greeting, message, reply");
    let response = app.post(&format!("/chats/{id}/delete"), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    assert_eq!(app.get(&format!("/chats/{id}")).await.status(), 404);
    assert_eq!(app.count("chats").await, 0);
    assert_eq!(
        app.count("messages").await,
        0,
        "messages cascade with their chat"
    );
}

#[tokio::test]
async fn htmx_requests_get_fragments_and_hx_redirect() {
    let app = TestApp::spawn().await;
    let response = app.post_htmx("/chats", &[("content", "")]).await;
    assert_eq!(response.status(), 204);
    let location = response.headers()["hx-redirect"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(location.starts_with("/chats/"));
    let id = location.trim_start_matches("/chats/");

    // Sending returns the user's bubble, not a page.
    let response = app
        .post_htmx(
            &format!("/chats/{id}/messages"),
            &[("content", "<b>hi</b> & bye")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(!fragment.contains("<html"), "{fragment}");
    assert!(fragment.contains("class=\"message user"), "{fragment}");
    assert!(
        fragment.contains("&lt;b&gt;hi&lt;/b&gt; &amp; bye"),
        "escaped: {fragment}"
    );

    // Rename returns the title form and an out-of-band sidebar entry.
    let response = app
        .post_htmx(&format!("/chats/{id}/rename"), &[("title", "Fresh title")])
        .await;
    assert_eq!(response.status(), 200);
    let fragment = response.text().await.unwrap();
    assert!(fragment.contains("id=\"title-form\""));
    assert!(fragment.contains("hx-swap-oob=\"true\""));
    assert!(fragment.contains("Fresh title"));

    // Delete from another page: the sidebar entry is swapped for nothing.
    let other = app.create_chat(&app.client, "other").await;
    let response = app
        .client
        .post(app.url(&format!("/chats/{id}/delete")))
        .header("HX-Request", "true")
        .header("HX-Current-URL", app.url(&format!("/chats/{other}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("hx-redirect").is_none());
    assert_eq!(response.text().await.unwrap(), "");
    // Delete from the chat's own page: go home.
    let response = app
        .client
        .post(app.url(&format!("/chats/{other}/delete")))
        .header("HX-Request", "true")
        .header("HX-Current-URL", app.url(&format!("/chats/{other}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["hx-redirect"], "/");
    assert_eq!(app.count("chats").await, 0);
}

#[tokio::test]
async fn another_sessions_chat_is_not_found_on_every_route_and_unchanged() {
    let app = TestApp::spawn().await;
    let id = app.create_chat(&app.client, "mine only").await;
    let intruder = browser();
    let before = (app.count("chats").await, app.count("messages").await);

    let base = app.url(&format!("/chats/{id}"));
    let get = |url: String| {
        let intruder = intruder.clone();
        async move { intruder.get(url).send().await.unwrap() }
    };
    let checks = vec![
        ("GET chat", get(base.clone()).await),
        ("GET delete", get(format!("{base}/delete")).await),
        (
            "POST rename",
            post_form(
                &intruder,
                &format!("{base}/rename"),
                &[("title", "pwned")],
                false,
            )
            .await,
        ),
        (
            "POST rename htmx",
            post_form(
                &intruder,
                &format!("{base}/rename"),
                &[("title", "pwned")],
                true,
            )
            .await,
        ),
        (
            "POST message",
            post_form(
                &intruder,
                &format!("{base}/messages"),
                &[("content", "pwned")],
                false,
            )
            .await,
        ),
        (
            "POST message htmx",
            post_form(
                &intruder,
                &format!("{base}/messages"),
                &[("content", "pwned")],
                true,
            )
            .await,
        ),
        (
            "POST delete",
            post_form(&intruder, &format!("{base}/delete"), &[], false).await,
        ),
        (
            "POST delete htmx",
            post_form(&intruder, &format!("{base}/delete"), &[], true).await,
        ),
    ];
    for (what, response) in checks {
        assert_eq!(response.status(), 404, "{what}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("mine only"), "{what} leaks the title");
    }
    assert_eq!(
        (app.count("chats").await, app.count("messages").await),
        before
    );
    let html = app.get(&format!("/chats/{id}")).await.text().await.unwrap();
    assert!(html.contains("value=\"mine only\""), "title unchanged");
    assert!(!html.contains("pwned"));
    // The intruder's home page does not list it either.
    let home = get(app.url("/")).await.text().await.unwrap();
    assert!(!home.contains("mine only"));
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_stores_nothing() {
    let app = TestApp::spawn().await;
    let id = app.create_chat(&app.client, "").await;
    let path = format!("/chats/{id}/messages");
    let stored = app.count("messages").await;

    for blank in ["", "   ", "\n\t  \r\n"] {
        let response = app.post(&path, &[("content", blank)]).await;
        assert_eq!(response.status(), 422, "{blank:?}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Please write a message")
        );
        let response = app.post_htmx(&path, &[("content", blank)]).await;
        assert_eq!(response.status(), 422);
        assert_eq!(
            response.headers()["hx-retarget"],
            "#flash",
            "inline message for htmx"
        );
        let fragment = response.text().await.unwrap();
        assert!(fragment.contains("Please write a message") && !fragment.contains("<html"));
    }
    // Over the message limit but within the body limit: 413 with a message saying the limit.
    let big = "x".repeat(app.config.max_message_bytes + 1);
    let response = app.post(&path, &[("content", &big)]).await;
    assert_eq!(response.status(), 413);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("the limit is 32 KiB")
    );
    // 1 MiB: refused by the body limit, still a readable 413.
    let huge = "y".repeat(1024 * 1024);
    let response = app.post(&path, &[("content", &huge)]).await;
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().contains("too large"));
    // Also on chat creation.
    let response = app.post("/chats", &[("content", &huge)]).await;
    assert_eq!(response.status(), 413);

    // Malformed and unknown ids are 404.
    for bad in ["not-a-uuid", "123", "00000000-0000-0000-0000-000000000000"] {
        assert_eq!(
            app.get(&format!("/chats/{bad}")).await.status(),
            404,
            "{bad}"
        );
        assert_eq!(
            app.post(&format!("/chats/{bad}/messages"), &[("content", "hi")])
                .await
                .status(),
            404
        );
        assert_eq!(
            app.post(&format!("/chats/{bad}/rename"), &[("title", "x")])
                .await
                .status(),
            404
        );
        assert_eq!(
            app.post(&format!("/chats/{bad}/delete"), &[])
                .await
                .status(),
            404
        );
    }
    // NUL cannot be stored (PostgreSQL refuses it): a clear 422, never a 500.
    let response = app.post(&path, &[("content", "nul \0 here")]).await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("NUL character"));
    assert_eq!(
        app.post(&format!("/chats/{id}/rename"), &[("title", "a\0b")])
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post("/profile", &[("display_name", "a\0b")])
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post("/chats", &[("content", "first \0")])
            .await
            .status(),
        422
    );
    // Blank and overlong titles, overlong names.
    assert_eq!(
        app.post(&format!("/chats/{id}/rename"), &[("title", "  ")])
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post(
            &format!("/chats/{id}/rename"),
            &[("title", &"t".repeat(121))]
        )
        .await
        .status(),
        422
    );
    assert_eq!(
        app.post("/profile", &[("display_name", &"n".repeat(41))])
            .await
            .status(),
        422
    );

    assert_eq!(
        app.count("messages").await,
        stored,
        "nothing stored on any refused request"
    );
    assert_eq!(app.count("chats").await, 1);
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test]
async fn unknown_pages_are_friendly_404s() {
    let app = TestApp::spawn().await;
    let response = app.get("/no/such/page").await;
    assert_eq!(response.status(), 404);
    let html = response.text().await.unwrap();
    assert!(html.contains("<h1>Not Found</h1>"), "{html}");
    assert!(html.contains("Go to your chats"));
}

#[tokio::test]
async fn display_name_is_kept_with_the_session_and_shown_on_messages() {
    let app = TestApp::spawn().await;
    let id = app.create_chat(&app.client, "hello there").await;
    app.client
        .get(app.url(&format!("/chats/{id}")))
        .send()
        .await
        .unwrap();
    let response = app
        .client
        .post(app.url("/profile"))
        .header("referer", app.url(&format!("/chats/{id}")))
        .form(&[("display_name", "  Ada   Lovelace ")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("/chats/{id}"));
    let html = app.get(&format!("/chats/{id}")).await.text().await.unwrap();
    assert!(
        html.contains("<div class=\"author\">Ada Lovelace</div>"),
        "{html}"
    );
    // A send's new bubble carries the name too (read in the send's own transaction).
    let sent = app
        .post_htmx(
            &format!("/chats/{id}/messages"),
            &[("content", "and again")],
        )
        .await;
    assert_eq!(sent.status(), 200);
    let fragment = sent.text().await.unwrap();
    assert!(
        fragment.contains("<div class=\"author\">Ada Lovelace</div>"),
        "{fragment}"
    );
    // htmx gets the form back; an empty name clears it.
    let response = app.post_htmx("/profile", &[("display_name", "")]).await;
    assert!(response.text().await.unwrap().contains("id=\"profile\""));
    let html = app.get(&format!("/chats/{id}")).await.text().await.unwrap();
    assert!(html.contains("<div class=\"author\">You</div>"));
    // Another session does not see the name.
    let other = browser();
    let home = other
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!home.contains("Ada"));
}

#[tokio::test]
async fn history_is_ordered_and_kept_across_restarts() {
    let app = TestApp::spawn().await;
    let id = app.create_chat(&app.client, "message 1").await;
    for n in 2..=5 {
        app.send_and_wait(&app.client, id, &format!("message {n}"))
            .await;
    }
    let client = app.client.clone();
    let (config, data_dir) = app.stop().await;

    // Same data directory: the generated session key is reused, so the cookie still works.
    let app = TestApp::start(config, data_dir).await;
    let html = client
        .get(app.url(&format!("/chats/{id}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let positions: Vec<usize> = (1..=5)
        .map(|n| html.find(&format!("message {n}<")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "in order: {positions:?}"
    );
}

#[tokio::test]
async fn long_histories_are_paged() {
    let app = TestApp::spawn().await;
    let id = app.create_chat(&app.client, "msg-000").await;
    for n in 1..=60 {
        app.send_and_wait(&app.client, id, &format!("msg-{n:03}"))
            .await;
    }
    // 1 greeting + 61 messages + 61 replies = 123 (msg-n at position 2n + 2); a page shows the
    // newest 100, positions 24 to 123.
    let html = app.get(&format!("/chats/{id}")).await.text().await.unwrap();
    assert!(
        html.contains("msg-060<") && html.contains("msg-011<"),
        "newest shown"
    );
    assert!(!html.contains("msg-010<"), "older ones paged away");
    let link = html
        .split("?before=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(link, "24");
    let older = app
        .get(&format!("/chats/{id}?before={link}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        older.contains("msg-000<") && older.contains("msg-010<") && !older.contains("msg-011<")
    );
    assert!(older.contains("Back to the latest messages"));
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.get("/static/htmx-2.0.11.min.js").await.status(), 200);
}

#[tokio::test]
async fn with_skip_migrations_the_app_is_not_ready_until_the_schema_is_there() {
    // As with a migration Job: the app starts on an empty database and waits for it.
    let app = TestApp::spawn_with(|c| c.skip_migrations = true).await;
    assert_eq!(app.get("/healthz").await.status(), 200, "alive");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert!(
        ready
            .text()
            .await
            .unwrap()
            .contains("the database migrations are still pending")
    );
    app.store.migrate().await.unwrap();
    assert_eq!(app.get("/readyz").await.status(), 200);
    let chat = app.create_chat(&app.client, "works now").await;
    assert_eq!(app.get(&format!("/chats/{chat}")).await.status(), 200);
}

#[tokio::test]
async fn a_malformed_session_key_stops_start_up_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(dir.path()).await;
    config.session_key = Some("too-short".into());
    let error = app::AppState::build(config)
        .await
        .err()
        .expect("start-up must fail");
    let text = format!("{error:#}");
    assert!(
        text.contains("SESSION_KEY") && text.contains("64"),
        "{text}"
    );
}

#[tokio::test]
async fn migrations_go_up_down_and_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let url = crate::helpers::fresh_database_url(dir.path()).await;
    let db = sea_orm::Database::connect(url).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    assert!(
        Migrator::get_pending_migrations(&db)
            .await
            .unwrap()
            .is_empty()
    );
    let tables = ["sessions", "chats", "messages"];
    for table in tables {
        assert!(
            db.execute_unprepared(&format!("SELECT COUNT(*) FROM {table}"))
                .await
                .is_ok(),
            "{table}"
        );
    }
    Migrator::down(&db, None).await.unwrap();
    for table in tables {
        assert!(
            db.execute_unprepared(&format!("SELECT COUNT(*) FROM {table}"))
                .await
                .is_err(),
            "{table} dropped"
        );
    }
    Migrator::up(&db, None).await.unwrap();
    Migrator::reset(&db).await.unwrap();
    assert_eq!(
        Migrator::get_pending_migrations(&db).await.unwrap().len(),
        Migrator::migrations().len()
    );
    Migrator::up(&db, None).await.unwrap();
    // The later migrations go down one at a time (their columns go) and up again.
    let has = |column: &'static str| {
        let db = db.clone();
        async move {
            db.execute_unprepared(&format!("SELECT {column} FROM messages"))
                .await
                .is_ok()
        }
    };
    let has_table = |table: &'static str| {
        let db = db.clone();
        async move {
            db.execute_unprepared(&format!("SELECT COUNT(*) FROM {table}"))
                .await
                .is_ok()
        }
    };
    let chat_has = |column: &'static str| {
        let db = db.clone();
        async move {
            db.execute_unprepared(&format!("SELECT {column} FROM chats"))
                .await
                .is_ok()
        }
    };
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has_table("users").await && !has_table("usage_days").await);
    assert!(chat_has("tools").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!chat_has("tools").await);
    assert!(has("tool_calls").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has("tool_calls").await);
    assert!(has("parent_id").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has("parent_id").await);
    assert!(chat_has("temporary").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!chat_has("temporary").await);
    assert!(has_table("rate_limits").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has_table("rate_limits").await);
    assert!(has_table("attachments").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has_table("attachments").await);
    assert!(!has("attachments").await && !has("attachment_text").await);
    assert!(has_table("devices").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has_table("devices").await && !has_table("device_links").await);
    assert!(has_table("folders").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(
        !has_table("folders").await && !chat_has("pinned_at").await && !chat_has("folder_id").await
    );
    assert!(has_table("shares").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has_table("shares").await && has("model").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(
        !has("model").await && !has("generation_ms").await && has_table("session_versions").await
    );
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has_table("session_versions").await && has("lease_expires_at").await);
    // Its triggers went with it: a write to a table they were on works without their table.
    db.execute_unprepared(
        "INSERT INTO sessions (id, created_at, updated_at) \
         VALUES ('after-down', '2026-12-02T00:00:00Z', '2026-12-02T00:00:00Z')",
    )
    .await
    .unwrap();
    db.execute_unprepared("DELETE FROM sessions WHERE id = 'after-down'")
        .await
        .unwrap();
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has("lease_expires_at").await && has("reasoning").await);
    Migrator::down(&db, Some(1)).await.unwrap();
    assert!(!has("reasoning").await && has("seq").await);
    Migrator::up(&db, None).await.unwrap();
    assert!(has("reasoning, superseded, owner, lease_expires_at, stop_requested").await);
    assert!(has("model, time_to_first_token_ms, generation_ms").await);
    assert!(has_table("session_versions").await && has_table("shares").await);
    assert!(has_table("folders").await && chat_has("pinned_at, folder_id").await);
    assert!(has_table("devices").await && has_table("device_links").await);
    assert!(has("tool_calls").await && chat_has("tools").await);
    // Constraints hold: bad roles and statuses are refused, a message needs an existing chat,
    // and deleting a chat deletes its messages.
    let chat = "'00000000-0000-0000-0000-000000000001'";
    let ts = "'2026-01-01T00:00:00Z'";
    db.execute_unprepared(&format!(
        "INSERT INTO chats (id, session_id, title, created_at, updated_at) VALUES ({chat}, 's', 't', {ts}, {ts})"
    ))
    .await
    .unwrap();
    let message = |id: u8, chat: &str, role: &str, status: &str| {
        format!(
            "INSERT INTO messages (id, chat_id, session_id, seq, role, content, status, created_at, updated_at) \
             VALUES ('00000000-0000-0000-0000-0000000001{id:02}', {chat}, 's', {id}, '{role}', 'c', '{status}', {ts}, {ts})"
        )
    };
    db.execute_unprepared(&message(1, chat, "user", "complete"))
        .await
        .unwrap();
    assert!(
        db.execute_unprepared(&message(2, chat, "robot", "complete"))
            .await
            .is_err(),
        "role checked"
    );
    assert!(
        db.execute_unprepared(&message(3, chat, "user", "finished"))
            .await
            .is_err(),
        "status checked"
    );
    let missing = "'00000000-0000-0000-0000-000000000009'";
    assert!(
        db.execute_unprepared(&message(4, missing, "user", "complete"))
            .await
            .is_err(),
        "foreign key enforced"
    );
    db.execute_unprepared("DELETE FROM chats").await.unwrap();
    let left = db
        .execute_unprepared("DELETE FROM messages")
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(left, 0, "messages cascade");
}

#[tokio::test]
async fn the_container_health_check_asks_healthz() {
    let app = TestApp::spawn().await;
    assert!(app::healthcheck(app.addr).await.is_ok());
    let wildcard = std::net::SocketAddr::from(([0, 0, 0, 0], app.addr.port()));
    assert!(
        app::healthcheck(wildcard).await.is_ok(),
        "0.0.0.0 means this host"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    assert!(app::healthcheck(closed).await.is_err());
}

/// The sidebar shows the newest chats; every chat stays reachable on /chats, a page at a time,
/// each exactly once.
#[tokio::test]
async fn all_chats_are_reachable_a_page_at_a_time() {
    let app = TestApp::spawn_with(|c| c.greeting = String::new()).await;
    let mut created = Vec::new();
    for _ in 0..120 {
        created.push(app.create_chat(&app.client, "").await);
    }
    let home = app.get("/").await.text().await.unwrap();
    assert!(home.contains("href=\"/chats\""), "a link to all chats");
    let newest = created.last().unwrap();
    let chat_page = app
        .get(&format!("/chats/{newest}"))
        .await
        .text()
        .await
        .unwrap();
    let sidebar_links = created
        .iter()
        .filter(|id| chat_page.contains(&format!("/chats/{id}\"")))
        .count();
    assert_eq!(sidebar_links, 50, "the sidebar lists the newest 50");
    assert!(chat_page.contains("All chats"));

    let mut seen = Vec::new();
    let mut url = "/chats".to_string();
    for _ in 0..5 {
        let html = app.get(&url).await.text().await.unwrap();
        // The list itself, not the sidebar around it.
        let page = html
            .split("<section class=\"all-chats\">")
            .nth(1)
            .and_then(|rest| rest.split("</section>").next())
            .expect("the list of all chats");
        seen.extend(
            created
                .iter()
                .filter(|id| page.contains(&format!("href=\"/chats/{id}\"")))
                .copied(),
        );
        match page.split("href=\"/chats?after=").nth(1) {
            Some(rest) => url = format!("/chats?after={}", &rest[..36]),
            None => break,
        }
    }
    let mut expected = created.clone();
    expected.sort();
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    assert_eq!(seen.len(), 120, "every chat once, none twice");
    assert!(seen_sorted == expected, "every chat once, none twice");

    // Another session cannot page from (or learn about) these chats.
    let other = browser();
    let response = other
        .get(app.url(&format!("/chats?after={newest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}
