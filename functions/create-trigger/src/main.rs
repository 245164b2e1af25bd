//! POST /v1/workflows/{workflow_id}/triggers: adds a webhook or schedule trigger.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB (the trigger), Secrets Manager (a webhook's secret), Scheduler (a schedule).
    let app = wiring::builder().dynamodb().secrets_manager().scheduler().build().await;
    wiring::serve(app, Route::CreateTrigger, handler!(api::triggers::create)).await
}
