//! A download's progress: shared with the page's model indicator, and shown on the terminal or
//! in the log.
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// Shared with the page's model indicator: bytes so far and total (0 = unknown yet).
#[derive(Debug, Default)]
pub struct Progress {
    pub downloaded: AtomicU64,
    pub total: AtomicU64,
}

impl Progress {
    /// 0..=100, or None while the total is unknown.
    pub fn percent(&self) -> Option<u8> {
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 {
            return None;
        }
        let downloaded = self.downloaded.load(Ordering::Relaxed).min(total);
        Some(u8::try_from(u128::from(downloaded) * 100 / u128::from(total)).unwrap_or(100))
    }

    pub(super) fn set(&self, downloaded: u64, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.downloaded.store(downloaded, Ordering::Relaxed);
    }
}

pub(super) fn mebibytes(bytes: u64) -> String {
    // Display only: the precision lost in the conversion does not matter.
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Progress to the shared `Progress`, a terminal bar on stderr, or (when stderr is not a
/// terminal, as in a container's log) a log line at each 10% step.
pub(super) struct Reporter<'a> {
    progress: &'a Progress,
    pub(super) bar: ProgressBar,
    total: u64,
    logged_tenths: u64,
    file: &'a str,
}

impl<'a> Reporter<'a> {
    pub(super) fn new(
        progress: &'a Progress,
        total: Option<u64>,
        file: &'a str,
        on_disk: u64,
    ) -> Self {
        let bar = match total {
            Some(total) => ProgressBar::new(total),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(file.to_owned());
        let total = total.unwrap_or(0);
        progress.set(on_disk, total);
        bar.set_position(on_disk);
        let logged_tenths = tenths(on_disk, total);
        if on_disk > 0 {
            tracing::info!(
                "resuming the download of {file} at {} ({}%)",
                mebibytes(on_disk),
                logged_tenths * 10
            );
        }
        Self {
            progress,
            bar,
            total,
            logged_tenths,
            file,
        }
    }

    pub(super) fn set(&mut self, bytes: u64) {
        self.progress.downloaded.store(bytes, Ordering::Relaxed);
        self.bar.set_position(bytes);
        let tenths = tenths(bytes, self.total);
        // In a terminal the bar shows it; log lines would only break the bar.
        if tenths > self.logged_tenths && self.bar.is_hidden() {
            self.logged_tenths = tenths;
            tracing::info!(
                "downloading {}: {}% ({} of {})",
                self.file,
                tenths * 10,
                mebibytes(bytes),
                mebibytes(self.total)
            );
        }
    }

    /// Back to byte 0 (the server sent the whole file again).
    pub(super) fn restart(&mut self) {
        self.logged_tenths = 0;
        self.bar.reset();
        self.set(0);
    }
}

/// How many tenths of `total` `bytes` are (0 while the total is unknown).
fn tenths(bytes: u64, total: u64) -> u64 {
    match total {
        0 => 0,
        total => u64::try_from(u128::from(bytes.min(total)) * 10 / u128::from(total)).unwrap_or(10),
    }
}
