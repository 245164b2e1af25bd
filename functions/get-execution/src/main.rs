//! GET /v1/executions/{execution_id}: status, output and steps.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::GetExecution, handler!(api::executions::get)).await
}
