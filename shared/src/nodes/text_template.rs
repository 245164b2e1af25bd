use super::{NodeRun, NodeType};
use crate::engine::{NodeCall, NodeFailure, NodeOutput};
use crate::nodes::NodeRuntime;
use crate::template::{off_executor, render_string};
use serde_json::{Value, json};

pub struct TextTemplate;

impl NodeType for TextTemplate {
    fn name(&self) -> &'static str {
        "text.template"
    }
    fn description(&self) -> &'static str {
        "Renders a minijinja template over {input, nodes.<id>.output, execution}; output: {text}."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["template"],
            "properties": { "template": { "type": "string", "maxLength": 65536 } }
        })
    }
}

/// The executor: only the worker links it (through `nodes::runner`).
#[async_trait::async_trait]
impl NodeRun for TextTemplate {
    async fn execute(&self, call: &NodeCall<'_>, _runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure> {
        let source = call.node.config["template"].as_str().unwrap_or_default().to_string();
        let scope = call.scope.clone();
        let text = match off_executor(move || render_string(&source, &scope)).await? {
            Value::String(text) => text,
            other => other.to_string(),
        };
        Ok(json!({ "text": text }).into())
    }
}
