//! GET /v1/executions: every execution of the tenant (children included), newest first.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::ListTenantExecutions, handler!(api::executions::list_all)).await
}
