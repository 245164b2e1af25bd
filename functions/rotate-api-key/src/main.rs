//! POST /v1/api-keys/{key_id}/rotate: a new key; the old one works for a grace period.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::RotateApiKey, handler!(api::api_keys::rotate)).await
}
