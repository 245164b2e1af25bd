use super::{NodeRun, NodeType};
use crate::engine::{NodeCall, NodeFailure, NodeOutput, with_sent_input};
use crate::model::StepErrorCode;
use crate::nodes::NodeRuntime;
use crate::nodes::outbound::{OutboundBody, OutboundRequest, send};
use crate::redact::{REDACTED, is_sensitive_name, redact_url};
use crate::template::{off_executor, render_value};
use serde_json::{Value, json};

pub struct HttpRequest;

impl NodeType for HttpRequest {
    fn name(&self) -> &'static str {
        "http.request"
    }
    fn has_side_effects(&self) -> bool {
        true
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
}

/// The executor: only the worker links it (through `nodes::runner`).
#[async_trait::async_trait]
impl NodeRun for HttpRequest {
    async fn execute(&self, call: &NodeCall<'_>, runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure> {
        let (config, scope) = (call.node.config.clone(), call.scope.clone());
        let config = off_executor(move || render_value(&config, &scope)).await?;
        let method: reqwest::Method = config["method"].as_str().unwrap_or("GET").parse().map_err(|_| {
            NodeFailure::permanent(StepErrorCode::HttpInvalidRequest, "method is not a valid HTTP method")
        })?;
        let url_text = config["url"]
            .as_str()
            .ok_or_else(|| NodeFailure::permanent(StepErrorCode::HttpInvalidRequest, "url must render to a string"))?;
        // The message names what is wrong, never the URL: it can be huge and hold secrets.
        let url: reqwest::Url = url_text.parse().map_err(|e| {
            NodeFailure::permanent(StepErrorCode::HttpInvalidRequest, format!("url is not a valid URL ({e})"))
        })?;
        let headers: Vec<(String, String)> = config
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_default().to_string()))
            .collect();
        let body = match config.get("body") {
            None | Some(Value::Null) => OutboundBody::None,
            Some(Value::String(text)) => OutboundBody::Text(text.clone()),
            Some(json_body) => OutboundBody::Json(json_body.clone()),
        };
        let timeout = crate::nodes::outbound::request_timeout(call.node.timeout_ms);
        let request = OutboundRequest { method, url, headers, body, timeout };
        let answered = async {
            let response = send(runtime, call.tenant_id, request).await?;
            if let Some(mut failure) = response.status_failure(StepErrorCode::HttpStatus) {
                // The start of the answer usually says what was wrong with the request; a secret
                // the target echoes back is not kept.
                let mut excerpt: String = response.text().chars().take(300).collect();
                for secret in secret_values(&config) {
                    excerpt = excerpt.replace(&secret, REDACTED);
                }
                if !excerpt.trim().is_empty() {
                    failure.message = format!("{}: {}", failure.message, excerpt.trim());
                }
                return Err(failure);
            }
            let body = match response.is_json().then(|| response.json()).flatten() {
                Some(parsed) => parsed,
                None => Value::String(response.text()),
            };
            // Credentials the target sends back (Set-Cookie, tokens) are not kept in the step.
            let mut headers = response.headers;
            for (name, value) in headers.iter_mut() {
                if is_sensitive_name(name) {
                    *value = Value::String(REDACTED.into());
                }
            }
            Ok(json!({ "status": response.status, "headers": headers, "body": body }).into())
        };
        with_sent_input(redacted(&config), answered.await)
    }
}

/// The secret values the request carries (sensitive headers and query parameters; for
/// `Bearer <token>` the token too), so an answer that echoes them can be redacted.
fn secret_values(config: &Value) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for (name, value) in config.get("headers").and_then(Value::as_object).into_iter().flatten() {
        if let Some(value) = value.as_str().filter(|_| is_sensitive_name(name)) {
            values.push(value.to_string());
            values.extend(value.split_once(' ').map(|(_, token)| token.to_string()));
        }
    }
    if let Some(url) = config["url"].as_str().and_then(|u| reqwest::Url::parse(u).ok()) {
        values
            .extend(url.query_pairs().filter(|(name, _)| is_sensitive_name(name)).map(|(_, value)| value.into_owned()));
    }
    // Short values would redact ordinary words; longest first, so a token inside its header
    // value is not left half-replaced.
    values.retain(|v| v.trim().len() >= 6);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values
}

/// The rendered request as the step shows it: values of headers and query parameters that
/// usually carry secrets are replaced, so a key passed in from the input does not sit in the
/// execution history.
fn redacted(config: &Value) -> Value {
    let mut shown = config.clone();
    if let Some(headers) = shown.get_mut("headers").and_then(Value::as_object_mut) {
        for (name, value) in headers.iter_mut() {
            if is_sensitive_name(name) {
                *value = Value::String(REDACTED.into());
            }
        }
    }
    if let Some(url) = shown["url"].as_str() {
        shown["url"] = Value::String(redact_url(url));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NodeSpec;
    use std::time::Duration;
    use wiremock::matchers::{body_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn runtime() -> NodeRuntime {
        NodeRuntime { allowed_private_hosts: vec!["127.0.0.1".into()], max_response_bytes: 1024, ..Default::default() }
    }

    async fn run(node: &NodeSpec, scope: &Value, runtime: &NodeRuntime) -> Result<Value, NodeFailure> {
        HttpRequest
            .execute(
                &NodeCall {
                    tenant_id: "t1",
                    node,
                    scope,
                    events: &crate::events::EVENTS_OFF,
                    attempt: 1,
                    spend: &crate::engine::NO_RUN_LIMIT,
                },
                runtime,
            )
            .await
            .map(|produced| produced.output)
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
            .and(header("authorization", "Bearer k-1"))
            .and(body_json(json!({ "name": "Ada" })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "ok": true })))
            .expect(1)
            .mount(&server)
            .await;
        let scope = json!({ "input": { "id": 7, "name": "Ada", "key": "k-1" } });
        let config = json!({ "method": "POST", "url": format!("{}/items/{{{{ input.id }}}}", server.uri()),
                             "headers": { "x-api": "{{ input.key }}", "Authorization": "Bearer {{ input.key }}" },
                             "body": { "name": "{{ input.name }}" } });
        let produced = HttpRequest
            .execute(
                &NodeCall {
                    tenant_id: "t1",
                    node: &node(config),
                    scope: &scope,
                    events: &crate::events::EVENTS_OFF,
                    attempt: 1,
                    spend: &crate::engine::NO_RUN_LIMIT,
                },
                &runtime(),
            )
            .await
            .unwrap();
        assert_eq!(produced.input["url"], format!("{}/items/7", server.uri()), "the step shows the rendered request");
        assert_eq!(produced.input["headers"]["Authorization"], "<redacted>");
        assert_eq!(produced.input["headers"]["x-api"], "k-1");
        let with_key = node(
            json!({ "method": "GET", "url": format!("{}/items/7?api_key={{{{ input.key }}}}&page=2", server.uri()) }),
        );
        let shown = redacted(&render_value(&with_key.config, &scope).unwrap());
        assert_eq!(shown["url"], format!("{}/items/7?api_key=%3Credacted%3E&page=2", server.uri()));
        let output = produced.output;
        assert_eq!(output["status"], 201);
        assert_eq!(output["body"], json!({ "ok": true }));
        assert_eq!(output["headers"]["content-type"], "application/json");
    }

    #[tokio::test]
    async fn an_answer_in_latin_1_is_read_as_latin_1() {
        let server = MockServer::start().await;
        Mock::given(path("/name"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(b"{\"name\":\"caf\xe9\"}".to_vec(), "application/json; charset=iso-8859-1"),
            )
            .mount(&server)
            .await;
        let call = node(json!({ "method": "GET", "url": format!("{}/name", server.uri()) }));
        let produced = run(&call, &json!({}), &runtime()).await.unwrap();
        assert_eq!(produced["body"], json!({ "name": "café" }));
    }

    #[tokio::test]
    async fn statuses_are_classified_and_retry_after_is_read() {
        let server = MockServer::start().await;
        Mock::given(path("/busy"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3"))
            .mount(&server)
            .await;
        let in_two_minutes = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        Mock::given(path("/busy-until"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", in_two_minutes.as_str()))
            .mount(&server)
            .await;
        Mock::given(path("/down")).respond_with(ResponseTemplate::new(503)).mount(&server).await;
        Mock::given(path("/denied"))
            .respond_with(ResponseTemplate::new(401).set_body_string("{\"error\":\"token expired\"}"))
            .mount(&server)
            .await;
        Mock::given(path("/echo"))
            .respond_with(
                ResponseTemplate::new(403).set_body_string("no: auth=Bearer tk-abcdef123456 query=qk-123456789"),
            )
            .mount(&server)
            .await;
        Mock::given(path("/big"))
            .respond_with(ResponseTemplate::new(200).set_body_string("x".repeat(2000)))
            .mount(&server)
            .await;
        let call = |p: &str| node(json!({ "method": "GET", "url": format!("{}{p}", server.uri()) }));
        let busy = run(&call("/busy"), &json!({}), &runtime()).await.unwrap_err();
        assert_eq!(
            (busy.code.as_str(), busy.retryable, busy.retry_after),
            ("HTTP_429", true, Some(Duration::from_secs(3)))
        );
        let until = run(&call("/busy-until"), &json!({}), &runtime()).await.unwrap_err();
        let wait = until.retry_after.expect("an HTTP-date Retry-After is read").as_secs();
        assert!((115..=120).contains(&wait), "{wait}");
        let down = run(&call("/down"), &json!({}), &runtime()).await.unwrap_err();
        assert!(down.retryable);
        let denied = run(&call("/denied"), &json!({}), &runtime()).await.unwrap_err();
        assert_eq!((denied.code.as_str(), denied.retryable), ("HTTP_401", false));
        assert!(denied.message.ends_with(": {\"error\":\"token expired\"}"), "the answer's start: {}", denied.message);
        assert_eq!(denied.input["url"], format!("{}/denied", server.uri()), "a failed call keeps what it sent");
        // A target that echoes the credentials it was sent: they stay out of the step.
        let echo = node(json!({ "method": "GET", "url": format!("{}/echo?api_key=qk-123456789", server.uri()),
                                "headers": { "Authorization": "Bearer tk-abcdef123456" } }));
        let echoed = run(&echo, &json!({}), &runtime()).await.unwrap_err();
        assert_eq!(echoed.code, "HTTP_403");
        assert!(echoed.message.ends_with("no: auth=<redacted> query=<redacted>"), "{}", echoed.message);
        assert!(!echoed.message.contains("tk-abcdef") && !echoed.message.contains("qk-1234"), "{}", echoed.message);
        let big = run(&call("/big"), &json!({}), &runtime()).await.unwrap_err();
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
        let refused = run(&call, &json!({}), &NodeRuntime::default()).await.unwrap_err();
        assert_eq!(refused.code, "SSRF_BLOCKED");
        let hop = run(&call, &json!({}), &runtime()).await.unwrap();
        assert_eq!(hop["status"], 302, "the redirect is returned, not followed");
        let metadata = node(json!({ "method": "GET", "url": "http://169.254.169.254/latest/meta-data" }));
        assert_eq!(run(&metadata, &json!({}), &runtime()).await.unwrap_err().code, "SSRF_BLOCKED");
    }

    #[tokio::test]
    async fn connection_failures_are_retryable() {
        let call = node(json!({ "method": "GET", "url": "http://127.0.0.1:9/nothing-listens" }));
        let failure = run(&call, &json!({}), &runtime()).await.unwrap_err();
        assert_eq!((failure.code.as_str(), failure.retryable), ("HTTP_CONNECTION_FAILED", true));
    }
}

#[cfg(test)]
mod breaker_tests {
    use super::*;
    use crate::model::NodeSpec;
    use crate::nodes::breaker::CircuitBreakers;
    use std::sync::Arc;
    use std::time::Duration;
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    #[tokio::test]
    async fn a_failing_host_opens_the_circuit_and_is_not_called_again_until_the_cool_down() {
        let server = MockServer::start().await;
        Mock::given(path("/down")).respond_with(ResponseTemplate::new(503)).expect(2).mount(&server).await;
        let runtime = NodeRuntime {
            allowed_private_hosts: vec!["127.0.0.1".into()],
            breakers: Arc::new(CircuitBreakers::new(2, Duration::from_millis(300))),
            ..Default::default()
        };
        let node: NodeSpec = serde_json::from_value(json!({ "id": "call", "type": "http.request",
            "config": { "method": "GET", "url": format!("{}/down", server.uri()) } }))
        .unwrap();
        let scope = json!({});
        let call = |tenant_id| NodeCall {
            tenant_id,
            node: &node,
            scope: &scope,
            events: &crate::events::EVENTS_OFF,
            attempt: 1,
            spend: &crate::engine::NO_RUN_LIMIT,
        };
        for _ in 0..2 {
            assert_eq!(HttpRequest.execute(&call("t1"), &runtime).await.unwrap_err().code, "HTTP_503");
        }
        let fast = HttpRequest.execute(&call("t1"), &runtime).await.unwrap_err();
        assert_eq!((fast.code.as_str(), fast.retryable), ("CIRCUIT_OPEN", false));
        server.verify().await; // exactly two calls reached the host
        server.reset().await;
        Mock::given(path("/down")).respond_with(ResponseTemplate::new(200)).expect(1).mount(&server).await;
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(HttpRequest.execute(&call("t1"), &runtime).await.unwrap().output["status"], 200, "half-open trial");
    }

    #[tokio::test]
    async fn a_hung_host_trips_the_breaker_and_an_abandoned_trial_does_not_hold_it_half_open() {
        let server = MockServer::start().await;
        let hang = ResponseTemplate::new(200).set_delay(Duration::from_secs(30));
        Mock::given(path("/slow")).respond_with(hang).mount(&server).await;
        let runtime = NodeRuntime {
            allowed_private_hosts: vec!["127.0.0.1".into()],
            breakers: Arc::new(CircuitBreakers::new(1, Duration::from_millis(200))),
            ..Default::default()
        };
        let node: NodeSpec = serde_json::from_value(json!({ "id": "call", "type": "http.request", "timeout_ms": 100,
            "config": { "method": "GET", "url": format!("{}/slow", server.uri()) } }))
        .unwrap();
        let scope = json!({});
        let call = NodeCall {
            tenant_id: "t1",
            node: &node,
            scope: &scope,
            events: &crate::events::EVENTS_OFF,
            attempt: 1,
            spend: &crate::engine::NO_RUN_LIMIT,
        };
        // The request's own time limit (90 % of the node's timeout_ms) ends a hung call as a
        // timeout, which the breaker counts.
        let hung = HttpRequest.execute(&call, &runtime).await.unwrap_err();
        assert_eq!((hung.code.as_str(), hung.retryable), ("HTTP_TIMEOUT", true));
        assert_eq!(HttpRequest.execute(&call, &runtime).await.unwrap_err().code, "CIRCUIT_OPEN", "a hang is a failure");
        // The trial after the cool-down is abandoned (as the engine drops a node at a cutoff):
        // open again, not stuck half-open.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(tokio::time::timeout(Duration::from_millis(30), HttpRequest.execute(&call, &runtime)).await.is_err());
        assert_eq!(HttpRequest.execute(&call, &runtime).await.unwrap_err().code, "CIRCUIT_OPEN");
        // The host recovers: the next trial goes through and closes the circuit.
        server.reset().await;
        Mock::given(path("/slow")).respond_with(ResponseTemplate::new(200)).mount(&server).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(HttpRequest.execute(&call, &runtime).await.unwrap().output["status"], 200);
        assert_eq!(HttpRequest.execute(&call, &runtime).await.unwrap().output["status"], 200);
    }
}
