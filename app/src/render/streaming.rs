//! A reply's HTML while it is written (ARCHITECTURE.md "The stream contract"): each finished
//! block is rendered once and sent once; the open block at the end is rendered again as it
//! grows and sent as the change from what the page has. The page's HTML is at every moment
//! the sanitised render of the text so far, its unfinished markup held back or closed.
use std::borrow::Cow;

use pulldown_cmark::{Event, Parser, Tag};

use super::markdown::{Rendering, block_starts, options};

/// What a page shows of one text being written (the answer, or the reasoning), and the next
/// change to send it.
#[derive(Debug, Default)]
pub struct LiveHtml {
    text: String,
    rendering: Rendering,
    /// The open block's HTML as the page has it.
    open_html: String,
    /// The page has this text's HTML (an update was sent).
    started: bool,
}

/// One change to what the page shows, as the `html` and `reasoning` events carry it: a header
/// line `{mode} {blocks} {keep} {keep_end}`, then the new finished blocks' HTML (`blocks` UTF-16
/// code units of it), then what changed in the open block's HTML. `mode` is `r` (start again:
/// the page empties the text first) or `a` (add). The page's open block becomes the first
/// `keep` code units of the one it had, the changed part, and the last `keep_end` code units of
/// the one it had (a list's or a table's closing tags stay where they were).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HtmlUpdate {
    pub reset: bool,
    pub blocks: String,
    pub keep: usize,
    pub changed: String,
    pub keep_end: usize,
}

impl HtmlUpdate {
    pub fn encode(&self) -> String {
        let mode = if self.reset { 'r' } else { 'a' };
        let blocks = self.blocks.encode_utf16().count();
        let (keep, keep_end) = (self.keep, self.keep_end);
        // SSE cannot carry a bare carriage return in `data`; in HTML it is a character reference.
        format!(
            "{mode} {blocks} {keep} {keep_end}\n{}{}",
            self.blocks, self.changed
        )
        .replace('\r', "&#13;")
    }

    /// An update as [`Self::encode`] wrote it (for clients that render a page's stream: the
    /// bench, tests).
    pub fn decode(data: &str) -> Option<Self> {
        let (header, body) = data.split_once('\n')?;
        let mut fields = header.split(' ');
        let reset = match fields.next()? {
            "r" => true,
            "a" => false,
            _ => return None,
        };
        let mut number = || fields.next()?.parse::<usize>().ok();
        let (blocks, keep, keep_end) = (number()?, number()?, number()?);
        let units: Vec<u16> = body.encode_utf16().collect();
        Some(Self {
            reset,
            blocks: String::from_utf16(units.get(..blocks)?).ok()?,
            keep,
            changed: String::from_utf16(&units[blocks..]).ok()?,
            keep_end,
        })
    }

    /// The page's HTML after applying this update to `before` (the finished blocks' HTML and
    /// the open block's), as `static/app.js` does it.
    pub fn apply(&self, before: (&str, &str)) -> (String, String) {
        let (blocks, open) = match self.reset {
            true => ("", ""),
            false => before,
        };
        let units: Vec<u16> = open.encode_utf16().collect();
        let end_from = units
            .len()
            .saturating_sub(self.keep_end)
            .max(self.keep.min(units.len()));
        let open = String::from_utf16_lossy(&units[..self.keep.min(units.len())])
            + &self.changed
            + &String::from_utf16_lossy(&units[end_from..]);
        (blocks.to_owned() + &self.blocks, open)
    }
}

impl LiveHtml {
    /// What the page should show with `text` (the text so far, which begins with what it had).
    pub fn update(&mut self, text: &str) -> Option<HtmlUpdate> {
        self.next(text, false)
    }

    /// The last update: `text` is the whole text (as stored). If it does not begin with what
    /// the page has (never expected), the page starts again.
    pub fn finish(&mut self, text: &str) -> Option<HtmlUpdate> {
        if !text.starts_with(self.text.as_str()) {
            *self = Self::default();
        }
        self.next(text, true)
    }

    /// Whether the page has had an update of this text.
    pub fn started(&self) -> bool {
        self.started
    }

    /// The HTML of a text being written, as a page rendered now shows it (the no-JavaScript
    /// page, and the page the stream then updates).
    pub fn html_now(text: &str) -> String {
        let mut rendering = Rendering::new();
        let mut html = rendering.advance(text, false);
        html.push_str(&rendering.open_block(text, as_it_will_end));
        html
    }

    fn next(&mut self, text: &str, finished: bool) -> Option<HtmlUpdate> {
        let reset = !self.started;
        if !reset && text.len() == self.text.len() && !finished {
            return None;
        }
        self.text.clear();
        self.text.push_str(text);
        let blocks = self.rendering.advance(text, finished);
        let open = match finished {
            true => String::new(),
            false => self.rendering.open_block(text, as_it_will_end),
        };
        // New blocks replace the open block the page had: it is one of them now.
        let had = match blocks.is_empty() {
            true => std::mem::take(&mut self.open_html),
            false => String::new(),
        };
        let common = common_prefix(&had, &open);
        let common_end = common_suffix(&had[common..], &open[common..]);
        let update = HtmlUpdate {
            reset,
            keep: had[..common].encode_utf16().count(),
            changed: open[common..open.len() - common_end].to_owned(),
            keep_end: had[had.len() - common_end..].encode_utf16().count(),
            blocks,
        };
        let unchanged = !reset
            && update.blocks.is_empty()
            && update.changed.is_empty()
            && had.len() == open.len();
        self.open_html = open;
        self.started = true;
        (!unchanged).then_some(update)
    }
}

/// The bytes two texts end with alike, at a character boundary.
fn common_suffix(a: &str, b: &str) -> usize {
    a.chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum()
}

/// The bytes two texts begin with alike, at a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
        .min(b.len())
}

/// The open block's markdown as it will end: a half-written last line that would show as raw
/// markup (a table row, a list marker, a setext underline) is held back; inline markup still
/// open is closed (`**bol` as `**bol**`, an open code span) or held back from its opening (a
/// link before its URL is complete, math before its closing delimiter).
fn as_it_will_end(open: &str) -> Cow<'_, str> {
    // What is open may be a finished block and the half-written line after it: the last of
    // its blocks is the one to complete.
    let last = block_starts(open).last().copied().unwrap_or(0);
    match last_block_as_it_will_end(&open[last..]) {
        Cow::Borrowed(block) => Cow::Borrowed(&open[..last + block.len()]),
        Cow::Owned(block) => Cow::Owned(open[..last].to_owned() + &block),
    }
}

fn last_block_as_it_will_end(open: &str) -> Cow<'_, str> {
    let first = Parser::new_ext(open, options()).next();
    let line_start = open.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let last_line = &open[line_start..];
    let unterminated = !open.ends_with('\n');
    match first {
        Some(Event::Start(Tag::CodeBlock(_))) => {
            // A closing fence being written shows as nothing rather than as code.
            let fence = last_line.trim();
            if unterminated && !fence.is_empty() && fence.chars().all(|c| c == '`' || c == '~') {
                return Cow::Borrowed(&open[..line_start]);
            }
            Cow::Borrowed(open)
        }
        Some(Event::Start(Tag::Table(_))) => {
            // Row by row: a row shows once its line is complete.
            match unterminated && open[..line_start].lines().count() >= 2 {
                true => Cow::Borrowed(&open[..line_start]),
                false => Cow::Borrowed(open),
            }
        }
        _ => {
            let held = match unterminated && is_markup_only(last_line) {
                true => &open[..line_start],
                false => open,
            };
            // A table's rows before its delimiter row is complete: held back, not shown as
            // a paragraph of pipes.
            let mut cut = held.len();
            for line in held.split_inclusive('\n').rev() {
                match line.trim_start().starts_with('|') {
                    true => cut -= line.len(),
                    false => break,
                }
            }
            close_inline(&held[..cut])
        }
    }
}

/// A line with no text yet, only what begins a block or underlines one (`-`, `1.`, `##`, `>`,
/// `===`): shown now it would be a list item, a heading or a rule it may not become.
fn is_markup_only(line: &str) -> bool {
    let line = line.trim();
    let digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
    !line.is_empty()
        && (line.chars().all(|c| "-=*_+#>|~`: ".contains(c))
            || (digits.len() < line.len() && matches!(digits.trim_end(), "" | "." | ")")))
}

/// How far back from the end of the text inline markup still open is taken as markup being
/// written (held back or closed); further back it is text.
const HOLD_WINDOW: usize = 160;

/// The last paragraph's inline markup closed or held back (see [`as_it_will_end`]).
fn close_inline(text: &str) -> Cow<'_, str> {
    // Inside a code fence still open (in a list item or a quote) everything is code.
    let fences = text
        .lines()
        .filter(|line| {
            let line = line
                .trim_start_matches([' ', '>', '-', '*', '+'])
                .trim_start();
            line.starts_with("```") || line.starts_with("~~~")
        })
        .count();
    if fences % 2 == 1 {
        return Cow::Borrowed(text);
    }
    // Inline markup does not cross a blank line; a list item or a quote line starts afresh too
    // often to scan further back than the last line's paragraph.
    let from = text.trim_end().rfind("\n\n").map_or(0, |i| i + 2);
    let paragraph = &text[from..];
    let bytes = paragraph.as_bytes();
    // Open emphasis: (where, the character, how many).
    let mut open: Vec<(usize, u8, usize)> = Vec::new();
    let mut hold: Option<usize> = None;
    let mut code_closer: Option<usize> = None;
    // Markup opened long ago and still not closed is text (a stray `[`, `$` or `` ` ``): only
    // what opened near the end is held back or closed, so a stray one never hides the rest.
    let recent = |at: usize| paragraph.len() - at <= HOLD_WINDOW;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\\' => {
                let rest = &paragraph[i + 1..];
                let close = match rest.as_bytes().first() {
                    Some(b'(') => Some("\\)"),
                    Some(b'[') => Some("\\]"),
                    _ => None,
                };
                match close {
                    Some(close) => match rest.find(close) {
                        Some(end) => i += 1 + end + close.len(),
                        None if recent(i) => {
                            hold = Some(i);
                            break;
                        }
                        None => i += 2,
                    },
                    None => i += 1 + rest.chars().next().map_or(0, char::len_utf8),
                }
            }
            b'`' => {
                let run = run_length(bytes, i);
                let fence = &paragraph[i..i + run];
                match paragraph[i + run..].find(fence) {
                    Some(end) => i += run + end + run,
                    None if !recent(i) => i += run,
                    // Nothing in it yet: nothing to show.
                    None if paragraph[i + run..].trim().is_empty() => {
                        hold = Some(i);
                        break;
                    }
                    None => {
                        code_closer = Some(run);
                        break;
                    }
                }
            }
            b'$' => {
                let run = run_length(bytes, i);
                let after = paragraph[i + run..].chars().next();
                let closes_later = match run {
                    1 => {
                        // A price (`$5`) or a lone `$` is text; math opens on anything else.
                        let opens =
                            after.is_some_and(|c| !c.is_whitespace() && !c.is_ascii_digit());
                        let line_end = paragraph[i + 1..]
                            .find('\n')
                            .map_or(paragraph.len(), |e| i + 1 + e);
                        match opens {
                            false => {
                                i += 1;
                                continue;
                            }
                            true => paragraph[i + 1..line_end].find('$').map(|e| i + 1 + e + 1),
                        }
                    }
                    _ => paragraph[i + run..].find("$$").map(|e| i + run + e + 2),
                };
                match closes_later {
                    Some(end) => i = end,
                    None if recent(i) => {
                        hold = Some(i);
                        break;
                    }
                    None => i += run,
                }
            }
            b'*' | b'_' | b'~' => {
                let run = run_length(bytes, i);
                let before = paragraph[..i].chars().next_back();
                let after = paragraph[i + run..].chars().next();
                if after.is_none() {
                    // It may open something with the next token.
                    hold = Some(i);
                    break;
                }
                let left = after.is_some_and(|c| !c.is_whitespace());
                let right = before.is_some_and(|c| !c.is_whitespace());
                let intraword = before.is_some_and(char::is_alphanumeric)
                    && after.is_some_and(char::is_alphanumeric);
                let counts = !(c == b'_' && intraword || c == b'~' && run < 2);
                // Only an opener at a word's start is taken as emphasis being written:
                // `window.__name`, `x**2` and `snake_case` are text until they close.
                let word_start = before.is_none_or(|c| c.is_whitespace() || "([{\"'".contains(c));
                if counts {
                    if right && let Some(at) = open.iter().rposition(|(_, ch, _)| *ch == c) {
                        open.truncate(at);
                    } else if left && word_start {
                        open.push((i, c, run));
                    }
                }
                i += run;
            }
            b'[' | b'!' => {
                let from = i;
                let bracket = if c == b'!' { i + 1 } else { i };
                if bytes.get(bracket) != Some(&b'[') {
                    i += 1;
                    continue;
                }
                // A link holds back until it is complete: its text alone may be a link to come.
                let complete = match paragraph[bracket..].find(']') {
                    None => false,
                    Some(close) => {
                        let after = bracket + close + 1;
                        match bytes.get(after) {
                            None => false,
                            Some(b'(') => paragraph[after..].contains(')'),
                            Some(_) => true,
                        }
                    }
                };
                if !complete && recent(from) {
                    hold = Some(from);
                    break;
                }
                i = bracket + 1;
            }
            b'<' => {
                let after = bytes.get(i + 1);
                if after.is_some_and(|b| b.is_ascii_alphabetic() || *b == b'/')
                    && !paragraph[i..].contains('>')
                    && recent(i)
                {
                    hold = Some(i);
                    break;
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    open.retain(|(at, _, _)| recent(*at));
    if hold.is_none() && code_closer.is_none() && open.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut cut = hold.unwrap_or(paragraph.len());
    // Emphasis opened just before the cut has nothing to show yet: it is held back too.
    while let Some(&(at, _, run)) = open.last() {
        if at < cut && !paragraph[at + run..cut].trim().is_empty() {
            break;
        }
        cut = cut.min(at);
        open.pop();
    }
    let mut out = String::with_capacity(from + cut + 16);
    out.push_str(&text[..from]);
    let shown = &paragraph[..cut];
    match code_closer.is_some() || !open.is_empty() {
        // A closer after a space would not close.
        true => out.push_str(shown.trim_end()),
        false => out.push_str(shown),
    }
    if let Some(run) = code_closer {
        out.push_str(&"`".repeat(run));
    }
    for (_, c, run) in open.iter().rev() {
        out.push_str(&(*c as char).to_string().repeat(*run));
    }
    Cow::Owned(out)
}

fn run_length(bytes: &[u8], at: usize) -> usize {
    bytes[at..].iter().take_while(|&&b| b == bytes[at]).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::markdown_to_html;

    /// A reply as a model writes one: every kind of block, inline markup, math, code.
    const REPLY: &str = "# Plan for the **migration**\n\nFirst, a paragraph with *emphasis*, `code`, \
        a [link](https://example.com/docs) and math: $e^{i\\pi} + 1 = 0$.\n\n\
        ## Steps\n\n1. Back up the **database**.\n2. Run `migrate --check` first.\n3. Deploy:\n   \
        - one replica\n   - then the rest\n\n\
        | Step | Time | Risk |\n|------|------|------|\n| Backup | 5 min | low |\n| Migrate | 20 min | **high** |\n\n\
        ```rust\nfn main() {\n    println!(\"hello\");\n}\n```\n\n\
        > A quote, with ~~struck~~ text\n> on two lines.\n\n\
        Displayed:\n\n$$\\sum_{i=0}^{n} i = \\frac{n(n+1)}{2}$$\n\n\
        - [x] done\n- [ ] to do\n\n---\n\nThat costs $5 and $10. The end.\n";

    /// The page after streaming `text` in pieces of `piece` bytes, each page state on the way
    /// given to `check` (finished blocks' HTML, open block's HTML, text so far).
    fn stream(text: &str, piece: usize, mut check: impl FnMut(&str, &str, &str)) -> String {
        let mut live = LiveHtml::default();
        let mut page = (String::new(), String::new());
        let mut end = 0;
        while end < text.len() {
            end = (end + piece).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            let update = match end == text.len() {
                true => live.finish(text),
                false => live.update(&text[..end]),
            };
            if let Some(update) = update {
                page = update.apply((&page.0, &page.1));
            }
            check(&page.0, &page.1, &text[..end]);
        }
        page.0 + &page.1
    }

    /// The text a reader sees in `html`: tags dropped, the usual references decoded.
    fn visible(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
    }

    #[test]
    fn finished_blocks_are_the_final_render_and_the_end_is_it() {
        let last = markdown_to_html(REPLY);
        for piece in [1, 3, 7, 40] {
            let page = stream(REPLY, piece, |blocks, _, so_far| {
                assert!(last.starts_with(blocks), "after {so_far:?}:\n{blocks}");
            });
            assert_eq!(page, last, "in pieces of {piece}");
        }
    }

    #[test]
    fn no_raw_markup_is_shown_while_it_streams() {
        // The final page shows none of these characters outside code, so no moment may.
        let final_text = visible(&markdown_to_html(REPLY));
        let markup = ['*', '`', '|', '[', ']', '~', '#', '\\'];
        for c in markup {
            assert!(!final_text.contains(c), "{c} in {final_text}");
        }
        stream(REPLY, 1, |blocks, open, so_far| {
            let shown = visible(&format!("{blocks}{open}"));
            assert!(
                !shown.contains(markup),
                "after {so_far:?} the page shows {shown:?}"
            );
            // Dollars only as the final text has them (the prices at the end).
            assert!(
                shown.matches('$').count() <= final_text.matches('$').count(),
                "after {so_far:?}: {shown:?}"
            );
        });
    }

    #[test]
    fn an_open_fence_is_code_and_a_table_grows_row_by_row() {
        let mut live = LiveHtml::default();
        let update = live.update("Look:\n\n```python\nprint(1)\n``").unwrap();
        let (blocks, open) = update.apply(("", ""));
        assert_eq!(blocks, "<p>Look:</p>\n");
        assert!(
            open.starts_with("<pre><code class=\"language-python\">"),
            "{open}"
        );
        assert!(!open.contains("``"), "{open}");
        let mut live = LiveHtml::default();
        let (_, open) = live
            .update("| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | ")
            .unwrap()
            .apply(("", ""));
        assert!(open.contains("<td>2</td>"), "{open}");
        assert!(!open.contains('3'), "the half-written row waits: {open}");
        let mut live = LiveHtml::default();
        let (_, open) = live.update("| a | b |\n|--").unwrap().apply(("", ""));
        assert_eq!(
            open, "",
            "a header without its delimiter row is not shown as pipes"
        );
    }

    #[test]
    fn unfinished_inline_markup_is_closed_or_held_back() {
        let shown = |text: &str| LiveHtml::html_now(text);
        assert_eq!(shown("Some **bol"), "<p>Some <strong>bol</strong></p>\n");
        assert_eq!(shown("Run `cargo te"), "<p>Run <code>cargo te</code></p>\n");
        assert_eq!(shown("See [the docs](https://exa"), "<p>See</p>\n");
        assert_eq!(shown("Math $x^"), "<p>Math</p>\n");
        assert_eq!(shown("Costs $5 and"), "<p>Costs $5 and</p>\n");
        assert_eq!(shown("Title\n-"), "<p>Title</p>\n");
        assert_eq!(shown("Done *"), "<p>Done</p>\n");
        assert_eq!(shown("2 * 3 = 6"), "<p>2 * 3 = 6</p>\n");
        assert_eq!(shown("snake_case"), "<p>snake_case</p>\n");
        assert_eq!(shown("call window.__init"), "<p>call window.__init</p>\n");
        assert_eq!(shown("x**2 is"), "<p>x**2 is</p>\n");
        // A fence open inside a list item is code, not an inline code span to close.
        let html = shown("- item\n\n  ```rust\n  fn main() { let s = `");
        assert!(html.contains("<pre><code"), "{html}");
        assert!(!html.contains("```"), "{html}");
        // A stray opener long ago is text: it never hides what follows.
        let long = format!("a [stray `tick and $x {}", "word ".repeat(60));
        let html = shown(&long);
        assert!(html.contains("[stray `tick and $x word"), "{html}");
        assert!(html.trim_end().ends_with("word</p>"), "{html}");
    }

    #[test]
    fn bytes_sent_stay_proportional_to_the_reply() {
        // One long list and one long table: the open block grows for the whole reply, yet
        // only its changed end is sent.
        let list: String = (0..400)
            .map(|i| format!("- item **{i}** with some words\n"))
            .collect();
        let table: String = "| n | square |\n|---|---|\n".to_owned()
            + &(0..400)
                .map(|i| format!("| {i} | {} |\n", i * i))
                .collect::<String>();
        for text in [list, table] {
            let mut live = LiveHtml::default();
            let mut sent = 0;
            let mut end = 0;
            while end < text.len() {
                end = (end + 4).min(text.len());
                let update = match end == text.len() {
                    true => live.finish(&text),
                    false => live.update(&text[..end]),
                };
                sent += update.map_or(0, |u| u.encode().len());
            }
            let last = markdown_to_html(&text).len();
            assert!(
                sent <= 6 * last,
                "{sent} bytes sent for {last} bytes of HTML"
            );
        }
    }

    #[test]
    fn the_encoding_counts_utf16_units_as_the_page_does() {
        let update = HtmlUpdate {
            reset: false,
            blocks: "<p>é😀</p>\n".into(),
            keep: 3,
            changed: "x".into(),
            keep_end: 4,
        };
        assert_eq!(update.encode(), "a 11 3 4\n<p>é😀</p>\nx");
        assert_eq!(HtmlUpdate::decode(&update.encode()), Some(update.clone()));
        let (_, open) = update.apply(("", "<p>😀</p>"));
        assert_eq!(open, "<p>x</p>");
    }
}
/// A long reply, much of it code (the highlighter's time is not the render's time budget's, so
/// the streamed blocks and the final render agree however slow the machine).
#[cfg(test)]
mod long_reply_tests {
    use super::*;
    const MARKDOWN_ANSWER: &str = "Here is **one way** to do it, with [the docs](https://example.com/docs) \
for details:\n\n1. Read the `input` line by line\n2. Parse each *field*\n3. Print the result\n\n\
```rust\nfn main() {\n    let total: u32 = (1..=10).sum();\n    println!(\"{total}\");\n}\n```\n\n\
| step | cost |\n| --- | --- |\n| parse | low |\n| print | lower |\n\n";
    #[test]
    fn a_long_reply_with_code_streams_to_its_render() {
        let words: Vec<&str> = MARKDOWN_ANSWER.split_inclusive(' ').collect();
        let text: String = (0..300).map(|i| words[i % words.len()]).collect();
        let want = crate::render::markdown_to_html(&text);
        let mut live = LiveHtml::default();
        let mut page = (String::new(), String::new());
        let mut end = 0;
        let mut i = 0;
        while end < text.len() {
            end += words[i % words.len()].len();
            i += 1;
            if let Some(u) = live.update(&text[..end]) {
                page = u.apply((&page.0, &page.1));
            }
            if !want.starts_with(&page.0) {
                let common = want
                    .bytes()
                    .zip(page.0.bytes())
                    .take_while(|(a, b)| a == b)
                    .count();
                panic!(
                    "at {end}: want {:?}\n got {:?}\ntext {:?}",
                    &want[common.saturating_sub(200)..(common + 200).min(want.len())],
                    &page.0[common.saturating_sub(200)..(common + 200).min(page.0.len())],
                    &text[..end]
                );
            }
        }
        if let Some(u) = live.finish(&text) {
            page = u.apply((&page.0, &page.1));
        }
        assert_eq!(page.0 + &page.1, want);
    }
}
