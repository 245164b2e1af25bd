//! DELETE /v1/credentials/{name}: delete a credential and its secret.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().secrets_manager().build().await;
    wiring::serve(app, Route::DeleteCredential, handler!(api::credentials::delete)).await
}
