use crate::error::ApiError;
use crate::http::Reply;
use crate::nodes::NODE_KINDS;
use serde_json::json;

pub async fn list() -> Result<Reply, ApiError> {
    let items: Vec<_> = NODE_KINDS
        .iter()
        .map(|kind| json!({ "type": kind.name(), "description": kind.description(), "config_schema": kind.config_schema() }))
        .collect();
    Ok(Reply::ok(json!({ "items": items })))
}
