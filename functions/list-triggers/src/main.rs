//! GET /v1/workflows/{workflow_id}/triggers: a workflow's triggers.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // DynamoDB only.
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::ListTriggers, handler!(api::triggers::list)).await
}
