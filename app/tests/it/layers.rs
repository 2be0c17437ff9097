//! The layers of ARCHITECTURE.md, held as imports: a module of `app/src` may use the modules of
//! its own layer and the layers below, never one above. (Loops within a layer are the
//! `imports.py` hook's to find.) The source is read as text: `crate::name` paths and the names
//! a `use crate::{…}` lists, outside comments and test modules.
use std::{collections::BTreeSet, path::Path};

/// Each top-level module of `app/src` and its layer, top (routes) to bottom (domain). A new
/// module is placed here, or the test fails.
const LAYERS: &[(&str, &[&str])] = &[
    ("the assembly", &["config", "routes", "server", "telemetry"]),
    ("use cases", &["chat"]),
    (
        "who asks, and a reply's life",
        &["accounts", "operator", "session", "stream", "generation"],
    ),
    (
        "the model, tools, rendering, limits",
        &[
            "engine",
            "embedded",
            "lm",
            "tools",
            "hub",
            "render",
            "page_cache",
            "limits",
            "metrics",
        ],
    ),
    ("the database", &["store", "live"]),
    (
        "files and assets",
        &["attachments", "pdf_text", "assets", "highlight"],
    ),
    ("values and errors", &["domain", "error"]),
];

/// The layer of a module: 0 is the top.
fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The crate's modules a file's code names.
fn modules_used(source: &str) -> Vec<String> {
    let code: String = source
        .split("#[cfg(test)]")
        .next()
        .unwrap_or_default()
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            // `use crate::{a::X, b::{Y, Z}, c}`: the first name of each top-level item.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in list.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => {
                        let name: String = list[i..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        used.push(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            used.push(name);
        }
    }
    used
}

/// Every use of a module of a higher layer, as `file: uses module (layer)`.
fn upward_uses(files: &[(String, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, source) in files {
        let module = path
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs");
        let Some(own) = layer_of(module) else {
            continue;
        };
        for used in modules_used(source) {
            if let Some(theirs) = layer_of(&used)
                && theirs < own
            {
                found.push(format!(
                    "{path} ({}) uses `{used}` ({})",
                    LAYERS[own].0, LAYERS[theirs].0
                ));
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `app/src`'s files (paths relative to it) with their text.
fn app_sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, files: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("app/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).expect("under app/src");
                let text = std::fs::read_to_string(&path).expect("a source file");
                files.push((relative.to_string_lossy().replace('\\', "/"), text));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    files
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let files = app_sources();
    let mut unplaced = BTreeSet::new();
    for (path, _) in &files {
        let module = path
            .split('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".rs");
        if !matches!(module, "lib" | "main") && layer_of(module).is_none() {
            unplaced.insert(module.to_owned());
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (place them in LAYERS, app/tests/it/layers.rs, and in ARCHITECTURE.md): {:?}",
        unplaced
    );
    let upward = upward_uses(&files);
    assert!(
        upward.is_empty(),
        "a lower layer uses a higher one (move the shared piece down):\n{}",
        upward.join("\n")
    );
}

#[test]
fn an_upward_use_is_found_in_paths_and_in_use_lists() {
    let files = vec![
        (
            "store/chats.rs".to_owned(),
            "use crate::{domain::SessionId, routes::{render, Htmx}};\n".to_owned(),
        ),
        (
            "domain.rs".to_owned(),
            "// crate::chat in a comment is not a use\nfn f() { crate::session::x(); }\n#[cfg(test)]\nmod tests { use crate::routes; }\n".to_owned(),
        ),
        (
            "routes/mod.rs".to_owned(),
            "use crate::{chat, store::Store};\n".to_owned(),
        ),
    ];
    assert_eq!(
        upward_uses(&files),
        vec![
            "domain.rs (values and errors) uses `session` (who asks, and a reply's life)",
            "store/chats.rs (the database) uses `routes` (the assembly)",
        ]
    );
}
