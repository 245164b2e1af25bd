//! The execution queue on SQS (the only module that knows the SQS SDK).

use super::{ExecutionMessage, ExecutionQueue};
use crate::error::StoreError;
use async_trait::async_trait;

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
    async fn send_delayed(&self, message: &ExecutionMessage, delay: std::time::Duration) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut request = self.client.send_message().queue_url(&self.queue_url).message_body(body);
        if !delay.is_zero() {
            request = request.delay_seconds(delay.as_secs().clamp(1, 900) as i32);
        }
        // No SQS error code is retried here: only a request that got no answer is Unavailable.
        request.send().await.map(|_| ()).map_err(|e| crate::store::sdk_error::classify_sdk_error(e, &[]))
    }
}
