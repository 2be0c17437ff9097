//! Images for a model with a vision projector (an `mmproj` GGUF beside it, `library`), through
//! llama.cpp's `mtmd`. An image becomes a run of embeddings in the sequence, as llama-server's
//! vision models take them. A prompt with images is split at its last image: everything up to
//! there is tokenized by mtmd (text and images as chunks) and evaluated at once when the reply
//! starts (`worker`); the text after it goes through the worker's usual batching. In the
//! sequence's record of its tokens an image stands as a run of one made-up token per position,
//! negative (no vocabulary has one) and derived from the image's bytes, so the same chat's next
//! turn finds the image in the cache like any text, and another image never matches it.
use std::{
    ffi::CString,
    hash::{Hash, Hasher},
    io::Cursor,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use llama_cpp_2::{
    model::LlamaModel,
    mtmd::{
        MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunkType, MtmdInputChunks,
        MtmdInputText, mtmd_default_marker,
    },
    token::LlamaToken,
};

use crate::lm::{LmError, PromptMessage};

/// A model's projector, shared by the thread that tokenizes a prompt (off the async workers)
/// and the model's thread that evaluates it.
pub type Projector = Arc<Mutex<MtmdContext>>;

/// The largest image accepted, per side: bigger ones are refused before they are decoded (a
/// small file can claim a huge image). Projectors resize to a few hundred pixels anyway.
const MAX_SIDE: u32 = 8192;
/// What decoding one image may allocate.
const MAX_DECODE_BYTES: u64 = 256 << 20;

/// The part of a prompt up to its last image, tokenized by mtmd.
pub struct MediaPrefix {
    pub chunks: MtmdInputChunks,
    /// Its length in positions: the first `len` entries of the request's tokens.
    pub len: usize,
}

/// Loads `path` for `model`; `None` (and the log says why) when it cannot be: the model then
/// serves text only.
pub fn load(path: &Path, model: &LlamaModel, threads: usize, gpu: bool) -> Option<Projector> {
    let params = MtmdContextParams {
        use_gpu: gpu,
        print_timings: false,
        n_threads: i32::try_from(threads.max(1)).unwrap_or(1),
        media_marker: CString::new(mtmd_default_marker()).unwrap_or_default(),
        image_min_tokens: -1,
        image_max_tokens: -1,
    };
    let Some(path_text) = path.to_str() else {
        tracing::warn!(path = %path.display(), "the vision projector's path is not UTF-8; the model serves text only");
        return None;
    };
    match MtmdContext::init_from_file(path_text, model, &params) {
        Ok(context) if context.support_vision() => {
            tracing::info!(projector = %path.display(), "the model takes images");
            Some(Arc::new(Mutex::new(context)))
        }
        Ok(_) => {
            tracing::warn!(projector = %path.display(), "the projector is not a vision one; the model serves text only");
            None
        }
        Err(e) => {
            tracing::warn!(projector = %path.display(), error = %e,
                "the vision projector could not be loaded (another model's?); the model serves text only");
            None
        }
    }
}

/// What stands in a message's text for each of its images.
pub fn marker() -> &'static str {
    mtmd_default_marker()
}

/// `text` with the marker written some other way, so that only the images' own markers count.
pub fn without_markers(text: &str) -> String {
    text.replace(marker(), "<_media_>")
}

/// `messages` with a marker for each image, before the text (where vision models are shown
/// them in training), and any marker a person wrote made plain text.
pub fn with_image_markers(messages: &[PromptMessage]) -> Vec<PromptMessage> {
    messages
        .iter()
        .map(|m| {
            let with_data = m.images.iter().filter(|i| i.data.is_some()).count();
            let mut content = marker().repeat(with_data);
            if with_data > 0 {
                content.push('\n');
            }
            content.push_str(&without_markers(&m.content));
            PromptMessage {
                role: m.role,
                content,
                images: Vec::new(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            }
        })
        .collect()
}

/// Tokenizes `prompt`, whose markers stand for `images` in order: the tokens (an image as its
/// made-up tokens) and the part to evaluate through mtmd. Decodes the images: call it off the
/// async workers.
pub fn tokenize(
    projector: &Projector,
    model: &LlamaModel,
    prompt: &str,
    images: &[&[u8]],
) -> Result<(Vec<LlamaToken>, MediaPrefix), LmError> {
    let split = prompt
        .rfind(marker())
        .map(|at| at + marker().len())
        .ok_or_else(|| LmError::Engine("the prompt lost its images' places".into()))?;
    let (through_last_image, rest) = prompt.split_at(split);
    let bitmaps = images
        .iter()
        .map(|bytes| bitmap(bytes))
        .collect::<Result<Vec<_>, _>>()?;
    let chunks = {
        let context = projector.lock().unwrap_or_else(PoisonError::into_inner);
        context
            .tokenize(
                MtmdInputText {
                    text: through_last_image.to_owned(),
                    add_special: true,
                    parse_special: true,
                },
                &bitmaps.iter().collect::<Vec<_>>(),
            )
            .map_err(|e| LmError::Engine(format!("the images could not be prepared: {e}")))?
    };
    let mut tokens = Vec::with_capacity(chunks.total_positions().max(0) as usize);
    let mut image = 0;
    for index in 0..chunks.len() {
        let Some(chunk) = chunks.get(index) else {
            continue;
        };
        match chunk.chunk_type() {
            MtmdInputChunkType::Text => {
                tokens.extend_from_slice(chunk.text_tokens().unwrap_or(&[]))
            }
            _ => {
                let stand_in = stand_in(images.get(image).copied().unwrap_or_default());
                image += 1;
                let positions = usize::try_from(chunk.n_positions()).unwrap_or(0);
                tokens.extend(std::iter::repeat_n(stand_in, positions));
            }
        }
    }
    let len = tokens.len();
    let after = model.vocab().tokenize(rest.as_bytes(), false, true);
    // The reply's first token comes from the last prompt token's logits, which the worker's
    // batching computes: something must follow the last image (the template's turn does).
    if after.is_empty() {
        return Err(LmError::Engine(
            "the prompt ends with an image; nothing asks for a reply".into(),
        ));
    }
    tokens.extend(after);
    Ok((tokens, MediaPrefix { chunks, len }))
}

/// The made-up token an image's positions are recorded as: negative, from its bytes.
fn stand_in(bytes: &[u8]) -> LlamaToken {
    let mut hasher = std::hash::DefaultHasher::new();
    bytes.hash(&mut hasher);
    let low = (hasher.finish() & 0x3fff_ffff) as i32;
    LlamaToken::new(-1 - low)
}

/// An uploaded image (PNG, JPEG, GIF, WebP) as mtmd takes it: RGB, within the bounds above.
fn bitmap(bytes: &[u8]) -> Result<MtmdBitmap, LmError> {
    let unreadable = |e: &dyn std::fmt::Display| {
        LmError::Engine(format!("an attached image could not be read ({e})"))
    };
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| unreadable(&e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let rgb = reader.decode().map_err(|e| unreadable(&e))?.into_rgb8();
    MtmdBitmap::from_image_data(rgb.width(), rgb.height(), rgb.as_raw()).map_err(|e| unreadable(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 7]))
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .expect("encoded");
        out
    }

    #[test]
    fn images_decode_within_bounds_and_bad_ones_say_why() {
        let bitmap = bitmap(&png(40, 30)).expect("a small PNG");
        assert_eq!((bitmap.nx(), bitmap.ny()), (40, 30));
        let Err(error) = super::bitmap(b"not an image") else {
            panic!("not an image, accepted")
        };
        assert!(error.to_string().contains("could not be read"), "{error}");
        // The bound on a side: at it an image is read, past it refused before decoding.
        assert!(super::bitmap(&png(MAX_SIDE, 1)).is_ok());
        let Err(error) = super::bitmap(&png(MAX_SIDE + 1, 1)) else {
            panic!("an image past the bound, accepted")
        };
        assert!(error.to_string().contains("could not be read"), "{error}");
    }

    #[test]
    fn an_image_stands_as_a_negative_token_of_its_own() {
        let (a, b) = (stand_in(&png(2, 2)), stand_in(&png(3, 2)));
        assert!(a.0 < 0 && b.0 < 0);
        assert_ne!(a, b);
        assert_eq!(a, stand_in(&png(2, 2)));
        assert_eq!(without_markers("a <__media__> b"), "a <_media_> b");
    }
}
