use super::NodeKind;
use serde_json::{Value, json};

pub struct FlowOutput;

impl NodeKind for FlowOutput {
    fn name(&self) -> &'static str {
        "flow.output"
    }
    fn description(&self) -> &'static str {
        "Sets the execution's output to `value` (strings are templates). At most one per workflow."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["value"],
            "properties": { "value": { "description": "Any JSON; strings are templates." } }
        })
    }
}
