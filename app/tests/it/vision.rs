//! Images for the embedded engine: a model with a vision projector (an `mmproj` GGUF) beside it
//! takes them through llama.cpp's mtmd. The projector is a tiny one with random weights made
//! for the test (`testkit::mmproj`, checked against llama.cpp's own `llama-mtmd-cli`): no vision
//! model small enough for the tests can be had here, so what is tested is the mechanics (an
//! image becomes the projector's positions in the prompt, the next turn finds it in the cache,
//! bad images and wrong projectors are clear errors), not what a model says about a picture.
#![cfg(feature = "embedded")]
use std::{path::Path, time::Duration};

use app::{
    config::Config,
    engine::Engine,
    lm::{LmError, LmEvent, PromptImage, PromptMessage, ReplyOptions, Timings},
};
use base64::Engine as _;
use serde_json::{Value, json};
use testkit::mmproj::{TOKENS_PER_IMAGE, write_tiny_mmproj};
use uuid::Uuid;

use crate::helpers::{TestApp, shared_model, wait_until_ready};

const TINY: &str = "llama-2-tiny-random.gguf";
const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The tiny model's width: its projector's output must match it.
const TINY_N_EMBD: usize = 8;
/// SmolLM2's: a projector for it does not fit the tiny model.
const SMOL_N_EMBD: usize = 576;

fn link(target: &Path, link: &Path) {
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, link).unwrap();
}

/// An engine whose default is the tiny model with a projector beside it; in its folder also
/// SmolLM2 without one (`smol`), and the tiny model beside a projector made for SmolLM2's width
/// (`wrong`).
async fn vision_engine(dir: &Path) -> Engine {
    let configured = dir.join("configured");
    link(&shared_model(TINY), &configured.join("tiny.gguf"));
    write_tiny_mmproj(&configured.join("mmproj-tiny-f16.gguf"), TINY_N_EMBD).unwrap();
    let models = dir.join("models");
    link(&shared_model(SMOL), &models.join("smol/smol.gguf"));
    // A copy: the library lists one file once, however many links reach it.
    std::fs::create_dir_all(models.join("wrong")).unwrap();
    std::fs::copy(shared_model(TINY), models.join("wrong/wrong.gguf")).unwrap();
    write_tiny_mmproj(&models.join("wrong/mmproj-wrong.gguf"), SMOL_N_EMBD).unwrap();

    let mut config = Config::defaults();
    config.lm_cpu_probe = Some(env!("CARGO_BIN_EXE_app").into());
    config.lm_model_path = Some(configured.join("tiny.gguf"));
    config.lm_threads = Some(2);
    // Room for an image as a message's cost is estimated before any model sees it
    // (`lm::IMAGE_TOKENS`, on the safe side of what vision models spend).
    config.lm_ctx_size = 4096;
    config.lm_max_loaded = 3;
    config.max_concurrent_generations = 2;
    config.lm_models_dir = Some(models);
    config.hf_hub_cache = Some(dir.join("hub"));
    config.data_dir = dir.join("data");
    let engine = Engine::Embedded(app::embedded::EmbeddedEngine::start(
        app::embedded_settings(&config),
    ));
    wait_until_ready(&engine).await;
    engine
}

/// A PNG of `width` × `height` whose pixels depend on `seed`.
fn png(width: u32, height: u32, seed: u8) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([x as u8 ^ seed, y as u8, seed])
    })
    .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
    .unwrap();
    out
}

fn message(role: &'static str, text: &str, images: &[&[u8]]) -> PromptMessage {
    PromptMessage {
        role,
        content: text.into(),
        images: images
            .iter()
            .map(|bytes| PromptImage {
                attachment_id: Uuid::new_v4(),
                media_type: "image/png".into(),
                data: Some(bytes.to_vec().into()),
            })
            .collect(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

fn options(model: Option<&str>) -> ReplyOptions {
    ReplyOptions {
        model: model.map(str::to_owned),
        max_tokens: 8,
        temperature: 0.0,
        top_p: 1.0,
        seed: Some(1),
    }
}

/// A reply's text and timings, or the error it ended with.
async fn reply(
    engine: &Engine,
    prompt: &[PromptMessage],
    model: Option<&str>,
) -> Result<(String, Timings), LmError> {
    let mut stream = engine.stream_chat(prompt, &options(model), &[]).await?;
    let (mut text, mut timings) = (String::new(), None);
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("the engine answers")?
    {
        match event {
            LmEvent::Text(piece) => text.push_str(&piece),
            LmEvent::Timings(t) => timings = Some(t),
            _ => {}
        }
    }
    Ok((text, timings.expect("timings at the end")))
}

#[tokio::test]
async fn an_image_takes_the_projectors_positions_and_the_next_turn_finds_it_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let engine = vision_engine(dir.path()).await;
    assert!(engine.has_vision(None).await);
    let (cat, dog) = (png(64, 48, 1), png(64, 48, 2));

    let (_, without) = reply(&engine, &[message("user", "What is it?", &[])], None)
        .await
        .unwrap();
    let turn = [message("user", "What is it?", &[&cat])];
    let (text, with) = reply(&engine, &turn, None).await.unwrap();
    let positions = |t: &Timings| t.prompt_n + t.cache_n;
    // The image's positions, plus its marker's newline (one or two tokens).
    let added = positions(&with) - positions(&without);
    let image = TOKENS_PER_IMAGE as u32;
    assert!((image..=image + 2).contains(&added), "{added}");

    // The next turn of the same chat evaluates only what is new: the image is in the cache.
    let next = [
        message("user", "What is it?", &[&cat]),
        message("assistant", &text, &[]),
        message("user", "Are you sure?", &[]),
    ];
    let (_, timings) = reply(&engine, &next, None).await.unwrap();
    assert!(
        timings.cache_n >= positions(&with),
        "{timings:?} after {with:?}"
    );

    // Another image in its place is evaluated afresh, from the start.
    let other = [
        message("user", "What is it?", &[&dog]),
        message("assistant", &text, &[]),
        message("user", "Are you sure?", &[]),
    ];
    let (_, timings) = reply(&engine, &other, None).await.unwrap();
    assert_eq!(timings.cache_n, 0, "{timings:?}");

    // Two images in one message, and images of any size (the projector resizes them).
    let two = [message(
        "user",
        "Compare.",
        &[&png(7, 300, 3), &png(500, 20, 4)],
    )];
    let (_, timings) = reply(&engine, &two, None).await.unwrap();
    assert!(
        positions(&timings) >= positions(&without) + 2 * image,
        "{timings:?}"
    );
}

#[tokio::test]
async fn a_bad_image_or_a_projector_that_is_not_the_models_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let engine = vision_engine(dir.path()).await;

    // Not an image, and an image past the bound on a side: refused before decoding.
    let broken = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01".as_slice();
    let huge = png(9000, 1, 5);
    for bytes in [broken, huge.as_slice()] {
        let error = reply(&engine, &[message("user", "What is it?", &[bytes])], None)
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("could not be read"), "{error}");
    }
    // A marker written by a person is text, not a place for an image.
    let (text, _) = reply(
        &engine,
        &[message(
            "user",
            "<__media__> what is <__media__>?",
            &[&png(8, 8, 6)],
        )],
        None,
    )
    .await
    .unwrap();
    assert!(!text.is_empty());

    // A projector made for another model: the library says it takes images until it is
    // loaded, then it serves text only, and an image is a clear error.
    assert!(engine.has_vision(Some("wrong")).await);
    let (text, _) = reply(&engine, &[message("user", "Hello", &[])], Some("wrong"))
        .await
        .unwrap();
    assert!(!text.is_empty());
    assert!(!engine.has_vision(Some("wrong")).await);
    let error = reply(
        &engine,
        &[message("user", "What is it?", &[&png(8, 8, 7)])],
        Some("wrong"),
    )
    .await
    .expect_err("refused");
    assert!(error.to_string().contains("takes no images"), "{error}");
    assert!(!engine.has_vision(Some("smol")).await);
}

#[tokio::test]
async fn the_library_says_which_models_take_images_and_a_chat_on_one_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let engine = vision_engine(dir.path()).await;
    let app = TestApp::spawn_embedded(engine, |_| {}).await;

    let body: Value = app.get("/api/v1/models").await.json().await.unwrap();
    let vision: Vec<(&str, bool)> = body["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["vision"].as_bool().unwrap()))
        .collect();
    // The projectors are not models.
    assert_eq!(vision, [("tiny", true), ("smol", false), ("wrong", true)]);
    let page = app.get("/models").await.text().await.unwrap();
    assert_eq!(page.matches(">images</span>").count(), 2, "{page}");

    let send = |chat: Uuid, bytes: Vec<u8>| {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        app.client
            .post(app.url(&format!("/api/v1/chats/{chat}/messages")))
            .json(&json!({"content": "What is this?", "attachments": [{"name": "a.png", "data": encoded}]}))
            .send()
    };
    let chat = app.create_chat(&app.client, "").await;
    let response = send(chat, png(40, 40, 9)).await.unwrap();
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let sent: Value = response.json().await.unwrap();
    let reply: Uuid = sent["assistant_message_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let finished = app.finished(reply).await;
    assert_eq!(
        finished.status,
        app::store::Status::Complete,
        "{:?}",
        finished.error
    );
    assert!(!finished.content.is_empty());

    // A chat on a model without a projector refuses the image and stores nothing.
    let smol_chat = app.create_chat(&app.client, "").await;
    let changed = app
        .post(
            &format!("/chats/{smol_chat}/settings"),
            &[("model", "smol")],
        )
        .await;
    assert!(changed.status().is_redirection());
    let before = app.api_messages(smol_chat).await;
    let refused = send(smol_chat, png(40, 40, 9)).await.unwrap();
    assert_eq!(refused.status(), 415);
    assert_eq!(app.api_messages(smol_chat).await, before);
}
