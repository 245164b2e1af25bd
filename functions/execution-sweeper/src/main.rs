//! Scheduled sweeper: requeues or fails executions stranded without a worker. Wiring only.

use nodeai::wiring;

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    wiring::serve_sweeper().await
}
