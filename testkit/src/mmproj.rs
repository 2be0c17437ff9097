//! A tiny random-weights vision projector ("mmproj" GGUF) for tests of image input.
//!
//! llama.cpp's multimodal library (`tools/mtmd`, its `clip.cpp`) loads a vision encoder and a
//! projector from a GGUF file of their own, beside the text model. Real ones weigh hundreds of
//! megabytes; this writes a LLaVA-style one (`clip.projector_type = "mlp"`, the simplest type
//! clip.cpp supports) of about 100 KB, with random weights and an output width equal to the text
//! model's `n_embd`, so that `mtmd_init_from_file`, `mtmd_tokenize` and `mtmd_helper_eval_chunks`
//! run end to end in milliseconds. What the text model makes of the image is noise.
//!
//! The key names, required tensors and shapes follow the `clip.cpp` vendored by
//! `llama-cpp-sys-2` 0.1.160 (`clip_model_loader::load_hparams`, `load_tensors`, and the graph in
//! `models/llava.cpp`).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// The side of the square image the encoder takes, in pixels: mtmd resizes (and pads, keeping the
/// aspect ratio) every image to this before encoding.
pub const IMAGE_SIZE: u32 = 32;
/// The side of a square patch, in pixels; each patch becomes one embedding.
pub const PATCH_SIZE: u32 = 8;
/// How many positions of the text model's context one image takes: one per patch, 4 × 4 = 16
/// (the "mlp" projector adds no begin/end tokens and no class embedding is written).
pub const TOKENS_PER_IMAGE: usize =
    ((IMAGE_SIZE / PATCH_SIZE) * (IMAGE_SIZE / PATCH_SIZE)) as usize;

/// The encoder's width (its own `n_embd`), also the projector's hidden width: the file grows
/// only linearly with the text model's `n_embd` (the last matrix is `WIDTH × text_n_embd`).
const WIDTH: usize = 32;
const FFN: usize = 64;
const HEADS: u32 = 2;
/// clip.cpp's LLaVA graph runs all blocks but the last (LLaVA takes the penultimate layer's
/// features), so two blocks make one actually run: attention and FFN get exercised.
const BLOCKS: usize = 2;
const EPS: f32 = 1e-5;
const N_PATCHES: usize = TOKENS_PER_IMAGE;

const GGUF_VERSION: u32 = 3;
/// GGUF's default alignment (no `general.alignment` key is written): the data section and every
/// tensor's offset within it are multiples of this.
const ALIGNMENT: usize = 32;

// GGUF metadata value types.
const T_UINT8: u32 = 0;
const T_INT8: u32 = 1;
const T_UINT16: u32 = 2;
const T_INT16: u32 = 3;
const T_UINT32: u32 = 4;
const T_INT32: u32 = 5;
const T_FLOAT32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STRING: u32 = 8;
const T_ARRAY: u32 = 9;
const T_UINT64: u32 = 10;
const T_INT64: u32 = 11;
const T_FLOAT64: u32 = 12;
/// ggml's tensor type id for f32.
const GGML_TYPE_F32: u32 = 0;

/// A metadata value as written. clip.cpp reads each key with a getter of one exact type (it
/// aborts on `gguf_get_val_u32` of an i32, for one), so the types here matter.
enum Value {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(&'static str),
    F32s([f32; 3]),
}

struct Tensor {
    name: String,
    /// ggml order: `ne[0]` is the innermost (contiguous) dimension.
    ne: Vec<usize>,
    data: Vec<f32>,
}

/// Writes a tiny random-weights vision projector (mmproj GGUF) for a text model of `n_embd`
/// `text_n_embd` (see [`gguf_n_embd`]): mtmd refuses a projector whose output width differs from
/// the text model's. The weights come from a fixed seed, so the file is the same on every call.
pub fn write_tiny_mmproj(path: &Path, text_n_embd: usize) -> io::Result<()> {
    if text_n_embd == 0 || u32::try_from(text_n_embd).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("text_n_embd {text_n_embd} is out of range"),
        ));
    }
    std::fs::write(path, encode(&metadata(text_n_embd), &tensors(text_n_embd)))
}

/// Reads a text model's `n_embd`: its `<general.architecture>.embedding_length`.
pub fn gguf_n_embd(path: &Path) -> io::Result<usize> {
    let mut r = BufReader::new(File::open(path)?);
    let (_, kvs) = read_metadata(&mut r)?;
    let find = |key: &str| kvs.iter().find(|(k, _)| k == key).map(|(_, v)| v);
    let arch = match find("general.architecture") {
        Some(Meta::Str(arch)) => arch,
        _ => return Err(invalid("no string general.architecture")),
    };
    let key = format!("{arch}.embedding_length");
    match find(&key) {
        Some(Meta::Uint(n)) => {
            usize::try_from(*n).map_err(|_| invalid("embedding_length too large"))
        }
        Some(Meta::Int(n)) => usize::try_from(*n).map_err(|_| invalid("negative embedding_length")),
        _ => Err(invalid(&format!("no integer {key}"))),
    }
}

fn metadata(text_n_embd: usize) -> Vec<(&'static str, Value)> {
    // Checked by write_tiny_mmproj.
    let text_n_embd = u32::try_from(text_n_embd).unwrap_or(u32::MAX);
    vec![
        ("general.architecture", Value::Str("clip")),
        ("general.name", Value::Str("tiny-random-mmproj")),
        (
            "general.description",
            Value::Str("random weights, for tests only"),
        ),
        ("general.file_type", Value::U32(0)), // all f32
        ("clip.projector_type", Value::Str("mlp")),
        ("clip.has_vision_encoder", Value::Bool(true)),
        ("clip.vision.image_size", Value::U32(IMAGE_SIZE)),
        ("clip.vision.patch_size", Value::U32(PATCH_SIZE)),
        ("clip.vision.embedding_length", Value::U32(WIDTH as u32)),
        ("clip.vision.feed_forward_length", Value::U32(FFN as u32)),
        // Required but only logged for "mlp"; the output width comes from mm.2.weight.
        ("clip.vision.projection_dim", Value::U32(text_n_embd)),
        ("clip.vision.block_count", Value::U32(BLOCKS as u32)),
        ("clip.vision.attention.head_count", Value::U32(HEADS)),
        ("clip.vision.attention.layer_norm_epsilon", Value::F32(EPS)),
        ("clip.vision.image_mean", Value::F32s([0.5; 3])),
        ("clip.vision.image_std", Value::F32s([0.5; 3])),
    ]
}

/// The tensors of a CLIP-like encoder (patch embedding, learned positions, pre-norm transformer
/// blocks) and of LLaVA's two-layer MLP projector (`mm.0`, GELU, `mm.2`).
fn tensors(text_n_embd: usize) -> Vec<Tensor> {
    let mut rng = Rng(0x6d6d_7072_6f6a_0001);
    let p = PATCH_SIZE as usize;
    let mut out = vec![
        // A conv2d kernel [KW, KH, IC, OC] applied with stride = patch size.
        rng.weight("v.patch_embd.weight", vec![p, p, 3, WIDTH], 3 * p * p),
        rng.weight("v.position_embd.weight", vec![WIDTH, N_PATCHES], 16),
    ];
    for il in 0..BLOCKS {
        let blk = |name: &str| format!("v.blk.{il}.{name}");
        out.push(filled(blk("ln1.weight"), vec![WIDTH], 1.0));
        out.push(filled(blk("ln1.bias"), vec![WIDTH], 0.0));
        for name in ["attn_q", "attn_k", "attn_v", "attn_out"] {
            out.push(rng.weight(&blk(&format!("{name}.weight")), vec![WIDTH, WIDTH], WIDTH));
            out.push(filled(blk(&format!("{name}.bias")), vec![WIDTH], 0.0));
        }
        out.push(filled(blk("ln2.weight"), vec![WIDTH], 1.0));
        out.push(filled(blk("ln2.bias"), vec![WIDTH], 0.0));
        // ffn_down's ne[0] must be FFN, not WIDTH: clip.cpp swaps up and down for "mlp" files
        // whose ffn_down.weight has ne[0] == n_embd (a legacy export mistake).
        out.push(rng.weight(&blk("ffn_up.weight"), vec![WIDTH, FFN], WIDTH));
        out.push(filled(blk("ffn_up.bias"), vec![FFN], 0.0));
        out.push(rng.weight(&blk("ffn_down.weight"), vec![FFN, WIDTH], FFN));
        out.push(filled(blk("ffn_down.bias"), vec![WIDTH], 0.0));
    }
    out.push(rng.weight("mm.0.weight", vec![WIDTH, WIDTH], WIDTH));
    out.push(filled("mm.0.bias".to_string(), vec![WIDTH], 0.0));
    out.push(rng.weight("mm.2.weight", vec![WIDTH, text_n_embd], WIDTH));
    out.push(filled("mm.2.bias".to_string(), vec![text_n_embd], 0.0));
    out
}

fn filled(name: String, ne: Vec<usize>, value: f32) -> Tensor {
    let n = ne.iter().product();
    Tensor {
        name,
        ne,
        data: vec![value; n],
    }
}

/// splitmix64: deterministic, dependency-free, good enough for noise.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1) / sqrt(fan_in), so activations stay of order one through the layers.
    fn weight(&mut self, name: &str, ne: Vec<usize>, fan_in: usize) -> Tensor {
        let scale = 1.0 / (fan_in as f32).sqrt();
        let n = ne.iter().product();
        let data = (0..n)
            .map(|_| ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale)
            .collect();
        Tensor {
            name: name.to_string(),
            ne,
            data,
        }
    }
}

fn padded(n: usize) -> usize {
    n.div_ceil(ALIGNMENT) * ALIGNMENT
}

/// GGUF v3, little-endian: header, metadata, tensor infos, then the data section, which starts
/// at the next multiple of [`ALIGNMENT`] and holds each tensor at an aligned offset. ggml's
/// reader requires each offset to equal the sum of the padded sizes of the tensors before it.
fn encode(kvs: &[(&str, Value)], tensors: &[Tensor]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kvs.len() as u64).to_le_bytes());
    for (key, value) in kvs {
        put_str(&mut out, key);
        match value {
            Value::U32(v) => {
                out.extend_from_slice(&T_UINT32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::F32(v) => {
                out.extend_from_slice(&T_FLOAT32.to_le_bytes());
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Bool(v) => {
                out.extend_from_slice(&T_BOOL.to_le_bytes());
                out.push(u8::from(*v));
            }
            Value::Str(v) => {
                out.extend_from_slice(&T_STRING.to_le_bytes());
                put_str(&mut out, v);
            }
            Value::F32s(vs) => {
                out.extend_from_slice(&T_ARRAY.to_le_bytes());
                out.extend_from_slice(&T_FLOAT32.to_le_bytes());
                out.extend_from_slice(&(vs.len() as u64).to_le_bytes());
                for v in vs {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0;
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.ne.len() as u32).to_le_bytes());
        for &d in &t.ne {
            out.extend_from_slice(&(d as u64).to_le_bytes());
        }
        out.extend_from_slice(&GGML_TYPE_F32.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += padded(t.data.len() * 4);
    }
    for t in tensors {
        out.resize(padded(out.len()), 0);
        for v in &t.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out.resize(padded(out.len()), 0);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A metadata value as read back; arrays are skipped, not kept (a text model's vocabulary is one).
#[derive(Debug, PartialEq)]
enum Meta {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array,
}

/// Reads a GGUF header and its metadata, leaving `r` at the first tensor info: the tensor count
/// and the key/value pairs.
fn read_metadata(r: &mut impl Read) -> io::Result<(u64, Vec<(String, Meta)>)> {
    let mut magic = [0; 4];
    r.read_exact(&mut magic)?;
    if &magic != b"GGUF" {
        return Err(invalid("not a GGUF file"));
    }
    let version = read_u32(r)?;
    if version != 2 && version != 3 {
        return Err(invalid(&format!("unsupported GGUF version {version}")));
    }
    let n_tensors = read_u64(r)?;
    let n_kv = read_u64(r)?;
    let mut kvs = Vec::new();
    for _ in 0..n_kv {
        let key = read_str(r)?;
        let ty = read_u32(r)?;
        let value = read_value(r, ty)?;
        kvs.push((key, value));
    }
    Ok((n_tensors, kvs))
}

fn read_value(r: &mut impl Read, ty: u32) -> io::Result<Meta> {
    Ok(match ty {
        T_UINT8 => Meta::Uint(read_n::<1>(r)?[0].into()),
        T_INT8 => Meta::Int(i8::from_le_bytes(read_n(r)?).into()),
        T_UINT16 => Meta::Uint(u16::from_le_bytes(read_n(r)?).into()),
        T_INT16 => Meta::Int(i16::from_le_bytes(read_n(r)?).into()),
        T_UINT32 => Meta::Uint(read_u32(r)?.into()),
        T_INT32 => Meta::Int(i32::from_le_bytes(read_n(r)?).into()),
        T_FLOAT32 => Meta::Float(f32::from_le_bytes(read_n(r)?).into()),
        T_BOOL => Meta::Bool(read_n::<1>(r)?[0] != 0),
        T_STRING => Meta::Str(read_str(r)?),
        T_UINT64 => Meta::Uint(read_u64(r)?),
        T_INT64 => Meta::Int(i64::from_le_bytes(read_n(r)?)),
        T_FLOAT64 => Meta::Float(f64::from_le_bytes(read_n(r)?)),
        T_ARRAY => {
            let elem = read_u32(r)?;
            let n = read_u64(r)?;
            for _ in 0..n {
                read_value(r, elem)?;
            }
            Meta::Array
        }
        _ => return Err(invalid(&format!("unknown GGUF value type {ty}"))),
    })
}

fn read_n<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut buf = [0; N];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    Ok(u32::from_le_bytes(read_n(r)?))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    Ok(u64::from_le_bytes(read_n(r)?))
}

fn read_str(r: &mut impl Read) -> io::Result<String> {
    let len = read_u64(r)?;
    // Bounded, so a corrupt length fails at the end of the file instead of allocating it.
    let mut buf = Vec::new();
    r.take(len).read_to_end(&mut buf)?;
    if buf.len() as u64 != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    String::from_utf8(buf).map_err(|_| invalid("string is not UTF-8"))
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const TEXT_N_EMBD: usize = 8;

    struct Info {
        name: String,
        ne: Vec<u64>,
        ty: u32,
        offset: u64,
    }

    /// The tensor infos that follow the metadata, and where the data section starts.
    fn read_infos(c: &mut Cursor<&[u8]>, n: u64) -> (Vec<Info>, usize) {
        let infos = (0..n)
            .map(|_| {
                let name = read_str(c).unwrap();
                let n_dims = read_u32(c).unwrap();
                let ne = (0..n_dims).map(|_| read_u64(c).unwrap()).collect();
                let ty = read_u32(c).unwrap();
                let offset = read_u64(c).unwrap();
                Info {
                    name,
                    ne,
                    ty,
                    offset,
                }
            })
            .collect();
        (infos, padded(c.position() as usize))
    }

    struct Parsed {
        kvs: Vec<(String, Meta)>,
        infos: Vec<Info>,
        data_start: usize,
    }

    fn parse(bytes: &[u8]) -> Parsed {
        let mut c = Cursor::new(bytes);
        let (n_tensors, kvs) = read_metadata(&mut c).unwrap();
        let (infos, data_start) = read_infos(&mut c, n_tensors);
        Parsed {
            kvs,
            infos,
            data_start,
        }
    }

    fn tiny() -> Vec<u8> {
        encode(&metadata(TEXT_N_EMBD), &tensors(TEXT_N_EMBD))
    }

    fn kv<'a>(kvs: &'a [(String, Meta)], key: &str) -> &'a Meta {
        &kvs.iter().find(|(k, _)| k == key).unwrap().1
    }

    #[test]
    fn header_has_magic_version_and_counts() {
        let bytes = tiny();
        assert_eq!(&bytes[..4], b"GGUF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 3);
        let n_tensors = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let n_kv = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
        // 2 encoder tensors + 16 per block + 4 projector tensors.
        assert_eq!(n_tensors, (2 + 16 * BLOCKS + 4) as u64);
        assert_eq!(n_kv, 16);
        assert_eq!(n_kv as usize, metadata(TEXT_N_EMBD).len());
    }

    #[test]
    fn data_section_and_tensors_are_aligned_and_contiguous() {
        let bytes = tiny();
        let Parsed {
            infos, data_start, ..
        } = parse(&bytes);
        assert_eq!(data_start % ALIGNMENT, 0);
        let mut expected = 0;
        for info in &infos {
            assert_eq!(info.ty, GGML_TYPE_F32, "{}", info.name);
            assert_eq!(info.offset % ALIGNMENT as u64, 0, "{}", info.name);
            // ggml's loader rejects any gap or overlap between padded tensors.
            assert_eq!(info.offset, expected, "{}", info.name);
            let nbytes = info.ne.iter().product::<u64>() as usize * 4;
            expected += padded(nbytes) as u64;
        }
        assert_eq!(bytes.len(), data_start + expected as usize);
    }

    #[test]
    fn parses_back_with_what_clip_cpp_requires() {
        let bytes = tiny();
        let Parsed {
            kvs,
            infos,
            data_start,
        } = parse(&bytes);
        assert_eq!(kv(&kvs, "clip.projector_type"), &Meta::Str("mlp".into()));
        assert_eq!(kv(&kvs, "clip.has_vision_encoder"), &Meta::Bool(true));
        assert_eq!(
            kv(&kvs, "clip.vision.image_size"),
            &Meta::Uint(IMAGE_SIZE.into())
        );
        assert_eq!(
            kv(&kvs, "clip.vision.patch_size"),
            &Meta::Uint(PATCH_SIZE.into())
        );
        assert_eq!(
            kv(&kvs, "clip.vision.embedding_length"),
            &Meta::Uint(WIDTH as u64)
        );
        assert_eq!(kv(&kvs, "clip.vision.image_mean"), &Meta::Array);
        assert_eq!(
            kv(&kvs, "clip.vision.attention.layer_norm_epsilon"),
            &Meta::Float(f64::from(EPS))
        );

        let info = |name: &str| infos.iter().find(|i| i.name == name).unwrap();
        // The projector's output width is what mtmd checks against the text model's n_embd.
        assert_eq!(info("mm.2.weight").ne, [WIDTH as u64, TEXT_N_EMBD as u64]);
        assert_eq!(info("mm.2.bias").ne, [TEXT_N_EMBD as u64]);
        assert_eq!(info("v.patch_embd.weight").ne, [8, 8, 3, WIDTH as u64]);
        assert_eq!(info("v.position_embd.weight").ne, [WIDTH as u64, 16]);
        assert_eq!(
            info("v.blk.1.ffn_down.weight").ne,
            [FFN as u64, WIDTH as u64]
        );

        // The data is where the infos say: a layer norm's weights are all ones.
        let at = data_start + info("v.blk.0.ln1.weight").offset as usize;
        for chunk in bytes[at..at + WIDTH * 4].chunks_exact(4) {
            assert_eq!(f32::from_le_bytes(chunk.try_into().unwrap()), 1.0);
        }
        // And the random weights are finite, small and not all equal.
        let at = data_start + info("mm.0.weight").offset as usize;
        let ws: Vec<f32> = bytes[at..at + WIDTH * WIDTH * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(ws.iter().all(|w| w.is_finite() && w.abs() <= 1.0));
        assert!(ws.iter().any(|w| *w != ws[0]));
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("testkit-mmproj-{}-{name}.gguf", std::process::id()))
    }

    #[test]
    fn writes_the_same_file_every_time() {
        let path = temp_path("same");
        write_tiny_mmproj(&path, 64).unwrap();
        let first = std::fs::read(&path).unwrap();
        write_tiny_mmproj(&path, 64).unwrap();
        let second = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(first, second);
        let infos = parse(&first).infos;
        let mm2 = infos.iter().find(|i| i.name == "mm.2.weight").unwrap();
        assert_eq!(mm2.ne, [WIDTH as u64, 64]);
    }

    #[test]
    fn rejects_zero_width() {
        let err = write_tiny_mmproj(&temp_path("zero"), 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn reads_n_embd_of_a_text_model() {
        // A text model's metadata in miniature, with a string array to skip, as a vocabulary is.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"GGUF");
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&3u64.to_le_bytes());
        put_str(&mut bytes, "general.architecture");
        bytes.extend_from_slice(&T_STRING.to_le_bytes());
        put_str(&mut bytes, "llama");
        put_str(&mut bytes, "tokenizer.ggml.tokens");
        bytes.extend_from_slice(&T_ARRAY.to_le_bytes());
        bytes.extend_from_slice(&T_STRING.to_le_bytes());
        bytes.extend_from_slice(&2u64.to_le_bytes());
        put_str(&mut bytes, "<s>");
        put_str(&mut bytes, "</s>");
        put_str(&mut bytes, "llama.embedding_length");
        bytes.extend_from_slice(&T_UINT32.to_le_bytes());
        bytes.extend_from_slice(&288u32.to_le_bytes());
        let path = temp_path("text");
        std::fs::write(&path, &bytes).unwrap();
        let n_embd = gguf_n_embd(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(n_embd.unwrap(), 288);
    }

    #[test]
    fn n_embd_of_the_projector_itself_is_an_error() {
        // general.architecture is "clip", and there is no clip.embedding_length.
        let path = temp_path("self");
        write_tiny_mmproj(&path, TEXT_N_EMBD).unwrap();
        let err = gguf_n_embd(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
