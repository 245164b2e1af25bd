//! The sweeper: finds executions nothing will move any more and moves them. An out-of-memory
//! kill, a hard Lambda timeout, or a continuation whose send failed on the last delivery leaves
//! an execution `queued` or `running` with no message left in the queue. The worker keeps each
//! unfinished execution in a sparse index (`sweep_pk`/`sweep_at`: only unfinished executions
//! carry it) keyed by when it should have made progress: its lease expiry while leased,
//! `SWEEP_GRACE` after it was queued or checkpointed otherwise. A scheduled function
//! (EventBridge Scheduler, every `SweepIntervalMinutes`) reads the index up to now, never a
//! table scan, and for each execution found:
//! - past its deadline, or found with an expired lease (its worker died) more than
//!   `MAX_SWEEPS` times without a checkpoint: ends it `failed` with `WORKER_FAILED` (it can be
//!   redriven);
//! - otherwise: sends a new message (a duplicate of one still in flight is harmless: the lease
//!   lets one delivery run it), counting the sweep if the lease had expired. An execution that
//!   was never claimed, or checkpointed, is only waiting (a backlog) and is never failed for it.
//!
//! Every write is conditional on no live lease, so a worker that picked the execution up in the
//! meantime is never disturbed.

use crate::error::StoreError;
use crate::model::{ExecutionStatus, MAX_SWEEPS, SWEEP_GRACE, StepError, StepErrorCode};
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::{ExecutionEnd, ExecutionStore, LeaseGuard};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// The most executions one sweep handles; the rest wait for the next one (minutes later).
pub const SWEEP_BATCH: usize = 200;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Found by the index.
    pub found: usize,
    /// Sent to the queue again.
    pub requeued: usize,
    /// Ended `failed` with `WORKER_FAILED`.
    pub failed: usize,
    /// Taken by a worker (or ended) between the read and the write: left alone.
    pub skipped: usize,
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Sweeps once, as of `now` (the scheduled invocation passes the clock; tests pass a later
/// time instead of waiting). A queue refusal is logged and the execution found again next time.
pub async fn sweep<S: ExecutionStore + crate::store::StepStore + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    now: DateTime<Utc>,
) -> Result<SweepReport, StoreError> {
    use crate::telemetry::metric::STRANDED_EXECUTIONS;
    let now_text = stamp(now);
    let next_sweep_at = stamp(now + chrono::Duration::from_std(SWEEP_GRACE).unwrap_or_default());
    let stranded = store.stranded_executions(&now_text, SWEEP_BATCH).await?;
    let mut report = SweepReport { found: stranded.len(), ..SweepReport::default() };
    for execution in stranded {
        let (tenant_id, execution_id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
        let past_deadline = execution.deadline_at.as_str() < now_text.as_str();
        // Only crashes count toward MAX_SWEEPS: an execution never claimed, or checkpointed,
        // may just wait behind a backlog, and is requeued however long it waits (until its
        // deadline).
        let crashed_too_often = execution.lease_expired && execution.sweep_count >= MAX_SWEEPS;
        if past_deadline || crashed_too_often {
            let why = if past_deadline {
                "its deadline passed with no worker running it".to_string()
            } else {
                format!("its worker died {} times without a checkpoint", execution.sweep_count + 1)
            };
            // A parked execution past its deadline simply timed out while it waited (its
            // wake-up at the deadline was lost); anything else was stranded.
            let end = if execution.status == ExecutionStatus::Waiting && past_deadline {
                let error = StepError {
                    code: StepErrorCode::ExecutionTimedOut.into(),
                    message: "the execution timeout passed while it waited".into(),
                };
                ExecutionEnd {
                    at: now_text.clone(),
                    ..ExecutionEnd::now(ExecutionStatus::TimedOut, Value::Null, Some(error))
                }
            } else {
                let error = StepError {
                    code: StepErrorCode::WorkerFailed.into(),
                    message: format!("the execution was stranded: {why}; redrive it to try again"),
                };
                ExecutionEnd { at: now_text.clone(), ..ExecutionEnd::failed(error) }
            };
            // A child's end counts in its parent's batch; its own message afterwards lets the
            // worker move the parent's window on (`executions::children`).
            let record = store.get_execution(tenant_id, execution_id).await?;
            let parent = record.as_ref().and_then(|r| r.parent.clone());
            let end =
                end.counted_for(parent.as_ref()).spent(super::recorded_spend(store, tenant_id, execution_id).await?);
            // Conditional on still being due: a worker that checkpointed since the index was
            // read is left alone.
            let guard = LeaseGuard::Stranded { now: &now_text };
            if store.finish_execution(tenant_id, execution_id, end, &[], guard).await? {
                if parent.is_some() {
                    let message = ExecutionMessage {
                        tenant_id: tenant_id.to_string(),
                        execution_id: execution_id.to_string(),
                        request_id: execution.request_id.clone(),
                    };
                    if let Err(e) = queue.send(&message).await {
                        tracing::error!(error = %e, "a failed child's after-end message was not sent");
                    }
                }
                tracing::warn!(tenant_id, execution_id, why, "stranded execution failed");
                metrics::counter!(STRANDED_EXECUTIONS, "action" => "failed").increment(1);
                report.failed += 1;
            } else {
                report.skipped += 1;
            }
            continue;
        }
        if !store.mark_swept(tenant_id, execution_id, &next_sweep_at, &now_text, execution.lease_expired).await? {
            report.skipped += 1;
            continue;
        }
        let message = ExecutionMessage {
            tenant_id: execution.tenant_id.clone(),
            execution_id: execution.execution_id.clone(),
            request_id: execution.request_id.clone(),
        };
        match queue.send(&message).await {
            Ok(()) => {
                tracing::warn!(
                    tenant_id,
                    execution_id,
                    sweeps = execution.sweep_count + 1,
                    "stranded execution requeued"
                );
                metrics::counter!(STRANDED_EXECUTIONS, "action" => "requeued").increment(1);
                report.requeued += 1;
            }
            Err(e) => tracing::error!(tenant_id, execution_id, error = %e, "could not requeue; next sweep retries"),
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExecutionRecord, WorkflowDefinition};
    use crate::queue::KeptQueue;
    use crate::store::memory::MemoryStore;
    use serde_json::json;
    use std::time::Duration;

    fn definition() -> WorkflowDefinition {
        serde_json::from_value(json!({ "name": "s", "nodes": [
            { "id": "out", "type": "flow.output", "config": { "value": "x" } } ] }))
        .unwrap()
    }

    fn in_minutes(minutes: i64) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::minutes(minutes)
    }

    #[tokio::test]
    async fn a_crashing_execution_is_requeued_then_failed_and_a_waiting_one_only_requeued() {
        let (store, queue) = (MemoryStore::new(), KeptQueue::default());
        let day = Duration::from_secs(24 * 3600);
        let crashing = ExecutionRecord::queued("t1", "wf", None, json!({}), "req-9", day);
        let waiting = ExecutionRecord::queued("t1", "wf", None, json!({}), "req-8", day);
        for record in [&crashing, &waiting] {
            store.create_execution(record, &definition()).await.unwrap();
        }
        assert_eq!(sweep(&store, &queue, in_minutes(1)).await.unwrap().found, 0, "within their grace");
        let id = crashing.execution_id.as_str();
        let mut at = 6;
        for crash in 1..=MAX_SWEEPS + 1 {
            // A worker claims it and dies: its lease expires a minute later.
            let (claimed_at, until) = (stamp(in_minutes(at)), stamp(in_minutes(at + 1)));
            assert!(store.claim_lease("t1", id, "w", &until, &claimed_at).await.unwrap());
            at += 2;
            let report = sweep(&store, &queue, in_minutes(at)).await.unwrap();
            if crash <= MAX_SWEEPS {
                assert_eq!(report.failed, 0, "crash {crash}: requeued");
            } else {
                assert_eq!(report.failed, 1, "crash {crash}: failed");
            }
            at += 6;
        }
        let failed = store.get_execution("t1", id).await.unwrap().unwrap();
        assert_eq!((failed.status, failed.error.unwrap().code.as_str()), (ExecutionStatus::Failed, "WORKER_FAILED"));
        let waited = store.get_execution("t1", &waiting.execution_id).await.unwrap().unwrap();
        assert_eq!(waited.status, ExecutionStatus::Queued, "a waiting execution is never failed for waiting");
        let messages = queue.messages();
        assert!(messages.iter().filter(|m| m.execution_id == waiting.execution_id).count() >= 4, "requeued");
        assert!(messages.iter().any(|m| m.request_id == "req-9"), "the message keeps the start's request id");
        assert_eq!(sweep(&store, &queue, in_minutes(24 * 60 + 10)).await.unwrap().failed, 1, "its deadline");
    }

    #[tokio::test]
    async fn past_its_deadline_a_stranded_execution_fails_and_a_live_lease_is_left_alone() {
        let (store, queue) = (MemoryStore::new(), KeptQueue::default());
        let record = ExecutionRecord::queued("t1", "wf", None, json!({}), "r", Duration::from_secs(60));
        store.create_execution(&record, &definition()).await.unwrap();
        let id = record.execution_id.as_str();
        // Leased until 30 minutes from now: a worker is on it, however late it looks.
        let until = stamp(in_minutes(30));
        assert!(store.claim_lease("t1", id, "w", &until, &stamp(Utc::now())).await.unwrap());
        assert_eq!(sweep(&store, &queue, in_minutes(20)).await.unwrap().found, 0);
        let report = sweep(&store, &queue, in_minutes(31)).await.unwrap();
        assert_eq!((report.found, report.failed, report.requeued), (1, 1, 0), "lease expired, deadline passed");
        let failed = store.get_execution("t1", id).await.unwrap().unwrap();
        assert!(failed.error.unwrap().message.contains("deadline"), "says why");
        assert!(queue.messages().is_empty());
    }
}
