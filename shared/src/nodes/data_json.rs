use super::{NodeRun, NodeType};
use crate::engine::{NodeCall, NodeFailure, NodeOutput};
use crate::model::StepErrorCode;
use crate::model::limits::MAX_VALUE_DEPTH;
use crate::nodes::NodeRuntime;
use crate::template::{off_executor, render_value};
use serde_json::{Value, json};

pub struct DataJson;

impl NodeType for DataJson {
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

/// The executor: only the worker links it (through `nodes::runner`).
#[async_trait::async_trait]
impl NodeRun for DataJson {
    async fn execute(&self, call: &NodeCall<'_>, _runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure> {
        let (config, scope) = (call.node.config.clone(), call.scope.clone());
        Ok(off_executor(move || build(&config, &scope)).await?.into())
    }
}

/// Renders `source`, picks, then sets each change in order.
fn build(config: &Value, scope: &Value) -> Result<Value, NodeFailure> {
    let mut value = render_value(&config["source"], scope)?;
    if let Some(pointer) = config.get("pick").and_then(Value::as_str) {
        value = value.pointer(pointer).cloned().ok_or_else(|| {
            NodeFailure::permanent(StepErrorCode::JsonPointerNotFound, format!("nothing at {pointer:?} in the source"))
        })?;
    }
    for change in config.get("set").and_then(Value::as_array).into_iter().flatten() {
        let pointer = change["pointer"].as_str().unwrap_or_default();
        let new_value = render_value(&change["value"], scope)?;
        set_pointer(&mut value, pointer, new_value)?;
    }
    Ok(value)
}

/// Sets `new_value` at a JSON pointer, creating objects on the way; the parent must be an
/// object (or an array with that index, or `-` to append).
fn set_pointer(target: &mut Value, pointer: &str, new_value: Value) -> Result<(), NodeFailure> {
    if pointer.is_empty() {
        *target = new_value;
        return Ok(());
    }
    let unescape = |t: &str| t.replace("~1", "/").replace("~0", "~");
    // Refused before anything is built: a deep enough value overflows the stack when it is
    // serialised or dropped.
    if pointer.matches('/').count() > MAX_VALUE_DEPTH {
        return Err(NodeFailure::permanent(
            StepErrorCode::NodeOutputTooDeep,
            format!("a pointer of more than {MAX_VALUE_DEPTH} segments would nest the output too deep"),
        ));
    }
    let tokens: Vec<String> = pointer.split('/').skip(1).map(unescape).collect();
    let (last, parents) = tokens.split_last().expect("a non-empty pointer has a token");
    let mut current = target;
    for token in parents {
        if current.is_null() {
            *current = Value::Object(Default::default());
        }
        current = match current {
            Value::Object(map) => map.entry(token.clone()).or_insert(Value::Null),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)).ok_or_else(|| {
                NodeFailure::permanent(
                    StepErrorCode::JsonPointerNotFound,
                    format!("no array element {token:?} in {pointer:?}"),
                )
            })?,
            _ => {
                return Err(NodeFailure::permanent(
                    StepErrorCode::JsonPointerNotFound,
                    format!("{pointer:?} goes through a scalar"),
                ));
            }
        };
    }
    if current.is_null() {
        *current = Value::Object(Default::default());
    }
    match current {
        Value::Object(map) => {
            map.insert(last.clone(), new_value);
        }
        Value::Array(items) if last == "-" => items.push(new_value),
        Value::Array(items) => match last.parse::<usize>().ok().filter(|i| *i < items.len()) {
            Some(i) => items[i] = new_value,
            None => {
                return Err(NodeFailure::permanent(
                    StepErrorCode::JsonPointerNotFound,
                    format!("no array element {last:?}"),
                ));
            }
        },
        _ => {
            return Err(NodeFailure::permanent(
                StepErrorCode::JsonPointerNotFound,
                format!("{pointer:?} goes through a scalar"),
            ));
        }
    }
    Ok(())
}
