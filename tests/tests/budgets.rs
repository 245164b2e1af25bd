//! Budgets enforced before the money is spent: the tenant's month (conditional reservations in
//! DynamoDB on the emulator), an execution's `max_cost_usd`, and 402 on new starts.

use nodeai::api::Route;
use nodeai_tests::{TestApp, deployed_like, run_worker_for};
use serde_json::{Value, json};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// `budget-model` costs nothing per input token and $8 per million output tokens: a call with
/// `max_tokens: 1000` reserves exactly $0.008, and one that answers 500 tokens costs $0.004.
const PRICES: &str = r#"{"budget-model": [0, 8]}"#;

async fn app_with_provider() -> (TestApp, MockServer) {
    let t = TestApp::with_settings(&[("MODEL_PRICES", PRICES)]).await;
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "budget-model",
            "choices": [ { "index": 0, "message": { "role": "assistant", "content": "ok" }, "finish_reason": "stop" } ],
            "usage": { "prompt_tokens": 12, "completion_tokens": 500, "total_tokens": 512 } })))
        .mount(&provider)
        .await;
    let credential =
        json!({ "provider": "openai", "api_key": "sk-budget-test", "base_url": format!("{}/v1", provider.uri()) });
    let stored = t.call(Route::PutCredential, &[("name", "main")], Some(credential)).await;
    assert_eq!(stored.status, 201, "{}", stored.raw);
    (t, provider)
}

fn ask(id: &str, model: &str) -> Value {
    json!({ "id": id, "type": "llm.chat", "config": { "credential": "main", "model": model, "max_tokens": 1000,
            "messages": [ { "role": "user", "content": "Say ok" } ] } })
}

async fn start(t: &TestApp, workflow_id: &str) -> nodeai_tests::Reply {
    t.call(Route::StartExecution, &[("workflow_id", workflow_id)], Some(json!({ "version": "draft" }))).await
}

async fn execution(t: &TestApp, id: &str) -> Value {
    t.call(Route::GetExecution, &[("execution_id", id)], None).await.body
}

fn step_error(execution: &Value, node: &str) -> Value {
    let steps = execution["steps"].as_array().unwrap();
    steps.iter().find(|s| s["node_id"] == node).map(|s| s["error"]["code"].clone()).unwrap_or(Value::Null)
}

async fn calls(provider: &MockServer) -> usize {
    provider.received_requests().await.unwrap_or_default().len()
}

#[tokio::test]
async fn with_a_cent_left_two_concurrent_calls_of_eight_tenths_of_it_make_exactly_one() {
    let (t, provider) = app_with_provider().await;
    let put = json!({ "monthly_usd": 0.01, "alert_at_percent": [40], "on_exceed": "block_new_runs" });
    let set = t.call(Route::PutBudget, &[], Some(put)).await;
    assert_eq!((set.status, set.body["remaining_usd"].as_f64()), (200, Some(0.01)), "{}", set.raw);
    let workflow = t.create_workflow(json!({ "name": "one call", "nodes": [ask("ask", "budget-model")] })).await;
    let (a, b) = (start(&t, &workflow).await, start(&t, &workflow).await);
    assert_eq!((a.status, b.status), (202, 202));
    // One worker batch takes both: the two runs reserve against the same month at once.
    run_worker_for(&t, &deployed_like(&t, Default::default()).await, Duration::from_secs(60)).await;
    run_worker_for(&t, &deployed_like(&t, Default::default()).await, Duration::from_secs(60)).await;
    assert_eq!(calls(&provider).await, 1, "exactly one call was made");
    let ends = [
        execution(&t, a.body["execution_id"].as_str().unwrap()).await,
        execution(&t, b.body["execution_id"].as_str().unwrap()).await,
    ];
    let statuses: Vec<_> = ends.iter().map(|e| e["status"].as_str().unwrap().to_string()).collect();
    assert!(statuses.contains(&"succeeded".to_string()) && statuses.contains(&"failed".to_string()), "{statuses:?}");
    let refused = ends.iter().find(|e| e["status"] == "failed").unwrap();
    assert_eq!(step_error(refused, "ask"), "BUDGET_EXCEEDED", "{refused}");
    // Settled: the call cost $0.004 of its $0.008 reservation; the rest returned to the budget.
    let read = t.call(Route::GetBudget, &[], None).await;
    let spend =
        (read.body["spent_usd"].as_f64(), read.body["reserved_usd"].as_f64(), read.body["remaining_usd"].as_f64());
    assert_eq!(spend, (Some(0.004), Some(0.0), Some(0.006)), "{}", read.raw);
    assert_eq!(read.body["alerts_sent"], json!([40]), "40% of $0.01 was crossed: {}", read.raw);
    // Spend has reached a budget lowered to it: new starts are refused until it is raised.
    let lowered = json!({ "monthly_usd": 0.004, "on_exceed": "block_new_runs" });
    assert_eq!(t.call(Route::PutBudget, &[], Some(lowered)).await.status, 200);
    let blocked = start(&t, &workflow).await;
    blocked.assert_error(402, "BUDGET_EXCEEDED");
    let raised = json!({ "monthly_usd": 1, "on_exceed": "block_new_runs" });
    assert_eq!(t.call(Route::PutBudget, &[], Some(raised)).await.status, 200);
    assert_eq!(start(&t, &workflow).await.status, 202, "raised: runs start again");
}

#[tokio::test]
async fn max_cost_usd_stops_a_run_before_the_call_that_would_cross_it() {
    let (t, provider) = app_with_provider().await;
    let workflow = t
        .create_workflow(json!({
            "name": "two calls", "max_cost_usd": 0.01,
            "nodes": [ask("first", "budget-model"), ask("second", "budget-model")],
            "edges": [ { "from": "first", "to": "second" } ]
        }))
        .await;
    let started = start(&t, &workflow).await;
    run_worker_for(&t, &deployed_like(&t, Default::default()).await, Duration::from_secs(60)).await;
    let done = execution(&t, started.body["execution_id"].as_str().unwrap()).await;
    // The first cost $0.004; the second's worst case ($0.008) would take the run to $0.012.
    assert_eq!(calls(&provider).await, 1, "{done}");
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(step_error(&done, "second"), "BUDGET_EXCEEDED", "{done}");
    assert_eq!(done["totals"]["cost_usd"].as_f64(), Some(0.004));
    // Out of range values are refused when the workflow is saved.
    let bad = t
        .call(Route::CreateWorkflow, &[], Some(json!({ "name": "x", "max_cost_usd": -1, "nodes": [ask("a", "m")] })))
        .await;
    assert_eq!(bad.status, 422, "{}", bad.raw);
}

#[tokio::test]
async fn under_a_budget_a_model_with_no_price_is_refused_and_bad_budgets_are_400s() {
    let (t, provider) = app_with_provider().await;
    assert_eq!(t.call(Route::PutBudget, &[], Some(json!({ "monthly_usd": 5 }))).await.status, 200);
    let workflow = t.create_workflow(json!({ "name": "unpriced", "nodes": [ask("ask", "mystery-model")] })).await;
    let started = start(&t, &workflow).await;
    run_worker_for(&t, &deployed_like(&t, Default::default()).await, Duration::from_secs(60)).await;
    let done = execution(&t, started.body["execution_id"].as_str().unwrap()).await;
    assert_eq!(step_error(&done, "ask"), "MODEL_UNPRICED", "{done}");
    assert_eq!(calls(&provider).await, 0);
    for bad in [
        json!({ "monthly_usd": 0 }),
        json!({ "monthly_usd": -3 }),
        json!({ "monthly_usd": 5, "alert_at_percent": [0] }),
        json!({ "monthly_usd": 5, "on_exceed": "panic" }),
        json!({ "monthly_usd": 5, "extra": true }),
        json!({}),
    ] {
        let answer = t.call(Route::PutBudget, &[], Some(bad.clone())).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.raw);
        assert!(answer.body["error"]["code"].is_string(), "{}", answer.raw);
    }
    let (_, other_key) = t.other_tenant().await;
    let theirs = t.send(Route::GetBudget, nodeai_tests::RequestSpec::new(&[]).key(&other_key)).await;
    assert_eq!((theirs.status, &theirs.body["monthly_usd"]), (200, &Value::Null), "another tenant has no budget");
}

/// The forecast route reads the workflow's past executions: after three runs whose model
/// answered 100, 300 and 200 tokens, the median is 200 and the 95th percentile 300; no model is
/// called by the forecast itself.
#[tokio::test]
async fn the_forecast_takes_its_history_from_the_recorded_executions() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let t = TestApp::with_settings(&[("MODEL_PRICES", PRICES)]).await;
    let provider = MockServer::start().await;
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(move |_: &wiremock::Request| {
            let tokens = [100, 300, 200][counter.fetch_add(1, Ordering::SeqCst) % 3];
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "c", "object": "chat.completion", "model": "budget-model",
                "choices": [ { "index": 0, "message": { "role": "assistant", "content": "ok" }, "finish_reason": "stop" } ],
                "usage": { "prompt_tokens": 12, "completion_tokens": tokens } }))
        })
        .mount(&provider)
        .await;
    let credential =
        json!({ "provider": "openai", "api_key": "sk-forecast", "base_url": format!("{}/v1", provider.uri()) });
    assert_eq!(t.call(Route::PutCredential, &[("name", "main")], Some(credential)).await.status, 201);
    let workflow = t.create_workflow(json!({ "name": "forecast me", "nodes": [ask("ask", "budget-model")] })).await;
    for _ in 0..3 {
        assert_eq!(start(&t, &workflow).await.status, 202);
        run_worker_for(&t, &deployed_like(&t, Default::default()).await, Duration::from_secs(60)).await;
    }
    let body = json!({ "input": {}, "version": "draft" });
    let answer = t.call(Route::ForecastWorkflow, &[("workflow_id", workflow.as_str())], Some(body)).await;
    assert_eq!(answer.status, 200, "{}", answer.raw);
    assert_eq!(calls(&provider).await, 3, "the forecast called no model");
    let node = &answer.body["nodes"][0];
    assert_eq!(
        node["observed"],
        json!({ "executions": 3, "ran": 3, "output_tokens_min": 100,
                                         "output_tokens_median": 200, "output_tokens_p95": 300 }),
        "{}",
        answer.raw
    );
    // budget-model: output at $8/M, input free: low 100, expected 200, high 1000 (max_tokens) output tokens.
    assert_eq!(node["cost_usd"], json!({ "low": 0.0008, "expected": 0.0016, "high": 0.008 }), "{}", answer.raw);
    assert_eq!(answer.body["history_executions"], 3);
    let unknown =
        t.call(Route::ForecastWorkflow, &[("workflow_id", "01JDX7Q5ZK3V4M8N2P6R9T0W1Y")], Some(json!({}))).await;
    unknown.assert_error(404, "WORKFLOW_NOT_FOUND");
}
