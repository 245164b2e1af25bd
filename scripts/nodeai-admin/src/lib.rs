//! Operator tooling: tenants' API Gateway keys in their tier's usage plans (`provisioning`).
//! Its own crate so that no Lambda function compiles or links the API Gateway SDK.

pub mod provisioning;
