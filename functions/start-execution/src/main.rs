//! POST /v1/workflows/{workflow_id}/executions: queue a run (202).
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb_with_values().sqs().build().await;
    wiring::serve(app, Route::StartExecution, handler!(api::executions::start)).await
}
