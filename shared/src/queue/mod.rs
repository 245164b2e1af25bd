//! The execution queue: start-execution sends one message per execution, the worker sends a
//! continuation when it checkpoints. SQS in AWS and on the emulator.

use crate::error::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

mod sqs;
pub use sqs::SqsExecutionQueue;

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
