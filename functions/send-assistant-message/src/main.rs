//! POST /v1/assistant/sessions/{session_id}/messages: one assistant turn (the model proposes, NodeAI validates and has it repaired).
//! Wiring only: configuration and the clients this route uses, once per cold start; each request
//! then goes to its one handler.

use nodeai::api::{self, Route};
use nodeai::{handler, wiring};

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::builder().model_calls().build().await;
    wiring::serve(app, Route::SendAssistantMessage, handler!(api::assistant::message)).await
}
