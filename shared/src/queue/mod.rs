//! The execution queue: start-execution sends one message per execution, the worker sends a
//! continuation when it checkpoints. SQS in AWS and on the emulator.

use crate::error::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

mod sqs;
pub use sqs::{SqsExecutionQueue, TriggerScheduler, WaitScheduler};

/// SQS's longest `DelaySeconds`.
pub const MAX_SQS_DELAY: std::time::Duration = std::time::Duration::from_secs(900);

/// From now until `at`, rounded up to a whole second (zero if `at` has passed).
pub fn delay_until(at: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
    let millis = (at - chrono::Utc::now()).num_milliseconds().max(0) as u64;
    std::time::Duration::from_secs(millis.div_ceil(1000))
}

/// The message body. Small on purpose: everything else is read from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionMessage {
    pub tenant_id: String,
    pub execution_id: String,
    /// The request that started the execution, carried into every worker log line.
    pub request_id: String,
}

#[async_trait]
pub trait ExecutionQueue: Send + Sync {
    async fn send(&self, message: &ExecutionMessage) -> Result<(), StoreError> {
        self.send_delayed(message, std::time::Duration::ZERO).await
    }
    /// Delivered no sooner than `delay` from now (SQS `DelaySeconds`, whole seconds, at most
    /// 900).
    async fn send_delayed(&self, message: &ExecutionMessage, delay: std::time::Duration) -> Result<(), StoreError>;
    /// Delivered at `at` or soon after: a parked execution's wake-up. An SQS delay when `at`
    /// is within 15 minutes; further away, the SQS adapter creates an EventBridge Scheduler
    /// one-time schedule that sends the message then. Without a scheduler, a longer wake-up
    /// is sent after 15 minutes: the worker finds the wait not over, and parks it again
    /// without a new timer, so the sweeper's backstop (`SWEEP_GRACE` after the wake-up) moves it on.
    async fn send_at(&self, message: &ExecutionMessage, at: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
        self.send_delayed(message, delay_until(at).min(MAX_SQS_DELAY)).await
    }
}

/// For functions that never start executions: sending is a configuration error.
pub struct NoQueue;

#[async_trait]
impl ExecutionQueue for NoQueue {
    async fn send_delayed(&self, _: &ExecutionMessage, _: std::time::Duration) -> Result<(), StoreError> {
        Err(StoreError::Internal("EXECUTION_QUEUE_URL is not configured for this function".into()))
    }
}

/// A queue that keeps what it is sent, with each message's delay (unit tests).
#[cfg(any(test, feature = "test-util"))]
#[derive(Default)]
pub struct KeptQueue(pub std::sync::Mutex<Vec<(ExecutionMessage, std::time::Duration)>>);

#[cfg(any(test, feature = "test-util"))]
impl KeptQueue {
    pub fn messages(&self) -> Vec<ExecutionMessage> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(m, _)| m.clone()).collect()
    }
}

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl ExecutionQueue for KeptQueue {
    async fn send_delayed(&self, message: &ExecutionMessage, delay: std::time::Duration) -> Result<(), StoreError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((message.clone(), delay));
        Ok(())
    }
}
