//! llama-server's own tool calls, live (issue 32): our llama-server build (`LLAMA_SERVER`) with
//! `--jinja` on SmolLM2 whose GGUF carries Qwen 2.5's tool-aware template (`TOOLS_MODEL`,
//! made by `.ci/tools-model.sh`), read by the app's client. The recordings in
//! testkit/fixtures/llama-server-tools/ came from this pair; here the app reads what the
//! server streams now: a call (the server's grammar holds it to the offered tool), and after
//! its result, an answer from it.
use std::path::PathBuf;

use app::{
    engine::Engine,
    lm::{LmClient, LmSettings, PromptMessage},
};

use crate::helpers::{
    direct::{generate_offering, options, the_weather_call, user, weather_chat, weather_tool},
    llama_server::LlamaServer,
};

/// The server on the tools model, or `None` (outside CI) when either is not given.
async fn tools_server(log: PathBuf) -> Option<LlamaServer> {
    let binary = std::env::var_os("LLAMA_SERVER");
    let model = std::env::var("TOOLS_MODEL").ok();
    let (Some(binary), Some(model)) = (binary, model) else {
        crate::helpers::missing(
            "LLAMA_SERVER=$(bash .ci/build-llama-server.sh) and TOOLS_MODEL=$(bash .ci/tools-model.sh)",
        );
        return None;
    };
    assert!(
        std::path::Path::new(&model).is_file(),
        "TOOLS_MODEL={model:?} is no file"
    );
    let args = [
        "-m",
        &model,
        "--alias",
        "smollm2-qwen25-tools",
        "--jinja",
        "-c",
        "2048",
        "--parallel",
        "1",
        "-t",
        "1",
    ];
    Some(LlamaServer::start(binary.as_ref(), &args, log).await)
}

fn engine_on(server: &LlamaServer) -> Engine {
    let client = LmClient::new(LmSettings {
        api_url: format!("http://{}/v1", server.address),
        api_key: None,
        model: Some("smollm2-qwen25-tools".into()),
        context_tokens: None,
    })
    .unwrap();
    Engine::Server(Box::new(client))
}

#[tokio::test]
async fn llama_servers_own_calls_are_read_and_its_answer_follows_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = tools_server(dir.path().join("llama-server.log")).await else {
        return;
    };
    let engine = engine_on(&server);
    let tools = [weather_tool("get_weather")];

    // A call, as the server streams it (tool_calls deltas), gathered whole.
    let done = generate_offering(
        &engine,
        weather_chat("get_weather"),
        options(64, 0.0),
        &tools,
    )
    .await;
    let (call, arguments) = the_weather_call(&done);
    assert!(!call.id.is_empty());
    assert_eq!(arguments["city"], "Paris", "{arguments}");

    // The next round: the call and its result in the prompt, the tools still offered.
    let mut chat = weather_chat("get_weather");
    let mut called = PromptMessage {
        role: "assistant",
        ..user("")
    };
    called.tool_calls = vec![call.clone()];
    let mut result = user(r#"{"temp_c": 18, "sky": "sunny"}"#);
    result.role = "tool";
    result.tool_call_id = Some(call.id.clone());
    chat.extend([called, result]);
    let answer = generate_offering(&engine, chat, options(48, 0.0), &tools).await;
    assert!(answer.calls.is_empty(), "{:?}", answer.calls);
    assert_eq!(answer.finish.as_deref(), Some("stop"), "{:?}", answer.text);
    assert!(
        answer.text.contains("sunny") || answer.text.contains("18"),
        "{:?}",
        answer.text
    );
}
