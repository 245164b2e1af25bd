//! The SQS worker: each message names one execution; `executions::process` runs it. Reports
//! partial batch failures, so only the messages that failed come back (and, after
//! `maxReceiveCount`, go to the DLQ).

use crate::config::RunningLimits;
use crate::engine::NodeExecutor;
use crate::executions::{Budget, Processed, process};
use crate::model::StepError;
use crate::model::StepErrorCode;
use crate::model::now_rfc3339;
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::{ExecutionEnd, LeaseGuard, Store};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Time kept back at the end of an invocation to record steps and send the continuation.
pub const CHECKPOINT_MARGIN: Duration = Duration::from_secs(10);
/// The queue's `maxReceiveCount` (template.yaml): after this many failed receives a message goes
/// to the dead-letter queue.
pub const MAX_RECEIVES: u32 = 5;

async fn handle_message<S: Store>(
    store: &S,
    executor: &dyn NodeExecutor,
    queue: &dyn ExecutionQueue,
    message: &SqsMessage,
    worker_id: &str,
    deadline: Instant,
    limits: &RunningLimits,
) -> Result<(), String> {
    let body = message.body.as_deref().unwrap_or_default();
    if let Ok(fire) = serde_json::from_str::<crate::triggers::fire::TriggerFire>(body) {
        // A schedule trigger's fire time (sent by EventBridge Scheduler): starts its run.
        let span =
            tracing::info_span!("trigger", tenant_id = %fire.trigger.tenant_id, trigger_id = %fire.trigger.trigger_id);
        return crate::triggers::fire::scheduled(store, queue, &fire).instrument(span).await;
    }
    let Ok(parsed) = serde_json::from_str::<ExecutionMessage>(body) else {
        // A body no producer of ours writes: retrying cannot help; drop it loudly.
        tracing::error!(message_id = ?message.message_id, "unreadable execution message dropped");
        return Ok(());
    };
    let span = tracing::info_span!(
        "execution",
        request_id = %parsed.request_id,
        tenant_id = %parsed.tenant_id,
        execution_id = %parsed.execution_id
    );
    async {
        let budget = Budget { deadline, margin: CHECKPOINT_MARGIN };
        tracing::debug!(
            remaining_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
            "processing"
        );
        let processed = match process(store, executor, queue, &parsed, worker_id, &budget, limits).await {
            Ok(processed) => processed,
            Err(e) => {
                give_up_if_last_receive(store, queue, message, &parsed).await;
                return Err(e.to_string());
            }
        };
        match processed {
            Processed::Finished(status) => {
                tracing::info!(status = status.as_str(), "execution finished");
                Ok(())
            }
            Processed::Continue => {
                queue.send(&parsed).await.map_err(|e| e.to_string())?;
                tracing::info!("execution checkpointed; continuation sent");
                Ok(())
            }
            Processed::Busy => Err("another worker holds the lease".to_string()),
            Processed::Superseded => Ok(()),
            Processed::Parked(wake_ups) => {
                for at in wake_ups {
                    let Ok(at) = chrono::DateTime::parse_from_rfc3339(&at) else { continue };
                    // A lost timer is not lost work: the sweeper finds the execution
                    // SWEEP_GRACE after its wake-up and moves it on.
                    if let Err(e) = queue.send_at(&parsed, at.with_timezone(&chrono::Utc)).await {
                        tracing::error!(error = %e, wake_up = %at, "wake-up timer not set; the sweeper will resume it");
                        metrics::counter!(crate::telemetry::metric::WAKE_UP_FAILURES).increment(1);
                    }
                }
                Ok(())
            }
            Processed::Deferred(wait) => {
                queue.send_delayed(&parsed, wait).await.map_err(|e| e.to_string())?;
                tracing::info!(wait_ms = wait.as_millis() as u64, "tenant at its running limit; delivery deferred");
                Ok(())
            }
        }
    }
    .instrument(span)
    .await
}

/// On the last receive before the dead-letter queue, the execution is failed with
/// `WORKER_FAILED`, so it shows as failed (and can be redriven) instead of running forever; the
/// message still goes to the DLQ, where the alarm tells the operators.
async fn give_up_if_last_receive<S: Store>(
    store: &S,
    queue: &dyn ExecutionQueue,
    message: &SqsMessage,
    parsed: &ExecutionMessage,
) {
    let receives: u32 = message.attributes.get("ApproximateReceiveCount").and_then(|n| n.parse().ok()).unwrap_or(1);
    if receives < MAX_RECEIVES {
        return;
    }
    let error = StepError {
        code: StepErrorCode::WorkerFailed.into(),
        message: format!("the worker failed {receives} times on this execution; redrive it to try again"),
    };
    let (tenant_id, execution_id) = (parsed.tenant_id.as_str(), parsed.execution_id.as_str());
    // A child's end is counted in its parent's batch, and its window moves on.
    let record = store.get_execution(tenant_id, execution_id).await.ok().flatten();
    let parent = record.as_ref().and_then(|r| r.parent.as_ref());
    // Only if no worker holds it: a live lease means another delivery is running it.
    let now = now_rfc3339();
    // Its calls count in the usage counters; a failed read of the steps must not keep it running.
    let spent = crate::executions::recorded_spend(store, tenant_id, execution_id).await.unwrap_or_default();
    let end = ExecutionEnd::failed(error).counted_for(parent).spent(spent);
    match store.finish_execution(tenant_id, execution_id, end, &[], LeaseGuard::Free { now: &now }).await {
        Ok(true) => {
            metrics::counter!(crate::telemetry::metric::EXECUTIONS_FINISHED, "status" => "failed").increment(1);
            if let Some(record) = &record
                && let Err(e) = crate::executions::children::after_child_end(store, queue, record).await
            {
                tracing::error!(error = %e, "a failed child's parent was not told; the child's next delivery tells it");
            }
        }
        Ok(false) => tracing::warn!("not marked failed after its last receive: final, or another worker holds it"),
        Err(e) => tracing::error!(error = %e, "could not mark the execution failed after its last receive"),
    }
}

/// The lease owner of one delivery: the invocation and the message. Every message of a batch
/// shares the invocation's request id, so that alone would let two deliveries of one execution
/// in one batch both hold its lease.
pub fn lease_owner(invocation_id: &str, message: &SqsMessage) -> String {
    format!("{invocation_id}/{}", message.message_id.as_deref().unwrap_or("-"))
}

/// Processes a batch; the failed message ids come back as batch item failures. Each delivery
/// holds the lease under its own owner id (`lease_owner`); a second delivery of an execution
/// in the same batch (an SQS duplicate, a continuation beside a redelivery) is done at once
/// without running: the first one runs it.
pub async fn handle_batch<S: Store>(
    store: &S,
    executor: &dyn NodeExecutor,
    queue: &dyn ExecutionQueue,
    event: SqsEvent,
    invocation_id: &str,
    deadline: Instant,
    limits: &RunningLimits,
) -> SqsBatchResponse {
    let mut seen = std::collections::HashSet::new();
    let results = futures_util::future::join_all(event.records.iter().map(|message| {
        let key = serde_json::from_str::<ExecutionMessage>(message.body.as_deref().unwrap_or_default())
            .ok()
            .map(|m| (m.tenant_id, m.execution_id));
        let first = key.is_none_or(|key| seen.insert(key));
        let owner = lease_owner(invocation_id, message);
        async move {
            if !first {
                tracing::info!(message_id = ?message.message_id, "duplicate delivery in the batch; the first runs it");
                return Ok(());
            }
            handle_message(store, executor, queue, message, &owner, deadline, limits).await
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (message, result) in event.records.iter().zip(results) {
        if let Err(reason) = result {
            tracing::warn!(message_id = ?message.message_id, reason, "message left for redelivery");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message.message_id.clone().unwrap_or_default();
            response.batch_item_failures.push(failure);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExecutionRecord;
    use crate::model::ExecutionStatus;
    use crate::queue::NoQueue;
    use crate::store::ExecutionStore;
    use crate::store::memory::MemoryStore;
    use serde_json::json;

    fn delivery(execution_id: &str, receives: u32) -> SqsEvent {
        let message =
            ExecutionMessage { tenant_id: "t1".into(), execution_id: execution_id.into(), request_id: "r".into() };
        let mut record = SqsMessage::default();
        record.message_id = Some(format!("m{receives}"));
        record.body = Some(serde_json::to_string(&message).unwrap());
        record.attributes.insert("ApproximateReceiveCount".into(), receives.to_string());
        let mut event = SqsEvent::default();
        event.records.push(record);
        event
    }

    #[tokio::test]
    async fn a_store_failure_comes_back_and_the_last_receive_fails_the_execution_for_redrive() {
        let store = MemoryStore::new();
        store.fail_step_reads();
        let document = json!({ "name": "one", "nodes": [ { "id": "a", "type": "text.template", "config": { "template": "x" } } ] });
        let definition = crate::validation::validate_definition(&document, 100).unwrap();
        let record = ExecutionRecord::queued("t1", "wf", None, json!({}), "r", Duration::from_secs(600));
        store.create_execution(&record, &definition).await.unwrap();
        let id = record.execution_id.as_str();
        let executor = crate::nodes::RegistryExecutor::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let early =
            handle_batch(&store, &executor, &NoQueue, delivery(id, 1), "w1", deadline, &RunningLimits::DEFAULT).await;
        assert_eq!(early.batch_item_failures.len(), 1, "a store outage leaves the message for redelivery");
        let status = store.get_execution("t1", id).await.unwrap().unwrap().status;
        assert!(!status.is_final(), "not the last receive: still {status:?}");
        let last = handle_batch(
            &store,
            &executor,
            &NoQueue,
            delivery(id, MAX_RECEIVES),
            "w2",
            deadline,
            &RunningLimits::DEFAULT,
        )
        .await;
        assert_eq!(last.batch_item_failures.len(), 1, "it still goes to the DLQ");
        let failed = store.get_execution("t1", id).await.unwrap().unwrap();
        assert_eq!(
            (failed.status, failed.error.map(|e| e.code)),
            (ExecutionStatus::Failed, Some("WORKER_FAILED".into()))
        );
    }

    /// Counts node calls.
    #[derive(Default)]
    struct Counting(std::sync::atomic::AtomicUsize);

    #[async_trait::async_trait]
    impl NodeExecutor for Counting {
        fn has_side_effects(&self, _: &str) -> bool {
            true
        }
        async fn execute(
            &self,
            call: &crate::engine::NodeCall<'_>,
        ) -> Result<crate::engine::NodeOutput, crate::engine::NodeFailure> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            crate::nodes::RegistryExecutor::default().execute(call).await
        }
    }

    #[tokio::test]
    async fn two_deliveries_of_one_execution_in_one_batch_run_it_once() {
        let store = MemoryStore::new();
        let document = json!({ "name": "one", "nodes": [ { "id": "a", "type": "text.template", "config": { "template": "x" } } ] });
        let definition = crate::validation::validate_definition(&document, 100).unwrap();
        let record = ExecutionRecord::queued("t1", "wf", None, json!({}), "r", Duration::from_secs(600));
        store.create_execution(&record, &definition).await.unwrap();
        let mut batch = delivery(&record.execution_id, 1);
        batch.records.extend(delivery(&record.execution_id, 2).records);
        assert_ne!(
            lease_owner("inv", &batch.records[0]),
            lease_owner("inv", &batch.records[1]),
            "an owner per delivery"
        );
        let executor = Counting::default();
        let deadline = Instant::now() + Duration::from_secs(60);
        let response = handle_batch(&store, &executor, &NoQueue, batch, "inv", deadline, &RunningLimits::DEFAULT).await;
        assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
        assert_eq!(executor.0.load(std::sync::atomic::Ordering::SeqCst), 1, "the node ran once");
        let done = store.get_execution("t1", &record.execution_id).await.unwrap().unwrap();
        assert_eq!(done.status, ExecutionStatus::Succeeded);
    }
}
