//! MCP servers (issue 32): the protocol's reference server `mcp-server-time` (PyPI), and our
//! own misbehaving one (testkit/fixtures/mcp/misbehaving_server.py: fails, errs, floods,
//! hangs, crashes, lists a tool with a bad schema, adds a tool). Both come from the virtualenv
//! `.ci/install-mcp.sh` makes; `MCP_PYTHON` names its python (CI sets it).
use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};
use testkit::FakeCall;

use crate::helpers::{TestApp, repo_path};

/// The virtualenv's python, or `None` (outside CI) when it is not there.
fn mcp_python() -> Option<PathBuf> {
    match std::env::var_os("MCP_PYTHON") {
        Some(python) => Some(PathBuf::from(python)),
        None => {
            crate::helpers::missing("MCP_PYTHON=$(bash .ci/install-mcp.sh)");
            None
        }
    }
}

/// Writes an `mcpServers` file into `dir`; its path.
fn servers_file(dir: &tempfile::TempDir, servers: Value) -> PathBuf {
    let path = dir.path().join("mcp.json");
    std::fs::write(&path, json!({ "mcpServers": servers }).to_string()).unwrap();
    path
}

/// The misbehaving server as a `mcpServers` entry, noting what it gets in `log`.
fn misbehaving(python: &std::path::Path, log: &std::path::Path) -> Value {
    json!({
        "command": python,
        "args": [repo_path("testkit/fixtures/mcp/misbehaving_server.py")],
        "env": {"MCP_LOG": log, "GIVEN": "yes"},
    })
}

/// Waits until each named server is in `state`.
async fn wait_for(app: &TestApp, wanted: &[(&str, &str)]) {
    for _ in 0..300 {
        let servers = app.state.tools.servers();
        let reached = wanted
            .iter()
            .all(|(name, state)| servers.iter().any(|s| s.name == *name && s.state == *state));
        if reached {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("servers not {wanted:?}: {:?}", app.state.tools.servers());
}

async fn steps(app: &TestApp, chat: uuid::Uuid) -> Vec<Value> {
    let messages = app.api_messages(chat).await;
    messages.last().unwrap()["tool_calls"]
        .as_array()
        .unwrap()
        .clone()
}

fn offered(app: &TestApp, request: usize) -> Vec<String> {
    app.fake_lm.log(|l| {
        l.requests[request]["tools"]
            .as_array()
            .map(|tools| {
                tools
                    .iter()
                    .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    })
}

#[tokio::test]
async fn the_reference_time_server_is_called_by_a_reply() {
    let Some(python) = mcp_python() else { return };
    let time_server = python.with_file_name("mcp-server-time");
    let dir = tempfile::tempdir().unwrap();
    let path = servers_file(
        &dir,
        json!({"time": {"command": time_server, "args": ["--local-timezone", "UTC"]}}),
    );
    let app = TestApp::spawn_with(|c| c.mcp_servers = Some(path)).await;
    wait_for(&app, &[("time", "running")]).await;
    app.fake_lm.set(|k| {
        k.tool_rounds = vec![vec![FakeCall::new(
            "get_current_time",
            r#"{"timezone": "Europe/Paris"}"#,
        )]];
    });
    let chat = app
        .create_chat(&app.client, "What time is it in Paris?")
        .await;
    let tools = offered(&app, 0);
    assert!(tools.contains(&"get_current_time".to_owned()), "{tools:?}");
    assert!(tools.contains(&"convert_time".to_owned()), "{tools:?}");
    let steps = steps(&app, chat).await;
    assert_eq!(steps[0]["is_error"], false, "{steps:?}");
    let result = steps[0]["result"].as_str().unwrap();
    assert!(result.contains("Europe/Paris"), "{result}");
    // What the model was given back is the server's answer, fenced.
    let given = app.fake_lm.log(|l| l.requests[1]["messages"].clone());
    let last = given.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["role"], "tool");
    assert!(last["content"].as_str().unwrap().contains("Europe/Paris"));
    // The tools page and the API name the server and its tools.
    let page = app.get_text("/tools").await;
    assert!(
        page.contains("<code>time</code>") && page.contains("running"),
        "{page}"
    );
    let api: Value = app.get_json("/api/v1/tools").await;
    assert_eq!(api["servers"][0]["name"], "time");
    assert_eq!(api["servers"][0]["state"], "running");
}

#[tokio::test]
async fn a_server_that_fails_errs_and_floods_is_told_to_the_model_and_keeps_its_secrets() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("odd.log");
    let path = servers_file(&dir, json!({"odd": misbehaving(&python, &log)}));
    let app = TestApp::spawn_with(|c| {
        c.mcp_servers = Some(path);
        c.tool_result_bytes = 8192;
    })
    .await;
    wait_for(&app, &[("odd", "running")]).await;
    app.fake_lm.set(|k| {
        k.tool_rounds = vec![
            vec![FakeCall::new("fail", "{}")],
            vec![FakeCall::new("rpc_error", "{}")],
            vec![FakeCall::new("huge", "{}")],
        ];
    });
    let chat = app.create_chat(&app.client, "Misbehave").await;
    let tools = offered(&app, 0);
    assert!(tools.contains(&"echo".to_owned()), "{tools:?}");
    assert!(!tools.contains(&"broken_schema".to_owned()), "{tools:?}");
    let status = app.state.tools.servers();
    assert!(
        status[0].skipped[0].starts_with("broken_schema: its input schema is not an object schema"),
        "{status:?}"
    );
    let steps = steps(&app, chat).await;
    let result = |i: usize| steps[i]["result"].as_str().unwrap().to_owned();
    assert_eq!(steps[0]["is_error"], true);
    assert_eq!(result(0), "the tool failed on purpose");
    assert_eq!(steps[1]["is_error"], true);
    assert!(result(1).contains("internal trouble"), "{}", result(1));
    assert_eq!(steps[2]["is_error"], false);
    assert!(result(2).len() <= 8192 && result(2).contains("[cut: the result was 3000000 bytes"));
    let messages = app.api_messages(chat).await;
    assert_eq!(messages.last().unwrap()["status"], "complete");
    // The server was given what its entry says, and none of the app's environment.
    let noted = std::fs::read_to_string(&log).unwrap();
    assert!(noted.contains("env GIVEN=yes"), "{noted}");
    assert!(noted.contains("env SESSION_KEY=<unset>"), "{noted}");
    assert!(noted.contains("env CARGO_MANIFEST_DIR=<unset>"), "{noted}");
    // Its stderr went to the log, not to the person.
    let page = app.get_text(&format!("/chats/{chat}")).await;
    assert!(!page.contains("misbehaving server starting"));
}

#[tokio::test]
async fn a_server_that_crashes_mid_call_is_restarted_and_one_that_cannot_start_is_named() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("odd.log");
    let path = servers_file(
        &dir,
        json!({
            "odd": misbehaving(&python, &log),
            "missing": {"command": "/nonexistent/mcp-server"},
        }),
    );
    let app = TestApp::spawn_with(|c| c.mcp_servers = Some(path.clone())).await;
    wait_for(&app, &[("odd", "running"), ("missing", "failed")]).await;
    let missing = app
        .state
        .tools
        .servers()
        .into_iter()
        .find(|s| s.name == "missing")
        .unwrap();
    assert!(
        missing
            .error
            .as_deref()
            .unwrap()
            .contains("/nonexistent/mcp-server could not be started"),
        "{missing:?}"
    );
    let page = app.get_text("/tools").await;
    assert!(page.contains("could not be started"), "{page}");

    app.fake_lm
        .set(|k| k.tool_rounds = vec![vec![FakeCall::new("crash", "{}")]]);
    let chat = app.create_chat(&app.client, "Crash it").await;
    let crashed = steps(&app, chat).await;
    assert_eq!(crashed[0]["is_error"], true);
    assert!(
        crashed[0]["result"]
            .as_str()
            .unwrap()
            .contains("failed during the call"),
        "{crashed:?}"
    );
    // Restarted after a pause; the next call works.
    wait_for(&app, &[("odd", "running")]).await;
    app.fake_lm.set(|k| {
        k.tool_rounds = vec![vec![FakeCall::new("echo", r#"{"text": "again"}"#)]];
    });
    let reply = app.send_and_wait(&app.client, chat, "Once more").await;
    let again = app.store_message(reply).await.tool_steps();
    assert_eq!(again[0].result.as_deref(), Some("echo: again"), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("got initialize")
            .count(),
        2
    );
}

#[tokio::test]
async fn the_timeout_and_stop_cancel_a_hanging_call_with_a_notification() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("odd.log");
    let path = servers_file(&dir, json!({"odd": misbehaving(&python, &log)}));
    let app = TestApp::spawn_with(|c| {
        c.mcp_servers = Some(path.clone());
        c.tool_timeout = Duration::from_millis(500);
    })
    .await;
    wait_for(&app, &[("odd", "running")]).await;
    app.fake_lm
        .set(|k| k.tool_rounds = vec![vec![FakeCall::new("hang", "{}")]]);
    let chat = app.create_chat(&app.client, "Hang").await;
    let timed_out = steps(&app, chat).await;
    assert!(
        timed_out[0]["result"]
            .as_str()
            .unwrap()
            .contains("did not answer within 500ms"),
        "{timed_out:?}"
    );
    let cancelled = |n: usize| {
        let log = log.clone();
        async move {
            for _ in 0..100 {
                let noted = std::fs::read_to_string(&log).unwrap_or_default();
                if noted.matches("cancelled ").count() >= n {
                    return noted;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!(
                "no cancellation: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    };
    let noted = cancelled(1).await;
    // The cancellation names the call that hung.
    let call_id = noted
        .lines()
        .find_map(|l| l.strip_prefix("call hang id "))
        .unwrap();
    assert!(noted.contains(&format!("cancelled {call_id}")), "{noted}");

    // Stop while it hangs: the reply ends at once, and the server is told.
    let reply = app.send(&app.client, chat, "Hang again").await;
    for _ in 0..100 {
        if !app.store_message(reply).await.tool_steps().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.post(&format!("/chats/{chat}/messages/{reply}/stop"), &[])
        .await;
    let stopped = app.finished(reply).await;
    assert_eq!(stopped.status, app::store::Status::Stopped);
    cancelled(2).await;
}

#[tokio::test]
async fn clashing_names_get_their_servers_name_and_new_tools_appear_when_listed_again() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = servers_file(
        &dir,
        json!({
            "one": misbehaving(&python, &dir.path().join("one.log")),
            "two": misbehaving(&python, &dir.path().join("two.log")),
        }),
    );
    let app = TestApp::spawn_with(|c| c.mcp_servers = Some(path.clone())).await;
    wait_for(&app, &[("one", "running"), ("two", "running")]).await;
    app.fake_lm.set(|k| {
        k.tool_rounds = vec![vec![FakeCall::new("one_add_tool", "{}")]];
    });
    let chat = app.create_chat(&app.client, "Add a tool").await;
    let tools = offered(&app, 0);
    assert!(
        tools.contains(&"one_echo".to_owned()) && tools.contains(&"two_echo".to_owned()),
        "{tools:?}"
    );
    assert!(!tools.contains(&"echo".to_owned()), "{tools:?}");
    assert_eq!(steps(&app, chat).await[0]["result"], "added");
    // tools/list_changed: listed again, the new tool (on one server only) under its own name.
    for _ in 0..100 {
        if app
            .state
            .tools
            .definitions()
            .iter()
            .any(|d| d.name == "late_tool")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.fake_lm
        .set(|k| k.tool_rounds = vec![vec![FakeCall::new("late_tool", "{}")]]);
    let reply = app.send_and_wait(&app.client, chat, "Use it").await;
    let used = app.store_message(reply).await.tool_steps();
    assert_eq!(used[0].result.as_deref(), Some("late"), "{used:?}");
}

#[tokio::test]
async fn a_server_marked_approve_waits_for_allow_or_deny_and_a_denial_is_told_to_the_model() {
    let Some(python) = mcp_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("careful.log");
    let mut careful = misbehaving(&python, &log);
    careful["approve"] = true.into();
    let path = servers_file(&dir, json!({ "careful": careful }));
    let app = TestApp::spawn_with(|c| c.mcp_servers = Some(path)).await;
    wait_for(&app, &[("careful", "running")]).await;
    let chat = app.create_chat(&app.client, "first").await;
    app.fake_lm.set(|k| {
        k.tool_rounds = vec![vec![FakeCall::new("echo", r#"{"text": "hi"}"#)]];
    });
    let waiting = |reply: uuid::Uuid| {
        let app = &app;
        async move {
            for _ in 0..300 {
                let steps = app.store_message(reply).await.tool_steps();
                if steps.first().and_then(|s| s.approval) == Some(app::domain::Approval::Pending) {
                    return steps[0].id.clone();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("no call waits for approval");
        }
    };

    // The call waits: not made, the page asks, and no one else may answer.
    let reply = app.send(&app.client, chat, "Echo hi").await;
    let call = waiting(reply).await;
    let action = format!("/chats/{chat}/messages/{reply}/tool_calls/{call}");
    let page = app.get_text(&format!("/chats/{chat}")).await;
    // (The template escapes the `/`s.)
    let escaped = action.replace('/', "&#x2f;");
    assert!(page.contains(&format!("action=\"{escaped}\"")), "{page}");
    assert!(page.contains("class=\"tool-step waiting\""));
    assert!(page.contains("value=\"allow\"") && page.contains("value=\"deny\""));
    assert!(!std::fs::read_to_string(&log).unwrap().contains("call echo"));
    let stranger = crate::helpers::browser();
    let refused = crate::helpers::post_form(
        &stranger,
        &app.url(&action),
        &[("decision", "allow")],
        false,
    )
    .await;
    assert_eq!(refused.status(), 404);
    // Allowed (a plain form): the call is made and the reply goes on.
    let allowed = app.post(&action, &[("decision", "allow")]).await;
    assert_eq!(allowed.status(), 303);
    let done = app.finished(reply).await;
    assert_eq!(done.status, app::store::Status::Complete);
    let steps = done.tool_steps();
    assert_eq!(steps[0].approval, Some(app::domain::Approval::Allowed));
    assert_eq!(steps[0].result.as_deref(), Some("echo: hi"));
    // Answering again: the call no longer waits.
    assert_eq!(
        app.post(&action, &[("decision", "deny")]).await.status(),
        409
    );

    // Denied through the API: the call is never made and the model is told.
    let reply = app.send(&app.client, chat, "Echo hi again").await;
    let call = waiting(reply).await;
    let denied = app
        .client
        .post(app.url(&format!("/api/v1/messages/{reply}/tool_calls/{call}")))
        .json(&json!({"allow": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 204);
    let done = app.finished(reply).await;
    let steps = done.tool_steps();
    assert_eq!(steps[0].approval, Some(app::domain::Approval::Denied));
    assert!(steps[0].is_error);
    assert!(
        steps[0].result.as_deref().unwrap().contains("denied"),
        "{steps:?}"
    );
    let told = app
        .fake_lm
        .log(|l| l.requests.back().unwrap()["messages"].clone());
    let last = told.as_array().unwrap().last().unwrap().clone();
    assert!(
        last["content"]
            .as_str()
            .unwrap()
            .contains("The person denied this call"),
        "{last}"
    );
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("call echo")
            .count(),
        1
    );
}

#[tokio::test]
async fn a_streamable_http_server_is_reached_with_its_headers() {
    let Some(python) = mcp_python() else { return };
    let port = testkit::app_process::free_port().unwrap();
    let _server = tokio::process::Command::new(&python)
        .arg(repo_path("testkit/fixtures/mcp/http_server.py"))
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    let dir = tempfile::tempdir().unwrap();
    let path = servers_file(
        &dir,
        json!({
            "adder": {"type": "http", "url": url, "headers": {"Authorization": "Bearer test-token"}},
            "locked": {"url": url},
        }),
    );
    let app = TestApp::spawn_with(|c| c.mcp_servers = Some(path)).await;
    wait_for(&app, &[("adder", "running"), ("locked", "failed")]).await;
    let locked = app
        .state
        .tools
        .servers()
        .into_iter()
        .find(|s| s.name == "locked")
        .unwrap();
    assert!(locked.error.is_some(), "{locked:?}");
    app.fake_lm.set(|k| {
        k.tool_rounds = vec![vec![FakeCall::new("add", r#"{"a": 2, "b": 3}"#)]];
    });
    let chat = app.create_chat(&app.client, "Two and three?").await;
    let steps = steps(&app, chat).await;
    assert_eq!(steps[0]["is_error"], false, "{steps:?}");
    assert_eq!(steps[0]["result"], "5");
}
