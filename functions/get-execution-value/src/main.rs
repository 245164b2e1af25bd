//! GET /v1/executions/{execution_id}/values/{value}: one whole value (inline, or 303 to S3).
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb_with_values().build().await;
    wiring::serve(app, Route::GetExecutionValue, handler!(api::executions::get_value)).await
}
