//! DELETE /v1/workflows/{workflow_id}: delete a workflow and its versions.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB; Secrets Manager and Scheduler remove the workflow's triggers' secrets and schedules.
    let app = wiring::builder().dynamodb().secrets_manager().scheduler().build().await;
    wiring::serve(app, Route::DeleteWorkflow, handler!(api::workflows::delete)).await
}
