//! Keeping large values out of DynamoDB items and reading them back (what and where:
//! `model::values`). The engine keeps node outputs and rendered inputs through `Values::keep`,
//! the worker the execution's output, start-execution its input; whoever needs the whole value
//! (the engine's scope on resume, the worker's input) reads it with `Values::resolve`.

use super::ValueStore;
use crate::error::StoreError;
use crate::model::values::{INLINE_VALUE_BYTES, ValueRef, execution_prefix, value_key};
use serde_json::Value;

/// One execution's values.
pub struct Values<'a, V: ValueStore + ?Sized = dyn ValueStore> {
    store: &'a V,
    tenant_id: &'a str,
    execution_id: &'a str,
}

impl<'a, V: ValueStore + ?Sized> Values<'a, V> {
    pub fn new(store: &'a V, tenant_id: &'a str, execution_id: &'a str) -> Self {
        Values { store, tenant_id, execution_id }
    }

    /// The value as an item keeps it: itself when its JSON is at most `INLINE_VALUE_BYTES`,
    /// else written to the value store under `name` (`input`, `output`, `steps/<node>/output`)
    /// and replaced by its reference. A value that merely looks like a reference (a tenant can
    /// write one) is data like any other: only references this function made point anywhere.
    pub async fn keep(&self, name: &str, value: Value) -> Result<Value, StoreError> {
        let json = serde_json::to_vec(&value).map_err(|e| StoreError::Internal(format!("value to JSON: {e}")))?;
        if json.len() <= INLINE_VALUE_BYTES {
            return Ok(value);
        }
        let reference =
            ValueRef { key: value_key(self.tenant_id, self.execution_id, name), size_bytes: json.len() as u64 };
        self.store.put_value(&reference.key, json).await?;
        Ok(reference.to_value())
    }

    /// The reference a stored value is, if it is one of this execution's (a reference-shaped
    /// value naming anything else is data a tenant wrote).
    pub fn own_reference(&self, value: &Value) -> Option<ValueRef> {
        ValueRef::of(value).filter(|r| r.key.starts_with(&execution_prefix(self.tenant_id, self.execution_id)))
    }

    /// A stored value made whole: a reference to one of this execution's values is read back;
    /// anything else (an inline value, a reference outside the execution's prefix) is returned
    /// as it is. A referenced value that is gone (expired) is an error.
    pub async fn resolve(&self, value: Value) -> Result<Value, StoreError> {
        let Some(reference) = self.own_reference(&value) else { return Ok(value) };
        let bytes = self
            .store
            .get_value(&reference.key)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("the stored value {} is gone", reference.key)))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Internal(format!("stored value {}: {e}", reference.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use serde_json::json;

    #[tokio::test]
    async fn small_values_stay_inline_and_large_ones_round_trip_through_the_value_store() {
        let store = MemoryStore::new();
        let values = Values::new(&store, "t1", "e1");
        assert_eq!(values.keep("output", json!({ "a": 1 })).await.unwrap(), json!({ "a": 1 }));
        let large = json!({ "status": 200, "body": "x".repeat(900_000) });
        let kept = values.keep("steps/h/output", large.clone()).await.unwrap();
        let reference = ValueRef::of(&kept).expect("a reference");
        assert_eq!(reference.key, "executions/t1/e1/steps/h/output.json");
        assert!(reference.size_bytes > 900_000);
        assert_eq!(values.resolve(kept.clone()).await.unwrap(), large);
        // A reference-shaped value is data: kept inline (small), never trusted as a pointer.
        assert_eq!(values.keep("forged", kept.clone()).await.unwrap(), kept);
        // Another execution's reference is not followed.
        let other = Values::new(&store, "t2", "e9");
        assert_eq!(other.resolve(kept.clone()).await.unwrap(), kept);
    }
}
