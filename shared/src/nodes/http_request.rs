use super::NodeKind;
use crate::engine::http_guard::vet;
use crate::engine::template::render_value;
use crate::engine::{NodeFailure, NodeRuntime};
use crate::model::NodeSpec;
use serde_json::{Value, json};
use std::time::Duration;

pub struct HttpRequest;

#[async_trait::async_trait]
impl NodeKind for HttpRequest {
    fn name(&self) -> &'static str {
        "http.request"
    }
    fn description(&self) -> &'static str {
        "Sends an HTTP(S) request; method, url, headers and body are templates. Output: status, headers, body (parsed when JSON)."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["method", "url"],
            "properties": {
                "method": { "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] },
                "url": { "type": "string", "minLength": 1, "maxLength": 2048 },
                "headers": { "type": "object", "maxProperties": 50, "additionalProperties": { "type": "string" } },
                "body": { "description": "A string template, or JSON whose strings are templates." }
            }
        })
    }
    async fn execute(&self, node: &NodeSpec, scope: &Value, runtime: &NodeRuntime) -> Result<Value, NodeFailure> {
        let config = render_value(&node.config, scope)?;
        let method: reqwest::Method = config["method"]
            .as_str()
            .unwrap_or("GET")
            .parse()
            .map_err(|_| NodeFailure::permanent("HTTP_INVALID_REQUEST", "method is not a valid HTTP method"))?;
        let url_text = config["url"]
            .as_str()
            .ok_or_else(|| NodeFailure::permanent("HTTP_INVALID_REQUEST", "url must render to a string"))?;
        let url: reqwest::Url = url_text
            .parse()
            .map_err(|_| NodeFailure::permanent("HTTP_INVALID_REQUEST", format!("'{url_text}' is not a valid URL")))?;
        let (host, address) = vet(&url, &runtime.allowed_private_hosts).await?;
        // Pinned to the vetted address; redirects off so a 302 cannot lead past the guard.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, address)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| NodeFailure::permanent("HTTP_CLIENT_ERROR", e.to_string()))?;
        let mut request = client.request(method, url);
        if let Some(headers) = config.get("headers").and_then(Value::as_object) {
            for (name, value) in headers {
                let value = value.as_str().unwrap_or_default();
                request = request.header(name.as_str(), value);
            }
        }
        match config.get("body") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => request = request.body(text.clone()),
            Some(json_body) => request = request.json(json_body),
        }
        let mut response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "HTTP_TIMEOUT"
            } else if e.is_builder() {
                "HTTP_INVALID_REQUEST"
            } else {
                "HTTP_CONNECTION_FAILED"
            };
            let failure_message = format!("the request to '{host}' failed");
            if e.is_builder() {
                NodeFailure::permanent(kind, failure_message)
            } else {
                NodeFailure::retryable(kind, failure_message)
            }
        })?;
        let status = response.status().as_u16();
        let headers: serde_json::Map<String, Value> = response
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
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| NodeFailure::retryable("HTTP_CONNECTION_FAILED", "the response was cut off"))?
        {
            if bytes.len() + chunk.len() > runtime.max_response_bytes {
                return Err(NodeFailure::permanent(
                    "HTTP_RESPONSE_TOO_LARGE",
                    format!("the response is over {} bytes", runtime.max_response_bytes),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let is_json = headers.get("content-type").and_then(Value::as_str).is_some_and(|ct| ct.contains("json"));
        let body = match is_json.then(|| serde_json::from_slice::<Value>(&bytes).ok()).flatten() {
            Some(parsed) => parsed,
            None => Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        };
        if status >= 400 {
            let code = format!("HTTP_{status}");
            let message = format!("'{host}' answered {status}");
            let retryable = status == 408 || status == 429 || status >= 500;
            return Err(NodeFailure { code, message, retryable, retry_after });
        }
        Ok(json!({ "status": status, "headers": headers, "body": body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn runtime() -> NodeRuntime {
        NodeRuntime { allowed_private_hosts: vec!["127.0.0.1".into()], max_response_bytes: 1024 }
    }

    fn node(config: Value) -> NodeSpec {
        serde_json::from_value(json!({ "id": "call", "type": "http.request", "config": config })).unwrap()
    }

    #[tokio::test]
    async fn renders_sends_and_parses_json() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/items/7"))
            .and(header("x-api", "k-1"))
            .and(body_json(json!({ "name": "Ada" })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "ok": true })))
            .expect(1)
            .mount(&server)
            .await;
        let scope = json!({ "input": { "id": 7, "name": "Ada", "key": "k-1" } });
        let config = json!({ "method": "POST", "url": format!("{}/items/{{{{ input.id }}}}", server.uri()),
                             "headers": { "x-api": "{{ input.key }}" }, "body": { "name": "{{ input.name }}" } });
        let output = HttpRequest.execute(&node(config), &scope, &runtime()).await.unwrap();
        assert_eq!(output["status"], 201);
        assert_eq!(output["body"], json!({ "ok": true }));
        assert_eq!(output["headers"]["content-type"], "application/json");
    }

    #[tokio::test]
    async fn statuses_are_classified_and_retry_after_is_read() {
        let server = MockServer::start().await;
        Mock::given(path("/busy"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3"))
            .mount(&server)
            .await;
        Mock::given(path("/down")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
        Mock::given(path("/denied")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
        Mock::given(path("/big"))
            .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(2000)))
            .mount(&server)
            .await;
        let call = |p: &str| node(json!({ "method": "GET", "url": format!("{}{p}", server.uri()) }));
        let busy = HttpRequest.execute(&call("/busy"), &json!({}), &runtime()).await.unwrap_err();
        assert_eq!(
            (busy.code.as_str(), busy.retryable, busy.retry_after),
            ("HTTP_429", true, Some(Duration::from_secs(3)))
        );
        let down = HttpRequest.execute(&call("/down"), &json!({}), &runtime()).await.unwrap_err();
        assert!(down.retryable);
        let denied = HttpRequest.execute(&call("/denied"), &json!({}), &runtime()).await.unwrap_err();
        assert_eq!((denied.code.as_str(), denied.retryable), ("HTTP_401", false));
        let big = HttpRequest.execute(&call("/big"), &json!({}), &runtime()).await.unwrap_err();
        assert_eq!(big.code, "HTTP_RESPONSE_TOO_LARGE");
    }

    #[tokio::test]
    async fn loopback_is_refused_without_the_allow_list_and_redirects_are_not_followed() {
        let server = MockServer::start().await;
        Mock::given(path("/hop"))
            .respond_with(
                ResponseTemplate::new(302).insert_header("location", "http://169.254.169.254/latest/meta-data"),
            )
            .mount(&server)
            .await;
        let call = node(json!({ "method": "GET", "url": format!("{}/hop", server.uri()) }));
        let refused = HttpRequest.execute(&call, &json!({}), &NodeRuntime::default()).await.unwrap_err();
        assert_eq!(refused.code, "SSRF_BLOCKED");
        let hop = HttpRequest.execute(&call, &json!({}), &runtime()).await.unwrap();
        assert_eq!(hop["status"], 302, "the redirect is returned, not followed");
        let metadata = node(json!({ "method": "GET", "url": "http://169.254.169.254/latest/meta-data" }));
        assert_eq!(HttpRequest.execute(&metadata, &json!({}), &runtime()).await.unwrap_err().code, "SSRF_BLOCKED");
    }

    #[tokio::test]
    async fn connection_failures_are_retryable() {
        let call = node(json!({ "method": "GET", "url": "http://127.0.0.1:9/nothing-listens" }));
        let failure = HttpRequest.execute(&call, &json!({}), &runtime()).await.unwrap_err();
        assert_eq!((failure.code.as_str(), failure.retryable), ("HTTP_CONNECTION_FAILED", true));
    }
}
