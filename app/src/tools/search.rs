//! `web_search`: results from the operator's SearXNG server (`SEARXNG_URL`), through its JSON
//! API (`/search?q=…&format=json`, which the server's settings must allow). The operator chose
//! that server, so it may be on a private network; its answer is bounded like a fetch's.
use std::time::Duration;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ToolOutput, string_argument};
use crate::lm::ToolDefinition;

pub(super) const NAME: &str = "web_search";

/// Results given to the model.
const MAX_RESULTS: usize = 8;
/// Most bytes of SearXNG's answer read.
const MAX_BYTES: usize = 1024 * 1024;

pub(super) fn definition() -> ToolDefinition {
    ToolDefinition {
        name: NAME.into(),
        description: "Search the web. Returns the top results: title, address and a snippet."
            .into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "What to search for"},
            },
            "required": ["query"],
        }),
    }
}

pub(super) struct Search {
    http: reqwest::Client,
    endpoint: url::Url,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<Hit>,
}

#[derive(Deserialize)]
struct Hit {
    #[serde(default)]
    title: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    content: String,
}

impl Search {
    pub(super) fn new(base: url::Url) -> anyhow::Result<Self> {
        let endpoint = base.join("search")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, endpoint })
    }

    pub(super) async fn call(&self, arguments: &Map<String, Value>) -> ToolOutput {
        let query = match string_argument(arguments, NAME, "query") {
            Ok(query) => query,
            Err(missing) => return missing,
        };
        match self.search(query).await {
            Ok(text) => ToolOutput::ok(text),
            Err(why) => ToolOutput::error(format!("The search for {query:?} failed: {why}.")),
        }
    }

    async fn search(&self, query: &str) -> Result<String, String> {
        let response = self
            .http
            .get(self.endpoint.clone())
            .query(&[("q", query), ("format", "json")])
            .send()
            .await
            .map_err(|e| format!("the search server is not reachable ({e})"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!(
                "the search server answered HTTP {} (is its JSON format enabled?)",
                status.as_u16()
            ));
        }
        let mut body = Vec::new();
        let mut chunks = response.bytes_stream();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| format!("its answer broke off ({e})"))?;
            if body.len() + chunk.len() > MAX_BYTES {
                return Err("its answer was too large".into());
            }
            body.extend_from_slice(&chunk);
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| format!("its answer could not be read ({e})"))?;
        if answer.results.is_empty() {
            return Ok(format!("No results for {query:?}."));
        }
        let mut text = format!("Results for {query:?}:\n");
        for (i, hit) in answer.results.iter().take(MAX_RESULTS).enumerate() {
            text.push_str(&format!(
                "\n{}. {}\n   {}\n   {}\n",
                i + 1,
                hit.title.trim(),
                hit.url.trim(),
                hit.content.trim()
            ));
        }
        Ok(text)
    }
}
