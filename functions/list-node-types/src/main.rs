//! GET /v1/node-types: node types with their config schemas.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::ListNodeTypes, handler!(api::node_types::list)).await
}
