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
    async fn send(&self, message: &ExecutionMessage) -> Result<(), StoreError>;
}

/// For functions that never start executions: sending is a configuration error.
pub struct NoQueue;

#[async_trait]
impl ExecutionQueue for NoQueue {
    async fn send(&self, _: &ExecutionMessage) -> Result<(), StoreError> {
        Err(StoreError::Internal("EXECUTION_QUEUE_URL is not configured for this function".into()))
    }
}
