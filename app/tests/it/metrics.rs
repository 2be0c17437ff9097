//! Prometheus metrics on `METRICS_ADDR`: each metric moves when it should. The real `app` binary
//! (a process has one metrics recorder, so the in-process apps of other tests cannot share it).
use std::{collections::BTreeMap, time::Duration};

use testkit::{FakeLm, Knobs, app_process::free_port};
use uuid::Uuid;

use crate::helpers::{
    browser, fresh_database_url, reply_id, repo_path, spawn_app, sse::EventReader,
};

/// A scrape: each series (`name{label="value",...}`, labels sorted) and its value.
async fn scrape(url: &str) -> BTreeMap<String, f64> {
    let response = reqwest::get(url)
        .await
        .expect("the metrics listener answers");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let body = response.text().await.unwrap();
    let mut series = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (key, value) = line.rsplit_once(' ').expect("a series and its value");
        let key = match key.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => key.to_owned(),
        };
        series.insert(key, value.parse().expect("a number"));
    }
    series
}

fn value(series: &BTreeMap<String, f64>, key: &str) -> f64 {
    series.get(key).copied().unwrap_or(0.0)
}

/// Waits until the scrape satisfies `check`.
async fn until(url: &str, what: &str, check: impl Fn(&BTreeMap<String, f64>) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let series = scrape(url).await;
        if check(&series) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not seen in 10 s; the scrape: {series:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_metric_moves_when_it_should_and_only_the_metrics_listener_serves_them() {
    let data = tempfile::tempdir().unwrap();
    let tokens: Vec<String> = (0..30).map(|i| format!("t{i} ")).collect();
    let fake = FakeLm::start(Knobs {
        tokens: tokens.clone(),
        token_delay: Duration::from_millis(40),
        ..Knobs::default()
    })
    .await;
    let port = free_port().unwrap();
    let mut app = spawn_app(
        data.path(),
        &[
            ("DATABASE_URL", fresh_database_url(data.path()).await),
            ("LM_API_URL", fake.url()),
            ("METRICS_ADDR", format!("127.0.0.1:{port}")),
            ("MAX_CONCURRENT_GENERATIONS", "1".into()),
            ("TITLE_GENERATION", "off".into()),
        ],
    )
    .await;
    app.wait_ready(Duration::from_secs(30)).await;
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let base = app.base.clone();
    let client = browser();

    // Requests, by the matched route (never the path with its ids) and status.
    assert_eq!(
        client
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let missing = client
        .get(format!("{base}/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let series = scrape(&metrics).await;
    assert_eq!(
        value(
            &series,
            r#"http_requests_total{method="GET",route="/",status="200"}"#
        ),
        1.0,
        "{series:#?}"
    );
    assert_eq!(
        value(
            &series,
            r#"http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        1.0
    );
    assert!(value(&series, r#"http_request_duration_seconds_count{route="/"}"#) >= 1.0);
    assert!(
        value(
            &series,
            r#"http_request_duration_seconds_bucket{le="+Inf",route="/"}"#
        ) >= 1.0
    );
    let pool = value(&series, r#"db_pool_connections{state="idle"}"#)
        + value(&series, r#"db_pool_connections{state="active"}"#);
    assert!(pool >= 1.0, "the pool has a connection: {series:#?}");
    // The app's own port does not serve them.
    let exposed = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(exposed.status(), 404);

    // A reply in progress, a second one queued behind it (one slot), one stream open.
    let chat = |client: reqwest::Client, base: String| async move {
        let created = client
            .post(format!("{base}/chats"))
            .form(&[("content", "")])
            .send()
            .await
            .unwrap();
        let location = created.headers()["location"].to_str().unwrap().to_owned();
        location
            .trim_start_matches("/chats/")
            .parse::<Uuid>()
            .unwrap()
    };
    let (first_chat, second_chat) = (
        chat(client.clone(), base.clone()).await,
        chat(client.clone(), base.clone()).await,
    );
    let send = |chat: Uuid| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let sent = client
                .post(format!("{base}/chats/{chat}/messages"))
                .form(&[("content", "count for me")])
                .send()
                .await
                .unwrap();
            assert_eq!(sent.status(), 303);
            reply_id(&sent)
        }
    };
    let first = send(first_chat).await;
    let stream_url = format!("{base}/chats/{first_chat}/messages/{first}/stream");
    let (status, _, reader) = EventReader::open(&client, &stream_url, None).await;
    assert_eq!(status, 200);
    let mut reader = reader.unwrap();
    until(&metrics, "the first reply generating", |s| {
        value(s, "chat_replies_in_progress") == 1.0
    })
    .await;
    let second = send(second_chat).await;
    until(&metrics, "the second reply queued", |s| {
        value(s, "chat_reply_queue_depth") == 1.0
    })
    .await;
    let series = scrape(&metrics).await;
    assert_eq!(value(&series, "chat_streams_open"), 1.0, "{series:#?}");
    assert_eq!(
        value(&series, r#"chat_replies_total{status="complete"}"#),
        0.0
    );

    // Both end: counted by status, with their tokens and first tokens; the gauges go back.
    let events = reader.all().await;
    assert_eq!(events.last().unwrap().event, "done");
    drop(reader);
    let second_stream = format!("{base}/chats/{second_chat}/messages/{second}/stream");
    let (_, _, reader) = EventReader::open(&client, &second_stream, None).await;
    reader.unwrap().all().await;
    until(&metrics, "both replies counted", |s| {
        value(s, r#"chat_replies_total{status="complete"}"#) == 2.0
    })
    .await;
    until(&metrics, "the streams closed", |s| {
        value(s, "chat_streams_open") == 0.0
    })
    .await;
    let series = scrape(&metrics).await;
    assert_eq!(value(&series, "chat_replies_in_progress"), 0.0);
    assert_eq!(value(&series, "chat_reply_queue_depth"), 0.0);
    assert_eq!(
        value(&series, "chat_time_to_first_token_seconds_count"),
        2.0
    );
    // The fake model reports 21 prompt tokens and one completion token per piece.
    assert_eq!(value(&series, r#"chat_tokens_total{kind="prompt"}"#), 42.0);
    assert_eq!(
        value(&series, r#"chat_tokens_total{kind="completion"}"#),
        2.0 * tokens.len() as f64
    );
    // The queued reply waited for the first: its first token came after a whole reply.
    let slow = value(
        &series,
        r#"chat_time_to_first_token_seconds_bucket{le="0.5"}"#,
    );
    assert!(
        slow <= 1.0,
        "the queued reply's first token took over 0.5 s: {series:#?}"
    );

    // A stopped reply is counted as stopped.
    let third = send(first_chat).await;
    until(&metrics, "the third reply generating", |s| {
        value(s, "chat_replies_in_progress") == 1.0
    })
    .await;
    let stop = client
        .post(format!("{base}/chats/{first_chat}/messages/{third}/stop"))
        .send()
        .await
        .unwrap();
    assert_eq!(stop.status(), 303);
    until(&metrics, "the stop counted", |s| {
        value(s, r#"chat_replies_total{status="stopped"}"#) == 1.0
            && value(s, "chat_replies_in_progress") == 0.0
    })
    .await;

    // The Grafana dashboard charts every metric the app exports, and nothing it does not.
    let body = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    let exported: std::collections::BTreeSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(exported.len(), 9, "{exported:?}");
    let dashboard = std::fs::read_to_string(repo_path("deploy/grafana/chat-app.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect();
    for name in &exported {
        assert!(
            exprs.iter().any(|e| e.contains(name)),
            "{name} is on no panel of the dashboard"
        );
    }
    for expr in &exprs {
        assert!(
            exported.iter().any(|name| expr.contains(name)),
            "the dashboard asks for a metric the app does not export: {expr}"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_metrics_port_in_use_stops_start_up_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let fake = FakeLm::start(Knobs::default()).await;
    let mut app = spawn_app(
        data.path(),
        &[
            ("DATABASE_URL", fresh_database_url(data.path()).await),
            ("LM_API_URL", fake.url()),
            ("METRICS_ADDR", format!("127.0.0.1:{port}")),
        ],
    )
    .await;
    let status = tokio::time::timeout(Duration::from_secs(20), app.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(!status.success());
    let log = app.log();
    assert!(log.contains("cannot listen for metrics on"), "{log}");
}
