//! The cache: files found there (also when another tool put them there), offline use, names
//! that would leave it.
use super::*;

#[tokio::test]
async fn second_call_is_served_from_the_cache_without_requests() {
    let (hub, endpoint) = start(Knobs::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let settings = settings(&endpoint, cache.path());
    let first = fetch_model(&settings, &Progress::default()).await.unwrap();
    let requests = hub.seen().len();

    let progress = Progress::default();
    let second = fetch_model(&settings, &progress).await.unwrap();

    assert_eq!(second, first);
    assert_eq!(hub.seen().len(), requests);
    assert_eq!(progress.percent(), Some(100));
}

#[tokio::test]
async fn offline_with_a_cache_makes_no_requests() {
    let (hub, endpoint) = start(Knobs::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&endpoint, cache.path());
    let online = fetch_model(&settings, &Progress::default()).await.unwrap();
    let requests = hub.seen().len();

    settings.offline = true;
    let offline = fetch_model(&settings, &Progress::default()).await.unwrap();

    assert_eq!(offline, online);
    assert_eq!(hub.seen().len(), requests);
}

#[tokio::test]
async fn offline_without_a_cache_says_what_to_set() {
    let (hub, endpoint) = start(Knobs::default()).await;
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&endpoint, cache.path());
    settings.offline = true;

    let error = fetch_model(&settings, &Progress::default())
        .await
        .unwrap_err();

    assert!(
        matches!(error, HubError::OfflineNotCached { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    for needle in [
        &format!("{REPO}/{FILE}"),
        &cache.path().display().to_string(),
        "HF_HUB_OFFLINE",
        "LM_MODEL_PATH",
        "LM_API_URL",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert!(hub.seen().is_empty());
}

/// A cache laid out by huggingface-cli (or llama-server -hf) is used as it is.
#[tokio::test]
async fn cache_made_by_another_tool_is_reused() {
    let cache = tempfile::tempdir().unwrap();
    let repo = repo_dir(cache.path());
    let model = model_bytes();
    let sha = sha256_hex(&model);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("blobs").join(&sha), &model).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), COMMIT).unwrap();
    let snapshot = repo.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink(Path::new("../../blobs").join(&sha), snapshot.join(FILE)).unwrap();
    // Any request would fail: nothing listens there.
    let mut settings = settings(&closed_endpoint(), cache.path());

    let by_branch = fetch_model(&settings, &Progress::default()).await.unwrap();
    settings.revision = COMMIT.to_owned();
    std::fs::remove_file(repo.join("refs/main")).unwrap();
    let by_commit = fetch_model(&settings, &Progress::default()).await.unwrap();

    assert_eq!(by_branch, snapshot.join(FILE));
    assert_eq!(by_commit, snapshot.join(FILE));
}

#[tokio::test]
async fn file_in_a_subfolder_gets_a_deeper_relative_link() {
    let file = "quants/q4/tiny-q4_k_m.gguf";
    let (hub, endpoint) = start(Knobs {
        file: Some(file),
        ..Knobs::default()
    })
    .await;
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&endpoint, cache.path());
    settings.file = file.to_owned();

    let path = fetch_model(&settings, &Progress::default()).await.unwrap();

    let repo = repo_dir(cache.path());
    assert_eq!(path, repo.join("snapshots").join(COMMIT).join(file));
    assert_eq!(
        std::fs::read_link(&path).unwrap(),
        Path::new("../../../../blobs").join(&hub.sha)
    );
    assert_eq!(std::fs::read(&path).unwrap(), hub.model);
}

#[tokio::test]
async fn names_that_would_leave_the_cache_are_refused() {
    let cache = tempfile::tempdir().unwrap();
    let endpoint = closed_endpoint();
    for (repo, file, revision) in [
        ("acme", FILE, "main"),
        ("acme/../x", FILE, "main"),
        (REPO, "../escape.gguf", "main"),
        (REPO, "sub//x.gguf", "main"),
        (REPO, FILE, "../main"),
    ] {
        let mut settings = settings(&endpoint, cache.path());
        settings.repo = repo.to_owned();
        settings.file = file.to_owned();
        settings.revision = revision.to_owned();
        let error = fetch_model(&settings, &Progress::default())
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                HubError::InvalidRepo(_) | HubError::InvalidFile(_) | HubError::InvalidRevision(_)
            ),
            "{repo} {file} {revision}: {error:?}"
        );
    }
    assert!(entries(cache.path()).is_empty());
}

#[test]
fn default_cache_dir_precedence() {
    let cache = Some(Path::new("/c"));
    let hf_home = Some(Path::new("/h"));
    let home = Some(Path::new("/home/u"));
    assert_eq!(default_cache_dir(cache, hf_home, home), Path::new("/c"));
    assert_eq!(default_cache_dir(None, hf_home, home), Path::new("/h/hub"));
    assert_eq!(
        default_cache_dir(None, None, home),
        Path::new("/home/u/.cache/huggingface/hub")
    );
    assert_eq!(
        default_cache_dir(Some(Path::new("")), Some(Path::new("")), home),
        Path::new("/home/u/.cache/huggingface/hub")
    );
    assert_eq!(
        default_cache_dir(None, None, None),
        Path::new(".cache/huggingface/hub")
    );
}
