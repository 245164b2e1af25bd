//! POST /v1/api-keys/{key_id}/rotate: a new key; the old one works for a grace period.
//! Wiring only: configuration and AWS clients once per cold start, then each request to the domain.

use nodeai::api::Route;
use nodeai::wiring;

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    let app = wiring::app_from_env().await;
    wiring::serve(app, Route::RotateApiKey).await
}
