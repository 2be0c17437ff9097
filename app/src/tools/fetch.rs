//! `fetch_url`: the readable text of a web page, for the model. http and https only, public
//! addresses only however written and after every redirect (`addresses`), at most
//! [`MAX_BYTES`] read, HTML turned into text off the async workers (never HTML to the model).
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::{
    ToolOutput,
    addresses::{FetchPolicy, PublicOnly, redirect_policy},
    string_argument,
};
use crate::lm::ToolDefinition;

pub(super) const NAME: &str = "fetch_url";

/// Most bytes of a page read; the rest is not downloaded.
const MAX_BYTES: usize = 2 * 1024 * 1024;
/// Redirects followed, each checked.
const MAX_REDIRECTS: usize = 5;
/// Columns of the text HTML becomes (long lines are wrapped there).
const TEXT_WIDTH: usize = 100;

pub(super) fn definition() -> ToolDefinition {
    ToolDefinition {
        name: NAME.into(),
        description: "Fetch a web page (http or https) and return its readable text.".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "url": {"type": "string", "description": "The page's full address, e.g. https://example.com/page"},
            },
            "required": ["url"],
        }),
    }
}

pub(super) struct Fetcher {
    http: reqwest::Client,
    policy: FetchPolicy,
}

impl Fetcher {
    pub(super) fn new(policy: FetchPolicy) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .dns_resolver(PublicOnly {
                policy: policy.clone(),
            })
            .redirect(redirect_policy(MAX_REDIRECTS, policy.clone()))
            // A proxy would resolve names itself, past the checks above.
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "chat-app/",
                env!("CARGO_PKG_VERSION"),
                " (fetch_url)"
            ))
            .build()?;
        Ok(Self { http, policy })
    }

    pub(super) async fn call(&self, arguments: &Map<String, Value>) -> ToolOutput {
        let address = match string_argument(arguments, NAME, "url") {
            Ok(address) => address,
            Err(missing) => return missing,
        };
        let url = match url::Url::parse(address) {
            Ok(url) => url,
            Err(e) => return ToolOutput::error(format!("{address:?} is not a web address ({e}).")),
        };
        if let Err(why) = self.policy.check(&url) {
            return ToolOutput::error(format!("{url} was not fetched: {why}."));
        }
        match self.fetch(url.clone()).await {
            Ok(output) => output,
            Err(why) => ToolOutput::error(format!("{url} could not be fetched: {why}.")),
        }
    }

    async fn fetch(&self, url: url::Url) -> Result<ToolOutput, String> {
        let response = self
            .http
            .get(url)
            .header(
                reqwest::header::ACCEPT,
                "text/html, text/plain;q=0.9, application/json;q=0.8, */*;q=0.1",
            )
            .send()
            .await
            .map_err(|e| crate::error::chain(&e))?;
        let status = response.status();
        let final_url = response.url().clone();
        let media_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        let kind = match media_type.as_str() {
            "text/html" | "application/xhtml+xml" | "" => Kind::Html,
            t if t.starts_with("text/") || t.ends_with("json") || t.ends_with("xml") => Kind::Text,
            other => {
                return Err(format!(
                    "it is {other}, not a page of text (only web pages and text are read)"
                ));
            }
        };
        let (body, truncated) = read_bounded(response).await?;
        let text = match kind {
            // html2text's parser is linear, but a page of megabytes still takes a while.
            Kind::Html => tokio::task::spawn_blocking(move || {
                html2text::from_read(body.as_slice(), TEXT_WIDTH)
                    .map_err(|e| format!("its HTML could not be read ({e})"))
            })
            .await
            .map_err(|e| format!("reading it failed ({e})"))??,
            Kind::Text => String::from_utf8_lossy(&body).into_owned(),
        };
        let mut header = format!("{final_url} (HTTP {})", status.as_u16());
        if truncated {
            header.push_str(&format!(
                ", only its first {} read",
                crate::domain::size(MAX_BYTES)
            ));
        }
        let output = format!("{header}\n\n{}", text.trim());
        Ok(match status.is_success() {
            true => ToolOutput::ok(output),
            false => ToolOutput::error(output),
        })
    }
}

enum Kind {
    Html,
    Text,
}

/// The body's first [`MAX_BYTES`], and whether there was more.
async fn read_bounded(response: reqwest::Response) -> Result<(Vec<u8>, bool), String> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| crate::error::chain(&e))?;
        let room = MAX_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        },
    };

    use axum::{Router, response::Redirect, routing::get};

    use super::*;

    /// Serves `app` on `ip`, counting requests.
    async fn serve(ip: Ipv4Addr, app: Router) -> (u16, Arc<AtomicUsize>) {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = app.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let counted = counted.clone();
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    next.run(request).await
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("a port");
        let port = listener.local_addr().expect("an address").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (port, hits)
    }

    #[tokio::test]
    async fn a_redirect_from_a_public_page_to_this_machine_is_refused_however_written() {
        // 127.0.0.1 stands in for a public server; 127.0.0.2 is this machine's, and refused.
        let (inside, inside_hits) = serve(
            Ipv4Addr::new(127, 0, 0, 2),
            Router::new().route("/secret", get(|| async { "the router's admin page" })),
        )
        .await;
        let targets = [
            format!("http://127.0.0.2:{inside}/secret"),
            format!("http://2130706434:{inside}/secret"),
            format!("http://[::ffff:127.0.0.2]:{inside}/secret"),
            format!("http://0x7f000002:{inside}/secret"),
        ];
        let redirects = targets.clone();
        let (outside, _) = serve(
            Ipv4Addr::LOCALHOST,
            Router::new()
                .route(
                    "/go/{n}",
                    get(move |axum::extract::Path(n): axum::extract::Path<usize>| {
                        let target = redirects[n].clone();
                        async move { Redirect::temporary(&target) }
                    }),
                )
                .route(
                    "/page",
                    get(|| async {
                        axum::response::Html("<h1>Hello</h1><p>A <b>bold</b> claim.</p>")
                    }),
                ),
        )
        .await;
        let fetcher = Fetcher::new(FetchPolicy {
            allow_private: false,
            exempt: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        })
        .expect("a fetcher");
        let call = |url: String| {
            let mut arguments = Map::new();
            arguments.insert("url".into(), url.into());
            arguments
        };
        let page = fetcher
            .call(&call(format!("http://127.0.0.1:{outside}/page")))
            .await;
        assert!(!page.is_error, "{page:?}");
        assert!(
            page.text.contains("Hello") && page.text.contains("bold"),
            "{page:?}"
        );
        assert!(!page.text.contains("<b>"), "{page:?}");
        for (n, target) in targets.iter().enumerate() {
            let refused = fetcher
                .call(&call(format!("http://127.0.0.1:{outside}/go/{n}")))
                .await;
            assert!(refused.is_error, "{target}: {refused:?}");
            assert!(
                refused.text.contains("FETCH_ALLOW_PRIVATE"),
                "{target}: {refused:?}"
            );
        }
        assert_eq!(inside_hits.load(Ordering::SeqCst), 0);
        // The operator's choice: allowed, the same redirect is followed.
        let open = Fetcher::new(FetchPolicy {
            allow_private: true,
            exempt: Vec::new(),
        })
        .expect("a fetcher");
        let followed = open
            .call(&call(format!("http://127.0.0.1:{outside}/go/0")))
            .await;
        assert!(
            followed.text.contains("the router's admin page"),
            "{followed:?}"
        );
    }
}
