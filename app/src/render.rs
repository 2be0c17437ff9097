//! Templates (minijinja) and markdown -> sanitised HTML. Knows no database.
use std::{
    num::NonZeroUsize,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use lru::LruCache;
use minijinja::Environment;
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};
use uuid::Uuid;

/// The loaded templates. Every file under `templates/` is a template named by its path relative
/// to it (`chat.html`, `fragments/message.html`).
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    finished_replies: Arc<Mutex<LruCache<Uuid, RenderedReply>>>,
}

/// A finished reply's HTML, with the length of the text it came from as a guard.
struct RenderedReply {
    text_len: usize,
    html: Arc<str>,
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
            finished_replies: Arc::new(Mutex::new(LruCache::new(FINISHED_REPLIES_KEPT))),
        })
    }

    /// The sanitised HTML of a finished reply (never of one still being written, whose text
    /// changes), rendered once and then kept, least recently used out first.
    pub fn finished_reply_html(&self, id: Uuid, text: &str) -> String {
        let lock = || {
            self.finished_replies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        if let Some(kept) = lock().get(&id)
            && kept.text_len == text.len()
        {
            return kept.html.to_string();
        }
        // Rendered outside the lock: other requests keep reading meanwhile.
        let html = markdown_to_html(text);
        lock().put(
            id,
            RenderedReply {
                text_len: text.len(),
                html: html.as_str().into(),
            },
        );
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

/// Markdown -> HTML that is safe to put in the page. Raw HTML the model wrote is shown as literal
/// text (never executed, never silently dropped); images become links (no requests to URLs the
/// model chose); links get `rel="noopener noreferrer nofollow"`; ammonia removes anything else.
pub fn markdown_to_html(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    // Links whose scheme could run code (javascript:, data:, ...) are shown as text with their
    // URL, instead of as links.
    let mut unsafe_links: Vec<Option<String>> = Vec::new();
    let events = Parser::new_ext(markdown, options).map(move |event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
        Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
        Event::Start(Tag::Link {
            dest_url,
            title,
            id,
            link_type,
        })
        | Event::Start(Tag::Image {
            dest_url,
            title,
            id,
            link_type,
        }) => {
            if is_safe_url(&dest_url) {
                unsafe_links.push(None);
                // Images become links: no requests to URLs the model chose.
                Event::Start(Tag::Link {
                    link_type,
                    dest_url,
                    title,
                    id,
                })
            } else {
                unsafe_links.push(Some(dest_url.to_string()));
                Event::Text("".into())
            }
        }
        Event::End(TagEnd::Link) | Event::End(TagEnd::Image) => {
            match unsafe_links.pop().flatten() {
                Some(url) => Event::Text(format!(" ({url})").into()),
                None => Event::End(TagEnd::Link),
            }
        }
        other => other,
    });
    let mut html = String::with_capacity(markdown.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, highlight_code_blocks(events));
    sanitizer().clean(&html).to_string()
}

/// Fenced code blocks in a language the highlighter knows become highlighted HTML (written
/// here, its text escaped by the highlighter; the sanitiser still checks it); the rest pass on.
fn highlight_code_blocks<'a>(
    events: impl Iterator<Item = Event<'a>>,
) -> impl Iterator<Item = Event<'a>> {
    // The block being read: its opening event, its language, and its text so far.
    let mut open: Option<(Event<'a>, String, String)> = None;
    events.flat_map(move |event| -> Vec<Event<'a>> {
        match (event, open.as_mut()) {
            (Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))), None) => {
                let language = info
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                let start = Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info)));
                open = Some((start, language, String::new()));
                Vec::new()
            }
            (Event::Text(text), Some((_, _, code))) => {
                code.push_str(&text);
                Vec::new()
            }
            (Event::End(TagEnd::CodeBlock), Some(_)) => {
                let Some((start, language, code)) = open.take() else {
                    return Vec::new();
                };
                match crate::highlight::highlight(&code, &language) {
                    Some(spans) => {
                        let class = if is_class_name(&language) {
                            format!(" class=\"language-{language}\"")
                        } else {
                            String::new()
                        };
                        let block = format!("<pre><code{class}>{spans}</code></pre>\n");
                        vec![Event::Html(CowStr::from(block))]
                    }
                    None => vec![
                        start,
                        Event::Text(code.into()),
                        Event::End(TagEnd::CodeBlock),
                    ],
                }
            }
            (other, _) => vec![other],
        }
    })
}

/// A language's or a highlighter scope's name, as a class may carry it (`c++`, `c#`, `x-y.z`).
fn is_class_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+#-_.".contains(c))
}

/// http(s), mailto, or relative.
fn is_safe_url(url: &str) -> bool {
    let scheme_end = url.find([':', '/', '?', '#']);
    match scheme_end {
        Some(i) if url[i..].starts_with(':') => {
            let scheme = url[..i].to_ascii_lowercase();
            matches!(scheme.as_str(), "http" | "https" | "mailto")
        }
        _ => true,
    }
}

fn sanitizer() -> &'static ammonia::Builder<'static> {
    static BUILDER: std::sync::OnceLock<ammonia::Builder<'static>> = std::sync::OnceLock::new();
    BUILDER.get_or_init(|| {
        let mut builder = ammonia::Builder::default();
        builder
            .link_rel(Some("noopener noreferrer nofollow"))
            .url_schemes(["http", "https", "mailto"].into())
            .rm_tags(["img"])
            .add_tag_attributes("input", ["type", "checked", "disabled"])
            .add_tags(["input"])
            .add_tag_attributes("code", ["class"])
            .add_tag_attributes("span", ["class"])
            .attribute_filter(|element, attribute, value| {
                if attribute != "class" {
                    return Some(value.into());
                }
                kept_classes(element, value).map(Into::into)
            });
        builder
    })
}

/// The classes kept on an element: a fence's `language-x` on `code`, the highlighter's `hl-x`
/// on `span`; nothing else (so no text the model wrote can pick one of the page's classes).
fn kept_classes(element: &str, value: &str) -> Option<String> {
    let prefix = match element {
        "code" => "language-",
        "span" => crate::highlight::CLASS_PREFIX,
        _ => return None,
    };
    let kept: Vec<&str> = value
        .split_ascii_whitespace()
        .filter(|class| class.strip_prefix(prefix).is_some_and(is_class_name))
        .collect();
    (!kept.is_empty()).then(|| kept.join(" "))
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
        assert_eq!(templates.finished_replies.lock().unwrap().len(), 1);
        assert_eq!(
            templates.finished_reply_html(id, "**bold** <b>raw</b>"),
            first
        );
        // A different text under the same id (never expected) is rendered anew, not served stale.
        let other = templates.finished_reply_html(id, "*other*");
        assert_eq!(other, markdown_to_html("*other*"));
        assert_eq!(templates.finished_replies.lock().unwrap().len(), 1);
    }

    #[test]
    fn markdown_renders_common_blocks() {
        let html = markdown_to_html(
            "# Title\n\n- a\n- b\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\n```rust\nfn main() {}\n```\n",
        );
        assert!(html.contains("<h1>Title</h1>"), "{html}");
        assert!(html.contains("<li>a</li>"), "{html}");
        assert!(html.contains("<table>"), "{html}");
        assert!(
            html.contains(
                "<code class=\"language-rust\"><span class=\"hl-l2 hl-lb hl-d2\">fn </span>"
            ),
            "{html}"
        );
        assert!(!html.contains("style="), "{html}");
    }

    #[test]
    fn code_is_highlighted_with_classes_and_the_rest_stays_plain() {
        let html = markdown_to_html("```python\ndef f(x):\n    return \"<b>\"\n```\n");
        assert!(
            html.contains("<code class=\"language-python\"><span class=\"hl-"),
            "{html}"
        );
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        // A language nobody knows, and no language: plain, as before.
        let html = markdown_to_html("```klingon\nqapla'\n```\n\n```\nplain\n```\n");
        assert!(
            html.contains("<code class=\"language-klingon\">qapla'"),
            "{html}"
        );
        assert!(html.contains("<pre><code>plain"), "{html}");
        assert!(!html.contains("hl-"), "{html}");
        // A fence's info cannot smuggle in other classes or attributes.
        let html = markdown_to_html("```rust\" onclick=\"x\nfn a() {}\n```\n");
        assert!(!html.contains("onclick"), "{html}");
        assert!(
            !html.contains("hl-"),
            "an info word that is not a language name: {html}"
        );
    }

    #[test]
    fn only_language_and_highlighter_classes_survive() {
        assert_eq!(
            kept_classes("span", "hl-source hl-rust"),
            Some("hl-source hl-rust".into())
        );
        assert_eq!(
            kept_classes("span", "visually-hidden hl-x"),
            Some("hl-x".into())
        );
        assert_eq!(kept_classes("span", "hl-\"x"), None);
        assert_eq!(
            kept_classes("code", "language-rust hl-x"),
            Some("language-rust".into())
        );
        assert_eq!(kept_classes("p", "hl-x"), None);
    }

    #[test]
    fn raw_html_is_shown_as_text() {
        let html = markdown_to_html("Hi <script>alert(1)</script> <b onclick=\"x()\">b</b>");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;b onclick=\"x()\"&gt;")
                || html.contains("&lt;b onclick=&quot;x()&quot;&gt;"),
            "{html}"
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b "), "{html}");
    }

    #[test]
    fn links_are_safe_and_images_become_links() {
        let html = markdown_to_html(
            "[x](https://example.com) [y](javascript:alert(1)) ![z](https://t.example/p.png)",
        );
        assert!(
            html.contains("rel=\"noopener noreferrer nofollow\""),
            "{html}"
        );
        assert!(!html.contains("href=\"javascript:"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains(">z</a>"), "{html}");
    }

    #[test]
    fn dangerous_links_are_shown_as_text() {
        let html =
            markdown_to_html("[x](javascript:alert(1)) [y](DATA:text/html,hi) [z](/relative)");
        assert!(html.contains("x (javascript:alert(1))"), "{html}");
        assert!(html.contains("y (DATA:text/html,hi)"), "{html}");
        assert!(html.contains("href=\"/relative\""), "{html}");
        assert!(
            !html.contains("href=\"javascript") && !html.contains("href=\"DATA"),
            "{html}"
        );
    }

    #[test]
    fn escape_covers_markup_and_carriage_returns() {
        assert_eq!(
            escape_html("<a href='x'>&\"\r"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&#13;"
        );
    }
}
