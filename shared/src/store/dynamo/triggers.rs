//! `TriggerStore`: a trigger is one item in its workflow's trigger partition, holding the record
//! as JSON; a webhook's hook id has its own item with a copy (one GetItem per delivery); the
//! tenant's trigger count is one counter item, changed in the same transaction.

use super::*;
use crate::triggers::{TriggerRecord, TriggerRun, TriggerStore};

fn trigger_from(item: &Item) -> Result<TriggerRecord, StoreError> {
    let doc = get_s(item, "doc")?;
    let mut record: TriggerRecord =
        serde_json::from_str(&doc).map_err(|e| StoreError::Internal(format!("stored trigger does not parse: {e}")))?;
    if let Some(run) = get_opt_s(item, "last_run") {
        record.last_run = serde_json::from_str(&run).ok();
    }
    Ok(record)
}

/// The settings as stored: the last run lives in its own attribute.
fn doc(record: &TriggerRecord) -> Result<AttributeValue, StoreError> {
    let settings = TriggerRecord { last_run: None, ..record.clone() };
    serde_json::to_string(&settings).map(s).map_err(|e| StoreError::Internal(e.to_string()))
}

impl DynamoStore {
    fn trigger_item(&self, record: &TriggerRecord) -> Result<Item, StoreError> {
        let mut item = trigger_key(&record.tenant_id, &record.workflow_id, &record.trigger_id);
        item.insert("entity".into(), s("trigger"));
        item.insert("revision".into(), n(record.revision));
        item.insert("doc".into(), doc(record)?);
        Ok(item)
    }

    fn hook_item(&self, record: &TriggerRecord) -> Result<Option<Item>, StoreError> {
        let Some(webhook) = record.webhook() else { return Ok(None) };
        let mut item = hook_key(&webhook.hook_id);
        item.insert("entity".into(), s("hook"));
        item.insert("doc".into(), doc(record)?);
        Ok(Some(item))
    }

    fn put(&self, item: Item, condition: Option<&str>) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_string))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn count_change(&self, key: Item, change: i64, max: Option<usize>) -> Result<TransactWriteItem, StoreError> {
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression("ADD trigger_count :change")
            .expression_attribute_values(":change", n(change));
        if let Some(max) = max {
            update = update
                .condition_expression("attribute_not_exists(trigger_count) OR trigger_count < :max")
                .expression_attribute_values(":max", n(max));
        }
        let update = update.build().map_err(|e| StoreError::Internal(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[async_trait]
impl TriggerStore for DynamoStore {
    async fn create_trigger(
        &self,
        record: &TriggerRecord,
        max_for_workflow: usize,
        max_for_tenant: usize,
    ) -> Result<bool, StoreError> {
        let (tenant, workflow) = (&record.tenant_id, &record.workflow_id);
        let mut items = vec![
            self.put(self.trigger_item(record)?, Some("attribute_not_exists(pk)"))?,
            self.count_change(trigger_count_key(tenant), 1, Some(max_for_tenant))?,
            self.count_change(workflow_trigger_count_key(tenant, workflow), 1, Some(max_for_workflow))?,
        ];
        if let Some(hook) = self.hook_item(record)? {
            items.push(self.put(hook, Some("attribute_not_exists(pk)"))?);
        }
        // New ids never collide: a failed condition is a count at its limit.
        condition_met(self.client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(classify))
    }

    async fn get_trigger(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        trigger_id: &str,
    ) -> Result<Option<TriggerRecord>, StoreError> {
        self.get(trigger_key(tenant_id, workflow_id, trigger_id)).await?.map(|item| trigger_from(&item)).transpose()
    }

    async fn list_triggers(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<TriggerRecord>, StoreError> {
        let pk = triggers_pk(tenant_id, workflow_id);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s(TRIGGER_PREFIX))
            .consistent_read(true)
            .limit((limit + 1) as i32)
            .set_exclusive_start_key(after.map(|a| key(pk.clone(), trigger_sk(a))))
            .send()
            .await
            .map_err(classify)?;
        let mut items = out.items.unwrap_or_default().iter().map(trigger_from).collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|t| t.trigger_id.clone()) } else { None };
        Ok(Page { items, next_after })
    }

    async fn count_triggers(&self, tenant_id: &str, workflow_id: &str) -> Result<usize, StoreError> {
        let item = self.get(workflow_trigger_count_key(tenant_id, workflow_id)).await?;
        Ok(item.map(|i| get_opt_n::<i64>(&i, "trigger_count")).transpose()?.flatten().unwrap_or(0).max(0) as usize)
    }

    async fn replace_trigger(&self, record: &TriggerRecord, expected_revision: u64) -> Result<bool, StoreError> {
        // An update, not a put: the last run's own attribute stays.
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(trigger_key(&record.tenant_id, &record.workflow_id, &record.trigger_id)))
            .update_expression("SET doc = :doc, revision = :revision")
            .condition_expression("revision = :expected")
            .expression_attribute_values(":doc", doc(record)?)
            .expression_attribute_values(":revision", n(record.revision))
            .expression_attribute_values(":expected", n(expected_revision))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        if let Some(hook) = self.hook_item(record)? {
            items.push(self.put(hook, None)?);
        }
        condition_met(self.client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(classify))
    }

    async fn delete_trigger(&self, record: &TriggerRecord) -> Result<bool, StoreError> {
        let delete = |key: Item, condition: Option<&str>| -> Result<TransactWriteItem, StoreError> {
            let delete = aws_sdk_dynamodb::types::Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key))
                .set_condition_expression(condition.map(str::to_string))
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            Ok(TransactWriteItem::builder().delete(delete).build())
        };
        let mut items = vec![
            delete(
                trigger_key(&record.tenant_id, &record.workflow_id, &record.trigger_id),
                Some("attribute_exists(pk)"),
            )?,
            self.count_change(trigger_count_key(&record.tenant_id), -1, None)?,
            self.count_change(workflow_trigger_count_key(&record.tenant_id, &record.workflow_id), -1, None)?,
        ];
        if let Some(webhook) = record.webhook() {
            items.push(delete(hook_key(&webhook.hook_id), None)?);
        }
        condition_met(self.client.transact_write_items().set_transact_items(Some(items)).send().await.map_err(classify))
    }

    async fn find_hook(&self, hook_id: &str) -> Result<Option<TriggerRecord>, StoreError> {
        self.get(hook_key(hook_id)).await?.map(|item| trigger_from(&item)).transpose()
    }

    async fn record_trigger_run(&self, record: &TriggerRecord, run: &TriggerRun) -> Result<(), StoreError> {
        let run = serde_json::to_string(run).map_err(|e| StoreError::Internal(e.to_string()))?;
        // Only on a trigger still there (a run that raced its delete is not recorded).
        self.update_if(
            trigger_key(&record.tenant_id, &record.workflow_id, &record.trigger_id),
            "SET last_run = :run",
            "attribute_exists(pk)",
            vec![(":run", s(run))],
        )
        .await?;
        Ok(())
    }
}
