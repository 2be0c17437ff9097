//! Templates (minijinja), finished replies' HTML kept and rendered off the async workers, and
//! markdown -> sanitised HTML (`markdown`). Knows no database.
mod markdown;
mod math;
mod streaming;

pub use markdown::{Rendering, bounds, markdown_to_html};
use std::{
    num::NonZeroUsize,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};
pub use streaming::{HtmlUpdate, LiveHtml};

use lru::LruCache;
use minijinja::Environment;
use uuid::Uuid;

/// The loaded templates. Every file under `templates/` is a template named by its path relative
/// to it (`chat.html`, `fragments/message.html`).
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    finished_replies: Arc<Mutex<KeptReplies>>,
    /// Renders running off the async workers at once (`render_ahead`, `off_workers`).
    renders: Arc<tokio::sync::Semaphore>,
}

/// A finished reply's HTML, with the length of the text it came from as a guard.
struct RenderedReply {
    text_len: usize,
    html: Arc<str>,
}

/// Finished replies' HTML, bounded by count and by bytes (least recently used out first): a
/// cache without a byte bound held a 78 MB page's HTML after the page was long gone.
struct KeptReplies {
    replies: LruCache<Uuid, RenderedReply>,
    bytes: usize,
}

impl KeptReplies {
    fn get(&mut self, id: &Uuid, text_len: usize) -> Option<Arc<str>> {
        self.replies
            .get(id)
            .filter(|kept| kept.text_len == text_len)
            .map(|kept| kept.html.clone())
    }

    fn put(&mut self, id: Uuid, text_len: usize, html: Arc<str>) {
        if html.len() > FINISHED_REPLIES_BYTES / 4 {
            return;
        }
        self.bytes += html.len();
        if let Some((_, replaced)) = self.replies.push(id, RenderedReply { text_len, html }) {
            self.bytes -= replaced.html.len();
        }
        while self.bytes > FINISHED_REPLIES_BYTES {
            match self.replies.pop_lru() {
                Some((_, evicted)) => self.bytes -= evicted.html.len(),
                None => break,
            }
        }
    }
}

/// Every file under `dir` as a template named by its path relative to `dir`.
fn add_templates_from(env: &mut Environment<'static>, dir: &Path) -> anyhow::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| {
            anyhow::anyhow!("cannot read template directory {}: {e}", current.display())
        })?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path
                .strip_prefix(dir)?
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            let source = std::fs::read_to_string(&path)?;
            env.add_template_owned(name, source)
                .map_err(|e| anyhow::anyhow!("template {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// How many finished replies' HTML is kept. A finished reply never changes, so a page view need
/// not run markdown and the sanitiser over each of its replies again (see BENCHMARKS.md).
const FINISHED_REPLIES_KEPT: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");
/// Bytes of finished replies' HTML kept at most; a reply larger than a quarter is not kept
/// (none within the render bounds is: at most 384 KiB, and 1 MiB of plain text escaped).
const FINISHED_REPLIES_BYTES: usize = 32 * 1024 * 1024;

impl Templates {
    /// The templates built into the binary, or (development) those in `dir`.
    pub fn load(dir: Option<&Path>) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        match dir {
            Some(dir) => add_templates_from(&mut env, dir)?,
            None => {
                for file in crate::assets::files(&crate::assets::TEMPLATES) {
                    let name = file.path().to_string_lossy().replace('\\', "/");
                    let source = file
                        .contents_utf8()
                        .ok_or_else(|| anyhow::anyhow!("template {name} is not UTF-8"))?;
                    env.add_template_owned(name.clone(), source.to_owned())
                        .map_err(|e| anyhow::anyhow!("template {name}: {e}"))?;
                }
            }
        }
        env.add_filter("markdown", |text: &str| {
            minijinja::Value::from_safe_string(markdown_to_html(text))
        });
        env.add_filter("datetime", |value: String| {
            // RFC 3339 from the database, shown as `2026-11-24 14:03 UTC`.
            chrono::DateTime::parse_from_rfc3339(&value)
                .map(|t| t.to_utc().format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or(value)
        });
        Ok(Self {
            env: Arc::new(env),
            finished_replies: Arc::new(Mutex::new(KeptReplies {
                replies: LruCache::new(FINISHED_REPLIES_KEPT),
                bytes: 0,
            })),
            renders: Arc::new(tokio::sync::Semaphore::new(renders_at_once())),
        })
    }

    /// Renders, off the async workers, those of `replies` (finished ones: id and text) that
    /// are long and not kept yet, so that building the page's views then finds them kept. A
    /// short text renders in microseconds and is left to the view.
    pub async fn render_ahead<'t>(&self, replies: impl IntoIterator<Item = (Uuid, &'t str)>) {
        let missing: Vec<(Uuid, String)> = {
            let mut kept = self
                .finished_replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            replies
                .into_iter()
                .filter(|(id, text)| {
                    text.len() >= bounds::OFF_WORKER_BYTES && kept.get(id, text.len()).is_none()
                })
                .map(|(id, text)| (id, text.to_owned()))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let templates = self.clone();
        let rendered = self.off_workers(move || {
            for (id, text) in missing {
                templates.finished_reply_html(id, &text);
            }
        });
        if let Err(e) = rendered.await {
            // The views render what is missing themselves.
            tracing::error!("rendering replies ahead: {e}");
        }
    }

    /// Runs `work` (rendering) on a blocking thread, at most [`renders_at_once`] at a time:
    /// hostile content may keep those threads busy, never the workers that answer requests.
    pub async fn off_workers<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        // The semaphore is never closed; without a permit the work still runs (bounded anyway).
        let _permit = self.renders.acquire().await.ok();
        tokio::task::spawn_blocking(work).await
    }

    /// The sanitised HTML of a finished reply (never of one still being written, whose text
    /// changes), rendered once and then kept, least recently used out first.
    pub fn finished_reply_html(&self, id: Uuid, text: &str) -> String {
        let lock = || {
            self.finished_replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(kept) = lock().get(&id, text.len()) {
            return kept.to_string();
        }
        // Rendered outside the lock: other requests keep reading meanwhile.
        let html = markdown_to_html(text);
        lock().put(id, text.len(), html.as_str().into());
        html
    }

    pub fn render(
        &self,
        name: &str,
        context: impl serde::Serialize,
    ) -> Result<String, minijinja::Error> {
        self.env
            .get_template(name)?
            .render(minijinja::value::Value::from(minijinja::value::Serde(
                context,
            )))
    }
}

/// Renders at once off the async workers: half the CPUs, so that the rest keep answering.
fn renders_at_once() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Escapes text for HTML content and attributes. `\r` becomes a character reference as well:
/// SSE cannot carry a bare carriage return in `data`.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn finished_reply_html_is_rendered_once_and_follows_a_changed_text() {
        let templates = Templates::load(None).expect("templates");
        let id = Uuid::now_v7();
        let first = templates.finished_reply_html(id, "**bold** <b>raw</b>");
        assert_eq!(first, markdown_to_html("**bold** <b>raw</b>"));
        assert_eq!(templates.finished_replies.lock().unwrap().replies.len(), 1);
        assert_eq!(
            templates.finished_reply_html(id, "**bold** <b>raw</b>"),
            first
        );
        // A different text under the same id (never expected) is rendered anew, not served stale.
        let other = templates.finished_reply_html(id, "*other*");
        assert_eq!(other, markdown_to_html("*other*"));
        assert_eq!(templates.finished_replies.lock().unwrap().replies.len(), 1);
    }

    #[test]
    fn kept_replies_are_bounded_by_bytes() {
        let mut kept = KeptReplies {
            replies: LruCache::new(FINISHED_REPLIES_KEPT),
            bytes: 0,
        };
        let html: Arc<str> = "x".repeat(FINISHED_REPLIES_BYTES / 20).into();
        for _ in 0..40 {
            kept.put(Uuid::now_v7(), 1, html.clone());
        }
        assert!(kept.bytes <= FINISHED_REPLIES_BYTES, "{}", kept.bytes);
        assert_eq!(kept.bytes, kept.replies.len() * html.len());
        let huge: Arc<str> = "x".repeat(FINISHED_REPLIES_BYTES / 2).into();
        let id = Uuid::now_v7();
        kept.put(id, 1, huge);
        assert!(kept.get(&id, 1).is_none(), "too large to keep");
    }

    #[test]
    fn escape_covers_markup_and_carriage_returns() {
        assert_eq!(
            escape_html("<a href='x'>&\"\r"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&#13;"
        );
    }
}
