//! Large values: an execution's input, a node's output or rendered input, or an execution's
//! output whose JSON is over `INLINE_VALUE_BYTES` is kept in the value store (S3), and the
//! DynamoDB item holds a reference to it instead: `{"$nodeai_ref": {"key": K, "size_bytes": N}}`.
//! Keys are `executions/<tenant_id>/<execution_id>/<name>.json`, where a name is `input`,
//! `output`, `steps/<node_id>/<attempt id>/output` or `.../input`; they stay under the execution's
//! own prefix, so a reference can only ever name that execution's values.

use serde_json::{Value, json};

/// Values whose JSON is larger than this (bytes) are kept in the value store: 64 KB keeps an
/// execution item (input, output, error, bookkeeping) and a step far inside DynamoDB's 400 KB.
pub const INLINE_VALUE_BYTES: usize = 64 * 1024;

/// The largest node output (bytes of JSON): 10 MiB.
pub const MAX_NODE_OUTPUT_BYTES: usize = 10 * 1024 * 1024;

const MARKER: &str = "$nodeai_ref";

/// A value kept in the value store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueRef {
    pub key: String,
    pub size_bytes: u64,
}

impl ValueRef {
    /// The reference as stored in place of the value.
    pub fn to_value(&self) -> Value {
        json!({ MARKER: { "key": self.key, "size_bytes": self.size_bytes } })
    }

    /// The reference a stored value is, if it is one.
    pub fn of(value: &Value) -> Option<ValueRef> {
        let object = value.as_object().filter(|o| o.len() == 1)?;
        let inner = object.get(MARKER)?;
        Some(ValueRef { key: inner["key"].as_str()?.to_string(), size_bytes: inner["size_bytes"].as_u64()? })
    }
}

/// The prefix of every value of one execution.
pub fn execution_prefix(tenant_id: &str, execution_id: &str) -> String {
    format!("executions/{tenant_id}/{execution_id}/")
}

/// The key of one named value of an execution (`input`, `output`, `steps/<node>/output`, ...).
pub fn value_key(tenant_id: &str, execution_id: &str, name: &str) -> String {
    format!("{}{name}.json", execution_prefix(tenant_id, execution_id))
}

/// The name a response uses for a stored value's key (`input`, `output`, `<node>.output`,
/// `<node>.input`), the `{value}` of `GET /v1/executions/{execution_id}/values/{value}`.
pub fn public_name(key: &str) -> Option<String> {
    let name = key.strip_prefix("executions/")?.splitn(3, '/').nth(2)?.strip_suffix(".json")?;
    match name.strip_prefix("steps/") {
        Some(step) => {
            let (node, rest) = step.split_once('/')?;
            let part = rest.rsplit('/').next()?;
            Some(format!("{node}.{part}"))
        }
        None => Some(name.to_string()),
    }
}

/// An execution's resource path, `/v1/executions/{execution_id}`.
pub fn execution_link(execution_id: &str) -> String {
    format!("/v1/executions/{execution_id}")
}

/// A stored value as responses and events show it: itself when inline; for a value of this
/// execution kept in S3, `{"ref": "/v1/executions/{id}/values/{name}", "size_bytes": N}` (no
/// response carries more than it can: Lambda answers at most 6 MB).
pub fn shown(value: Value, tenant_id: &str, execution_id: &str) -> Value {
    let own = ValueRef::of(&value).filter(|r| r.key.starts_with(&execution_prefix(tenant_id, execution_id)));
    match own.and_then(|r| Some((public_name(&r.key)?, r.size_bytes))) {
        Some((name, size_bytes)) => {
            json!({ "ref": format!("{}/values/{name}", execution_link(execution_id)), "size_bytes": size_bytes })
        }
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_ordinary_values_are_not_references() {
        let r = ValueRef { key: value_key("t1", "e1", "steps/a/01ATTEMPT/output"), size_bytes: 900_000 };
        assert_eq!(r.key, "executions/t1/e1/steps/a/01ATTEMPT/output.json");
        assert_eq!(ValueRef::of(&r.to_value()), Some(r.clone()));
        assert_eq!(public_name(&r.key).as_deref(), Some("a.output"));
        assert_eq!(public_name(&value_key("t1", "e1", "input")).as_deref(), Some("input"));
        for value in [json!({ "key": "x" }), json!({ "$nodeai_ref": { "key": 1 } }), json!([1]), json!("s")] {
            assert_eq!(ValueRef::of(&value), None, "{value}");
        }
    }
}
