//! GET /v1/workflows/{workflow_id}/executions: a workflow's executions, newest first.
//! Wiring only: configuration and AWS clients once per cold start, then each request to the domain.

use nodeai::api::Route;
use nodeai::wiring;

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::app_from_env().await;
    wiring::serve(app, Route::ListExecutions).await
}
