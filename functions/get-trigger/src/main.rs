//! GET /v1/workflows/{workflow_id}/triggers/{trigger_id}: one trigger, its next fire times and last run.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB only (the trigger, its last run's execution).
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::GetTrigger, handler!(api::triggers::get)).await
}
