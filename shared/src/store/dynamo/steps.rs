//! `StepStore`: step records, alone (side-effecting nodes, written once) and in bulk.

use super::*;

/// Steps kept in bulk go into items of at most this much JSON (an item holds 400 KB).
pub(super) const BULK_ITEM_BYTES: usize = 300 * 1024;

/// What one TransactWriteItems may carry: 100 actions and 4 MB.
pub(super) const TRANSACTION_ITEMS: usize = 100;

pub(super) const TRANSACTION_BYTES: usize = 3 * 1024 * 1024;

/// `steps` as bulk items of at most `BULK_ITEM_BYTES` of JSON each, with their sizes.
pub(super) fn bulk_step_items(
    tenant_id: &str,
    execution_id: &str,
    steps: &[StepRecord],
    ttl: AttributeValue,
) -> Result<Vec<(Item, usize)>, StoreError> {
    let mut chunks: Vec<Vec<&StepRecord>> = vec![Vec::new()];
    let mut size = 0;
    for step in steps {
        let step_size = serde_json::to_string(step).map_err(|e| StoreError::Internal(e.to_string()))?.len();
        if size + step_size > BULK_ITEM_BYTES && !chunks.last().is_some_and(Vec::is_empty) {
            chunks.push(Vec::new());
            size = 0;
        }
        size += step_size;
        chunks.last_mut().expect("one chunk at least").push(step);
    }
    chunks
        .into_iter()
        .map(|chunk| {
            let text = serde_json::to_string(&chunk).map_err(|e| StoreError::Internal(e.to_string()))?;
            let mut item = key(execution_items_pk(tenant_id, execution_id), bulk_step_sk(&crate::model::new_id()));
            item.insert("entity".into(), s("step_bulk"));
            item.insert("ttl".into(), ttl.clone());
            let size = text.len();
            item.insert("bulk_steps".into(), packed(&text)?);
            Ok((item, size))
        })
        .collect()
}

pub(super) fn step_status(text: &str) -> Result<StepStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| StoreError::Internal(format!("unknown step status {text}")))
}

pub(super) fn step_from(item: &Item) -> Result<StepRecord, StoreError> {
    let json = |name: &str| -> Result<Option<serde_json::Value>, StoreError> {
        get_opt_s(item, name)
            .map(|text| serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("step {name}: {e}"))))
            .transpose()
    };
    let error: Option<StepError> = match json("error")? {
        Some(value) => Some(serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))?),
        None => None,
    };
    Ok(StepRecord {
        node_id: get_s(item, "node_id")?,
        status: step_status(&get_s(item, "status")?)?,
        attempts: get_n(item, "attempts")?,
        started_at: get_opt_s(item, "started_at"),
        finished_at: get_opt_s(item, "finished_at"),
        output: json("output")?.unwrap_or(serde_json::Value::Null),
        error,
        input: json("input")?.unwrap_or(serde_json::Value::Null),
        usage: match json("usage")? {
            Some(value) => serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))?,
            None => None,
        },
        cost_usd: match item.get("cost_usd") {
            Some(AttributeValue::N(number)) => number.parse().ok(),
            _ => None,
        },
        model: get_opt_s(item, "model"),
    })
}

#[async_trait]
impl StepStore for DynamoStore {
    async fn load_steps(&self, tenant_id: &str, execution_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let (mut steps, mut bulk) = (Vec::new(), Vec::new());
        for item in self.step_items(tenant_id, execution_id).await? {
            match unpacked(&item, "bulk_steps")? {
                Some(text) => bulk.extend(
                    serde_json::from_str::<Vec<StepRecord>>(&text)
                        .map_err(|e| StoreError::Internal(format!("bulk steps: {e}")))?,
                ),
                None => steps.push(step_from(&item)?),
            }
        }
        Ok(crate::store::merge_steps(steps, bulk))
    }

    async fn record_step(&self, tenant_id: &str, execution_id: &str, step: &StepRecord) -> Result<(), StoreError> {
        let mut item = key(execution_items_pk(tenant_id, execution_id), step_sk(&step.node_id));
        item.insert("entity".into(), s("step"));
        item.insert("ttl".into(), self.step_ttl());
        item.insert("node_id".into(), s(&step.node_id));
        item.insert("status".into(), s(step.status.as_str()));
        item.insert("attempts".into(), n(step.attempts));
        item.insert("output".into(), s(step.output.to_string()));
        if let Some(error) = &step.error {
            item.insert(
                "error".into(),
                s(serde_json::to_string(error).map_err(|e| StoreError::Internal(e.to_string()))?),
            );
        }
        for (name, value) in [("started_at", &step.started_at), ("finished_at", &step.finished_at)] {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        if !step.input.is_null() {
            item.insert("input".into(), s(step.input.to_string()));
        }
        if let Some(usage) = &step.usage {
            item.insert(
                "usage".into(),
                s(serde_json::to_string(usage).map_err(|e| StoreError::Internal(e.to_string()))?),
            );
        }
        if let Some(cost) = step.cost_usd {
            item.insert("cost_usd".into(), n(cost));
        }
        if let Some(model) = &step.model {
            item.insert("model".into(), s(model));
        }
        self.put_new(item).await
    }

    async fn reset_steps_for_redrive(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError> {
        for item in self.step_items(tenant_id, execution_id).await? {
            // Bulk items have no status of their own: they go too (pure steps are recomputed).
            if get_opt_s(&item, "status").as_deref() == Some("succeeded") {
                continue;
            }
            let key: Item = item.into_iter().filter(|(name, _)| name == "pk" || name == "sk").collect();
            self.client.delete_item().table_name(&self.table).set_key(Some(key)).send().await.map_err(classify)?;
        }
        Ok(())
    }
}
