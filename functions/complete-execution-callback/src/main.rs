//! POST /v1/executions/{execution_id}/callbacks/{node_id}: answers a flow.approval as the tenant.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB (the callback, the execution, the step), S3 (a large answer), SQS (the resume).
    let app = wiring::builder().dynamodb_with_values().sqs().build().await;
    wiring::serve(app, Route::CompleteExecutionCallback, handler!(api::executions::complete_execution_callback)).await
}
