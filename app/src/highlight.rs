//! Code blocks in replies, highlighted on the server (syntect, Sublime Text's grammars): spans
//! with `hl-` classes and no inline style, so the Content-Security-Policy holds, coloured by
//! `static/highlight.css` in a light and a dark theme. The text inside stays the code exactly,
//! so copying a block copies the plain code.
//!
//! Each run of text styled alike is one span whose classes say its style in each theme: `hl-l3`
//! (colour 3 of the light theme's palette), `hl-d5` (colour 5 of the dark one's), `hl-lb`,
//! `hl-li`, `hl-lu` (bold, italic, underlined when light), `hl-lg2` (a background), and the same
//! with `d`. Text in the themes' default style has no span. syntect's own classed HTML writes
//! every scope of every token (`<span class="hl-meta hl-function hl-rust">`, nested), which
//! made a page of code replies five times the size of its text.
use std::{fmt::Write as _, sync::OnceLock};

use syntect::{
    highlighting::{
        Color, FontStyle, HighlightIterator, HighlightState, Highlighter, Style, Theme, ThemeSet,
    },
    parsing::{ParseState, ScopeStack, SyntaxSet},
    util::LinesWithEndings,
};

/// What every class the highlighter writes starts with (the sanitiser keeps only these on spans).
pub const CLASS_PREFIX: &str = "hl-";
/// The themes of `static/highlight.css`.
const LIGHT_THEME: &str = "InspiredGitHub";
const DARK_THEME: &str = "base16-ocean.dark";

fn syntaxes() -> &'static SyntaxSet {
    static SYNTAXES: OnceLock<SyntaxSet> = OnceLock::new();
    SYNTAXES.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// One theme, and the colours its rules use, numbered for the classes.
struct Palette {
    /// `l` or `d`: the letter its classes carry.
    letter: char,
    theme: Theme,
    default: Style,
    colors: Vec<Color>,
    backgrounds: Vec<Color>,
}

impl Palette {
    fn new(themes: &mut ThemeSet, name: &str, letter: char) -> Palette {
        let theme = themes.themes.remove(name).unwrap_or_default();
        let default = Highlighter::new(&theme).get_default();
        let distinct = |pick: fn(&syntect::highlighting::StyleModifier) -> Option<Color>| {
            let mut colors: Vec<Color> = Vec::new();
            for color in theme.scopes.iter().filter_map(|item| pick(&item.style)) {
                if !colors.contains(&color) {
                    colors.push(color);
                }
            }
            colors
        };
        let colors = distinct(|s| s.foreground);
        let backgrounds = distinct(|s| s.background);
        Palette {
            letter,
            theme,
            default,
            colors,
            backgrounds,
        }
    }

    /// The classes of `style` in this theme (each with a leading space); none for the default.
    fn classes(&self, style: Style, out: &mut String) {
        let letter = self.letter;
        if style.foreground != self.default.foreground
            && let Some(i) = self.colors.iter().position(|c| *c == style.foreground)
        {
            let _ = write!(out, " {CLASS_PREFIX}{letter}{i}");
        }
        if style.background != self.default.background
            && let Some(i) = self.backgrounds.iter().position(|c| *c == style.background)
        {
            let _ = write!(out, " {CLASS_PREFIX}{letter}g{i}");
        }
        for (flag, name) in [
            (FontStyle::BOLD, 'b'),
            (FontStyle::ITALIC, 'i'),
            (FontStyle::UNDERLINE, 'u'),
        ] {
            if style.font_style.contains(flag) {
                let _ = write!(out, " {CLASS_PREFIX}{letter}{name}");
            }
        }
    }

    /// The rules for this theme's classes.
    fn css(&self) -> String {
        let (p, l) = (CLASS_PREFIX, self.letter);
        let hex = |c: &Color| format!("#{:02x}{:02x}{:02x}", c.r, c.g, c.b);
        let mut css = String::new();
        for (i, color) in self.colors.iter().enumerate() {
            let _ = writeln!(css, ".{p}{l}{i} {{ color: {}; }}", hex(color));
        }
        for (i, color) in self.backgrounds.iter().enumerate() {
            let _ = writeln!(css, ".{p}{l}g{i} {{ background-color: {}; }}", hex(color));
        }
        let _ = writeln!(css, ".{p}{l}b {{ font-weight: bold; }}");
        let _ = writeln!(css, ".{p}{l}i {{ font-style: italic; }}");
        let _ = writeln!(css, ".{p}{l}u {{ text-decoration: underline; }}");
        css
    }
}

fn palettes() -> &'static (Palette, Palette) {
    static PALETTES: OnceLock<(Palette, Palette)> = OnceLock::new();
    PALETTES.get_or_init(|| {
        let mut themes = ThemeSet::load_defaults();
        (
            Palette::new(&mut themes, LIGHT_THEME, 'l'),
            Palette::new(&mut themes, DARK_THEME, 'd'),
        )
    })
}

/// `code` as highlighted HTML (its text escaped), when `language` (a fence's info word, such as
/// `rust` or `py`) names a grammar; `None` otherwise, and the caller shows the code plain.
/// Linear but not fast (about 4 µs a byte): the renderer bounds what it asks for.
pub fn highlight(code: &str, language: &str) -> Option<String> {
    if language.is_empty() {
        return None;
    }
    let set = syntaxes();
    let syntax = set.find_syntax_by_token(language)?;
    let (light, dark) = palettes();
    let (light_highlighter, dark_highlighter) = (
        Highlighter::new(&light.theme),
        Highlighter::new(&dark.theme),
    );
    let mut parser = ParseState::new(syntax);
    let mut light_state = HighlightState::new(&light_highlighter, ScopeStack::new());
    let mut dark_state = HighlightState::new(&dark_highlighter, ScopeStack::new());
    let mut html = Html::default();
    for line in LinesWithEndings::from(code) {
        let ops = parser.parse_line(line, set).ok()?;
        let light_runs: Vec<(Style, &str)> =
            HighlightIterator::new(&mut light_state, &ops, line, &light_highlighter).collect();
        let dark_runs: Vec<(Style, &str)> =
            HighlightIterator::new(&mut dark_state, &ops, line, &dark_highlighter).collect();
        // Both cover the line; cut it wherever either theme's style changes.
        let (mut l, mut d) = (light_runs.iter().peekable(), dark_runs.iter().peekable());
        let (mut l_end, mut d_end, mut at) = (0, 0, 0);
        let (mut l_style, mut d_style) = (light.default, dark.default);
        while at < line.len() {
            if l_end <= at {
                let Some((style, text)) = l.next() else { break };
                (l_style, l_end) = (*style, l_end + text.len());
                continue;
            }
            if d_end <= at {
                let Some((style, text)) = d.next() else { break };
                (d_style, d_end) = (*style, d_end + text.len());
                continue;
            }
            let end = l_end.min(d_end);
            let mut classes = String::new();
            light.classes(l_style, &mut classes);
            dark.classes(d_style, &mut classes);
            html.push(&classes, line.get(at..end)?);
            at = end;
        }
        // Text a theme's runs did not reach (not expected) goes out unstyled.
        html.push("", line.get(at..)?);
    }
    Some(html.finish())
}

/// Highlighted HTML being written: runs with the same classes share one span.
#[derive(Default)]
struct Html {
    out: String,
    open: Option<String>,
}

impl Html {
    fn push(&mut self, classes: &str, text: &str) {
        if text.is_empty() {
            return;
        }
        // Spaces look the same in any colour: they stay in the open span (`let mut` is one).
        let invisible = text.trim().is_empty()
            && self
                .open
                .as_deref()
                .is_some_and(|open| !open.is_empty() && !shows_spaces(open));
        if !invisible && self.open.as_deref() != Some(classes) {
            self.close();
            if !classes.is_empty() {
                let _ = write!(self.out, "<span class=\"{}\">", classes.trim_start());
            }
            self.open = Some(classes.to_owned());
        }
        for c in text.chars() {
            match c {
                '&' => self.out.push_str("&amp;"),
                '<' => self.out.push_str("&lt;"),
                '>' => self.out.push_str("&gt;"),
                c => self.out.push(c),
            }
        }
    }

    fn close(&mut self) {
        if self.open.take().is_some_and(|classes| !classes.is_empty()) {
            self.out.push_str("</span>");
        }
    }

    fn finish(mut self) -> String {
        self.close();
        self.out
    }
}

/// Whether spaces under these classes can be seen: a background, an underline.
fn shows_spaces(classes: &str) -> bool {
    classes.split_whitespace().any(|class| {
        class
            .strip_prefix(CLASS_PREFIX)
            .and_then(|c| c.get(1..))
            .is_some_and(|c| c.starts_with('g') || c == "u")
    })
}

/// The stylesheet for the classes above: the light theme's, and the dark one's when the system
/// prefers dark (as `app.css` does). `static/highlight.css` is this, checked by a test.
pub fn stylesheet() -> String {
    let (light, dark) = palettes();
    format!(
        "/* Code highlighting ({LIGHT_THEME}; {DARK_THEME} when dark). Generated by \
         app/src/highlight.rs: UPDATE_HIGHLIGHT_CSS=1 cargo test -p app highlight */\n\
         @media not all and (prefers-color-scheme: dark) {{\n{}}}\n\
         @media (prefers-color-scheme: dark) {{\n{}}}\n",
        light.css(),
        dark.css()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_languages_become_classed_spans_with_the_code_as_their_text() {
        let code = "fn main() { let x = \"<b>&\"; }\n";
        let html = highlight(code, "rust").unwrap();
        assert!(html.contains("<span class=\"hl-"), "{html}");
        assert!(!html.contains("style="), "{html}");
        assert!(
            html.contains("&lt;b&gt;&amp;"),
            "the code is escaped: {html}"
        );
        // The text of the spans is the code, character for character.
        let text = html
            .split('<')
            .map(|part| part.split_once('>').map_or(part, |(_, text)| text))
            .collect::<String>();
        let unescaped = text
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&amp;", "&");
        assert_eq!(unescaped, code);
        assert!(highlight("print(1)\n", "py").is_some());
    }

    #[test]
    fn each_run_says_its_style_in_both_themes_and_plain_text_has_no_span() {
        let html = highlight("fn main() {}\n", "rust").unwrap();
        // `fn` is a keyword: coloured (and bold when light) in both themes.
        let keyword = html.split("fn</span>").next().unwrap();
        let classes = keyword.rsplit("class=\"").next().unwrap();
        assert!(
            classes.contains("hl-l") && classes.contains("hl-d"),
            "{html}"
        );
        assert!(classes.split(' ').any(|c| c == "hl-lb"), "{html}");
        // Every class it writes is in the stylesheet.
        let css = stylesheet();
        for class in html
            .split("class=\"")
            .skip(1)
            .flat_map(|rest| rest.split('"').next().unwrap().split(' '))
        {
            assert!(css.contains(&format!(".{class} ")), "{class} is styled");
        }
        // Plain prose in a grammar that styles nothing has no spans at all.
        assert_eq!(highlight("just words\n", "txt").unwrap(), "just words\n");
    }

    #[test]
    fn the_markup_costs_a_few_bytes_per_token() {
        let code = "use std::collections::HashMap;\n\nfn count(words: &[&str]) -> HashMap<&str, usize> {\n    let mut counts = HashMap::new();\n    for word in words {\n        *counts.entry(*word).or_insert(0) += 1;\n    }\n    counts\n}\n".repeat(20);
        let html = highlight(&code, "rust").unwrap();
        // syntect's own classed HTML, which this replaced: every scope of every token.
        let set = syntaxes();
        let syntax = set.find_syntax_by_token("rust").unwrap();
        let style = syntect::html::ClassStyle::SpacedPrefixed {
            prefix: CLASS_PREFIX,
        };
        let mut scopes =
            syntect::html::ClassedHTMLGenerator::new_with_class_style(syntax, set, style);
        for line in LinesWithEndings::from(code.as_str()) {
            scopes
                .parse_html_for_line_which_includes_newline(line)
                .unwrap();
        }
        let scopes = scopes.finalize();
        assert!(
            html.len() * 3 < scopes.len() && html.len() < code.len() * 5,
            "{} bytes of HTML for {} bytes of code ({} with every scope)",
            html.len(),
            code.len(),
            scopes.len()
        );
    }

    #[test]
    fn unknown_languages_stay_plain() {
        assert_eq!(highlight("x", "no-such-language"), None);
        assert_eq!(highlight("x", ""), None);
    }

    #[test]
    fn the_served_stylesheet_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../static/highlight.css");
        let generated = stylesheet();
        if std::env::var_os("UPDATE_HIGHLIGHT_CSS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let served = std::fs::read_to_string(path).unwrap_or_default();
        assert!(generated.contains(".hl-l0") && generated.contains(".hl-d0"));
        assert!(generated.contains("prefers-color-scheme"));
        assert!(
            served == generated,
            "static/highlight.css is out of date: UPDATE_HIGHLIGHT_CSS=1 cargo test -p app highlight"
        );
    }
}
