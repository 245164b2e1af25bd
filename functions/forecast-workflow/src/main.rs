//! POST /v1/workflows/{workflow_id}/forecast: what one execution will cost, before it runs.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::ForecastWorkflow, handler!(api::forecast::workflow)).await
}
