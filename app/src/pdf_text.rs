//! A PDF's text, extracted in a child process with limits on memory and time. `pdf-extract`
//! inflates every compressed stream in full and keeps several copies: a 204 KB PDF of one
//! compressed stream peaked at 622 MiB, and a 5 MiB upload would reach about 10 GiB. No decoder
//! limit can be set through it, so the extraction runs in this binary started again as
//! `app extract-pdf`, whose heap the kernel bounds (`RLIMIT_DATA`) and whose CPU time it bounds
//! (`RLIMIT_CPU`), with a wall-clock timeout here besides; at most [`PDFS_AT_ONCE`] run at once.
//! A PDF past the limits is refused (`attachments` says so naming the file, 422), and the server
//! itself never holds more than the text.
use std::{
    io::{Read, Write},
    path::PathBuf,
    process::{ExitCode, Stdio},
    sync::OnceLock,
    time::Duration,
};

use tokio::{io::AsyncWriteExt, sync::Semaphore};

/// The argument that starts the binary as an extractor.
pub const SUBCOMMAND: &str = "extract-pdf";
/// Extractions at once (each may use up to its memory limit).
pub const PDFS_AT_ONCE: usize = 2;
/// Text kept of one PDF at most (it goes into a prompt).
pub const MAX_TEXT_BYTES: usize = 8 * 1024 * 1024;

/// Why a PDF has no text here.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF could not be read")]
    Unreadable,
    /// Killed by the limits on memory or time (or crashed).
    #[error("the PDF went past the reader's limits")]
    TooCostly,
    #[error("the PDF holds more than {MAX_TEXT_BYTES} bytes of text")]
    TooMuchText,
    /// The reader could not be run: the server's fault, not the file's.
    #[error("the PDF reader failed: {0}")]
    Reader(String),
}

/// The child's exit codes, besides success.
const UNREADABLE: u8 = 2;

/// How PDFs are read: which program, with what limits.
#[derive(Clone, Debug)]
pub struct PdfLimits {
    /// This binary (in tests: the built `app`).
    pub program: PathBuf,
    /// The child's heap at most.
    pub memory_bytes: u64,
    /// The child's CPU time at most; the wall-clock limit is twice it.
    pub seconds: u64,
}

fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| Semaphore::new(PDFS_AT_ONCE))
}

/// The text of the PDF `bytes`, read by a child process within `limits`.
pub async fn extract(bytes: &[u8], limits: &PdfLimits) -> Result<String, PdfError> {
    let _slot = slots().acquire().await.ok();
    let mut child = tokio::process::Command::new(&limits.program)
        .arg(SUBCOMMAND)
        .arg(limits.memory_bytes.to_string())
        .arg(limits.seconds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| PdfError::Reader(format!("starting {}: {e}", limits.program.display())))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(PdfError::Reader("no pipes".into()));
    };
    let input = bytes.to_vec();
    let writer = tokio::spawn(async move {
        // A child that stops reading (it failed) closes the pipe: not an error here.
        let _ = stdin.write_all(&input).await;
    });
    let read = async {
        let mut text = Vec::new();
        let mut limited = tokio::io::AsyncReadExt::take(stdout, MAX_TEXT_BYTES as u64 + 1);
        tokio::io::AsyncReadExt::read_to_end(&mut limited, &mut text).await?;
        let status = child.wait().await?;
        Ok::<_, std::io::Error>((status, text))
    };
    let wall = Duration::from_secs(limits.seconds.saturating_mul(2).max(1));
    let outcome = tokio::time::timeout(wall, read).await;
    writer.abort();
    let (status, text) = match outcome {
        Err(_) => {
            tracing::warn!("a PDF took too long to read");
            return Err(PdfError::TooCostly);
        }
        Ok(Err(e)) => return Err(PdfError::Reader(e.to_string())),
        Ok(Ok(done)) => done,
    };
    if status.success() {
        if text.len() > MAX_TEXT_BYTES {
            return Err(PdfError::TooMuchText);
        }
        return Ok(String::from_utf8_lossy(&text).replace('\0', ""));
    }
    if status.code() == Some(UNREADABLE.into()) {
        return Err(PdfError::Unreadable);
    }
    // Killed by the kernel's limits (out of memory aborts, SIGXCPU) or by a crash.
    tracing::warn!(?status, "a PDF went past the reader's limits");
    Err(PdfError::TooCostly)
}

/// The child: `app extract-pdf <memory bytes> <cpu seconds>`, the PDF on stdin, its text on
/// stdout. Sets its own limits before reading anything.
pub fn child_main(args: &[String]) -> ExitCode {
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(memory), Some(seconds)) = (number(0), number(1)) else {
        eprintln!("usage: app {SUBCOMMAND} <memory bytes> <cpu seconds> < file.pdf");
        return ExitCode::FAILURE;
    };
    let limited = rlimit::setrlimit(rlimit::Resource::DATA, memory, memory)
        .and_then(|()| rlimit::setrlimit(rlimit::Resource::CPU, seconds, seconds + 1));
    if let Err(e) = limited {
        eprintln!("cannot limit the PDF reader: {e}");
        return ExitCode::FAILURE;
    }
    let mut pdf = Vec::new();
    if std::io::stdin().read_to_end(&mut pdf).is_err() {
        return ExitCode::from(UNREADABLE);
    }
    // The extractor panics on some malformed files: unreadable, not a crash.
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(&pdf));
    match extracted {
        Ok(Ok(text)) => match std::io::stdout().write_all(text.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        },
        _ => ExitCode::from(UNREADABLE),
    }
}
