//! POST /v1/workflows/validate: check a definition without saving it.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::ValidateWorkflow, handler!(api::workflows::validate)).await
}
