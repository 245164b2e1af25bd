use super::*;
use crate::config::RunningLimits;
use crate::engine::{NodeCall, NodeFailure, NodeOutput};
use crate::model::DEFAULT_EXECUTION_TIMEOUT;
use crate::nodes::RegistryExecutor;
use crate::store::memory::MemoryStore;
use crate::store::{StepStore, TenantStore};
use crate::validation::validate_definition;
use async_trait::async_trait;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

fn workflow() -> WorkflowDefinition {
    let document = json!({
        "name": "three",
        "nodes": [
            { "id": "a", "type": "text.template", "config": { "template": "A {{ input.x }}" } },
            { "id": "b", "type": "text.template", "config": { "template": "{{ nodes.a.output.text }} B" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.b.output.text }}" } }
        ],
        "edges": [ { "from": "a", "to": "b" }, { "from": "b", "to": "done" } ]
    });
    let size = document.to_string().len();
    validate_definition(&document, size).unwrap()
}

/// Counts calls; optionally slow, so concurrent deliveries overlap.
#[derive(Default)]
struct Counting {
    calls: AtomicUsize,
    delay_ms: u64,
}

#[async_trait]
impl NodeExecutor for Counting {
    fn has_side_effects(&self, node_type: &str) -> bool {
        crate::nodes::has_side_effects(node_type)
    }

    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms)).await;
        RegistryExecutor::default().execute(call).await
    }
}

/// The queue message for one of tenant t1's executions.
fn message(execution_id: &str) -> crate::queue::ExecutionMessage {
    crate::queue::ExecutionMessage {
        tenant_id: "t1".into(),
        execution_id: execution_id.into(),
        request_id: "req-1".into(),
    }
}

fn budget(seconds: u64) -> Budget {
    Budget { deadline: Instant::now() + Duration::from_secs(seconds), margin: Duration::from_millis(10) }
}

async fn queued(store: &MemoryStore, timeout: Duration) -> ExecutionRecord {
    let record = ExecutionRecord::queued("t1", "wf1", Some(1), json!({ "x": 1 }), "req-1", timeout);
    store.create_execution(&record, &workflow()).await.unwrap();
    record
}

#[tokio::test]
async fn a_queued_execution_runs_to_success() {
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let record = queued(&store, DEFAULT_EXECUTION_TIMEOUT).await;
    let processed = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Finished(ExecutionStatus::Succeeded));
    let done = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!((done.status, done.output), (ExecutionStatus::Succeeded, json!("A 1 B")));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    // Redelivered after it finished: nothing runs again.
    let again = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w2",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(again, Processed::Finished(ExecutionStatus::Succeeded));
    assert_eq!(executor.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn two_concurrent_deliveries_run_each_node_once() {
    let store = MemoryStore::new();
    let executor = Counting { delay_ms: 50, ..Default::default() };
    let record = queued(&store, DEFAULT_EXECUTION_TIMEOUT).await;
    let id = record.execution_id.as_str();
    let (budget_1, budget_2) = (budget(60), budget(60));
    let delivery = message(id);
    let limits = RunningLimits::default();
    let (first, second) = tokio::join!(
        process(&store, &executor, &crate::queue::NoQueue, &delivery, "w1", &budget_1, &limits),
        process(&store, &executor, &crate::queue::NoQueue, &delivery, "w2", &budget_2, &limits),
    );
    let mut outcomes = vec![first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|p| format!("{p:?}"));
    assert_eq!(outcomes, vec![Processed::Busy, Processed::Finished(ExecutionStatus::Succeeded)]);
    assert_eq!(executor.calls.load(Ordering::SeqCst), 3, "each node called once");
}

#[tokio::test]
async fn a_spent_budget_checkpoints_before_any_node_and_the_continuation_finishes() {
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let record = queued(&store, DEFAULT_EXECUTION_TIMEOUT).await;
    let spent = Budget { deadline: Instant::now(), margin: Duration::from_secs(1) };
    let processed = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &spent,
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Continue);
    assert_eq!(executor.calls.load(Ordering::SeqCst), 0, "no node starts that could outlive the invocation");
    let last = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w2",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(last, Processed::Finished(ExecutionStatus::Succeeded), "the lease was released for the continuation");
    assert_eq!(executor.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_first_wave_is_cut_at_the_checkpoint_time() {
    // A node that takes 5 s, an invocation with 1.5 s left and a 1 s margin: the first (and
    // only) wave is abandoned at 1 s, before the Lambda would be killed.
    let (store, executor) = (MemoryStore::new(), Counting { delay_ms: 5000, ..Counting::default() });
    let record = queued(&store, DEFAULT_EXECUTION_TIMEOUT).await;
    let short = Budget { deadline: Instant::now() + Duration::from_millis(1500), margin: Duration::from_secs(1) };
    let started = Instant::now();
    let processed = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &short,
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Continue);
    assert!(started.elapsed() < Duration::from_millis(1500), "cut before the deadline: {:?}", started.elapsed());
    assert_eq!(executor.calls.load(Ordering::SeqCst), 1);
    assert!(store.load_steps("t1", &record.execution_id).await.unwrap().is_empty(), "the abandoned call has no step");
    let now = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(now.status, ExecutionStatus::Running, "checkpointed, to continue");
}

#[tokio::test]
async fn cancelled_and_timed_out_executions_start_no_node() {
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let record = queued(&store, DEFAULT_EXECUTION_TIMEOUT).await;
    assert!(store.request_cancel("t1", &record.execution_id).await.unwrap());
    let processed = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Finished(ExecutionStatus::Cancelled));

    let expired = queued(&store, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let processed = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&expired.execution_id),
        "w1",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Finished(ExecutionStatus::TimedOut));
    let timed_out = store.get_execution("t1", &expired.execution_id).await.unwrap().unwrap();
    assert_eq!(timed_out.error.unwrap().code, "EXECUTION_TIMED_OUT");
    assert_eq!(executor.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_held_lease_leaves_the_message_for_later() {
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let record = queued(&store, DEFAULT_EXECUTION_TIMEOUT).await;
    let until = crate::model::rfc3339_in(300);
    assert!(store.claim_lease("t1", &record.execution_id, "other", &until, &now_rfc3339()).await.unwrap());
    let processed = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Busy);
    assert_eq!(executor.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_node_fails_the_execution_with_its_name() {
    let store = MemoryStore::new();
    let record = ExecutionRecord::queued("t1", "wf1", None, json!({}), "req", DEFAULT_EXECUTION_TIMEOUT);
    store.create_execution(&record, &workflow()).await.unwrap();
    let processed = process(
        &store,
        &Counting::default(),
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Finished(ExecutionStatus::Failed));
    let failed = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    let error = failed.error.unwrap();
    assert_eq!(error.code, "TEMPLATE_UNDEFINED_VARIABLE");
    assert!(error.message.starts_with("node 'a'"), "{}", error.message);
}

#[tokio::test]
async fn a_node_still_running_at_the_execution_timeout_ends_it_as_timed_out() {
    // Every node takes 5 s; the execution may take 1 s (wall clock: deadline_at is a time of day).
    let (store, executor) = (MemoryStore::new(), Counting { delay_ms: 5000, ..Counting::default() });
    let record = queued(&store, Duration::from_secs(1)).await;
    let processed = process(
        &store,
        &executor,
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(processed, Processed::Finished(ExecutionStatus::TimedOut));
    let steps = store.load_steps("t1", &record.execution_id).await.unwrap();
    assert!(steps.is_empty(), "the first node was abandoned at the timeout, not waited for: {steps:?}");
    let done = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(done.error.map(|e| e.code), Some("EXECUTION_TIMED_OUT".to_string()));
}

#[tokio::test]
async fn over_its_tenants_limit_an_execution_stays_queued_with_a_reason_and_runs_later() {
    let store = MemoryStore::new();
    let executor = Counting { delay_ms: 200, ..Default::default() };
    let limits = RunningLimits { free: 2, ..RunningLimits::DEFAULT };
    let records = [
        queued(&store, DEFAULT_EXECUTION_TIMEOUT).await,
        queued(&store, DEFAULT_EXECUTION_TIMEOUT).await,
        queued(&store, DEFAULT_EXECUTION_TIMEOUT).await,
    ];
    let (b1, b2, b3) = (budget(60), budget(60), budget(60));
    let (m1, m2, m3) =
        (message(&records[0].execution_id), message(&records[1].execution_id), message(&records[2].execution_id));
    let (first, second, third) = tokio::join!(
        process(&store, &executor, &crate::queue::NoQueue, &m1, "w1", &b1, &limits),
        process(&store, &executor, &crate::queue::NoQueue, &m2, "w2", &b2, &limits),
        async {
            // Once the first two hold their slots.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let waiting = process(&store, &executor, &crate::queue::NoQueue, &m3, "w3", &b3, &limits).await.unwrap();
            let seen = store.get_execution("t1", &records[2].execution_id).await.unwrap().unwrap();
            (waiting, seen)
        }
    );
    assert_eq!(first.unwrap(), Processed::Finished(ExecutionStatus::Succeeded));
    assert_eq!(second.unwrap(), Processed::Finished(ExecutionStatus::Succeeded));
    let (waiting, seen) = third;
    assert!(matches!(waiting, Processed::Deferred(wait) if wait >= limits.wait), "{waiting:?}");
    assert_eq!(seen.status, ExecutionStatus::Queued, "never failed, never running: queued");
    assert!(seen.waiting_reason.as_deref().is_some_and(|r| r.contains("limit")), "{seen:?}");
    // The redelivery after the others ended runs it, and the reason goes.
    let later = process(&store, &executor, &crate::queue::NoQueue, &m3, "w4", &budget(60), &limits).await.unwrap();
    assert_eq!(later, Processed::Finished(ExecutionStatus::Succeeded));
    let done = store.get_execution("t1", &records[2].execution_id).await.unwrap().unwrap();
    assert_eq!(done.waiting_reason, None);
    assert_eq!(executor.calls.load(Ordering::SeqCst), 9, "three nodes each, once");
}

#[tokio::test]
async fn a_tenant_on_a_higher_tier_gets_its_tiers_limit() {
    let store = MemoryStore::new();
    let tenant = crate::model::Tenant {
        tenant_id: "t1".into(),
        name: "acme".into(),
        tier: "pro".into(),
        created_at: now_rfc3339(),
        usage_key_id: None,
        usage_key_value: None,
    };
    store.create_tenant(&tenant).await.unwrap();
    let limits = RunningLimits { free: 1, pro: 3, ..RunningLimits::DEFAULT };
    let now = now_rfc3339();
    let until = crate::model::rfc3339_in(60);
    for other in ["x1", "x2"] {
        assert!(store.acquire_run_slot("t1", other, &until, &now, 3).await.unwrap());
    }
    let record = queued(&store, DEFAULT_EXECUTION_TIMEOUT).await;
    let processed = process(
        &store,
        &Counting::default(),
        &crate::queue::NoQueue,
        &message(&record.execution_id),
        "w1",
        &budget(60),
        &limits,
    )
    .await;
    assert_eq!(processed.unwrap(), Processed::Finished(ExecutionStatus::Succeeded), "pro: 3 at once");
}

/// wait (`seconds` from the input) -> approve (schema: {"approved": bool}, 1 h) -> done.
fn approval_workflow() -> WorkflowDefinition {
    let document = json!({
        "name": "approval",
        "nodes": [
            { "id": "pause", "type": "flow.wait", "config": { "seconds": "{{ input.seconds }}" } },
            { "id": "approve", "type": "flow.approval", "config": {
                "timeout_seconds": 3600,
                "payload_schema": { "type": "object", "required": ["approved"],
                                    "properties": { "approved": { "type": "boolean" } } } } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.approve.output.approved }}" } }
        ],
        "edges": [ { "from": "pause", "to": "approve" }, { "from": "approve", "to": "done" } ]
    });
    validate_definition(&document, 1000).unwrap()
}

async fn waiting_execution(store: &MemoryStore, seconds: u64) -> ExecutionRecord {
    let record = ExecutionRecord::queued(
        "t1",
        "wf1",
        Some(1),
        json!({ "seconds": seconds }),
        "req-1",
        DEFAULT_EXECUTION_TIMEOUT,
    );
    store.create_execution(&record, &approval_workflow()).await.unwrap();
    record
}

async fn deliver(store: &MemoryStore, id: &str) -> Processed {
    let executor = RegistryExecutor::default();
    process(store, &executor, &crate::queue::NoQueue, &message(id), "w1", &budget(60), &RunningLimits::DEFAULT)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_parked_execution_holds_nothing_and_resumes_once_per_event() {
    let store = MemoryStore::new();
    let record = waiting_execution(&store, 600).await;
    let id = record.execution_id.as_str();
    let Processed::Parked(wake_ups) = deliver(&store, id).await else { panic!("expected a park") };
    let parked = store.get_execution("t1", id).await.unwrap().unwrap();
    assert_eq!(parked.status, ExecutionStatus::Waiting);
    assert_eq!(parked.waits.len(), 1);
    assert_eq!(wake_ups, vec![parked.waits[0].until.clone().unwrap()], "one timer, at the wait's end");
    assert!(
        store.acquire_run_slot("t1", "other", "2099-01-01T00:00:00Z", &now_rfc3339(), 1).await.unwrap(),
        "no slot held"
    );
    assert!(
        store.claim_lease("t1", id, "w2", &crate::model::rfc3339_in(60), &now_rfc3339()).await.unwrap(),
        "no lease held"
    );
    store.release_lease("t1", id, "w2", &[]).await.unwrap();
    store.release_run_slot("t1", "other").await.unwrap();

    // An early (duplicate) wake-up parks it again on the same wait, with no new timer.
    assert_eq!(deliver(&store, id).await, Processed::Parked(vec![]));
    assert_eq!(store.get_execution("t1", id).await.unwrap().unwrap().waits, parked.waits);
}

#[tokio::test]
async fn an_approval_is_answered_once_through_its_token_and_the_execution_finishes() {
    let store = MemoryStore::new();
    let record = waiting_execution(&store, 0).await;
    let id = record.execution_id.as_str();
    let Processed::Parked(wake_ups) = deliver(&store, id).await else { panic!("expected a park") };
    let waiting = store.get_execution("t1", id).await.unwrap().unwrap();
    let approval = waiting.waits.iter().find(|w| w.node_id == "approve").expect("parked on the approval");
    // The approval expires in an hour, after the execution's 15-minute deadline: woken then.
    assert_eq!(wake_ups, vec![waiting.deadline_at.clone()], "the timer is the earlier of expiry and deadline");
    let token = approval.callback_token.clone().unwrap();

    let queue = crate::queue::KeptQueue::default();
    let wrong = callbacks::answer_by_token(&store, &queue, &token, json!({ "approved": "yes" })).await;
    assert!(
        matches!(&wrong, Err(callbacks::CallbackError::PayloadInvalid(p)) if p[0]["path"] == "/approved"),
        "{wrong:?}"
    );
    // The same token with its last character changed (to another one: never the token itself).
    let last = if token.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &token[..42]);
    assert!(matches!(
        callbacks::answer_by_token(&store, &queue, &forged, json!({ "approved": true })).await,
        Err(callbacks::CallbackError::NotFound)
    ));
    assert!(queue.messages().is_empty(), "refused answers resume nothing");
    let answered = callbacks::answer_by_token(&store, &queue, &token, json!({ "approved": true })).await.unwrap();
    assert_eq!(answered.node_id, "approve");
    assert_eq!(queue.messages(), vec![message(id)], "one resume message");
    let again = callbacks::answer_by_token(&store, &queue, &token, json!({ "approved": false })).await;
    assert!(matches!(again, Err(callbacks::CallbackError::NotFound)), "single use: {again:?}");
    let by_node = callbacks::answer_by_node(&store, &queue, "t1", id, "approve", json!({ "approved": false })).await;
    assert!(matches!(by_node, Err(callbacks::CallbackError::NotWaiting(_))), "{by_node:?}");

    assert_eq!(deliver(&store, id).await, Processed::Finished(ExecutionStatus::Succeeded));
    let done = store.get_execution("t1", id).await.unwrap().unwrap();
    assert_eq!(done.output, json!(true));
    assert!(done.waits.is_empty());
    // A duplicate resume after the end does nothing.
    assert_eq!(deliver(&store, id).await, Processed::Finished(ExecutionStatus::Succeeded));
    let late = callbacks::answer_by_token(&store, &queue, &token, json!({ "approved": true })).await;
    assert!(matches!(late, Err(callbacks::CallbackError::NotFound)));
}

#[tokio::test]
async fn the_tenant_answers_by_node_and_other_tenants_cannot() {
    let store = MemoryStore::new();
    let record = waiting_execution(&store, 0).await;
    let id = record.execution_id.as_str();
    deliver(&store, id).await;
    let queue = crate::queue::KeptQueue::default();
    let stranger = callbacks::answer_by_node(&store, &queue, "t2", id, "approve", json!({ "approved": true })).await;
    assert!(matches!(stranger, Err(callbacks::CallbackError::ExecutionNotFound)));
    let not_waiting = callbacks::answer_by_node(&store, &queue, "t1", id, "pause", json!({})).await;
    assert!(matches!(not_waiting, Err(callbacks::CallbackError::NotWaiting(_))));
    callbacks::answer_by_node(&store, &queue, "t1", id, "approve", json!({ "approved": false })).await.unwrap();
    assert_eq!(deliver(&store, id).await, Processed::Finished(ExecutionStatus::Succeeded));
    assert_eq!(store.get_execution("t1", id).await.unwrap().unwrap().output, json!(false));
}

#[tokio::test]
async fn cancel_ends_a_wait_at_once_and_the_deadline_ends_it_timed_out() {
    let store = MemoryStore::new();
    let record = waiting_execution(&store, 600).await;
    deliver(&store, &record.execution_id).await;
    let waiting = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(start::cancel(&store, &waiting).await.unwrap(), start::CancelOutcome::Cancelled);
    assert_eq!(
        store.get_execution("t1", &record.execution_id).await.unwrap().unwrap().status,
        ExecutionStatus::Cancelled
    );
    assert_eq!(
        deliver(&store, &record.execution_id).await,
        Processed::Finished(ExecutionStatus::Cancelled),
        "its timer finds it ended"
    );

    // A wait longer than the execution's timeout: the wake-up at the deadline times it out.
    let record =
        ExecutionRecord::queued("t1", "wf1", Some(1), json!({ "seconds": 600 }), "req-1", Duration::from_secs(2));
    store.create_execution(&record, &approval_workflow()).await.unwrap();
    let Processed::Parked(wake_ups) = deliver(&store, &record.execution_id).await else { panic!("expected a park") };
    assert_eq!(wake_ups, vec![record.deadline_at.clone()], "woken at the deadline, not the wait's end");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(deliver(&store, &record.execution_id).await, Processed::Finished(ExecutionStatus::TimedOut));
}

/// A deployed workflow of tenant t1 (version 1), for children to run.
async fn deployed(store: &MemoryStore, document: serde_json::Value) -> String {
    use crate::store::WorkflowStore;
    let definition = validate_definition(&document, 1000).unwrap();
    let record = crate::model::WorkflowRecord::new_draft("t1", definition.clone());
    store.create_workflow(&record).await.unwrap();
    let version = crate::model::VersionRecord {
        tenant_id: "t1".into(),
        workflow_id: record.workflow_id.clone(),
        version: 1,
        definition,
        source_revision: record.revision,
        created_at: now_rfc3339(),
    };
    store.publish_version(&version).await.unwrap();
    store.set_deployed_version("t1", &record.workflow_id, 1, &now_rfc3339()).await.unwrap();
    record.workflow_id
}

/// Plays the SQS event source: delivers every queued message (in order) until none is left;
/// answers how many deliveries ran and the most children that were unfinished at once.
async fn drain(store: &MemoryStore, queue: &crate::queue::KeptQueue, executor: &dyn NodeExecutor) -> usize {
    let mut deliveries = 0;
    loop {
        let batch: Vec<_> = std::mem::take(&mut *queue.0.lock().unwrap()).into_iter().map(|(m, _)| m).collect();
        if batch.is_empty() {
            return deliveries;
        }
        for message in batch {
            deliveries += 1;
            process(store, executor, queue, &message, &format!("w{deliveries}"), &budget(60), &RunningLimits::DEFAULT)
                .await
                .unwrap();
        }
    }
}

fn map_parent(child_workflow: &str, concurrency: u32, tolerated: serde_json::Value) -> WorkflowDefinition {
    let document = json!({
        "name": "map parent",
        "nodes": [
            { "id": "each", "type": "flow.map", "config": {
                "workflow_id": child_workflow, "items": "{{ input.items }}",
                "concurrency": concurrency, "tolerated_failures": tolerated }, "on_error": "continue" },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.each.output }}" } }
        ],
        "edges": [ { "from": "each", "to": "done" } ]
    });
    validate_definition(&document, 1000).unwrap()
}

/// A child that renders its item, failing (an undefined variable) for the item "bad".
fn child_document() -> serde_json::Value {
    json!({
        "name": "child",
        "nodes": [
            { "id": "check", "type": "logic.condition", "config": { "expression": "input.item == 'bad'" } },
            { "id": "boom", "type": "text.template", "config": { "template": "{{ input.missing }}" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ input.item }}#{{ input.index }}" } }
        ],
        "edges": [ { "from": "check", "to": "boom", "when": "true" }, { "from": "check", "to": "done", "when": "false" } ]
    })
}

#[tokio::test]
async fn a_map_runs_every_item_once_as_its_own_child_with_a_sliding_window() {
    let store = MemoryStore::new();
    let child = deployed(&store, child_document()).await;
    let record = ExecutionRecord::queued(
        "t1",
        "parent",
        None,
        json!({ "items": ["a", "b", "c", "d", "e"] }),
        "req-1",
        DEFAULT_EXECUTION_TIMEOUT,
    );
    store.create_execution(&record, &map_parent(&child, 2, json!(0))).await.unwrap();
    let queue = crate::queue::KeptQueue::default();
    queue.send(&message(&record.execution_id)).await.unwrap();
    let executor = Counting::default();
    // The first delivery parks the parent with the window's first two children queued.
    let first: Vec<_> = std::mem::take(&mut *queue.0.lock().unwrap()).into_iter().map(|(m, _)| m).collect();
    let processed =
        process(&store, &executor, &queue, &first[0], "w0", &budget(60), &RunningLimits::DEFAULT).await.unwrap();
    assert!(matches!(processed, Processed::Parked(_)), "{processed:?}");
    let started: Vec<String> = queue.messages().into_iter().map(|m| m.execution_id).collect();
    let ids: Vec<String> = (0..5).map(|i| crate::model::child_execution_id(&record.execution_id, "each", i)).collect();
    assert_eq!(started, ids[..2], "two children at once, in item order");
    drain(&store, &queue, &executor).await;
    let done = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(done.output, json!(["a#0", "b#1", "c#2", "d#3", "e#4"]));
    for (index, id) in ids.iter().enumerate() {
        let child = store.get_execution("t1", id).await.unwrap().expect("each item is a child execution");
        assert_eq!(
            child.parent.as_ref().map(|p| (p.execution_id.as_str(), p.index)),
            Some((record.execution_id.as_str(), index as u32))
        );
        assert_eq!((child.status, child.depth), (ExecutionStatus::Succeeded, 1));
    }
    let batch = store.get_child_batch("t1", &record.execution_id, "each").await.unwrap().unwrap();
    assert_eq!((batch.succeeded, batch.failed), (5, 0), "each end counted once");
    // A redelivered child (a duplicate) counts nothing again and starts nothing new.
    queue.send(&message(&ids[4])).await.unwrap();
    drain(&store, &queue, &executor).await;
    let batch = store.get_child_batch("t1", &record.execution_id, "each").await.unwrap().unwrap();
    assert_eq!((batch.succeeded, batch.failed), (5, 0));
}

#[tokio::test]
async fn map_failures_within_the_tolerance_are_nulls_beyond_it_the_node_fails() {
    let store = MemoryStore::new();
    let child = deployed(&store, child_document()).await;
    let executor = Counting::default();
    for (tolerated, succeeds) in [(json!(1), true), (json!("0%"), false)] {
        let record = ExecutionRecord::queued(
            "t1",
            "parent",
            None,
            json!({ "items": ["a", "bad", "c"] }),
            "req-1",
            DEFAULT_EXECUTION_TIMEOUT,
        );
        store.create_execution(&record, &map_parent(&child, 3, tolerated.clone())).await.unwrap();
        let queue = crate::queue::KeptQueue::default();
        queue.send(&message(&record.execution_id)).await.unwrap();
        drain(&store, &queue, &executor).await;
        let done = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded, "on_error: continue");
        let steps = store.load_steps("t1", &record.execution_id).await.unwrap();
        let each = steps.iter().find(|s| s.node_id == "each").unwrap();
        if succeeds {
            assert_eq!(each.output, json!(["a#0", null, "c#2"]), "{tolerated}");
        } else {
            let error = each.error.clone().unwrap();
            assert_eq!(error.code, "MAP_ITEMS_FAILED", "{tolerated}");
            assert!(error.message.contains("item 1: TEMPLATE_UNDEFINED_VARIABLE"), "{}", error.message);
        }
    }
}

#[tokio::test]
async fn a_subworkflow_hands_its_output_to_the_parent_and_its_failure_to_the_error_branch() {
    let store = MemoryStore::new();
    let child = deployed(&store, child_document()).await;
    let parent = validate_definition(
        &json!({
            "name": "sub parent",
            "nodes": [
                { "id": "sub", "type": "flow.subworkflow", "on_error": "branch",
                  "config": { "workflow_id": child, "input": { "item": "{{ input.word }}", "index": 7 } } },
                { "id": "ok", "type": "flow.output", "config": { "value": "got {{ nodes.sub.output }}" } },
                { "id": "handled", "type": "text.template", "config": { "template": "handled {{ nodes.sub.error.code }}" } }
            ],
            "edges": [ { "from": "sub", "to": "ok" }, { "from": "sub", "to": "handled", "when": "error" } ]
        }),
        1000,
    )
    .unwrap();
    let executor = Counting::default();
    for (word, status) in [("x", "ok"), ("bad", "handled")] {
        let record =
            ExecutionRecord::queued("t1", "parent", None, json!({ "word": word }), "req-1", DEFAULT_EXECUTION_TIMEOUT);
        store.create_execution(&record, &parent).await.unwrap();
        let queue = crate::queue::KeptQueue::default();
        queue.send(&message(&record.execution_id)).await.unwrap();
        drain(&store, &queue, &executor).await;
        let done = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        let steps = store.load_steps("t1", &record.execution_id).await.unwrap();
        let ran =
            |node: &str| steps.iter().any(|s| s.node_id == node && s.status == crate::model::StepStatus::Succeeded);
        assert!(ran(status), "{word}: {steps:?}");
        if word == "x" {
            assert_eq!(done.output, json!("got x#7"));
        } else {
            let sub = steps.iter().find(|s| s.node_id == "sub").unwrap();
            assert_eq!(sub.error.as_ref().map(|e| e.code.as_str()), Some("SUBWORKFLOW_FAILED"));
        }
    }
}

#[tokio::test]
async fn cancelling_a_parent_stops_its_children_and_a_missing_workflow_fails_the_node() {
    let store = MemoryStore::new();
    let child = deployed(&store, child_document()).await;
    let record = ExecutionRecord::queued(
        "t1",
        "parent",
        None,
        json!({ "items": ["a", "b", "c"] }),
        "req-1",
        DEFAULT_EXECUTION_TIMEOUT,
    );
    store.create_execution(&record, &map_parent(&child, 1, json!(0))).await.unwrap();
    let queue = crate::queue::KeptQueue::default();
    let executor = Counting::default();
    process(&store, &executor, &queue, &message(&record.execution_id), "w0", &budget(60), &RunningLimits::DEFAULT)
        .await
        .unwrap();
    let parked = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(start::cancel(&store, &parked).await.unwrap(), start::CancelOutcome::Cancelled);
    drain(&store, &queue, &executor).await;
    let first = crate::model::child_execution_id(&record.execution_id, "each", 0);
    assert_eq!(store.get_execution("t1", &first).await.unwrap().unwrap().status, ExecutionStatus::Cancelled);
    let second = crate::model::child_execution_id(&record.execution_id, "each", 1);
    assert!(store.get_execution("t1", &second).await.unwrap().is_none(), "no child starts after the parent ended");

    let orphan =
        ExecutionRecord::queued("t1", "parent", None, json!({ "items": [1] }), "req-1", DEFAULT_EXECUTION_TIMEOUT);
    store.create_execution(&orphan, &map_parent("01ARZ3NDEKTSV4RRFFQ69G5FAV", 1, json!(0))).await.unwrap();
    queue.send(&message(&orphan.execution_id)).await.unwrap();
    drain(&store, &queue, &executor).await;
    let steps = store.load_steps("t1", &orphan.execution_id).await.unwrap();
    let each = steps.iter().find(|s| s.node_id == "each").unwrap();
    assert_eq!(each.error.as_ref().map(|e| e.code.as_str()), Some("CHILD_WORKFLOW_UNAVAILABLE"));
}

#[tokio::test]
async fn redriving_a_failed_map_runs_only_its_failed_items_again() {
    let store = MemoryStore::new();
    let child = deployed(&store, child_document()).await;
    let parent = {
        let mut definition = map_parent(&child, 2, json!(0));
        definition.nodes[0].on_error = crate::model::OnError::Fail;
        definition
    };
    let record = ExecutionRecord::queued(
        "t1",
        "parent",
        None,
        json!({ "items": ["a", "bad", "c"] }),
        "req-1",
        DEFAULT_EXECUTION_TIMEOUT,
    );
    store.create_execution(&record, &parent).await.unwrap();
    let queue = crate::queue::KeptQueue::default();
    queue.send(&message(&record.execution_id)).await.unwrap();
    let executor = Counting::default();
    drain(&store, &queue, &executor).await;
    let failed = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed);
    let calls_before = executor.calls.load(Ordering::SeqCst);

    start::redrive(&store, &queue, &failed, "req-2").await.unwrap();
    drain(&store, &queue, &executor).await;
    let again = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(again.status, ExecutionStatus::Failed, "the item fails the same way again");
    assert_eq!(executor.calls.load(Ordering::SeqCst) - calls_before, 2, "only item 1's nodes ran (check, boom)");
    for (index, redrives) in [(0, 0), (1, 1), (2, 0)] {
        let id = crate::model::child_execution_id(&record.execution_id, "each", index);
        assert_eq!(store.get_execution("t1", &id).await.unwrap().unwrap().redrive_count, redrives, "item {index}");
    }
    let batch = store.get_child_batch("t1", &record.execution_id, "each").await.unwrap().unwrap();
    assert_eq!((batch.succeeded, batch.failed, batch.generation), (2, 1, 1), "counted once per end");
}

/// An executor that answers the approval while another node runs: an answer that arrives while
/// the run holds the lease.
struct AnswersMidRun<'a>(&'a MemoryStore, String);

#[async_trait]
impl NodeExecutor for AnswersMidRun<'_> {
    fn has_side_effects(&self, node_type: &str) -> bool {
        crate::nodes::has_side_effects(node_type)
    }
    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        let answer = crate::model::StepRecord {
            node_id: "approve".into(),
            status: crate::model::StepStatus::Succeeded,
            output: json!({ "ok": true }),
            ..Default::default()
        };
        self.0.record_step("t1", &self.1, &answer).await.unwrap();
        RegistryExecutor::default().execute(call).await
    }
}

#[tokio::test]
async fn an_answer_that_came_while_the_run_held_the_lease_resumes_it_at_once() {
    let store = MemoryStore::new();
    let document = json!({
        "name": "race",
        "nodes": [
            { "id": "approve", "type": "flow.approval", "config": {} },
            { "id": "work", "type": "text.template", "config": { "template": "busy" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.approve.output.ok }}" } }
        ],
        "edges": [ { "from": "approve", "to": "done" }, { "from": "work", "to": "done" } ]
    });
    let record = ExecutionRecord::queued("t1", "wf1", None, json!({}), "req-1", DEFAULT_EXECUTION_TIMEOUT);
    store.create_execution(&record, &validate_definition(&document, 1000).unwrap()).await.unwrap();
    let queue = crate::queue::KeptQueue::default();
    let executor = AnswersMidRun(&store, record.execution_id.clone());
    let processed =
        process(&store, &executor, &queue, &message(&record.execution_id), "w1", &budget(60), &RunningLimits::DEFAULT)
            .await
            .unwrap();
    assert!(matches!(processed, Processed::Parked(_)), "{processed:?}");
    assert_eq!(
        queue.messages(),
        vec![message(&record.execution_id)],
        "resumed at once, not after the visibility timeout"
    );
    let resumed = process(
        &store,
        &RegistryExecutor::default(),
        &queue,
        &message(&record.execution_id),
        "w2",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert_eq!(resumed, Processed::Finished(ExecutionStatus::Succeeded));
}

/// Fails the node `work` of item 0 the first time it runs: a transient failure a redrive fixes.
#[derive(Default)]
struct FailsItemZeroOnce(std::sync::atomic::AtomicBool);

#[async_trait]
impl NodeExecutor for FailsItemZeroOnce {
    fn has_side_effects(&self, node_type: &str) -> bool {
        crate::nodes::has_side_effects(node_type)
    }
    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        if call.node.id == "work" && call.scope["input"]["index"] == json!(0) && !self.0.swap(true, Ordering::SeqCst) {
            return Err(NodeFailure::permanent(crate::model::StepErrorCode::NodeFailed, "first try fails"));
        }
        RegistryExecutor::default().execute(call).await
    }
}

#[tokio::test]
async fn a_redriven_map_finishes_the_items_its_failure_kept_from_starting() {
    let store = MemoryStore::new();
    let child = deployed(
        &store,
        json!({ "name": "item", "nodes": [
            { "id": "work", "type": "text.template", "config": { "template": "{{ input.item }}" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.work.output.text }}" } } ],
            "edges": [ { "from": "work", "to": "done" } ] }),
    )
    .await;
    let mut parent = map_parent(&child, 2, json!(0));
    parent.nodes[0].on_error = crate::model::OnError::Fail;
    let items = json!({ "items": ["a", "b", "c", "d", "e", "f"] });
    let record = ExecutionRecord::queued("t1", "parent", None, items, "req-1", DEFAULT_EXECUTION_TIMEOUT);
    store.create_execution(&record, &parent).await.unwrap();
    let queue = crate::queue::KeptQueue::default();
    queue.send(&message(&record.execution_id)).await.unwrap();
    let executor = FailsItemZeroOnce::default();
    drain(&store, &queue, &executor).await;
    let failed = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(failed.status, ExecutionStatus::Failed, "item 0 failed beyond the tolerance");
    let never = crate::model::child_execution_id(&record.execution_id, "each", 5);
    assert!(store.get_execution("t1", &never).await.unwrap().is_none(), "the failure stopped the window");

    start::redrive(&store, &queue, &failed, "req-2").await.unwrap();
    drain(&store, &queue, &executor).await;
    let done = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(done.output, json!(["a#0", "b#1", "c#2", "d#3", "e#4", "f#5"].map(|s| s.split('#').next().unwrap())));
    let batch = store.get_child_batch("t1", &record.execution_id, "each").await.unwrap().unwrap();
    assert_eq!((batch.succeeded, batch.failed), (6, 0));

    // A child is never redriven on its own: its parent counts it.
    let child_record = store
        .get_execution("t1", &crate::model::child_execution_id(&record.execution_id, "each", 0))
        .await
        .unwrap()
        .unwrap();
    let refused = start::redrive(&store, &queue, &child_record, "req-3").await;
    assert!(matches!(refused, Err(start::LifecycleError::ChildOfParent(_))), "{refused:?}");
}

#[tokio::test]
async fn waits_begun_before_a_checkpoint_are_kept_so_the_next_invocation_does_not_begin_them_again() {
    let store = MemoryStore::new();
    let document = json!({
        "name": "approval beside slow work",
        "nodes": [
            { "id": "approve", "type": "flow.approval", "config": {} },
            { "id": "slow", "type": "text.template", "config": { "template": "slow" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.approve.output }}" } }
        ],
        "edges": [ { "from": "approve", "to": "done" }, { "from": "slow", "to": "done" } ]
    });
    let record = ExecutionRecord::queued("t1", "wf1", None, json!({}), "req-1", DEFAULT_EXECUTION_TIMEOUT);
    store.create_execution(&record, &validate_definition(&document, 1000).unwrap()).await.unwrap();
    let id = record.execution_id.as_str();
    // The slow node outlives the invocation: the run checkpoints after the approval began.
    let slow = Counting { delay_ms: 2000, ..Default::default() };
    let short = Budget { deadline: Instant::now() + Duration::from_millis(600), margin: Duration::from_millis(100) };
    let first = process(&store, &slow, &crate::queue::NoQueue, &message(id), "w1", &short, &RunningLimits::DEFAULT)
        .await
        .unwrap();
    assert_eq!(first, Processed::Continue);
    let kept = store.get_execution("t1", id).await.unwrap().unwrap().waits;
    assert_eq!(kept.len(), 1, "the approval's wait is kept: {kept:?}");
    let token = kept[0].callback_token.clone().unwrap();
    let second = process(
        &store,
        &Counting::default(),
        &crate::queue::NoQueue,
        &message(id),
        "w2",
        &budget(60),
        &RunningLimits::DEFAULT,
    )
    .await
    .unwrap();
    assert!(matches!(second, Processed::Parked(_)), "{second:?}");
    let parked = store.get_execution("t1", id).await.unwrap().unwrap();
    assert_eq!(parked.waits[0].callback_token.as_deref(), Some(token.as_str()), "the same token, not a second one");
}

#[tokio::test]
async fn a_child_stops_when_any_ancestor_has_ended() {
    let store = MemoryStore::new();
    let mut grandparent = ExecutionRecord::queued("t1", "wf", None, json!({}), "r", DEFAULT_EXECUTION_TIMEOUT);
    grandparent.execution_id = crate::model::new_id();
    let link = |parent: &ExecutionRecord| {
        Some(crate::model::ParentLink { execution_id: parent.execution_id.clone(), node_id: "n".into(), index: 0 })
    };
    let mut parent = ExecutionRecord::queued("t1", "wf", None, json!({}), "r", DEFAULT_EXECUTION_TIMEOUT);
    parent.parent = link(&grandparent);
    let mut child = ExecutionRecord::queued("t1", "wf", None, json!({}), "r", DEFAULT_EXECUTION_TIMEOUT);
    child.parent = link(&parent);
    for record in [&grandparent, &parent, &child] {
        store.create_execution(record, &workflow()).await.unwrap();
    }
    assert!(!children::parent_ended(&store, &child).await.unwrap(), "every ancestor runs");
    assert_eq!(start::cancel(&store, &grandparent).await.unwrap(), start::CancelOutcome::Cancelled);
    assert!(children::parent_ended(&store, &child).await.unwrap(), "the grandparent's cancel reaches the grandchild");
}

/// Every event recorded for an execution, as (type, node id).
async fn recorded_events(store: &MemoryStore, execution_id: &str) -> Vec<(String, String)> {
    use crate::events::EventStore;
    let batches = store.read_events("t1", execution_id, 1, 100).await.unwrap();
    batches
        .iter()
        .flat_map(|b| b.events.iter())
        .map(|e| (e.kind.clone(), e.data["node_id"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[tokio::test]
async fn a_run_records_its_step_transitions_in_order_and_none_when_events_are_off() {
    let document = json!({
        "name": "branch",
        "nodes": [
            { "id": "a", "type": "text.template", "config": { "template": "{{ input.x }}" } },
            { "id": "check", "type": "logic.condition", "config": { "expression": "input.x == 1" } },
            { "id": "yes", "type": "text.template", "config": { "template": "yes" } },
            { "id": "no", "type": "text.template", "config": { "template": "no" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.yes.output.text }}" } }
        ],
        "edges": [
            { "from": "a", "to": "check" },
            { "from": "check", "to": "yes", "when": "true" },
            { "from": "check", "to": "no", "when": "false" },
            { "from": "yes", "to": "done" }
        ]
    });
    for events_on in [true, false] {
        let mut document = document.clone();
        if !events_on {
            document["events"] = json!(false);
        }
        let definition = validate_definition(&document, 10_000).unwrap();
        let store = MemoryStore::new();
        let record =
            ExecutionRecord::queued("t1", "wf1", Some(1), json!({ "x": 1 }), "req-1", DEFAULT_EXECUTION_TIMEOUT);
        store.create_execution(&record, &definition).await.unwrap();
        let processed = process(
            &store,
            &Counting::default(),
            &crate::queue::NoQueue,
            &message(&record.execution_id),
            "w1",
            &budget(60),
            &RunningLimits::DEFAULT,
        )
        .await
        .unwrap();
        assert_eq!(processed, Processed::Finished(ExecutionStatus::Succeeded));
        let events = recorded_events(&store, &record.execution_id).await;
        if !events_on {
            assert!(events.is_empty(), "events off: nothing written: {events:?}");
            continue;
        }
        let seen: Vec<(&str, &str)> = events.iter().map(|(k, n)| (k.as_str(), n.as_str())).collect();
        assert_eq!(
            seen,
            [
                ("execution.started", ""),
                ("step.started", "a"),
                ("step.succeeded", "a"),
                ("step.started", "check"),
                ("step.succeeded", "check"),
                ("step.skipped", "no"),
                ("step.started", "yes"),
                ("step.succeeded", "yes"),
                ("step.started", "done"),
                ("step.succeeded", "done"),
            ]
        );
    }
}
