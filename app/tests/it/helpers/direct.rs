//! A reply driven through an engine's interface directly (no app around it): the options,
//! messages and tools the engine tests give it, and the reply read to its end.
use std::time::{Duration, Instant};

use app::{
    engine::Engine,
    lm::{LmEvent, PromptMessage, ReplyOptions, Timings, ToolCall, ToolDefinition},
};

pub fn options(max_tokens: u32, temperature: f32) -> ReplyOptions {
    ReplyOptions {
        model: None,
        max_tokens,
        temperature,
        top_p: 0.95,
        seed: Some(42),
    }
}

pub fn user(text: &str) -> PromptMessage {
    PromptMessage {
        role: "user",
        images: Vec::new(),
        content: text.into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// A reply, read to its end.
pub struct Finished {
    pub text: String,
    pub finish: Option<String>,
    pub completion_tokens: u32,
    pub timings: Option<Timings>,
    pub first_token_at: Option<Instant>,
    pub ended_at: Instant,
    pub calls: Vec<ToolCall>,
}

// Only the embedded engine's tests read replies offered no tools.
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
pub async fn generate(
    engine: &Engine,
    prompt: Vec<PromptMessage>,
    options: ReplyOptions,
) -> Finished {
    generate_offering(engine, prompt, options, &[]).await
}

/// [`generate`] with tools offered.
pub async fn generate_offering(
    engine: &Engine,
    prompt: Vec<PromptMessage>,
    options: ReplyOptions,
    tools: &[ToolDefinition],
) -> Finished {
    let mut stream = engine
        .stream_chat(&prompt, &options, tools)
        .await
        .expect("a stream");
    let mut done = Finished {
        calls: Vec::new(),
        text: String::new(),
        finish: None,
        completion_tokens: 0,
        timings: None,
        first_token_at: None,
        ended_at: Instant::now(),
    };
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the engine answers")
        .expect("no error")
    {
        match event {
            LmEvent::Text(piece) => {
                done.first_token_at.get_or_insert_with(Instant::now);
                done.text.push_str(&piece);
            }
            LmEvent::Finish(reason) => done.finish = Some(reason),
            LmEvent::Usage(usage) => done.completion_tokens = usage.completion_tokens,
            LmEvent::Timings(t) => done.timings = Some(t),
            LmEvent::ToolCalls(calls) => done.calls.extend(calls),
            LmEvent::Reasoning(_) | LmEvent::ModelLoading(_) | LmEvent::ModelReady => {}
        }
    }
    done.ended_at = Instant::now();
    done
}

/// A chat whose history shows the model one call of `shown`, then asks again: how the 135M
/// model learns to call (it calls nothing unprompted), as in the llama-server recordings.
pub fn weather_chat(shown: &str) -> Vec<PromptMessage> {
    let mut asked = PromptMessage {
        role: "assistant",
        ..user("")
    };
    asked.tool_calls = vec![ToolCall {
        id: "call_london".into(),
        name: shown.into(),
        arguments: r#"{"city": "London"}"#.into(),
    }];
    vec![user("Weather in London?"), asked, user("Weather in Paris?")]
}

pub fn weather_tool(name: &str) -> ToolDefinition {
    ToolDefinition {
        name: name.into(),
        description: "Get the current weather in a city".into(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        }),
    }
}

/// The one call of `get_weather` that `done` ended with (and no call markup in its text); its
/// arguments as JSON, a `city` in them.
pub fn the_weather_call(done: &Finished) -> (ToolCall, serde_json::Value) {
    assert_eq!(
        done.finish.as_deref(),
        Some("tool_calls"),
        "{:?}",
        done.text
    );
    assert_eq!(done.calls.len(), 1, "{:?}", done.calls);
    let call = done.calls[0].clone();
    assert_eq!(call.name, "get_weather");
    let arguments: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
    assert!(arguments["city"].is_string(), "{arguments}");
    assert!(!done.text.contains("tool_call"), "{:?}", done.text);
    (call, arguments)
}
