//! Math in replies: `$…$` and `\(…\)` inline, `$$…$$` and `\[…\]` displayed, rendered on the
//! server to MathML (math-core), so the page needs no script and the CSP holds. LaTeX that does
//! not convert (unknown commands, unbalanced groups, too long or too deep) shows as code.
use std::borrow::Cow;

use math_core::{LatexToMathML, MathCoreConfig, MathDisplay};
use pulldown_cmark::{CowStr, Event};

/// One formula's LaTeX at most; longer ones show as code.
const MAX_FORMULA_BYTES: usize = 4 * 1024;
/// Groups (`{`, `\left`, `\begin`) nested deeper than this show as code: the converter recurses.
const MAX_FORMULA_DEPTH: usize = 32;

/// The event for a formula: its MathML, or its LaTeX as code when it does not convert.
pub(super) fn math_event<'a>(latex: CowStr<'a>, display: bool) -> Event<'a> {
    match to_mathml(&latex, display) {
        Some(mathml) => Event::InlineHtml(mathml.into()),
        None => Event::Code(latex),
    }
}

fn to_mathml(latex: &str, display: bool) -> Option<String> {
    if latex.trim().is_empty()
        || latex.len() > MAX_FORMULA_BYTES
        || depth(latex) > MAX_FORMULA_DEPTH
    {
        return None;
    }
    static CONVERTER: std::sync::OnceLock<Option<LatexToMathML>> = std::sync::OnceLock::new();
    let converter = CONVERTER
        .get_or_init(|| LatexToMathML::new(MathCoreConfig::default()).ok())
        .as_ref()?;
    let display = match display {
        true => MathDisplay::Block,
        false => MathDisplay::Inline,
    };
    converter
        .convert_with_local_state(latex, display)
        .ok()
        .map(|converted| converted.mathml)
}

/// How deeply groups nest in `latex`, at most.
fn depth(latex: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut rest = latex;
    while let Some(i) = rest.find(['{', '}', '\\']) {
        let after = &rest[i + 1..];
        let (opens, closes, skip) = match rest.as_bytes()[i] {
            b'{' => (true, false, 1),
            b'}' => (false, true, 1),
            _ if after.starts_with("left") || after.starts_with("begin") => (true, false, 1),
            _ if after.starts_with("right") || after.starts_with("end") => (false, true, 1),
            // An escaped character (`\{`) is not a group.
            _ => (
                false,
                false,
                1 + after.chars().next().map_or(0, char::len_utf8),
            ),
        };
        if opens {
            depth += 1;
            deepest = deepest.max(depth);
        }
        if closes {
            depth = depth.saturating_sub(1);
        }
        rest = &rest[i + skip..];
    }
    deepest
}

/// `source` with `\(…\)` as `$…$` and `\[…\]` as `$$…$$` (pulldown-cmark knows only the dollar
/// forms), outside code; and the bytes dropped, each as (where in the result, how many), so
/// that a place in the result can be found in `source` again.
pub(super) fn latex_delimiters(source: &str) -> (Cow<'_, str>, Vec<(usize, usize)>) {
    if !source.contains("\\(") && !source.contains("\\[") {
        return (Cow::Borrowed(source), Vec::new());
    }
    let mut out = String::with_capacity(source.len());
    let mut dropped = Vec::new();
    let mut in_fence = false;
    let mut lines = source.split_inclusive('\n').peekable();
    // Display math may span lines (not a blank one): the lines are searched as one text.
    let mut pending = String::new();
    let flush = |pending: &mut String, out: &mut String, dropped: &mut Vec<(usize, usize)>| {
        rewrite_text(pending, out, dropped);
        pending.clear();
    };
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let fence = trimmed.starts_with("```") || trimmed.starts_with("~~~");
        if fence || in_fence || line.trim().is_empty() || line.starts_with("    ") {
            flush(&mut pending, &mut out, &mut dropped);
            if fence {
                in_fence = !in_fence;
            }
            out.push_str(line);
            continue;
        }
        pending.push_str(line);
        if lines.peek().is_none() {
            flush(&mut pending, &mut out, &mut dropped);
        }
    }
    flush(&mut pending, &mut out, &mut dropped);
    (Cow::Owned(out), dropped)
}

/// Rewrites the delimiters in one stretch of text (no code blocks, no blank lines), leaving
/// code spans as they are.
fn rewrite_text(text: &str, out: &mut String, dropped: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if rest.starts_with('`') {
            // A code span: to the same run of backticks, or (unclosed) the run alone.
            let run = rest.len() - rest.trim_start_matches('`').len();
            let fence = &rest[..run];
            let end = rest[run..]
                .find(fence)
                .map_or(run, |close| run + close + run);
            out.push_str(&rest[..end]);
            i += end;
            continue;
        }
        let (open, close, dollars) = match rest.get(..2) {
            Some("\\(") => ("\\(", "\\)", "$"),
            Some("\\[") => ("\\[", "\\]", "$$"),
            Some(s) if s.starts_with('\\') => {
                let escaped = 1 + rest[1..].chars().next().map_or(0, char::len_utf8);
                out.push_str(&rest[..escaped]);
                i += escaped;
                continue;
            }
            _ => {
                let c = rest.chars().next().map_or(1, char::len_utf8);
                out.push_str(&rest[..c]);
                i += c;
                continue;
            }
        };
        let inner_and_rest = &rest[open.len()..];
        // Inline math stays on its line.
        let searched = match dollars {
            "$" => &inner_and_rest[..inner_and_rest.find('\n').unwrap_or(inner_and_rest.len())],
            _ => inner_and_rest,
        };
        let Some(end) = searched.find(close) else {
            out.push_str(open);
            i += open.len();
            continue;
        };
        let inner = &inner_and_rest[..end];
        // `$ x $` is not math to pulldown-cmark: the spaces inside go.
        let trimmed = match dollars {
            "$" => inner.trim(),
            _ => inner,
        };
        let lost = open.len() + close.len() + inner.len() - 2 * dollars.len() - trimmed.len();
        if lost > 0 {
            dropped.push((out.len(), lost));
        }
        out.push_str(dollars);
        out.push_str(trimmed);
        out.push_str(dollars);
        i += open.len() + end + close.len();
    }
}

/// Where the place `at` of [`latex_delimiters`]'s result is in its source.
pub(super) fn source_offset(at: usize, dropped: &[(usize, usize)]) -> usize {
    at + dropped
        .iter()
        .filter(|(place, _)| *place < at)
        .map(|(_, lost)| lost)
        .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::markdown_to_html;

    #[test]
    fn dollar_and_bracket_math_become_mathml() {
        let html = markdown_to_html(
            "Inline $x^2$ and \\(\\alpha + 1\\), displayed:\n\n$$\\frac{a}{b}$$\n\n\\[\n\\sum_{i=0}^n i\n\\]\n",
        );
        assert_eq!(html.matches("<math").count(), 4, "{html}");
        assert!(html.contains("<msup><mi>x</mi><mn>2</mn></msup>"), "{html}");
        assert!(html.contains("<mi>α</mi>"), "{html}");
        assert!(html.contains("<mfrac>"), "{html}");
        assert!(html.contains("display=\"block\""), "{html}");
        assert!(html.contains("<munderover>"), "{html}");
        assert!(!html.contains("\\("), "{html}");
        assert!(!html.contains("$"), "{html}");
    }

    #[test]
    fn prices_are_not_math() {
        let html = markdown_to_html("It costs $5 and $10, or $ 3 in all.");
        assert_eq!(html, "<p>It costs $5 and $10, or $ 3 in all.</p>\n");
    }

    #[test]
    fn invalid_latex_shows_as_code() {
        for latex in [
            "\\frac{a}",
            "\\nosuchcommand{x}",
            "\\href{javascript:alert(1)}{x}",
            "x^",
        ] {
            let html = markdown_to_html(&format!("see ${latex}$ here"));
            assert!(!html.contains("<math"), "{latex}: {html}");
            assert!(html.contains("<code>"), "{latex}: {html}");
        }
        let deep = format!("${}x{}$", "{".repeat(200), "}".repeat(200));
        let html = markdown_to_html(&deep);
        assert!(html.contains("<code>{{{"), "{html}");
        let long = format!("${}$", "x+".repeat(3000) + "x");
        assert!(markdown_to_html(&long).contains("<code>x+x+"));
    }

    #[test]
    fn math_in_code_stays_code() {
        let html = markdown_to_html("`\\(x\\)` and\n\n```\n\\[ y \\] $z$\n```\n");
        assert!(!html.contains("<math"), "{html}");
        assert!(html.contains("\\(x\\)"), "{html}");
        assert!(html.contains("\\[ y \\] $z$"), "{html}");
    }

    #[test]
    fn the_sanitiser_keeps_mathml_and_nothing_else_inside_it() {
        // What the converter writes survives; a style (which the CSP would refuse) does not.
        let html = markdown_to_html(
            "$\\color{red}{x} \\mathrm{d}x \\begin{pmatrix}a&b\\\\c&d\\end{pmatrix}$",
        );
        assert!(html.contains("<mtable"), "{html}");
        assert!(html.contains("mathvariant=\"normal\""), "{html}");
        assert!(!html.contains(" style="), "{html}");
        // Raw MathML the model writes is text, like any raw HTML.
        let html = markdown_to_html(
            "<math><mi>x</mi><maction actiontype=\"statusline\">y</maction></math>",
        );
        assert!(html.contains("&lt;math&gt;"), "{html}");
    }

    #[test]
    fn rewritten_places_map_back_to_the_source() {
        let source = "a \\( x \\) b \\(y\\) c";
        let (out, dropped) = latex_delimiters(source);
        assert_eq!(out, "a $x$ b $y$ c");
        let c_out = out.find(" c").unwrap();
        assert_eq!(source_offset(c_out, &dropped), source.find(" c").unwrap());
    }
}
