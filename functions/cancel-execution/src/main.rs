//! POST /v1/executions/{execution_id}/cancel: stop before the next node.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    // SQS: a cancelled child execution's own message, so its parent moves on.
    let app = wiring::builder().dynamodb().sqs().build().await;
    wiring::serve(app, Route::CancelExecution, handler!(api::executions::cancel)).await
}
