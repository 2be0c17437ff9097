//! Issue 17, item 8: the app installs as a PWA: every page links a manifest whose icons exist at
//! the sizes it says, and no service worker caches anything (so no private page is ever kept on
//! the device).
use serde_json::Value;

use crate::helpers::TestApp;

/// A PNG's width and height, from its header.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test]
async fn every_page_links_a_manifest_whose_icons_exist_at_their_sizes() {
    let app = TestApp::spawn().await;
    let chat = app.create_chat(&app.client, "hello").await;
    for path in [
        "/".to_owned(),
        format!("/chats/{chat}"),
        "/chats".to_owned(),
    ] {
        let page = app.get(&path).await.text().await.unwrap();
        assert!(
            page.contains(r#"<link rel="manifest" href="/static/manifest.webmanifest">"#),
            "{path}"
        );
        assert!(page.contains(r#"<meta name="theme-color""#), "{path}");
    }

    // Without a cookie, as a browser fetches a manifest.
    let anonymous = reqwest::Client::new();
    let response = anonymous
        .get(app.url("/static/manifest.webmanifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/manifest+json"
    );
    let manifest: Value = response.json().await.unwrap();
    assert_eq!(manifest["start_url"], "/");
    assert_eq!(manifest["display"], "standalone");
    assert!(manifest["name"].as_str().is_some_and(|n| !n.is_empty()));
    let icons = manifest["icons"].as_array().unwrap();
    let mut png_sizes = Vec::new();
    for icon in icons {
        let src = icon["src"].as_str().unwrap();
        let response = anonymous.get(app.url(src)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{src}");
        let kind = icon["type"].as_str().unwrap();
        assert_eq!(response.headers()["content-type"], kind, "{src}");
        let bytes = response.bytes().await.unwrap();
        if kind == "image/png" {
            let (w, h) = png_size(&bytes);
            assert_eq!(icon["sizes"], format!("{w}x{h}"), "{src}");
            png_sizes.push(w);
        }
    }
    // What browsers ask of an installable app: a 192 and a 512 pixel icon.
    assert!(
        png_sizes.contains(&192) && png_sizes.contains(&512),
        "{png_sizes:?}"
    );
    assert!(
        icons.iter().any(|i| i["purpose"] == "maskable"),
        "an icon for masks"
    );

    // No service worker anywhere: nothing registers one.
    let script = app.get("/static/app.js").await.text().await.unwrap();
    assert!(!script.contains("serviceWorker"));
}
