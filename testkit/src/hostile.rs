//! Pathological markdown, as an attacker would write it to stall the renderer: each kind of a
//! given size, for the app's tests (bounds hold) and the bench (`render`: how long each takes).

/// `(kind, text)` for every kind, each about `bytes` long.
pub fn markdown_corpus(bytes: usize) -> Vec<(&'static str, String)> {
    let fill = |unit: &str| unit.repeat(bytes / unit.len().max(1));
    let lists: String = {
        let mut text = String::new();
        let mut depth = 0;
        while text.len() < bytes {
            text.push_str(&"  ".repeat(depth));
            text.push_str("- item\n");
            depth += 1;
        }
        text
    };
    let table = {
        // A wide header makes each following one-cell row as wide.
        let columns = bytes / 8;
        let mut text = format!("{}|\n{}|\n", "|a".repeat(columns), "|-".repeat(columns));
        while text.len() < bytes {
            text.push_str("x\n");
        }
        text
    };
    let code = format!(
        "```rust\n{}```\n",
        fill("fn f(x: &str) -> u8 { x.len() as u8 } // \"s\"\n")
    );
    vec![
        ("quotes", fill(">")),
        ("quotes_text", fill("> ") + "x"),
        ("lists", lists),
        ("list_markers", fill("- ")),
        ("emphasis", fill("*a ")),
        ("emphasis_mixed", fill("**_")),
        ("emphasis_open", fill("*_~") + &fill("a")),
        ("brackets", fill("[")),
        ("links", fill("[a](https://e.example/x) ")),
        ("table", table),
        ("line", fill("x")),
        ("code", code),
        ("html", fill("<div>")),
    ]
}
