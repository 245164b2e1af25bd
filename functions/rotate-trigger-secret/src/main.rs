//! POST /v1/workflows/{workflow_id}/triggers/{trigger_id}/rotate-secret: a new webhook signing secret.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB (the trigger), Secrets Manager (its secrets).
    let app = wiring::builder().dynamodb().secrets_manager().build().await;
    wiring::serve(app, Route::RotateTriggerSecret, handler!(api::triggers::rotate_secret)).await
}
