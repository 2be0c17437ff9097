//! Markdown -> sanitised HTML (pulldown-cmark, ammonia), within [`bounds`]; code highlighted by
//! `crate::highlight`.
use std::borrow::Cow;

use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd};

use super::escape_html;

/// The bounds on one markdown render. Past any of them the rest of the text is shown as plain
/// text (escaped, its line breaks kept) under a note: nothing is lost, and no text, however
/// hostile, costs more than a bounded time and memory to show (BENCHMARKS.md, SECURITY.md).
pub mod bounds {
    use std::time::Duration;

    /// Text rendered as markdown at most; the rest is plain text. A reply of `MAX_REPLY_TOKENS`
    /// can be longer, an imported one cannot.
    pub const MAX_MARKDOWN_BYTES: usize = crate::domain::MAX_REPLY_BYTES;
    /// Elements nested deeper than this (quotes, lists, emphasis, links) lose their markup and
    /// keep their text: the sanitiser's HTML parser takes time with the square of the depth.
    pub const MAX_NESTING: usize = 24;
    /// HTML written for one text at most: a table's wide header makes every short row as wide.
    /// The sanitiser reads HTML at about 80 ns a byte (release build).
    pub const MAX_HTML_BYTES: usize = 384 * 1024;
    /// Code highlighted in one text at most (syntect takes about 4 µs a byte); code past it is
    /// shown as code, unhighlighted.
    pub const MAX_HIGHLIGHTED_BYTES: usize = 10 * 1024;
    /// Time spent turning markdown into HTML at most, checked between elements.
    pub const TIME_BUDGET: Duration = Duration::from_millis(30);
    /// Text shown as plain text past the other bounds at most.
    pub const MAX_PLAIN_BYTES: usize = 1024 * 1024;
    /// Texts at least this long are rendered off the async workers (`Templates::render_ahead`).
    pub const OFF_WORKER_BYTES: usize = 4 * 1024;
}

/// Markdown -> HTML that is safe to put in the page. Raw HTML the model wrote is shown as literal
/// text (never executed, never silently dropped); images become links (no requests to URLs the
/// model chose); links get `rel="noopener noreferrer nofollow"`; math becomes MathML; ammonia
/// removes anything else. Bounded by [`bounds`]: what lies past them is shown as plain text.
pub fn markdown_to_html(markdown: &str) -> String {
    Rendering::new().advance(markdown, true)
}

/// A text rendered block by block as it grows (a reply being written): a top-level block that
/// can no longer change (another block began after it) is rendered once and final; only the open
/// block at the end is rendered again, as it grows ([`Rendering::open_block`]). The bounds hold
/// for the whole text, so the blocks rendered as the text grew are the blocks of
/// [`markdown_to_html`] of the whole text (save a reference link defined in a later block, which
/// only the whole text's render resolves).
#[derive(Clone, Debug)]
pub struct Rendering {
    /// Bytes of the text whose blocks are rendered: a block's start.
    rendered_to: usize,
    /// Where the text became plain text (a bound was passed), if it did.
    plain_from: Option<usize>,
    html_bytes: usize,
    events_seen: usize,
    highlight_left: usize,
    /// Time spent rendering so far (the time budget is the whole text's).
    spent: std::time::Duration,
}

impl Default for Rendering {
    fn default() -> Self {
        Self::new()
    }
}

impl Rendering {
    pub fn new() -> Self {
        Self {
            rendered_to: 0,
            plain_from: None,
            html_bytes: 0,
            events_seen: 0,
            highlight_left: bounds::MAX_HIGHLIGHTED_BYTES,
            spent: std::time::Duration::ZERO,
        }
    }

    /// The HTML of the blocks of `text` past those rendered before that can no longer change:
    /// every block but the last, or all of them (and the plain-text rest) once the text is
    /// `finished`. `text` only grows: it begins with the text given before.
    pub fn advance(&mut self, text: &str, finished: bool) -> String {
        let mut html = String::new();
        if self.plain_from.is_none() {
            let limit = prefix_end(text, bounds::MAX_MARKDOWN_BYTES).max(self.rendered_to);
            // Past the markdown bound the text up to it is final; the rest is plain text.
            let over = limit < text.len();
            let rest = text.get(self.rendered_to..limit).unwrap_or_default();
            let end = match finished || over {
                true => rest.len(),
                // A half-written last line can still change what the line before it is (a
                // table's next row, a setext underline): blocks are found in the whole lines.
                false => {
                    let whole_lines = rest.rfind('\n').map_or(0, |i| i + 1);
                    let starts = block_starts(&rest[..whole_lines]);
                    starts.last().copied().unwrap_or(0)
                }
            };
            if end > 0 {
                // The finished blocks in one render: the same HTML as one by one, at less cost.
                let (blocks, cut) = self.render(&rest[..end]);
                html.push_str(&blocks);
                match cut {
                    Some(at) => self.plain_from = Some(self.rendered_to + at),
                    None => self.rendered_to += end,
                }
            }
            if over && self.plain_from.is_none() {
                self.plain_from = Some(limit);
            }
        }
        if let (true, Some(from)) = (finished, self.plain_from) {
            html.push_str(&plain_text_html(&text[from..]));
        }
        html
    }

    /// The HTML of the open block of `text` (past the blocks [`Self::advance`] rendered) as it
    /// stands, rendered again each time it grows, after `complete` (which holds back or closes
    /// unfinished markup: `render::streaming`). Nothing of it is kept.
    pub fn open_block(&self, text: &str, complete: impl FnOnce(&str) -> Cow<'_, str>) -> String {
        if let Some(from) = self.plain_from {
            return plain_text_html(text.get(from..).unwrap_or_default());
        }
        let open = complete(text.get(self.rendered_to..).unwrap_or_default());
        let (mut html, cut) = self.clone().render(&open);
        if let Some(at) = cut {
            html.push_str(&plain_text_html(&open[at..]));
        }
        html
    }

    /// `source` rendered within what is left of the bounds; where a bound cut it, if one did.
    fn render(&mut self, source: &str) -> (String, Option<usize>) {
        let started = std::time::Instant::now();
        let deadline = started + bounds::TIME_BUDGET.saturating_sub(self.spent);
        let (rewritten, dropped) = super::math::latex_delimiters(source);
        // Highlighting is bounded by its bytes (`MAX_HIGHLIGHTED_BYTES`), so its time is not the
        // budget's: otherwise a long reply with code would be cut where the clock ran out, and
        // two renders of one text could differ.
        let highlighting = std::cell::Cell::new(std::time::Duration::ZERO);
        let mut bounded = Bounded::new(markdown_events(&rewritten), deadline, &highlighting);
        bounded.html_bytes = self.html_bytes;
        bounded.seen = self.events_seen;
        let mut html = String::with_capacity(source.len() * 3 / 2);
        pulldown_cmark::html::push_html(
            &mut html,
            highlight_code_blocks(bounded.by_ref(), &mut self.highlight_left, &highlighting),
        );
        self.html_bytes = bounded.html_bytes;
        self.events_seen = bounded.seen;
        self.spent += started.elapsed().saturating_sub(highlighting.get());
        let cut = bounded.cut_at.map(|at| {
            let mut at = super::math::source_offset(at, &dropped).min(source.len());
            while !source.is_char_boundary(at) {
                at -= 1;
            }
            at
        });
        (sanitizer().clean(&html).to_string(), cut)
    }
}

/// The parser's options, the same for finding blocks and for rendering them.
pub(super) fn options() -> Options {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    options.insert(Options::ENABLE_MATH);
    options
}

/// Where each top-level block of `source` begins: the start of its first line (the first at 0).
pub(super) fn block_starts(source: &str) -> Vec<usize> {
    let mut starts = vec![0];
    let mut depth = 0usize;
    for (event, range) in Parser::new_ext(source, options()).into_offset_iter() {
        let top_level = depth == 0;
        match event {
            Event::Start(_) => depth += 1,
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            _ => {}
        }
        if top_level {
            let line = source[..range.start].rfind('\n').map_or(0, |i| i + 1);
            if line > starts.last().copied().unwrap_or(0) {
                starts.push(line);
            }
        }
    }
    starts
}

/// The parser's events as the page may show them, each with where it starts in `source`.
fn markdown_events(source: &str) -> impl Iterator<Item = (Event<'_>, usize)> {
    // Links whose scheme could run code (javascript:, data:, ...) are shown as text with their
    // URL, instead of as links.
    let mut unsafe_links: Vec<Option<String>> = Vec::new();
    Parser::new_ext(source, options())
        .into_offset_iter()
        .map(move |(event, range)| {
            let event = match event {
                Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
                Event::Start(Tag::HtmlBlock) => Event::Start(Tag::Paragraph),
                Event::End(TagEnd::HtmlBlock) => Event::End(TagEnd::Paragraph),
                Event::InlineMath(latex) => super::math::math_event(latex, false),
                Event::DisplayMath(latex) => super::math::math_event(latex, true),
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
            };
            (event, range.start)
        })
}

/// The end of the longest prefix of `text` of at most `max` bytes, at a line's end when there is
/// one (a cut inside a line would break its markup), else at a character's.
fn prefix_end(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].rfind('\n').map_or(end, |i| i + 1)
}

/// Text shown as it is, past the renderer's bounds, up to `MAX_PLAIN_BYTES`.
fn plain_text_html(text: &str) -> String {
    let shown = &text[..prefix_end(text, bounds::MAX_PLAIN_BYTES)];
    let mut html = format!(
        "<p class=\"render-note\">The rest is shown as plain text: it is too long or too deeply nested to format.</p>\n<pre class=\"plain-text\">{}</pre>\n",
        escape_html(shown)
    );
    if shown.len() < text.len() {
        let left = crate::domain::size(text.len() - shown.len());
        html.push_str(&format!(
            "<p class=\"render-note\">{left} more is not shown; the chat's export has all of it.</p>\n"
        ));
    }
    html
}

/// About the HTML `event` writes: its text, and room for its tag.
fn html_size(event: &Event) -> usize {
    match event {
        Event::Text(t) | Event::Code(t) | Event::Html(t) | Event::InlineHtml(t) => {
            let escaped = t.bytes().filter(|b| b"<>&\"'".contains(b)).count();
            t.len() + escaped * 5 + 16
        }
        Event::Start(Tag::Link { dest_url, .. }) => dest_url.len() * 2 + 64,
        _ => 16,
    }
}

/// Markdown events within [`bounds`]: elements nested deeper than `MAX_NESTING` pass on without
/// their tags (their text stays); past the HTML size or the time budget the events end, and
/// `cut_at` says where in the text (the caller shows the rest as plain text).
struct Bounded<'c, I> {
    events: I,
    /// When the time budget ends, and the time spent highlighting (which does not count).
    deadline: std::time::Instant,
    highlighting: &'c std::cell::Cell<std::time::Duration>,
    /// For each open element: whether its tags were kept.
    open: Vec<bool>,
    /// Where the open code block began, if one is open (a cut inside it starts there: the
    /// highlighter holds its text until the block ends).
    code_from: Option<usize>,
    html_bytes: usize,
    seen: usize,
    cut_at: Option<usize>,
}

impl<'c, I> Bounded<'c, I> {
    fn new(
        events: I,
        deadline: std::time::Instant,
        highlighting: &'c std::cell::Cell<std::time::Duration>,
    ) -> Self {
        Self {
            events,
            deadline,
            highlighting,
            open: Vec::new(),
            code_from: None,
            html_bytes: 0,
            seen: 0,
            cut_at: None,
        }
    }

    fn over_budget(&mut self) -> bool {
        self.seen += 1;
        self.html_bytes > bounds::MAX_HTML_BYTES
            || (self.seen.is_multiple_of(64)
                && std::time::Instant::now() > self.deadline + self.highlighting.get())
    }
}

impl<'a, I: Iterator<Item = (Event<'a>, usize)>> Iterator for Bounded<'_, I> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        if self.cut_at.is_some() {
            return None;
        }
        loop {
            let (event, at) = self.events.next()?;
            self.html_bytes += html_size(&event);
            if self.over_budget() {
                self.cut_at = Some(self.code_from.unwrap_or(at));
                return None;
            }
            match event {
                Event::Start(tag) => {
                    let keep = self.open.len() < bounds::MAX_NESTING;
                    self.open.push(keep);
                    if !keep {
                        continue;
                    }
                    if matches!(tag, Tag::CodeBlock(_)) {
                        self.code_from = Some(at);
                    }
                    return Some(Event::Start(tag));
                }
                Event::End(tag) => {
                    if !self.open.pop().unwrap_or(true) {
                        // Keeps apart the text of blocks whose tags were dropped.
                        return Some(Event::SoftBreak);
                    }
                    if tag == TagEnd::CodeBlock {
                        self.code_from = None;
                    }
                    return Some(Event::End(tag));
                }
                other => return Some(other),
            }
        }
    }
}

/// Fenced code blocks in a language the highlighter knows become highlighted HTML (written
/// here, its text escaped by the highlighter; the sanitiser still checks it); the rest pass on.
fn highlight_code_blocks<'a: 'b, 'b>(
    events: impl Iterator<Item = Event<'a>> + 'b,
    highlight_left: &'b mut usize,
    highlighting: &'b std::cell::Cell<std::time::Duration>,
) -> impl Iterator<Item = Event<'a>> + 'b {
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
                let highlighted = match code.len() <= *highlight_left {
                    true => {
                        let started = std::time::Instant::now();
                        let spans = crate::highlight::highlight(&code, &language);
                        highlighting.set(highlighting.get() + started.elapsed());
                        spans
                    }
                    false => None,
                };
                if highlighted.is_some() {
                    *highlight_left -= code.len();
                }
                match highlighted {
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
            // The MathML that math-core writes, and nothing else (no `href`, no `style`).
            .add_tags(MATHML_TAGS)
            .add_tag_attributes("math", ["display"])
            .add_generic_attributes(MATHML_ATTRIBUTES)
            .attribute_filter(|element, attribute, value| {
                if attribute != "class" {
                    return Some(value.into());
                }
                kept_classes(element, value).map(Into::into)
            });
        builder
    })
}

const MATHML_TAGS: [&str; 27] = [
    "math",
    "mi",
    "mn",
    "mo",
    "ms",
    "mtext",
    "mspace",
    "mrow",
    "mfrac",
    "msqrt",
    "mroot",
    "msub",
    "msup",
    "msubsup",
    "munder",
    "mover",
    "munderover",
    "mmultiscripts",
    "mprescripts",
    "mtable",
    "mtr",
    "mtd",
    "mpadded",
    "mphantom",
    "menclose",
    "merror",
    "mstyle",
];
/// Attributes of MathML's presentation elements (no element of HTML's takes them).
const MATHML_ATTRIBUTES: [&str; 18] = [
    "mathvariant",
    "lspace",
    "rspace",
    "stretchy",
    "fence",
    "separator",
    "accent",
    "accentunder",
    "displaystyle",
    "scriptlevel",
    "linethickness",
    "form",
    "largeop",
    "movablelimits",
    "symmetric",
    "minsize",
    "maxsize",
    "notation",
];

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

#[cfg(test)]
mod tests {
    use super::*;
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

    /// The deepest nesting of elements in sanitised HTML (void elements open nothing).
    fn depth(html: &str) -> usize {
        let (mut depth, mut deepest) = (0usize, 0usize);
        let mut rest = html;
        while let Some(i) = rest.find('<') {
            rest = &rest[i + 1..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
                .collect();
            match name.strip_prefix('/') {
                Some(_) => depth = depth.saturating_sub(1),
                None if matches!(name.as_str(), "br" | "hr" | "input" | "img") => {}
                None => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
            }
        }
        deepest
    }

    #[test]
    fn hostile_markdown_stays_within_the_bounds() {
        for size in [
            20_000,
            bounds::MAX_MARKDOWN_BYTES,
            2 * bounds::MAX_MARKDOWN_BYTES,
        ] {
            for (kind, text) in testkit::hostile::markdown_corpus(size) {
                let started = std::time::Instant::now();
                let html = markdown_to_html(&text);
                let took = started.elapsed();
                // Before the bounds, `quotes` took 2.5 s at 32 KiB (release); this is a
                // debug build, and the figures that count are the bench's (BENCHMARKS.md).
                assert!(took.as_secs_f64() < 1.0, "{kind} at {size}: {took:?}");
                assert!(depth(&html) <= bounds::MAX_NESTING + 2, "{kind} at {size}");
                let (formatted, plain) = match html.find("<p class=\"render-note\">") {
                    Some(i) => html.split_at(i),
                    None => (html.as_str(), ""),
                };
                assert!(
                    formatted.len() <= bounds::MAX_HTML_BYTES + 64 * 1024,
                    "{kind} at {size}: {} bytes of HTML",
                    formatted.len()
                );
                if text.len() > bounds::MAX_MARKDOWN_BYTES {
                    assert!(!plain.is_empty(), "{kind} at {size}: no plain rest");
                }
                // What is shown plain is the text's end, exactly: nothing is lost.
                if let Some(rest) = plain.split_once("<pre class=\"plain-text\">") {
                    let shown = rest.1.trim_end().trim_end_matches("</pre>");
                    let escaped = escape_html(&text);
                    assert!(escaped.ends_with(shown), "{kind} at {size}");
                }
            }
        }
    }

    #[test]
    fn deep_nesting_keeps_the_text() {
        let html = markdown_to_html(&format!("{}deep *text*", "> ".repeat(200)));
        // Past the bound, the emphasis loses its tags too; the text stays.
        assert!(html.contains("deep text"), "{html}");
        assert_eq!(depth(&html), bounds::MAX_NESTING);
        let html = markdown_to_html(&format!("{}**bold** end", "- ".repeat(100)));
        assert!(html.contains("end"), "{html}");
        assert!(depth(&html) <= bounds::MAX_NESTING + 1, "{html}");
    }

    #[test]
    fn past_the_size_bound_the_rest_is_plain_text() {
        let head = "word ".repeat(bounds::MAX_MARKDOWN_BYTES / 5);
        let html = markdown_to_html(&format!("{head}\n**tail** <b>x</b>\n"));
        assert!(html.starts_with("<p>word word"), "{}", &html[..40]);
        assert!(
            html.ends_with("<pre class=\"plain-text\">**tail** &lt;b&gt;x&lt;/b&gt;\n</pre>\n"),
            "{}",
            &html[html.len() - 200..]
        );
        // Below the bounds there is no note.
        assert!(!markdown_to_html("**a**").contains("render-note"));
    }

    #[test]
    fn past_the_plain_text_bound_the_page_says_what_is_left_out() {
        let text = "x".repeat(bounds::MAX_MARKDOWN_BYTES + bounds::MAX_PLAIN_BYTES + 4096);
        let html = markdown_to_html(&text);
        assert!(html.len() < bounds::MAX_HTML_BYTES + bounds::MAX_PLAIN_BYTES + 1024);
        assert!(
            html.ends_with("4 KiB more is not shown; the chat's export has all of it.</p>\n"),
            "{}",
            &html[html.len() - 200..]
        );
    }

    #[test]
    fn a_table_too_wide_to_show_is_cut_and_the_rest_is_plain() {
        let text = format!(
            "{}|\n{}|\n{}",
            "|a".repeat(5000),
            "|-".repeat(5000),
            "x\n".repeat(2000)
        );
        let html = markdown_to_html(&text);
        let (formatted, plain) = html.split_at(html.find("render-note").expect("cut"));
        assert!(
            formatted.len() <= bounds::MAX_HTML_BYTES + 1024,
            "{}",
            formatted.len()
        );
        assert!(plain.ends_with("x\nx\n</pre>\n"));
    }

    #[test]
    fn code_past_the_highlight_budget_is_shown_plain() {
        let block = format!("```rust\n{}```\n\n", "let x = 1;\n".repeat(600));
        let html = markdown_to_html(&block.repeat(3));
        // 6.6 KB each: the first is highlighted, the next two would pass the budget.
        assert!(html.contains("<span class=\"hl-"), "{html}");
        assert_eq!(
            html.matches("<pre><code class=\"language-rust\"><span")
                .count(),
            1
        );
        assert_eq!(
            html.matches("<pre><code class=\"language-rust\">let x")
                .count(),
            2
        );
    }
}
