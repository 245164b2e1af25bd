//! POST /v1/executions/{execution_id}/redrive: resume a failed or timed-out execution.
//! Wiring only: configuration and AWS clients once per cold start, then each request to the domain.

use nodeai::api::Route;
use nodeai::wiring;

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::app_from_env().await;
    wiring::serve(app, Route::RedriveExecution).await
}
