//! Executions: one run of a workflow version, its lifecycle, and the worker's processing of one
//! queued execution (lease, engine run, finish or continue). The queue (`queue`), the routes
//! (`api::executions`) and the worker function (`worker`) wire this up.

pub mod callbacks;
pub mod children;
pub mod start;
pub mod sweep;

use crate::config::RunningLimits;
use crate::engine::{self, NodeExecutor, RunContext, RunOutcome, RunResult, StopReason};
use crate::error::StoreError;
use crate::events::{self, EventLog};
use crate::model::SWEEP_GRACE;
use crate::model::StepErrorCode;
use crate::model::{ExecutionRecord, ExecutionStatus, StepError, WorkflowDefinition, now_rfc3339};
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::values::Values;
use crate::store::{ExecutionEnd, ExecutionStore, LeaseGuard, Store};
use serde_json::{Value, json};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the worker did with one queued execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// Finished (or already final): delete the message.
    Finished(ExecutionStatus),
    /// Checkpointed near the invocation's deadline: send a continuation message, delete this one.
    Continue,
    /// Another worker holds the lease: leave the message for redelivery.
    Busy,
    /// The tenant runs its tier's limit of executions: send the message again after this delay
    /// (the execution stays as it is, with a waiting reason), and delete this one.
    Deferred(Duration),
    /// The run's end was not written: its lease expired and another delivery took the
    /// execution, or the API ended it meanwhile. Its recorded steps stand; the message is
    /// done (the holder has its own).
    Superseded,
    /// Parked (`waiting`): nothing runs until a wait ends. The times are the wake-ups of the
    /// waits that began in this run (RFC 3339, UTC): send a message for each then. Carried-over
    /// waits have theirs already.
    Parked(Vec<String>),
}

/// The time an invocation may still spend, and how much of it to keep for checkpointing.
pub struct Budget {
    pub deadline: Instant,
    pub margin: Duration,
}

impl Budget {
    fn nearly_spent(&self) -> bool {
        Instant::now() + self.margin >= self.deadline
    }
    fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Processes one queued execution: claims its lease (so two deliveries never run it at once),
/// runs the engine from the recorded steps, and records how it ended.
pub async fn process<S: Store>(
    store: &S,
    executor: &dyn NodeExecutor,
    queue: &dyn ExecutionQueue,
    message: &ExecutionMessage,
    worker_id: &str,
    budget: &Budget,
    limits: &RunningLimits,
) -> Result<Processed, StoreError> {
    let (tenant_id, execution_id) = (message.tenant_id.as_str(), message.execution_id.as_str());
    let Some(execution) = store.get_execution(tenant_id, execution_id).await? else {
        tracing::warn!(execution_id, "queued execution does not exist; dropping the message");
        return Ok(Processed::Finished(ExecutionStatus::Failed));
    };
    if execution.status.is_final() {
        // A child's end may not have had its after-end work (a crash, an end written by the
        // API or the sweeper): it is idempotent, so every delivery of a final child does it.
        children::after_child_end(store, queue, &execution).await?;
        return Ok(Processed::Finished(execution.status));
    }
    if children::parent_ended(store, &execution).await? {
        // The parent was cancelled (or ended otherwise): its children stop too.
        let now = now_rfc3339();
        let end = ExecutionEnd::now(ExecutionStatus::Cancelled, Value::Null, None)
            .counted_for(execution.parent.as_ref())
            .spent(recorded_spend(store, tenant_id, execution_id).await?);
        if store.finish_execution(tenant_id, execution_id, end, &[], LeaseGuard::Free { now: &now }).await? {
            return Ok(Processed::Finished(ExecutionStatus::Cancelled));
        }
    }
    let now = now_rfc3339();
    if now >= execution.deadline_at {
        // Past its deadline before a worker got it (it waited for a slot): no slot needed to end it.
        let error =
            StepError { code: StepErrorCode::ExecutionTimedOut.into(), message: "the execution timeout passed".into() };
        let end = ExecutionEnd::now(ExecutionStatus::TimedOut, Value::Null, Some(error))
            .counted_for(execution.parent.as_ref())
            .spent(recorded_spend(store, tenant_id, execution_id).await?);
        if store.finish_execution(tenant_id, execution_id, end, &[], LeaseGuard::Free { now: &now }).await? {
            let processed = Processed::Finished(ExecutionStatus::TimedOut);
            record_metrics(&execution, &processed);
            children::after_child_end(store, queue, &execution).await?;
            return Ok(processed);
        }
    }
    let lease_until = crate::model::rfc3339_in(budget.remaining().as_secs() as i64 + 1);
    // The tenant's share: a slot per running execution, as many as its tier allows.
    let tier = store.get_tenant(tenant_id).await?.map(|t| t.tier).unwrap_or_default();
    let limit = limits.for_tier(&tier);
    if !store.acquire_run_slot(tenant_id, execution_id, &lease_until, &now, limit).await? {
        let reason = format!(
            "the tenant already runs {limit} executions, its limit; this one starts when one of them ends or checkpoints"
        );
        let next_sweep = crate::model::rfc3339_in((SWEEP_GRACE + limits.wait * 2).as_secs() as i64);
        store.set_waiting(tenant_id, execution_id, Some(&reason), &next_sweep).await?;
        let jitter = rand::random::<u64>() % (limits.wait.as_millis() as u64).max(1);
        let wait = limits.wait + Duration::from_millis(jitter);
        let processed = Processed::Deferred(wait);
        record_metrics(&execution, &processed);
        return Ok(processed);
    }
    if !store.claim_lease(tenant_id, execution_id, worker_id, &lease_until, &now_rfc3339()).await? {
        // Final since the read above (a cancel or another worker finished it), or leased (the
        // holder keeps the slot: it is the execution's, not this delivery's).
        return match store.get_execution(tenant_id, execution_id).await? {
            Some(now) if now.status.is_final() => {
                release_slot(store, tenant_id, execution_id).await;
                Ok(Processed::Finished(now.status))
            }
            _ => {
                record_metrics(&execution, &Processed::Busy);
                Ok(Processed::Busy)
            }
        };
    }
    let result = run_leased(store, executor, queue, &execution, &message.request_id, worker_id, budget).await;
    match &result {
        // Let a redelivery in at once rather than after the lease expires; the slot first, while
        // the lease still keeps other deliveries out (one taking the slot again is not undone).
        Err(_) => {
            release_slot(store, tenant_id, execution_id).await;
            let _ = store.release_lease(tenant_id, execution_id, worker_id, &[]).await;
        }
        // A checkpoint released the slot before the lease (in `run_leased`).
        Ok(Processed::Continue) => {}
        // Final (or another holder's now): the slot goes to the tenant's next execution.
        Ok(processed) => {
            release_slot(store, tenant_id, execution_id).await;
            // A child's end moves its parent's window on. A superseded run may have ended it
            // all the same (a retried finish whose first answer was lost): look, then do it.
            let ended = match processed {
                Processed::Finished(_) => true,
                Processed::Superseded if execution.parent.is_some() => {
                    store.get_execution(tenant_id, execution_id).await?.is_some_and(|e| e.status.is_final())
                }
                _ => false,
            };
            if ended {
                children::after_child_end(store, queue, &execution).await?;
            }
        }
    }
    result
}

/// The longest wait for an execution's end in one request (`?wait=`, sync webhooks): API
/// Gateway answers within 29 s.
pub const MAX_WAIT: Duration = Duration::from_secs(25);

/// The first pause of `wait_for_end`; each next one is 1.5 times longer, up to `WAIT_POLL_MAX`.
pub const WAIT_POLL_FIRST: Duration = Duration::from_millis(100);
pub const WAIT_POLL_MAX: Duration = Duration::from_secs(1);

/// Reads the execution until it is final or `timeout` has passed, and answers the last reading
/// (the one given, if it is final already). Backs off from `WAIT_POLL_FIRST` to
/// `WAIT_POLL_MAX`: one strongly consistent GetItem per pause, 29 for a 25 s wait that never
/// ends (`wait_reads`), and an end is seen at most 1 s late. A record that disappears (expired)
/// ends the wait with the last reading.
pub async fn wait_for_end<S: ExecutionStore + ?Sized>(
    store: &S,
    mut execution: ExecutionRecord,
    timeout: Duration,
) -> Result<ExecutionRecord, StoreError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = WAIT_POLL_FIRST;
    while !execution.status.is_final() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(pause.min(left)).await;
        pause = next_pause(pause);
        match store.get_execution(&execution.tenant_id, &execution.execution_id).await? {
            Some(read) => execution = read,
            None => break,
        }
    }
    Ok(execution)
}

/// The pause after `pause` in `wait_for_end`'s backoff.
fn next_pause(pause: Duration) -> Duration {
    (pause * 3 / 2).min(WAIT_POLL_MAX)
}

/// How many reads `wait_for_end` makes in a wait of `timeout` that never sees an end.
pub fn wait_reads(timeout: Duration) -> u32 {
    let (mut spent, mut pause, mut reads) = (Duration::ZERO, WAIT_POLL_FIRST, 0);
    while spent < timeout {
        spent += pause.min(timeout - spent);
        pause = next_pause(pause);
        reads += 1;
    }
    reads
}

/// Gives the execution's run slot back. A failure only logs: the slot expires with the lease,
/// and the run's outcome (already written) must not turn into an error for it.
async fn release_slot<S: ExecutionStore + ?Sized>(store: &S, tenant_id: &str, execution_id: &str) {
    if let Err(e) = store.release_run_slot(tenant_id, execution_id).await {
        tracing::warn!(error = %e, "run slot not released; it expires with the lease");
    }
}

/// Runs a leased execution; the finish (or the checkpoint) also releases the lease and keeps the
/// run's pure steps, in one write. Its events are written beside it (unless the workflow turned
/// them off) and are all written before it returns.
async fn run_leased<S: Store>(
    store: &S,
    executor: &dyn NodeExecutor,
    queue: &dyn ExecutionQueue,
    execution: &ExecutionRecord,
    request_id: &str,
    worker_id: &str,
    budget: &Budget,
) -> Result<Processed, StoreError> {
    let (tenant_id, execution_id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
    let definition: WorkflowDefinition = store
        .get_execution_definition(tenant_id, execution_id)
        .await?
        .ok_or_else(|| StoreError::Internal("the execution's definition is missing".into()))?;
    let (log, writer) = EventLog::open(store, tenant_id, execution_id);
    // Off: the opened log is dropped at once, so its writer ends having written nothing (a
    // shadowed binding would live on, and the writer with it).
    let log = if definition.events == Some(false) {
        drop(log);
        EventLog::off()
    } else {
        log
    };
    match execution.status {
        ExecutionStatus::Queued => {
            log.emit(events::kind::EXECUTION_STARTED, json!({ "redrive_count": execution.redrive_count }))
        }
        ExecutionStatus::Waiting => {
            let nodes: Vec<&str> = execution.waits.iter().map(|w| w.node_id.as_str()).collect();
            log.hold(events::kind::EXECUTION_RESUMED, json!({ "waited_on": nodes }))
        }
        // A continuation after a checkpoint, or a crashed run taken over: nothing to tell.
        _ => {}
    }
    let run = async move {
        let result =
            run_with_log(store, executor, queue, execution, &definition, request_id, worker_id, budget, &log).await;
        drop(log);
        result
    };
    tokio::join!(run, writer).0
}

#[allow(clippy::too_many_arguments)]
async fn run_with_log<S: Store>(
    store: &S,
    executor: &dyn NodeExecutor,
    queue: &dyn ExecutionQueue,
    execution: &ExecutionRecord,
    definition: &WorkflowDefinition,
    request_id: &str,
    worker_id: &str,
    budget: &Budget,
    log: &EventLog,
) -> Result<Processed, StoreError> {
    let (tenant_id, execution_id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
    // Cancellation is read from the store once a second; the engine asks before every wave and
    // every attempt.
    let cancel_seen = Mutex::new(execution.cancel_requested);
    let deadline_at = execution.deadline_at.clone();
    let stop = || -> Option<StopReason> {
        if *cancel_seen.lock().unwrap_or_else(|p| p.into_inner()) {
            return Some(StopReason::Cancelled);
        }
        if now_rfc3339() >= deadline_at {
            return Some(StopReason::TimedOut);
        }
        budget.nearly_spent().then_some(StopReason::Deadline)
    };
    let in_from_now = |wait: Duration| Some(tokio::time::Instant::now() + wait);
    let timeout_left = chrono::DateTime::parse_from_rfc3339(&deadline_at)
        .ok()
        .map(|at| (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default());
    let values = Values::new(store, tenant_id, execution_id);
    let input = values.resolve(execution.input.clone()).await?;
    let launcher = children::ChildLauncher { store, queue, parent: execution };
    let ctx = RunContext {
        request_id,
        tenant_id,
        execution_id,
        workflow_id: &execution.workflow_id,
        input: &input,
        definition,
        timeout_at: timeout_left.and_then(in_from_now),
        // Half the margin is left to record the steps and send the continuation.
        checkpoint_at: in_from_now(budget.remaining().saturating_sub(budget.margin / 2)),
        values: Some(store),
        waits: &execution.waits,
        deadline_at: Some(&execution.deadline_at),
        callbacks: Some(store),
        children: Some(&launcher),
        events: log,
        resumed: execution.status == ExecutionStatus::Waiting,
    };
    let watcher = async {
        // Refresh the cancel flag once a second while the run goes on.
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(Some(current)) = store.get_execution(tenant_id, execution_id).await {
                // A child also stops when its parent has ended (a cancelled parent).
                let parent_ended = children::parent_ended(store, &current).await.unwrap_or(false);
                *cancel_seen.lock().unwrap_or_else(|p| p.into_inner()) = current.cancel_requested || parent_ended;
            }
        }
    };
    let RunResult { outcome, unrecorded, waits: begun, usage } = tokio::select! {
        result = engine::run(&ctx, store, executor, &stop, engine::DEFAULT_CONCURRENCY) => result?,
        _ = watcher => unreachable!("the watcher never ends"),
    };
    // A resume that parks again having done nothing (an early or repeated wake-up) tells nothing.
    let nothing_happened = log.drop_held();
    if let RunOutcome::Parked(waits) = &outcome
        && !nothing_happened
    {
        let waiting_on: Vec<Value> = waits
            .iter()
            .map(|w| {
                let mut shown = json!({ "node_id": w.node_id, "kind": w.kind, "since": w.since, "until": w.until });
                if let Some(token) = &w.callback_token {
                    shown["callback_url"] = json!(executor.callback_url(token));
                }
                shown
            })
            .collect();
        log.emit(events::kind::EXECUTION_WAITING, json!({ "waiting_on": waiting_on }));
    }
    // Every event before the status changes: a reader that sees the new status has them all.
    log.flush().await;
    let guard = LeaseGuard::Held(worker_id);
    let (status, output, error) = match outcome {
        RunOutcome::Succeeded { output } => (ExecutionStatus::Succeeded, values.keep("output", output).await?, None),
        RunOutcome::Failed { node_id, error } => {
            let error = StepError { code: error.code, message: format!("node '{node_id}': {}", error.message) };
            (ExecutionStatus::Failed, Value::Null, Some(error))
        }
        RunOutcome::Stopped(StopReason::Cancelled) => (ExecutionStatus::Cancelled, Value::Null, None),
        RunOutcome::Stopped(StopReason::TimedOut) => {
            let error = StepError {
                code: StepErrorCode::ExecutionTimedOut.into(),
                message: "the execution timeout passed".into(),
            };
            (ExecutionStatus::TimedOut, Value::Null, Some(error))
        }
        RunOutcome::Stopped(StopReason::Deadline) => {
            // Waits begun in this run are kept, so the next invocation does not begin them again.
            // (Merged with those it carried and did not reach before the checkpoint.)
            let mut kept = execution.waits.clone();
            for wait in begun {
                kept.retain(|w| w.node_id != wait.node_id);
                kept.push(wait);
            }
            if kept != execution.waits {
                store.keep_waits(tenant_id, execution_id, worker_id, &kept).await?;
            }
            // The slot before the lease: once the lease is free a continuation may take both.
            release_slot(store, tenant_id, execution_id).await;
            store.release_lease(tenant_id, execution_id, worker_id, &unrecorded).await?;
            record_metrics(execution, &Processed::Continue);
            return Ok(Processed::Continue);
        }
        RunOutcome::Parked(waits) => {
            let processed = park(store, queue, execution, worker_id, waits, &unrecorded).await?;
            record_metrics(execution, &processed);
            return Ok(processed);
        }
    };
    let end = ExecutionEnd::now(status, output, error).counted_for(execution.parent.as_ref()).spent(usage);
    let processed = if store.finish_execution(tenant_id, execution_id, end, &unrecorded, guard).await? {
        Processed::Finished(status)
    } else {
        tracing::warn!(status = status.as_str(), "the run's end was not written: the lease was lost");
        Processed::Superseded
    };
    record_metrics(execution, &processed);
    Ok(processed)
}

/// Parks the execution on `waits`: the slot goes back, the lease is released with the waits
/// and the run's pure steps in one write, and the sweeper is told to look at it `SWEEP_GRACE`
/// after its earliest wake-up (the backstop for a timer message that never came).
async fn park<S: Store + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    execution: &ExecutionRecord,
    worker_id: &str,
    waits: Vec<crate::model::Wait>,
    unrecorded: &[crate::model::StepRecord],
) -> Result<Processed, StoreError> {
    let (tenant_id, execution_id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
    let deadline = execution.deadline_at.as_str();
    let earliest = waits.iter().map(|w| w.wake_at(deadline)).min().unwrap_or(deadline).to_string();
    let next_sweep = chrono::DateTime::parse_from_rfc3339(&earliest)
        .map(|at| at.with_timezone(&chrono::Utc) + chrono::Duration::from_std(SWEEP_GRACE).unwrap_or_default())
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|_| crate::model::rfc3339_in(SWEEP_GRACE.as_secs() as i64));
    // A wait that began in this run needs its timer; one carried over has it already.
    let mut wake_ups: Vec<String> = waits
        .iter()
        .filter(|w| !execution.waits.iter().any(|old| old.node_id == w.node_id && old.since == w.since))
        .map(|w| w.wake_at(deadline).to_string())
        .collect();
    wake_ups.sort();
    wake_ups.dedup();
    release_slot(store, tenant_id, execution_id).await;
    if !store.park_execution(tenant_id, execution_id, worker_id, &waits, unrecorded, &next_sweep).await? {
        tracing::warn!("the execution was not parked: the lease was lost");
        return Ok(Processed::Superseded);
    }
    let nodes: Vec<&str> = waits.iter().map(|w| w.node_id.as_str()).collect();
    tracing::info!(?nodes, earliest = %earliest, "execution parked");
    // An event that came while this run held the lease (an answer, the last child's end) found
    // the execution busy: its message returns only after the queue's visibility timeout. Look
    // once more now that the lease is released, and resume at once if one did.
    if event_came_meanwhile(store, execution, &waits).await? {
        let message = ExecutionMessage {
            tenant_id: tenant_id.to_string(),
            execution_id: execution_id.to_string(),
            request_id: execution.request_id.clone(),
        };
        queue.send(&message).await?;
        tracing::info!("a wait ended while the run held the lease; resume sent");
    }
    Ok(Processed::Parked(wake_ups))
}

/// Whether an approval was answered, or a child batch ended, since the run looked.
async fn event_came_meanwhile<S: Store + ?Sized>(
    store: &S,
    execution: &ExecutionRecord,
    waits: &[crate::model::Wait],
) -> Result<bool, StoreError> {
    use crate::model::WaitKind;
    let (tenant_id, execution_id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
    if waits.iter().any(|w| w.kind == WaitKind::Approval) {
        let steps = store.load_steps(tenant_id, execution_id).await?;
        let answered = |node: &str| steps.iter().any(|s| s.node_id == node && s.status.is_final());
        if waits.iter().any(|w| w.kind == WaitKind::Approval && answered(&w.node_id)) {
            return Ok(true);
        }
    }
    for wait in waits.iter().filter(|w| w.kind == WaitKind::Children) {
        if let Some(batch) = store.get_child_batch(tenant_id, execution_id, &wait.node_id).await?
            && (batch.complete() || batch.failed_beyond_tolerance())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Counts how a delivery ended (a delivery of an already final execution counts nothing).
fn record_metrics(execution: &ExecutionRecord, processed: &Processed) {
    use crate::telemetry::metric;
    match processed {
        Processed::Finished(status) => {
            metrics::counter!(metric::EXECUTIONS_FINISHED, "status" => status.as_str()).increment(1);
            if let Ok(created) = chrono::DateTime::parse_from_rfc3339(&execution.created_at) {
                let latency = chrono::Utc::now().signed_duration_since(created).num_milliseconds().max(0);
                metrics::histogram!(metric::EXECUTION_LATENCY).record(latency as f64);
            }
        }
        Processed::Continue => metrics::counter!(metric::CONTINUATIONS).increment(1),
        Processed::Busy => metrics::counter!(metric::LEASE_BUSY).increment(1),
        Processed::Superseded => metrics::counter!(metric::LEASE_LOST).increment(1),
        Processed::Deferred(_) => metrics::counter!(metric::TENANT_LIMITED).increment(1),
        Processed::Parked(_) => metrics::counter!(metric::EXECUTIONS_PARKED).increment(1),
    }
}

/// What an execution's recorded steps spent, for an end written outside a run (a cancel, a
/// timeout, a worker giving up, the sweeper): the usage counters count its calls all the same.
pub(crate) async fn recorded_spend<S: crate::store::StepStore + ?Sized>(
    store: &S,
    tenant_id: &str,
    execution_id: &str,
) -> Result<crate::model::ExecutionUsage, StoreError> {
    Ok(crate::model::ExecutionUsage::of(&store.load_steps(tenant_id, execution_id).await?))
}

#[cfg(test)]
mod tests;
