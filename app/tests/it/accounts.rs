//! Accounts (`AUTH_MODE=oidc` and `header`): signing in through a stand-in provider and each way
//! it can go wrong (`helpers/oidc.rs`), a person's chats on every browser and nobody else's,
//! signing out, admins, quotas, anonymous chats brought in; and the whole sign-in against a
//! provider we did not write (npm's oauth2-mock-server).
use app::config::Config;
use reqwest::{Client, StatusCode, header};

use crate::helpers::{
    TestApp, browser,
    oidc::{CLIENT_ID, Fault, Person, StandIn, person},
    post_form,
};

/// Where the provider sends browsers back to; the tests carry the answer to the app themselves.
const PUBLIC_URL: &str = "http://chat.test";

fn oidc(config: &mut Config, issuer: &str) {
    config.auth_mode = app::accounts::AuthMode::Oidc;
    config.oidc_issuer = issuer.to_owned();
    config.oidc_client_id = CLIENT_ID.to_owned();
    config.oidc_client_secret = "s3cret".to_owned();
    config.public_url = Some(PUBLIC_URL.parse().unwrap());
}

fn location(response: &reqwest::Response) -> String {
    response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The way to the provider and back, as a browser goes: `/login`, the provider's `/authorize`,
/// then the callback URL it redirects to, on this app. Returns the callback's answer.
async fn sign_in(app: &TestApp, client: &Client) -> reqwest::Response {
    let callback = to_callback(app, client).await;
    client.get(callback).send().await.unwrap()
}

/// `/login` and the provider's answer: the callback URL, not visited yet.
async fn to_callback(app: &TestApp, client: &Client) -> String {
    let login = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER, "login");
    let at_provider = client.get(location(&login)).send().await.unwrap();
    assert_eq!(
        at_provider.status(),
        StatusCode::FOUND,
        "the provider's answer"
    );
    let back = location(&at_provider);
    assert!(
        back.starts_with(&format!("{PUBLIC_URL}/auth/callback?")),
        "{back}"
    );
    back.replacen(PUBLIC_URL, &app.base, 1)
}

async fn chats_of(app: &TestApp, client: &Client) -> Vec<serde_json::Value> {
    let response = client.get(app.url("/api/v1/chats")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["chats"].as_array().cloned().unwrap_or_default()
}

async fn signed_in_app(
    configure: impl FnOnce(&mut Config),
) -> (TestApp, StandIn, tokio::task::JoinHandle<()>) {
    let (provider, server) = StandIn::start().await;
    let issuer = provider.issuer.clone();
    let app = TestApp::spawn_with(|config| {
        oidc(config, &issuer);
        configure(config);
    })
    .await;
    (app, provider, server)
}

#[tokio::test]
async fn a_new_name_from_the_provider_shows_on_pages_cached_before_it() {
    let (app, provider, _server) = signed_in_app(|_| {}).await;
    let laptop = browser();
    assert_eq!(sign_in(&app, &laptop).await.status(), StatusCode::SEE_OTHER);
    let chat = app.create_chat(&laptop, "Hello").await;
    let page = |client: &Client| {
        let url = app.url(&format!("/chats/{chat}"));
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    // Read twice: the second answer may come from the page cache.
    assert!(
        page(&laptop)
            .await
            .contains("Signed in as <strong>ada</strong>")
    );
    assert!(
        page(&laptop)
            .await
            .contains("Signed in as <strong>ada</strong>")
    );

    // The provider now calls her by her full name; she signs in on her phone.
    provider.sign_in_as(Person {
        name: "Ada Lovelace".into(),
        ..person("ada")
    });
    let phone = browser();
    assert_eq!(sign_in(&app, &phone).await.status(), StatusCode::SEE_OTHER);
    assert!(
        page(&phone)
            .await
            .contains("Signed in as <strong>Ada Lovelace</strong>")
    );
    // The laptop's page says so too, within the user cache's second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let text = page(&laptop).await;
        if text.contains("Signed in as <strong>Ada Lovelace</strong>") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the laptop still shows the old name"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_persons_chats_follow_them_to_every_browser_and_nobody_else_sees_them() {
    let (app, provider, _server) = signed_in_app(|_| {}).await;

    // Not signed in: pages go to the sign-in, the API is 401, and nothing is stored.
    let visitor = browser();
    let home = visitor.get(app.url("/chats/1")).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&home), "/login?next=%2Fchats%2F1");
    let api = visitor.get(app.url("/api/v1/chats")).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let refused = post_form(&visitor, &app.url("/chats"), &[("content", "hi")], false).await;
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.count("chats").await, 0);
    assert_eq!(app.count("devices").await, 0);

    // The sign-in goes back where the visitor was going.
    let laptop = browser();
    let first = laptop.get(app.url("/search?q=x")).send().await.unwrap();
    let login = laptop.get(app.url(&location(&first))).send().await.unwrap();
    let at_provider = laptop.get(location(&login)).send().await.unwrap();
    let back = location(&at_provider).replacen(PUBLIC_URL, &app.base, 1);
    let callback = laptop.get(back).send().await.unwrap();
    assert_eq!(callback.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&callback), "/search?q=x");
    let page = laptop.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Signed in as <strong>ada</strong>")
    );

    let chat = app.create_chat(&laptop, "Hello from the laptop").await;

    // The same person on a phone sees that chat; another person sees nothing of it.
    let phone = browser();
    assert_eq!(sign_in(&app, &phone).await.status(), StatusCode::SEE_OTHER);
    let seen = chats_of(&app, &phone).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["id"], chat.to_string());

    provider.sign_in_as(person("bob"));
    let bob = browser();
    assert_eq!(sign_in(&app, &bob).await.status(), StatusCode::SEE_OTHER);
    assert!(chats_of(&app, &bob).await.is_empty());
    let theirs = bob
        .get(app.url(&format!("/chats/{chat}")))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);

    // Two people, one session each; three browsers signed in.
    assert_eq!(app.count("users").await, 2);
    assert_eq!(app.count("devices").await, 3);
    // The device list is the account's: both of ada's browsers.
    let devices = phone.get(app.url("/api/v1/devices")).send().await.unwrap();
    let devices: serde_json::Value = devices.json().await.unwrap();
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(2),
        "{devices}"
    );
    // Link codes are for anonymous sessions.
    let link = post_form(&phone, &app.url("/devices/link"), &[], false).await;
    assert_eq!(link.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_forged_or_replayed_callback_signs_nobody_in() {
    let (app, provider, _server) = signed_in_app(|_| {}).await;

    // A callback this browser never started.
    let stranger = browser();
    let forged = stranger
        .get(app.url("/auth/callback?code=code-x&state=made-up"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("does not belong to a sign-in")
    );

    // A callback whose state is not the one this browser was given.
    let client = browser();
    let callback = to_callback(&app, &client).await;
    let tampered = regex_free_replace_state(&callback, "tampered");
    let answer = client.get(tampered).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count("users").await, 0);
    // Refused before its code was ever taken to the provider.
    assert_eq!(provider.token_requests(), 0);

    // A good callback works once; the same answer again, from this browser or another, is
    // refused (the sign-in it belonged to is used up).
    let client = browser();
    let callback = to_callback(&app, &client).await;
    assert_eq!(
        client.get(&callback).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let again = client.get(&callback).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);
    let elsewhere = browser().get(&callback).send().await.unwrap();
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.count("users").await, 1);
    assert_eq!(app.count("devices").await, 1);

    // The provider's own refusal is said as it is.
    let client = browser();
    let callback = to_callback(&app, &client).await;
    let state = callback.split("state=").nth(1).unwrap().to_owned();
    let denied = client
        .get(app.url(&format!(
            "/auth/callback?error=access_denied&error_description=You%20cancelled&state={state}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(denied.text().await.unwrap().contains("You cancelled"));
}

fn regex_free_replace_state(url: &str, state: &str) -> String {
    let (head, _) = url.split_once("state=").unwrap();
    format!("{head}state={state}")
}

#[tokio::test]
async fn an_id_token_that_cannot_be_trusted_signs_nobody_in() {
    let (app, provider, _server) = signed_in_app(|_| {}).await;
    for (fault, status, says) in [
        (
            Fault::Expired,
            StatusCode::UNAUTHORIZED,
            "could not be verified",
        ),
        (
            Fault::WronglySigned,
            StatusCode::UNAUTHORIZED,
            "could not be verified",
        ),
        (
            Fault::WrongAudience,
            StatusCode::UNAUTHORIZED,
            "could not be verified",
        ),
        (
            Fault::WrongNonce,
            StatusCode::UNAUTHORIZED,
            "could not be verified",
        ),
        (
            Fault::NoEmail,
            StatusCode::FORBIDDEN,
            "did not say your e-mail address",
        ),
    ] {
        provider.set_fault(fault);
        let client = browser();
        let answer = sign_in(&app, &client).await;
        assert_eq!(answer.status(), status, "{fault:?}");
        let page = answer.text().await.unwrap();
        assert!(page.contains(says), "{fault:?}: {page}");
        let home = client.get(app.url("/")).send().await.unwrap();
        assert_eq!(
            home.status(),
            StatusCode::SEE_OTHER,
            "{fault:?}: not signed in"
        );
    }
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("devices").await, 0);
    // The same sign-in with a good token goes through.
    provider.set_fault(Fault::None);
    assert_eq!(
        sign_in(&app, &browser()).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn a_provider_that_is_down_is_a_clear_page_and_people_signed_in_go_on() {
    // Never reachable: the sign-in page says so.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_issuer = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let app = TestApp::spawn_with(|config| oidc(config, &dead_issuer)).await;
    let login = browser().get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SERVICE_UNAVAILABLE);
    let page = login.text().await.unwrap();
    assert!(page.contains("cannot be reached right now"), "{page}");

    // Down after someone signed in, and while another is at the provider.
    let (app, _provider, server) = signed_in_app(|_| {}).await;
    let ada = browser();
    assert_eq!(sign_in(&app, &ada).await.status(), StatusCode::SEE_OTHER);
    let midway = browser();
    let callback = to_callback(&app, &midway).await;
    server.abort();
    let _ = server.await;
    let answer = midway.get(callback).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("cannot be reached right now")
    );
    // Ada goes on chatting.
    let chat = app.create_chat(&ada, "Still here?").await;
    let reply = app.send_and_wait(&ada, chat, "And again").await;
    assert_eq!(
        app.store_message(reply).await.status,
        app::store::Status::Complete
    );
}

#[tokio::test]
async fn signing_out_ends_one_browser_and_everywhere_ends_all() {
    let (app, provider, _server) = signed_in_app(|_| {}).await;
    let laptop = browser();
    let phone = browser();
    sign_in(&app, &laptop).await;
    sign_in(&app, &phone).await;
    let token = phone.post(app.url("/api/v1/tokens")).send().await.unwrap();
    assert_eq!(token.status(), 201);
    let token: serde_json::Value = token.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let with_token = |path: &str| {
        reqwest::Client::new()
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(with_token("/api/v1/chats").await.unwrap().status(), 200);

    // This browser only; the page after it links to the provider's own sign-out.
    let out = post_form(&laptop, &app.url("/logout"), &[], false).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&out), "/signed-out");
    assert_eq!(
        laptop.get(app.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(phone.get(app.url("/")).send().await.unwrap().status(), 200);
    let page = unescaped(laptop.get(app.url("/signed-out")).send().await.unwrap()).await;
    assert!(page.contains("You are signed out"));
    let provider_logout = format!("{}/logout?", provider.issuer);
    assert!(page.contains(&provider_logout), "{page}");
    assert!(page.contains("client_id=chat-app"), "{page}");
    assert!(
        page.contains(
            "post_logout_redirect_uri=http%3A%2F%2Fchat.test%2Fsigned-out%3Ffrom%3Dprovider"
        ),
        "{page}"
    );
    // Back from the provider, no second link.
    let back = unescaped(
        laptop
            .get(app.url("/signed-out?from=provider"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(!back.contains(&provider_logout));

    // Everywhere: the phone and its API token too.
    let everywhere = post_form(&phone, &app.url("/logout/everywhere"), &[], false).await;
    assert_eq!(everywhere.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        phone.get(app.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(with_token("/api/v1/chats").await.unwrap().status(), 401);
    // Signing in again shows the same chats as before.
    sign_in(&app, &laptop).await;
    assert_eq!(laptop.get(app.url("/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn admins_see_who_uses_what_and_a_disabled_user_is_out_at_once() {
    let (app, provider, _server) = signed_in_app(|config| {
        config.admin_emails = "Ada@Example.org".into();
        config.admin_groups = "chat-admins".into();
    })
    .await;
    let ada = browser();
    sign_in(&app, &ada).await;
    provider.sign_in_as(person("bob"));
    let bob = browser();
    sign_in(&app, &bob).await;
    let chat = app.create_chat(&bob, "Bob's question").await;
    app.send_and_wait(&bob, chat, "And another").await;

    // Bob is no admin.
    let page = bob
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("for the app&#x27;s admins") || page.contains("for the app's admins"),
        "{page}"
    );
    let bob_id = app
        .store
        .find_user_by_subject(&format!("oidc:{} sub-bob", provider.issuer))
        .await
        .unwrap()
        .unwrap()
        .id;
    let refused = post_form(
        &bob,
        &app.url(&format!("/admin/users/{bob_id}/disable")),
        &[],
        false,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    // Ada is, by address: she sees both users and what Bob used.
    let page = ada
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("ada@example.org") && page.contains("bob@example.org"),
        "{page}"
    );
    let row = page.split(&format!("id=\"user-{bob_id}\"")).nth(1).unwrap();
    let row = row.split("</tr>").next().unwrap();
    let numbers: Vec<&str> = row
        .split("<td class=\"number\">")
        .skip(1)
        .map(|cell| cell.split('<').next().unwrap())
        .collect();
    assert_eq!(numbers[0], "2", "replies today: {row}");
    assert_eq!(numbers[2], "2", "replies this month: {row}");
    assert!(
        numbers[1].parse::<i64>().unwrap() > 0,
        "tokens today: {row}"
    );

    // Nobody disables themselves (another admin can).
    let ada_id = app
        .store
        .find_user_by_subject(&format!("oidc:{} sub-ada", provider.issuer))
        .await
        .unwrap()
        .unwrap()
        .id;
    let own = post_form(
        &ada,
        &app.url(&format!("/admin/users/{ada_id}/disable")),
        &[],
        false,
    )
    .await;
    assert_eq!(own.status(), StatusCode::CONFLICT);
    // Disabled: Bob's browser is out at once, and he cannot sign in again.
    let disabled = post_form(
        &ada,
        &app.url(&format!("/admin/users/{bob_id}/disable")),
        &[],
        false,
    )
    .await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        bob.get(app.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let again = sign_in(&app, &browser()).await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(again.text().await.unwrap().contains("disabled"));
    // Enabled again, he signs in and finds his chat.
    post_form(
        &ada,
        &app.url(&format!("/admin/users/{bob_id}/enable")),
        &[],
        false,
    )
    .await;
    let bob = browser();
    assert_eq!(sign_in(&app, &bob).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(chats_of(&app, &bob).await.len(), 1);

    // An admin by group: the operator's controls are theirs, no token needed.
    let mut carol = person("carol");
    carol.groups = vec!["staff".into(), "chat-admins".into()];
    provider.sign_in_as(carol);
    let carol = browser();
    sign_in(&app, &carol).await;
    let page = carol
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Model library") && page.contains("bob@example.org"));
    // The token form is not how admins sign in with accounts.
    let form = post_form(&carol, &app.url("/admin"), &[("token", "x")], false).await;
    assert_eq!(form.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn over_a_quota_a_send_is_refused_until_midnight_and_nothing_is_stored() {
    let (app, provider, _server) =
        signed_in_app(|config| config.user_daily_replies = Some(2)).await;
    let ada = browser();
    sign_in(&app, &ada).await;
    let chat = app.create_chat(&ada, "One").await;
    app.send_and_wait(&ada, chat, "Two").await;
    let messages = app.count("messages").await;
    let refused = post_form(
        &ada,
        &app.url(&format!("/chats/{chat}/messages")),
        &[("content", "Three")],
        false,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("today&#x27;s 2 replies") || page.contains("today's 2 replies"),
        "{page}"
    );
    assert!(page.contains("midnight UTC"));
    assert_eq!(app.count("messages").await, messages, "nothing stored");
    // Regenerate and a new chat count too; another person has their own quota.
    let regenerate = post_form(
        &ada,
        &app.url(&format!("/chats/{chat}/regenerate")),
        &[],
        false,
    )
    .await;
    assert_eq!(regenerate.status(), StatusCode::TOO_MANY_REQUESTS);
    provider.sign_in_as(person("bob"));
    let bob = browser();
    sign_in(&app, &bob).await;
    app.create_chat(&bob, "Mine").await;

    // Tokens: once the model has written the day's tokens, the next send waits for tomorrow.
    let (app, _provider, _server) =
        signed_in_app(|config| config.user_daily_tokens = Some(3)).await;
    let ada = browser();
    sign_in(&app, &ada).await;
    let chat = app.create_chat(&ada, "Write a few words").await;
    let refused = post_form(
        &ada,
        &app.url(&format!("/chats/{chat}/messages")),
        &[("content", "More")],
        false,
    )
    .await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("today&#x27;s 3 tokens")
    );
}

#[tokio::test]
async fn a_browsers_anonymous_chats_are_offered_to_the_account() {
    // First anonymous: a chat.
    let data_dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::test_config(data_dir.path()).await;
    let fake = testkit::FakeLm::start(testkit::Knobs::default()).await;
    config.lm_api_url = Some(fake.url());
    let app = TestApp::start(config, data_dir).await;
    let client = browser();
    let chat = app.create_chat(&client, "From before accounts").await;
    let (mut config, data_dir) = app.stop().await;
    // Then accounts are switched on: the same browser signs in.
    let (provider, _server) = StandIn::start().await;
    oidc(&mut config, &provider.issuer);
    let app = TestApp::start(config, data_dir).await;
    let answer = sign_in(&app, &client).await;
    assert_eq!(location(&answer), "/account/bring");
    let offer = client
        .get(app.url("/account/bring"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        offer.contains("This browser has 1 chat from before you signed in"),
        "{offer}"
    );
    assert!(chats_of(&app, &client).await.is_empty());
    let brought = post_form(&client, &app.url("/account/bring"), &[], false).await;
    assert_eq!(brought.status(), StatusCode::SEE_OTHER);
    let chats = chats_of(&app, &client).await;
    assert_eq!(chats.len(), 1);
    assert_eq!(chats[0]["id"], chat.to_string());
    // Its messages came along; the offer is gone.
    let page = client
        .get(app.url(&format!("/chats/{chat}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("From before accounts"));
    let again = client.get(app.url("/account/bring")).send().await.unwrap();
    assert_eq!(location(&again), "/");
    // Another device of the account sees it too.
    let phone = browser();
    sign_in(&app, &phone).await;
    assert_eq!(chats_of(&app, &phone).await.len(), 1);
}

fn header_mode(config: &mut Config, trusted: &str) {
    config.auth_mode = app::accounts::AuthMode::Header;
    config.auth_header = "X-Forwarded-Email".into();
    config.trusted_proxies = app::accounts::parse_trusted_proxies(trusted).unwrap();
}

#[tokio::test]
async fn a_trusted_proxy_names_the_user_and_nobody_else_may() {
    let app = TestApp::spawn_with(|config| header_mode(config, "127.0.0.1/32, 10.0.0.0/8")).await;
    let as_user = |client: &Client, email: &str, path: &str| {
        client
            .get(app.url(path))
            .header("X-Forwarded-Email", email)
            .send()
    };
    let ada_laptop = browser();
    let created = ada_laptop
        .post(app.url("/chats"))
        .header("X-Forwarded-Email", "ada@example.org")
        .form(&[("content", "Via the proxy")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    // Another browser of Ada's sees it, Bob does not.
    let phone = browser();
    let listed: serde_json::Value = as_user(&phone, "ADA@example.org", "/api/v1/chats")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["chats"].as_array().unwrap().len(), 1);
    let listed: serde_json::Value = as_user(&browser(), "bob@example.org", "/api/v1/chats")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(listed["chats"].as_array().unwrap().is_empty());
    // Without the header the proxy named nobody.
    let nobody = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.count("users").await, 2);

    // From an address that is not the proxy's, the header counts for nothing.
    let app = TestApp::spawn_with(|config| header_mode(config, "10.0.0.0/8")).await;
    let refused = browser()
        .get(app.url("/"))
        .header("X-Forwarded-Email", "ada@example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test]
async fn accounts_need_their_settings_at_start() {
    let mut config = Config::defaults();
    config.auth_mode = app::accounts::AuthMode::Oidc;
    let error = config.account_settings().unwrap_err().to_string();
    assert!(error.contains("OIDC_ISSUER"), "{error}");
    config.oidc_issuer = "http://id.test".into();
    config.oidc_client_id = "x".into();
    let error = config.account_settings().unwrap_err().to_string();
    assert!(error.contains("PUBLIC_URL"), "{error}");
    let mut config = Config::defaults();
    config.auth_mode = app::accounts::AuthMode::Header;
    config.auth_header = "X-Forwarded-Email".into();
    let error = config.account_settings().unwrap_err().to_string();
    assert!(error.contains("TRUSTED_PROXIES"), "{error}");
}

/// npm's oauth2-mock-server (`e2e/oidc-provider.mjs`), on a free port, stopped on drop.
struct ThirdPartyProvider {
    child: std::process::Child,
    issuer: String,
}

impl Drop for ThirdPartyProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The provider, or `None` outside CI when its npm package is not installed (`.ci/run` installs
/// it: `cd e2e && npm ci`); in CI its absence fails the test.
async fn third_party_provider(people: &str) -> Option<ThirdPartyProvider> {
    let installed = crate::helpers::repo_path("e2e/node_modules/oauth2-mock-server").exists();
    if !installed {
        crate::helpers::missing("oauth2-mock-server (cd e2e && npm ci)");
        return None;
    }
    let port = {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        free.local_addr().unwrap().port()
    };
    let child = std::process::Command::new("node")
        .arg(crate::helpers::repo_path("e2e/oidc-provider.mjs"))
        .env("PORT", port.to_string())
        .env("PEOPLE", people)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("node");
    let provider = ThirdPartyProvider {
        child,
        issuer: format!("http://127.0.0.1:{port}"),
    };
    let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
    for _ in 0..100 {
        if let Ok(answer) = reqwest::get(&discovery).await
            && answer.status() == 200
        {
            return Some(provider);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("oauth2-mock-server did not start");
}

/// The sign-in through the third-party provider, as `name` (its `login_hint`).
async fn sign_in_as(app: &TestApp, client: &Client, name: &str) -> reqwest::Response {
    let login = client.get(app.url("/login")).send().await.unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    let authorize = format!("{}&login_hint={name}", location(&login));
    assert!(
        authorize.contains("code_challenge_method=S256"),
        "{authorize}"
    );
    let at_provider = client.get(authorize).send().await.unwrap();
    assert_eq!(at_provider.status(), StatusCode::FOUND);
    let back = location(&at_provider).replacen(PUBLIC_URL, &app.base, 1);
    client.get(back).send().await.unwrap()
}

#[tokio::test]
async fn a_provider_we_did_not_write_signs_a_team_in() {
    let people = r#"{"alice": {"groups": ["chat-admins"]}, "bob": {"groups": ["staff"]}}"#;
    let Some(provider) = third_party_provider(people).await else {
        return;
    };
    let issuer = provider.issuer.clone();
    let app = TestApp::spawn_with(|config| {
        oidc(config, &issuer);
        config.admin_groups = "chat-admins".into();
    })
    .await;
    let alice = browser();
    let answer = sign_in_as(&app, &alice, "alice").await;
    assert_eq!(
        answer.status(),
        StatusCode::SEE_OTHER,
        "{}",
        answer.text().await.unwrap()
    );
    let chat = app.create_chat(&alice, "Hello from Alice").await;
    let page = alice
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Signed in as <strong>alice</strong>"),
        "{page}"
    );

    // Alice on a second browser sees her chat; Bob sees none of it.
    let tablet = browser();
    sign_in_as(&app, &tablet, "alice").await;
    assert_eq!(chats_of(&app, &tablet).await[0]["id"], chat.to_string());
    let bob = browser();
    assert_eq!(
        sign_in_as(&app, &bob, "bob").await.status(),
        StatusCode::SEE_OTHER
    );
    assert!(chats_of(&app, &bob).await.is_empty());

    // The provider's groups made Alice an admin, not Bob.
    let admin = alice
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(admin.contains("bob@example.org"), "{admin}");
    let not = bob
        .get(app.url("/admin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!not.contains("alice@example.org"));

    // Signed out here, the page links to the provider's end-session endpoint, which sends the
    // browser back.
    let out = post_form(&alice, &app.url("/logout"), &[], false).await;
    assert_eq!(location(&out), "/signed-out");
    assert_eq!(
        alice.get(app.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let page = unescaped(alice.get(app.url("/signed-out")).send().await.unwrap()).await;
    let end = page
        .split("href=\"")
        .find(|h| h.starts_with(&format!("{issuer}/endsession?")))
        .unwrap();
    let end = end.split('"').next().unwrap();
    let back = alice.get(end).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::FOUND);
    assert_eq!(
        location(&back),
        format!("{PUBLIC_URL}/signed-out?from=provider")
    );
}

#[tokio::test]
async fn the_api_says_who_is_signed_in_and_admins_manage_users() {
    let (app, provider, _server) = signed_in_app(|config| {
        config.admin_emails = "ada@example.org".into();
        config.user_daily_replies = Some(5);
    })
    .await;
    let ada = browser();
    sign_in(&app, &ada).await;
    app.create_chat(&ada, "Counted").await;
    let me: serde_json::Value = ada
        .get(app.url("/api/v1/account"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "ada@example.org");
    assert_eq!(me["admin"], true);
    assert_eq!(me["replies_today"], 1);
    assert_eq!(me["daily_replies"], 5);
    assert!(me["daily_tokens"].is_null());

    provider.sign_in_as(person("bob"));
    let bob = browser();
    sign_in(&app, &bob).await;
    let refused = bob.get(app.url("/api/v1/users")).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let users: serde_json::Value = ada
        .get(app.url("/api/v1/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = users["users"].as_array().unwrap().clone();
    assert_eq!(users.len(), 2);
    let bob_id = users
        .iter()
        .find(|u| u["email"] == "bob@example.org")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let disabled = ada
        .post(app.url(&format!("/api/v1/users/{bob_id}/disable")))
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    let disabled: serde_json::Value = disabled.json().await.unwrap();
    assert_eq!(disabled["disabled"], true);
    assert_eq!(
        bob.get(app.url("/api/v1/account"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let enabled: serde_json::Value = ada
        .post(app.url(&format!("/api/v1/users/{bob_id}/enable")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(enabled["disabled"], false);
    // Without accounts there is no account.
    let anonymous = TestApp::spawn().await;
    assert_eq!(anonymous.get("/api/v1/account").await.status(), 404);
}

#[tokio::test]
async fn a_disabled_user_and_a_quota_hold_on_every_replica() {
    let (provider, _server) = StandIn::start().await;
    let issuer = provider.issuer.clone();
    let first = TestApp::spawn_with(|config| {
        oidc(config, &issuer);
        config.admin_emails = "ada@example.org".into();
        config.user_daily_replies = Some(3);
        config.session_key = Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            [7u8; 64],
        ));
    })
    .await;
    // A second replica: the same database and key, another name and data directory.
    let mut config = first.config.clone();
    config.replica_name = Some("second-replica".into());
    let second = TestApp::start(config, tempfile::tempdir().unwrap()).await;

    let ada = browser();
    sign_in(&first, &ada).await;
    provider.sign_in_as(person("bob"));
    let bob = browser();
    assert_eq!(sign_in(&second, &bob).await.status(), StatusCode::SEE_OTHER);
    // Bob's sign-in on the second replica holds on the first (the cookie is the host's).
    let chat = first.create_chat(&bob, "One, on the first").await;
    second.send_and_wait(&bob, chat, "Two, on the second").await;
    first.send_and_wait(&bob, chat, "Three, on the first").await;
    // The quota is counted in the database: the fourth is refused wherever it goes.
    for app in [&first, &second] {
        let refused = post_form(
            &bob,
            &app.url(&format!("/chats/{chat}/messages")),
            &[("content", "Four")],
            false,
        )
        .await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    // Disabled through the first replica: the second refuses him within a second.
    assert_eq!(bob.get(second.url("/")).send().await.unwrap().status(), 200);
    let bob_id = first
        .store
        .find_user_by_subject(&format!("oidc:{issuer} sub-bob"))
        .await
        .unwrap()
        .unwrap()
        .id;
    let disabled = post_form(
        &ada,
        &first.url(&format!("/admin/users/{bob_id}/disable")),
        &[],
        false,
    )
    .await;
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    let started = std::time::Instant::now();
    loop {
        let status = bob.get(second.url("/")).send().await.unwrap().status();
        if status == StatusCode::SEE_OTHER {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "still {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        bob.get(first.url("/")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
}

/// A page's text with the escapes of `/` and `&` in its attributes undone.
async fn unescaped(response: reqwest::Response) -> String {
    response
        .text()
        .await
        .unwrap()
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}
