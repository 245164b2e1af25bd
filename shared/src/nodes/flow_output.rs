use super::NodeKind;
use crate::engine::template::render_value;
use crate::engine::{NodeFailure, NodeRuntime};
use crate::model::NodeSpec;
use serde_json::{Value, json};

pub struct FlowOutput;

#[async_trait::async_trait]
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
    async fn execute(&self, node: &NodeSpec, scope: &Value, _runtime: &NodeRuntime) -> Result<Value, NodeFailure> {
        render_value(&node.config["value"], scope)
    }
}
