//! `flow.subworkflow` and `flow.map`: child executions of another workflow of the same tenant
//! (its deployed version, or a pinned `version`). The engine runs them itself
//! (`engine::parking`), the worker starts and collects the children (`executions::children`).

use super::NodeType;
use crate::model::{MAX_MAP_ITEMS, WaitKind};
use serde_json::{Value, json};

fn workflow_fields() -> Value {
    json!({
        "workflow_id": { "type": "string", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$",
                         "description": "A workflow of the same tenant (its id)." },
        "version": { "type": "integer", "minimum": 1, "description": "Pinned version; default: the deployed one." }
    })
}

pub struct FlowSubworkflow;

impl NodeType for FlowSubworkflow {
    fn name(&self) -> &'static str {
        "flow.subworkflow"
    }
    fn description(&self) -> &'static str {
        "Runs another workflow of the tenant as a child execution with `input` (JSON whose strings are templates) and parks until it ends; output: the child's output. The child's failure is this node's error (SUBWORKFLOW_FAILED)."
    }
    fn config_schema(&self) -> Value {
        let mut properties = workflow_fields();
        properties["input"] = json!({ "type": "object", "description": "The child's input; strings are templates." });
        json!({ "type": "object", "additionalProperties": false, "required": ["workflow_id"], "properties": properties })
    }
    fn has_side_effects(&self) -> bool {
        true
    }
    fn parks(&self) -> Option<WaitKind> {
        Some(WaitKind::Children)
    }
}

pub struct FlowMap;

impl NodeType for FlowMap {
    fn name(&self) -> &'static str {
        "flow.map"
    }
    fn description(&self) -> &'static str {
        "Runs another workflow once per item of `items` (a template rendering to a JSON array, at most 10,000), each a child execution with input {item, index} on its own Lambda invocation, at most `concurrency` (default 10, at most 100) at once; output: the children's outputs in item order. More failures than `tolerated_failures` (a count or \"N%\") fail it (MAP_ITEMS_FAILED)."
    }
    fn config_schema(&self) -> Value {
        let mut properties = workflow_fields();
        properties["items"] = json!({ "type": "string", "minLength": 1, "maxLength": 4096,
                                      "description": format!("A template rendering to a JSON array of at most {MAX_MAP_ITEMS} items.") });
        properties["concurrency"] = json!({ "type": "integer", "minimum": 1, "maximum": 100 });
        properties["tolerated_failures"] = json!({ "oneOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "string", "pattern": "^(100|[0-9]{1,2})(\\\\.[0-9]+)?%$" } ] });
        json!({ "type": "object", "additionalProperties": false, "required": ["workflow_id", "items"], "properties": properties })
    }
    fn has_side_effects(&self) -> bool {
        true
    }
    fn parks(&self) -> Option<WaitKind> {
        Some(WaitKind::Children)
    }
}
