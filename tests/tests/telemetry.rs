//! The worker's telemetry: log lines with the correlation fields, and CloudWatch metrics
//! (embedded metric format). A test binary of its own: the subscriber and the recorder are
//! process-global, and no other test may add to what this one counts.

use nodeai::api::Route;
use nodeai_tests::{CapturedLogs, TestApp, deployed_like, run_worker_for};
use serde_json::{Value, json};
use std::time::Duration;

/// The EMF documents a flush writes: one JSON object per line, one per label set.
fn flushed() -> Vec<Value> {
    let mut out = Vec::new();
    nodeai::telemetry::flush_metrics(&mut out);
    String::from_utf8(out).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// The document that holds `metric` for these dimension values, e.g. `[("status", "failed")]`.
fn document<'a>(documents: &'a [Value], metric: &str, labels: &[(&str, &str)]) -> &'a Value {
    documents
        .iter()
        .find(|d| d.get(metric).is_some() && labels.iter().all(|(k, v)| d[*k] == *v))
        .unwrap_or_else(|| panic!("no {metric} with {labels:?} in {documents:#?}"))
}

#[tokio::test]
async fn a_run_is_logged_with_its_ids_and_measured_by_status_node_type_tokens_and_cost() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let logs = CapturedLogs::default();
    nodeai::telemetry::init_with_writer("info", logs.clone());
    nodeai::telemetry::init_metrics("test");
    let t = TestApp::new().await;
    let provider = MockServer::start().await;
    // Busy once: the retry's log line is written inside the node's run.
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .mount(&provider)
        .await;
    Mock::given(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "model": "gpt-4o-mini", "choices": [ { "message": { "content": "Fast." }, "finish_reason": "stop" } ],
            "usage": { "prompt_tokens": 2000, "completion_tokens": 100 } })))
        .mount(&provider)
        .await;
    let credential =
        json!({ "provider": "openai", "api_key": "sk-test-0001", "base_url": format!("{}/v1", provider.uri()) });
    assert_eq!(t.call(Route::PutCredential, &[("name", "main")], Some(credential)).await.status, 201);
    let id = t
        .create_workflow(json!({
            "name": "measured",
            "nodes": [
                { "id": "ask", "type": "llm.chat", "config": { "credential": "main", "model": "gpt-4o-mini",
                  "messages": [ { "role": "user", "content": "Say {{ input.word }}" } ] },
                  "retry": { "max_attempts": 2, "initial_delay_ms": 10 } },
                { "id": "shout", "type": "text.template", "config": { "template": "{{ nodes.ask.output.text | upper }}" } },
                { "id": "broken", "type": "text.template", "config": { "template": "{{ input.missing }}" }, "on_error": "continue" },
                { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.shout.output.text }}" } }
            ],
            "edges": [ { "from": "ask", "to": "shout" }, { "from": "shout", "to": "broken" }, { "from": "broken", "to": "done" } ]
        }))
        .await;
    let started = t
        .call(
            Route::StartExecution,
            &[("workflow_id", &id)],
            Some(json!({ "version": "draft", "input": { "word": "hi" } })),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.raw);
    let executor = deployed_like(&t, nodeai::nodes::breaker::CircuitBreakers::default()).await;
    assert_eq!(run_worker_for(&t, &executor, Duration::from_secs(60)).await, 1);

    // The retry line: inside the node's span, which carries every correlation field.
    let execution_id = started.body["execution_id"].as_str().unwrap();
    let lines: Vec<Value> = logs.text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    let retry = lines
        .iter()
        .find(|line| line["message"] == "node failed; retrying")
        .unwrap_or_else(|| panic!("no retry line in {lines:#?}"));
    // Lambda's log conventions: the correlation ids are top-level keys, not nested in a span.
    assert_eq!((&retry["node_id"], &retry["node_type"]), (&json!("ask"), &json!("llm.chat")), "{retry}");
    assert_eq!((&retry["execution_id"], &retry["tenant_id"]), (&json!(execution_id), &json!(t.tenant_id)), "{retry}");
    assert!(retry["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{retry}");
    assert!(retry.get("span").is_none(), "{retry}");
    assert_eq!((&retry["level"], &retry["service"]), (&json!("INFO"), &json!("nodeai")), "{retry}");
    let timestamp = retry["timestamp"].as_str().unwrap_or_default();
    assert!(chrono::DateTime::parse_from_rfc3339(timestamp).is_ok(), "{retry}");
    assert_eq!(retry["code"], "LLM_429");
    // Every line the worker wrote for this execution names it and its request.
    let worker_lines: Vec<&Value> = lines.iter().filter(|l| l["execution_id"] == execution_id).collect();
    assert!(worker_lines.len() >= 2, "{worker_lines:#?}");
    assert!(worker_lines.iter().all(|l| l["request_id"] == retry["request_id"]), "{worker_lines:#?}");

    let documents = flushed();
    let finished = document(&documents, "ExecutionsFinished", &[("status", "succeeded")]);
    assert_eq!(finished["ExecutionsFinished"], 1);
    assert_eq!(finished["Stage"], "test");
    let directive = &finished["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "NodeAI");
    assert_eq!(directive["Dimensions"][0], json!(["Stage", "status"]));
    let runs = |node_type, status| &document(&documents, "NodeRuns", &[("node_type", node_type), ("status", status)])["NodeRuns"];
    assert_eq!(runs("text.template", "succeeded"), 1);
    assert_eq!(runs("text.template", "failed"), 1, "a failed node under on_error continue still counts as failed");
    assert_eq!(runs("llm.chat", "succeeded"), 1);
    // The llm.chat run includes a retry delay of at least 10 ms.
    let llm_time = &document(&documents, "NodeTime", &[("node_type", "llm.chat")])["NodeTime"];
    assert!(llm_time.as_u64().is_some_and(|ms| ms >= 10), "{llm_time}");
    // Metrics without labels share the document that has only the Stage dimension.
    let totals = document(&documents, "LlmInputTokens", &[]);
    assert_eq!((&totals["LlmInputTokens"], &totals["LlmOutputTokens"]), (&json!(2000), &json!(100)));
    // gpt-4o-mini: 2000 in at $0.15/M + 100 out at $0.60/M = $0.00036.
    assert_eq!(totals["LlmCostMicroUsd"], 360);
    assert!(totals["ExecutionLatency"][0].as_f64().is_some_and(|ms| ms >= 0.0), "{totals}");
    let units: Vec<&Value> = totals["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap().iter().collect();
    assert!(units.iter().any(|m| m["Name"] == "ExecutionLatency" && m["Unit"] == "Milliseconds"), "{units:?}");

    // A flush empties the counters: the next batch reports only its own work.
    assert!(flushed().iter().all(|d| d.get("ExecutionsFinished").is_none()));
}

/// Lines inside the Lambda runtime's invocation span carry its request id (and X-Ray trace id)
/// as `function_request_id` / `xray_trace_id`; the first invocation's lines are `cold_start`.
#[test]
fn invocation_ids_and_cold_start_are_top_level() {
    let logs = CapturedLogs::default();
    nodeai::telemetry::init_with_writer("info", logs.clone());
    for request in ["lambda-request-1", "lambda-request-2"] {
        // The span lambda_runtime opens around each invocation (layers/trace.rs).
        let invoke = tracing::info_span!("Lambda runtime invoke", requestId = request, xrayTraceId = "Root=1-abc");
        let _entered = invoke.enter();
        let ours = tracing::info_span!("request", request_id = "client-id", tenant_id = "t-1");
        let _inner = ours.enter();
        tracing::info!(status = 200u64, "request completed");
    }
    let lines: Vec<Value> = logs
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "request completed")
        .collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0]["function_request_id"], "lambda-request-1");
    assert_eq!(lines[0]["xray_trace_id"], "Root=1-abc");
    assert_eq!((&lines[0]["request_id"], &lines[0]["tenant_id"]), (&json!("client-id"), &json!("t-1")));
    assert_eq!((&lines[0]["cold_start"], &lines[1]["cold_start"]), (&json!(true), &json!(false)));
    assert_eq!(lines[1]["status"], 200);

    // api::respond records the tenant on the request span once the key is checked: recorded
    // later, it still reaches the top level.
    let request = tracing::info_span!("request", request_id = "r-9", tenant_id = tracing::field::Empty);
    request.record("tenant_id", "t-recorded");
    request.in_scope(|| tracing::info!("after the key check"));
    let line: Value = logs
        .text()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "after the key check")
        .unwrap();
    assert_eq!((&line["request_id"], &line["tenant_id"]), (&json!("r-9"), &json!("t-recorded")), "{line}");
}

/// At WARN (the template's LogLevel), info-level spans stay on: a warning inside a request or a
/// node still carries its ids; info events are dropped. The first invocation counts as the cold
/// start even when it wrote nothing.
#[test]
fn a_warning_keeps_its_span_ids_at_warn_level() {
    let logs = CapturedLogs::default();
    nodeai::telemetry::init_with_writer("warn", logs.clone());
    for (request, warn) in [("lambda-quiet-1", false), ("lambda-warm-2", true)] {
        let invoke = tracing::info_span!("Lambda runtime invoke", requestId = request);
        let _entered = invoke.enter();
        let node = tracing::info_span!("node", execution_id = "e-1", node_id = "ask");
        let _inner = node.enter();
        tracing::info!("dropped at warn");
        if warn {
            tracing::warn!("node failed; retrying");
        }
    }
    let lines: Vec<Value> = logs.text().lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(
        (&line["level"], &line["execution_id"], &line["node_id"]),
        (&json!("WARN"), &json!("e-1"), &json!("ask"))
    );
    assert_eq!((&line["function_request_id"], &line["cold_start"]), (&json!("lambda-warm-2"), &json!(false)));
}
