//! Parked executions on the emulator: a 20-minute `flow.wait` through an EventBridge Scheduler
//! one-time schedule (moto serves Scheduler's API), resumed without sleeping 20 minutes: the
//! test plays the clock by moving the recorded wait's end into the past, then plays Scheduler
//! by delivering the schedule's target input as the SQS event source would.

use aws_sdk_dynamodb::types::AttributeValue;
use nodeai::api::Route;
use nodeai::config::RunningLimits;
use nodeai::queue::{SqsExecutionQueue, WaitScheduler};
use nodeai::store::ExecutionStore;
use nodeai_tests::{TestApp, sqs_client, sqs_event};
use serde_json::json;
use std::time::{Duration, Instant};

async fn scheduler_client() -> aws_sdk_scheduler::Client {
    nodeai_tests::emulator_endpoint();
    aws_sdk_scheduler::Client::new(&aws_config::load_from_env().await)
}

/// The queue with long waits going through a schedule group of its own.
async fn queue_with_scheduler(t: &TestApp, group: &str) -> SqsExecutionQueue {
    let scheduler = scheduler_client().await;
    scheduler.create_schedule_group().name(group).send().await.expect("create the schedule group");
    let queue_name = t.queue_url.rsplit('/').next().unwrap();
    let waits = WaitScheduler {
        client: scheduler,
        group: group.to_string(),
        role_arn: "arn:aws:iam::123456789012:role/nodeai-test-waits".into(),
        queue_arn: format!("arn:aws:sqs:us-east-1:123456789012:{queue_name}"),
    };
    SqsExecutionQueue::new(sqs_client().await, t.queue_url.clone()).with_scheduler(waits, Duration::from_secs(900))
}

/// One worker invocation over what the queue holds now.
async fn work(t: &TestApp, queue: &SqsExecutionQueue) -> usize {
    let out =
        sqs_client().await.receive_message().queue_url(&t.queue_url).max_number_of_messages(10).send().await.unwrap();
    let messages = out.messages.unwrap_or_default();
    let executor = nodeai::nodes::RegistryExecutor::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let response = nodeai::worker::handle_batch(
        t.store.as_ref(),
        &executor,
        queue,
        sqs_event(&messages),
        "test-worker",
        deadline,
        &RunningLimits::DEFAULT,
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    messages.len()
}

#[tokio::test]
async fn a_twenty_minute_wait_is_a_one_time_schedule_that_resumes_the_execution() {
    let t = TestApp::new().await;
    let group = format!("waits-{}", ulid::Ulid::new().to_string().to_lowercase());
    let queue = queue_with_scheduler(&t, &group).await;
    let id = t
        .create_workflow(json!({
            "name": "twenty minutes",
            "timeout_seconds": 3600,
            "nodes": [
                { "id": "nap", "type": "flow.wait", "config": { "seconds": 1200 } },
                { "id": "done", "type": "flow.output", "config": { "value": "woke at {{ nodes.nap.output.until }}" } }
            ],
            "edges": [ { "from": "nap", "to": "done" } ]
        }))
        .await;
    let started = t.call(Route::StartExecution, &[("workflow_id", &id)], Some(json!({ "version": "draft" }))).await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    assert_eq!(work(&t, &queue).await, 1);
    let parked = t.store.get_execution(&t.tenant_id, &execution_id).await.unwrap().unwrap();
    assert_eq!(parked.status, nodeai::model::ExecutionStatus::Waiting);
    let until = parked.waits[0].until.clone().unwrap();
    let until_at = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    let scheduler = scheduler_client().await;
    let schedules = scheduler.list_schedules().group_name(&group).send().await.unwrap().schedules;
    assert_eq!(schedules.len(), 1, "one schedule for the wake-up: {schedules:?}");
    let name = schedules[0].name().unwrap().to_string();
    assert_eq!(name, format!("nodeai-{execution_id}-{}", until_at.timestamp()));
    let schedule = scheduler.get_schedule().group_name(&group).name(&name).send().await.unwrap();
    let expression = schedule.schedule_expression().unwrap();
    let fires =
        chrono::NaiveDateTime::parse_from_str(&expression[3..expression.len() - 1], "%Y-%m-%dT%H:%M:%S").unwrap();
    let lateness = fires.and_utc() - until_at.to_utc();
    assert!((0..=1).contains(&lateness.num_seconds()), "{expression} fires at {until}, not before");
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    let target = schedule.target().unwrap();
    assert!(target.arn().ends_with(t.queue_url.rsplit('/').next().unwrap()), "its target is the queue");
    let message: serde_json::Value = serde_json::from_str(target.input().unwrap()).unwrap();
    assert_eq!(message["execution_id"], execution_id.as_str());
    assert_eq!(schedule.action_after_completion().map(|a| a.as_str()), Some("DELETE"), "it deletes itself once fired");
    // Nothing is in the queue meanwhile: no Lambda runs while it waits.
    assert_eq!(work(&t, &queue).await, 0);

    // An early delivery of the wake-up (a duplicate) parks it again and creates no schedule.
    queue_send(&t, target.input().unwrap()).await;
    assert_eq!(work(&t, &queue).await, 1);
    assert_eq!(scheduler.list_schedules().group_name(&group).send().await.unwrap().schedules.len(), 1);

    // Twenty minutes pass: the recorded wait's end moves into the past (the clock), and the
    // schedule fires: its input lands in the queue (Scheduler's part).
    let mut waits = parked.waits.clone();
    waits[0].until = Some(nodeai::model::rfc3339_in(-1));
    nodeai_tests::dynamo_client()
        .await
        .update_item()
        .table_name(t.store.table())
        .key("pk", AttributeValue::S(format!("T#{}", t.tenant_id)))
        .key("sk", AttributeValue::S(format!("EX#{execution_id}")))
        .update_expression("SET waits = :waits")
        .expression_attribute_values(":waits", AttributeValue::S(serde_json::to_string(&waits).unwrap()))
        .send()
        .await
        .unwrap();
    queue_send(&t, target.input().unwrap()).await;
    assert_eq!(work(&t, &queue).await, 1);
    let done = t.store.get_execution(&t.tenant_id, &execution_id).await.unwrap().unwrap();
    assert_eq!(done.status, nodeai::model::ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(done.output, json!(format!("woke at {}", waits[0].until.clone().unwrap())));
}

async fn queue_send(t: &TestApp, body: &str) {
    sqs_client().await.send_message().queue_url(&t.queue_url).message_body(body).send().await.unwrap();
}

#[tokio::test]
async fn validation_knows_the_new_node_types_and_their_limits() {
    let t = TestApp::new().await;
    let check = |document: serde_json::Value| {
        let t = &t;
        async move { t.call(Route::ValidateWorkflow, &[], Some(document)).await.body }
    };
    let codes = |report: &serde_json::Value| -> Vec<(String, String)> {
        report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["path"].as_str().unwrap().to_string(), p["code"].as_str().unwrap().to_string()))
            .collect()
    };
    let bad = check(json!({
        "name": "bad waits",
        "timeout_seconds": 172800,
        "nodes": [
            { "id": "both", "type": "flow.wait", "config": { "seconds": 5, "until": "2030-01-01T00:00:00Z" } },
            { "id": "none", "type": "flow.wait", "config": {} },
            { "id": "ask", "type": "flow.approval", "config": {
                "payload_schema": { "type": "no-such-type" }, "timeout_seconds": 0,
                "notify": { "method": "POST", "url": "https://hooks.example.com/{{ callback.url }}", "body": "{{ nope.x }}" } } }
        ],
        "edges": [ { "from": "both", "to": "ask" }, { "from": "none", "to": "ask" } ]
    }))
    .await;
    let found = codes(&bad);
    for expected in [
        ("/nodes/0/config", "INVALID_NODE_CONFIG"),
        ("/nodes/1/config", "INVALID_NODE_CONFIG"),
        ("/nodes/2/config/payload_schema", "INVALID_PAYLOAD_SCHEMA"),
        ("/nodes/2/config/timeout_seconds", "INVALID_NODE_CONFIG"),
        ("/nodes/2/config/notify/body", "TEMPLATE_UNKNOWN_VARIABLE"),
    ] {
        assert!(found.contains(&(expected.0.to_string(), expected.1.to_string())), "{expected:?} in {found:?}");
    }
    assert!(
        !found.iter().any(|(path, _)| path == "/nodes/2/config/notify/url"),
        "callback.* is known there: {found:?}"
    );
    assert!(!found.iter().any(|(_, code)| code == "EXECUTION_TIMEOUT_TOO_LONG"), "a waiting workflow may run 2 days");

    let too_long = check(json!({
        "name": "no waits", "timeout_seconds": 172800,
        "nodes": [ { "id": "a", "type": "text.template", "config": { "template": "x" } } ]
    }))
    .await;
    assert_eq!(codes(&too_long), vec![("/timeout_seconds".to_string(), "EXECUTION_TIMEOUT_TOO_LONG".to_string())]);
    let thirty_days_and_one = check(json!({
        "name": "too long", "timeout_seconds": 2_592_001,
        "nodes": [ { "id": "w", "type": "flow.wait", "config": { "seconds": 1 } } ]
    }))
    .await;
    assert_eq!(codes(&thirty_days_and_one)[0].1, "SCHEMA_VIOLATION");
    let good = check(json!({
        "name": "good", "timeout_seconds": 2_592_000,
        "nodes": [
            { "id": "w", "type": "flow.wait", "config": { "until": "{{ input.at }}" } },
            { "id": "ok", "type": "flow.approval", "config": { "payload_schema": { "type": "object", "description": "answer {{ like_this }}" } } }
        ],
        "edges": [ { "from": "w", "to": "ok" } ]
    }))
    .await;
    assert_eq!(good["valid"], true, "{good}");
}

/// Lambda's event source with `workers` in-process instances until the execution is final (at
/// most `seconds`); answers its GET.
async fn run_until_final(t: &TestApp, execution_id: &str, workers: usize, seconds: u64) -> nodeai_tests::Reply {
    let executor = nodeai_tests::loopback_allowed();
    let queue = SqsExecutionQueue::new(sqs_client().await, t.queue_url.clone());
    // The tenant is free (5 at once): room for the map's window and its parent.
    let limits = RunningLimits { free: 50, wait: Duration::from_millis(500), ..RunningLimits::DEFAULT };
    let finished =
        || async { t.store.get_execution(&t.tenant_id, execution_id).await.unwrap().unwrap().status.is_final() };
    let (invocation, limit) = (Duration::from_secs(30), Duration::from_secs(seconds));
    nodeai_tests::run_workers(t, &executor, &queue, &limits, workers, invocation, limit, &finished).await;
    t.call(Route::GetExecution, &[("execution_id", execution_id)], None).await
}

/// A deployed workflow of the test tenant, through the API (create, publish, deploy).
async fn deployed(t: &TestApp, definition: serde_json::Value) -> String {
    let id = t.create_workflow(definition).await;
    assert_eq!(t.call(Route::PublishVersion, &[("workflow_id", &id)], None).await.status, 201);
    let deployed = t.call(Route::DeployVersion, &[("workflow_id", &id)], Some(json!({ "version": 1 }))).await;
    assert_eq!(deployed.status, 200, "{}", deployed.raw);
    id
}

/// Issue 11's map test: 200 items, `concurrency: 10`, each item a child execution calling a
/// loopback stub that counts calls in flight; twelve in-process Lambda instances drain the
/// queue. Every item runs once, never more than 10 at once, and GET shows the children.
#[tokio::test]
async fn a_map_over_200_items_runs_each_once_at_most_ten_at_once() {
    let t = TestApp::new().await;
    let stub = nodeai_tests::InFlight::start().await;
    let child = deployed(
        &t,
        json!({
            "name": "item",
            "nodes": [
                { "id": "call", "type": "http.request",
                  "config": { "method": "POST", "url": format!("{}/work/map/{{{{ input.index }}}}", stub.url) } },
                { "id": "out", "type": "flow.output", "config": { "value": "{{ input.item.name }}" } }
            ],
            "edges": [ { "from": "call", "to": "out" } ]
        }),
    )
    .await;
    let parent = t
        .create_workflow(json!({
            "name": "fan out",
            "timeout_seconds": 900,
            "nodes": [
                { "id": "each", "type": "flow.map",
                  "config": { "workflow_id": child, "items": "{{ input.rows }}", "concurrency": 10 } },
                { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.each.output | length }}" } }
            ],
            "edges": [ { "from": "each", "to": "done" } ]
        }))
        .await;
    let rows: Vec<serde_json::Value> = (0..200).map(|i| json!({ "name": format!("row {i}") })).collect();
    let started = t
        .call(
            Route::StartExecution,
            &[("workflow_id", &parent)],
            Some(json!({ "version": "draft", "input": { "rows": rows } })),
        )
        .await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    // Twelve Lambda instances draining the queue.
    let done = run_until_final(&t, &execution_id, 12, 300).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.raw);
    assert_eq!(done.body["output"], 200);
    assert_eq!(stub.calls("map"), 200, "every item called once");
    assert!(stub.peak("map") <= 10, "{} items ran at once; concurrency is 10", stub.peak("map"));
    assert!(stub.peak("map") >= 2, "items ran in parallel");
    let children = &done.body["children"][0];
    assert_eq!((children["total"].as_u64(), children["succeeded"].as_u64()), (Some(200), Some(200)), "{children}");
    assert_eq!(children["items"].as_array().unwrap().len(), 100, "the first 100 listed");
    let first_child = children["items"][0]["execution_id"].as_str().unwrap();
    let child_view = t.call(Route::GetExecution, &[("execution_id", first_child)], None).await;
    assert_eq!(child_view.body["parent"]["execution_id"], execution_id.as_str());
    assert_eq!(child_view.body["output"], "row 0");
}

#[tokio::test]
async fn a_failed_map_item_is_the_only_one_a_redrive_runs_again() {
    use wiremock::matchers::{method, path_regex};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    // Item 3's host fails once, then recovers.
    Mock::given(method("POST"))
        .and(path_regex("^/item/3$"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&stub)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/item/[0-9]+$"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&stub)
        .await;
    let child = deployed(
        &t,
        json!({
            "name": "item",
            "nodes": [ { "id": "call", "type": "http.request",
                         "config": { "method": "POST", "url": format!("{}/item/{{{{ input.index }}}}", stub.uri()) } } ]
        }),
    )
    .await;
    let parent = t
        .create_workflow(json!({
            "name": "fan out",
            "nodes": [ { "id": "each", "type": "flow.map",
                         "config": { "workflow_id": child, "items": "{{ input.rows }}", "concurrency": 3 } } ]
        }))
        .await;
    let started = t
        .call(
            Route::StartExecution,
            &[("workflow_id", &parent)],
            Some(json!({ "version": "draft", "input": { "rows": [0, 1, 2, 3, 4, 5] } })),
        )
        .await;
    let execution_id = started.body["execution_id"].as_str().unwrap().to_string();
    let failed = run_until_final(&t, &execution_id, 4, 120).await;
    assert_eq!(failed.body["status"], "failed", "{}", failed.raw);
    assert_eq!(failed.body["error"]["code"], "MAP_ITEMS_FAILED");
    assert_eq!(stub.received_requests().await.unwrap().len(), 6);

    let redriven = t.call(Route::RedriveExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!(redriven.status, 202, "{}", redriven.raw);
    let done = run_until_final(&t, &execution_id, 4, 120).await;
    assert_eq!(done.body["status"], "succeeded", "{}", done.raw);
    let calls: Vec<String> = stub.received_requests().await.unwrap().iter().map(|r| r.url.path().to_string()).collect();
    assert_eq!(calls.len(), 7, "only item 3 ran again: {calls:?}");
    assert_eq!(calls[6], "/item/3");
}

#[tokio::test]
async fn saving_a_workflow_checks_the_workflows_it_runs_and_refuses_cycles() {
    let t = TestApp::new().await;
    let node = |kind: &str, workflow_id: &str| {
        if kind == "flow.map" {
            json!({ "id": "run", "type": "flow.map", "config": { "workflow_id": workflow_id, "items": "{{ input.rows }}" } })
        } else {
            json!({ "id": "run", "type": "flow.subworkflow", "config": { "workflow_id": workflow_id } })
        }
    };
    let runs = |kind: &str, workflow_id: &str| json!({ "name": "runs another", "nodes": [node(kind, workflow_id)] });
    let problem = |reply: &nodeai_tests::Reply| {
        let detail = &reply.body["error"]["details"][0];
        (
            reply.status,
            detail["path"].as_str().unwrap_or("").to_string(),
            detail["code"].as_str().unwrap_or("").to_string(),
        )
    };
    // Missing, and not deployed: 422 with the node's path.
    let missing = t.call(Route::CreateWorkflow, &[], Some(runs("flow.map", "01ARZ3NDEKTSV4RRFFQ69G5FAV"))).await;
    assert_eq!(
        problem(&missing),
        (422, "/nodes/0/config/workflow_id".to_string(), "WORKFLOW_REFERENCE_NOT_FOUND".to_string()),
        "{}",
        missing.raw
    );
    let draft_only = t.create_workflow(json!({ "name": "leaf", "nodes": [ { "id": "a", "type": "text.template", "config": { "template": "x" } } ] })).await;
    let undeployed = t.call(Route::CreateWorkflow, &[], Some(runs("flow.subworkflow", &draft_only))).await;
    assert_eq!(problem(&undeployed).2, "WORKFLOW_REFERENCE_NOT_DEPLOYED", "{}", undeployed.raw);
    let report = t.call(Route::ValidateWorkflow, &[], Some(runs("flow.subworkflow", &draft_only))).await;
    assert_eq!(
        (report.body["valid"].as_bool(), report.body["problems"][0]["code"].as_str()),
        (Some(false), Some("WORKFLOW_REFERENCE_NOT_DEPLOYED"))
    );
    let mut pinned_missing = runs("flow.subworkflow", &draft_only);
    pinned_missing["nodes"][0]["config"]["version"] = json!(7);
    let pinned = t.call(Route::CreateWorkflow, &[], Some(pinned_missing)).await;
    assert_eq!(problem(&pinned).1, "/nodes/0/config/version", "{}", pinned.raw);

    // A runs B (deployed); saving B to run A would make a cycle: refused, naming the path.
    let b = deployed(
        &t,
        json!({ "name": "b", "nodes": [ { "id": "a", "type": "text.template", "config": { "template": "x" } } ] }),
    )
    .await;
    let a = deployed(&t, runs("flow.subworkflow", &b)).await;
    let cycle = t.call(Route::UpdateWorkflow, &[("workflow_id", &b)], Some(runs("flow.map", &a))).await;
    let (status, _, code) = problem(&cycle);
    assert_eq!((status, code.as_str()), (422, "WORKFLOW_REFERENCE_CYCLE"), "{}", cycle.raw);
    assert!(cycle.raw.contains(&a), "the message names the path: {}", cycle.raw);
    let itself = t.call(Route::UpdateWorkflow, &[("workflow_id", &b)], Some(runs("flow.subworkflow", &b))).await;
    assert_eq!(problem(&itself).2, "WORKFLOW_REFERENCE_CYCLE");
}

#[tokio::test]
async fn a_subworkflow_output_flows_into_its_parent_and_its_failure_into_the_error_branch() {
    let t = TestApp::new().await;
    let child = deployed(
        &t,
        json!({
            "name": "greet",
            "input_schema": { "type": "object" },
            "nodes": [
                { "id": "check", "type": "logic.condition", "config": { "expression": "input.name == 'nobody'" } },
                { "id": "boom", "type": "text.template", "config": { "template": "{{ input.missing }}" } },
                { "id": "hello", "type": "flow.output", "config": { "value": "Hello {{ input.name }}" } }
            ],
            "edges": [ { "from": "check", "to": "boom", "when": "true" }, { "from": "check", "to": "hello", "when": "false" } ]
        }),
    )
    .await;
    let parent = t
        .create_workflow(json!({
            "name": "calls greet",
            "nodes": [
                { "id": "sub", "type": "flow.subworkflow", "on_error": "branch",
                  "config": { "workflow_id": child, "version": 1, "input": { "name": "{{ input.who }}" } } },
                { "id": "shout", "type": "flow.output", "config": { "value": "{{ nodes.sub.output | upper }}" } },
                { "id": "sorry", "type": "text.template", "config": { "template": "failed: {{ nodes.sub.error.code }}" } }
            ],
            "edges": [ { "from": "sub", "to": "shout" }, { "from": "sub", "to": "sorry", "when": "error" } ]
        }))
        .await;
    for (who, expected) in [("Ada", "HELLO ADA"), ("nobody", "")] {
        let started = t
            .call(
                Route::StartExecution,
                &[("workflow_id", &parent)],
                Some(json!({ "version": "draft", "input": { "who": who } })),
            )
            .await;
        let id = started.body["execution_id"].as_str().unwrap().to_string();
        let done = run_until_final(&t, &id, 2, 60).await;
        assert_eq!(done.body["status"], "succeeded", "{}", done.raw);
        let step =
            |node: &str| done.body["steps"].as_array().unwrap().iter().find(|s| s["node_id"] == node).unwrap().clone();
        if expected.is_empty() {
            assert_eq!(step("sub")["error"]["code"], "SUBWORKFLOW_FAILED", "{}", done.raw);
            assert!(step("sub")["error"]["message"].as_str().unwrap().contains("TEMPLATE_UNDEFINED_VARIABLE"));
            assert_eq!(step("sorry")["output"]["text"], "failed: SUBWORKFLOW_FAILED");
        } else {
            assert_eq!(done.body["output"], expected);
        }
        let children = &done.body["children"][0];
        assert_eq!((children["node_id"].as_str(), children["total"].as_u64()), (Some("sub"), Some(1)));
        let child_id = children["items"][0]["execution_id"].as_str().unwrap();
        let child_view = t.call(Route::GetExecution, &[("execution_id", child_id)], None).await;
        assert_eq!(child_view.body["parent"]["node_id"], "sub");
    }
}
