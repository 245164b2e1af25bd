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
    pub fn is_json(&self) -> bool {
        self.headers.get("content-type").and_then(Value::as_str).is_some_and(|ct| ct.contains("json"))
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
    let (host, address) = vet(&request.url, &runtime.allowed_private_hosts).await?;
    runtime.breakers.admit(tenant_id, &host)?;
    let result = call(runtime, &host, address, request).await;
    let provider_failed = match &result {
        Ok(response) => is_provider_trouble(response.status),
        Err(failure) => failure.retryable,
    };
    runtime.breakers.record(tenant_id, &host, provider_failed);
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

async fn call(
    runtime: &NodeRuntime,
    host: &str,
    address: SocketAddr,
    request: OutboundRequest,
) -> Result<OutboundResponse, NodeFailure> {
    let client = runtime.clients.client(host, address)?;
    let mut builder = client.request(request.method, request.url);
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
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
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
}
