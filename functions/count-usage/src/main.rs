//! DynamoDB Streams consumer: adds finished executions to the usage counters, once per batch.
//! Wiring only.

use nodeai::wiring;

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    wiring::serve_usage_counter().await
}
