use super::NodeKind;
use serde_json::{Value, json};

pub struct TextTemplate;

impl NodeKind for TextTemplate {
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
