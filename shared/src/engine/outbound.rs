//! Every outbound call a node makes (http.request, llm.chat) goes through `send`: the SSRF guard
//! (only http(s), public addresses unless allow-listed, connection pinned to the vetted address,
//! no redirects), the tenant's circuit breaker for that host, and a cap on the response size.

use super::http_guard::vet;
use super::{NodeFailure, NodeRuntime};
use serde_json::{Map, Value};
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
    pub fn status_failure(&self, prefix: &str) -> Option<NodeFailure> {
        (self.status >= 400).then(|| NodeFailure {
            code: format!("{prefix}_{}", self.status),
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

async fn call(
    runtime: &NodeRuntime,
    host: &str,
    address: std::net::SocketAddr,
    request: OutboundRequest,
) -> Result<OutboundResponse, NodeFailure> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, address)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| NodeFailure::permanent("HTTP_CLIENT_ERROR", e.to_string()))?;
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
            NodeFailure::permanent("HTTP_INVALID_REQUEST", message)
        } else if e.is_timeout() {
            NodeFailure::retryable("HTTP_TIMEOUT", message)
        } else {
            NodeFailure::retryable("HTTP_CONNECTION_FAILED", message)
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
        .map_err(|_| NodeFailure::retryable("HTTP_CONNECTION_FAILED", "the response was cut off"))?
    {
        if body.len() + chunk.len() > runtime.max_response_bytes {
            return Err(NodeFailure::permanent(
                "HTTP_RESPONSE_TOO_LARGE",
                format!("the response is over {} bytes", runtime.max_response_bytes),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(OutboundResponse { host: host.to_string(), status, headers, retry_after, body })
}
