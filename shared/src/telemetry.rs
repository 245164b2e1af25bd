//! The one tracing setup: JSON lines on stdout, which CloudWatch Logs (JSON log format) indexes.
//! Correlation fields (request_id, tenant_id, execution_id, node_id) are span fields, so every
//! event inside a request's span carries them.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once. Safe to call again (later calls do nothing), which lets
/// tests and binaries share it.
pub fn init(log_level: &str) {
    let filter = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        // CloudWatch adds its own timestamp, but local logs and tests want one too.
        .with_ansi(false)
        .try_init();
}
