//! Property tests: the markdown sanitiser lets nothing executable through whatever the model
//! writes, `escape_html` is lossless, and a reply streams (and resumes) to exactly the text the
//! model sent. Failing cases are not saved to disk (`failure_persistence: None`): proptest prints
//! the shrunk input instead.
use std::{sync::OnceLock, time::Duration};

use app::{
    render::{LiveHtml, escape_html, markdown_to_html},
    store::Status,
};
use eventsource_stream::Event;
use proptest::{prelude::*, sample::Index};

use crate::helpers::{
    TestApp,
    sse::{EventReader, token_text, unescape_html, unescape_token},
};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The sanitiser
// ---------------------------------------------------------------------------------------------

/// Raw HTML and markdown-in-HTML attacks, as a model might write them.
const RAW_ATTACKS: &[&str] = &[
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=alert(1)>",
    "<img src=\"x\" onerror=\"alert(1)\"/>",
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><a xlink:href=\"javascript:alert(1)\"><text>x</text></a></svg>",
    "<iframe src=\"javascript:alert(1)\"></iframe>",
    "<iframe srcdoc=\"<script>alert(1)</script>\"></iframe>",
    "<style>*{background:url(javascript:alert(1))}</style>",
    "<object data=\"x.swf\"></object>",
    "<embed src=\"x.swf\">",
    "<math><mi xlink:href=\"javascript:alert(1)\">x</mi></math>",
    "<form action=javascript:alert(1)><button>go</button></form>",
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    "<p onmouseover=alert(1)>hover</p>",
    "<div style=\"background:url(javascript:alert(1))\">x</div>",
    "<!--<script>alert(1)</script>-->",
    "<![CDATA[<script>alert(1)</script>]]>",
    "<base href=\"javascript:/\">",
    "<meta http-equiv=refresh content=\"0;url=javascript:alert(1)\">",
    "<link rel=stylesheet href=x.css>",
    "<input onfocus=alert(1) autofocus>",
    "<video><source onerror=alert(1)></video>",
    "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
    "<a href=\"&#106;avascript:alert(1)\">e</a>",
    "<a href=\"jav&#x09;ascript:alert(1)\">t</a>",
    "<a href=\" javascript:alert(1)\">s</a>",
    "</p><script>alert(1)</script><p>",
    "<textarea></textarea><script>alert(1)</script>",
    "<table><tr><td><img src=x onerror=alert(1)></td></tr></table>",
    "<",
    ">",
    "\"",
    "'",
    "&",
    "&amp;",
    "&lt;script&gt;",
    "<p",
    "<a",
    "=",
];

/// Markdown structure that changes how what follows is parsed.
const MARKDOWN: &[&str] = &[
    "\n",
    "\n\n",
    "`",
    "``",
    "```",
    "````",
    "```html\n",
    "\n```\n",
    "~~~\n",
    "    ",
    "> ",
    "- ",
    "1. ",
    "- [ ] ",
    "- [x] ",
    "# ",
    "| a | b |\n|---|---|\n| ",
    " | ",
    "*",
    "**",
    "_",
    "~~",
    "\\",
    "[",
    "]",
    "(",
    ")",
    "![",
    "](",
    "<div>\n",
    "</div>\n",
    "\n<div>\n\n",
    "$",
    "$$",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
    "\\frac{",
    "}",
    "\\href{javascript:alert(1)}{",
    "\\text{<script>",
];

/// A dangerous scheme and its colon, disguised the ways browsers (or markdown) forgive: mixed
/// case, character references with and without `;`, percent-encoding, whitespace and control
/// characters before and inside it.
fn disguised_scheme() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["javascript", "data", "vbscript"]),
        prop::collection::vec((0u8..10, 0u8..14), 11),
        0usize..7,
    )
        .prop_map(|(scheme, choices, lead)| {
            let mut out = String::from(["", " ", "\t", "\u{1}", "&#32;", "\n", "&#x20;"][lead]);
            for (c, (how, junk)) in scheme.chars().chain([':']).zip(choices) {
                out.push_str(match junk {
                    0 => "\t",
                    1 => "\n",
                    2 => "&#9;",
                    3 => "&Tab;",
                    4 => "&#x0A;",
                    5 => "\0",
                    6 => "&NewLine;",
                    7 => " ",
                    _ => "",
                });
                match how {
                    0 => out.push(c.to_ascii_uppercase()),
                    1 => out.push_str(&format!("&#{};", c as u32)),
                    2 => out.push_str(&format!("&#x{:X};", c as u32)),
                    3 => out.push_str(&format!("&#0000{}", c as u32)),
                    4 if c == ':' => out.push_str("&colon;"),
                    5 => out.push_str(&format!("%{:02X}", c as u32)),
                    6 => out.push_str(&format!("\\{c}")),
                    _ => out.push(c),
                }
            }
            out
        })
}

/// A disguised dangerous URL in one of the places markdown or HTML takes a URL from.
fn url_vector() -> impl Strategy<Value = String> {
    let payload = prop::sample::select(vec![
        "alert(1)",
        "alert(document.cookie)//",
        "text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "text/html,<script>alert(1)</script>",
        "msgbox(1)",
        "//%0aalert(1)",
    ]);
    (disguised_scheme(), payload, 0usize..13, "[a-z]{0,5}").prop_map(
        |(scheme, payload, shape, text)| {
            let url = format!("{scheme}{payload}");
            match shape {
                0 => format!("[{text}]({url})"),
                1 => format!("[{text}](<{url}>)"),
                2 => format!("![{text}]({url})"),
                3 => format!("[{text}][r]\n\n[r]: {url}\n"),
                4 => format!("[{text}]\n\n[{text}]: <{url}> \"t\"\n"),
                5 => format!("<{url}>"),
                6 => format!("<a href=\"{url}\">{text}</a>"),
                7 => format!("<a href={url}>{text}"),
                8 => format!("<img src=\"{url}\" onerror=alert(1)>"),
                9 => format!("<iframe src='{url}'></iframe>"),
                10 => format!("[{text}](https://ok.example \"{url}\")"),
                11 => format!("[![{text}]({url})](https://ok.example)"),
                _ => format!("<form><button formaction=\"{url}\">{text}</button></form>"),
            }
        },
    )
}

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(RAW_ATTACKS).prop_map(str::to_owned),
        4 => url_vector(),
        3 => prop::sample::select(MARKDOWN).prop_map(str::to_owned),
        2 => "[a-zA-Z0-9 ]{1,8}",
        1 => any::<String>(),
    ]
}

/// Attack material glued together, sometimes with letters upper-cased at random.
fn attack() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(fragment(), 1..12),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(parts, mask, mix_case)| {
            let text = parts.concat();
            if !mix_case {
                return text;
            }
            text.chars()
                .enumerate()
                .map(|(i, c)| match mask >> (i % 64) & 1 {
                    1 => c.to_ascii_uppercase(),
                    _ => c,
                })
                .collect()
        })
}

/// Elements that run code, load content, or change what the page's URLs mean.
const FORBIDDEN_TAGS: &[&str] = &[
    "script", "iframe", "object", "embed", "style", "svg", "img", "image", "frame", "frameset",
    "applet", "base", "link", "meta", "form", "template", "noscript", "video", "audio", "source",
    "portal",
];

/// Attributes whose value a browser treats as a URL.
const URL_ATTRIBUTES: &[&str] = &[
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "poster",
    "background",
    "cite",
    "data",
    "srcset",
    "longdesc",
    "lowsrc",
    "dynsrc",
    "codebase",
    "ping",
    "manifest",
    "icon",
];

/// A start or end tag, as a browser's tokenizer reads it (names lower-cased, attribute values
/// with character references decoded).
#[derive(Debug)]
struct Tag {
    name: String,
    end: bool,
    attrs: Vec<(String, String)>,
}

fn is_html_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

/// The tags in `html`, following the HTML tokenizer's states for data, tags, attributes (quoted
/// and unquoted), comments and bogus comments. Written independently of html5ever, so a
/// difference between how the sanitiser and this reader see the markup shows up as a failure.
fn tags(html: &str) -> Vec<Tag> {
    let chars: Vec<char> = html.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let skip_past = |from: usize, end: &str| -> usize {
        let end: Vec<char> = end.chars().collect();
        (from..chars.len())
            .find(|&i| chars[i..].starts_with(&end))
            .map_or(chars.len(), |i| i + end.len())
    };
    let mut tags = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '<' {
            i += 1;
            continue;
        }
        i += 1;
        let end = at(i) == Some('/');
        match at(i + usize::from(end)) {
            Some(c) if c.is_ascii_alphabetic() => {}
            Some('!') if !end && chars[i..].starts_with(&['!', '-', '-']) => {
                i = skip_past(i + 1, "-->");
                continue;
            }
            Some('!' | '?') if !end => {
                i = skip_past(i, ">");
                continue;
            }
            // `</` then anything but a letter: a bogus comment (or nothing, for `</>`).
            _ if end => {
                i = skip_past(i, ">");
                continue;
            }
            // A `<` that starts no tag is text.
            _ => continue,
        }
        i += usize::from(end);
        let mut name = String::new();
        while let Some(c) = at(i).filter(|&c| !is_html_space(c) && c != '/' && c != '>') {
            name.push(c.to_ascii_lowercase());
            i += 1;
        }
        let mut attrs = Vec::new();
        let closed = loop {
            while at(i).is_some_and(|c| is_html_space(c) || c == '/') {
                i += 1;
            }
            match at(i) {
                None => break false,
                Some('>') => {
                    i += 1;
                    break true;
                }
                Some(_) => {}
            }
            // The first character belongs to the name even if it is `=`.
            let mut key = chars[i].to_ascii_lowercase().to_string();
            i += 1;
            while let Some(c) =
                at(i).filter(|&c| !is_html_space(c) && !matches!(c, '/' | '>' | '='))
            {
                key.push(c.to_ascii_lowercase());
                i += 1;
            }
            while at(i).is_some_and(is_html_space) {
                i += 1;
            }
            let mut value = String::new();
            if at(i) == Some('=') {
                i += 1;
                while at(i).is_some_and(is_html_space) {
                    i += 1;
                }
                match at(i) {
                    Some(quote @ ('"' | '\'')) => {
                        i += 1;
                        while let Some(c) = at(i) {
                            i += 1;
                            if c == quote {
                                break;
                            }
                            value.push(c);
                        }
                    }
                    _ => {
                        while let Some(c) = at(i).filter(|&c| !is_html_space(c) && c != '>') {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
            }
            attrs.push((key, decode_entities(&value)));
        };
        // A tag cut off by the end of the input is dropped by browsers too.
        if closed {
            tags.push(Tag { name, end, attrs });
        }
    }
    tags
}

/// Decodes character references in an attribute value once, as a browser does: numeric ones
/// with or without `;`, the named ones that matter for URLs, and the legacy ones without `;`.
fn decode_entities(value: &str) -> String {
    const NAMED: &[(&str, &str)] = &[
        ("amp", "&"),
        ("lt", "<"),
        ("gt", ">"),
        ("quot", "\""),
        ("apos", "'"),
        ("nbsp", "\u{A0}"),
        ("colon", ":"),
        ("Tab", "\t"),
        ("NewLine", "\n"),
        ("sol", "/"),
        ("lpar", "("),
        ("rpar", ")"),
        ("semi", ";"),
        ("comma", ","),
        ("period", "."),
        ("num", "#"),
        ("excl", "!"),
        ("equals", "="),
        ("percnt", "%"),
        ("bsol", "\\"),
    ];
    const LEGACY: &[&str] = &["amp", "lt", "gt", "quot", "nbsp"];
    let mut out = String::new();
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp + 1..];
        if let Some(number) = rest.strip_prefix('#') {
            let (radix, digits) = match number.strip_prefix(['x', 'X']) {
                Some(hex) => (16, hex),
                None => (10, number),
            };
            let len = digits
                .find(|c: char| !c.is_digit(radix))
                .unwrap_or(digits.len());
            if len > 0 {
                let code = u32::from_str_radix(&digits[..len], radix).unwrap_or(u32::MAX);
                let c = char::from_u32(code).filter(|&c| c != '\0');
                out.push(c.unwrap_or('\u{FFFD}'));
                rest = &digits[len..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
                continue;
            }
        } else {
            let len = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let (name, after) = rest.split_at(len);
            let decoded = NAMED.iter().find(|(n, _)| *n == name).map(|(_, c)| *c);
            if let Some(c) = decoded.filter(|_| after.starts_with(';')) {
                out.push_str(c);
                rest = &after[1..];
                continue;
            }
            if let Some(c) = decoded.filter(|_| LEGACY.contains(&name) && !after.starts_with('=')) {
                out.push_str(c);
                rest = after;
                continue;
            }
        }
        out.push('&');
    }
    out.push_str(rest);
    out
}

/// Why a URL attribute's (decoded) value is unsafe, if it is.
fn unsafe_url(value: &str) -> Option<&'static str> {
    let compact: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .collect::<String>()
        .to_ascii_lowercase();
    if ["javascript:", "data:", "vbscript:"]
        .iter()
        .any(|scheme| compact.starts_with(scheme))
    {
        return Some("a scheme that runs code");
    }
    // The scheme as the URL parser finds it (edges trimmed, tabs and newlines removed) must be
    // one the app allows; no scheme (a relative URL) is fine.
    let url: String = value
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .collect();
    if let Some((scheme, _)) = url.split_once(':')
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !["http", "https", "mailto"].contains(&scheme.to_ascii_lowercase().as_str())
    {
        return Some("a scheme other than http(s) or mailto");
    }
    None
}

/// Everything executable (or otherwise against the sanitiser's contract) in `html`.
fn violations(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = html.to_lowercase();
    // Plain substring checks first: html5ever escapes `<` in text and attribute values alike,
    // so any of these would be a real tag.
    for needle in [
        "<script", "<iframe", "<object", "<embed", "<style", "<svg", "<img",
    ] {
        if lower.contains(needle) {
            found.push(format!("contains {needle}"));
        }
    }
    for tag in tags(html) {
        if FORBIDDEN_TAGS.contains(&tag.name.as_str()) {
            found.push(format!("element <{}>", tag.name));
        }
        if tag.end {
            continue;
        }
        for (key, value) in &tag.attrs {
            if key.starts_with("on") || key == "style" || key == "srcdoc" {
                found.push(format!("attribute {key}={value:?} on <{}>", tag.name));
            }
            if URL_ATTRIBUTES.contains(&key.as_str())
                && let Some(why) = unsafe_url(value)
            {
                found.push(format!("{key}={value:?} on <{}>: {why}", tag.name));
            }
        }
        if tag.name == "a" {
            let noopener = tag.attrs.iter().any(|(key, value)| {
                key == "rel" && value.split_ascii_whitespace().any(|r| r == "noopener")
            });
            if !noopener {
                found.push(format!("<a> without rel=noopener: {:?}", tag.attrs));
            }
        }
    }
    found
}

/// The final render and every render the page shows while the text streams in (in pieces of
/// `piece` bytes) have nothing executable.
fn check_sanitised(input: &str, piece: usize) -> Result<(), TestCaseError> {
    let html = markdown_to_html(input);
    let found = violations(&html);
    prop_assert!(
        found.is_empty(),
        "{found:?}\ninput: {input:?}\noutput: {html:?}"
    );
    let mut live = LiveHtml::default();
    let mut page = (String::new(), String::new());
    let mut end = 0;
    while end < input.len() {
        end = (end + piece).min(input.len());
        while !input.is_char_boundary(end) {
            end += 1;
        }
        let update = match end == input.len() {
            true => live.finish(input),
            false => live.update(&input[..end]),
        };
        if let Some(update) = update {
            page = update.apply((&page.0, &page.1));
        }
        let shown = format!("{}{}", page.0, page.1);
        let found = violations(&shown);
        prop_assert!(
            found.is_empty(),
            "{found:?}\ninput so far: {:?}\npage: {shown:?}",
            &input[..end]
        );
    }
    Ok(())
}

/// The checker itself must catch what the properties rely on it to catch (or they could not
/// fail).
#[test]
fn the_markup_checker_finds_executable_vectors() {
    let bad = [
        "<script>x</script>",
        "<p><IMG SRC=x></p>",
        "<b title=\"<\" onclick=\"x()\">b</b>",
        "<a href=\"&#106;avascript:alert(1)\" rel=\"noopener\">x</a>",
        "<a href=\"&#x6A;avascript&colon;alert(1)\" rel=\"noopener\">x</a>",
        "<a href=\" java&#9;script:x\" rel=\"noopener\">x</a>",
        "<a href='DATA:text/html,x' rel=noopener>x</a>",
        "<a href=vbscript:x rel=noopener>x</a>",
        "<a href=\"https://ok.example\">no rel</a>",
        "<a rel=\"noreferrer\" href=\"/x\">x</a>",
        "<blockquote cite=\"livescript:x\">q</blockquote>",
        "<x-y style=\"color:red\"></x-y>",
        "<details ontoggle=x>",
    ];
    for html in bad {
        assert!(!violations(html).is_empty(), "not caught: {html}");
    }
    let good = "<p>&lt;script&gt; &lt;img onerror=x&gt;</p><!-- x --><?x>\
        <a href=\"https://ok.example/?q=javascript:x&amp;r\" rel=\"noopener noreferrer nofollow\" \
        title=\"javascript:&quot;&lt;script&gt;\">x</a><pre><code>a &lt; b</code></pre>\
        <a href=\"/relative:x\" rel=\"noopener\">r</a><input type=\"checkbox\" disabled=\"\">";
    assert_eq!(violations(good), Vec::<String>::new());
}

proptest! {
    #![proptest_config(config(1000))]

    /// Attack-heavy input: nothing executable comes out.
    #[test]
    fn sanitiser_output_has_nothing_executable_for_attacks(input in attack(), piece in 1usize..24) {
        check_sanitised(&input, piece)?;
    }
}

/// Every alphanumeric char of any script (picked from, rather than filtered for: filtering
/// `any::<char>()` rejects too often).
fn all_alphanumerics() -> Vec<char> {
    ('\0'..=char::MAX).filter(|c| c.is_alphanumeric()).collect()
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary strings: nothing executable comes out.
    #[test]
    fn sanitiser_output_has_nothing_executable_for_any_text(
        input in prop_oneof![any::<String>(), "[<>&\"'=/a-z:!\\[\\]()`$\\\\{} \n-]{0,80}"],
        piece in 1usize..24,
    ) {
        check_sanitised(&input, piece)?;
    }

    /// Text without markdown or HTML specials is shown as written.
    #[test]
    fn plain_text_appears_verbatim(
        chars in prop::collection::vec(
            prop_oneof![
                3 => prop::char::range('a', 'z'),
                1 => prop::char::range('0', '9'),
                2 => Just(' '),
                2 => prop::sample::select(all_alphanumerics()),
            ],
            0..60,
        )
    ) {
        let text: String = chars.into_iter().collect();
        let html = markdown_to_html(&text);
        prop_assert!(html.contains(text.trim()), "{text:?} -> {html:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. escape_html
// ---------------------------------------------------------------------------------------------

/// The inverse of `escape_html`, strict: every `&` must start one of the references it writes.
fn unescape_strict(escaped: &str) -> Option<String> {
    const REFERENCES: [(&str, char); 6] = [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#39;", '\''),
        ("&#13;", '\r'),
    ];
    let mut out = String::new();
    let mut rest = escaped;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let (reference, c) = REFERENCES.iter().find(|(r, _)| rest.starts_with(r))?;
        out.push(*c);
        rest = &rest[reference.len()..];
    }
    out.push_str(rest);
    Some(out)
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn escape_html_is_markup_free_and_lossless(
        text in prop_oneof![any::<String>(), "([<>&\"'\r\n;#a-z0-9 ]|&amp;|&#39;|&lt;|&#13;){0,40}"]
    ) {
        let escaped = escape_html(&text);
        prop_assert!(
            !escaped.contains(['<', '>', '"', '\'', '\r']),
            "{text:?} -> {escaped:?}"
        );
        let unescaped = unescape_strict(&escaped);
        prop_assert_eq!(
            unescaped.as_deref(),
            Some(text.as_str()),
            "bare & or wrong inverse in {:?}",
            escaped
        );
        // The helper the stream tests decode with agrees.
        prop_assert_eq!(unescape_html(&escaped), text);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Streaming through the real app
// ---------------------------------------------------------------------------------------------

/// One runtime for all cases (proptest bodies are synchronous).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn model_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => prop::char::range(' ', '~'),
        3 => prop::sample::select(vec![
            '<', '>', '&', '"', '\'', '\r', '\n', '\t', ' ', ';', '#', '\0',
        ]),
        2 => prop::sample::select(vec![
            'é', '漢', '字', '🎉', '👍', '\u{1F3FD}', '\u{200D}', '\u{FFFD}', '\u{2028}',
            '\u{FEFF}', '\u{85}', '\u{7F}', '\u{B}', '\u{C}', '\u{1B}',
        ]),
        1 => any::<char>(),
    ]
}

/// What the model writes, cut at char boundaries into 1..=40 pieces (some may be empty).
fn model_output() -> impl Strategy<Value = Vec<String>> {
    (
        prop::collection::vec(model_char(), 1..80),
        prop::collection::vec(any::<Index>(), 0..40),
    )
        .prop_map(|(chars, cuts)| {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(chars.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([chars.len()]) {
                pieces.push(chars[start..cut].iter().collect());
                start = cut;
            }
            pieces
        })
}

/// Token events starting at byte offset `from` of `text`: together they are exactly the rest of
/// the text, and each one's id is the byte offset after it.
fn assert_tokens(events: &[Event], from: usize, text: &str, what: &str) {
    let mut offset = from;
    for event in events.iter().filter(|e| e.event == "delta") {
        let piece = unescape_token(&event.data);
        assert!(!piece.is_empty(), "{what}: empty token event");
        offset += piece.len();
        assert_eq!(
            event.id,
            offset.to_string(),
            "{what}: id of {:?}",
            event.data
        );
    }
    assert_eq!(token_text(events), text[from..], "{what}: token text");
}

/// The events of a live stream until its token text is `len` bytes long. The text is already
/// all there, so a missing event fails the case within 2 s (not the reader's 10 s, which would
/// make shrinking slow). For `len` 0, whatever comes within 100 ms.
async fn read_tokens(reader: &mut EventReader, len: usize) -> Vec<Event> {
    let mut events = Vec::new();
    let wait = Duration::from_millis(if len == 0 { 100 } else { 2000 });
    while len == 0 || token_text(&events).len() < len {
        match tokio::time::timeout(wait, reader.next()).await {
            Ok(Some(event)) => events.push(event),
            _ => break,
        }
    }
    events
}

async fn stream_round_trip(pieces: Vec<String>, extra_offset: Index) {
    // NUL from the model is kept as U+FFFD (PostgreSQL cannot store NUL).
    let expected = pieces.concat().replace('\0', "\u{FFFD}");
    let app = TestApp::spawn_with(|c| {
        // One generation at a time: reply B below waits, registered and live, until reply A is
        // stopped, so B's stream sees all of its text as tokens without any timing luck.
        c.max_concurrent_generations = 1;
        c.max_streams_per_session = 1000;
    })
    .await;
    let stream_url = |_chat, reply| app.url(&format!("/api/v1/messages/{reply}/stream"));

    // Reply A: the model sends every piece, then goes silent, so A stays live at its full text
    // and can be resumed from any offset.
    let mut then_silent = pieces.clone();
    then_silent.push("never sent".into());
    app.fake_lm.set(|k| {
        k.tokens = then_silent;
        k.hang_after = Some(pieces.len());
    });
    let chat_a = app.create_chat(&app.client, "").await;
    let reply_a = app.send(&app.client, chat_a, "a").await;
    let url_a = stream_url(chat_a, reply_a);
    let (status, _, reader) = EventReader::open(&app.client, &url_a, None).await;
    assert_eq!(status, 200);
    let seen = read_tokens(&mut reader.expect("stream"), expected.len()).await;
    assert_tokens(&seen, 0, &expected, "reply A");

    let mut offsets: Vec<usize> = seen
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| e.id.parse().expect("numeric id"))
        .collect();
    // Also an arbitrary offset: one that is no char boundary (or past the end) replays all.
    offsets.push(extra_offset.index(expected.len() + 3));
    for offset in offsets {
        let from = if expected.is_char_boundary(offset) {
            offset
        } else {
            0
        };
        let id = offset.to_string();
        let (_, _, reader) = EventReader::open(&app.client, &url_a, Some(&id)).await;
        let events = read_tokens(&mut reader.expect("stream"), expected.len() - from).await;
        assert_tokens(
            &events,
            from,
            &expected,
            &format!("resumed at Last-Event-ID {id}"),
        );
    }

    // Reply B: queued behind A, then streamed to the end once A is stopped.
    app.fake_lm.set(|k| {
        k.tokens = pieces.clone();
        k.hang_after = None;
        k.token_delay = Duration::from_millis(1);
    });
    let chat_b = app.create_chat(&app.client, "").await;
    let reply_b = app.send(&app.client, chat_b, "b").await;
    let (_, _, reader_b) = EventReader::open(&app.client, &stream_url(chat_b, reply_b), None).await;
    let stop = app
        .post_htmx(&format!("/chats/{chat_a}/messages/{reply_a}/stop"), &[])
        .await;
    assert_eq!(stop.status(), 204);
    let saved_a = app.finished(reply_a).await;
    assert_eq!(saved_a.status, Status::Stopped);
    assert_eq!(saved_a.content, expected, "reply A as saved");

    let events = reader_b.expect("stream").all().await;
    assert_tokens(&events, 0, &expected, "reply B");
    let done = events.last().expect("events");
    assert_eq!(done.event, "done");
    assert_eq!(done.id, expected.len().to_string(), "done's id");
    let saved_b = app.finished(reply_b).await;
    assert_eq!(saved_b.status, Status::Complete);
    assert_eq!(saved_b.content, expected, "reply B as saved");
    app.stop().await;
}

proptest! {
    #![proptest_config(ProptestConfig { max_shrink_iters: 200, ..config(24) })]

    /// Any model text streams, resumes and is saved exactly.
    #[test]
    fn streamed_resumed_and_saved_text_is_exactly_the_models(
        pieces in model_output(),
        extra_offset in any::<Index>(),
    ) {
        runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(30), stream_round_trip(pieces, extra_offset))
                .await
                .expect("case finished within 30 s");
        });
    }
}
