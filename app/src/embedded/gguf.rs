//! What a GGUF file's header says about its model, read without loading it: the architecture,
//! the quantization, the training context and the chat template. The header is untrusted input
//! (any file in the models folder or the hub cache): every length is checked against the file's
//! size and every count against a bound, so a hostile or damaged file costs a few reads and
//! yields a clear error, never a large allocation or a long scan.
use std::{
    fs::File,
    io::{BufReader, Read, Seek},
    path::Path,
};

/// What the library shows of a model file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GgufInfo {
    /// `general.architecture`, e.g. "llama".
    pub architecture: Option<String>,
    /// `general.file_type`'s name, e.g. "Q4_K_M".
    pub quantization: Option<String>,
    /// `<architecture>.context_length`: the context the model was trained with.
    pub context_length: Option<u32>,
    /// `tokenizer.chat_template`, when it has one (at most `MAX_TEMPLATE_BYTES`).
    pub chat_template: Option<String>,
}

/// Header entries read at most: real models have a few dozen.
const MAX_ENTRIES: u64 = 100_000;
/// Array elements walked at most, over the whole header (vocabularies have up to ~260,000).
const MAX_ELEMENTS: u64 = 4_000_000;
/// A key longer than this is no GGUF key.
const MAX_KEY_BYTES: u64 = 1024;
/// A template longer than this is kept out (real ones are under 20 KB).
const MAX_TEMPLATE_BYTES: u64 = 256 * 1024;

/// Reads `path`'s header. The error says what is wrong with the file.
pub fn read(path: &Path) -> Result<GgufInfo, String> {
    let file = File::open(path).map_err(|e| format!("cannot be read ({e})"))?;
    let size = file
        .metadata()
        .map_err(|e| format!("cannot be read ({e})"))?
        .len();
    Header {
        input: BufReader::with_capacity(64 * 1024, file),
        size,
        elements: 0,
    }
    .read()
}

struct Header {
    input: BufReader<File>,
    size: u64,
    elements: u64,
}

/// GGUF value types, as the format numbers them.
const STRING: u32 = 8;
const ARRAY: u32 = 9;

impl Header {
    fn read(mut self) -> Result<GgufInfo, String> {
        let mut magic = [0u8; 4];
        self.exact(&mut magic)?;
        if &magic != b"GGUF" {
            return Err("is not a GGUF file".into());
        }
        let version = self.u32()?;
        if !(2..=3).contains(&version) {
            return Err(format!(
                "is GGUF version {version}, which this app does not read"
            ));
        }
        let _tensors = self.u64()?;
        let entries = self.u64()?;
        if entries > MAX_ENTRIES {
            return Err(format!("claims {entries} header entries"));
        }
        let mut raw = Raw::default();
        for _ in 0..entries {
            let key = self.string(MAX_KEY_BYTES)?;
            let kind = self.u32()?;
            match (key.as_str(), kind) {
                ("general.architecture", STRING) => raw.architecture = Some(self.string(256)?),
                ("general.file_type", _) => raw.file_type = self.integer(kind)?,
                ("tokenizer.chat_template", STRING) => {
                    raw.chat_template = self.string_or_skip(MAX_TEMPLATE_BYTES)?
                }
                (key, _) if key.ends_with(".context_length") => {
                    let value = self.integer(kind)?;
                    raw.context_lengths.push((key.to_owned(), value));
                }
                _ => self.skip_value(kind)?,
            }
        }
        let context_length = raw.architecture.as_ref().and_then(|arch| {
            let key = format!("{arch}.context_length");
            raw.context_lengths
                .iter()
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.and_then(|v| u32::try_from(v).ok()))
        });
        Ok(GgufInfo {
            architecture: raw.architecture,
            quantization: raw
                .file_type
                .and_then(|t| u32::try_from(t).ok())
                .map(quantization_name),
            context_length,
            chat_template: raw.chat_template,
        })
    }

    fn exact(&mut self, buffer: &mut [u8]) -> Result<(), String> {
        self.input
            .read_exact(buffer)
            .map_err(|_| "ends in the middle of its header".to_string())
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut bytes = [0u8; 4];
        self.exact(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut bytes = [0u8; 8];
        self.exact(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// Moves `bytes` ahead, refusing to go past the end of the file.
    fn skip(&mut self, bytes: u64) -> Result<(), String> {
        let at = self
            .input
            .stream_position()
            .map_err(|e| format!("cannot be read ({e})"))?;
        if at.saturating_add(bytes) > self.size {
            return Err("has a header entry longer than the file".into());
        }
        let offset = i64::try_from(bytes).map_err(|_| "has an impossible length".to_string())?;
        self.input
            .seek_relative(offset)
            .map_err(|e| format!("cannot be read ({e})"))
    }

    fn length(&mut self) -> Result<u64, String> {
        let length = self.u64()?;
        if length > self.size {
            return Err("has a header entry longer than the file".into());
        }
        Ok(length)
    }

    fn string(&mut self, limit: u64) -> Result<String, String> {
        self.string_or_skip(limit)?
            .ok_or_else(|| "has a header entry longer than expected".to_string())
    }

    /// A string of at most `limit` bytes; a longer one is skipped (`None`).
    fn string_or_skip(&mut self, limit: u64) -> Result<Option<String>, String> {
        let length = self.length()?;
        if length > limit {
            self.skip(length)?;
            return Ok(None);
        }
        let mut bytes = vec![0u8; length as usize];
        self.exact(&mut bytes)?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// An integer of any integer type; `None` (and skipped) for another type.
    fn integer(&mut self, kind: u32) -> Result<Option<u64>, String> {
        let value = match kind {
            0 | 1 => {
                let mut b = [0u8; 1];
                self.exact(&mut b)?;
                u64::from(b[0])
            }
            2 | 3 => {
                let mut b = [0u8; 2];
                self.exact(&mut b)?;
                u64::from(u16::from_le_bytes(b))
            }
            4 | 5 => u64::from(self.u32()?),
            10 | 11 => self.u64()?,
            _ => {
                self.skip_value(kind)?;
                return Ok(None);
            }
        };
        Ok(Some(value))
    }

    fn skip_value(&mut self, kind: u32) -> Result<(), String> {
        match kind {
            STRING => {
                let length = self.length()?;
                self.skip(length)
            }
            ARRAY => {
                let element = self.u32()?;
                let count = self.u64()?;
                if element == ARRAY {
                    return Err("has an array of arrays".into());
                }
                if element == STRING {
                    self.elements = self.elements.saturating_add(count);
                    if self.elements > MAX_ELEMENTS {
                        return Err("has more header entries than any model".into());
                    }
                    for _ in 0..count {
                        let length = self.length()?;
                        self.skip(length)?;
                    }
                    Ok(())
                } else {
                    let width = fixed_width(element)?;
                    self.skip(count.saturating_mul(width))
                }
            }
            other => {
                let width = fixed_width(other)?;
                self.skip(width)
            }
        }
    }
}

#[derive(Default)]
struct Raw {
    architecture: Option<String>,
    file_type: Option<u64>,
    chat_template: Option<String>,
    context_lengths: Vec<(String, Option<u64>)>,
}

fn fixed_width(kind: u32) -> Result<u64, String> {
    match kind {
        0 | 1 | 7 => Ok(1),
        2 | 3 => Ok(2),
        4..=6 => Ok(4),
        10..=12 => Ok(8),
        other => Err(format!("has a header value of unknown type {other}")),
    }
}

/// `general.file_type` by llama.cpp's names (`LLAMA_FTYPE_*` in llama.h).
fn quantization_name(file_type: u32) -> String {
    let name = match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        other => return format!("type {other}"),
    };
    name.to_owned()
}

/// The chat template's family, by the markers its text writes; `None` without a template.
pub fn template_name(template: Option<&str>) -> &'static str {
    let Some(text) = template else {
        return "none (ChatML is used)";
    };
    let families: [(&str, &str); 10] = [
        ("<|start_header_id|>", "llama3"),
        ("<|im_start|>", "chatml"),
        ("<start_of_turn>", "gemma"),
        ("[TOOL_CALLS]", "mistral"),
        ("[INST]", "llama2/mistral"),
        ("<|START_OF_TURN_TOKEN|>", "command-r"),
        ("<｜User｜>", "deepseek"),
        ("<|user|>", "phi3/zephyr"),
        ("<|turn>", "gemma"),
        ("### Instruction", "alpaca"),
    ];
    families
        .iter()
        .find(|(marker, _)| text.contains(marker))
        .map_or("custom", |(_, name)| name)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn models() -> std::path::PathBuf {
        testkit::shared_dir().join("models")
    }

    #[test]
    fn reads_a_real_models_header() {
        let smol = read(&models().join("SmolLM2-135M-Instruct.Q4_1.gguf")).expect("a model");
        assert_eq!(smol.architecture.as_deref(), Some("llama"));
        assert_eq!(smol.quantization.as_deref(), Some("Q4_1"));
        assert_eq!(smol.context_length, Some(8192));
        assert_eq!(template_name(smol.chat_template.as_deref()), "chatml");
        let tiny = read(&models().join("llama-2-tiny-random.gguf")).expect("a model");
        assert_eq!(tiny.architecture.as_deref(), Some("llama"));
        assert!(tiny.context_length.is_some());
    }

    fn header(entries: u64, body: &[u8]) -> Vec<u8> {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        bytes.extend(entries.to_le_bytes());
        bytes.extend(body);
        bytes
    }

    fn key(name: &str, kind: u32) -> Vec<u8> {
        let mut bytes = (name.len() as u64).to_le_bytes().to_vec();
        bytes.extend(name.as_bytes());
        bytes.extend(kind.to_le_bytes());
        bytes
    }

    fn read_bytes(bytes: &[u8]) -> Result<GgufInfo, String> {
        let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
        file.write_all(bytes).expect("written");
        read(file.path())
    }

    #[test]
    fn a_hostile_or_damaged_header_is_a_clear_error() {
        assert_eq!(
            read_bytes(b"PK\x03\x04 a zip").unwrap_err(),
            "is not a GGUF file"
        );
        assert_eq!(
            read_bytes(b"GGUF").unwrap_err(),
            "ends in the middle of its header"
        );
        assert_eq!(
            read_bytes(&header(u64::MAX, &[])).unwrap_err(),
            format!("claims {} header entries", u64::MAX)
        );
        // A string claiming more bytes than the file has.
        let mut body = key("general.name", STRING);
        body.extend(u64::MAX.to_le_bytes());
        assert_eq!(
            read_bytes(&header(1, &body)).unwrap_err(),
            "has a header entry longer than the file"
        );
        // An array of a billion strings that are not there.
        let mut body = key("tokenizer.ggml.tokens", ARRAY);
        body.extend(STRING.to_le_bytes());
        body.extend(1_000_000_000u64.to_le_bytes());
        assert_eq!(
            read_bytes(&header(1, &body)).unwrap_err(),
            "has more header entries than any model"
        );
        // A fixed-width array longer than the file.
        let mut body = key("tokenizer.ggml.scores", ARRAY);
        body.extend(6u32.to_le_bytes());
        body.extend((u64::MAX / 2).to_le_bytes());
        assert_eq!(
            read_bytes(&header(1, &body)).unwrap_err(),
            "has a header entry longer than the file"
        );
    }

    #[test]
    fn a_small_header_reads_its_fields() {
        let mut body = key("general.architecture", STRING);
        body.extend(5u64.to_le_bytes());
        body.extend(b"qwen2");
        body.extend(key("general.file_type", 4));
        body.extend(15u32.to_le_bytes());
        body.extend(key("qwen2.context_length", 4));
        body.extend(32768u32.to_le_bytes());
        body.extend(key("llama.context_length", 4));
        body.extend(1u32.to_le_bytes());
        let info = read_bytes(&header(4, &body)).expect("read");
        assert_eq!(info.architecture.as_deref(), Some("qwen2"));
        assert_eq!(info.quantization.as_deref(), Some("Q4_K_M"));
        assert_eq!(info.context_length, Some(32768));
        assert_eq!(info.chat_template, None);
        assert_eq!(template_name(None), "none (ChatML is used)");
        assert_eq!(template_name(Some("{{ '<|start_header_id|>' }}")), "llama3");
        assert_eq!(template_name(Some("{{ messages }}")), "custom");
    }
}
