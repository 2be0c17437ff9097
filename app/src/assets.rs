//! The templates and static files, built into the binary so that it runs from any directory
//! (`cargo install`, a container). `TEMPLATE_DIR` and `STATIC_DIR` read them from disk instead,
//! for development.
use axum::{
    extract::Path,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use include_dir::{Dir, File, include_dir};

pub static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../templates");
pub static STATIC: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../static");

/// Every file under `dir`, at any depth.
pub fn files(dir: &'static Dir<'static>) -> Vec<&'static File<'static>> {
    let mut found = Vec::new();
    let mut stack = vec![dir];
    while let Some(dir) = stack.pop() {
        found.extend(dir.files());
        stack.extend(dir.dirs());
    }
    found
}

/// `GET /static/{*path}` from the built-in files, with an ETag so that a browser revalidates
/// cheaply after `max-age` (set by the router).
pub async fn serve_static(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let Some(file) = STATIC.get_file(&path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{:016x}\"", fnv1a(file.contents()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let etag = HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"0\""));
    if fresh {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            ),
            (header::ETAG, etag),
        ],
        file.contents(),
    )
        .into_response()
}

/// The media type of the file kinds under `static/`.
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("html") => "text/html; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("txt" | "md") | None => "text/plain; charset=utf-8",
        Some(_) => "application/octet-stream",
    }
}

/// A content hash for ETags (not for security: the files are ours).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_carries_the_templates_and_static_files() {
        assert!(TEMPLATES.get_file("chat.html").is_some());
        assert!(TEMPLATES.get_file("fragments/message.html").is_some());
        assert!(STATIC.get_file("htmx-2.0.11.min.js").is_some());
        assert!(STATIC.get_file("api-docs/swagger-ui.css").is_some());
        assert!(files(&TEMPLATES).len() >= 10);
        assert_eq!(content_type("app.css"), "text/css; charset=utf-8");
        assert_eq!(
            content_type("htmx.min.js"),
            "text/javascript; charset=utf-8"
        );
    }
}
