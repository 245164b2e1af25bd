//! The execution engine's core: runs a workflow's DAG from its durable step records. Nodes whose
//! inputs are ready run concurrently (bounded); a condition picks its branch and the other branch
//! is skipped; every finished node is recorded with a conditional write before anything that
//! depends on it starts, so a crash, a redelivery or a redrive resumes from the records and never
//! runs a succeeded node again.
//!
//! Executions, leases and continuations live in `executions`; node types in `nodes`.

use crate::error::StoreError;
use crate::events::EventLog;
use crate::model::StepErrorCode;
use crate::model::Wait;
use crate::model::limits::{
    MAX_STORED_INPUT_BYTES, MAX_STORED_OUTPUT_BYTES, MAX_VALUE_DEPTH, bounded, depth_over, json_size_over,
};
use crate::model::values::MAX_NODE_OUTPUT_BYTES;
use crate::model::{
    ExecutionUsage, NodeSpec, OnError, StepError, StepRecord, StepStatus, TokenUsage, WorkflowDefinition, now_rfc3339,
};
use crate::store::values::Values;
use crate::store::{ExecutionStore, StepStore, ValueStore};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tracing::Instrument;

/// Default and cap of nodes run at once within one execution.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Longest wait honoured from a `Retry-After`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

mod parking;

/// What one successful node call produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeOutput {
    pub output: Value,
    /// The rendered input, for the step record.
    pub input: Value,
    pub usage: Option<TokenUsage>,
    pub cost_usd: Option<f64>,
    /// The model that billed `usage`, as the node names it.
    pub model: Option<String>,
}

impl From<Value> for NodeOutput {
    fn from(output: Value) -> Self {
        NodeOutput { output, ..Default::default() }
    }
}

/// One call of one node: whose run it is (credentials and circuit breakers are per tenant), the
/// node, and what its templates see.
#[derive(Debug, Clone, Copy)]
pub struct NodeCall<'a> {
    pub tenant_id: &'a str,
    pub node: &'a NodeSpec,
    pub scope: &'a Value,
    /// Where a node publishes what it has so far (`step.delta`: a streamed model answer).
    pub events: &'a EventLog,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The execution's own cost limit (`max_cost_usd`) and what it has committed so far.
    pub spend: &'a RunSpend,
}

/// An execution's own cost limit (`max_cost_usd` in its definition), checked before each model
/// call (`budgets`): what its steps cost so far plus calls in flight plus the call's worst case
/// must stay within it. In memory: one worker holds the run's lease.
#[derive(Debug)]
pub struct RunSpend {
    /// Nano-dollars; None: no limit.
    limit_nano: Option<u64>,
    committed_nano: std::sync::Mutex<u64>,
}

/// No limit (nodes run outside an execution's run: tests, notifications).
pub static NO_RUN_LIMIT: RunSpend = RunSpend { limit_nano: None, committed_nano: std::sync::Mutex::new(0) };

impl RunSpend {
    /// A run with `max_cost_usd`, whose recorded steps already cost `spent_nano`.
    pub fn new(max_cost_usd: Option<f64>, spent_nano: u64) -> RunSpend {
        RunSpend {
            limit_nano: max_cost_usd.map(crate::model::nano_usd),
            committed_nano: std::sync::Mutex::new(spent_nano),
        }
    }
    pub fn limit_nano(&self) -> Option<u64> {
        self.limit_nano
    }
    /// Commits `amount_nano` if it stays within the limit (always, without one).
    pub fn reserve(&self, amount_nano: u64) -> bool {
        let mut committed = self.committed_nano.lock().unwrap_or_else(|p| p.into_inner());
        match self.limit_nano {
            Some(limit) if committed.saturating_add(amount_nano) > limit => false,
            _ => {
                *committed += amount_nano;
                true
            }
        }
    }
    /// Replaces a reservation by what the call cost.
    pub fn settle(&self, reserved_nano: u64, actual_nano: u64) {
        let mut committed = self.committed_nano.lock().unwrap_or_else(|p| p.into_inner());
        *committed = (*committed + actual_nano).saturating_sub(reserved_nano);
    }
}

/// Why a node did not produce an output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeFailure {
    pub code: String,
    pub message: String,
    /// Timeouts, connection errors, 408, 429 and 5xx are worth another attempt; the rest are not.
    pub retryable: bool,
    pub retry_after: Option<Duration>,
    /// The rendered input, when the attempt got that far: what was sent is what a failure is
    /// debugged from.
    pub input: Value,
    /// Tokens the attempt was billed for although it failed (a model that answered with
    /// unparsable JSON was still paid). Boxed: failures are passed by value on every path.
    pub billed: Option<Box<Billed>>,
}

/// Tokens a provider billed for one call, their price (None: the model is not priced) and the
/// model, as the node names it.
#[derive(Debug, Clone, PartialEq)]
pub struct Billed {
    pub usage: TokenUsage,
    pub cost_usd: Option<f64>,
    pub model: String,
}

impl NodeFailure {
    pub fn permanent(code: StepErrorCode, message: impl Into<String>) -> Self {
        NodeFailure { code: code.into(), message: message.into(), ..Default::default() }
    }
    pub fn retryable(code: StepErrorCode, message: impl Into<String>) -> Self {
        NodeFailure { retryable: true, ..NodeFailure::permanent(code, message) }
    }
    /// The failure with the input the attempt had rendered.
    pub fn with_input(self, input: &Value) -> Self {
        NodeFailure { input: input.clone(), ..self }
    }
}

/// An attempt's result with the input it rendered and sent, success or failure alike: the step
/// shows what was sent either way.
pub fn with_sent_input(input: Value, result: Result<NodeOutput, NodeFailure>) -> Result<NodeOutput, NodeFailure> {
    match result {
        Ok(produced) => Ok(NodeOutput { input, ..produced }),
        Err(failure) => Err(failure.with_input(&input)),
    }
}

/// Usage and cost summed over a node's attempts: every attempt a provider billed counts.
#[derive(Debug, Clone, Default)]
struct Spent {
    usage: Option<TokenUsage>,
    cost_usd: Option<f64>,
    model: Option<String>,
}

impl Spent {
    fn add(&mut self, usage: Option<TokenUsage>, cost_usd: Option<f64>, model: Option<&str>) {
        if let Some(more) = usage {
            self.usage = Some(self.usage.unwrap_or_default().plus(more));
        }
        if let Some(model) = model {
            self.model = Some(model.to_string());
        }
        if let Some(more) = cost_usd {
            self.cost_usd = Some(crate::model::round_usd(self.cost_usd.unwrap_or(0.0) + more));
        }
    }
}

/// Runs one node once. The registry executor dispatches to the node type's module; tests wrap it
/// to count calls.
#[async_trait]
pub trait NodeExecutor: Send + Sync {
    async fn execute(&self, call: &NodeCall<'_>) -> Result<NodeOutput, NodeFailure>;
    /// Whether a node of this type reaches outside NodeAI (a paid or non-idempotent call): its
    /// step is written on its own, with a conditional write, before anything depends on it.
    /// Answer true for a type you do not know: never assume a call is free to repeat.
    fn has_side_effects(&self, node_type: &str) -> bool;
    /// The URL an approval's notification announces for `token`: `POST` the answer there.
    /// Relative (`/v1/callbacks/{token}`) unless the worker knows the API's public URL.
    fn callback_url(&self, token: &str) -> String {
        crate::model::callback_url(None, token)
    }
}

/// Why a run stopped before the workflow finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Cancelled,
    /// The invocation's time budget is nearly spent: checkpoint and continue in a new one.
    Deadline,
    TimedOut,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Succeeded {
        output: Value,
    },
    Failed {
        node_id: String,
        error: StepError,
    },
    Stopped(StopReason),
    /// Nothing can run until a parked node's wait ends: these are the waits (one per parked
    /// node, carried-over ones included). The worker parks the execution on them.
    Parked(Vec<Wait>),
}

pub struct RunContext<'a> {
    /// The request that started the execution, for log correlation.
    pub request_id: &'a str,
    pub tenant_id: &'a str,
    pub execution_id: &'a str,
    pub workflow_id: &'a str,
    pub input: &'a Value,
    pub definition: &'a WorkflowDefinition,
    /// When nodes still in flight are abandoned: at the execution timeout, and at the
    /// invocation's checkpoint time (every wave, the first included). The run then stops with
    /// `stop()`'s reason, so a call that never answers, or a retry's wait, ends in a checkpoint
    /// or a timeout instead of a killed Lambda. Nodes that finished before are kept.
    pub timeout_at: Option<tokio::time::Instant>,
    pub checkpoint_at: Option<tokio::time::Instant>,
    /// Where node outputs and rendered inputs over `INLINE_VALUE_BYTES` are kept (S3), and read
    /// back from on resume. None (unit tests): they are stored as truncated previews, while the
    /// run itself still sees them whole.
    pub values: Option<&'a dyn ValueStore>,
    /// The waits the execution was parked on (when each began; an approval's token).
    pub waits: &'a [Wait],
    /// The execution's deadline (RFC 3339): an approval with no timeout expires then.
    pub deadline_at: Option<&'a str>,
    /// Where approvals store their callback tokens; None (unit tests of other nodes): an
    /// approval fails the run with a store error.
    pub callbacks: Option<&'a dyn ExecutionStore>,
    /// Starts and collects child executions (flow.subworkflow, flow.map); None: such a node
    /// fails the run with a store error.
    pub children: Option<&'a dyn Children>,
    /// Where step transitions go as they happen (`events::EVENTS_OFF`: nowhere).
    pub events: &'a EventLog,
    /// The run resumes a parked execution: the waits that ended while it was parked (an
    /// answered approval, recorded by the callback) are told as their steps' events.
    pub resumed: bool,
}

/// What the engine asks of the worker for `flow.subworkflow` and `flow.map`
/// (`executions::children`).
#[async_trait]
pub trait Children: Send + Sync {
    /// Starts a node's children with these inputs, or resumes the batch it started before.
    /// The inner error: they cannot start (no such workflow or version, too deep).
    async fn begin(&self, node: &NodeSpec, inputs: Vec<Value>) -> Result<Result<(), NodeFailure>, StoreError>;
    /// How the node's batch ended, once every child has ended or too many failed; None while
    /// children still run.
    async fn outcome(&self, node: &NodeSpec) -> Result<Option<crate::executions::children::BatchOutcome>, StoreError>;
}

/// Whether an edge carries the run on, given its source's final step. None: not resolved yet.
fn edge_active(when: Option<&str>, source: &NodeSpec, step: Option<&StepRecord>) -> Option<bool> {
    let step = step.filter(|s| s.status.is_final())?;
    Some(match step.status {
        StepStatus::Succeeded => match when {
            None => true,
            Some("true") => step.output == Value::Bool(true),
            Some("false") => step.output == Value::Bool(false),
            _ => false,
        },
        StepStatus::Failed => match source.on_error {
            OnError::Continue => when.is_none(),
            OnError::Branch => when == Some("error"),
            OnError::Fail => false,
        },
        _ => false,
    })
}

/// What templates see: `{input, nodes.<id>.output, execution}`.
fn scope(ctx: &RunContext) -> Value {
    json!({
        "input": ctx.input,
        "nodes": {},
        "execution": { "id": ctx.execution_id, "workflow_id": ctx.workflow_id },
    })
}

/// The run's state between waves: final steps by node, and the template scope kept up to date
/// as steps finish (not rebuilt per wave, so a wave costs what its own nodes cost).
struct RunState {
    steps: HashMap<String, StepRecord>,
    scope: Value,
    /// The first node that failed with `on_error: fail`.
    failed: Option<(String, StepError)>,
}

impl RunState {
    fn add(&mut self, step: StepRecord, on_error: OnError) {
        if matches!(step.status, StepStatus::Succeeded | StepStatus::Failed) {
            self.scope["nodes"][step.node_id.as_str()] = json!({ "output": step.output, "error": step.error });
        }
        if step.status == StepStatus::Failed && on_error == OnError::Fail && self.failed.is_none() {
            let error = step
                .error
                .clone()
                .unwrap_or(StepError { code: StepErrorCode::NodeFailed.into(), message: String::new() });
            self.failed = Some((step.node_id.clone(), error));
        }
        self.steps.insert(step.node_id.clone(), step);
    }
}

fn backoff(node: &NodeSpec, attempt: u32, failure: &NodeFailure) -> Duration {
    let policy = node.retry.as_ref();
    let initial = policy.and_then(|p| p.initial_delay_ms).unwrap_or(500) as f64;
    let multiplier = policy.and_then(|p| p.multiplier).unwrap_or(2.0);
    let max = policy.and_then(|p| p.max_delay_ms).unwrap_or(30_000) as f64;
    let mut delay = (initial * multiplier.powi(attempt.saturating_sub(1) as i32)).min(max);
    if policy.and_then(|p| p.jitter).unwrap_or(true) {
        delay *= 0.5 + rand::random::<f64>() * 0.5;
    }
    let delay = Duration::from_millis(delay as u64);
    match failure.retry_after {
        Some(wait) => wait.min(MAX_RETRY_AFTER).max(delay),
        None => delay,
    }
}

/// Runs one node with its retry and timeout policy; returns its final step, or None if `halt`
/// said to stop before an attempt (the node then has no step and runs again on resume).
async fn run_node(
    tenant_id: &str,
    node: &NodeSpec,
    scope: &Value,
    executor: &dyn NodeExecutor,
    halt: &(dyn Fn() -> bool + Sync),
    events: &EventLog,
    spend: &RunSpend,
) -> Option<StepRecord> {
    let started_at = now_rfc3339();
    let max_attempts = node.retry.as_ref().map(|r| r.max_attempts).unwrap_or(1).max(1);
    let mut attempt = 0;
    let mut spent = Spent::default();
    let timer = std::time::Instant::now();
    let finished = loop {
        if halt() {
            return None;
        }
        attempt += 1;
        let call = NodeCall { tenant_id, node, scope, events, attempt, spend };
        let attempt_result = executor.execute(&call);
        let result = match node.timeout_ms {
            Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), attempt_result).await {
                Ok(result) => result,
                Err(_) => Err(NodeFailure::retryable(StepErrorCode::NodeTimeout, format!("no result within {ms} ms"))),
            },
            None => attempt_result.await,
        };
        let step = |status, output, error, input, spent: Spent| StepRecord {
            node_id: node.id.clone(),
            status,
            attempts: attempt,
            started_at: Some(started_at.clone()),
            finished_at: Some(now_rfc3339()),
            output,
            error,
            input,
            usage: spent.usage,
            cost_usd: spent.cost_usd,
            model: spent.model,
        };
        // A value nested past MAX_VALUE_DEPTH could be stored but never read back (serde_json
        // reads 128 levels): the node fails instead, before anything keeps it.
        let result = result.and_then(|produced| {
            if depth_over(&produced.output, MAX_VALUE_DEPTH) || depth_over(&produced.input, MAX_VALUE_DEPTH) {
                return Err(NodeFailure::permanent(
                    StepErrorCode::NodeOutputTooDeep,
                    format!("the node's output nests deeper than {MAX_VALUE_DEPTH} levels"),
                ));
            }
            if json_size_over(&produced.output, MAX_NODE_OUTPUT_BYTES) {
                return Err(NodeFailure::permanent(
                    StepErrorCode::NodeOutputTooLarge,
                    format!("the node's output is over {MAX_NODE_OUTPUT_BYTES} bytes of JSON"),
                ));
            }
            Ok(produced)
        });
        match result {
            Ok(produced) => {
                spent.add(produced.usage, produced.cost_usd, produced.model.as_deref());
                break step(StepStatus::Succeeded, produced.output, None, produced.input, spent);
            }
            Err(failure) => {
                if let Some(billed) = failure.billed.as_deref() {
                    spent.add(Some(billed.usage), billed.cost_usd, Some(&billed.model));
                }
                if failure.retryable && attempt < max_attempts {
                    tracing::info!(attempt, code = %failure.code, "node failed; retrying");
                    let wait = backoff(node, attempt, &failure);
                    events.step_retrying(&node.id, attempt, wait, &failure.code, &failure.message);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                // Bounded and redacted: a message can quote a huge or secret-bearing value.
                let error = StepError { code: failure.code, message: crate::redact::error_message(&failure.message) };
                // What a failed node sent is kept for reading, unless it could not be read back.
                let input = if depth_over(&failure.input, MAX_VALUE_DEPTH) { Value::Null } else { failure.input };
                break step(StepStatus::Failed, Value::Null, Some(error), input, spent);
            }
        }
    };
    record_node_metrics(&node.node_type, &finished, timer.elapsed());
    Some(finished)
}

fn record_node_metrics(node_type: &str, step: &StepRecord, elapsed: Duration) {
    use crate::telemetry::metric;
    let (node_type, status) = (node_type.to_string(), step.status.as_str());
    metrics::counter!(metric::NODE_RUNS, "node_type" => node_type.clone(), "status" => status).increment(1);
    metrics::counter!(metric::NODE_TIME, "node_type" => node_type).increment(elapsed.as_millis() as u64);
    if let Some(usage) = step.usage {
        metrics::counter!(metric::LLM_INPUT_TOKENS).increment(usage.input_tokens);
        metrics::counter!(metric::LLM_OUTPUT_TOKENS).increment(usage.output_tokens);
    }
    if let Some(cost) = step.cost_usd {
        metrics::counter!(metric::LLM_COST_MICRO_USD).increment((cost * 1e6).round() as u64);
    }
}

/// How a run ended, with the steps it has not written yet: results of pure nodes and skips,
/// which the caller keeps in bulk with the finish or the checkpoint (one request).
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub outcome: RunOutcome,
    pub unrecorded: Vec<StepRecord>,
    /// What every step of the execution so far spent (its final write keeps it for the usage
    /// counters).
    pub usage: ExecutionUsage,
    /// The waits of nodes parked in this run, whatever the outcome: a checkpoint keeps them, so
    /// the next invocation does not begin them again (a second token, a second notification).
    pub waits: Vec<Wait>,
}

/// Runs the workflow from its recorded steps until it finishes, fails, or `stop` says to stop
/// (checked before each wave of nodes and before each attempt of each node). A side-effecting node's step is written (once,
/// conditionally) before anything that depends on it starts; pure nodes' steps are returned.
pub async fn run(
    ctx: &RunContext<'_>,
    steps_store: &dyn StepStore,
    executor: &dyn NodeExecutor,
    stop: &(dyn Fn() -> Option<StopReason> + Sync),
    max_concurrency: usize,
) -> Result<RunResult, StoreError> {
    let definition = ctx.definition;
    let nodes: HashMap<&str, &NodeSpec> = definition.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut incoming: HashMap<&str, Vec<&crate::model::EdgeSpec>> = HashMap::new();
    for edge in &definition.edges {
        incoming.entry(edge.to.as_str()).or_default().push(edge);
    }
    let ancestors = ancestors(definition, &incoming);
    let mut state = RunState { steps: HashMap::new(), scope: scope(ctx), failed: None };
    // Recorded steps, in definition order so the first failed node is the one reported.
    let mut recorded: HashMap<String, StepRecord> = steps_store
        .load_steps(ctx.tenant_id, ctx.execution_id)
        .await?
        .into_iter()
        .filter(|s| s.status.is_final())
        .map(|s| (s.node_id.clone(), s))
        .collect();
    let values = ctx.values.map(|store| Values::new(store, ctx.tenant_id, ctx.execution_id));
    // What the recorded steps cost counts against the execution's own limit.
    let recorded_cost = recorded.values().filter_map(|s| s.cost_usd).map(crate::model::nano_usd).sum();
    let spend = RunSpend::new(definition.max_cost_usd, recorded_cost);
    for node in &definition.nodes {
        if let Some(mut step) = recorded.remove(&node.id) {
            if ctx.resumed && ctx.waits.iter().any(|w| w.node_id == node.id) {
                ctx.events.step_finished(ctx.tenant_id, ctx.execution_id, &node.node_type, &step);
            }
            // Templates see whole values, however large.
            if let Some(values) = &values {
                step.output = values.resolve(step.output).await?;
            }
            state.add(step, node.on_error);
        }
    }
    let mut pending: Vec<&NodeSpec> = definition.nodes.iter().filter(|n| !state.steps.contains_key(&n.id)).collect();
    let mut unrecorded: Vec<StepRecord> = Vec::new();
    let mut parked: Vec<Wait> = Vec::new();
    // What the run spent so far, over every step it knows (recorded before or in this run).
    let done = |outcome, unrecorded, waits, steps: &HashMap<String, StepRecord>| {
        Ok(RunResult { outcome, unrecorded, waits, usage: ExecutionUsage::of(steps.values()) })
    };
    loop {
        if let Some((node_id, error)) = state.failed.clone() {
            return done(RunOutcome::Failed { node_id, error }, unrecorded, parked, &state.steps);
        }
        // Resolve what can be resolved: ready to run, or skipped because no incoming edge carries the run.
        let mut ready: Vec<&NodeSpec> = Vec::new();
        let mut skipped = false;
        let mut still_pending = Vec::with_capacity(pending.len());
        for node in pending {
            let edges = incoming.get(node.id.as_str()).map(Vec::as_slice).unwrap_or_default();
            let mut any_active = false;
            let mut all_resolved = true;
            for edge in edges {
                match edge_active(edge.when.as_deref(), nodes[edge.from.as_str()], state.steps.get(&edge.from)) {
                    None => all_resolved = false,
                    Some(active) => any_active |= active,
                }
            }
            // On resume, a recorded side-effecting node can stand after a pure node whose result a
            // crash lost: nothing after it starts until every node upstream is final again, so
            // templates never miss an upstream output.
            let upstream_final = || ancestors[node.id.as_str()].iter().all(|a| state.steps.contains_key(*a));
            if !all_resolved || !upstream_final() {
                still_pending.push(node);
            } else if edges.is_empty() || any_active {
                ready.push(node);
            } else {
                let step = StepRecord {
                    node_id: node.id.clone(),
                    status: StepStatus::Skipped,
                    finished_at: Some(now_rfc3339()),
                    ..StepRecord::default()
                };
                unrecorded.push(step.clone());
                ctx.events.step_finished(ctx.tenant_id, ctx.execution_id, &node.node_type, &step);
                state.add(step, node.on_error);
                skipped = true;
            }
        }
        pending = still_pending;
        // Parking nodes begin, end or keep their waits; a parked one leaves `pending`, and
        // what follows it waits with it.
        let (parking, ready): (Vec<&NodeSpec>, Vec<&NodeSpec>) =
            ready.into_iter().partition(|n| crate::nodes::parks(&n.node_type).is_some());
        let mut progressed = skipped;
        for node in parking {
            if let Some(reason) = stop() {
                return done(RunOutcome::Stopped(reason), unrecorded, parked, &state.steps);
            }
            // A wait that begins here starts its step (before an approval's notification, whose
            // retries are its own).
            if !ctx.waits.iter().any(|w| w.node_id == node.id) {
                ctx.events.step_started(&node.id, &node.node_type);
            }
            match parking::advance(ctx, node, &state.scope, executor).await? {
                parking::Advance::Parked(wait) => parked.push(wait),
                parking::Advance::Finished(step) => {
                    // Recorded alone: an answer posted meanwhile wins over an expiry.
                    let kept = keep_recorded(steps_store, ctx, values.as_ref(), step).await?;
                    ctx.events.step_finished(ctx.tenant_id, ctx.execution_id, &node.node_type, &kept);
                    state.add(kept, node.on_error);
                    progressed = true;
                }
            }
        }
        if ready.is_empty() {
            if progressed {
                continue;
            }
            if state.failed.is_none() && !parked.is_empty() {
                return done(RunOutcome::Parked(parked.clone()), unrecorded, parked, &state.steps);
            }
            let output = definition
                .nodes
                .iter()
                .find(|n| n.node_type == "flow.output")
                .and_then(|n| state.steps.get(&n.id))
                .map(|s| s.output.clone())
                .unwrap_or(Value::Null);
            return done(RunOutcome::Succeeded { output }, unrecorded, parked, &state.steps);
        }
        for wave in ready.chunks(max_concurrency.clamp(1, 64)) {
            // Checked before every wave (and, in `run_node`, before every attempt): a cancel or
            // a failed node stops a fan-out before its next call, not after the whole ready set.
            if let Some((node_id, error)) = state.failed.clone() {
                return done(RunOutcome::Failed { node_id, error }, unrecorded, parked, &state.steps);
            }
            if let Some(reason) = stop() {
                return done(RunOutcome::Stopped(reason), unrecorded, parked, &state.steps);
            }
            // Every wave, the first included, ends at the checkpoint time: a call that never
            // answers is abandoned there and runs again in the next invocation.
            let cutoff = [ctx.timeout_at, ctx.checkpoint_at].into_iter().flatten().min();
            let (finished, interrupted) = run_wave(ctx, &spend, cutoff, wave, &state.scope, executor, stop).await;
            for (node, step) in finished {
                // The step as stored (large values as references), and whole for the run.
                let kept = if executor.has_side_effects(&node.node_type) {
                    let kept = keep_recorded(steps_store, ctx, values.as_ref(), step).await?;
                    ctx.events.step_finished(ctx.tenant_id, ctx.execution_id, &node.node_type, &kept);
                    kept
                } else {
                    let stored = stored_step(values.as_ref(), step.clone()).await?;
                    ctx.events.step_finished(ctx.tenant_id, ctx.execution_id, &node.node_type, &stored);
                    unrecorded.push(stored);
                    step
                };
                state.add(kept, node.on_error);
            }
            if let Some((node_id, error)) = state.failed.clone() {
                return done(RunOutcome::Failed { node_id, error }, unrecorded, parked, &state.steps);
            }
            if interrupted {
                // The abandoned nodes have no step: they run again when the execution resumes.
                let reason = stop().unwrap_or(StopReason::Deadline);
                tracing::warn!(?reason, "nodes not finished at the cutoff or the stop were abandoned");
                return done(RunOutcome::Stopped(reason), unrecorded, parked, &state.steps);
            }
        }
    }
}

/// Records a side-effecting node's final step (conditionally) and answers the step the run
/// continues with: its own, or the record that won (another worker's, or a callback's answer),
/// with its values whole.
async fn keep_recorded(
    steps_store: &dyn StepStore,
    ctx: &RunContext<'_>,
    values: Option<&Values<'_, dyn ValueStore + '_>>,
    step: StepRecord,
) -> Result<StepRecord, StoreError> {
    let stored = stored_step(values, step.clone()).await?;
    match record(steps_store, ctx, stored.clone()).await? {
        won if won == stored => Ok(step),
        mut other => {
            if let Some(values) = values {
                other.output = values.resolve(other.output).await?;
            }
            Ok(other)
        }
    }
}

/// Every node's transitive predecessors (the definition is a DAG, at most a few hundred nodes).
fn ancestors<'d>(
    definition: &'d WorkflowDefinition,
    incoming: &HashMap<&'d str, Vec<&'d crate::model::EdgeSpec>>,
) -> HashMap<&'d str, Vec<&'d str>> {
    let mut all = HashMap::new();
    for node in &definition.nodes {
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let mut stack: Vec<&str> = vec![node.id.as_str()];
        while let Some(current) = stack.pop() {
            for edge in incoming.get(current).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(edge.from.as_str()) {
                    stack.push(edge.from.as_str());
                }
            }
        }
        all.insert(node.id.as_str(), seen.into_iter().collect());
    }
    all
}

/// A finished step as an item keeps it: its output and rendered input over
/// `INLINE_VALUE_BYTES` in the value store, referenced; without one, truncated previews.
async fn stored_step(
    values: Option<&Values<'_, dyn ValueStore + '_>>,
    mut step: StepRecord,
) -> Result<StepRecord, StoreError> {
    match values {
        Some(values) => {
            // A key of its own per attempt: two workers racing on one node each write their own
            // value, and the record that wins the conditional write names the winner's.
            let at = format!("steps/{}/{}", step.node_id, crate::model::new_id());
            step.output = values.keep(&format!("{at}/output"), step.output).await?;
            step.input = values.keep(&format!("{at}/input"), step.input).await?;
        }
        None => {
            step.output = bounded(step.output, MAX_STORED_OUTPUT_BYTES);
            step.input = bounded(step.input, MAX_STORED_INPUT_BYTES);
        }
    }
    Ok(step)
}

/// Runs one wave's nodes concurrently; returns those that finished (in any order) and whether
/// some did not: the cutoff came first, or a node stopped before an attempt because `stop`
/// said so or a sibling failed with `on_error: fail`.
#[allow(clippy::too_many_arguments)]
async fn run_wave<'n>(
    ctx: &RunContext<'_>,
    spend: &RunSpend,
    cutoff: Option<tokio::time::Instant>,
    wave: &[&'n NodeSpec],
    scope: &Value,
    executor: &dyn NodeExecutor,
    stop: &(dyn Fn() -> Option<StopReason> + Sync),
) -> (Vec<(&'n NodeSpec, StepRecord)>, bool) {
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    let failing = AtomicBool::new(false);
    for node in wave {
        ctx.events.step_started(&node.id, &node.node_type);
    }
    let halt = || failing.load(Ordering::SeqCst) || stop().is_some();
    let halt = &halt;
    let mut running: futures_util::stream::FuturesUnordered<_> = wave
        .iter()
        .map(|node| {
            // Every log line of the node's run (retries, breaker, outbound) carries the
            // correlation fields; the JSON format shows the innermost span's fields only.
            let span = tracing::info_span!(
                "node",
                request_id = %ctx.request_id,
                tenant_id = %ctx.tenant_id,
                execution_id = %ctx.execution_id,
                node_id = %node.id,
                node_type = %node.node_type
            );
            async move {
                (*node, run_node(ctx.tenant_id, node, scope, executor, halt, ctx.events, spend).instrument(span).await)
            }
        })
        .collect();
    let mut finished = Vec::with_capacity(wave.len());
    let mut interrupted = false;
    loop {
        let next = match cutoff {
            Some(cutoff) => match tokio::time::timeout_at(cutoff, running.next()).await {
                Ok(next) => next,
                Err(_) => return (finished, true),
            },
            None => running.next().await,
        };
        match next {
            Some((node, Some(step))) => {
                if step.status == StepStatus::Failed && node.on_error == OnError::Fail {
                    failing.store(true, Ordering::SeqCst);
                }
                finished.push((node, step));
            }
            Some((_, None)) => interrupted = true,
            None => return (finished, interrupted),
        }
    }
}

/// Writes a final step. If another worker recorded it first, its record wins (the write is
/// conditional) and this run continues with that one.
async fn record(store: &dyn StepStore, ctx: &RunContext<'_>, step: StepRecord) -> Result<StepRecord, StoreError> {
    match store.record_step(ctx.tenant_id, ctx.execution_id, &step).await {
        Ok(()) => Ok(step),
        Err(StoreError::ConditionFailed) => {
            let winner = store
                .load_steps(ctx.tenant_id, ctx.execution_id)
                .await?
                .into_iter()
                .find(|s| s.node_id == step.node_id);
            winner.ok_or_else(|| StoreError::Internal("a step write lost to a record that is gone".into()))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests;
