use super::NodeKind;
use crate::engine::template::evaluate_condition;
use crate::engine::{NodeFailure, NodeRuntime};
use crate::model::NodeSpec;
use serde_json::{Value, json};

pub struct LogicCondition;

#[async_trait::async_trait]
impl NodeKind for LogicCondition {
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
    async fn execute(&self, node: &NodeSpec, scope: &Value, _runtime: &NodeRuntime) -> Result<Value, NodeFailure> {
        let expression = node.config["expression"].as_str().unwrap_or_default();
        Ok(Value::Bool(evaluate_condition(expression, scope)?))
    }
}
