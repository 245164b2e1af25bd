//! The sweeper: finds executions nothing will move any more and moves them. An out-of-memory
//! kill, a hard Lambda timeout, or a continuation whose send failed on the last delivery leaves
//! an execution `queued` or `running` with no message left in the queue. The worker keeps each
//! unfinished execution in a sparse index (`sweep_pk`/`sweep_at`: only unfinished executions
//! carry it) keyed by when it should have made progress: its lease expiry while leased,
//! `SWEEP_GRACE` after it was queued or checkpointed otherwise. A scheduled function
//! (EventBridge Scheduler, every `SweepIntervalMinutes`) reads the index up to now, never a
//! table scan, and for each execution found:
//! - past its deadline, or swept `MAX_SWEEPS` times without a checkpoint: ends it `failed`
//!   with `WORKER_FAILED` (it can be redriven);
//! - otherwise: counts the sweep and sends a new message (a duplicate of one still in flight is
//!   harmless: the lease lets one delivery run it).
//!
//! Every write is conditional on no live lease, so a worker that picked the execution up in the
//! meantime is never disturbed.

use crate::error::StoreError;
use crate::model::{MAX_SWEEPS, SWEEP_GRACE, StepError, StepErrorCode};
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::{ExecutionEnd, ExecutionStore, LeaseGuard};
use chrono::{DateTime, SecondsFormat, Utc};

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
pub async fn sweep<S: ExecutionStore + ?Sized>(
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
        if past_deadline || execution.sweep_count >= MAX_SWEEPS {
            let why = if past_deadline {
                "its deadline passed with no worker running it".to_string()
            } else {
                format!("no worker made progress on it after {} sweeps", execution.sweep_count)
            };
            let error = StepError {
                code: StepErrorCode::WorkerFailed.into(),
                message: format!("the execution was stranded: {why}; redrive it to try again"),
            };
            let end = ExecutionEnd { at: now_text.clone(), ..ExecutionEnd::failed(error) };
            if store.finish_execution(tenant_id, execution_id, end, &[], LeaseGuard::Free { now: &now_text }).await? {
                tracing::warn!(tenant_id, execution_id, why, "stranded execution failed");
                metrics::counter!(STRANDED_EXECUTIONS, "action" => "failed").increment(1);
                report.failed += 1;
            } else {
                report.skipped += 1;
            }
            continue;
        }
        if !store.mark_swept(tenant_id, execution_id, &next_sweep_at, &now_text).await? {
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
    use crate::model::{ExecutionRecord, ExecutionStatus, WorkflowDefinition};
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
    async fn a_stranded_execution_is_requeued_then_failed_after_max_sweeps() {
        let (store, queue) = (MemoryStore::new(), KeptQueue::default());
        let record = ExecutionRecord::queued("t1", "wf", None, json!({}), "req-9", Duration::from_secs(24 * 3600));
        store.create_execution(&record, &definition()).await.unwrap();
        assert_eq!(sweep(&store, &queue, in_minutes(1)).await.unwrap().found, 0, "within its grace");
        let mut at = 6;
        for sweeps in 1..=MAX_SWEEPS {
            let report = sweep(&store, &queue, in_minutes(at)).await.unwrap();
            assert_eq!((report.requeued, report.failed), (1, 0), "sweep {sweeps}");
            assert_eq!(queue.messages().len(), sweeps as usize);
            assert_eq!(sweep(&store, &queue, in_minutes(at)).await.unwrap().found, 0, "pushed back by a sweep");
            at += 6;
        }
        assert_eq!(queue.messages()[0].request_id, "req-9", "the message keeps the start's request id");
        let report = sweep(&store, &queue, in_minutes(at)).await.unwrap();
        assert_eq!(report.failed, 1);
        let failed = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
        assert_eq!((failed.status, failed.error.unwrap().code.as_str()), (ExecutionStatus::Failed, "WORKER_FAILED"));
        assert_eq!(sweep(&store, &queue, in_minutes(24 * 60)).await.unwrap().found, 0, "final: out of the index");
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
