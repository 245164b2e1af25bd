use super::{NodeRun, NodeType};
use crate::engine::{NodeCall, NodeFailure, NodeOutput};
use crate::nodes::NodeRuntime;
use crate::template::{off_executor, render_value};
use serde_json::{Value, json};

pub struct FlowOutput;

impl NodeType for FlowOutput {
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

/// The executor: only the worker links it (through `nodes::runner`).
#[async_trait::async_trait]
impl NodeRun for FlowOutput {
    async fn execute(&self, call: &NodeCall<'_>, _runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure> {
        let (value, scope) = (call.node.config["value"].clone(), call.scope.clone());
        Ok(off_executor(move || render_value(&value, &scope)).await?.into())
    }
}
