use super::*;
use crate::model::StepErrorCode;
use crate::store::memory::MemoryStore;
use crate::validation::validate_definition;
use serde_json::json;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

fn definition(document: Value) -> WorkflowDefinition {
    let size = document.to_string().len();
    validate_definition(&document, size).unwrap_or_else(|p| panic!("test workflow is invalid: {p:?}"))
}

/// The registry executor, counting calls per node; scripted failures per node id.
#[derive(Default)]
struct Counting {
    calls: Mutex<HashMap<String, usize>>,
    failures: Mutex<HashMap<String, Vec<NodeFailure>>>,
    delay: Option<Duration>,
}

impl Counting {
    fn calls(&self, node: &str) -> usize {
        self.calls.lock().unwrap().get(node).copied().unwrap_or(0)
    }
    fn fail_first(&self, node: &str, failures: Vec<NodeFailure>) {
        self.failures.lock().unwrap().insert(node.to_string(), failures);
    }
}

#[async_trait]
impl NodeExecutor for Counting {
    fn has_side_effects(&self, node_type: &str) -> bool {
        crate::nodes::has_side_effects(node_type)
    }

    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        let node = call.node;
        *self.calls.lock().unwrap().entry(node.id.clone()).or_default() += 1;
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        let scripted =
            self.failures.lock().unwrap().get_mut(&node.id).and_then(|f| (!f.is_empty()).then(|| f.remove(0)));
        match scripted {
            Some(failure) => Err(failure),
            None => crate::nodes::RegistryExecutor::default().execute(call).await,
        }
    }
}

fn branching_workflow() -> WorkflowDefinition {
    definition(json!({
        "name": "branching",
        "nodes": [
            { "id": "greet", "type": "text.template", "config": { "template": "Hello {{ input.name }}" } },
            { "id": "check", "type": "logic.condition", "config": { "expression": "input.n > 1" } },
            { "id": "big", "type": "text.template", "config": { "template": "{{ input.n }} is big" } },
            { "id": "small", "type": "text.template", "config": { "template": "{{ input.n }} is small" } },
            { "id": "shape", "type": "data.json",
              "config": { "source": { "greeting": "{{ nodes.greet.output.text }}", "n": "{{ input.n }}" },
                          "set": [ { "pointer": "/verdict", "value": "{{ nodes.big.output.text }}" } ] } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.shape.output }}" } }
        ],
        "edges": [
            { "from": "greet", "to": "check" },
            { "from": "check", "to": "big", "when": "true" },
            { "from": "check", "to": "small", "when": "false" },
            { "from": "big", "to": "shape" },
            { "from": "shape", "to": "done" }
        ]
    }))
}

fn ctx<'a>(definition: &'a WorkflowDefinition, input: &'a Value, execution_id: &'a str) -> RunContext<'a> {
    RunContext {
        request_id: "req-1",
        tenant_id: "t1",
        execution_id,
        workflow_id: "wf1",
        input,
        definition,
        timeout_at: None,
        checkpoint_at: None,
        values: None,
        waits: &[],
        deadline_at: None,
        callbacks: None,
        children: None,
        events: &crate::events::EVENTS_OFF,
        resumed: false,
    }
}

fn never() -> Option<StopReason> {
    None
}

/// What the worker does with a run's unrecorded (pure and skipped) steps: keeps them, so a
/// resumed run and the assertions below see them. Here they are simply recorded.
async fn finished(result: RunResult, store: &MemoryStore) -> RunOutcome {
    for step in result.unrecorded {
        store.record_step("t1", "e1", &step).await.unwrap();
    }
    result.outcome
}

async fn steps_of(store: &MemoryStore, execution_id: &str) -> HashMap<String, StepRecord> {
    store.load_steps("t1", execution_id).await.unwrap().into_iter().map(|s| (s.node_id.clone(), s)).collect()
}

#[tokio::test]
async fn a_branching_workflow_runs_one_branch_and_skips_the_other() {
    let (store, executor, workflow) = (MemoryStore::new(), Counting::default(), branching_workflow());
    let input = json!({ "name": "Ada", "n": 3 });
    let outcome = finished(
        run(&ctx(&workflow, &input, "e1"), &store, &executor, &never, DEFAULT_CONCURRENCY).await.unwrap(),
        &store,
    )
    .await;
    assert_eq!(
        outcome,
        RunOutcome::Succeeded { output: json!({ "greeting": "Hello Ada", "n": 3, "verdict": "3 is big" }) }
    );
    let steps = steps_of(&store, "e1").await;
    assert_eq!(steps["small"].status, StepStatus::Skipped);
    assert_eq!(steps["check"].output, json!(true));
    for node in ["greet", "check", "big", "shape", "done"] {
        assert_eq!(steps[node].status, StepStatus::Succeeded, "{node}");
        assert_eq!(steps[node].attempts, 1);
        assert_eq!(executor.calls(node), 1);
    }
    assert_eq!(executor.calls("small"), 0);
}

#[tokio::test]
async fn the_false_branch_skips_everything_behind_the_true_one() {
    let (store, executor, workflow) = (MemoryStore::new(), Counting::default(), branching_workflow());
    let input = json!({ "name": "Bo", "n": 1 });
    let outcome =
        finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &never, 1).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Succeeded { output: Value::Null }, "flow.output was skipped with its branch");
    let steps = steps_of(&store, "e1").await;
    for node in ["big", "shape", "done"] {
        assert_eq!(steps[node].status, StepStatus::Skipped, "{node}");
    }
    assert_eq!(steps["small"].output, json!({ "text": "1 is small" }));
}

#[tokio::test]
async fn a_resumed_run_never_repeats_a_recorded_node() {
    let (store, executor, workflow) = (MemoryStore::new(), Counting::default(), branching_workflow());
    let input = json!({ "name": "Ada", "n": 3 });
    // Stop once check has run, as a worker near its deadline would.
    let stop_after_two = || (executor.calls("check") >= 1).then_some(StopReason::Deadline);
    let first =
        finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &stop_after_two, 4).await.unwrap(), &store)
            .await;
    assert_eq!(first, RunOutcome::Stopped(StopReason::Deadline));
    assert_eq!((executor.calls("greet"), executor.calls("check"), executor.calls("big")), (1, 1, 0));
    // The continuation (or a redelivered message) resumes from the records.
    let second =
        finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert!(matches!(second, RunOutcome::Succeeded { .. }));
    for node in ["greet", "check", "big", "shape", "done"] {
        assert_eq!(executor.calls(node), 1, "{node} ran once across both invocations");
    }
    // Running a finished execution again calls nothing.
    let third = finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert_eq!(third, second);
    assert_eq!(executor.calls("greet"), 1);
}

#[tokio::test]
async fn a_crash_after_a_checkpoint_resumes_after_it() {
    let (store, executor, workflow) = (MemoryStore::new(), Counting::default(), branching_workflow());
    let input = json!({ "name": "Ada", "n": 3 });
    // A worker that died right after recording greet and check.
    for (node, output) in [("greet", json!({ "text": "Hello from before" })), ("check", json!(true))] {
        let step = StepRecord {
            node_id: node.into(),
            status: StepStatus::Succeeded,
            attempts: 1,
            started_at: Some(now_rfc3339()),
            finished_at: Some(now_rfc3339()),
            output,
            error: None,
            ..StepRecord::default()
        };
        store.record_step("t1", "e1", &step).await.unwrap();
    }
    let outcome =
        finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert_eq!(executor.calls("greet") + executor.calls("check"), 0);
    let RunOutcome::Succeeded { output } = outcome else { panic!("{outcome:?}") };
    assert_eq!(output["greeting"], "Hello from before", "recorded outputs feed later nodes");
}

#[tokio::test]
async fn a_conditional_write_keeps_the_first_result() {
    let store = MemoryStore::new();
    let step = |text: &str| StepRecord {
        node_id: "n".into(),
        status: StepStatus::Succeeded,
        attempts: 1,
        started_at: None,
        finished_at: None,
        output: json!(text),
        error: None,
        ..StepRecord::default()
    };
    store.record_step("t1", "e1", &step("first")).await.unwrap();
    assert!(matches!(store.record_step("t1", "e1", &step("second")).await, Err(StoreError::ConditionFailed)));
    assert_eq!(steps_of(&store, "e1").await["n"].output, json!("first"));
}

fn single(node: Value) -> WorkflowDefinition {
    definition(json!({
        "name": "one",
        "nodes": [ node, { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.work.output.text }}" } } ],
        "edges": [ { "from": "work", "to": "done" } ]
    }))
}

#[tokio::test(start_paused = true)]
async fn retryable_failures_are_retried_and_permanent_ones_are_not() {
    let workflow = single(json!({ "id": "work", "type": "text.template", "config": { "template": "ok" },
                                 "retry": { "max_attempts": 3, "initial_delay_ms": 1000, "jitter": false } }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let answered = |status: u16, retryable: bool| NodeFailure {
        code: StepErrorCode::HttpStatus.with_status(status),
        message: format!("answered {status}"),
        retryable,
        ..Default::default()
    };
    let mut throttled = answered(429, true);
    throttled.retry_after = Some(Duration::from_secs(5));
    executor.fail_first("work", vec![throttled, answered(503, true)]);
    let started = tokio::time::Instant::now();
    let outcome =
        finished(run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Succeeded { output: json!("ok") });
    assert_eq!(steps_of(&store, "e1").await["work"].attempts, 3);
    // Retry-After (5 s) honoured, then the 2 s backoff of attempt 2.
    assert!(started.elapsed() >= Duration::from_secs(7), "{:?}", started.elapsed());

    let (store, executor) = (MemoryStore::new(), Counting::default());
    executor.fail_first("work", vec![answered(401, false)]);
    let outcome =
        finished(run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    let RunOutcome::Failed { node_id, error } = outcome else { panic!("{outcome:?}") };
    assert_eq!((node_id.as_str(), error.code.as_str()), ("work", "HTTP_401"));
    assert_eq!(executor.calls("work"), 1, "a 401 is not retried");
    assert_eq!(executor.calls("done"), 0);
}

#[tokio::test(start_paused = true)]
async fn every_billed_attempt_counts_and_a_failed_step_keeps_what_it_sent() {
    let workflow = single(json!({ "id": "work", "type": "text.template", "config": { "template": "ok" },
                                 "retry": { "max_attempts": 2, "initial_delay_ms": 10 } }));
    let sent = json!({ "messages": [ { "role": "user", "content": "hi" } ] });
    let billed = |retryable| NodeFailure {
        retryable,
        billed: Some(Box::new(Billed {
            usage: TokenUsage::new(100, 20),
            cost_usd: Some(0.0003),
            model: "gpt-4o-mini".into(),
        })),
        ..NodeFailure::permanent(StepErrorCode::LlmInvalidJson, "not json")
    };
    // A billed attempt, then a success (which used no tokens): the step carries the first's usage.
    let (store, executor) = (MemoryStore::new(), Counting::default());
    executor.fail_first("work", vec![billed(true)]);
    let outcome =
        finished(run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Succeeded { output: json!("ok") });
    let work = &steps_of(&store, "e1").await["work"];
    assert_eq!((work.attempts, work.usage, work.cost_usd), (2, Some(TokenUsage::new(100, 20)), Some(0.0003)));

    // Two billed failures: both are counted, and the failed step shows the input it sent.
    let (store, executor) = (MemoryStore::new(), Counting::default());
    executor.fail_first("work", vec![billed(true), billed(false).with_input(&sent)]);
    finished(run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    let work = &steps_of(&store, "e1").await["work"];
    assert_eq!(work.status, StepStatus::Failed);
    assert_eq!(work.usage, Some(TokenUsage::new(200, 40)));
    assert_eq!((work.cost_usd, &work.input), (Some(0.0006), &sent));
}

#[tokio::test(start_paused = true)]
async fn a_slow_node_times_out() {
    let workflow =
        single(json!({ "id": "work", "type": "text.template", "config": { "template": "ok" }, "timeout_ms": 100 }));
    let store = MemoryStore::new();
    let executor = Counting { delay: Some(Duration::from_secs(1)), ..Default::default() };
    let outcome =
        finished(run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    let RunOutcome::Failed { error, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.code, "NODE_TIMEOUT");
}

#[tokio::test]
async fn on_error_continue_and_branch() {
    let continue_flow = definition(json!({
        "name": "continue",
        "nodes": [
            { "id": "work", "type": "text.template", "config": { "template": "{{ input.missing }}" }, "on_error": "continue" },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.work.error.code }}" } }
        ],
        "edges": [ { "from": "work", "to": "done" } ]
    }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let outcome =
        finished(run(&ctx(&continue_flow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store)
            .await;
    assert_eq!(outcome, RunOutcome::Succeeded { output: json!("TEMPLATE_UNDEFINED_VARIABLE") });
    let steps = steps_of(&store, "e1").await;
    assert_eq!((steps["work"].status, &steps["work"].output), (StepStatus::Failed, &Value::Null));
    assert!(steps["work"].error.as_ref().unwrap().message.contains("input.missing"));

    let branch_flow = definition(json!({
        "name": "branch",
        "nodes": [
            { "id": "work", "type": "text.template", "config": { "template": "{{ input.missing }}" }, "on_error": "branch" },
            { "id": "happy", "type": "text.template", "config": { "template": "fine" } },
            { "id": "rescue", "type": "flow.output", "config": { "value": "rescued" } }
        ],
        "edges": [ { "from": "work", "to": "happy" }, { "from": "work", "to": "rescue", "when": "error" } ]
    }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let outcome =
        finished(run(&ctx(&branch_flow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Succeeded { output: json!("rescued") });
    assert_eq!(steps_of(&store, "e1").await["happy"].status, StepStatus::Skipped);
}

#[tokio::test]
async fn a_cancelled_run_starts_no_node() {
    let (store, executor, workflow) = (MemoryStore::new(), Counting::default(), branching_workflow());
    let input = json!({ "name": "Ada", "n": 3 });
    let cancelled = || Some(StopReason::Cancelled);
    let outcome =
        finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &cancelled, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Stopped(StopReason::Cancelled));
    assert_eq!(executor.calls("greet"), 0);
}

#[tokio::test]
async fn an_undefined_variable_fails_the_run_with_its_name() {
    let workflow =
        single(json!({ "id": "work", "type": "text.template", "config": { "template": "{{ input.nope.deeper }}" } }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let outcome =
        finished(run(&ctx(&workflow, &json!({ "x": 1 }), "e1"), &store, &executor, &never, 4).await.unwrap(), &store)
            .await;
    let RunOutcome::Failed { error, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.code, "TEMPLATE_UNDEFINED_VARIABLE");
    assert!(error.message.contains("input.nope"), "{}", error.message);
}

#[tokio::test]
async fn an_llm_node_without_credential_access_fails_cleanly() {
    let workflow = definition(json!({
        "name": "llm",
        "nodes": [ { "id": "ask", "type": "llm.chat",
                     "config": { "credential": "main", "model": "m", "messages": [ { "role": "user", "content": "hi" } ] } } ]
    }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let outcome =
        finished(run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    let RunOutcome::Failed { error, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(error.code, "CREDENTIAL_UNAVAILABLE");
}

#[test]
fn large_outputs_are_kept_truncated_with_their_size() {
    let big = json!({ "text": "x".repeat(MAX_STORED_OUTPUT_BYTES + 10) });
    let size = big.to_string().len();
    let kept = bounded(big, MAX_STORED_OUTPUT_BYTES);
    assert_eq!(kept["truncated"], true);
    assert_eq!(kept["size_bytes"], size);
    assert!(kept["preview"].as_str().unwrap().len() <= 4096);
    assert_eq!(bounded(json!({ "small": 1 }), MAX_STORED_OUTPUT_BYTES), json!({ "small": 1 }));
}

#[tokio::test]
async fn pure_steps_are_returned_and_only_side_effecting_ones_are_written() {
    let workflow = definition(json!({
        "name": "mixed",
        "nodes": [
            { "id": "greet", "type": "text.template", "config": { "template": "hi" } },
            { "id": "call", "type": "http.request", "config": { "method": "GET", "url": "https://example.com" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.greet.output.text }}" } }
        ],
        "edges": [ { "from": "greet", "to": "call" }, { "from": "call", "to": "done" } ]
    }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let result = run(&ctx(&workflow, &json!({}), "e1"), &store, &Stubbed(&executor), &never, 4).await.unwrap();
    assert!(matches!(result.outcome, RunOutcome::Succeeded { .. }), "{result:?}");
    let written: Vec<String> = store.load_steps("t1", "e1").await.unwrap().into_iter().map(|s| s.node_id).collect();
    assert_eq!(written, vec!["call".to_string()], "only the side-effecting node is written during the run");
    let mut kept: Vec<&str> = result.unrecorded.iter().map(|s| s.node_id.as_str()).collect();
    kept.sort();
    assert_eq!(kept, vec!["done", "greet"]);
}

/// Answers every node with `{"ok": true}` (counting through `Counting`), so side-effecting
/// types run without the network.
struct Stubbed<'a>(&'a Counting);

#[async_trait]
impl NodeExecutor for Stubbed<'_> {
    fn has_side_effects(&self, node_type: &str) -> bool {
        self.0.has_side_effects(node_type)
    }

    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        if call.node.node_type == "http.request" {
            *self.0.calls.lock().unwrap().entry(call.node.id.clone()).or_default() += 1;
            return Ok(json!({ "ok": true }).into());
        }
        self.0.execute(call).await
    }
}

/// Nodes named `slow*` take a minute; the rest answer at once.
struct SlowNamed(Counting);

#[async_trait]
impl NodeExecutor for SlowNamed {
    fn has_side_effects(&self, node_type: &str) -> bool {
        self.0.has_side_effects(node_type)
    }

    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure> {
        if call.node.id.starts_with("slow") {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        self.0.execute(call).await
    }
}

fn fast_then_slow() -> WorkflowDefinition {
    definition(json!({
        "name": "cut",
        "nodes": [
            { "id": "first", "type": "text.template", "config": { "template": "1" } },
            { "id": "slow", "type": "text.template", "config": { "template": "2" } },
            { "id": "quick", "type": "text.template", "config": { "template": "3" } }
        ],
        "edges": [ { "from": "first", "to": "slow" }, { "from": "first", "to": "quick" } ]
    }))
}

#[tokio::test(start_paused = true)]
async fn at_the_checkpoint_time_nodes_in_flight_are_abandoned_and_finished_ones_kept() {
    let workflow = fast_then_slow();
    let input = json!({});
    let (store, executor) = (MemoryStore::new(), SlowNamed(Counting::default()));
    let checkpoint_at = tokio::time::Instant::now() + Duration::from_millis(100);
    let ctx = RunContext { checkpoint_at: Some(checkpoint_at), ..ctx(&workflow, &input, "e1") };
    let result = run(&ctx, &store, &executor, &never, 4).await.unwrap();
    assert_eq!(result.outcome, RunOutcome::Stopped(StopReason::Deadline));
    let mut kept: Vec<&str> = result.unrecorded.iter().map(|s| s.node_id.as_str()).collect();
    kept.sort();
    assert_eq!(kept, vec!["first", "quick"], "the first wave ran whole; slow was abandoned without a step");
    assert!(tokio::time::Instant::now() < checkpoint_at + Duration::from_secs(1), "it did not wait for slow");
}

#[tokio::test(start_paused = true)]
async fn the_execution_timeout_cuts_even_the_first_wave() {
    let workflow = definition(json!({
        "name": "stuck", "nodes": [ { "id": "slow", "type": "text.template", "config": { "template": "x" } } ]
    }));
    let input = json!({});
    let (store, executor) = (MemoryStore::new(), SlowNamed(Counting::default()));
    let timeout_at = Some(tokio::time::Instant::now() + Duration::from_millis(100));
    let ctx = RunContext { timeout_at, ..ctx(&workflow, &input, "e1") };
    let result = run(&ctx, &store, &executor, &never, 4).await.unwrap();
    assert_eq!(result.outcome, RunOutcome::Stopped(StopReason::Deadline), "stop() said nothing: a checkpoint");
    assert!(result.unrecorded.is_empty());
    // As the worker's stop() does: nothing before the wave, timed out once the deadline passed.
    let checks = AtomicUsize::new(0);
    let past_deadline = || (checks.fetch_add(1, Ordering::SeqCst) > 0).then_some(StopReason::TimedOut);
    let result = run(&ctx, &store, &executor, &past_deadline, 4).await.unwrap();
    assert_eq!(result.outcome, RunOutcome::Stopped(StopReason::TimedOut), "the reason comes from stop()");
}

#[test]
fn step_status_names_match_their_serialized_form() {
    use StepStatus::*;
    for status in [Pending, Running, Succeeded, Failed, Skipped] {
        assert_eq!(serde_json::to_value(status).unwrap(), json!(status.as_str()));
    }
}

/// Runs a one-node workflow through the registry executor; the node's final step.
async fn step_of_single(node: Value, input: Value) -> StepRecord {
    let workflow = single(node);
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let result = run(&ctx(&workflow, &input, "e1"), &store, &executor, &never, 4).await.unwrap();
    finished(result, &store).await;
    steps_of(&store, "e1").await.remove("work").expect("the node's step")
}

#[tokio::test]
async fn no_node_output_nests_deeper_than_the_limit() {
    for segments in [100_000, 130, 65] {
        let pointer = "/a".repeat(segments);
        let step = step_of_single(
            json!({ "id": "work", "type": "data.json", "config": { "source": {}, "set": [ { "pointer": pointer, "value": 1 } ] } }),
            json!({}),
        )
        .await;
        assert_eq!(step.error.map(|e| e.code.to_string()), Some("NODE_OUTPUT_TOO_DEEP".into()), "{segments}");
    }
    // Another shape: a template that nests an input (itself within the limit) inside more levels.
    let mut nested = json!(1);
    for _ in 0..60 {
        nested = json!({ "n": nested });
    }
    let source = json!({ "a": { "b": { "c": { "d": { "e": "{{ input.v }}" } } } } });
    let step = step_of_single(
        json!({ "id": "work", "type": "data.json", "config": { "source": source, "pick": "" } }),
        json!({ "v": nested }),
    )
    .await;
    assert_eq!(step.error.map(|e| e.code.to_string()), Some("NODE_OUTPUT_TOO_DEEP".into()));
    // At the limit it is kept, and reads back.
    let ok = step_of_single(
        json!({ "id": "work", "type": "data.json", "config": { "source": {}, "set": [ { "pointer": "/a".repeat(63), "value": 1 } ] } }),
        json!({}),
    )
    .await;
    assert_eq!(ok.status, StepStatus::Succeeded);
    let text = serde_json::to_string(&ok.output).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), ok.output);
}

#[tokio::test]
async fn a_template_over_its_budget_fails_the_node_within_its_timeout() {
    let xs: Vec<u32> = (0..20_000).collect();
    let template = "{% for i in input.xs %}{% for j in input.xs %}{% endfor %}{% endfor %}";
    let step = step_of_single(
        json!({ "id": "work", "type": "text.template", "timeout_ms": 200, "config": { "template": template } }),
        json!({ "xs": xs }),
    )
    .await;
    let code = step.error.expect("the node fails").code.to_string();
    // Abandoned at its timeout, or stopped by its work budget first (a faster machine).
    assert!(code == "NODE_TIMEOUT" || code == "TEMPLATE_WORK_LIMIT", "{code}");
    // Without a timeout the work budget alone stops it.
    let step = step_of_single(
        json!({ "id": "work", "type": "text.template", "config": { "template": template } }),
        json!({ "xs": (0..20_000).collect::<Vec<u32>>() }),
    )
    .await;
    assert_eq!(step.error.map(|e| e.code.to_string()), Some("TEMPLATE_WORK_LIMIT".into()));
}

#[tokio::test]
async fn error_messages_are_bounded_and_carry_no_secrets() {
    let huge = "x".repeat(230 * 1024);
    let step = step_of_single(
        json!({ "id": "work", "type": "http.request", "config": { "method": "GET", "url": "http://{{ input.host }}:99999/" } }),
        json!({ "host": huge }),
    )
    .await;
    let error = step.error.expect("fails");
    assert_eq!(error.code.to_string(), "HTTP_INVALID_REQUEST");
    assert!(error.message.len() <= crate::model::limits::MAX_ERROR_MESSAGE_BYTES, "{}", error.message.len());
    let step = step_of_single(
        json!({ "id": "work", "type": "http.request",
                "config": { "method": "POST", "url": "http://127.0.0.1:99999/v1/charge?api_key=sk_live_XXXX&amount=1" } }),
        json!({}),
    )
    .await;
    let error = step.error.expect("fails");
    assert!(!error.message.contains("sk_live_XXXX"), "{}", error.message);
    assert!(!step.input.to_string().contains("sk_live_XXXX"), "{}", step.input);
}

#[tokio::test]
async fn every_failure_message_is_redacted_and_bounded_by_the_engine() {
    let workflow = single(json!({ "id": "work", "type": "text.template", "config": { "template": "ok" } }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let message =
        format!("upstream said: api_key=sk_live_XXXX and Authorization: Bearer tk-abcdef123456 {}", "x".repeat(5000));
    executor.fail_first("work", vec![NodeFailure::permanent(StepErrorCode::NodeFailed, message)]);
    let result = run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap();
    let RunOutcome::Failed { error, .. } = result.outcome else { panic!("{:?}", result.outcome) };
    assert!(error.message.len() <= crate::model::limits::MAX_ERROR_MESSAGE_BYTES, "{}", error.message.len());
    assert!(!error.message.contains("sk_live_XXXX") && !error.message.contains("tk-abcdef"), "{}", error.message);
    assert!(error.message.starts_with("upstream said: api_key=<redacted>"), "{}", error.message);
}

#[tokio::test]
async fn a_join_after_a_skipped_branch_reads_it_with_default() {
    let workflow = definition(json!({
        "name": "guard",
        "nodes": [
            { "id": "check", "type": "logic.condition", "config": { "expression": "input.ok" } },
            { "id": "yes", "type": "text.template", "config": { "template": "yes" } },
            { "id": "no", "type": "text.template", "config": { "template": "no" } },
            { "id": "join", "type": "text.template",
              "config": { "template": "{{ nodes.yes.output.text | default(\"\") }}{{ nodes.no.output.text | default(\"\") }}" } }
        ],
        "edges": [
            { "from": "check", "to": "yes", "when": "true" },
            { "from": "check", "to": "no", "when": "false" },
            { "from": "yes", "to": "join" },
            { "from": "no", "to": "join" }
        ]
    }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let outcome = finished(
        run(&ctx(&workflow, &json!({ "ok": true }), "e1"), &store, &executor, &never, 4).await.unwrap(),
        &store,
    )
    .await;
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "{outcome:?}");
    let steps = steps_of(&store, "e1").await;
    assert_eq!(steps["no"].status, StepStatus::Skipped);
    assert_eq!(steps["join"].status, StepStatus::Succeeded);
}

#[tokio::test]
async fn large_outputs_are_kept_by_reference_and_read_back_whole_on_resume() {
    let workflow = definition(json!({
        "name": "large",
        "nodes": [
            { "id": "big", "type": "data.json", "config": { "source": { "status": 200, "body": "{{ input.text }}" }, "pick": "" } },
            { "id": "read", "type": "text.template", "config": { "template": "{{ nodes.big.output.status }} {{ nodes.big.output.body | length }}" } }
        ],
        "edges": [ { "from": "big", "to": "read" } ]
    }));
    let input = json!({ "text": "z".repeat(300_000) });
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let with_values = RunContext { values: Some(&store), ..ctx(&workflow, &input, "e1") };
    // A run that stops after the first node (as a checkpoint would), then one that resumes.
    executor.fail_first("read", vec![NodeFailure::permanent(StepErrorCode::NodeFailed, "crash")]);
    let first = run(&with_values, &store, &executor, &never, 4).await.unwrap();
    let kept = first.unrecorded.iter().find(|s| s.node_id == "big").expect("the big step");
    let reference = crate::model::values::ValueRef::of(&kept.output).expect("kept by reference");
    assert!(reference.key.starts_with("executions/t1/e1/steps/big/"), "{}", reference.key);
    assert!(reference.key.ends_with("/output.json"), "{}", reference.key);
    store.record_step("t1", "e1", kept).await.unwrap();
    let resumed = run(&with_values, &store, &executor, &never, 4).await.unwrap();
    let read = resumed.unrecorded.iter().find(|s| s.node_id == "read").expect("the read step");
    assert_eq!(read.output["text"], "200 300000", "the resumed run read the whole value back");
}

/// A root fanning out to `width` side-effecting-free nodes, each with retries.
fn fan_out(width: usize) -> WorkflowDefinition {
    let mut nodes = vec![json!({ "id": "root", "type": "text.template", "config": { "template": "go" } })];
    let mut edges = Vec::new();
    for i in 0..width {
        nodes.push(
            json!({ "id": format!("leaf{i}"), "type": "text.template", "config": { "template": "{{ input.x }}" },
                           "retry": { "max_attempts": 5, "initial_delay_ms": 10, "jitter": false } }),
        );
        edges.push(json!({ "from": "root", "to": format!("leaf{i}") }));
    }
    definition(json!({ "name": "fan", "nodes": nodes, "edges": edges }))
}

#[tokio::test]
async fn a_cancel_during_a_fan_out_starts_no_further_node() {
    let workflow = fan_out(199);
    let input = json!({ "x": 1 });
    let (store, executor) = (MemoryStore::new(), Counting::default());
    // Cancelled once the fan-out has started (its first leaf was called).
    let cancelled = || (executor.calls("leaf0") > 0).then_some(StopReason::Cancelled);
    let outcome =
        finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &cancelled, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Stopped(StopReason::Cancelled));
    let leaves: usize = (0..199).map(|i| executor.calls(&format!("leaf{i}"))).sum();
    assert!(leaves <= 4, "at most the wave in flight when the cancel landed, not ~196: {leaves}");
}

#[tokio::test(start_paused = true)]
async fn a_cancel_stops_a_node_before_its_next_retry() {
    let workflow = single(json!({ "id": "work", "type": "text.template", "config": { "template": "ok" },
                                 "retry": { "max_attempts": 5, "initial_delay_ms": 1000, "jitter": false } }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let unavailable = || NodeFailure::retryable(StepErrorCode::HttpStatus, "503");
    executor.fail_first("work", (0..4).map(|_| unavailable()).collect());
    let cancelled = || (executor.calls("work") >= 2).then_some(StopReason::Cancelled);
    let outcome =
        finished(run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &cancelled, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Stopped(StopReason::Cancelled));
    assert_eq!(executor.calls("work"), 2, "no third attempt after the cancel");
    assert!(steps_of(&store, "e1").await.is_empty(), "the interrupted node has no step");
}

#[tokio::test(start_paused = true)]
async fn a_failed_node_with_on_error_fail_stops_its_siblings_retries_and_later_waves() {
    let workflow = fan_out(12);
    let input = json!({ "x": 1 });
    let (store, executor) = (MemoryStore::new(), Counting::default());
    executor.fail_first("leaf0", vec![NodeFailure::permanent(StepErrorCode::HttpStatus, "400")]);
    // leaf1 keeps failing retryably: its retries stop once leaf0 has failed the run.
    executor.fail_first("leaf1", (0..4).map(|_| NodeFailure::retryable(StepErrorCode::HttpStatus, "503")).collect());
    let outcome =
        finished(run(&ctx(&workflow, &input, "e1"), &store, &executor, &never, 4).await.unwrap(), &store).await;
    let RunOutcome::Failed { node_id, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(node_id, "leaf0");
    assert!(executor.calls("leaf1") <= 1, "no retry after a sibling failed the run");
    let later: usize = (4..12).map(|i| executor.calls(&format!("leaf{i}"))).sum();
    assert_eq!(later, 0, "no later wave starts");
}

/// Found by the crash test: killed after a side-effecting node was recorded but before the run
/// kept the pure node before it, the resumed run must recompute that pure node before anything
/// after the recorded one starts (it used to start them together, and a template reading the
/// pure node's output failed).
#[tokio::test]
async fn a_pure_node_lost_before_a_recorded_side_effect_is_recomputed_before_anything_after_it() {
    let workflow = definition(json!({
        "name": "resume",
        "nodes": [
            { "id": "pure", "type": "text.template", "config": { "template": "p" } },
            { "id": "effect", "type": "http.request", "config": { "method": "POST", "url": "http://127.0.0.1:9/x" } },
            { "id": "after", "type": "text.template", "config": { "template": "{{ nodes.pure.output.text }}!" } }
        ],
        "edges": [ { "from": "pure", "to": "effect" }, { "from": "effect", "to": "after" } ]
    }));
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let recorded = StepRecord {
        node_id: "effect".into(),
        status: StepStatus::Succeeded,
        attempts: 1,
        output: json!({ "status": 200 }),
        ..StepRecord::default()
    };
    store.record_step("t1", "e1", &recorded).await.unwrap();
    let result = run(&ctx(&workflow, &json!({}), "e1"), &store, &executor, &never, 4).await.unwrap();
    let outputs: HashMap<String, Value> =
        result.unrecorded.iter().map(|s| (s.node_id.clone(), s.output.clone())).collect();
    assert!(matches!(result.outcome, RunOutcome::Succeeded { .. }), "{:?}", result.outcome);
    assert_eq!(outputs["after"], json!({ "text": "p!" }));
    assert_eq!(executor.calls("effect"), 0, "the recorded side effect is not repeated");
}

/// A workflow that waits: `fetch` (side-effecting) in parallel with `pause`, then `approve`,
/// then `after`, which reads the answer.
fn waiting_workflow(approval: Value) -> WorkflowDefinition {
    definition(json!({
        "name": "waits",
        "timeout_seconds": 86400 * 3,
        "nodes": [
            { "id": "fetch", "type": "text.template", "config": { "template": "fetched" } },
            { "id": "pause", "type": "flow.wait", "config": { "seconds": "{{ input.seconds }}" } },
            { "id": "approve", "type": "flow.approval", "config": approval, "on_error": "branch" },
            { "id": "after", "type": "text.template",
              "config": { "template": "{{ nodes.approve.output.decision }} after {{ nodes.fetch.output.text }}" } },
            { "id": "expired", "type": "text.template", "config": { "template": "expired" } }
        ],
        "edges": [
            { "from": "fetch", "to": "approve" },
            { "from": "pause", "to": "approve" },
            { "from": "approve", "to": "after" },
            { "from": "approve", "to": "expired", "when": "error" }
        ]
    }))
}

fn parked(outcome: &RunOutcome) -> Vec<Wait> {
    match outcome {
        RunOutcome::Parked(waits) => waits.clone(),
        other => panic!("expected the run to park, got {other:?}"),
    }
}

/// The wait as it would be seen once its time has come (its end moved into the past).
fn due(mut wait: Wait) -> Wait {
    wait.until = Some(crate::model::rfc3339_in(-1));
    wait
}

#[tokio::test]
async fn a_wait_parks_the_run_while_other_branches_run_and_resumes_when_its_time_has_come() {
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let workflow = waiting_workflow(json!({}));
    let input = json!({ "seconds": "120" });
    let first = ctx(&workflow, &input, "e1");
    let outcome = finished(run(&first, &store, &executor, &never, 4).await.unwrap(), &store).await;
    let waits = parked(&outcome);
    assert_eq!(waits.len(), 1, "{waits:?}");
    let wait = &waits[0];
    assert_eq!((wait.node_id.as_str(), wait.kind), ("pause", crate::model::WaitKind::Timer));
    let (since, until) = (wait.since.clone(), wait.until.clone().unwrap());
    let seconds =
        chrono::DateTime::parse_from_rfc3339(&until).unwrap() - chrono::DateTime::parse_from_rfc3339(&since).unwrap();
    assert_eq!(seconds.num_seconds(), 120);
    assert_eq!(executor.calls("fetch"), 1, "the other branch ran while the wait parked");
    assert!(!steps_of(&store, "e1").await.contains_key("pause"), "a parked node has no step");

    // Resumed early (a duplicate message): the same wait, not a new one, and nothing ran again.
    let carried = waits.clone();
    let early = RunContext { waits: &carried, ..ctx(&workflow, &input, "e1") };
    let again = parked(&finished(run(&early, &store, &executor, &never, 4).await.unwrap(), &store).await);
    assert_eq!(again, waits, "the wait keeps its start and end");
    assert_eq!(executor.calls("fetch"), 1);

    // Its time has come: the wait succeeds; the approval begins and parks (no store given for
    // callbacks here: give it one).
    let over = vec![due(wait.clone())];
    let resumed = RunContext { waits: &over, callbacks: Some(&store), ..ctx(&workflow, &input, "e1") };
    let next = parked(&finished(run(&resumed, &store, &executor, &never, 4).await.unwrap(), &store).await);
    let steps = steps_of(&store, "e1").await;
    assert_eq!(steps["pause"].status, StepStatus::Succeeded);
    assert_eq!(steps["pause"].output["since"], json!(since));
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].node_id.as_str(), next[0].kind), ("approve", crate::model::WaitKind::Approval));
    assert_eq!(next[0].until, None, "no timeout_seconds: only the deadline ends it");
}

#[tokio::test]
async fn an_approval_issues_a_single_use_token_and_its_answer_is_the_nodes_output() {
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let workflow = waiting_workflow(json!({ "timeout_seconds": 3600 }));
    let input = json!({ "seconds": 0 });
    let base = RunContext {
        callbacks: Some(&store),
        deadline_at: Some("2099-01-01T00:00:00.000Z"),
        ..ctx(&workflow, &input, "e1")
    };
    let waits = parked(&finished(run(&base, &store, &executor, &never, 4).await.unwrap(), &store).await);
    assert_eq!(waits.len(), 1, "a zero-second wait is over at once: {waits:?}");
    let token = waits[0].callback_token.clone().expect("an approval carries its token");
    assert_eq!(token.len(), 43);
    let callback =
        store.find_callback(&crate::auth::hash_key(&token)).await.unwrap().expect("the token is stored by its hash");
    assert_eq!(
        (callback.tenant_id.as_str(), callback.execution_id.as_str(), callback.node_id.as_str()),
        ("t1", "e1", "approve")
    );
    assert_eq!(Some(callback.expires_at.clone()), waits[0].until, "the token expires with the approval");
    assert!(store.find_callback(&token).await.unwrap().is_none(), "never stored in the clear");

    // The answer, as the callback route records it.
    let answer = StepRecord {
        node_id: "approve".into(),
        status: StepStatus::Succeeded,
        attempts: 1,
        output: json!({ "decision": "yes" }),
        ..StepRecord::default()
    };
    store.record_step("t1", "e1", &answer).await.unwrap();
    let resumed = RunContext { waits: &waits, ..base };
    let outcome = finished(run(&resumed, &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Succeeded { output: Value::Null });
    let steps = steps_of(&store, "e1").await;
    assert_eq!(steps["after"].output["text"], "yes after fetched");
    assert_eq!(steps["expired"].status, StepStatus::Skipped);
}

#[tokio::test]
async fn an_unanswered_approval_expires_into_its_error_branch_unless_the_answer_came_first() {
    let (store, executor) = (MemoryStore::new(), Counting::default());
    let workflow = waiting_workflow(json!({ "timeout_seconds": 60 }));
    let input = json!({ "seconds": 0 });
    let base = RunContext { callbacks: Some(&store), ..ctx(&workflow, &input, "e1") };
    let waits = parked(&finished(run(&base, &store, &executor, &never, 4).await.unwrap(), &store).await);
    let over: Vec<Wait> = waits.into_iter().map(due).collect();
    let expired = RunContext { waits: &over, ..base };
    let outcome = finished(run(&expired, &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert_eq!(outcome, RunOutcome::Succeeded { output: Value::Null });
    let steps = steps_of(&store, "e1").await;
    assert_eq!(steps["approve"].error.as_ref().map(|e| e.code.as_str()), Some("APPROVAL_TIMED_OUT"));
    assert_eq!(steps["expired"].status, StepStatus::Succeeded, "on_error: branch took the error edge");
    assert_eq!(steps["after"].status, StepStatus::Skipped);

    // On another execution the answer is recorded just before the expiry: the answer wins.
    let store = MemoryStore::new();
    let base = RunContext { callbacks: Some(&store), ..ctx(&workflow, &input, "e2") };
    let waits = parked(&run(&base, &store, &executor, &never, 4).await.unwrap().outcome);
    let answer = StepRecord {
        node_id: "approve".into(),
        status: StepStatus::Succeeded,
        output: json!({ "decision": "late" }),
        ..StepRecord::default()
    };
    store.record_step("t1", "e2", &answer).await.unwrap();
    let over: Vec<Wait> = waits.into_iter().map(due).collect();
    // The run began before the answer was recorded: it reaches the approval with no step.
    let racing = RacingAnswer { inner: &store, hide: Mutex::new(true) };
    let expired = RunContext { waits: &over, ..base };
    let result = run(&expired, &racing, &executor, &never, 4).await.unwrap();
    assert!(matches!(result.outcome, RunOutcome::Succeeded { .. }), "{:?}", result.outcome);
    let steps = steps_of(&store, "e2").await;
    assert_eq!(steps["approve"].output, json!({ "decision": "late" }), "the recorded answer stands");
    let after = result.unrecorded.iter().find(|s| s.node_id == "after").expect("the answer's branch ran");
    assert_eq!(after.output["text"], "late after fetched");
}

/// A step store whose first read misses the approval's answer (recorded meanwhile).
struct RacingAnswer<'a> {
    inner: &'a MemoryStore,
    hide: Mutex<bool>,
}

#[async_trait]
impl StepStore for RacingAnswer<'_> {
    async fn load_steps(&self, tenant_id: &str, execution_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let mut steps = self.inner.load_steps(tenant_id, execution_id).await?;
        if std::mem::replace(&mut *self.hide.lock().unwrap(), false) {
            steps.retain(|s| s.node_id != "approve");
        }
        Ok(steps)
    }
    async fn record_step(&self, tenant_id: &str, execution_id: &str, step: &StepRecord) -> Result<(), StoreError> {
        self.inner.record_step(tenant_id, execution_id, step).await
    }
    async fn reset_steps_for_redrive(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError> {
        self.inner.reset_steps_for_redrive(tenant_id, execution_id).await
    }
}

#[tokio::test]
async fn a_notification_announces_the_callback_and_its_failure_fails_the_approval() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/notify"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/down"))
        .respond_with(ResponseTemplate::new(500))
        .expect(2)
        .mount(&server)
        .await;
    let host = server.address().to_string();
    let executor = crate::nodes::RegistryExecutor {
        runtime: crate::nodes::NodeRuntime {
            allowed_private_hosts: vec![host.clone()],
            public_api_url: Some("https://api.example.com/prod".into()),
            ..Default::default()
        },
    };
    let notify = |path: &str| {
        json!({
            "notify": { "method": "POST", "url": format!("http://{host}{path}"),
                        "body": { "text": "Approve? {{ callback.url }}", "fetched": "{{ nodes.fetch.output.text }}" } }
        })
    };
    let store = MemoryStore::new();
    let workflow = waiting_workflow(notify("/notify"));
    let input = json!({ "seconds": 0 });
    let base = RunContext { callbacks: Some(&store), ..ctx(&workflow, &input, "e1") };
    let waits = parked(&run(&base, &store, &executor, &never, 4).await.unwrap().outcome);
    let token = waits[0].callback_token.clone().unwrap();
    let sent = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["text"], format!("Approve? https://api.example.com/prod/v1/callbacks/{token}"));
    assert_eq!(body["fetched"], "fetched");

    let mut failing = waiting_workflow(notify("/down"));
    failing.nodes[2].retry = Some(crate::model::RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: Some(1),
        max_delay_ms: None,
        multiplier: None,
        jitter: Some(false),
    });
    let base = RunContext { callbacks: Some(&store), ..ctx(&failing, &input, "e2") };
    let outcome = finished(run(&base, &store, &executor, &never, 4).await.unwrap(), &store).await;
    assert!(matches!(outcome, RunOutcome::Succeeded { .. }), "the error branch ran: {outcome:?}");
    let steps = steps_of(&store, "e2").await;
    let error = steps["approve"].error.clone().unwrap();
    assert_eq!(error.code, "NOTIFICATION_FAILED");
    assert!(error.message.starts_with("HTTP_500"), "{}", error.message);
}
