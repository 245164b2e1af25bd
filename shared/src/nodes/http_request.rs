use super::NodeKind;
use serde_json::{Value, json};

pub struct HttpRequest;

impl NodeKind for HttpRequest {
    fn name(&self) -> &'static str {
        "http.request"
    }
    fn description(&self) -> &'static str {
        "Sends an HTTP(S) request; method, url, headers and body are templates. Output: status, headers, body (parsed when JSON)."
    }
    fn config_schema(&self) -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["method", "url"],
            "properties": {
                "method": { "enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] },
                "url": { "type": "string", "minLength": 1, "maxLength": 2048 },
                "headers": { "type": "object", "maxProperties": 50, "additionalProperties": { "type": "string" } },
                "body": { "description": "A string template, or JSON whose strings are templates." }
            }
        })
    }
}
