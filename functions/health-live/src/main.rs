//! GET /health/live: the process is up.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().build().await;
    wiring::serve(app, Route::HealthLive, handler!(api::health::live)).await
}
