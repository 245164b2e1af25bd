//! API Gateway REQUEST authorizer: Bearer key -> tenant principal, {tenant_id, tier} context,
//! and the tenant's usage plan key. Wiring only.

use nodeai::wiring;

#[tokio::main]
async fn main() -> Result<(), wiring::Error> {
    wiring::serve_authorizer().await
}
