//! DELETE /v1/assistant/sessions/{session_id}: ends an assistant session and deletes its turns.
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().dynamodb().build().await;
    wiring::serve(app, Route::EndAssistantSession, handler!(api::assistant::delete)).await
}
