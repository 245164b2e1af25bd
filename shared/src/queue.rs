//! The execution queue: start-execution sends one message per execution, the worker sends a
//! continuation when it checkpoints. SQS in AWS and on the emulator.

use crate::error::StoreError;
use async_trait::async_trait;
use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use serde::{Deserialize, Serialize};

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

pub struct SqsExecutionQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsExecutionQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsExecutionQueue { client, queue_url: queue_url.into() }
    }
}

#[async_trait]
impl ExecutionQueue for SqsExecutionQueue {
    async fn send(&self, message: &ExecutionMessage) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        match self.client.send_message().queue_url(&self.queue_url).message_body(body).send().await {
            Ok(_) => Ok(()),
            Err(e @ (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_))) => {
                Err(StoreError::Unavailable(DisplayErrorContext(&e).to_string()))
            }
            Err(e) => Err(StoreError::Internal(DisplayErrorContext(&e).to_string())),
        }
    }
}
