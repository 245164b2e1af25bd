//! The SQS worker: each message names one execution; `executions::process` runs it. Reports
//! partial batch failures, so only the messages that failed come back (and, after
//! `maxReceiveCount`, go to the DLQ).

use crate::engine::RegistryExecutor;
use crate::executions::{Budget, Processed, process};
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::{ExecutionStore, StepStore};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Time kept back at the end of an invocation to record steps and send the continuation.
pub const CHECKPOINT_MARGIN: Duration = Duration::from_secs(10);

async fn handle_message<S: ExecutionStore + StepStore>(
    store: &S,
    executor: &RegistryExecutor,
    queue: &dyn ExecutionQueue,
    message: &SqsMessage,
    worker_id: &str,
    deadline: Instant,
) -> Result<(), String> {
    let body = message.body.as_deref().unwrap_or_default();
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
        let processed = process(store, executor, &parsed.tenant_id, &parsed.execution_id, worker_id, &budget)
            .await
            .map_err(|e| e.to_string())?;
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
        }
    }
    .instrument(span)
    .await
}

/// Processes a batch; the failed message ids come back as batch item failures.
pub async fn handle_batch<S: ExecutionStore + StepStore>(
    store: &S,
    executor: &RegistryExecutor,
    queue: &dyn ExecutionQueue,
    event: SqsEvent,
    worker_id: &str,
    deadline: Instant,
) -> SqsBatchResponse {
    let results = futures_util::future::join_all(
        event.records.iter().map(|message| handle_message(store, executor, queue, message, worker_id, deadline)),
    )
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
