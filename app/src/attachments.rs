//! Files sent with a message. What a file is comes from its bytes, never from its name or the
//! type the browser claims: text (UTF-8: plain text, Markdown, CSV, JSON, source code), PDF
//! (its text extracted with `pdf-extract`, in a child process within limits: `pdf_text`), or an image (PNG, JPEG, GIF, WebP; only for a model
//! that can see). Anything else is refused with a message saying what can be attached. The
//! files' text goes into the prompt before the message, each labelled with its name; nothing in
//! a file is ever rendered (pages show a chip that downloads the original).
use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    domain::size,
    error::{AppError, AppResult},
    pdf_text::PdfError,
};

/// A file as it arrived: the name the client gave it and its bytes.
#[derive(Clone, Debug)]
pub struct Upload {
    pub name: String,
    pub bytes: Bytes,
}

/// How many files a message may carry, and how large each may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_count: usize,
    pub max_bytes: usize,
}

/// A file accepted for a message: named, typed, and (unless an image) its text.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub id: Uuid,
    pub name: String,
    /// Decided here from the bytes: `text/plain`, `text/markdown`, `text/csv`,
    /// `application/json`, `application/pdf`, `image/png`, `image/jpeg`, `image/gif`,
    /// `image/webp`. Never `text/html`.
    pub media_type: &'static str,
    pub bytes: Bytes,
    /// What the model reads of it; `None` for an image.
    pub text: Option<String>,
}

/// A message's files as its row lists them (the `attachments` column) and the API shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AttachmentRef {
    pub id: Uuid,
    pub name: String,
    #[schema(example = "text/markdown")]
    pub media_type: String,
    pub size_bytes: u64,
}

impl Attachment {
    pub fn reference(&self) -> AttachmentRef {
        AttachmentRef {
            id: self.id,
            name: self.name.clone(),
            media_type: self.media_type.to_owned(),
            size_bytes: self.bytes.len() as u64,
        }
    }
}

/// The list a message's row and the API show of `files`.
pub fn references(files: &[Attachment]) -> Vec<AttachmentRef> {
    files.iter().map(Attachment::reference).collect()
}

impl AttachmentRef {
    pub fn is_image(&self) -> bool {
        self.media_type.starts_with("image/")
    }
}

/// What can be attached, for error messages.
const ACCEPTED: &str = "text files (plain text, Markdown, CSV, JSON, source code), PDFs and, for a model that can see, images";

/// What a model that cannot see is told instead of an image left out of its prompt.
pub const IMAGE_LEFT_OUT: &str =
    "(An image attached here is not shown: this model cannot see images.)";

/// Checks a message's uploads against the limits and reads each one: its kind from its bytes,
/// a text file's text (a PDF's comes after, from [`prepare_off_thread`]). `vision`: the model
/// can be sent images.
pub fn prepare(uploads: Vec<Upload>, limits: Limits, vision: bool) -> AppResult<Vec<Attachment>> {
    check_count(uploads.len(), limits)?;
    uploads
        .into_iter()
        .map(|upload| read(upload, limits, vision))
        .collect()
}

/// [`prepare`] on a blocking thread (checking 5 MiB of text takes a while), then each PDF's
/// text from a child process within `pdf`'s limits (`pdf_text`).
pub async fn prepare_off_thread(
    uploads: Vec<Upload>,
    limits: Limits,
    vision: bool,
    pdf: &crate::pdf_text::PdfLimits,
) -> AppResult<Vec<Attachment>> {
    let mut files = tokio::task::spawn_blocking(move || prepare(uploads, limits, vision))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("reading attachments: {e}")))??;
    for file in files.iter_mut().filter(|f| f.media_type == PDF) {
        let text = crate::pdf_text::extract(&file.bytes, pdf)
            .await
            .map_err(|e| pdf_refused(&file.name, e))?;
        file.text = Some(no_text_is_an_error(&file.name, text)?);
    }
    Ok(files)
}

/// More files than a message may carry is refused before any is read.
pub fn check_count(count: usize, limits: Limits) -> AppResult<()> {
    if count > limits.max_count {
        return Err(AppError::TooLarge(format!(
            "A message can carry at most {} files; this one has {count}. Please attach fewer.",
            limits.max_count
        )));
    }
    Ok(())
}

/// A file larger than the limit, as the visitor reads it.
pub fn too_large(name: &str, bytes: usize, limits: Limits) -> AppError {
    AppError::TooLarge(format!(
        "“{name}” is {}; files can be at most {} each.",
        size(bytes),
        size(limits.max_bytes)
    ))
}

fn read(upload: Upload, limits: Limits, vision: bool) -> AppResult<Attachment> {
    let name = file_name(&upload.name);
    if upload.bytes.len() > limits.max_bytes {
        return Err(too_large(&name, upload.bytes.len(), limits));
    }
    if upload.bytes.is_empty() {
        return Err(AppError::Invalid(format!(
            "“{name}” is empty: there is nothing in it to read."
        )));
    }
    let (media_type, text) = match sniff(&upload.bytes) {
        Some(Kind::Pdf) => (PDF, None),
        Some(Kind::Image(media_type)) if vision => (media_type, None),
        Some(Kind::Image(_)) => {
            return Err(AppError::UnsupportedMediaType(format!(
                "“{name}” is an image, and the model here cannot see images (its server reports no vision). Attach text or a PDF instead, or choose a model that can see."
            )));
        }
        Some(Kind::Text(text)) => (text_media_type(&name), Some(text)),
        None => {
            return Err(AppError::UnsupportedMediaType(format!(
                "“{name}” is not a file the model can read. You can attach {ACCEPTED}."
            )));
        }
    };
    Ok(Attachment {
        id: Uuid::now_v7(),
        name,
        media_type,
        bytes: upload.bytes,
        text,
    })
}

enum Kind {
    Text(String),
    Pdf,
    Image(&'static str),
}

/// What the bytes are, from their first bytes (images, PDF) or from being text.
fn sniff(bytes: &[u8]) -> Option<Kind> {
    const IMAGES: [(&[u8], &str); 5] = [
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"RIFF", "image/webp"),
    ];
    if bytes.starts_with(b"%PDF-") {
        return Some(Kind::Pdf);
    }
    for (magic, media_type) in IMAGES {
        let webp = media_type != "image/webp" || bytes.get(8..12) == Some(b"WEBP");
        if bytes.starts_with(magic) && webp {
            return Some(Kind::Image(media_type));
        }
    }
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes)).ok()?;
    is_text(text).then(|| Kind::Text(text.to_owned()))
}

/// Text a person wrote: no NUL, and control characters other than tabs and line breaks are
/// rare (binary files that happen to be valid UTF-8 have many).
fn is_text(text: &str) -> bool {
    let mut controls = 0usize;
    let mut chars = 0usize;
    for c in text.chars() {
        chars += 1;
        if c == '\0' {
            return false;
        }
        if c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c') {
            controls += 1;
        }
    }
    controls * 100 <= chars
}

/// A text file's type, from its name: only ever a text type, so a download is never a page.
fn text_media_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match extension.as_deref() {
        Some("md" | "markdown") => "text/markdown",
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        _ => "text/plain",
    }
}

const PDF: &str = "application/pdf";

/// Why a PDF's text could not be had, as the visitor reads it.
fn pdf_refused(name: &str, error: PdfError) -> AppError {
    match error {
        PdfError::Unreadable => AppError::Invalid(format!(
            "“{name}” could not be read as a PDF (it may be damaged or password-protected)."
        )),
        PdfError::TooCostly => AppError::Invalid(format!(
            "“{name}” takes too much memory or time to read: its compressed contents unpack to far more than the file. Attach its text instead."
        )),
        PdfError::TooMuchText => AppError::Invalid(format!(
            "“{name}” holds more text than can be read (at most {}).",
            size(crate::pdf_text::MAX_TEXT_BYTES)
        )),
        PdfError::Reader(e) => AppError::Internal(anyhow::anyhow!("reading “{name}”: {e}")),
    }
}

/// A PDF's text, or why there is none.
fn no_text_is_an_error(name: &str, text: String) -> AppResult<String> {
    if text.trim().is_empty() {
        return Err(AppError::Invalid(format!(
            "“{name}” has no text to read: it may be scanned pages (pictures of text). Attach its text instead."
        )));
    }
    Ok(text)
}

/// A file's name as shown and downloaded: its last path part (some browsers send a whole
/// path), without control or invisible format characters, at most 200 characters; `file` when
/// nothing is left.
pub fn file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let name: String = last
        .chars()
        .filter(|&c| !c.is_control() && !is_invisible_format(c))
        .take(200)
        .collect();
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." {
        "file".into()
    } else {
        name.to_owned()
    }
}

/// Characters that change how a name reads without showing themselves: bidirectional
/// overrides, embeddings, isolates and marks (`invoice\u{202E}fdp.exe` shows as
/// `invoiceexe.pdf`), zero-width characters, and the other invisible format characters
/// (Unicode category Cf).
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{070F}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{110BD}' | '\u{110CD}'
        | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}'
        | '\u{E0001}' | '\u{E0020}'..='\u{E007F}'
        | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{08E2}')
}

/// The files' text as the prompt sends it, before the message: each labelled with its name,
/// in a fence longer than any run of backticks in it. `None` when no file has text.
pub fn prompt_text(files: &[Attachment]) -> Option<String> {
    let parts: Vec<String> = files
        .iter()
        .filter_map(|f| f.text.as_deref().map(|text| labelled(&f.name, text)))
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

fn labelled(name: &str, text: &str) -> String {
    let longest_run = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest_run.max(2) + 1);
    format!(
        "Attached file “{name}”:\n{fence}\n{}\n{fence}",
        text.trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_count: 3,
        max_bytes: 1024,
    };

    fn upload(name: &str, bytes: &[u8]) -> Upload {
        Upload {
            name: name.into(),
            bytes: Bytes::copy_from_slice(bytes),
        }
    }

    #[test]
    fn text_files_are_read_and_typed_by_their_name_but_never_as_html() {
        let files = prepare(
            vec![
                upload("notes.md", b"# Notes\n"),
                upload("data.csv", b"a,b\n1,2\n"),
                upload("page.html", b"<script>alert(1)</script>"),
            ],
            LIMITS,
            false,
        )
        .unwrap();
        let types: Vec<_> = files.iter().map(|f| f.media_type).collect();
        assert_eq!(types, ["text/markdown", "text/csv", "text/plain"]);
        assert_eq!(files[0].text.as_deref(), Some("# Notes\n"));
    }

    #[test]
    fn binary_files_and_images_without_vision_are_refused_readably() {
        let err = prepare(vec![upload("x.bin", b"\x00\x01\x02")], LIMITS, false).unwrap_err();
        assert!(
            matches!(err, AppError::UnsupportedMediaType(ref m) if m.contains("“x.bin”") && m.contains("PDF"))
        );
        let png = b"\x89PNG\r\n\x1a\n0000";
        let err = prepare(vec![upload("cat.png", png)], LIMITS, false).unwrap_err();
        assert!(err.to_string().contains("cannot see images"), "{err}");
        let files = prepare(vec![upload("cat.png", png)], LIMITS, true).unwrap();
        assert_eq!(files[0].media_type, "image/png");
        assert_eq!(files[0].text, None);
    }

    #[test]
    fn limits_on_count_and_size_name_the_file() {
        let four = vec![upload("a.txt", b"a"); 4];
        let err = prepare(four, LIMITS, false).unwrap_err();
        assert!(err.to_string().contains("at most 3 files"), "{err}");
        let big = vec![0x61; 2000];
        let err = prepare(vec![upload("big.txt", &big)], LIMITS, false).unwrap_err();
        assert!(
            matches!(err, AppError::TooLarge(ref m) if m.contains("“big.txt”") && m.contains("1 KiB"))
        );
        let err = prepare(vec![upload("empty.txt", b"")], LIMITS, false).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }

    #[test]
    fn names_lose_paths_and_control_characters() {
        assert_eq!(file_name("C:\\Users\\me\\report.pdf"), "report.pdf");
        assert_eq!(file_name("../../etc/passwd"), "passwd");
        assert_eq!(file_name("a\u{7}b\n.txt"), "ab.txt");
        // Shown as `invoiceexe.pdf` were the override kept.
        assert_eq!(file_name("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(
            file_name("\u{2066}a\u{2069}\u{200F}b\u{200B}c\u{FEFF}\u{E0041}.txt"),
            "abc.txt"
        );
        assert_eq!(file_name("\u{202E}\u{202C}"), "file");
        assert_eq!(file_name("naïve 漢字 résumé.pdf"), "naïve 漢字 résumé.pdf");
        assert_eq!(file_name(".."), "file");
        assert_eq!(file_name(""), "file");
    }

    #[test]
    fn the_prompt_labels_each_file_and_fences_it_beyond_its_backticks() {
        let files = prepare(
            vec![
                upload("a.md", b"```rust\nfn main() {}\n```\n"),
                upload("b.txt", b"plain"),
            ],
            LIMITS,
            false,
        )
        .unwrap();
        let text = prompt_text(&files).unwrap();
        assert!(
            text.starts_with("Attached file “a.md”:\n````\n```rust"),
            "{text}"
        );
        assert!(
            text.contains("Attached file “b.txt”:\n```\nplain\n```"),
            "{text}"
        );
    }
}
