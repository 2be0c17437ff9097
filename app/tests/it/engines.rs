//! The same behaviour on both engines: the fake llama-server (the recorded format) and the
//! embedded llama.cpp engine on the tiny random model (one engine per test process: llama.cpp's
//! backend starts once). Then what only the embedded engine has: continuous batching, Stop
//! freeing a sequence within a step, prefix reuse, exact token counts, chat templates (on
//! SmolLM2, a real instruct model), and a file that is not a model.
use std::time::Duration;

use app::{config::Config, store::Status};
use uuid::Uuid;

use crate::helpers::{
    TestApp,
    sse::{EventReader, token_text},
};

#[cfg(feature = "embedded")]
const TINY: &str = "llama-2-tiny-random.gguf";

/// One app per engine, configured alike.
async fn on_both_engines(configure: impl Fn(&mut Config) + Clone) -> Vec<(&'static str, TestApp)> {
    #[cfg_attr(not(feature = "embedded"), allow(unused_mut))]
    let mut apps = vec![("llama-server", TestApp::spawn_with(configure.clone()).await)];
    #[cfg(feature = "embedded")]
    apps.push((
        "embedded",
        TestApp::spawn_embedded(crate::helpers::embedded_engine(TINY).await, configure).await,
    ));
    apps
}

async fn new_chat(app: &TestApp) -> Uuid {
    app.create_chat(&app.client, "").await
}

fn stream_url(app: &TestApp, _chat: Uuid, reply: Uuid) -> String {
    app.url(&format!("/api/v1/messages/{reply}/stream"))
}

/// The reply's text as the `done` event and the database have it.
async fn saved_text(app: &TestApp, reply: Uuid) -> String {
    app.finished(reply).await.content
}

#[tokio::test]
async fn a_reply_streams_ends_and_is_saved_exactly_as_streamed() {
    for (engine, app) in on_both_engines(|c| c.lm_max_tokens = 48).await {
        let chat = new_chat(&app).await;
        let reply = app.send(&app.client, chat, "Hello there").await;
        let (status, headers, events) =
            EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
        assert_eq!(status, 200, "{engine}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = events.unwrap().all().await;
        assert_eq!(
            events.last().map(|e| e.event.as_str()),
            Some("done"),
            "{engine}"
        );
        let saved = app.finished(reply).await;
        assert_eq!(
            saved.status,
            Status::Complete,
            "{engine}: {:?}",
            saved.error
        );
        assert!(
            matches!(saved.finish_reason.as_deref(), Some("stop" | "length")),
            "{engine}: {:?}",
            saved.finish_reason
        );
        assert_eq!(token_text(&events), saved.content, "{engine}");
        assert!(saved.prompt_tokens.unwrap_or(0) > 0, "{engine}");
        assert!(saved.completion_tokens.unwrap_or(0) > 0, "{engine}");
        // The reply's stats: both engines name the model (the embedded one by its file) and
        // time it.
        let stats = saved.stats().unwrap();
        assert_eq!(
            stats.model.as_deref(),
            Some("llama-2-tiny-random"),
            "{engine}"
        );
        assert!(
            stats.time_to_first_token_ms.is_some(),
            "{engine}: {stats:?}"
        );
        assert!(stats.generation_ms.is_some(), "{engine}: {stats:?}");
    }
}

#[tokio::test]
async fn last_event_id_resumes_with_no_gap_and_no_duplicate() {
    let configure = |c: &mut Config| c.lm_max_tokens = 3000;
    let apps = on_both_engines(configure).await;
    // The fake paces its tokens so that the reply is still being written when we come back.
    apps[0].1.fake_lm.set(|k| {
        k.tokens = (0..400).map(|i| format!(" t{i}")).collect();
        k.token_delay = Duration::from_millis(2);
    });
    for (engine, app) in apps {
        // A reply of the tiny model may be over before we are back: then try another (three
        // times at most); the assertions hold on a run that resumed mid-reply.
        let mut resumed_mid_reply = false;
        for _attempt in 0..3 {
            let chat = new_chat(&app).await;
            let reply = app.send(&app.client, chat, "Count, please").await;
            let url = stream_url(&app, chat, reply);
            let (_, _, events) = EventReader::open(&app.client, &url, None).await;
            let mut events = events.unwrap();
            let mut first = Vec::new();
            while first.len() < 3 {
                match events.next().await {
                    Some(event) if event.event == "delta" => first.push(event),
                    Some(event) if event.event == "done" => break,
                    Some(_) => {}
                    None => panic!("{engine}: the stream ended without done"),
                }
            }
            drop(events);
            let Some(last_id) = first.last().map(|e| e.id.clone()) else {
                continue;
            };
            let (_, _, resumed) = EventReader::open(&app.client, &url, Some(&last_id)).await;
            let resumed = resumed.unwrap().all().await;
            let saved = saved_text(&app, reply).await;
            let head = token_text(&first);
            let tail = token_text(&resumed);
            assert!(saved.starts_with(&head), "{engine}");
            assert_eq!(
                resumed.last().map(|e| e.event.as_str()),
                Some("done"),
                "{engine}"
            );
            if !tail.is_empty() {
                assert_eq!(
                    format!("{head}{tail}"),
                    saved,
                    "{engine}: resumed text differs"
                );
                resumed_mid_reply = true;
                break;
            }
        }
        assert!(
            resumed_mid_reply,
            "{engine}: no reply was still going when we came back"
        );
    }
}

#[tokio::test]
async fn checkpoints_save_the_text_while_it_streams_and_the_end_saves_all_of_it() {
    let configure = |c: &mut Config| {
        c.lm_max_tokens = 3000;
        c.checkpoint_interval = Duration::from_millis(50);
    };
    let apps = on_both_engines(configure).await;
    apps[0].1.fake_lm.set(|k| {
        k.tokens = (0..600).map(|i| format!(" c{i}")).collect();
        k.token_delay = Duration::from_millis(2);
    });
    for (engine, app) in apps {
        let chat = new_chat(&app).await;
        let reply = app.send(&app.client, chat, "Keep going").await;
        // Some text reaches the database before the reply ends.
        let mut checkpointed = None;
        for _ in 0..500 {
            let row = app.store_message(reply).await;
            if row.status != Status::Streaming {
                break;
            }
            if !row.content.is_empty() {
                checkpointed = Some(row.content);
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let checkpointed = checkpointed.unwrap_or_else(|| panic!("{engine}: no checkpoint"));
        let saved = app.finished(reply).await;
        assert!(saved.content.starts_with(&checkpointed), "{engine}");
        assert!(saved.content.len() > checkpointed.len(), "{engine}");
    }
}

#[tokio::test]
async fn a_browser_going_away_does_not_stop_the_reply() {
    for (engine, app) in on_both_engines(|c| c.lm_max_tokens = 64).await {
        let chat = new_chat(&app).await;
        let reply = app.send(&app.client, chat, "Tell me more").await;
        let (_, _, events) =
            EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
        let mut events = events.unwrap();
        events.next().await;
        drop(events);
        let saved = app.finished(reply).await;
        assert_eq!(
            saved.status,
            Status::Complete,
            "{engine}: {:?}",
            saved.error
        );
    }
}

#[tokio::test]
async fn stop_keeps_the_partial_text_and_frees_the_model_for_the_next_replies() {
    let apps = on_both_engines(|c| c.lm_max_tokens = 3000).await;
    apps[0].1.fake_lm.set(|k| {
        k.tokens = (0..2000).map(|i| format!(" w{i}")).collect();
        k.token_delay = Duration::from_millis(5);
    });
    for (engine, app) in apps {
        let chat = new_chat(&app).await;
        let reply = app.send(&app.client, chat, "Go on for ever").await;
        let (_, _, events) =
            EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
        let mut events = events.unwrap();
        let mut seen = 0;
        while seen < 2 {
            if events.next().await.expect("a token").event == "delta" {
                seen += 1;
            }
        }
        let stop = app
            .post(&format!("/chats/{chat}/messages/{reply}/stop"), &[])
            .await;
        assert!(
            stop.status().is_redirection() || stop.status().is_success(),
            "{engine}"
        );
        let stopped = app.finished(reply).await;
        assert_eq!(stopped.status, Status::Stopped, "{engine}");
        assert!(
            !stopped.content.is_empty(),
            "{engine}: the partial text is kept"
        );
        assert!(stopped.completion_tokens.unwrap_or(0) < 3000, "{engine}");
        // Every slot is free again: as many replies as slots all finish.
        app.fake_lm.set(|k| {
            k.tokens = vec!["Fine.".into()];
            k.token_delay = Duration::ZERO;
        });
        let mut replies = Vec::new();
        for _ in 0..app.config.max_concurrent_generations {
            let chat = new_chat(&app).await;
            let short = app
                .post(&format!("/chats/{chat}/settings"), &[("max_tokens", "8")])
                .await;
            assert!(
                short.status().is_redirection(),
                "{engine}: {}",
                short.status()
            );
            replies.push(app.send(&app.client, chat, "And now?").await);
        }
        for reply in replies {
            let saved = app.finished(reply).await;
            assert_ne!(saved.status, Status::Error, "{engine}: {:?}", saved.error);
        }
    }
}

#[tokio::test]
async fn more_replies_than_slots_wait_their_turn_and_all_finish() {
    let configure = |c: &mut Config| {
        c.lm_max_tokens = 32;
        c.max_concurrent_generations = 2;
    };
    for (engine, app) in on_both_engines(configure).await {
        let mut replies = Vec::new();
        for i in 0..6 {
            let chat = new_chat(&app).await;
            replies.push(app.send(&app.client, chat, &format!("Question {i}")).await);
        }
        for reply in replies {
            let saved = app.finished(reply).await;
            assert_eq!(
                saved.status,
                Status::Complete,
                "{engine}: {:?}",
                saved.error
            );
        }
    }
}

#[tokio::test]
async fn a_long_chat_is_trimmed_to_fit_and_a_message_too_large_is_refused() {
    let configure = |c: &mut Config| {
        c.lm_max_tokens = 16;
        c.lm_context_tokens = Some(400);
    };
    for (engine, app) in on_both_engines(configure).await {
        let chat = new_chat(&app).await;
        let paragraph = "The quick brown fox jumps over the lazy dog again and again. ".repeat(4);
        for turn in 0..8 {
            let reply = app
                .send_and_wait(&app.client, chat, &format!("{turn}: {paragraph}"))
                .await;
            let saved = app.finished(reply).await;
            assert_eq!(
                saved.status,
                Status::Complete,
                "{engine} turn {turn}: {:?}",
                saved.error
            );
            assert!(
                saved.prompt_tokens.unwrap_or(0) <= 400,
                "{engine} turn {turn}: {:?} prompt tokens",
                saved.prompt_tokens
            );
        }
        // Counted by each engine (the embedded one exactly), and refused before it is stored.
        let context: serde_json::Value = app
            .get(&format!("/api/v1/chats/{chat}/context"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            context["exact"],
            engine == "embedded",
            "{engine}: {context}"
        );
        assert!(
            context["left_out"].as_u64().unwrap() > 0,
            "{engine}: {context}"
        );
        let messages = app.count("messages").await;
        let response = app
            .post(
                &format!("/chats/{chat}/messages"),
                &[("content", &"word ".repeat(1000))],
            )
            .await;
        assert_eq!(response.status(), 413, "{engine}");
        let error = response.text().await.unwrap();
        assert!(error.contains("too long"), "{engine}: {error}");
        assert_eq!(app.count("messages").await, messages, "{engine}");
    }
}

/// What only the embedded engine has, driven through its interface directly.
#[cfg(feature = "embedded")]
mod embedded {
    use std::time::Duration;

    use app::{
        engine::Engine,
        lm::{LmEvent, PromptMessage, ToolCall, estimate_tokens},
    };

    use super::*;
    use crate::helpers::direct::{
        generate, generate_offering, options, the_weather_call, user, weather_chat, weather_tool,
    };

    /// The engine's reason for having no model, once it gives up (within 2 s).
    async fn failure(engine: &Engine) -> String {
        for _ in 0..200 {
            if let app::lm::ModelStatus::Failed(message) = engine.status().await {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the engine did not report a failure");
    }

    /// An engine of this test's own, so that no other test's reply takes its sequences.
    async fn own_engine(model: &str, slots: usize) -> Engine {
        let mut config = Config::defaults();
        config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
        config.lm_model_path = Some(crate::helpers::shared_model(model));
        config.lm_threads = Some(2);
        config.max_concurrent_generations = slots;
        let engine = Engine::Embedded(app::embedded::EmbeddedEngine::start(
            app::embedded_settings(&config),
        ));
        crate::helpers::wait_until_ready(&engine).await;
        engine
    }

    /// A reply with these stop strings, read to its end: its text and its finish reason.
    async fn generate_stopping_at(
        engine: &app::embedded::EmbeddedEngine,
        prompt: &[PromptMessage],
        stops: &'static [&'static str],
    ) -> (String, Option<String>) {
        let mut stream = engine
            .stream_chat_stopping_at(prompt, &options(60, 0.0), stops)
            .expect("a stream");
        let (mut text, mut finish) = (String::new(), None);
        while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("the engine answers")
            .expect("no error")
        {
            match event {
                LmEvent::Text(piece) => text.push_str(&piece),
                LmEvent::Finish(reason) => finish = Some(reason),
                _ => {}
            }
        }
        (text, finish)
    }

    /// The tiny model has no chat template: it runs on ChatML, whose markers are stop strings.
    /// No model here writes them on cue, so words the (greedy, random) model is known to write
    /// stand in for one: the reply ends just before them, and nothing of them is sent.
    #[tokio::test]
    async fn a_reply_ends_at_a_stop_string_and_shows_none_of_it() {
        let engine = app::embedded::EmbeddedEngine::start(app::embedded_settings(&{
            let mut config = Config::defaults();
            config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
            config.lm_model_path = Some(crate::helpers::shared_model(TINY));
            config.lm_threads = Some(2);
            config
        }));
        crate::helpers::wait_until_ready(&Engine::Embedded(engine.clone())).await;
        let prompt = [user("Tell me a story")];
        let (whole, finish) = generate_stopping_at(&engine, &prompt, &[]).await;
        assert_eq!(finish.as_deref(), Some("length"));
        // A few characters from the middle of what it writes, first seen at `at`.
        let mut from = whole.len() / 2;
        while !whole.is_char_boundary(from) {
            from += 1;
        }
        let stop: String = whole[from..].chars().take(4).collect();
        assert!(stop.chars().count() == 4, "{whole:?}");
        let at = whole.find(&stop).unwrap();
        let stops: &'static [&'static str] =
            Box::leak(vec![&*Box::leak(stop.into_boxed_str())].into_boxed_slice());
        let (cut, finish) = generate_stopping_at(&engine, &prompt, stops).await;
        assert_eq!(
            cut,
            whole[..at],
            "the reply ends just before the stop string"
        );
        assert_eq!(finish.as_deref(), Some("stop"));
        // A stop string it never writes changes nothing, and what was held back comes out.
        let never: &'static [&'static str] = &["<|im_end|>", "\u{1}never\u{1}"];
        assert_eq!(
            generate_stopping_at(&engine, &prompt, never).await,
            (whole, Some("length".into()))
        );
    }

    #[tokio::test]
    async fn max_tokens_ends_the_reply_with_length_and_exact_usage() {
        let engine = crate::helpers::embedded_engine(TINY).await;
        let done = generate(&engine, vec![user("Hello")], options(7, 1.0)).await;
        // Random weights could end early; they did not with this seed.
        assert_eq!(done.finish.as_deref(), Some("length"));
        assert_eq!(done.completion_tokens, 7);
        let timings = done.timings.expect("timings");
        assert_eq!(timings.predicted_n, 7);
        assert!(timings.prompt_n + timings.cache_n > 0);
    }

    #[tokio::test]
    async fn replies_decode_together_and_a_dropped_one_frees_its_sequence_at_once() {
        let engine = own_engine(TINY, 3).await;
        let long = options(1500, 1.0);
        // Three long replies at once: all have their first token before any ends.
        let replies = futures::future::join_all(
            (0..3).map(|i| generate(&engine, vec![user(&format!("story {i}"))], long.clone())),
        );
        // Meanwhile a fourth waits for a sequence; it gets one when a stream is dropped.
        let dropped = async {
            let mut stream = engine
                .stream_chat(&[user("short-lived")], &long, &[])
                .await
                .unwrap();
            stream.next().await.unwrap();
            drop(stream);
        };
        let (finished, ()) = tokio::join!(replies, dropped);
        let last_first_token = finished
            .iter()
            .map(|f| f.first_token_at.expect("text"))
            .max()
            .unwrap();
        let first_end = finished.iter().map(|f| f.ended_at).min().unwrap();
        assert!(
            last_first_token < first_end,
            "the replies were generated one after another, not together"
        );
        for f in &finished {
            assert_eq!(f.completion_tokens, 1500, "{:?}", f.finish);
        }
        // All sequences are free: three more replies start at once.
        let again = futures::future::join_all(
            (0..3).map(|i| generate(&engine, vec![user(&format!("again {i}"))], options(5, 1.0))),
        )
        .await;
        assert!(again.iter().all(|f| f.completion_tokens == 5));
    }

    #[tokio::test]
    async fn stop_frees_a_busy_sequence_for_a_waiting_reply() {
        let engine = own_engine(TINY, 1).await;
        let mut busy = engine
            .stream_chat(&[user("busy")], &options(100_000, 1.0), &[])
            .await
            .unwrap();
        busy.next().await.unwrap();
        let waiting = tokio::spawn({
            let engine = engine.clone();
            async move { generate(&engine, vec![user("waiting")], options(3, 1.0)).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            !waiting.is_finished(),
            "only one sequence: the second reply waits"
        );
        drop(busy);
        let done = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting reply started once the first was dropped")
            .unwrap();
        assert_eq!(done.completion_tokens, 3);
    }

    #[tokio::test]
    async fn a_follow_up_reuses_the_chats_cached_prefix() {
        let engine = own_engine(TINY, 2).await;
        let history: Vec<PromptMessage> = (0..30)
            .flat_map(|i| {
                [
                    user(&format!(
                        "Message {i}: tell me about the number {i} and its friends."
                    )),
                    PromptMessage {
                        role: "assistant",
                        images: Vec::new(),
                        content: format!("The number {i} is fine, and so are its neighbours."),
                        tool_calls: Vec::new(),
                        tool_call_id: None,
                    },
                ]
            })
            .chain([user("And the next one?")])
            .collect();
        let first = generate(&engine, history.clone(), options(4, 1.0)).await;
        let first_timings = first.timings.unwrap();
        assert!(first_timings.prompt_n > 500, "{first_timings:?}");
        let mut follow_up = history.clone();
        follow_up.push(PromptMessage {
            role: "assistant",
            images: Vec::new(),
            content: first.text.clone(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        });
        follow_up.push(user("One more, please."));
        let second = generate(&engine, follow_up, options(4, 1.0)).await;
        let timings = second.timings.unwrap();
        assert!(
            timings.cache_n + 5 >= first_timings.prompt_n + first_timings.cache_n,
            "the earlier prompt was evaluated again: {timings:?} after {first_timings:?}"
        );
        assert!(timings.prompt_n < 60, "{timings:?}");
    }

    #[tokio::test]
    async fn token_counts_come_from_the_models_tokenizer() {
        let engine = crate::helpers::embedded_engine(TINY).await;
        let text = "hello ".repeat(100);
        let exact = engine.count_tokens(None, "user", &text);
        // About one token a word, plus the template's framing; the estimate is twice that.
        assert!((100..130).contains(&exact), "{exact}");
        assert!(exact < estimate_tokens(&text));
        assert!(engine.count_tokens(None, "user", "") < 20);
    }

    #[tokio::test]
    async fn a_real_instruct_model_answers_through_its_own_chat_template() {
        let engine = crate::helpers::embedded_engine("SmolLM2-135M-Instruct.Q4_1.gguf").await;
        let prompt = [
            PromptMessage {
                role: "system",
                images: Vec::new(),
                content: "You are a helpful assistant.".into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            },
            user("What is the capital of France?"),
        ];
        let done = generate(&engine, prompt.to_vec(), options(64, 0.0)).await;
        assert_eq!(done.finish.as_deref(), Some("stop"), "{:?}", done.text);
        assert!(done.text.contains("Paris"), "{:?}", done.text);
        for markup in ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "assistant\n"] {
            assert!(!done.text.contains(markup), "{markup:?} in {:?}", done.text);
        }
    }

    #[tokio::test]
    async fn a_real_model_calls_a_tool_and_the_call_leaves_the_reply_text() {
        // SmolLM2's template knows no tools: they are told in the system message (Hermes).
        let engine = crate::helpers::embedded_engine("SmolLM2-135M-Instruct.Q4_1.gguf").await;
        let tools = [weather_tool("get_weather")];
        let done = generate_offering(
            &engine,
            weather_chat("get_weather"),
            options(96, 0.0),
            &tools,
        )
        .await;
        the_weather_call(&done);
    }

    #[tokio::test]
    async fn after_a_calls_result_the_model_answers_from_it_in_text() {
        // The next round of a reply: the call and its result (a user turn of
        // <tool_response>, as Hermes writes it) in the prompt, the tools still offered.
        let engine = crate::helpers::embedded_engine("SmolLM2-135M-Instruct.Q4_1.gguf").await;
        let tools = [weather_tool("get_weather")];
        let mut chat = weather_chat("get_weather");
        let mut called = PromptMessage {
            role: "assistant",
            ..user("")
        };
        called.tool_calls = vec![ToolCall {
            id: "call_paris".into(),
            name: "get_weather".into(),
            arguments: r#"{"city": "Paris"}"#.into(),
        }];
        let mut result = user(r#"{"temp_c": 18, "sky": "sunny"}"#);
        result.role = "tool";
        result.tool_call_id = Some("call_paris".into());
        chat.extend([called, result]);
        let done = generate_offering(&engine, chat, options(48, 0.0), &tools).await;
        assert!(done.calls.is_empty(), "{:?}", done.calls);
        assert_ne!(done.finish.as_deref(), Some("tool_calls"));
        assert!(
            done.text.contains("sunny") || done.text.contains("18"),
            "{:?}",
            done.text
        );
        assert!(!done.text.contains("tool_"), "{:?}", done.text);
    }

    #[tokio::test]
    async fn a_model_whose_template_knows_tools_calls_through_that_template() {
        // SmolLM2 with Qwen 2.5's template (`TOOLS_MODEL`, `.ci/tools-model.sh`): the prompt is
        // that template rendered with the tools through minijinja, the call found in its form.
        let Ok(model) = std::env::var("TOOLS_MODEL") else {
            crate::helpers::missing("TOOLS_MODEL=$(bash .ci/tools-model.sh)");
            return;
        };
        let engine = crate::helpers::embedded_engine(&model).await;
        let tools = [weather_tool("get_weather")];
        let done = generate_offering(
            &engine,
            weather_chat("get_weather"),
            options(64, 0.0),
            &tools,
        )
        .await;
        let (_, arguments) = the_weather_call(&done);
        assert_eq!(arguments["city"], "Paris", "{arguments}");
    }

    #[tokio::test]
    async fn the_grammar_holds_a_call_to_the_offered_tools() {
        // The history shows a call of `get_weather`, which is not offered: the model, left to
        // itself, writes that name again; the grammar lets it name only `weather_lookup`.
        let engine = crate::helpers::embedded_engine("SmolLM2-135M-Instruct.Q4_1.gguf").await;
        let tools = [weather_tool("weather_lookup")];
        let done = generate_offering(
            &engine,
            weather_chat("get_weather"),
            options(96, 0.0),
            &tools,
        )
        .await;
        assert_eq!(done.calls.len(), 1, "{:?} {:?}", done.text, done.calls);
        assert_eq!(done.calls[0].name, "weather_lookup");
        serde_json::from_str::<serde_json::Value>(&done.calls[0].arguments)
            .expect("JSON arguments");
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_model_is_a_clear_error_and_the_app_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_model = dir.path().join("notes.gguf");
        std::fs::write(&not_a_model, "these are my notes, not a model").unwrap();
        let mut config = Config::defaults();
        config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
        config.lm_model_path = Some(not_a_model.clone());
        let engine = Engine::Embedded(app::embedded::EmbeddedEngine::start(
            app::embedded_settings(&config),
        ));
        let message = failure(&engine).await;
        assert!(message.contains("not a GGUF model"), "{message}");
        assert!(message.contains("LM_MODEL_PATH"), "{message}");

        let app = TestApp::spawn_embedded(engine, |_| {}).await;
        let indicator = app.get("/model/status").await.text().await.unwrap();
        assert!(indicator.contains("Model error"), "{indicator}");
        assert!(indicator.contains("not a GGUF model"), "{indicator}");
        let chat = new_chat(&app).await;
        let reply = app.send_and_wait(&app.client, chat, "Hello?").await;
        let saved = app.finished(reply).await;
        assert_eq!(saved.status, Status::Error);
        assert!(saved.error.unwrap_or_default().contains("not a GGUF model"));
        assert_eq!(app.get("/").await.status(), 200);
        assert_eq!(app.get(&format!("/chats/{chat}")).await.status(), 200);
    }

    #[tokio::test]
    async fn without_a_model_path_the_model_is_downloaded_into_the_hub_cache_then_chats() {
        let hub =
            crate::helpers::hub::FakeHub::start(&[(TINY, crate::helpers::shared_model(TINY))])
                .await;
        let cache = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
        config.hf_endpoint = hub.endpoint.clone();
        config.hf_hub_cache = Some(cache.path().to_path_buf());
        config.lm_model_repo = "test-owner/tiny-GGUF".into();
        config.lm_model_file = TINY.into();
        let engine = Engine::Embedded(app::embedded::EmbeddedEngine::start(
            app::embedded_settings(&config),
        ));
        crate::helpers::wait_until_ready(&engine).await;
        let snapshot = cache
            .path()
            .join(
                "models--test-owner--tiny-GGUF/snapshots/0123456789abcdef0123456789abcdef01234567",
            )
            .join(TINY);
        assert!(snapshot.exists(), "the standard cache layout");
        assert!(hub.requests() >= 1);

        let app = TestApp::spawn_embedded(engine, |c| c.lm_max_tokens = 8).await;
        let indicator = app.get("/model/status").await.text().await.unwrap();
        assert!(indicator.contains("Model ready"), "{indicator}");
        let chat = new_chat(&app).await;
        let reply = app.send_and_wait(&app.client, chat, "Hello").await;
        assert_eq!(app.finished(reply).await.status, Status::Complete);

        // A second start finds the cache and asks the hub nothing, even offline.
        let before = hub.requests();
        config.hf_hub_offline = true;
        let again = Engine::Embedded(app::embedded::EmbeddedEngine::start(
            app::embedded_settings(&config),
        ));
        crate::helpers::wait_until_ready(&again).await;
        assert_eq!(hub.requests(), before);
    }

    #[tokio::test]
    async fn offline_without_a_cached_model_says_what_to_set_and_history_still_works() {
        let cache = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
        config.hf_endpoint = "http://127.0.0.1:9".into();
        config.hf_hub_cache = Some(cache.path().to_path_buf());
        config.hf_hub_offline = true;
        let engine = Engine::Embedded(app::embedded::EmbeddedEngine::start(
            app::embedded_settings(&config),
        ));
        let message = failure(&engine).await;
        assert!(
            message.contains("LM_MODEL_PATH") && message.contains("LM_API_URL"),
            "{message}"
        );
        let app = TestApp::spawn_embedded(engine, |_| {}).await;
        let chat = new_chat(&app).await;
        let reply = app.send_and_wait(&app.client, chat, "Anyone there?").await;
        let saved = app.finished(reply).await;
        assert_eq!(saved.status, Status::Error);
        assert!(saved.error.unwrap_or_default().contains("LM_MODEL_PATH"));
        let page = app
            .get(&format!("/chats/{chat}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            page.contains("Anyone there?"),
            "the user's message is kept and shown"
        );
    }
}

/// Continue on both engines: a reply cut at its length goes on from its text, and the same
/// message ends longer, beginning with what it had. (On the embedded engine the chat template
/// leaves the assistant's turn open after its text.)
#[tokio::test]
async fn a_reply_cut_at_its_length_continues_on_both_engines() {
    for (engine, app) in on_both_engines(|c| c.lm_max_tokens = 8).await {
        if engine == "llama-server" {
            app.fake_lm.set(|k| {
                k.tokens = (0..8).map(|i| format!(" t{i}")).collect();
                k.finish_reason = "length".into();
            });
        }
        let chat = new_chat(&app).await;
        let reply = app.send(&app.client, chat, "Tell me a story").await;
        let first = app.finished(reply).await;
        assert_eq!(first.finish_reason.as_deref(), Some("length"), "{engine}");
        let url = app.url(&format!("/chats/{chat}/messages/{reply}/continue"));
        let response = crate::helpers::post_form(&app.client, &url, &[], false).await;
        assert_eq!(response.status(), 303, "{engine}");
        let (_, _, events) =
            EventReader::open(&app.client, &stream_url(&app, chat, reply), None).await;
        let events = events.unwrap().all().await;
        let again = app.finished(reply).await;
        assert_eq!(
            again.status,
            Status::Complete,
            "{engine}: {:?}",
            again.error
        );
        assert!(
            again.content.starts_with(&first.content) && again.content.len() > first.content.len(),
            "{engine}: {:?} then {:?}",
            first.content,
            again.content
        );
        assert_eq!(token_text(&events), again.content, "{engine}");
        assert!(
            again.completion_tokens.unwrap_or(0) > first.completion_tokens.unwrap_or(0),
            "{engine}"
        );
    }
}
