//! NodeAI's domain crate. Functions under `functions/` only wire: they call
//! `wiring::app_from_env` once per cold start and hand each request to `api::handle`.

pub mod api;
pub mod assistant;
pub mod auth;
pub mod authorizer;
pub mod budgets;
pub mod config;
pub mod cursor;
pub mod engine;
pub mod error;
pub mod events;
pub mod executions;
pub mod forecast;
pub mod model;
pub mod nodes;
pub mod queue;
pub mod redact;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod template;
pub mod triggers;
pub mod usage;
pub mod validation;
pub mod wiring;
pub mod worker;
