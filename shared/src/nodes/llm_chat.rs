use super::NodeKind;
use serde_json::{Value, json};

pub struct LlmChat;

impl NodeKind for LlmChat {
    fn name(&self) -> &'static str {
        "llm.chat"
    }
    fn description(&self) -> &'static str {
        "Calls a chat model (OpenAI-compatible or Anthropic) with templated messages, using a tenant credential."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["credential", "model", "messages"],
            "properties": {
                "credential": { "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                                "description": "Name of a tenant credential (PUT /v1/credentials/{name})." },
                "model": { "type": "string", "minLength": 1, "maxLength": 200 },
                "system": { "type": "string", "description": "System prompt (template)." },
                "messages": {
                    "type": "array", "minItems": 1, "maxItems": 100,
                    "items": {
                        "type": "object", "additionalProperties": false, "required": ["role", "content"],
                        "properties": {
                            "role": { "enum": ["system", "user", "assistant"] },
                            "content": { "type": "string", "description": "Template." }
                        }
                    }
                },
                "temperature": { "type": "number", "minimum": 0, "maximum": 2 },
                "max_tokens": { "type": "integer", "minimum": 1, "maximum": 200000 },
                "response_format": { "enum": ["text", "json"], "description": "json: the reply is parsed into the node output." }
            }
        })
    }
}
