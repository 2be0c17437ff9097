//! The JSON API as a script uses it: a bearer token, JSON calls, a reply's JSON events.
use std::time::Duration;

use serde_json::Value;

use super::TestApp;

/// A client without a cookie jar that sends `Authorization: Bearer`.
pub struct ApiClient {
    http: reqwest::Client,
    pub token: String,
    base: String,
}

impl ApiClient {
    pub async fn new(app: &TestApp) -> ApiClient {
        let http = reqwest::Client::new();
        let response = http.post(app.url("/api/v1/tokens")).send().await.unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        ApiClient {
            http,
            token: body["token"].as_str().unwrap().to_owned(),
            base: app.base.clone(),
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if status >= 400 {
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(content_type, "application/problem+json", "{path}");
        }
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The reply's JSON events until `done`.
    pub async fn stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Vec<(String, Option<String>, Value)> {
        let mut request = self.request(reqwest::Method::GET, path);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        use eventsource_stream::Eventsource;
        use futures::StreamExt;
        let mut events = response.bytes_stream().eventsource();
        let mut seen = Vec::new();
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_secs(10), events.next()).await
        {
            let event = event.unwrap();
            let data: Value = serde_json::from_str(&event.data).unwrap();
            let done = event.event == "done";
            seen.push((
                event.event,
                (!event.id.is_empty()).then_some(event.id),
                data,
            ));
            if done {
                break;
            }
        }
        seen
    }
}
