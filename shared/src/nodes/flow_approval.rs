//! `flow.approval`: human in the loop. The execution parks until someone posts an answer to
//! the approval's callback (`POST /v1/callbacks/{token}`, or the tenant's
//! `POST /v1/executions/{id}/callbacks/{node_id}`); the posted JSON is the node's output. The
//! token is single-use and bound to the tenant, the execution and the node. `timeout_seconds`
//! ends the wait with `APPROVAL_TIMED_OUT` (the node's `on_error` applies); `notify` is an
//! `http.request` config sent when the wait begins, whose templates also see
//! `callback.url`, `callback.token` and `callback.expires_at`.

use super::NodeType;
use crate::model::{MAX_WAITING_EXECUTION_TIMEOUT, NodeSpec, WaitKind};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub struct FlowApproval;

impl NodeType for FlowApproval {
    fn name(&self) -> &'static str {
        "flow.approval"
    }
    fn description(&self) -> &'static str {
        "Parks the execution until an answer is posted to its callback (single-use token); output: the posted JSON, checked against `payload_schema`. `timeout_seconds` fails it with APPROVAL_TIMED_OUT; `notify` (an http.request config; templates see callback.url) announces it."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "payload_schema": { "type": "object", "description": "JSON Schema the posted body must match (422 otherwise)." },
                "timeout_seconds": { "type": "integer", "minimum": 1, "maximum": MAX_WAITING_EXECUTION_TIMEOUT.as_secs() },
                "notify": super::http_request::HttpRequest.config_schema()
            }
        })
    }
    fn has_side_effects(&self) -> bool {
        true
    }
    fn parks(&self) -> Option<WaitKind> {
        Some(WaitKind::Approval)
    }
    fn literal_fields(&self) -> &'static [&'static str] {
        &["/payload_schema"]
    }
    fn extra_template_roots(&self) -> &'static [&'static str] {
        &["callback"]
    }
}

/// When an approval that began at `since` expires (None: only the execution's deadline ends it).
pub fn expiry(config: &Value, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let seconds = config.get("timeout_seconds")?.as_u64()?;
    Some(since + chrono::Duration::seconds(seconds as i64))
}

/// The notification as an `http.request` node of its own (the approval's retry and timeout
/// policy apply to it), or None when the approval has no `notify`.
pub fn notification(node: &NodeSpec) -> Option<NodeSpec> {
    let config = node.config.get("notify")?.clone();
    Some(NodeSpec { node_type: "http.request".into(), config, ..node.clone() })
}

/// The JSON Schema an answer must match, when the approval has one.
pub fn payload_schema(node: &NodeSpec) -> Option<&Value> {
    node.config.get("payload_schema")
}
