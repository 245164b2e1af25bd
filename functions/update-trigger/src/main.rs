//! PATCH /v1/workflows/{workflow_id}/triggers/{trigger_id}: changes a trigger.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB (the trigger), Scheduler (a schedule's new settings).
    let app = wiring::builder().dynamodb().scheduler().build().await;
    wiring::serve(app, Route::UpdateTrigger, handler!(api::triggers::update)).await
}
