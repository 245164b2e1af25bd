//! Every outbound call a node makes (http.request, llm.chat) goes through `send`: the SSRF guard
//! (only http(s), public addresses unless allow-listed, connection pinned to the vetted address,
//! no redirects), the tenant's circuit breaker for that host, and a cap on the response size.

use super::http_guard::vet;
use super::{NodeFailure, NodeRuntime};
use crate::model::StepErrorCode;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub enum OutboundBody {
    None,
    Text(String),
    Json(Value),
}

pub struct OutboundRequest {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: OutboundBody,
    /// The whole request's time limit (the node's `timeout_ms`, a little less, so the request
    /// fails as a timeout the breaker records before the engine abandons the node).
    pub timeout: Option<Duration>,
}

/// The request time limit for a node with `timeout_ms`: 90 % of it.
pub fn request_timeout(timeout_ms: Option<u64>) -> Option<Duration> {
    timeout_ms.map(|ms| Duration::from_millis(ms.saturating_mul(9) / 10))
}

pub struct OutboundResponse {
    /// The host called, for messages (never the URL: its query may hold secrets).
    pub host: String,
    pub status: u16,
    pub headers: Map<String, Value>,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl OutboundResponse {
    fn content_type_has(&self, part: &str) -> bool {
        self.headers.get("content-type").and_then(Value::as_str).is_some_and(|ct| ct.contains(part))
    }

    pub fn is_event_stream(&self) -> bool {
        self.content_type_has("text/event-stream")
    }

    pub fn is_json(&self) -> bool {
        self.content_type_has("json")
    }

    /// The body as text, decoded per the `charset` its Content-Type declares (WHATWG Encoding
    /// labels, so `iso-8859-1` reads as windows-1252 as browsers do); UTF-8 when none is declared
    /// or the label is unknown. A byte-order mark wins over the label (WHATWG "decode").
    /// Undecodable bytes become U+FFFD.
    pub fn text(&self) -> String {
        let declared = self
            .headers
            .get("content-type")
            .and_then(Value::as_str)
            .and_then(|ct| {
                ct.split(';').skip(1).find_map(|p| {
                    let (name, value) = p.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("charset").then(|| value.trim().trim_matches('"').to_string())
                })
            })
            .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()))
            .unwrap_or(encoding_rs::UTF_8);
        declared.decode(&self.body).0.into_owned()
    }

    /// The body parsed as JSON (decoded per its charset first), if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.text()).ok()
    }

    /// The failure for a status of 400 or more, coded `<prefix>_<status>`: 408, 429 and 5xx are
    /// retryable (honouring `Retry-After`), other 4xx are not.
    pub fn status_failure(&self, family: StepErrorCode) -> Option<NodeFailure> {
        (self.status >= 400).then(|| NodeFailure {
            code: family.with_status(self.status),
            message: format!("'{}' answered {}", self.host, self.status),
            retryable: is_provider_trouble(self.status),
            retry_after: self.retry_after,
            ..Default::default()
        })
    }
}

fn is_provider_trouble(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

pub async fn send(
    runtime: &NodeRuntime,
    tenant_id: &str,
    request: OutboundRequest,
) -> Result<OutboundResponse, NodeFailure> {
    send_observed(runtime, tenant_id, request, None).await
}

/// Sees each chunk of a response body as it arrives.
pub type ChunkObserver<'a> = dyn FnMut(&[u8]) + Send + 'a;

/// `send`, handing each chunk of the body to `on_chunk` as it arrives (a streamed model answer)
/// while still collecting the whole body under the same limits.
pub async fn send_observed(
    runtime: &NodeRuntime,
    tenant_id: &str,
    request: OutboundRequest,
    on_chunk: Option<&mut ChunkObserver<'_>>,
) -> Result<OutboundResponse, NodeFailure> {
    let (host, address) = vet(&request.url, &runtime.allowed_private_hosts).await?;
    let permit = runtime.breakers.admit(tenant_id, &host)?;
    let result = call(runtime, &host, address, request, on_chunk).await;
    let provider_failed = match &result {
        Ok(response) => is_provider_trouble(response.status),
        Err(failure) => failure.retryable,
    };
    permit.record(provider_failed);
    result
}

/// HTTP clients kept for the warm instance, one per (host, vetted address): a node calling the
/// same provider again reuses the open connection instead of paying a new TCP and TLS handshake.
/// Each client resolves only its own host, to the address the SSRF guard checked, and is used
/// only for that host, so reuse cannot reach an address that was not vetted.
#[derive(Default)]
pub struct ClientPool {
    clients: std::sync::Mutex<HashMap<(String, SocketAddr), reqwest::Client>>,
}

/// Enough for the providers and APIs one instance talks to; past it the pool starts over rather
/// than grow without bound (a workflow calling many hosts).
const MAX_POOLED_CLIENTS: usize = 64;

impl ClientPool {
    fn client(&self, host: &str, address: SocketAddr) -> Result<reqwest::Client, NodeFailure> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let key = (host.to_string(), address);
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from HTTP_PROXY/HTTPS_PROXY would connect on our behalf to whatever the URL
            // names, around the address pinned below: never use one.
            .no_proxy()
            .resolve(host, address)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| NodeFailure::permanent(StepErrorCode::HttpClientError, e.to_string()))?;
        if clients.len() >= MAX_POOLED_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// `Retry-After` in either form RFC 9110 §10.2.3 allows: delay-seconds, or an HTTP-date (any
/// of the three date formats of §5.6.7), read as the time left until then (zero if past). The
/// engine caps what it waits.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

async fn call(
    runtime: &NodeRuntime,
    host: &str,
    address: SocketAddr,
    request: OutboundRequest,
    mut on_chunk: Option<&mut ChunkObserver<'_>>,
) -> Result<OutboundResponse, NodeFailure> {
    let client = runtime.clients.client(host, address)?;
    let mut builder = client.request(request.method, request.url);
    if let Some(timeout) = request.timeout {
        builder = builder.timeout(timeout);
    }
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder = match request.body {
        OutboundBody::None => builder,
        OutboundBody::Text(text) => builder.body(text),
        OutboundBody::Json(json) => builder.json(&json),
    };
    let mut response = builder.send().await.map_err(|e| {
        let message = format!("the request to '{host}' failed");
        if e.is_builder() {
            NodeFailure::permanent(StepErrorCode::HttpInvalidRequest, message)
        } else if e.is_timeout() {
            NodeFailure::retryable(StepErrorCode::HttpTimeout, message)
        } else {
            NodeFailure::retryable(StepErrorCode::HttpConnectionFailed, message)
        }
    })?;
    let status = response.status().as_u16();
    let headers: Map<String, Value> = response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.to_str().unwrap_or_default().to_string())))
        .collect();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| NodeFailure::retryable(StepErrorCode::HttpConnectionFailed, "the response was cut off"))?
    {
        if body.len() + chunk.len() > runtime.max_response_bytes {
            return Err(NodeFailure::permanent(
                StepErrorCode::HttpResponseTooLarge,
                format!("the response is over {} bytes", runtime.max_response_bytes),
            ));
        }
        if let Some(observe) = on_chunk.as_deref_mut() {
            observe(&chunk);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(OutboundResponse { host: host.to_string(), status, headers, retry_after, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A keep-alive HTTP/1.1 server on loopback that counts the connections it accepts.
    async fn counting_server() -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    // One GET per read is enough for these requests (no bodies).
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if socket.write_all(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn get(url: &str) -> OutboundRequest {
        OutboundRequest {
            method: reqwest::Method::GET,
            url: url.parse().unwrap(),
            headers: Vec::new(),
            body: OutboundBody::None,
            timeout: None,
        }
    }

    #[tokio::test]
    async fn calls_to_one_host_reuse_the_connection() {
        let (url, accepted) = counting_server().await;
        let runtime = NodeRuntime { allowed_private_hosts: vec!["127.0.0.1".into()], ..Default::default() };
        for _ in 0..3 {
            let response = send(&runtime, "t1", get(&format!("{url}/ping"))).await.unwrap();
            assert_eq!((response.status, response.body.as_slice()), (200, b"ok".as_slice()));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "three calls, one connection");
        assert_eq!(runtime.clients.len(), 1);
        // Another host (here another port) gets a client of its own.
        let (other, _) = counting_server().await;
        send(&runtime, "t1", get(&other)).await.unwrap();
        assert_eq!(runtime.clients.len(), 2);
    }

    fn answer(content_type: &str, body: &[u8]) -> OutboundResponse {
        let headers = Map::from_iter([("content-type".to_string(), Value::String(content_type.into()))]);
        OutboundResponse { host: "h".into(), status: 200, headers, retry_after: None, body: body.to_vec() }
    }

    #[test]
    fn bodies_are_decoded_per_their_declared_charset() {
        let latin1 = b"{\"name\":\"caf\xe9\"}";
        assert_eq!(
            answer("application/json; charset=iso-8859-1", latin1).json(),
            Some(serde_json::json!({"name": "café"}))
        );
        assert_eq!(answer("text/plain; Charset=\"windows-1252\"", b"\x80 5").text(), "€ 5");
        let shift_jis = encoding_rs::SHIFT_JIS.encode("日本").0;
        assert_eq!(answer("text/plain;charset=Shift_JIS", &shift_jis).text(), "日本");
        let utf16 =
            [b"\xff\xfe".as_slice(), &"ok".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<_>>()].concat();
        assert_eq!(answer("text/plain; charset=utf-16le", &utf16).text(), "ok");
        // None declared, or a label nobody knows: UTF-8.
        assert_eq!(answer("application/json", "{\"name\":\"café\"}".as_bytes()).json().unwrap()["name"], "café");
        assert_eq!(answer("text/plain; charset=klingon", "café".as_bytes()).text(), "café");
        assert_eq!(answer("text/plain", b"caf\xe9").text(), "caf\u{fffd}", "invalid UTF-8 is replaced, not dropped");
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Sun, 29 Nov 2026 21:29:00 GMT").unwrap();
        for (value, expected) in [
            ("3", Some(3)),
            (" 120 ", Some(120)),
            ("Sun, 29 Nov 2026 21:30:00 GMT", Some(60)),
            ("Sunday, 29-Nov-26 21:30:00 GMT", Some(60)), // RFC 850
            ("Sun Nov 29 21:30:00 2026", Some(60)),       // asctime
            ("Sun, 29 Nov 2026 21:00:00 GMT", Some(0)),   // already past
            ("-5", None),
            ("soon", None),
            ("1.5", None),
        ] {
            assert_eq!(parse_retry_after(value, now).map(|d| d.as_secs()), expected, "{value}");
        }
    }

    #[tokio::test]
    async fn proxies_from_the_environment_are_not_used() {
        let (proxy, proxied) = counting_server().await;
        let (url, direct) = counting_server().await;
        // SAFETY: nextest runs each test in its own process, so no other thread reads the
        // environment while it changes.
        unsafe {
            for name in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"] {
                std::env::set_var(name, &proxy);
            }
            std::env::remove_var("NO_PROXY");
        }
        let runtime = NodeRuntime { allowed_private_hosts: vec!["127.0.0.1".into()], ..Default::default() };
        send(&runtime, "t1", get(&format!("{url}/ping"))).await.unwrap();
        assert_eq!((proxied.load(Ordering::SeqCst), direct.load(Ordering::SeqCst)), (0, 1));
    }
}
