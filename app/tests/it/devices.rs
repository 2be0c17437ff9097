//! Issue 17, item 5: your chats on another device. A one-time code links another browser to
//! the session (after a confirmation, by POST); the devices page lists the session's browsers
//! and signs any of them out, whose cookie then stops working at once. Used, expired, unknown
//! and guessed codes are clear errors. With COOKIE_SECURE the cookie is `__Host-` prefixed; it
//! is renewed while in use.
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;

use crate::helpers::{TestApp, browser, post_form};

/// The `/link/...` path and the code a devices page shows after "Link another browser".
fn made_link(html: &str) -> (String, String) {
    let path = html
        .split("class=\"share-link device-link\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no link: {html}"))
        .replace("&#x2f;", "/");
    let code = html
        .split("<strong class=\"link-code\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();
    (path, code)
}

async fn text(response: reqwest::Response) -> String {
    response.text().await.unwrap()
}

async fn sql(app: &TestApp, statement: &str) {
    let db = app.store.connection();
    db.execute_raw(Statement::from_string(
        db.get_database_backend(),
        statement.to_owned(),
    ))
    .await
    .unwrap();
}

/// The ids of the devices a devices page lists, and whether each is "this browser".
fn devices_listed(html: &str) -> Vec<(String, bool)> {
    html.split("<li id=\"device-")
        .skip(1)
        .map(|rest| {
            let id = rest[..36].to_owned();
            let item = &rest[..rest.find("</li>").unwrap()];
            (id, item.contains("this browser"))
        })
        .collect()
}

#[tokio::test]
async fn a_code_links_another_browser_which_can_then_be_signed_out() {
    let app = TestApp::spawn().await;
    let first = app.client.clone();
    let chat = app
        .create_chat(&first, "Chats from the first browser")
        .await;

    // The first browser's devices: itself.
    let page = text(app.get("/devices").await).await;
    let listed = devices_listed(&page);
    assert_eq!(listed.len(), 1, "{page}");
    assert!(listed[0].1, "marked as this browser");

    // A link, shown once, with its short code.
    let response = app.post("/devices/link", &[]).await;
    assert_eq!(response.status(), 200);
    let (path, code) = made_link(&text(response).await);
    assert!(
        path.starts_with("/link/") && path.len() == "/link/".len() + 8,
        "{path}"
    );
    assert_eq!(code.len(), 9, "{code}");
    assert_eq!(code.replace('-', ""), path.trim_start_matches("/link/"));

    // The second browser: opening the link only asks (twice, and a preview bot, use nothing).
    let second = browser();
    let preview = reqwest::Client::new();
    for client in [&second, &preview, &second] {
        let response = client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body = text(response).await;
        assert!(
            body.contains(&format!("<form method=\"post\" action=\"{path}\">")),
            "{body}"
        );
    }
    // Typing the code at /link, in any case and with its dash, goes to the same question.
    let typed = second
        .get(app.url(&format!("/link?code={}", code.to_lowercase())))
        .send()
        .await
        .unwrap();
    assert_eq!(typed.status(), 303);
    let typed_to = typed.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(typed_to, path, "the code as the link has it");
    let question = text(second.get(app.url(&typed_to)).send().await.unwrap()).await;
    assert!(question.contains("Link this browser"), "{question}");

    // Confirmed: the second browser shows the first one's chats.
    let response = post_form(&second, &app.url(&path), &[], false).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    let home = text(second.get(app.url("/")).send().await.unwrap()).await;
    assert!(home.contains("Chats from the first browser"), "{home}");
    let chat_page = second
        .get(app.url(&format!("/chats/{chat}")))
        .send()
        .await
        .unwrap();
    assert_eq!(chat_page.status(), 200);

    // Used: a clear error for anyone else, and for the second browser again.
    for client in [browser(), second.clone()] {
        let response = client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 410);
        assert!(text(response).await.contains("used already"));
    }
    let response = post_form(&browser(), &app.url(&path), &[], false).await;
    assert_eq!(response.status(), 410);

    // The first browser lists both; it signs the second one out, whose cookie stops working.
    let page = text(app.get("/devices").await).await;
    let listed = devices_listed(&page);
    assert_eq!(listed.len(), 2, "{page}");
    let (other, _) = listed.iter().find(|(_, current)| !current).unwrap().clone();
    let response = app.post(&format!("/devices/{other}/signout"), &[]).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/devices");
    let after = second.get(app.url("/")).send().await.unwrap();
    assert!(
        after.headers().get("set-cookie").is_some(),
        "a new session's cookie"
    );
    assert!(!text(after).await.contains("Chats from the first browser"));
    assert_eq!(
        second
            .get(app.url(&format!("/chats/{chat}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        devices_listed(&text(app.get("/devices").await).await).len(),
        1
    );
    // Signing out again, or another session's device: not found.
    let response = app.post(&format!("/devices/{other}/signout"), &[]).await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn expired_unknown_own_and_guessed_codes_are_clear_errors() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = true;
        c.chat_rate_per_address = "1000/min".parse().unwrap();
        c.chat_rate_per_session = "8/min".parse().unwrap();
    })
    .await;
    app.create_chat(&app.client, "Mine").await;
    let (path, _) = made_link(&text(app.post("/devices/link", &[]).await).await);

    // Opened in the browser that made it.
    let response = app.get(&path).await;
    assert_eq!(response.status(), 409);
    assert!(
        text(response)
            .await
            .contains("this one already has these chats")
    );

    // Expired.
    sql(
        &app,
        "UPDATE device_links SET expires_at = '2026-01-01T00:00:00Z'",
    )
    .await;
    let other = browser();
    let response = other.get(app.url(&path)).send().await.unwrap();
    assert_eq!(response.status(), 410);
    assert!(text(response).await.contains("has expired"));
    let response = post_form(&other, &app.url(&path), &[], false).await;
    assert_eq!(response.status(), 410);

    // Unknown or malformed.
    for bad in ["/link/ZZZZZZZZ", "/link/short", "/link/..%2F..%2Fetc"] {
        let response = other.get(app.url(bad)).send().await.unwrap();
        assert_eq!(response.status(), 410, "{bad}");
        assert!(text(response).await.contains("no such link code"), "{bad}");
    }

    // Guessing is rate-limited: a session that keeps trying is told to wait.
    let guesser = browser();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let response = guesser
            .get(app.url(&format!("/link/AAAAAA{:02}", i)))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 410).count(),
        8,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn with_cookie_secure_the_cookie_is_host_prefixed_and_old_cookies_move_to_it() {
    let app = TestApp::spawn().await;
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = plain.get(app.url("/")).send().await.unwrap();
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("chat_session="), "{cookie}");
    let value = cookie.split(';').next().unwrap().to_owned();
    let created = plain
        .post(app.url("/chats"))
        .header("cookie", &value)
        .form(&[("content", "kept across the switch")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);

    // The same database and key, now behind HTTPS.
    let (mut config, dir) = app.stop().await;
    config.cookie_secure = true;
    let app = TestApp::start(config, dir).await;
    let response = plain
        .get(app.url("/"))
        .header("cookie", &value)
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let host = cookies
        .iter()
        .find(|c| c.starts_with("__Host-chat_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    assert!(
        host.contains("Secure") && host.contains("Path=/") && !host.contains("Domain"),
        "{host}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("chat_session=") && c.contains("Max-Age=0")),
        "the old cookie is removed: {cookies:?}"
    );
    assert!(text(response).await.contains("kept across the switch"));
    let moved = host.split(';').next().unwrap().to_owned();
    let again = plain
        .get(app.url("/"))
        .header("cookie", &moved)
        .send()
        .await
        .unwrap();
    assert!(
        again.headers().get("set-cookie").is_none(),
        "nothing to renew yet"
    );
    assert!(text(again).await.contains("kept across the switch"));

    // Renewed while in use: an hour after its last use, the cookie is set again.
    sql(
        &app,
        "UPDATE devices SET last_used_at = '2026-01-01T00:00:00Z', created_at = '2026-01-01T00:00:00Z'",
    )
    .await;
    // (Once this replica reads the row again.)
    tokio::time::sleep(app::session::DEVICE_CHECK_TTL).await;
    let renewed = plain
        .get(app.url("/devices"))
        .header("cookie", &moved)
        .send()
        .await
        .unwrap();
    let set = renewed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("__Host-chat_session=") && set.contains("Max-Age=31536000"),
        "{set}"
    );
    let page = text(renewed).await;
    assert!(
        !page.contains("last used 2026-01-01"),
        "its last use moved on: {page}"
    );
}

#[tokio::test]
async fn the_api_lists_devices_makes_codes_and_turns_one_into_a_token() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "For the script").await;
    let devices: Value = app.get("/api/v1/devices").await.json().await.unwrap();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 1, "{devices}");
    let response = app
        .client
        .post(app.url("/api/v1/devices/links"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let link: Value = response.json().await.unwrap();
    let code = link["code"].as_str().unwrap();
    assert_eq!(link["url"], format!("/link/{}", code.replace('-', "")));

    // A script with no cookie uses the code and gets a token for the session.
    let script = reqwest::Client::new();
    let response = script
        .post(app.url(&format!("/api/v1/links/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let token: Value = response.json().await.unwrap();
    let chats: Value = script
        .get(app.url("/api/v1/chats"))
        .bearer_auth(token["token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(chats["chats"][0]["id"], chat.to_string());
    let again = script
        .post(app.url(&format!("/api/v1/links/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 410);

    // Signing a device out through the API.
    let id = devices["devices"][0]["id"].as_str().unwrap();
    let response = app
        .client
        .delete(app.url(&format!("/api/v1/devices/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // That was this client's own browser: it is a new session now.
    let after: Value = app.get("/api/v1/chats").await.json().await.unwrap();
    assert_eq!(after["chats"], serde_json::json!([]));
}

#[tokio::test]
async fn a_device_signed_out_by_another_replica_is_refused_within_a_second() {
    let app = TestApp::spawn().await;
    app.create_chat(&app.client, "Seen by two replicas").await;
    let home = text(app.get("/").await).await;
    assert!(home.contains("Seen by two replicas"));
    // Another replica signs this browser out: its row changes, this replica was not told.
    sql(
        &app,
        "UPDATE devices SET revoked_at = '2026-01-01T00:00:00Z'",
    )
    .await;
    tokio::time::sleep(app::session::DEVICE_CHECK_TTL + std::time::Duration::from_millis(100))
        .await;
    let after = app.get("/").await;
    assert!(after.headers().get("set-cookie").is_some(), "a new session");
    assert!(!text(after).await.contains("Seen by two replicas"));
}

/// `GET /api/v1/chats` with `token`: its status.
async fn with_token(app: &TestApp, token: &str) -> u16 {
    reqwest::Client::new()
        .get(app.url("/api/v1/chats"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn mint_token(app: &TestApp, client: &reqwest::Client, bearer: Option<&str>) -> String {
    let mut request = client.post(app.url("/api/v1/tokens"));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 201);
    let token: Value = response.json().await.unwrap();
    token["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn signing_a_device_out_ends_the_tokens_minted_from_it_on_every_replica() {
    let app = TestApp::spawn().await;
    app.create_chat(&app.client, "Mine").await;
    // A token from the browser's cookie, and one minted with that token: both the browser's.
    let token = mint_token(&app, &app.client, None).await;
    let from_token = mint_token(&app, &reqwest::Client::new(), Some(&token)).await;
    assert_eq!(with_token(&app, &token).await, 200);
    assert_eq!(with_token(&app, &from_token).await, 200);
    // Another browser of the session, with its own token.
    let (path, _) = {
        let page = text(post_form(&app.client, &app.url("/devices/link"), &[], false).await).await;
        made_link(&page)
    };
    let other = browser();
    let response = post_form(&other, &app.url(&path), &[], false).await;
    assert_eq!(response.status(), 303, "{}", text(response).await);
    let other_token = mint_token(&app, &other, None).await;
    assert_eq!(with_token(&app, &other_token).await, 200);

    // The first browser is signed out (from the other one): its tokens end with it.
    let devices: Value = other
        .get(app.url("/api/v1/devices"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The first browser's device is the session's oldest.
    let first = devices["devices"]
        .as_array()
        .unwrap()
        .iter()
        .min_by_key(|d| d["created_at"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("{devices}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = other
        .delete(app.url(&format!("/api/v1/devices/{first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for gone in [&token, &from_token] {
        let response = reqwest::Client::new()
            .get(app.url("/api/v1/chats"))
            .bearer_auth(gone)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        assert!(text(response).await.contains("device was signed out"));
    }
    assert_eq!(with_token(&app, &other_token).await, 200);

    // Signed out by another replica (its row changed, this one was not told): refused within
    // the device check's second.
    sql(
        &app,
        "UPDATE devices SET revoked_at = '2026-01-01T00:00:00Z'",
    )
    .await;
    tokio::time::sleep(app::session::DEVICE_CHECK_TTL + std::time::Duration::from_millis(100))
        .await;
    assert_eq!(with_token(&app, &other_token).await, 401);
}

#[tokio::test]
async fn a_token_from_before_devices_or_forged_is_refused() {
    let app = TestApp::spawn().await;
    // The old form: the session alone, as issued before tokens belonged to devices.
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(&app.state.sessions.key)
        .add(cookie::Cookie::new(
            "chat_api_token",
            app::domain::SessionId::random().to_string(),
        ));
    let old = jar.get("chat_api_token").unwrap().value().to_owned();
    let response = reqwest::Client::new()
        .get(app.url("/api/v1/chats"))
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(
        text(response)
            .await
            .contains("from before tokens belonged to a device")
    );
    assert_eq!(with_token(&app, "not-a-token").await, 401);
}
