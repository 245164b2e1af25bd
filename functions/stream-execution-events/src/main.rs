//! GET /v1/executions/{execution_id}/events: the execution's events as server-sent events.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler, whose event stream is sent with Lambda response streaming.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve_event_stream(app, Route::StreamExecutionEvents, handler!(api::executions::events)).await
}
