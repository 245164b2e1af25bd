//! End to end over HTTP through `cargo lambda watch` (started by scripts/test, which sets
//! NODEAI_E2E_URL and TABLE_NAME). Ignored in a plain `cargo test`; scripts/test runs it with
//! `--run-ignored only`.

use nodeai_tests::sample_definition;
use nodeai_tests::stack::Stack;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn the_readme_walk_through_works_over_http() {
    let stack = Stack::start().await;

    let (status, _, body) = stack.send(Method::GET, "/health/ready", None, false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"][0]["status"], "ok");

    let (status, headers, created) =
        stack.send(Method::POST, "/v1/workflows", Some(sample_definition("e2e")), true).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(headers["etag"], "\"1\"");
    assert!(headers.contains_key("x-request-id"));
    let id = created["id"].as_str().unwrap().to_string();

    let mut broken = sample_definition("broken");
    broken["edges"] = json!([ { "from": "fetch", "to": "nowhere" } ]);
    let (status, _, body) = stack.send(Method::POST, "/v1/workflows", Some(broken), true).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "VALIDATION_FAILED");
    assert!(body["error"]["details"].as_array().unwrap().iter().any(|d| d["code"] == "EDGE_UNKNOWN_NODE"));

    let (status, _, version) = stack.send(Method::POST, &format!("/v1/workflows/{id}/versions"), None, true).await;
    assert_eq!(status, 201, "{version}");
    assert_eq!(version["version"], 1);

    let (status, _, deployed) =
        stack.send(Method::PUT, &format!("/v1/workflows/{id}/deployment"), Some(json!({ "version": 1 })), true).await;
    assert_eq!(status, 200, "{deployed}");
    assert_eq!(deployed["deployed_version"], 1);

    let (status, _, listed) = stack.send(Method::GET, "/v1/workflows?limit=10&tag=demo", None, true).await;
    assert_eq!(status, 200, "{listed}");
    assert!(listed["items"].as_array().unwrap().iter().any(|w| w["id"] == id.as_str()), "{listed}");

    let (status, _, body) = stack.send(Method::GET, &format!("/v1/workflows/{id}/versions/1"), None, true).await;
    assert_eq!((status.as_u16(), body["definition"]["name"].as_str()), (200, Some("e2e")));
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn errors_over_http_use_the_envelope() {
    let stack = Stack::start().await;

    let (status, _, body) = stack.send(Method::GET, "/v1/workflows", None, false).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "UNAUTHORIZED");

    let (status, headers, body) = stack.send(Method::PATCH, "/v1/workflows", None, true).await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
    assert_eq!(headers["allow"], "POST, GET");

    let (status, _, body) = stack.send(Method::GET, "/v9/nothing/here", None, true).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "ROUTE_NOT_FOUND");

    let response = stack
        .http
        .post(format!("{}/v1/workflows", stack.base))
        .bearer_auth(&stack.key)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INVALID_JSON");
    assert!(body["error"]["message"].as_str().unwrap().contains("line 1"));

    let (status, _, body) = stack.send(Method::GET, "/v1/workflows/01ARZ3NDEKTSV4RRFFQ69G5FAV", None, true).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "WORKFLOW_NOT_FOUND");
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn an_execution_runs_through_the_queue_and_the_worker() {
    let stack = Stack::start().await;
    let definition: Value =
        serde_json::from_str(include_str!("../../events/fixtures/greeting-workflow.json")).expect("fixture parses");
    let (status, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, _, started) = stack
        .send(
            Method::POST,
            &format!("/v1/workflows/{id}/executions"),
            Some(json!({ "input": { "name": "Ada", "vip": true }, "version": "draft" })),
            true,
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let last = stack.finished(started["execution_id"].as_str().unwrap()).await;
    assert_eq!(last["status"], "succeeded", "{last}");
    assert_eq!(last["output"]["name"], "Ada");
    let steps = last["steps"].as_array().unwrap();
    let status_of = |node: &str| steps.iter().find(|s| s["node_id"] == node).unwrap()["status"].clone();
    assert_eq!((status_of("vip"), status_of("regular")), (json!("succeeded"), json!("skipped")));
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn the_summarize_example_calls_the_page_and_an_openai_stub_once_each() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let stack = Stack::start().await;
    // One loopback server plays both the page and the OpenAI-compatible provider; the stack's
    // worker allow-lists 127.0.0.1 (HTTP_ALLOWED_PRIVATE_HOSTS in scripts/test).
    let stub = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200).set_body_string("NodeAI runs workflows durably."))
        .expect(1)
        .mount(&stub)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-e2e-stub-0000"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-e2e", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [ { "index": 0, "message": { "role": "assistant", "content": "Durable workflows." },
                           "finish_reason": "stop" } ],
            "usage": { "prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34 } })))
        .expect(1)
        .mount(&stub)
        .await;
    let credential =
        json!({ "provider": "openai", "api_key": "sk-e2e-stub-0000", "base_url": format!("{}/v1", stub.uri()) });
    let (status, _, body) = stack.send(Method::PUT, "/v1/credentials/openai-main", Some(credential), true).await;
    assert_eq!(status, 201, "{body}");
    let definition: Value =
        serde_json::from_str(include_str!("../../events/fixtures/summarize-workflow.json")).expect("fixture parses");
    let (status, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let input = json!({ "input": { "url": format!("{}/page", stub.uri()) }, "version": "draft" });
    let (status, _, started) =
        stack.send(Method::POST, &format!("/v1/workflows/{id}/executions"), Some(input), true).await;
    assert_eq!(status, 202, "{started}");
    let last = stack.finished(started["execution_id"].as_str().unwrap()).await;
    assert_eq!((last["status"].as_str(), &last["output"]), (Some("succeeded"), &json!("Durable workflows.")), "{last}");
    assert_eq!(last["totals"]["input_tokens"], 30);
    assert_eq!(last["totals"]["cost_usd"], json!(0.0000069), "gpt-4o-mini: 30 x $0.15/M + 4 x $0.60/M");
    stub.verify().await;
}
