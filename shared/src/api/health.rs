use super::Call;
use super::views::{HealthView, LiveView, ReadyCheck, ReadyView};
use crate::api::http::Reply;
use crate::error::{ApiError, ErrorCode};
use serde_json::json;
use std::time::Instant;

/// GET /health/live: the process answers (no AWS call).
pub async fn live(_call: &Call<'_>) -> Result<Reply, ApiError> {
    Ok(Reply::ok(LiveView { status: "ok" }))
}

/// GET /health/ready: DynamoDB answers.
pub async fn ready(call: &Call<'_>) -> Result<Reply, ApiError> {
    let started = Instant::now();
    let outcome = call.app.store()?.ping().await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0).round() as u64;
    match outcome {
        Ok(()) => Ok(Reply::ok(ReadyView {
            status: "ready",
            checks: vec![ReadyCheck { name: "dynamodb", status: "ok", latency_ms }],
        })),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check failed");
            Err(ApiError::new(ErrorCode::ServiceUnavailable, "not ready: the data store cannot be reached")
                .with_details(vec![json!(ReadyCheck { name: "dynamodb", status: "error", latency_ms })])
                .with_header("retry-after", "5"))
        }
    }
}

/// GET /health: service, version and stage.
pub async fn summary(call: &Call<'_>) -> Result<Reply, ApiError> {
    Ok(Reply::ok(HealthView {
        status: "ok",
        service: "nodeai",
        version: env!("CARGO_PKG_VERSION"),
        stage: call.app.config.stage.clone(),
    }))
}
