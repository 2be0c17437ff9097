//! Downloads: the layout they land in, resuming, retrying, checksums, the hub's refusals.
use super::*;
use crate::hub::download::{content_range_start, normalize_etag};

#[tokio::test]
async fn first_download_lands_in_the_hub_cache_layout() {
    let (hub, endpoint) = start(Knobs::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let progress = Progress::default();

    let path = fetch_model(&settings(&endpoint, cache.path()), &progress)
        .await
        .unwrap();

    let repo = repo_dir(cache.path());
    assert_eq!(path, repo.join("snapshots").join(COMMIT).join(FILE));
    assert_eq!(
        std::fs::read_link(&path).unwrap(),
        Path::new("../../blobs").join(&hub.sha)
    );
    assert_eq!(std::fs::read(&path).unwrap(), hub.model);
    assert_eq!(
        std::fs::read(repo.join("blobs").join(&hub.sha)).unwrap(),
        hub.model
    );
    assert_eq!(entries(&repo.join("blobs")), [hub.sha.as_str()]);
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_eq!(entries(&repo.join("refs")), ["main"]);
    assert_eq!(progress.percent(), Some(100));
    assert_eq!(progress.downloaded.load(Ordering::SeqCst), SIZE as u64);
    assert_eq!(progress.total.load(Ordering::SeqCst), SIZE as u64);
    let seen = hub.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].method, Method::HEAD);
    assert_eq!(seen[0].path, format!("/{REPO}/resolve/main/{FILE}"));
    assert_eq!(seen[1].method, Method::GET);
    assert_eq!(seen[1].range, None);
}

#[tokio::test]
async fn cut_connection_is_resumed_with_range() {
    const CUT: usize = 100_000;
    let (hub, endpoint) = start(Knobs {
        cut_after: Some(CUT),
        cuts: 1,
        ..Knobs::default()
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let progress = Progress::default();

    let path = fetch_model(&settings(&endpoint, cache.path()), &progress)
        .await
        .unwrap();

    assert_eq!(std::fs::read(&path).unwrap(), hub.model);
    let gets = hub.cdn_gets();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=100000-"));
    // Each byte crossed the wire once: the first part was not fetched again.
    assert_eq!(hub.sent(), SIZE as u64);
    assert_eq!(progress.percent(), Some(100));
    assert_eq!(
        entries(&repo_dir(cache.path()).join("blobs")),
        [hub.sha.as_str()]
    );
}

#[tokio::test]
async fn incomplete_file_from_an_earlier_run_is_resumed() {
    const HAVE: usize = 123_456;
    let (hub, endpoint) = start(Knobs::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let blobs = repo_dir(cache.path()).join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        blobs.join(format!("{}.incomplete", hub.sha)),
        &hub.model[..HAVE],
    )
    .unwrap();

    let path = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
        .await
        .unwrap();

    assert_eq!(std::fs::read(&path).unwrap(), hub.model);
    let gets = hub.cdn_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range.as_deref(), Some("bytes=123456-"));
    assert_eq!(hub.sent(), (SIZE - HAVE) as u64);
    assert_eq!(entries(&blobs), [hub.sha.as_str()]);
}

#[tokio::test]
async fn server_ignoring_range_starts_over_from_zero() {
    let (hub, endpoint) = start(Knobs {
        ignore_range: true,
        ..Knobs::default()
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let blobs = repo_dir(cache.path()).join("blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(
        blobs.join(format!("{}.incomplete", hub.sha)),
        &hub.model[..1000],
    )
    .unwrap();

    let path = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
        .await
        .unwrap();

    // Appending the whole file after the first 1000 bytes would fail the size check.
    assert_eq!(std::fs::read(&path).unwrap(), hub.model);
    assert_eq!(hub.cdn_gets()[0].range.as_deref(), Some("bytes=1000-"));
}

#[tokio::test]
async fn retries_give_up_and_keep_the_bytes_so_far() {
    let (hub, endpoint) = start(Knobs {
        cut_after: Some(1000),
        cuts: usize::MAX,
        ..Knobs::default()
    })
    .await;
    let cache = tempfile::tempdir().unwrap();

    let error = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            HubError::Download {
                attempts: 5,
                bytes: 5000,
                ..
            }
        ),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("next start resumes"), "{text}");
    let gets = hub.cdn_gets();
    assert_eq!(gets.len(), 5);
    assert_eq!(gets[4].range.as_deref(), Some("bytes=4000-"));
    let partial = repo_dir(cache.path())
        .join("blobs")
        .join(format!("{}.incomplete", hub.sha));
    assert_eq!(std::fs::read(partial).unwrap(), hub.model[..5000]);
    assert!(entries(&repo_dir(cache.path()).join("snapshots")).is_empty());
}

#[tokio::test]
async fn checksum_mismatch_is_refused_and_the_file_deleted() {
    let mut wrong = model_bytes();
    wrong[SIZE / 2] ^= 0xff;
    let wrong_sha = sha256_hex(&wrong);
    let (hub, endpoint) = start(Knobs {
        served: Some(wrong),
        ..Knobs::default()
    })
    .await;
    let cache = tempfile::tempdir().unwrap();

    let error = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
        .await
        .unwrap_err();

    assert!(
        matches!(error, HubError::ChecksumMismatch { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!(
            "the download of {FILE} did not match the hub's checksum (expected {}, got {wrong_sha})",
            hub.sha
        )),
        "{text}"
    );
    assert!(text.contains("deleted"), "{text}");
    let repo = repo_dir(cache.path());
    assert!(entries(&repo.join("blobs")).is_empty());
    assert!(entries(&repo.join("snapshots")).is_empty());
    assert!(entries(&repo.join("refs")).is_empty());
}

#[tokio::test]
async fn missing_file_is_a_404_naming_repo_and_file() {
    let (_hub, endpoint) = start(Knobs::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&endpoint, cache.path());
    settings.file = "absent.gguf".to_owned();

    let error = fetch_model(&settings, &Progress::default())
        .await
        .unwrap_err();

    assert!(matches!(error, HubError::NotFound { .. }), "{error:?}");
    let text = error.to_string();
    for needle in [REPO, "absent.gguf", "LM_MODEL_REPO", "LM_MODEL_FILE"] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
}

#[tokio::test]
async fn token_is_required_and_sent_to_the_hub_only() {
    let (hub, endpoint) = start(Knobs {
        token: Some("hf_secret"),
        // The same server under another host name: a CDN elsewhere, for the client.
        cdn_host: Some("localhost"),
        ..Knobs::default()
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&endpoint, cache.path());

    let error = fetch_model(&settings, &Progress::default())
        .await
        .unwrap_err();
    assert!(matches!(error, HubError::TokenNeeded { .. }), "{error:?}");
    assert!(error.to_string().contains("HF_TOKEN"), "{error}");

    settings.token = Some("hf_wrong".to_owned());
    let error = fetch_model(&settings, &Progress::default())
        .await
        .unwrap_err();
    assert!(matches!(error, HubError::TokenRefused { .. }), "{error:?}");
    assert!(error.to_string().contains("HF_TOKEN"), "{error}");
    assert!(!error.to_string().contains("hf_wrong"), "{error}");

    settings.token = Some("hf_secret".to_owned());
    assert!(!format!("{settings:?}").contains("hf_secret"));
    let path = fetch_model(&settings, &Progress::default()).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), hub.model);
    let seen = hub.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    let head = &seen[2];
    assert_eq!(head.method, Method::HEAD);
    assert_eq!(head.auth.as_deref(), Some("Bearer hf_secret"));
    let gets = hub.cdn_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].auth, None);
}

#[tokio::test]
async fn unreachable_endpoint_says_what_to_set() {
    let cache = tempfile::tempdir().unwrap();
    let endpoint = closed_endpoint();

    let error = fetch_model(&settings(&endpoint, cache.path()), &Progress::default())
        .await
        .unwrap_err();

    assert!(matches!(error, HubError::Unreachable { .. }), "{error:?}");
    let text = error.to_string();
    for needle in [
        &format!("the hub at {endpoint} is not reachable"),
        "LM_MODEL_PATH",
        "LM_API_URL",
        "HF_ENDPOINT",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
}

#[test]
fn progress_percent() {
    let progress = Progress::default();
    assert_eq!(progress.percent(), None);
    progress.total.store(200, Ordering::SeqCst);
    assert_eq!(progress.percent(), Some(0));
    progress.downloaded.store(99, Ordering::SeqCst);
    assert_eq!(progress.percent(), Some(49));
    progress.downloaded.store(300, Ordering::SeqCst);
    assert_eq!(progress.percent(), Some(100));
}

#[test]
fn etags_and_ranges_are_parsed() {
    assert_eq!(normalize_etag("W/\"abc\""), "abc");
    assert_eq!(normalize_etag("\"abc\""), "abc");
    assert_eq!(normalize_etag("abc"), "abc");
    assert_eq!(content_range_start("bytes 100-299/300"), Some(100));
    assert_eq!(content_range_start("items 1-2/3"), None);
}
