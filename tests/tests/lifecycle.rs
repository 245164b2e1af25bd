//! The worker's lifecycle against the emulator (issue 10): one runner per execution, every
//! invocation bounded, writes conditional on the lease, cancels that land before the next call,
//! the sweeper, and each tenant's share of the workers.

use aws_lambda_events::event::sqs::SqsEvent;
use nodeai::api::Route;
use nodeai::config::RunningLimits;
use nodeai::queue::SqsExecutionQueue;
use nodeai::store::{ExecutionStore, StepStore};
use nodeai::worker::{CHECKPOINT_MARGIN, handle_batch};
use nodeai_tests::{Reply, TestApp, run_worker_for, sqs_client};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

use nodeai_tests::loopback_allowed;

async fn start(t: &TestApp, workflow_id: &str) -> String {
    let started =
        t.call(Route::StartExecution, &[("workflow_id", workflow_id)], Some(json!({ "version": "draft" }))).await;
    assert_eq!(started.status, 202, "{}", started.raw);
    started.body["execution_id"].as_str().unwrap().to_string()
}

fn simple() -> Value {
    json!({ "name": "simple", "nodes": [ { "id": "a", "type": "text.template", "config": { "template": "x" } } ] })
}

async fn execution(t: &TestApp, execution_id: &str) -> Value {
    t.call(Route::GetExecution, &[("execution_id", execution_id)], None).await.body
}

/// The queued messages, as one SQS event (message ids as SQS gave them).
async fn receive(t: &TestApp, at_most: i32) -> SqsEvent {
    let client = sqs_client().await;
    let out = client.receive_message().queue_url(&t.queue_url).max_number_of_messages(at_most).send().await.unwrap();
    nodeai_tests::sqs_event(&out.messages.unwrap_or_default())
}

async fn queue(t: &TestApp) -> SqsExecutionQueue {
    SqsExecutionQueue::new(sqs_client().await, t.queue_url.clone())
}

/// Issue 10 item 1: two deliveries of one execution in one batch (an SQS duplicate) share the
/// invocation id; before, both held the lease and both called the side-effecting node.
#[tokio::test]
async fn two_deliveries_in_one_batch_call_the_side_effecting_node_once() {
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/charge"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok").set_delay(Duration::from_millis(300)))
        .expect(1)
        .mount(&stub)
        .await;
    let workflow = json!({ "name": "charge", "nodes": [
        { "id": "charge", "type": "http.request", "config": { "method": "POST", "url": format!("{}/charge", stub.uri()) } } ] });
    let id = t.create_workflow(workflow).await;
    let execution_id = start(&t, &id).await;
    let mut batch = receive(&t, 1).await;
    let mut duplicate = batch.records[0].clone();
    duplicate.message_id = Some("duplicate-delivery".into());
    batch.records.push(duplicate);
    let deadline = Instant::now() + Duration::from_secs(60);
    let response = handle_batch(
        t.store.as_ref(),
        &loopback_allowed(),
        &queue(&t).await,
        batch,
        "one-invocation",
        deadline,
        &RunningLimits::DEFAULT,
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    assert_eq!(execution(&t, &execution_id).await["status"], "succeeded");
    stub.verify().await;
}

/// Issue 10 item 2 (the hang test): a POST to a host that accepts and never answers, in a
/// workflow with no node timeout. Every invocation abandons it at its checkpoint time and
/// continues; the execution ends by its own timeout; the POST is sent at most once per
/// invocation, and the execution is never `running` after its deadline.
#[tokio::test]
async fn a_host_that_never_answers_is_abandoned_at_every_checkpoint_until_the_execution_times_out() {
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/hang"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(120)))
        .mount(&stub)
        .await;
    let workflow = json!({ "name": "hang", "timeout_seconds": 8, "nodes": [
        { "id": "post", "type": "http.request", "config": { "method": "POST", "url": format!("{}/hang", stub.uri()) } } ] });
    let id = t.create_workflow(workflow).await;
    let execution_id = start(&t, &id).await;
    let executor = loopback_allowed();
    let mut invocations = 0;
    // Lambda's budget: the checkpoint margin and half a second; the run is cut 5.5 s in.
    while invocations < 10 && run_worker_for(&t, &executor, CHECKPOINT_MARGIN + Duration::from_millis(500)).await > 0 {
        invocations += 1;
    }
    let done = execution(&t, &execution_id).await;
    assert_eq!(
        (done["status"].as_str(), done["error"]["code"].as_str()),
        (Some("timed_out"), Some("EXECUTION_TIMED_OUT")),
        "{done}"
    );
    let deadline = chrono::DateTime::parse_from_rfc3339(done["deadline_at"].as_str().unwrap()).unwrap();
    let finished = chrono::DateTime::parse_from_rfc3339(done["finished_at"].as_str().unwrap()).unwrap();
    assert!(finished - deadline < chrono::Duration::seconds(2), "ended at its deadline: {done}");
    assert!((2..=3).contains(&invocations), "checkpointed and continued: {invocations}");
    let posts = stub.received_requests().await.unwrap_or_default().len();
    assert!(posts <= invocations, "the POST went out {posts} times in {invocations} invocations");
}

/// Issue 10 item 4: redrive checks the state and the lease before it forgets any step.
#[tokio::test]
async fn a_redrive_of_a_still_leased_execution_is_409_and_forgets_nothing() {
    let t = TestApp::new().await;
    let workflow = json!({ "name": "x", "nodes": [
        { "id": "a", "type": "text.template", "config": { "template": "{{ input.missing }}" } } ] });
    let id = t.create_workflow(workflow).await;
    let execution_id = start(&t, &id).await;
    run_worker_for(&t, &nodeai::nodes::RegistryExecutor::default(), Duration::from_secs(60)).await;
    assert_eq!(execution(&t, &execution_id).await["status"], "failed");
    let steps_before = t.store.load_steps(&t.tenant_id, &execution_id).await.unwrap();
    assert_eq!(steps_before.len(), 1);
    // A worker still holds it (a give-up raced a live delivery in older code; any failed
    // execution with a live lease): put a lease on the item as such a worker would have.
    let client = nodeai_tests::dynamo_client().await;
    use aws_sdk_dynamodb::types::AttributeValue::S;
    client
        .update_item()
        .table_name(t.store.table())
        .key("pk", S(format!("T#{}", t.tenant_id)))
        .key("sk", S(format!("EX#{execution_id}")))
        .update_expression("SET lease_owner = :o, lease_until = :u")
        .expression_attribute_values(":o", S("live-worker".into()))
        .expression_attribute_values(":u", S(nodeai::model::rfc3339_in(300)))
        .send()
        .await
        .unwrap();
    let refused = t.call(Route::RedriveExecution, &[("execution_id", &execution_id)], None).await;
    refused.assert_error(409, "EXECUTION_NOT_REDRIVABLE");
    assert!(refused.raw.contains("lease"), "{}", refused.raw);
    assert_eq!(t.store.load_steps(&t.tenant_id, &execution_id).await.unwrap(), steps_before, "nothing was reset");
    let now = execution(&t, &execution_id).await;
    assert_eq!((now["status"].as_str(), now["redrive_count"].as_u64()), (Some("failed"), Some(0)));
}

/// Issue 10 item 3 (part): cancelling a queued execution ends it at once; nothing waits for a
/// worker that may never come.
#[tokio::test]
async fn cancelling_a_queued_execution_ends_it_at_once() {
    let t = TestApp::new().await;
    let id = t.create_workflow(simple()).await;
    let execution_id = start(&t, &id).await;
    let cancelled: Reply = t.call(Route::CancelExecution, &[("execution_id", &execution_id)], None).await;
    assert_eq!((cancelled.status, cancelled.body["status"].as_str()), (202, Some("cancelled")), "{}", cancelled.raw);
    let now = execution(&t, &execution_id).await;
    assert_eq!(now["status"], "cancelled");
    assert!(now["finished_at"].is_string());
    // The message still in the queue finds it final and is done.
    assert_eq!(run_worker_for(&t, &nodeai::nodes::RegistryExecutor::default(), Duration::from_secs(60)).await, 1);
    t.call(Route::CancelExecution, &[("execution_id", &execution_id)], None)
        .await
        .assert_error(409, "EXECUTION_FINISHED");
}

/// Issue 10 item 5: a fan-out to many paid calls, cancelled once it has started, makes the
/// calls of the wave in flight and no more (was: about 196 of 199).
#[tokio::test]
async fn a_cancel_during_a_fan_out_stops_it_before_the_next_call() {
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/call"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok").set_delay(Duration::from_millis(1500)))
        .mount(&stub)
        .await;
    let mut nodes = vec![json!({ "id": "root", "type": "text.template", "config": { "template": "go" } })];
    let mut edges = Vec::new();
    for i in 0..40 {
        nodes.push(json!({ "id": format!("call{i}"), "type": "http.request",
                           "config": { "method": "POST", "url": format!("{}/call", stub.uri()) } }));
        edges.push(json!({ "from": "root", "to": format!("call{i}") }));
    }
    let id = t.create_workflow(json!({ "name": "fan-out", "nodes": nodes, "edges": edges })).await;
    let execution_id = start(&t, &id).await;
    let executor = loopback_allowed();
    let (ran, _) = tokio::join!(run_worker_for(&t, &executor, Duration::from_secs(120)), async {
        // Once the first call is in flight.
        while stub.received_requests().await.unwrap_or_default().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cancel = t.call(Route::CancelExecution, &[("execution_id", &execution_id)], None).await;
        assert_eq!(cancel.status, 202, "{}", cancel.raw);
    });
    assert_eq!(ran, 1);
    assert_eq!(execution(&t, &execution_id).await["status"], "cancelled");
    let calls = stub.received_requests().await.unwrap_or_default().len();
    assert!(calls <= nodeai::engine::DEFAULT_CONCURRENCY, "only the wave in flight: {calls} calls");
}

/// Issue 10 item 3: an execution whose message is gone (the last delivery's continuation was
/// never sent; a worker killed by a hard timeout) is found by the sweeper through the sweep
/// index, requeued, and finishes; one past its deadline is failed with WORKER_FAILED.
#[tokio::test]
async fn the_sweeper_requeues_a_stranded_execution_and_fails_one_past_its_deadline() {
    let t = TestApp::new().await;
    let id = t.create_workflow(simple()).await;
    let stranded = start(&t, &id).await;
    // Its message is lost.
    purge(&t).await;
    let queue = queue(&t).await;
    let now = chrono::Utc::now();
    let report = nodeai::executions::sweep::sweep(t.store.as_ref(), &queue, now).await.unwrap();
    assert_eq!(report.found, 0, "within its grace nothing is stranded");
    let later = now + chrono::Duration::from_std(nodeai::model::SWEEP_GRACE).unwrap() + chrono::Duration::seconds(1);
    let report = nodeai::executions::sweep::sweep(t.store.as_ref(), &queue, later).await.unwrap();
    assert_eq!((report.found, report.requeued), (1, 1), "{report:?}");
    assert_eq!(run_worker_for(&t, &nodeai::nodes::RegistryExecutor::default(), Duration::from_secs(60)).await, 1);
    assert_eq!(execution(&t, &stranded).await["status"], "succeeded", "the requeued execution ran");

    // Leased by a worker that died, with its deadline (1 s) passed: failed, for redrive.
    let workflow = json!({ "name": "short", "timeout_seconds": 1, "nodes": [
        { "id": "a", "type": "text.template", "config": { "template": "x" } } ] });
    let short = t.create_workflow(workflow).await;
    let dead = start(&t, &short).await;
    purge(&t).await;
    let until = nodeai::model::rfc3339_in(2);
    assert!(
        t.store.claim_lease(&t.tenant_id, &dead, "killed-worker", &until, &nodeai::model::now_rfc3339()).await.unwrap()
    );
    let report = nodeai::executions::sweep::sweep(t.store.as_ref(), &queue, chrono::Utc::now()).await.unwrap();
    assert_eq!(report.found, 0, "a live lease is not stranded");
    let report = nodeai::executions::sweep::sweep(t.store.as_ref(), &queue, later).await.unwrap();
    assert_eq!((report.found, report.failed), (1, 1), "{report:?}");
    let failed = execution(&t, &dead).await;
    assert_eq!((failed["status"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("WORKER_FAILED")));
    let redriven = t.call(Route::RedriveExecution, &[("execution_id", &dead)], None).await;
    assert_eq!(redriven.status, 202, "{}", redriven.raw);
}

async fn purge(t: &TestApp) {
    let client = sqs_client().await;
    loop {
        let out = client.receive_message().queue_url(&t.queue_url).max_number_of_messages(10).send().await.unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return;
        }
        for m in messages {
            client
                .delete_message()
                .queue_url(&t.queue_url)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Issue 10 item 6: over its tier's limit, an execution stays queued (GET says why), its
/// delivery comes back later with a delay, and it runs once a slot is free.
#[tokio::test]
async fn over_its_tiers_limit_an_execution_waits_queued_and_runs_later() {
    let t = TestApp::new().await;
    let stub = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok").set_delay(Duration::from_millis(800)))
        .mount(&stub)
        .await;
    let workflow = json!({ "name": "slow", "nodes": [
        { "id": "call", "type": "http.request", "config": { "method": "GET", "url": format!("{}/slow", stub.uri()) } } ] });
    let id = t.create_workflow(workflow).await;
    let ids = [start(&t, &id).await, start(&t, &id).await, start(&t, &id).await];
    let limits = RunningLimits { free: 2, ..RunningLimits::DEFAULT };
    let mut batch = SqsEvent::default();
    while batch.records.len() < 3 {
        batch.records.extend(receive(&t, 3).await.records);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let response =
        handle_batch(t.store.as_ref(), &loopback_allowed(), &queue(&t).await, batch, "inv", deadline, &limits).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    let mut states = Vec::new();
    for execution_id in &ids {
        let view = execution(&t, execution_id).await;
        states
            .push((view["status"].as_str().unwrap().to_string(), view["waiting_reason"].as_str().map(str::to_string)));
    }
    assert_eq!(states.iter().filter(|(s, _)| s == "succeeded").count(), 2, "{states:?}");
    let (status, reason) = states.iter().find(|(s, _)| s != "succeeded").unwrap();
    assert_eq!(status, "queued", "never failed: {states:?}");
    assert!(reason.as_deref().is_some_and(|r| r.contains("limit")), "GET says why: {states:?}");
    // Its delivery was sent again with a delay, not failed back to SQS.
    let client = sqs_client().await;
    let attributes = client
        .get_queue_attributes()
        .queue_url(&t.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap();
    let delayed = attributes
        .attributes
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed).cloned());
    assert_eq!(delayed.as_deref(), Some("1"), "one delayed message");
}

/// Issue 10 item 6, the noisy-neighbour test: 10 tenants start 20 executions each at once,
/// and one of them also starts hostile ones (a host that never answers, a heavy template). A
/// pool of workers (as Lambda's event source would run them) drains the queue. Every other
/// tenant's execution finishes, none is stranded, and the noisy tenant never has more than its
/// limit (free: 5) running at once.
///
/// Ignored in the main run: 210 executions through the one single-threaded emulator take 1-2
/// minutes alone, and over three while the rest of the suite shares it. `scripts/test` runs it
/// by itself right after the suite (`--run-ignored only`).
#[tokio::test]
#[ignore = "load test: scripts/test runs it alone on the emulator"]
async fn a_noisy_tenant_gets_its_share_and_everyone_else_finishes() {
    let app = TestApp::new().await;
    let t = &app;
    let stub = nodeai_tests::InFlight::start().await;
    let limits = RunningLimits { wait: Duration::from_millis(500), ..RunningLimits::DEFAULT };
    let mut tenants = vec![(t.tenant_id.clone(), t.key.clone())];
    for i in 1..10 {
        let (tenant, key) =
            nodeai::auth::provision_tenant(t.store.as_ref(), &format!("tenant {i}"), "free", None).await.unwrap();
        tenants.push((tenant.tenant_id, key));
    }
    let noisy = tenants[0].0.clone();
    let call = |kind: &str, tenant: &str| {
        json!({ "id": "call", "type": "http.request",
                "config": { "method": "POST", "url": format!("{}/{kind}/{tenant}/{{{{ execution.id }}}}", stub.url) } })
    };
    let mut ordinary = Vec::new();
    let mut hostile = Vec::new();
    for (tenant, key) in &tenants {
        let create = |definition: Value| {
            let spec = nodeai_tests::RequestSpec::new(&[]).key(key).json(Some(definition));
            async move {
                let created = t.send(Route::CreateWorkflow, spec).await;
                assert_eq!(created.status, 201, "{}", created.raw);
                created.body["id"].as_str().unwrap().to_string()
            }
        };
        // Bulk work nobody watches: no events (the fairness under test is the run slots'; event
        // writes would only load the single-threaded emulator all 8 workers share).
        let work = create(json!({ "name": "work", "events": false, "nodes": [call("work", tenant)] })).await;
        let start_as = |workflow: String| {
            let spec = nodeai_tests::RequestSpec::new(&[("workflow_id", &workflow)])
                .key(key)
                .json(Some(json!({ "version": "draft" })));
            async move {
                let started = t.send(Route::StartExecution, spec).await;
                assert_eq!(started.status, 202, "{}", started.raw);
                started.body["execution_id"].as_str().unwrap().to_string()
            }
        };
        for _ in 0..20 {
            ordinary.push((tenant.clone(), start_as(work.clone()).await));
        }
        if *tenant == noisy {
            let hang = create(json!({ "name": "hang", "timeout_seconds": 15, "nodes": [call("hang", tenant)] })).await;
            let heavy = create(json!({ "name": "heavy", "timeout_seconds": 15, "nodes": [
                { "id": "burn", "type": "text.template",
                  "config": { "template": "{% for i in input.n %}{% for j in input.n %}{% endfor %}{% endfor %}x" } }] }))
            .await;
            for _ in 0..5 {
                hostile.push(start_as(hang.clone()).await);
                let spec = nodeai_tests::RequestSpec::new(&[("workflow_id", &heavy)])
                    .key(key)
                    .json(Some(json!({ "version": "draft", "input": { "n": (0..900).collect::<Vec<u32>>() } })));
                let started = t.send(Route::StartExecution, spec).await;
                hostile.push(started.body["execution_id"].as_str().unwrap().to_string());
            }
        }
    }
    let executor = loopback_allowed();
    let queue = queue(t).await;
    let all_final = || async {
        for (tenant, id) in ordinary.iter().map(|(t, i)| (t, i)).chain(hostile.iter().map(|id| (&noisy, id))) {
            let execution = t.store.get_execution(tenant, id).await.unwrap().unwrap();
            if !execution.status.is_final() {
                return false;
            }
        }
        true
    };
    // Eight Lambda instances draining the queue, each with 12 s per invocation.
    let invocation = CHECKPOINT_MARGIN + Duration::from_secs(2);
    nodeai_tests::run_workers(t, &executor, &queue, &limits, 8, invocation, Duration::from_secs(300), &all_final).await;
    for (tenant, id) in &ordinary {
        let execution = t.store.get_execution(tenant, id).await.unwrap().unwrap();
        assert_eq!(execution.status.as_str(), "succeeded", "{tenant}'s {id}: {execution:?}");
    }
    for id in &hostile {
        let execution = t.store.get_execution(&noisy, id).await.unwrap().unwrap();
        assert!(execution.status.is_final(), "a hostile execution ended too (not stranded): {execution:?}");
    }
    assert!(stub.peak(&noisy) <= 5, "the noisy tenant ran {} at once; its limit is 5", stub.peak(&noisy));
    for (tenant, _) in &tenants {
        assert!(stub.peak(tenant) <= 5, "{tenant} ran {} at once", stub.peak(tenant));
        assert!(stub.peak(tenant) >= 1);
    }
}
