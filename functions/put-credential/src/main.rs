//! PUT /v1/credentials/{name}: store a provider credential in Secrets Manager.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().secrets_manager().build().await;
    wiring::serve(app, Route::PutCredential, handler!(api::credentials::put)).await
}
