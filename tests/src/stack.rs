//! The local stack over HTTP (`cargo lambda watch`, started by scripts/test, which sets
//! NODEAI_E2E_URL and TABLE_NAME), for the end-to-end and crash tests.

use nodeai::store::dynamo::DynamoStore;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

pub struct Stack {
    pub base: String,
    pub key: String,
    pub http: Client,
}

impl Stack {
    pub async fn start() -> Stack {
        let base = std::env::var("NODEAI_E2E_URL").expect("NODEAI_E2E_URL: run through scripts/test");
        assert!(base.starts_with("http://127.0.0.1:"), "end-to-end tests only call loopback: {base}");
        let table = std::env::var("TABLE_NAME").expect("TABLE_NAME: run through scripts/test");
        let store = DynamoStore::new(crate::dynamo_client().await, table);
        let (_, key) = nodeai::auth::provision_tenant(&store, "e2e", "free", None).await.expect("provision");
        let http = Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        Stack { base, key, http }
    }

    /// Polls an execution until it is no longer queued or running (bounded: the poller and the
    /// worker may compile on first use) and returns its last reading.
    pub async fn finished(&self, execution_id: &str) -> Value {
        let mut last = Value::Null;
        for _ in 0..120 {
            let (_, _, body) = self.send(Method::GET, &format!("/v1/executions/{execution_id}"), None, true).await;
            last = body;
            if !matches!(last["status"].as_str(), Some("queued" | "running")) {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        last
    }

    /// Polls an execution until `done` holds for its reading (at most `seconds`), and returns
    /// that reading; panics with the last one otherwise.
    pub async fn until(&self, execution_id: &str, seconds: u64, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..seconds * 2 {
            let (_, _, body) = self.send(Method::GET, &format!("/v1/executions/{execution_id}"), None, true).await;
            last = body;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("execution {execution_id} never got there: {last}")
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        with_key: bool,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if with_key {
            request = request.bearer_auth(&self.key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the local stack answers");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, headers, body)
    }

    /// Opens an execution's events stream (`Last-Event-ID: after` when given).
    pub async fn events(&self, execution_id: &str, after: Option<&str>) -> EventStream {
        let mut request =
            self.http.get(format!("{}/v1/executions/{execution_id}/events", self.base)).bearer_auth(&self.key);
        if let Some(after) = after {
            request = request.header("last-event-id", after);
        }
        let response = request.send().await.expect("the local stack answers");
        EventStream { response, buffer: Vec::new() }
    }
}

/// One server-sent event as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: String,
    pub kind: String,
    pub data: Value,
}

/// An open `text/event-stream` response, read frame by frame as it arrives.
pub struct EventStream {
    pub response: reqwest::Response,
    /// Bytes read and not yet a whole frame (a chunk may end inside a character).
    buffer: Vec<u8>,
}

impl EventStream {
    /// The next event (comments and `retry:` skipped); None once the stream has ended.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let frame = String::from_utf8(frame).expect("UTF-8 events");
                let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.to_string();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).expect("event data is one JSON line");
                    return Some(SseEvent { id, kind, data });
                }
            }
            let chunk = self.response.chunk().await.expect("the stream reads")?;
            self.buffer.extend_from_slice(&chunk);
        }
    }

    /// Every remaining event until the stream ends.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let mut all = Vec::new();
        while let Some(event) = self.next().await {
            all.push(event);
        }
        all
    }
}
