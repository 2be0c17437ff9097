//! An attacker's view: security headers, cross-site requests, rate limits and per-session stream
//! limits, each against the real router.
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use testkit::Knobs;

use crate::helpers::{TestApp, browser};

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy"))
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    assert_eq!(headers["referrer-policy"], "same-origin", "{what}");
    assert_eq!(headers["x-frame-options"], "DENY", "{what}");
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "").await;
    for (path, status) in [
        ("/".to_string(), 200),
        (format!("/chats/{chat}"), 200),
        ("/static/app.js".to_string(), 200),
        ("/healthz".to_string(), 200),
        ("/no/such/page".to_string(), 404),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), status, "{path}");
        assert_security_headers(response.headers(), &path);
    }
    let fragment = app
        .post_htmx(&format!("/chats/{chat}/rename"), &[("title", "Renamed")])
        .await;
    assert_eq!(fragment.status(), 200);
    assert_security_headers(fragment.headers(), "htmx fragment");
    let error = app.post_htmx(&format!("/chats/{chat}/rename"), &[]).await;
    assert!(error.status().is_client_error());
    assert_security_headers(error.headers(), "htmx error");
}

#[tokio::test]
async fn pages_have_no_inline_script_for_the_policy_to_block() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "hello").await;
    for path in ["/".to_string(), format!("/chats/{chat}")] {
        let html = app.get(&path).await.text().await.unwrap();
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap();
            assert!(
                tag.contains("src=\"/static/"),
                "{path}: inline script {tag}"
            );
        }
        assert!(!html.contains(" onclick="), "{path}");
        assert!(!html.contains("<style"), "{path}");
        assert!(!html.contains(" style="), "{path}");
        assert!(!html.contains("hx-on"), "{path}: hx-on needs eval");
    }
}

/// Every state-changing route, tried from another site: 403 with a readable message, and the
/// data is unchanged. The same requests from our own pages work.
#[tokio::test]
async fn cross_site_requests_are_refused_and_change_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.lm_api_url = Some("http://127.0.0.1:9/v1".into()); // replies fail fast; nothing streams
    })
    .await;
    let chat = app.create_chat(&app.client, "").await;
    let reply = app.send(&app.client, chat, "real").await;
    app.finished(reply).await;
    let host = app.addr.to_string();
    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/chats".into(), vec![("content", "forged")]),
        (
            format!("/chats/{chat}/messages"),
            vec![("content", "forged")],
        ),
        (format!("/chats/{chat}/rename"), vec![("title", "forged")]),
        (format!("/chats/{chat}/delete"), vec![]),
        (format!("/chats/{chat}/regenerate"), vec![]),
        (format!("/chats/{chat}/messages/{reply}/stop"), vec![]),
        ("/profile".into(), vec![("display_name", "forged")]),
    ];
    let forged_headers: [&[(&str, &str)]; 3] = [
        &[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "https://evil.example")],
    ];
    let (chats, messages, sessions) = (
        app.count("chats").await,
        app.count("messages").await,
        app.count("sessions").await,
    );
    for (path, form) in &attempts {
        for headers in forged_headers {
            for htmx in [false, true] {
                let mut request = app.client.post(app.url(path)).form(form);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                if htmx {
                    request = request.header("hx-request", "true");
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 403, "{path} {headers:?}");
                let body = response.text().await.unwrap();
                assert!(body.contains("another site"), "{path}: {body}");
            }
        }
    }
    assert_eq!(app.count("chats").await, chats);
    assert_eq!(app.count("messages").await, messages);
    assert_eq!(app.count("sessions").await, sessions);
    let page = app
        .get(&format!("/chats/{chat}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("forged"));

    // Our own pages: fetch metadata says same-origin, or Origin matches Host.
    let own = app
        .client
        .post(app.url(&format!("/chats/{chat}/rename")))
        .header("sec-fetch-site", "same-origin")
        .header("origin", format!("http://{host}"))
        .form(&[("title", "Mine")])
        .send()
        .await
        .unwrap();
    assert!(own.status().is_redirection(), "{}", own.status());
    let own = app
        .client
        .post(app.url(&format!("/chats/{chat}/rename")))
        .header("origin", format!("http://{host}"))
        .header("hx-request", "true")
        .form(&[("title", "Mine again")])
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    // A cross-site GET (a link) is fine: it changes nothing.
    let link = app
        .client
        .get(app.url(&format!("/chats/{chat}")))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(link.status(), 200);
}

/// A refusal's `Retry-After`, in seconds.
fn retry_after(refused: &reqwest::Response) -> u64 {
    refused.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn sends_beyond_the_rate_limit_get_429_with_retry_after_and_store_nothing() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = true;
        c.send_rate_per_session = "2/min".parse().unwrap();
    })
    .await;
    let chat = app.create_chat(&app.client, "").await;
    app.send_and_wait(&app.client, chat, "one").await;
    app.send_and_wait(&app.client, chat, "two").await;
    let before = app.count("messages").await;

    let refused = app
        .post(&format!("/chats/{chat}/messages"), &[("content", "three")])
        .await;
    assert_eq!(refused.status(), 429);
    let retry_after = retry_after(&refused);
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let page = refused.text().await.unwrap();
    assert!(page.contains("Too many messages"), "{page}");
    assert!(page.contains("nothing you wrote was lost"), "{page}");

    // htmx shows it in the flash region of the page.
    let refused = app
        .post_htmx(&format!("/chats/{chat}/messages"), &[("content", "three")])
        .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["hx-retarget"], "#flash");
    assert!(refused.headers().contains_key(RETRY_AFTER));
    // Regenerate costs a model call too, so it counts as a send.
    let regenerate = app.post(&format!("/chats/{chat}/regenerate"), &[]).await;
    assert_eq!(regenerate.status(), 429);
    assert_eq!(app.count("messages").await, before);

    // Another visitor (another session, same address) is not affected.
    let other = browser();
    let other_chat = app.create_chat(&other, "").await;
    app.send(&other, other_chat, "hi").await;
}

#[tokio::test]
async fn chat_creation_is_limited_per_session_and_per_address() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = true;
        c.chat_rate_per_session = "2/min".parse().unwrap();
        c.chat_rate_per_address = "3/min".parse().unwrap();
    })
    .await;
    app.create_chat(&app.client, "").await;
    app.create_chat(&app.client, "").await;
    let chats = app.count("chats").await;
    let refused = app.post("/chats", &[("content", "")]).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.text().await.unwrap().contains("Too many new chats"));
    assert_eq!(app.count("chats").await, chats);

    // A new session from the same address gets one more (the address allows 3), then not.
    let second = browser();
    app.create_chat(&second, "").await;
    let refused =
        crate::helpers::post_form(&second, &app.url("/chats"), &[("content", "")], false).await;
    assert_eq!(refused.status(), 429);
}

#[tokio::test]
async fn guessing_tokens_closes_the_address_to_tokens_even_the_right_one() {
    const ADMIN: &str = "the-operators-token-of-some-length";
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = true;
        c.admin_token = Some(ADMIN.into());
        c.trust_proxy_headers = true;
    })
    .await;
    let from = |address: &'static str| {
        move |request: reqwest::RequestBuilder| request.header("x-real-ip", address)
    };
    let guesser = from("192.0.2.7");
    let right_token = |request: reqwest::RequestBuilder| {
        request
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"id": "none"}))
    };
    // The right token is accepted before any guess: 409 (llama-server serves the models, so
    // there is no library to change), not 401/403.
    let put = || app.client.put(app.url("/api/v1/models/default"));
    assert_eq!(
        right_token(guesser(put())).send().await.unwrap().status(),
        409
    );

    // Wrong bearers and wrong sign-ins alike count, up to the allowance ...
    let guesses = 10;
    for i in 0..guesses {
        let response = if i % 2 == 0 {
            guesser(app.client.get(app.url("/api/v1/chats")))
                .bearer_auth(format!("guess-{i}"))
                .send()
                .await
                .unwrap()
        } else {
            guesser(app.client.post(app.url("/admin")))
                .form(&[("token", format!("guess-{i}"))])
                .send()
                .await
                .unwrap()
        };
        assert!(
            [401, 403].contains(&response.status().as_u16()),
            "guess {i}"
        );
    }
    // ... then the address may present no token, not even the right one, so a guesser never
    // learns which guess was right; the answer says how long to wait.
    let refused = right_token(guesser(put())).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    let retry_after = retry_after(&refused);
    assert!((500..=600).contains(&retry_after), "{retry_after}");
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("Too many wrong tokens")
    );
    let sign_in = guesser(app.client.post(app.url("/admin")))
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), 429);
    // The guesser's pages without a token still work, and other addresses are untouched.
    let page = guesser(app.client.get(app.url("/"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let other = from("192.0.2.8");
    assert_eq!(
        right_token(other(put())).send().await.unwrap().status(),
        409
    );
}

#[tokio::test]
async fn the_client_address_comes_from_x_real_ip_only_when_trusted() {
    for trusted in [false, true] {
        let app = TestApp::spawn_with(|c| {
            c.rate_limits = true;
            c.chat_rate_per_address = "1/min".parse().unwrap();
            c.trust_proxy_headers = trusted;
        })
        .await;
        let mut statuses = Vec::new();
        for (i, address) in ["192.0.2.1", "192.0.2.2"].into_iter().enumerate() {
            let client = browser();
            let response = client
                .post(app.url("/chats"))
                .header("x-real-ip", address)
                .form(&[("content", "")])
                .send()
                .await
                .unwrap();
            statuses.push((i, response.status().as_u16()));
        }
        // Trusted: two addresses, one chat each. Not trusted: both are the TCP peer, 127.0.0.1,
        // so the second is refused (a client cannot pick its own address).
        let expected = if trusted { [303, 303] } else { [303, 429] };
        assert_eq!(
            statuses.iter().map(|s| s.1).collect::<Vec<_>>(),
            expected,
            "trusted: {trusted}"
        );
    }
}

#[tokio::test]
async fn a_session_may_hold_only_so_many_streams_open() {
    let app = TestApp::spawn_with(|c| c.max_streams_per_session = 2).await;
    app.fake_lm.set(|k| {
        *k = Knobs {
            hang: true,
            ..Knobs::default()
        }
    });
    let chat = app.create_chat(&app.client, "").await;
    let reply = app.send(&app.client, chat, "wait").await;
    let url = app.url(&format!("/chats/{chat}/messages/{reply}/stream"));
    let first = app.client.get(&url).send().await.unwrap();
    let second = app.client.get(&url).send().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = app.client.get(&url).send().await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key(RETRY_AFTER));
    assert!(
        third
            .text()
            .await
            .unwrap()
            .contains("Too many reply streams")
    );
    // Another session has its own allowance.
    let other = browser();
    other.get(app.url("/")).send().await.unwrap();
    let foreign = other.get(&url).send().await.unwrap();
    assert_eq!(foreign.status(), 404, "not 429: the limit is per session");

    // A closed stream gives its slot back.
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        let response = app.client.get(&url).send().await.unwrap();
        if response.status() == 200 {
            reopened = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "the slot was not given back");
    drop(second);
}
