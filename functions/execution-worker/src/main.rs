//! SQS worker: runs queued executions durably; reports partial batch failures. Wiring only.

use nodeai::wiring;

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    wiring::serve_worker().await
}
