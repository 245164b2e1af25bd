//! POST /hooks/{hook_id}: a signed webhook delivery starts its trigger's workflow.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB (hook, workflow, execution), S3 (large values), Secrets Manager (the signing secret), SQS (the run).
    let app = wiring::builder().dynamodb_with_values().secrets_manager().sqs().build().await;
    wiring::serve(app, Route::ReceiveWebhook, handler!(api::triggers::receive)).await
}
