use super::{NodeRun, NodeType};
use crate::engine::{NodeCall, NodeFailure, NodeOutput};
use crate::nodes::NodeRuntime;
use crate::template::{evaluate_condition, off_executor};
use serde_json::{Value, json};

pub struct LogicCondition;

impl NodeType for LogicCondition {
    fn name(&self) -> &'static str {
        "logic.condition"
    }
    fn description(&self) -> &'static str {
        "Evaluates a minijinja expression; edges leaving it carry \"when\": \"true\" or \"false\" and only the matching branch runs."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["expression"],
            "properties": {
                "expression": { "type": "string", "minLength": 1, "maxLength": 4096,
                                "description": "e.g. nodes.fetch.output.status == 200" }
            }
        })
    }
    fn expression_fields(&self) -> &'static [&'static str] {
        &["/expression"]
    }
    fn is_condition(&self) -> bool {
        true
    }
}

/// The executor: only the worker links it (through `nodes::runner`).
#[async_trait::async_trait]
impl NodeRun for LogicCondition {
    async fn execute(&self, call: &NodeCall<'_>, _runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure> {
        let expression = call.node.config["expression"].as_str().unwrap_or_default().to_string();
        let scope = call.scope.clone();
        Ok(Value::Bool(off_executor(move || evaluate_condition(&expression, &scope)).await?).into())
    }
}
