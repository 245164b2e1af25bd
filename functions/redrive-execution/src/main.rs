//! POST /v1/executions/{execution_id}/redrive: resume a failed or timed-out execution.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().sqs().build().await;
    wiring::serve(app, Route::RedriveExecution, handler!(api::executions::redrive)).await
}
