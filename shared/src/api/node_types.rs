use crate::error::ApiError;
use crate::http::Reply;
use crate::nodes::NODE_TYPES;
use serde_json::json;

/// GET /v1/node-types: every node type with its config schema.
pub async fn list(_call: &super::Call<'_>) -> Result<Reply, ApiError> {
    let items: Vec<_> = NODE_TYPES
        .iter()
        .map(|kind| json!({ "type": kind.name(), "description": kind.description(), "config_schema": kind.config_schema() }))
        .collect();
    Ok(Reply::ok(json!({ "items": items })))
}
