//! `EventStore`: an execution's event batches, one item each, beside its steps
//! (`T#<tenant>#EX#<execution>` / `EV#<10-digit seq>`), expiring with them.

use super::*;
use crate::events::{EventBatch, EventStore, ExecutionEvent};

fn batch_from(item: &Item) -> Result<EventBatch, StoreError> {
    let seq =
        event_seq(&get_s(item, "sk")?).ok_or_else(|| StoreError::Internal("event batch key without a seq".into()))?;
    let text = unpacked(item, "events")?.ok_or_else(|| StoreError::Internal("event batch without events".into()))?;
    let events: Vec<ExecutionEvent> =
        serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("stored events do not parse: {e}")))?;
    Ok(EventBatch { seq, events, writer: get_opt_s(item, "writer").unwrap_or_default() })
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn append_events(&self, tenant_id: &str, execution_id: &str, batch: &EventBatch) -> Result<(), StoreError> {
        let text = serde_json::to_string(&batch.events).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut item = key(execution_items_pk(tenant_id, execution_id), event_sk(batch.seq));
        item.insert("entity".into(), s("events"));
        item.insert("writer".into(), s(&batch.writer));
        item.insert("ttl".into(), self.step_ttl());
        // Write units go by size (1 per KB): a batch of more than a few events is deflated.
        item.insert("events".into(), if text.len() > 1024 { packed(&text)? } else { s(text) });
        self.put_new(item).await
    }

    async fn read_events(
        &self,
        tenant_id: &str,
        execution_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<EventBatch>, StoreError> {
        let limit = limit.clamp(1, 1000);
        let (mut batches, mut start) = (Vec::new(), None);
        // A Query page stops at 1 MB: follow the pages, so fewer than `limit` means no more.
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                .expression_attribute_values(":pk", s(execution_items_pk(tenant_id, execution_id)))
                .expression_attribute_values(":from", s(event_sk(from_seq)))
                .expression_attribute_values(":to", s(event_sk(MAX_EVENT_SEQ)))
                .consistent_read(true)
                .limit((limit - batches.len()) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                batches.push(batch_from(&item)?);
            }
            match out.last_evaluated_key {
                Some(last) if batches.len() < limit => start = Some(last),
                _ => return Ok(batches),
            }
        }
    }

    async fn last_event_seq(&self, tenant_id: &str, execution_id: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(execution_items_pk(tenant_id, execution_id)))
            .expression_attribute_values(":prefix", s(EVENT_PREFIX))
            .scan_index_forward(false)
            .projection_expression("sk")
            .consistent_read(true)
            .limit(1)
            .send()
            .await
            .map_err(classify)?;
        let last = out.items.unwrap_or_default().first().and_then(|item| get_opt_s(item, "sk"));
        Ok(last.and_then(|sk| event_seq(&sk)).unwrap_or(0))
    }
}
