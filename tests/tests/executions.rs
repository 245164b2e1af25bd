//! Executions through the real pieces on the emulator: start (DynamoDB + SQS), the worker's
//! batch handler on the message SQS delivers, and the execution read back with its steps.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use nodeai::api::Route;
use nodeai::config::RunningLimits;
use nodeai::queue::SqsExecutionQueue;
use nodeai_tests::{Reply, RequestSpec, TestApp, deployed_like, run_worker_for, sqs_client};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn branching() -> Value {
    json!({
        "name": "branching",
        "input_schema": { "type": "object", "required": ["n"], "properties": { "n": { "type": "integer" } } },
        "nodes": [
            { "id": "greet", "type": "text.template", "config": { "template": "n = {{ input.n }}" } },
            { "id": "check", "type": "logic.condition", "config": { "expression": "input.n > 1" } },
            { "id": "big", "type": "text.template", "config": { "template": "big" } },
            { "id": "small", "type": "text.template", "config": { "template": "small" } },
            { "id": "shape", "type": "data.json", "config": { "source": { "greeting": "{{ nodes.greet.output.text }}" },
                                                              "set": [ { "pointer": "/size", "value": "{{ nodes.big.output.text }}" } ] } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.shape.output }}" } }
        ],
        "edges": [
            { "from": "greet", "to": "check" },
            { "from": "check", "to": "big", "when": "true" },
            { "from": "check", "to": "small", "when": "false" },
            { "from": "big", "to": "shape" },
            { "from": "shape", "to": "done" }
        ]
    })
}

/// Receives what SQS delivers and hands it to the worker, as the Lambda event source would.
async fn run_worker(t: &TestApp) -> usize {
    run_worker_with(t, nodeai::nodes::RegistryExecutor::default()).await
}

async fn run_worker_with(t: &TestApp, executor: nodeai::nodes::RegistryExecutor) -> usize {
    run_worker_for(t, &executor, Duration::from_secs(60)).await
}

async fn start(t: &TestApp, workflow_id: &str, body: Value) -> Reply {
    t.call(Route::StartExecution, &[("workflow_id", workflow_id)], Some(body)).await
}

#[tokio::test]
async fn a_started_execution_runs_through_sqs_and_the_worker() {
    let t = TestApp::new().await;
    let id = t.create_workflow(branching()).await;
    assert_eq!(t.call(Route::PublishVersion, &[("workflow_id", &id)], None).await.status, 201);
    let deploy = RequestSpec::new(&[("workflow_id", &id)]).key(&t.key).json(Some(json!({ "version": 1 })));
    assert_eq!(t.send(Route::DeployVersion, deploy).await.status, 200);

    let started = start(&t, &id, json!({ "input": { "n": 3 } })).await;
    assert_eq!(started.status, 202, "{}", started.raw);
    assert_eq!((started.body["status"].as_str(), started.body["version"].as_u64()), (Some("queued"), Some(1)));
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    assert_eq!(started.body["links"]["self"], format!("/v1/executions/{execution_id}"));

    let queued = t.call(Route::GetExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(queued.body["status"], "queued");
    assert!(queued.body["steps"].as_array().unwrap().iter().all(|s| s["status"] == "pending"));

    assert_eq!(run_worker(&t).await, 1);
    let done = t.call(Route::GetExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body["status"], "succeeded", "{}", done.raw);
    assert_eq!(done.body["output"], json!({ "greeting": "n = 3", "size": "big" }));
    assert!(done.body["duration_ms"].as_i64().is_some());
    let steps = done.body["steps"].as_array().unwrap();
    let status_of = |node: &str| steps.iter().find(|s| s["node_id"] == node).unwrap()["status"].clone();
    assert_eq!(status_of("small"), "skipped");
    for node in ["greet", "check", "big", "shape", "done"] {
        assert_eq!(status_of(node), "succeeded", "{node}");
    }
    // Finished: cancel is refused.
    t.call(Route::CancelExecution, &[("execution_id", &execution_id)], None)
        .await
        .assert_error(409, "EXECUTION_FINISHED");
}

#[tokio::test]
async fn a_cancelled_execution_starts_no_node() {
    let t = TestApp::new().await;
    let id = t.create_workflow(branching()).await;
    let started = start(&t, &id, json!({ "input": { "n": 1 }, "version": "draft" })).await;
    assert_eq!(started.body["version"], "draft");
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let cancelled = t.call(Route::CancelExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(cancelled.status, 202, "{}", cancelled.raw);
    run_worker(&t).await;
    let done = t.call(Route::GetExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(done.body["status"], "cancelled");
    assert!(done.body["steps"].as_array().unwrap().iter().all(|s| s["status"] == "pending"));
}

#[tokio::test]
async fn bad_starts_are_refused_clearly() {
    let t = TestApp::new().await;
    let id = t.create_workflow(branching()).await;
    let no_deployment = start(&t, &id, json!({ "input": { "n": 1 } })).await;
    let error = no_deployment.assert_error(409, "NO_DEPLOYED_VERSION");
    assert!(!error["suggestions"].as_array().unwrap().is_empty());
    start(&t, &id, json!({ "input": { "n": 1 }, "version": 7 })).await.assert_error(404, "VERSION_NOT_FOUND");
    for version in [json!(0), json!("latest"), json!(-2), json!(1.5)] {
        start(&t, &id, json!({ "input": { "n": 1 }, "version": version })).await.assert_error(400, "INVALID_REQUEST");
    }
    let invalid = start(&t, &id, json!({ "input": { "n": "three" }, "version": "draft" })).await;
    let error = invalid.assert_error(422, "INPUT_INVALID");
    assert_eq!(error["details"][0]["path"], "/input/n");
    start(&t, &id, json!({ "input": [1], "version": "draft" })).await.assert_error(400, "INVALID_REQUEST");
    let limit = nodeai::model::limits::MAX_EXECUTION_INPUT_BYTES;
    let huge = json!({ "input": { "n": 1, "pad": "x".repeat(limit) }, "version": "draft" });
    start(&t, &id, huge).await.assert_error(413, "PAYLOAD_TOO_LARGE");
    // Deeper than values may nest: refused, so nothing unreadable is ever stored.
    let mut deep = json!(1);
    for _ in 0..100 {
        deep = json!({ "d": deep });
    }
    start(&t, &id, json!({ "input": { "n": 1, "deep": deep }, "version": "draft" }))
        .await
        .assert_error(400, "INVALID_REQUEST");
    start(&t, "01ARZ3NDEKTSV4RRFFQ69G5FAV", json!({ "version": "draft" }))
        .await
        .assert_error(404, "WORKFLOW_NOT_FOUND");
    t.call(Route::GetExecution, &[("execution_id", "01ARZ3NDEKTSV4RRFFQ69G5FAV")], None)
        .await
        .assert_error(404, "EXECUTION_NOT_FOUND");
    t.call(Route::GetExecution, &[("execution_id", "nope")], None).await.assert_error(404, "EXECUTION_NOT_FOUND");
    assert_eq!(run_worker(&t).await, 0, "nothing was queued by refused starts");
}

fn http_workflow(url: &str) -> Value {
    json!({
        "name": "http",
        "nodes": [
            { "id": "fetch", "type": "http.request", "config": { "method": "GET", "url": url },
              "retry": { "max_attempts": 3, "initial_delay_ms": 10, "jitter": false } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.fetch.output.body.answer }}" } }
        ],
        "edges": [ { "from": "fetch", "to": "done" } ]
    })
}

use nodeai_tests::loopback_allowed;

#[tokio::test]
async fn a_429_with_retry_after_is_retried_and_a_401_is_not() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&stub)
        .await;
    Mock::given(path("/flaky"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "answer": 42 })))
        .mount(&stub)
        .await;
    Mock::given(path("/denied")).respond_with(ResponseTemplate::new(401)).expect(1).mount(&stub).await;

    let flaky = t.create_workflow(http_workflow(&format!("{}/flaky", stub.uri()))).await;
    let started = start(&t, &flaky, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let began = Instant::now();
    run_worker_with(&t, loopback_allowed()).await;
    assert!(began.elapsed() >= Duration::from_secs(1), "Retry-After was respected");
    let done = t.call(Route::GetExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!((done.body["status"].as_str(), &done.body["output"]), (Some("succeeded"), &json!(42)), "{}", done.raw);
    assert_eq!(done.body["steps"][0]["attempts"], 2);

    let denied = t.create_workflow(http_workflow(&format!("{}/denied", stub.uri()))).await;
    let started = start(&t, &denied, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    run_worker_with(&t, loopback_allowed()).await;
    let failed = t.call(Route::GetExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(failed.body["status"], "failed");
    assert_eq!(failed.body["error"]["code"], "HTTP_401");
    assert_eq!(failed.body["steps"][0]["attempts"], 1, "a 401 is not retried");
    let sent = failed.body["steps"][0]["input"]["url"].as_str().unwrap_or_default();
    assert!(sent.ends_with("/denied"), "the failed step shows the request it sent: {}", failed.raw);
    // wiremock checks the expected call counts when the stub drops.
}

#[tokio::test]
async fn without_the_allow_list_a_loopback_target_is_refused() {
    let t = TestApp::new().await;
    let id = t.create_workflow(http_workflow("http://127.0.0.1:9/anything")).await;
    let started = start(&t, &id, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    run_worker(&t).await;
    let failed = t.call(Route::GetExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(failed.body["error"]["code"], "SSRF_BLOCKED", "{}", failed.raw);
}

#[tokio::test]
async fn a_workflows_executions_are_listed_newest_first_with_a_status_filter() {
    let t = TestApp::new().await;
    let id = t.create_workflow(branching()).await;
    let mut started = Vec::new();
    for n in 0..3 {
        let reply = start(&t, &id, json!({ "input": { "n": n }, "version": "draft" })).await;
        started.push(reply.body["execution_id"].as_str().unwrap().to_string());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let first = started[0].clone();
    assert_eq!(t.call(Route::CancelExecution, &[("execution_id", &first)], None).await.status, 202);
    run_worker(&t).await;
    started.reverse();
    let page =
        t.send(Route::ListExecutions, RequestSpec::new(&[("workflow_id", &id)]).key(&t.key).query("limit", "2")).await;
    assert_eq!(page.status, 200, "{}", page.raw);
    let ids: Vec<&str> =
        page.body["items"].as_array().unwrap().iter().map(|e| e["execution_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [started[0].as_str(), started[1].as_str()]);
    let token = page.body["next_token"].as_str().unwrap();
    let rest = t
        .send(
            Route::ListExecutions,
            RequestSpec::new(&[("workflow_id", &id)]).key(&t.key).query("limit", "2").query("next_token", token),
        )
        .await;
    assert_eq!(rest.body["items"][0]["execution_id"], first.as_str());
    let cancelled = t
        .send(Route::ListExecutions, RequestSpec::new(&[("workflow_id", &id)]).key(&t.key).query("status", "cancelled"))
        .await;
    let items = cancelled.body["items"].as_array().unwrap();
    assert_eq!((items.len(), items[0]["execution_id"].as_str()), (1, Some(first.as_str())));
    t.send(Route::ListExecutions, RequestSpec::new(&[("workflow_id", &id)]).key(&t.key).query("status", "done"))
        .await
        .assert_error(400, "INVALID_REQUEST");
    t.call(Route::ListExecutions, &[("workflow_id", "01ARZ3NDEKTSV4RRFFQ69G5FAV")], None)
        .await
        .assert_error(404, "WORKFLOW_NOT_FOUND");
}

#[tokio::test]
async fn idempotency_keys_return_the_original_execution() {
    let t = TestApp::new().await;
    let id = t.create_workflow(branching()).await;
    let send = |key: &str, body: Value| {
        RequestSpec::new(&[("workflow_id", &id)]).key(&t.key).header("idempotency-key", key).json(Some(body))
    };
    let first =
        t.send(Route::StartExecution, send("order-42", json!({ "input": { "n": 2 }, "version": "draft" }))).await;
    assert_eq!(first.status, 202, "{}", first.raw);
    // The same body with its keys in another order is the same request.
    let same =
        t.send(Route::StartExecution, send("order-42", json!({ "version": "draft", "input": { "n": 2 } }))).await;
    assert_eq!(same.status, 200, "{}", same.raw);
    assert_eq!(same.body["execution_id"], first.body["execution_id"]);
    let other_body =
        t.send(Route::StartExecution, send("order-42", json!({ "input": { "n": 3 }, "version": "draft" }))).await;
    other_body.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    let other_key =
        t.send(Route::StartExecution, send("order-43", json!({ "input": { "n": 2 }, "version": "draft" }))).await;
    assert_eq!(other_key.status, 202);
    assert_ne!(other_key.body["execution_id"], first.body["execution_id"]);
    assert_eq!(run_worker(&t).await, 2, "two executions were queued, not three");
    let bad =
        t.send(Route::StartExecution, send("has space", json!({ "input": { "n": 2 }, "version": "draft" }))).await;
    bad.assert_error(400, "INVALID_REQUEST");
}

async fn execution(t: &TestApp, execution_id: &str) -> Value {
    let reply = t.call(Route::GetExecution, &[("execution_id", execution_id)], None).await;
    assert_eq!(reply.status, 200, "{}", reply.raw);
    reply.body
}

fn step<'a>(execution: &'a Value, node: &str) -> &'a Value {
    execution["steps"].as_array().unwrap().iter().find(|s| s["node_id"] == node).unwrap()
}

#[tokio::test]
async fn llm_nodes_call_openai_and_anthropic_stubs_and_record_tokens_and_cost() {
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-openai-test-0001"))
        .and(body_partial_json(json!({ "messages": [ { "role": "user", "content": "Summarize: Rust is fast." } ] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini-2024-07-18",
            "choices": [ { "index": 0, "message": { "role": "assistant", "content": "Fast." }, "finish_reason": "stop" } ],
            "usage": { "prompt_tokens": 2000, "completion_tokens": 100, "total_tokens": 2100 } })))
        .expect(1)
        .mount(&provider)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-ant-test-0002"))
        .and(body_partial_json(json!({ "messages": [ { "role": "user", "content": "Translate: Fast." } ] })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-20241022",
            "content": [ { "type": "text", "text": "{\"fr\": \"Rapide.\"}" } ], "stop_reason": "end_turn",
            "usage": { "input_tokens": 40, "output_tokens": 10 } })))
        .expect(1)
        .mount(&provider)
        .await;
    for (name, body) in [
        (
            "openai-main",
            json!({ "provider": "openai", "api_key": "sk-openai-test-0001", "base_url": format!("{}/openai/v1", provider.uri()) }),
        ),
        ("claude", json!({ "provider": "anthropic", "api_key": "sk-ant-test-0002", "base_url": provider.uri() })),
    ] {
        let stored = t.call(Route::PutCredential, &[("name", name)], Some(body)).await;
        assert_eq!(stored.status, 201, "{}", stored.raw);
    }
    let id = t
        .create_workflow(json!({
            "name": "summarize and translate",
            "nodes": [
                { "id": "summarize", "type": "llm.chat", "config": { "credential": "openai-main", "model": "gpt-4o-mini",
                  "messages": [ { "role": "user", "content": "Summarize: {{ input.text }}" } ] } },
                { "id": "translate", "type": "llm.chat", "config": { "credential": "claude", "model": "claude-3-5-haiku-latest",
                  "response_format": "json",
                  "messages": [ { "role": "user", "content": "Translate: {{ nodes.summarize.output.text }}" } ] } },
                { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.translate.output.json.fr }}" } }
            ],
            "edges": [ { "from": "summarize", "to": "translate" }, { "from": "translate", "to": "done" } ]
        }))
        .await;
    let started = start(&t, &id, json!({ "input": { "text": "Rust is fast." }, "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    run_worker_for(&t, &deployed_like(&t, Default::default()).await, Duration::from_secs(60)).await;
    let done = execution(&t, &execution_id).await;
    assert_eq!((done["status"].as_str(), &done["output"]), (Some("succeeded"), &json!("Rapide.")), "{done}");
    let summarize = step(&done, "summarize");
    assert_eq!(summarize["usage"], json!({ "input_tokens": 2000, "output_tokens": 100 }));
    assert_eq!(summarize["cost_usd"], json!(0.00036), "gpt-4o-mini: 2000 x $0.15/M + 100 x $0.60/M");
    assert_eq!(summarize["input"]["messages"][0]["content"], "Summarize: Rust is fast.");
    assert_eq!(step(&done, "translate")["cost_usd"], json!(0.000072), "claude-3-5-haiku: 40 x $0.80/M + 10 x $4/M");
    assert_eq!(
        done["totals"],
        json!({ "input_tokens": 2040, "output_tokens": 110, "cost_usd": 0.000432, "unpriced_steps": 0 })
    );
    assert!(!done.to_string().contains("sk-openai-test-0001"), "no key in the execution record");
}

#[tokio::test]
async fn a_redrive_resumes_a_failed_execution_without_calling_succeeded_nodes_again() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/first"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "answer": "one" })))
        .expect(1)
        .mount(&stub)
        .await;
    Mock::given(path("/second")).respond_with(ResponseTemplate::new(500)).up_to_n_times(1).expect(1).mount(&stub).await;
    Mock::given(path("/second"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "answer": "two" })))
        .expect(1)
        .mount(&stub)
        .await;
    let id = t
        .create_workflow(json!({
            "name": "two calls",
            "timeout_seconds": 120,
            "nodes": [
                { "id": "first", "type": "http.request", "config": { "method": "GET", "url": format!("{}/first", stub.uri()) } },
                { "id": "second", "type": "http.request", "config": { "method": "GET", "url": format!("{}/second", stub.uri()) } },
                { "id": "done", "type": "flow.output",
                  "config": { "value": "{{ nodes.first.output.body.answer }} {{ nodes.second.output.body.answer }}" } }
            ],
            "edges": [ { "from": "first", "to": "second" }, { "from": "second", "to": "done" } ]
        }))
        .await;
    let started = start(&t, &id, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let created = execution(&t, &execution_id).await;
    let span = |e: &Value| {
        let at = |k: &str| chrono::DateTime::parse_from_rfc3339(e[k].as_str().unwrap()).unwrap();
        (at("deadline_at") - at("created_at")).num_seconds()
    };
    assert!((119..=121).contains(&span(&created)), "the workflow's own timeout: {created}");
    let executor = loopback_allowed();
    run_worker_with(&t, executor.clone()).await;
    let failed = execution(&t, &execution_id).await;
    assert_eq!((failed["status"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("HTTP_500")));

    t.call(Route::CancelExecution, &[("execution_id", &execution_id)], None)
        .await
        .assert_error(409, "EXECUTION_FINISHED");
    let redriven = t.call(Route::RedriveExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(redriven.status, 202, "{}", redriven.raw);
    assert_eq!((redriven.body["status"].as_str(), redriven.body["redrive_count"].as_u64()), (Some("queued"), Some(1)));
    let queued = execution(&t, &execution_id).await;
    assert_eq!(
        (step(&queued, "first")["status"].as_str(), step(&queued, "second")["status"].as_str()),
        (Some("succeeded"), Some("pending"))
    );
    assert!(queued["error"].is_null() && queued["finished_at"].is_null());
    t.call(Route::RedriveExecution, &[("execution_id", &execution_id)], None)
        .await
        .assert_error(409, "EXECUTION_NOT_REDRIVABLE");

    run_worker_with(&t, executor).await;
    let done = execution(&t, &execution_id).await;
    assert_eq!((done["status"].as_str(), &done["output"]), (Some("succeeded"), &json!("one two")), "{done}");
    assert_eq!(done["redrive_count"], 1);
    t.call(Route::RedriveExecution, &[("execution_id", &execution_id)], None)
        .await
        .assert_error(409, "EXECUTION_NOT_REDRIVABLE");
    t.call(Route::RedriveExecution, &[("execution_id", "01ARZ3NDEKTSV4RRFFQ69G5FAV")], None)
        .await
        .assert_error(404, "EXECUTION_NOT_FOUND");
    // wiremock checks on drop: /first was called once in all, /second twice (500, then 200).
}

#[tokio::test]
async fn the_circuit_opens_after_repeated_failures_and_fails_fast() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/down")).respond_with(ResponseTemplate::new(503)).expect(3).mount(&stub).await;
    let id = t
        .create_workflow(json!({
            "name": "hammer",
            "nodes": [ { "id": "call", "type": "http.request",
                         "config": { "method": "GET", "url": format!("{}/down", stub.uri()) },
                         "retry": { "max_attempts": 6, "initial_delay_ms": 1, "max_delay_ms": 5, "jitter": false } } ]
        }))
        .await;
    let executor = deployed_like(&t, nodeai::nodes::breaker::CircuitBreakers::new(3, Duration::from_secs(60))).await;
    let started = start(&t, &id, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    run_worker_for(&t, &executor, Duration::from_secs(60)).await;
    let failed = execution(&t, &execution_id).await;
    assert_eq!(failed["error"]["code"], "CIRCUIT_OPEN", "{failed}");
    assert_eq!(step(&failed, "call")["attempts"], 4, "three calls reached the host, the fourth failed fast");
    // A second execution on the same warm worker fails fast without calling the host at all.
    let again = start(&t, &id, json!({ "version": "draft" })).await;
    let again_id = again.body["execution_id"].as_str().unwrap().to_string();
    run_worker_for(&t, &executor, Duration::from_secs(60)).await;
    assert_eq!(step(&execution(&t, &again_id).await, "call")["attempts"], 1);
    stub.verify().await;
}

#[tokio::test]
async fn with_a_short_time_budget_a_chain_of_slow_calls_completes_across_several_invocations() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/step"))
        .respond_with(ResponseTemplate::new(200).set_body_string("s").set_delay(Duration::from_millis(400)))
        .expect(6)
        .mount(&stub)
        .await;
    let url = format!("{}/step", stub.uri());
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for i in 0..6 {
        nodes.push(json!({ "id": format!("n{i}"), "type": "http.request", "config": { "method": "GET", "url": url } }));
        if i > 0 {
            edges.push(json!({ "from": format!("n{}", i - 1), "to": format!("n{i}") }));
        }
    }
    nodes.push(json!({ "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.n5.output.body }}" } }));
    edges.push(json!({ "from": "n5", "to": "done" }));
    let id = t.create_workflow(json!({ "name": "long chain", "nodes": nodes, "edges": edges })).await;
    let started = start(&t, &id, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    // One second more than the checkpoint margin: nodes start during that second only, then
    // the worker checkpoints and sends itself a continuation through SQS.
    let executor = loopback_allowed();
    let mut invocations = 0;
    let budget = nodeai::worker::CHECKPOINT_MARGIN + Duration::from_secs(1);
    while invocations < 30 && run_worker_for(&t, &executor, budget).await > 0 {
        invocations += 1;
    }
    let done = execution(&t, &execution_id).await;
    assert_eq!((done["status"].as_str(), &done["output"]), (Some("succeeded"), &json!("s")), "{done}");
    assert!(invocations >= 2, "continued across invocations: {invocations}");
    // Each call was made once across the invocations (wiremock checks `expect(6)` on drop).
}

/// Three http.request nodes in a chain against one loopback stub; `/slow` takes `delay`.
fn three_calls(stub: &str) -> Value {
    json!({
        "name": "three calls",
        "nodes": [
            { "id": "one", "type": "http.request", "config": { "method": "GET", "url": format!("{stub}/one") } },
            { "id": "two", "type": "http.request", "config": { "method": "GET", "url": format!("{stub}/two") } },
            { "id": "slow", "type": "http.request", "config": { "method": "GET", "url": format!("{stub}/slow") } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.slow.output.body }}" } }
        ],
        "edges": [ { "from": "one", "to": "two" }, { "from": "two", "to": "slow" }, { "from": "slow", "to": "done" } ]
    })
}

/// The SQS message of the one queued execution, as an event of `copies` records.
async fn queued_event(t: &TestApp, copies: usize) -> SqsEvent {
    let client = sqs_client().await;
    let out = client.receive_message().queue_url(&t.queue_url).max_number_of_messages(1).send().await.unwrap();
    let message = out.messages.unwrap_or_default().pop().expect("one queued message");
    let mut event = SqsEvent::default();
    for copy in 0..copies {
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("{}-{copy}", message.message_id.clone().unwrap_or_default()));
        record.body = message.body.clone();
        event.records.push(record);
    }
    event
}

#[tokio::test]
async fn the_same_message_twice_concurrently_calls_each_side_effecting_node_once() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    for (route, delay) in [("/one", 0), ("/two", 0), ("/slow", 300)] {
        Mock::given(path(route))
            .respond_with(ResponseTemplate::new(200).set_body_string("ok").set_delay(Duration::from_millis(delay)))
            .expect(1)
            .mount(&stub)
            .await;
    }
    let id = t.create_workflow(three_calls(&stub.uri())).await;
    let started = start(&t, &id, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let (executor, queue) = (loopback_allowed(), SqsExecutionQueue::new(sqs_client().await, t.queue_url.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    // Two workers get the same message at once (SQS delivers at least once).
    let (a, b) = tokio::join!(
        nodeai::worker::handle_batch(
            t.store.as_ref(),
            &executor,
            &queue,
            queued_event(&t, 1).await,
            "worker-a",
            deadline,
            &RunningLimits::DEFAULT
        ),
        async {
            let event = redelivery(&t, &execution_id);
            nodeai::worker::handle_batch(
                t.store.as_ref(),
                &executor,
                &queue,
                event,
                "worker-b",
                deadline,
                &RunningLimits::DEFAULT,
            )
            .await
        }
    );
    let failures = a.batch_item_failures.len() + b.batch_item_failures.len();
    assert!(failures <= 1, "at most the delivery that found the lease taken comes back: {failures}");
    // Whatever came back is redelivered later and finds the execution finished.
    let event = redelivery(&t, &execution_id);
    let again = nodeai::worker::handle_batch(
        t.store.as_ref(),
        &executor,
        &queue,
        event,
        "worker-c",
        deadline,
        &RunningLimits::DEFAULT,
    )
    .await;
    assert!(again.batch_item_failures.is_empty());
    let done = execution(&t, &execution_id).await;
    assert_eq!((done["status"].as_str(), &done["output"]), (Some("succeeded"), &json!("ok")), "{done}");
    stub.verify().await; // each stub route was called exactly once
}

/// The execution's message delivered once more, as SQS may at any time.
fn redelivery(t: &TestApp, execution_id: &str) -> SqsEvent {
    let message = nodeai::queue::ExecutionMessage {
        tenant_id: t.tenant_id.clone(),
        execution_id: execution_id.to_string(),
        request_id: "redelivered".into(),
    };
    let mut record = SqsMessage::default();
    record.message_id = Some(format!("redelivered-{}", nodeai::model::new_id()));
    record.body = Some(serde_json::to_string(&message).unwrap());
    let mut event = SqsEvent::default();
    event.records.push(record);
    event
}

#[tokio::test]
async fn a_worker_that_dies_after_two_checkpoints_is_resumed_without_calling_them_again() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    for route in ["/one", "/two"] {
        Mock::given(path(route))
            .respond_with(ResponseTemplate::new(200).set_body_string(route))
            .expect(1)
            .mount(&stub)
            .await;
    }
    // The first call to /slow never answers in time: the worker dies while waiting for it.
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_body_string("late").set_delay(Duration::from_secs(30)))
        .up_to_n_times(1)
        .mount(&stub)
        .await;
    Mock::given(path("/slow")).respond_with(ResponseTemplate::new(200).set_body_string("ok")).mount(&stub).await;
    let id = t.create_workflow(three_calls(&stub.uri())).await;
    let started = start(&t, &id, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let (executor, queue) = (loopback_allowed(), SqsExecutionQueue::new(sqs_client().await, t.queue_url.clone()));
    // An invocation with 1 s more than the checkpoint margin left, killed after 0.8 s: nodes one
    // and two are recorded, slow is in flight, nothing is released (a dead Lambda cleans
    // nothing up), so its lease holds for its remaining time + 1 s.
    let event = queued_event(&t, 1).await;
    let budget = Instant::now() + nodeai::worker::CHECKPOINT_MARGIN + Duration::from_secs(1);
    let dying = nodeai::worker::handle_batch(
        t.store.as_ref(),
        &executor,
        &queue,
        event,
        "dies",
        budget,
        &RunningLimits::DEFAULT,
    );
    assert!(tokio::time::timeout(Duration::from_millis(800), dying).await.is_err(), "the worker was killed mid-run");
    let midway = execution(&t, &execution_id).await;
    assert_eq!(
        (
            step(&midway, "one")["status"].as_str(),
            step(&midway, "two")["status"].as_str(),
            step(&midway, "slow")["status"].as_str()
        ),
        (Some("succeeded"), Some("succeeded"), Some("pending"))
    );
    // A redelivery while the dead worker's lease holds is left for later ...
    let deadline = Instant::now() + Duration::from_secs(60);
    let early = nodeai::worker::handle_batch(
        t.store.as_ref(),
        &executor,
        &queue,
        redelivery(&t, &execution_id),
        "early",
        deadline,
        &RunningLimits::DEFAULT,
    )
    .await;
    assert_eq!(early.batch_item_failures.len(), 1, "the lease is still held");
    // ... and one after it expired resumes the run.
    tokio::time::sleep(budget.saturating_duration_since(Instant::now()) + Duration::from_secs(2)).await;
    let event = redelivery(&t, &execution_id);
    let deadline = Instant::now() + Duration::from_secs(60);
    let resumed = nodeai::worker::handle_batch(
        t.store.as_ref(),
        &executor,
        &queue,
        event,
        "resumes",
        deadline,
        &RunningLimits::DEFAULT,
    )
    .await;
    assert!(resumed.batch_item_failures.is_empty(), "{:?}", resumed.batch_item_failures);
    let done = execution(&t, &execution_id).await;
    assert_eq!((done["status"].as_str(), &done["output"]), (Some("succeeded"), &json!("ok")), "{done}");
    stub.verify().await; // /one and /two were called once, before the crash
}

#[tokio::test]
async fn every_record_of_an_execution_expires_and_a_redrive_needs_a_day_past_its_new_deadline() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::with_settings(&[("EXECUTION_RETENTION_DAYS", "3")]).await;
    let stub = MockServer::start().await;
    Mock::given(path("/call")).respond_with(ResponseTemplate::new(200).set_body_string("ok")).mount(&stub).await;
    // A side-effecting step (its own item), then a pure one that fails (a bulk item).
    let id = t
        .create_workflow(json!({
            "name": "expiring",
            "nodes": [
                { "id": "call", "type": "http.request", "config": { "method": "GET", "url": format!("{}/call", stub.uri()) } },
                { "id": "oops", "type": "text.template", "config": { "template": "{{ input.missing }}" } }
            ],
            "edges": [ { "from": "call", "to": "oops" } ]
        }))
        .await;
    let started = start(&t, &id, json!({ "version": "draft" })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    run_worker_with(&t, loopback_allowed()).await;
    let failed = execution(&t, &execution_id).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    // Retention counts from the deadline (15 minutes after the start here).
    let deadline = chrono::DateTime::parse_from_rfc3339(failed["deadline_at"].as_str().unwrap()).unwrap();
    let in_three_days = deadline.timestamp() + 3 * 24 * 3600;
    let expires_at = chrono::DateTime::parse_from_rfc3339(failed["expires_at"].as_str().unwrap()).unwrap();
    assert!((expires_at.timestamp() - in_three_days).abs() < 120, "{failed}");

    // On the table: the execution, its snapshot and every step item carry DynamoDB's ttl.
    let client = nodeai_tests::dynamo_client().await;
    let ttl = |item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        item.get("ttl").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok())
    };
    let record = client
        .get_item()
        .table_name(t.store.table())
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{}", t.tenant_id)))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(format!("EX#{execution_id}")))
        .send()
        .await
        .unwrap()
        .item
        .expect("the execution item");
    assert_eq!(ttl(&record), Some(expires_at.timestamp()));
    let children = client
        .query()
        .table_name(t.store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{}#EX#{execution_id}", t.tenant_id)),
        )
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let sort_keys: Vec<&str> = children.iter().filter_map(|i| i.get("sk")?.as_s().ok().map(String::as_str)).collect();
    assert!(sort_keys.contains(&"DEF") && sort_keys.contains(&"STEP#call"), "{sort_keys:?}");
    assert!(sort_keys.iter().any(|sk| sk.starts_with("STEP#~")), "the failed pure step rides in a bulk item");
    // The snapshot and the bulk steps are stored deflated (binary), and read back as written.
    for (sk_prefix, attribute) in [("DEF", "definition"), ("STEP#~", "bulk_steps")] {
        let item = children
            .iter()
            .find(|i| i.get("sk").and_then(|v| v.as_s().ok()).is_some_and(|sk| sk.starts_with(sk_prefix)));
        assert!(item.and_then(|i| i.get(attribute)).is_some_and(|v| v.is_b()), "{sk_prefix} {attribute} is binary");
    }
    assert_eq!(step(&failed, "oops")["error"]["code"], "TEMPLATE_UNDEFINED_VARIABLE", "{failed}");
    for item in &children {
        let expiry = ttl(item).unwrap_or_else(|| panic!("no ttl on {:?}", item.get("sk")));
        assert!(expiry >= expires_at.timestamp(), "{:?} expires before its execution", item.get("sk"));
        // Steps are kept 30 days (the longest execution timeout) longer, so none can expire
        // before a waiting execution does.
        let longest = nodeai::model::MAX_WAITING_EXECUTION_TIMEOUT.as_secs() as i64;
        assert!(expiry - in_three_days < 120 + longest, "{:?} is kept about as long as its execution", item.get("sk"));
    }
    // Three days left: redrivable. With a day left, a redrive's new deadline (15 minutes away)
    // would come less than REDRIVE_MARGIN (a day) before its records expire: refused.
    let redriven = t.call(Route::RedriveExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(redriven.status, 202, "{}", redriven.raw);
    let ending = nodeai::model::ExecutionRecord {
        status: nodeai::model::ExecutionStatus::Failed,
        ..nodeai::model::ExecutionRecord::queued(&t.tenant_id, &id, None, json!({}), "r", Duration::from_secs(60))
            .retained_for(Duration::from_secs(24 * 3600))
    };
    let snapshot = serde_json::from_value(json!({ "name": "s", "nodes": [
        { "id": "out", "type": "flow.output", "config": { "value": "x" } } ] }))
    .unwrap();
    nodeai::store::ExecutionStore::create_execution(t.store.as_ref(), &ending, &snapshot).await.unwrap();
    let refused = t.call(Route::RedriveExecution, &[("execution_id", &ending.execution_id)], None).await;
    refused.assert_error(409, "EXECUTION_NOT_REDRIVABLE");
    assert!(refused.raw.contains("expire"), "{}", refused.raw);

    // Past its expiry, with TTL having deleted its snapshot but not yet the execution item (TTL
    // keeps no order): gone everywhere, a 404 and never a 500 for the missing snapshot.
    let expired = nodeai::model::ExecutionRecord {
        status: nodeai::model::ExecutionStatus::Failed,
        expires_at: Some(nodeai::model::rfc3339_in(-1)),
        ..nodeai::model::ExecutionRecord::queued(&t.tenant_id, &id, None, json!({}), "r", Duration::from_secs(60))
    };
    nodeai::store::ExecutionStore::create_execution(t.store.as_ref(), &expired, &snapshot).await.unwrap();
    client
        .delete_item()
        .table_name(t.store.table())
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{}#EX#{}", t.tenant_id, expired.execution_id)))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("DEF".into()))
        .send()
        .await
        .unwrap();
    for route in [Route::GetExecution, Route::CancelExecution, Route::RedriveExecution] {
        t.call(route, &[("execution_id", &expired.execution_id)], None).await.assert_error(404, "EXECUTION_NOT_FOUND");
    }
    let listed = t.call(Route::ListExecutions, &[("workflow_id", &id)], None).await;
    let ids: Vec<&str> =
        listed.body["items"].as_array().unwrap().iter().filter_map(|e| e["execution_id"].as_str()).collect();
    assert!(ids.contains(&execution_id.as_str()) && !ids.contains(&expired.execution_id.as_str()), "{ids:?}");
}

/// Issue 9's case: an http.request answered with a 900 KB JSON body, read by the next node. Large
/// values (the input, the body, the execution's output) go to S3; nodes see them whole; GET shows
/// references and the value route hands each one back whole.
#[tokio::test]
async fn large_values_go_through_s3_and_nodes_always_see_them_whole() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    let items: Vec<String> = (0..900).map(|i| format!("{i:04}{}", "x".repeat(996))).collect();
    let body = json!({ "kind": "list", "items": items });
    Mock::given(path("/big")).respond_with(ResponseTemplate::new(200).set_body_json(&body)).mount(&stub).await;
    let workflow = json!({
        "name": "big",
        "nodes": [
            { "id": "h", "type": "http.request", "config": { "method": "GET", "url": format!("{}/big", stub.uri()) } },
            { "id": "t", "type": "text.template",
              "config": { "template": "{{ nodes.h.output.status }} {{ nodes.h.output.body['items'] | length }} {{ input.blob | length }}" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.h.output.body }}" } }
        ],
        "edges": [ { "from": "h", "to": "t" }, { "from": "t", "to": "done" } ]
    });
    let id = t.create_workflow(workflow).await;
    let blob = "y".repeat(300_000);
    let started = start(&t, &id, json!({ "version": "draft", "input": { "blob": blob } })).await;
    assert_eq!(started.status, 202, "{}", started.raw);
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    run_worker_with(&t, loopback_allowed()).await;
    let done = execution(&t, &execution_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // The next node saw the whole body (and the whole input), not a preview.
    assert_eq!(step(&done, "t")["output"]["text"], "200 900 300000");
    // GET shows references to what is large, never the values themselves.
    let link = |name: &str| format!("/v1/executions/{execution_id}/values/{name}");
    assert_eq!(step(&done, "h")["output"]["ref"], link("h.output"));
    assert!(step(&done, "h")["output"]["size_bytes"].as_u64().unwrap() > 900_000);
    assert_eq!(done["input"]["ref"], link("input"));
    assert_eq!(done["output"]["ref"], link("output"));
    // The value route: small ones inline (200), large ones through a presigned URL (303).
    let value = |name: &'static str| {
        let (t, execution_id) = (&t, execution_id.clone());
        async move { t.call(Route::GetExecutionValue, &[("execution_id", &execution_id), ("value", name)], None).await }
    };
    let small = value("t.output").await;
    assert_eq!((small.status, &small.body), (200, &json!({ "text": "200 900 300000" })));
    for (name, whole) in [("h.output", None), ("output", Some(body.clone())), ("input", Some(json!({ "blob": blob })))]
    {
        let reply = value(name).await;
        assert_eq!(reply.status, 303, "{name}: {}", reply.raw);
        let url = reply.header("location").expect("a Location").to_string();
        assert_eq!(reply.body["url"], url.as_str());
        let fetched: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        match whole {
            Some(expected) => assert_eq!(fetched, expected, "{name}"),
            None => assert_eq!((fetched["status"].as_u64(), &fetched["body"]), (Some(200), &body), "{name}"),
        }
    }
    for missing in ["nope.output", "h.elsewhere", "steps", "t"] {
        value(missing).await.assert_error(404, "VALUE_NOT_FOUND");
    }
    // Another tenant sees nothing.
    let (_, other_key) = t.other_tenant().await;
    let spec = RequestSpec::new(&[("execution_id", &execution_id), ("value", "output")]).key(&other_key);
    t.send(Route::GetExecutionValue, spec).await.assert_error(404, "EXECUTION_NOT_FOUND");
}

/// A tenant can write a value shaped like a stored reference, naming another tenant's key: it is
/// data, never followed (no presigned URL, no read on resume).
#[tokio::test]
async fn a_forged_value_reference_is_data_and_never_followed() {
    let t = TestApp::new().await;
    let forged =
        json!({ "$nodeai_ref": { "key": "executions/01VICTIMTENANT/01VICTIMEXEC/output.json", "size_bytes": 1 } });
    let workflow = json!({
        "name": "forge",
        "nodes": [
            { "id": "f", "type": "data.json", "config": { "source": forged, "pick": "" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ input.r }}" } }
        ],
        "edges": [ { "from": "f", "to": "done" } ]
    });
    let id = t.create_workflow(workflow).await;
    let started = start(&t, &id, json!({ "version": "draft", "input": { "r": forged } })).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    run_worker(&t).await;
    let done = execution(&t, &execution_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(step(&done, "f")["output"], forged, "shown as the data it is, not as a link");
    assert_eq!(done["output"], forged);
    for name in ["f.output", "output", "input"] {
        let reply = t.call(Route::GetExecutionValue, &[("execution_id", &execution_id), ("value", name)], None).await;
        assert_eq!(reply.status, 200, "{name}: no redirect to someone else's value: {}", reply.raw);
        assert!(reply.header("location").is_none());
    }
}
