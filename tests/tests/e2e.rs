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

/// Waits parked on: the node ids of `waiting_on`.
/// Whether an execution reading has a final status (succeeded, failed, cancelled, timed_out).
fn is_final(execution: &Value) -> bool {
    matches!(execution["status"].as_str(), Some("succeeded" | "failed" | "cancelled" | "timed_out"))
}

fn parked_on(execution: &Value) -> Vec<String> {
    execution["waiting_on"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["node_id"].as_str())
        .map(String::from)
        .collect()
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn waits_and_an_approval_run_through_the_local_stack() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let stack = Stack::start().await;
    // The approval's notification goes to a loopback stub (a Slack webhook stand-in).
    let notified = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/notify"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&notified)
        .await;
    // 2 s rides an SQS delay; 6 s is over the stack's WAIT_SQS_MAX_DELAY_SECONDS (3), so it is
    // an EventBridge Scheduler one-time schedule that scripts/scheduler.py fires.
    let definition = json!({
        "name": "approve a refund",
        "timeout_seconds": 600,
        "nodes": [
            { "id": "short", "type": "flow.wait", "config": { "seconds": 2 } },
            { "id": "long", "type": "flow.wait", "config": { "seconds": "{{ input.long }}" } },
            { "id": "approve", "type": "flow.approval", "config": {
                "timeout_seconds": 600,
                "payload_schema": { "type": "object", "required": ["approved"],
                                    "properties": { "approved": { "type": "boolean" }, "comment": { "type": "string" } } },
                "notify": { "method": "POST", "url": format!("{}/notify", notified.uri()),
                            "body": { "text": "Refund {{ input.amount }}? {{ callback.url }}" } } } },
            { "id": "done", "type": "flow.output",
              "config": { "value": { "approved": "{{ nodes.approve.output.approved }}", "comment": "{{ nodes.approve.output.comment }}" } } }
        ],
        "edges": [ { "from": "short", "to": "long" }, { "from": "long", "to": "approve" }, { "from": "approve", "to": "done" } ]
    });
    let (status, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let input = json!({ "version": "draft", "input": { "amount": "$40", "long": 6 } });
    let (status, _, started) =
        stack.send(Method::POST, &format!("/v1/workflows/{id}/executions"), Some(input), true).await;
    assert_eq!(status, 202, "{started}");
    let execution_id = started["execution_id"].as_str().unwrap().to_string();

    // The 2 s wait may pass between two polls; the 6 s one is seen parked.
    let long = stack.until(&execution_id, 120, |e| parked_on(e) == ["long"]).await;
    assert_eq!((long["status"].as_str(), long["waiting_on"][0]["kind"].as_str()), (Some("waiting"), Some("timer")));
    let waiting = stack.until(&execution_id, 60, |e| parked_on(e) == ["approve"]).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    let url =
        waiting["waiting_on"][0]["callback_url"].as_str().expect("an approval shows its callback URL").to_string();
    assert!(url.starts_with(&format!("{}/v1/callbacks/", stack.base)), "{url}");
    let announced = &notified.received_requests().await.unwrap()[0];
    let announced: Value = serde_json::from_slice(&announced.body).unwrap();
    assert_eq!(announced["text"], format!("Refund $40? {url}"));
    let (status, _, listed) =
        stack.send(Method::GET, &format!("/v1/workflows/{id}/executions?status=waiting"), None, true).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["execution_id"], execution_id.as_str(), "listed as waiting");
    let (status, _, everything) = stack.send(Method::GET, "/v1/executions?status=waiting&limit=100", None, true).await;
    assert_eq!(status, 200, "{everything}");
    let waiting: Vec<&str> =
        everything["items"].as_array().unwrap().iter().filter_map(|e| e["execution_id"].as_str()).collect();
    assert!(waiting.contains(&execution_id.as_str()), "the tenant-wide listing shows it: {everything}");
    assert!(everything["items"].as_array().unwrap().iter().all(|e| e["status"] == "waiting"));

    // The callback carries no API key; a wrong body is 422 and uses nothing.
    let path = url.strip_prefix(&stack.base).unwrap();
    let (status, _, refused) = stack.send(Method::POST, path, Some(json!({ "approved": "yes" })), false).await;
    assert_eq!(
        (status.as_u16(), refused["error"]["code"].as_str()),
        (422, Some("CALLBACK_PAYLOAD_INVALID")),
        "{refused}"
    );
    assert_eq!(refused["error"]["details"][0]["path"], "/approved");
    let (status, _, accepted) =
        stack.send(Method::POST, path, Some(json!({ "approved": true, "comment": "ok by Ada" })), false).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["node_id"], "approve");
    let (status, _, again) = stack.send(Method::POST, path, Some(json!({ "approved": false })), false).await;
    assert_eq!((status.as_u16(), again["error"]["code"].as_str()), (404, Some("CALLBACK_NOT_FOUND")), "single use");
    // After the callback the run is queued, then running, and only then final: wait for final
    // (an earlier version stopped at the first non-waiting reading and caught it running).
    let done = stack.until(&execution_id, 60, is_final).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({ "approved": true, "comment": "ok by Ada" }));
    let step = |name: &str| done["steps"].as_array().unwrap().iter().find(|s| s["node_id"] == name).unwrap().clone();
    for (name, seconds) in [("short", 2), ("long", 6)] {
        let output = step(name)["output"].clone();
        let at = |field: &str| chrono::DateTime::parse_from_rfc3339(output[field].as_str().unwrap()).unwrap();
        assert_eq!((at("until") - at("since")).num_seconds(), seconds, "{name}: {output}");
        let finished = chrono::DateTime::parse_from_rfc3339(step(name)["finished_at"].as_str().unwrap()).unwrap();
        assert!(finished >= at("until"), "{name} ended no sooner than its time");
    }
    assert_eq!(step("approve")["output"]["comment"], "ok by Ada");

    // Its events, read afterwards from the start: each park is `execution.waiting`, each wake-up
    // `execution.resumed`; the approval's wait shows its callback URL.
    let events = stack.events(&execution_id, None).await.rest().await;
    let lifecycle: Vec<&str> = events.iter().map(|e| e.kind.as_str()).filter(|k| k.starts_with("execution.")).collect();
    assert_eq!(lifecycle.first(), Some(&"execution.started"), "{lifecycle:?}");
    assert_eq!(lifecycle.last(), Some(&"execution.succeeded"), "{lifecycle:?}");
    assert_eq!(lifecycle[lifecycle.len() - 2], "execution.resumed", "the answer resumed it: {lifecycle:?}");
    let on_approval = events
        .iter()
        .position(|e| e.kind == "execution.waiting" && e.data["waiting_on"][0]["node_id"] == "approve")
        .expect("waiting on the approval");
    assert_eq!(events[on_approval].data["waiting_on"][0]["callback_url"], url.as_str());
    let resumed = events.iter().rposition(|e| e.kind == "execution.resumed").unwrap();
    assert!(resumed > on_approval, "resumed after it waited");
    let after: Vec<String> = kinds(&events[resumed..]);
    assert_eq!(
        after[1..],
        ["step.succeeded approve", "step.started done", "step.succeeded done", "execution.succeeded"],
        "the answer recorded while parked, then the rest of the run: {after:?}"
    );
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn an_unanswered_approval_follows_on_error_and_cancel_ends_a_wait_at_once() {
    let stack = Stack::start().await;
    // Expires after 5 s (a scheduled wake-up): on_error branch takes the "escalate" edge.
    let definition = json!({
        "name": "expiring approval",
        "nodes": [
            { "id": "approve", "type": "flow.approval", "config": { "timeout_seconds": 5 }, "on_error": "branch" },
            { "id": "escalate", "type": "text.template", "config": { "template": "escalated" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.escalate.output.text }}" } }
        ],
        "edges": [ { "from": "approve", "to": "escalate", "when": "error" }, { "from": "escalate", "to": "done" } ]
    });
    let (_, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
    let id = created["id"].as_str().unwrap().to_string();
    let (_, _, started) = stack
        .send(Method::POST, &format!("/v1/workflows/{id}/executions"), Some(json!({ "version": "draft" })), true)
        .await;
    let execution_id = started["execution_id"].as_str().unwrap().to_string();
    let expired = stack.until(&execution_id, 120, |e| e["status"] == "succeeded" || e["status"] == "failed").await;
    assert_eq!((expired["status"].as_str(), &expired["output"]), (Some("succeeded"), &json!("escalated")), "{expired}");
    let approve = expired["steps"].as_array().unwrap().iter().find(|s| s["node_id"] == "approve").unwrap().clone();
    assert_eq!(approve["error"]["code"], "APPROVAL_TIMED_OUT", "{approve}");

    // A 10-minute wait, cancelled while it waits: cancelled at once, no worker needed.
    let definition = json!({
        "name": "long wait",
        "nodes": [ { "id": "nap", "type": "flow.wait", "config": { "seconds": 600 } } ]
    });
    let (_, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
    let id = created["id"].as_str().unwrap().to_string();
    let (_, _, started) = stack
        .send(Method::POST, &format!("/v1/workflows/{id}/executions"), Some(json!({ "version": "draft" })), true)
        .await;
    let execution_id = started["execution_id"].as_str().unwrap().to_string();
    stack.until(&execution_id, 120, |e| e["status"] == "waiting").await;
    let (status, _, cancelled) =
        stack.send(Method::POST, &format!("/v1/executions/{execution_id}/cancel"), None, true).await;
    assert_eq!((status.as_u16(), cancelled["status"].as_str()), (202, Some("cancelled")), "{cancelled}");
    let (_, _, now) = stack.send(Method::GET, &format!("/v1/executions/{execution_id}"), None, true).await;
    assert_eq!(now["status"], "cancelled");
    assert!(now.get("waiting_on").is_none(), "{now}");
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn a_schedule_trigger_fires_through_the_local_scheduler_and_the_queue() {
    let stack = Stack::start().await;
    let definition = json!({ "name": "tick", "nodes": [
        { "id": "out", "type": "flow.output", "config": { "value": "tick {{ input.n }}" } } ] });
    let (status, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (status, _, _) = stack.send(Method::POST, &format!("/v1/workflows/{id}/versions"), None, true).await;
    assert_eq!(status, 201);
    let deploy = Some(json!({ "version": 1 }));
    assert_eq!(stack.send(Method::PUT, &format!("/v1/workflows/{id}/deployment"), deploy, true).await.0, 200);
    // A rate starts at once in Scheduler (no start_at), then every minute.
    let body = json!({ "type": "schedule", "rate": "1 minute", "input": { "n": 7 } });
    let (status, _, trigger) =
        stack.send(Method::POST, &format!("/v1/workflows/{id}/triggers"), Some(body), true).await;
    assert_eq!(status, 201, "{trigger}");
    let trigger_id = trigger["id"].as_str().unwrap();
    let mut runs = Vec::new();
    for _ in 0..60 {
        let path = format!("/v1/workflows/{id}/executions?trigger_id={trigger_id}&status=succeeded");
        let (_, _, page) = stack.send(Method::GET, &path, None, true).await;
        runs = page["items"].as_array().cloned().unwrap_or_default();
        if !runs.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    assert!(!runs.is_empty(), "the schedule fired within a minute");
    let run = stack.finished(runs[0]["execution_id"].as_str().unwrap()).await;
    assert_eq!(run["output"], "tick 7", "{run}");
    assert_eq!(run["trigger_id"], json!(trigger_id));
    // Disabled, then deleted: it stops.
    let path = format!("/v1/workflows/{id}/triggers/{trigger_id}");
    let (status, _, _) = stack.send(Method::DELETE, &path, None, true).await;
    assert_eq!(status, 204);
}

/// The types of a run's events, in order.
fn kinds(events: &[nodeai_tests::stack::SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e.data["node_id"].as_str() {
            Some(node) => format!("{} {node}", e.kind),
            None => e.kind.clone(),
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn the_events_stream_sends_a_branching_run_in_order_and_resumes_after_last_event_id() {
    use std::time::{Duration, Instant};
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let stack = Stack::start().await;
    // The first node waits on a slow loopback page, so the stream is seen delivering events
    // while the run goes on (cargo lambda watch streams the response; nothing is buffered).
    let page = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "n": 7 })).set_delay(Duration::from_secs(3)))
        .mount(&page)
        .await;
    let definition = json!({
        "name": "six nodes, one branch",
        "nodes": [
            { "id": "fetch", "type": "http.request", "config": { "method": "GET", "url": format!("{}/slow", page.uri()) } },
            { "id": "check", "type": "logic.condition", "config": { "expression": "nodes.fetch.output.body.n > 5" } },
            { "id": "big", "type": "text.template", "config": { "template": "{{ nodes.fetch.output.body.n }} is big" } },
            { "id": "small", "type": "text.template", "config": { "template": "small" } },
            { "id": "shape", "type": "text.template", "config": { "template": "verdict: {{ nodes.big.output.text }}" } },
            { "id": "done", "type": "flow.output", "config": { "value": { "verdict": "{{ nodes.shape.output.text }}" } } }
        ],
        "edges": [
            { "from": "fetch", "to": "check" },
            { "from": "check", "to": "big", "when": "true" },
            { "from": "check", "to": "small", "when": "false" },
            { "from": "big", "to": "shape" },
            { "from": "shape", "to": "done" }
        ]
    });
    let (status, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, _, started) = stack
        .send(
            Method::POST,
            &format!("/v1/workflows/{id}/executions"),
            Some(json!({ "version": "draft", "input": {} })),
            true,
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let execution_id = started["execution_id"].as_str().unwrap().to_string();

    // A client connected before the run gets anywhere: every event, in order, then the end.
    let mut stream = stack.events(&execution_id, None).await;
    assert_eq!(stream.response.status(), 200);
    assert_eq!(stream.response.headers()["content-type"], "text/event-stream");
    let first = stream.next().await.expect("a first event");
    let first_at = Instant::now();
    let mut all = vec![first];
    all.extend(stream.rest().await);
    let last_at = Instant::now();
    assert_eq!(
        kinds(&all),
        [
            "execution.started",
            "step.started fetch",
            "step.succeeded fetch",
            "step.started check",
            "step.succeeded check",
            "step.skipped small",
            "step.started big",
            "step.succeeded big",
            "step.started shape",
            "step.succeeded shape",
            "step.started done",
            "step.succeeded done",
            "execution.succeeded",
        ],
        "{all:#?}"
    );
    assert!(
        last_at - first_at >= Duration::from_secs(2),
        "the first event came while the 3 s call ran, not with the rest at the end"
    );
    let end = all.last().unwrap();
    assert_eq!(end.data["output"], json!({ "verdict": "verdict: 7 is big" }));
    assert_eq!(all[2].data["output"]["body"], json!({ "n": 7 }), "a small output is inline");
    let ids: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "every event has its own id: {ids:?}");

    // A client that leaves after the third event and comes back gets the rest, once.
    let mut early = stack.events(&execution_id, None).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(early.next().await.unwrap());
    }
    drop(early);
    let mut resumed = stack.events(&execution_id, Some(&seen[2].id)).await;
    seen.extend(resumed.rest().await);
    assert_eq!(seen, all, "the reconnected client saw every event exactly once");
    // Resuming after the final event: 204, nothing more will come.
    let done = stack.events(&execution_id, Some(&end.id)).await;
    assert_eq!(done.response.status(), 204);
    let bad = stack.events(&execution_id, Some("not-an-id")).await;
    assert_eq!(bad.response.status(), 400);
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn wait_answers_when_the_run_ends_or_when_the_wait_is_over() {
    use std::time::{Duration, Instant};
    let stack = Stack::start().await;
    let quick = json!({ "name": "quick", "nodes": [ { "id": "out", "type": "flow.output", "config": { "value": "{{ input.n }}" } } ] });
    let (_, _, created) = stack.send(Method::POST, "/v1/workflows", Some(quick), true).await;
    let quick_id = created["id"].as_str().unwrap().to_string();
    let start = json!({ "version": "draft", "input": { "n": 5 } });
    let began = Instant::now();
    let (status, headers, finished) =
        stack.send(Method::POST, &format!("/v1/workflows/{quick_id}/executions?wait=20"), Some(start), true).await;
    let took = began.elapsed();
    assert_eq!((status.as_u16(), finished["status"].as_str()), (200, Some("succeeded")), "{finished}");
    assert_eq!(finished["output"], 5);
    assert!(headers["location"].to_str().unwrap().starts_with("/v1/executions/"));
    assert!(took < Duration::from_secs(20), "answered when the run ended, not at the wait's end: {took:?}");

    // A run that waits on a person: both waits end at N with the run as it then is.
    let approval = json!({ "name": "held", "nodes": [ { "id": "ask", "type": "flow.approval", "config": { "timeout_seconds": 600 } } ] });
    let (_, _, created) = stack.send(Method::POST, "/v1/workflows", Some(approval), true).await;
    let held_id = created["id"].as_str().unwrap().to_string();
    let began = Instant::now();
    let (status, _, started) = stack
        .send(
            Method::POST,
            &format!("/v1/workflows/{held_id}/executions?wait=3"),
            Some(json!({ "version": "draft" })),
            true,
        )
        .await;
    assert_eq!(status, 202, "{started}");
    assert!(began.elapsed() >= Duration::from_secs(3), "it waited the 3 s asked for");
    let execution_id = started["execution_id"].as_str().unwrap();
    let began = Instant::now();
    let (status, _, read) = stack.send(Method::GET, &format!("/v1/executions/{execution_id}?wait=2"), None, true).await;
    assert_eq!((status.as_u16(), read["status"].as_str()), (200, Some("waiting")), "{read}");
    assert!(began.elapsed() >= Duration::from_secs(2));
    let (status, _, refused) =
        stack.send(Method::GET, &format!("/v1/executions/{execution_id}?wait=26"), None, true).await;
    assert_eq!((status.as_u16(), refused["error"]["code"].as_str()), (400, Some("INVALID_REQUEST")), "{refused}");
    let (status, _, _) = stack.send(Method::POST, &format!("/v1/executions/{execution_id}/cancel"), None, true).await;
    assert_eq!(status, 202);
}

#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn streamed_model_tokens_reach_the_events_stream_before_the_step_ends() {
    let stack = Stack::start().await;
    let stub = std::env::var("NODEAI_MODEL_STUB").expect("NODEAI_MODEL_STUB: scripts/test starts the model stub");
    assert!(stub.starts_with("http://127.0.0.1:"), "{stub}");
    for (provider, base_url) in [("openai", format!("{stub}/v1")), ("anthropic", stub.clone())] {
        let credential = json!({ "provider": provider, "api_key": "sk-stub-streaming", "base_url": base_url });
        let (status, _, body) =
            stack.send(Method::PUT, &format!("/v1/credentials/stream-{provider}"), Some(credential), true).await;
        assert!(status.is_success(), "{body}");
        let definition = json!({
            "name": format!("streamed {provider}"),
            "nodes": [
                { "id": "ask", "type": "llm.chat", "config": {
                    "credential": format!("stream-{provider}"), "model": "stub-model", "stream": true,
                    "messages": [ { "role": "user", "content": "{{ input.words }}" } ] } },
                { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.ask.output.text }}" } }
            ],
            "edges": [ { "from": "ask", "to": "done" } ]
        });
        let (_, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
        let id = created["id"].as_str().unwrap().to_string();
        let input = json!({ "version": "draft", "input": { "words": "one two three four five six seven eight nine" } });
        let (status, _, started) =
            stack.send(Method::POST, &format!("/v1/workflows/{id}/executions"), Some(input), true).await;
        assert_eq!(status, 202, "{started}");
        let events = stack.events(started["execution_id"].as_str().unwrap(), None).await.rest().await;
        let deltas: Vec<usize> = (0..events.len()).filter(|&i| events[i].kind == "step.delta").collect();
        let succeeded = events
            .iter()
            .position(|e| e.kind == "step.succeeded" && e.data["node_id"] == "ask")
            .unwrap_or_else(|| panic!("{provider}: no step.succeeded: {events:#?}"));
        assert!(deltas.len() >= 2, "{provider}: the answer came in pieces: {events:#?}");
        assert!(deltas.iter().all(|&i| i < succeeded), "{provider}: every delta before the step ends");
        let text: String = deltas.iter().map(|&i| events[i].data["text"].as_str().unwrap()).collect();
        let answer = "Stub summary: one two three four five six seven eight";
        assert_eq!(text, answer, "{provider}: the deltas add up to the answer");
        assert_eq!(events[succeeded].data["output"]["text"], answer);
        // The stub counts words: 9 in, 10 out, as the provider reported them.
        assert_eq!(events[succeeded].data["usage"], json!({ "input_tokens": 9, "output_tokens": 10 }), "{provider}");
        assert_eq!(events.last().unwrap().data["output"], answer);
    }
}

/// Finished executions reach the usage counters through the table's change stream (the local
/// stream poller plays the Lambda event source): five runs over two workflows and two models
/// give exactly the tokens, calls and costs their steps recorded, by day, workflow and model.
#[tokio::test]
#[ignore = "needs the local stack: run through scripts/test"]
async fn usage_counts_finished_executions_by_workflow_and_model_through_the_stream() {
    let stack = Stack::start().await;
    let stub = std::env::var("NODEAI_MODEL_STUB").expect("NODEAI_MODEL_STUB: scripts/test starts the model stub");
    let credential = json!({ "provider": "openai", "api_key": "sk-stub-usage", "base_url": format!("{stub}/v1") });
    let (status, _, body) = stack.send(Method::PUT, "/v1/credentials/usage-stub", Some(credential), true).await;
    assert!(status.is_success(), "{body}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut workflows = Vec::new();
    for model in ["gpt-4o-mini", "claude-haiku-4-5"] {
        let definition = json!({
            "name": format!("usage {model}"),
            "nodes": [
                { "id": "ask", "type": "llm.chat", "config": { "credential": "usage-stub", "model": model,
                  "messages": [ { "role": "user", "content": "{{ input.words }}" } ] } },
                { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.ask.output.text }}" } }
            ],
            "edges": [ { "from": "ask", "to": "done" } ]
        });
        let (_, _, created) = stack.send(Method::POST, "/v1/workflows", Some(definition), true).await;
        workflows.push((created["id"].as_str().unwrap().to_string(), model));
    }
    // 3 runs of the first, 2 of the second, with inputs of different lengths.
    let mut expected: std::collections::BTreeMap<&str, (u64, u64, u64, f64)> = Default::default();
    for (i, (workflow, model)) in
        [&workflows[0], &workflows[0], &workflows[0], &workflows[1], &workflows[1]].into_iter().enumerate()
    {
        let words = "alpha beta gamma delta epsilon zeta".split(' ').take(i + 1).collect::<Vec<_>>().join(" ");
        let input = json!({ "version": "draft", "input": { "words": words } });
        let (status, _, started) =
            stack.send(Method::POST, &format!("/v1/workflows/{workflow}/executions?wait=20"), Some(input), true).await;
        assert_eq!((status.as_u16(), started["status"].as_str()), (200, Some("succeeded")), "{started}");
        let step = &started["steps"].as_array().unwrap().iter().find(|s| s["node_id"] == "ask").unwrap().clone();
        let entry = expected.entry(*model).or_default();
        entry.0 += 1;
        entry.1 += step["usage"]["input_tokens"].as_u64().unwrap();
        entry.2 += step["usage"]["output_tokens"].as_u64().unwrap();
        entry.3 += step["cost_usd"].as_f64().expect("both models are priced");
    }
    // The stream poller counts within seconds of each end (the emulator's transactions copy
    // the tables, so a busy one takes longer: up to 90 s here).
    let usage = |group: &'static str| {
        let stack = &stack;
        let path = format!("/v1/usage?from={today}&to={today}&group_by={group}");
        async move { stack.send(Method::GET, &path, None, true).await }
    };
    let mut report = Value::Null;
    for _ in 0..180 {
        let (status, _, body) = usage("workflow").await;
        assert_eq!(status, 200, "{body}");
        report = body;
        if report["totals"]["executions"]["total"] == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let totals = &report["totals"];
    assert_eq!(
        totals["executions"],
        json!({ "total": 5, "succeeded": 5, "failed": 0, "cancelled": 0, "timed_out": 0 }),
        "{report}"
    );
    assert_eq!((totals["node_runs"].as_u64(), totals["llm_calls"].as_u64()), (Some(10), Some(5)), "{report}");
    let sum = |field: usize| expected.values().map(|e| [e.1, e.2][field]).sum::<u64>();
    assert_eq!(totals["input_tokens"].as_u64(), Some(sum(0)), "{report}");
    assert_eq!(totals["output_tokens"].as_u64(), Some(sum(1)), "{report}");
    let cost: f64 = expected.values().map(|e| e.3).sum();
    assert!((totals["model_cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9, "{report} vs {cost}");
    assert!(totals["aws_cost_usd"].as_f64().unwrap() > 0.0);
    let rows = report["items"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    for (workflow, model) in &workflows {
        let row = rows.iter().find(|r| r["workflow_id"] == workflow.as_str()).unwrap_or_else(|| panic!("{report}"));
        let (runs, input, output, _) = expected[model];
        assert_eq!(row["day"], today.as_str());
        assert_eq!(row["executions"]["succeeded"].as_u64(), Some(runs), "{row}");
        assert_eq!((row["input_tokens"].as_u64(), row["output_tokens"].as_u64()), (Some(input), Some(output)), "{row}");
    }
    let (_, _, by_model) = usage("model").await;
    let models = by_model["items"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{by_model}");
    for (model, (runs, input, _, cost)) in &expected {
        let row = models.iter().find(|r| r["model"] == *model).unwrap_or_else(|| panic!("{by_model}"));
        assert_eq!((row["llm_calls"].as_u64(), row["input_tokens"].as_u64()), (Some(*runs), Some(*input)), "{row}");
        assert!((row["model_cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9, "{row}");
        assert!(row.get("executions").is_none(), "model rows count calls: {row}");
    }
    // Bad ranges are 400s in the envelope.
    for query in
        ["from=2026-13-01", "from=2026-01-02&to=2026-01-01", "from=2024-01-01&to=2025-12-31", "group_by=tenant"]
    {
        let (status, _, body) = stack.send(Method::GET, &format!("/v1/usage?{query}"), None, true).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (400, Some("INVALID_REQUEST")),
            "{query}: {body}"
        );
    }
    // The price table the costs came from.
    let (status, _, prices) = stack.send(Method::GET, "/v1/models/prices", None, true).await;
    assert_eq!(status, 200);
    let mini = prices["items"].as_array().unwrap().iter().find(|p| p["model"] == "gpt-4o-mini").unwrap().clone();
    assert_eq!(
        (mini["input_usd_per_mtok"].as_f64(), mini["cached_input_usd_per_mtok"].as_f64()),
        (Some(0.15), Some(0.075))
    );
}
