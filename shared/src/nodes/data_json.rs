use super::NodeKind;
use serde_json::{Value, json};

pub struct DataJson;

impl NodeKind for DataJson {
    fn name(&self) -> &'static str {
        "data.json"
    }
    fn description(&self) -> &'static str {
        "Builds JSON from `source` (strings are templates), then picks a value by JSON pointer and/or sets values at pointers."
    }
    fn config_schema(&self) -> Value {
        let pointer = json!({ "type": "string", "pattern": "^(/([^~]|~[01])*)*$" });
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["source"],
            "anyOf": [ { "required": ["pick"] }, { "required": ["set"] } ],
            "properties": {
                "source": { "description": "Any JSON; strings are templates." },
                "pick": pointer,
                "set": {
                    "type": "array", "maxItems": 100,
                    "items": {
                        "type": "object", "additionalProperties": false, "required": ["pointer", "value"],
                        "properties": { "pointer": pointer, "value": {} }
                    }
                }
            }
        })
    }
}
