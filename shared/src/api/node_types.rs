use super::views::{NodeTypeList, NodeTypeView};
use crate::api::http::Reply;
use crate::error::ApiError;
use crate::nodes::NODE_TYPES;

/// GET /v1/node-types: every node type with its config schema.
pub async fn list(_call: &super::Call<'_>) -> Result<Reply, ApiError> {
    let items = NODE_TYPES
        .iter()
        .map(|kind| NodeTypeView {
            node_type: kind.name(),
            description: kind.description(),
            config_schema: kind.config_schema(),
        })
        .collect();
    Ok(Reply::ok(NodeTypeList { items }))
}
