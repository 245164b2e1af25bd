//! Usage counter rows (`crate::usage`) and the change-stream records they are counted from.
//!
//! Rows: partition `T#<tenant>#USAGE#DAY|WF|MODEL`, sort key `<YYYY-MM-DD>` or
//! `<YYYY-MM-DD>#<workflow id or model>`, one Number attribute per counter (added with ADD).
//! Each `add_usage` is one transaction: a marker item per finish (`USAGEFIN#<tenant>#<execution>`
//! / `<finished_at>`, written only if absent, kept 3 days by TTL: longer than a stream keeps
//! records) and an update per row. A finish counted before fails its marker's condition and
//! cancels the whole transaction.

use super::*;
use crate::usage::{FinishedExecution, UsageCounters, UsageGroup, UsageRow, UsageStore};
use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};

/// How long a finish marker is kept: past the stream's 24-hour retention, with a margin.
const FINISH_MARKER_SECONDS: i64 = 3 * 24 * 3600;

fn usage_pk(tenant_id: &str, group: UsageGroup) -> String {
    let group = match group {
        UsageGroup::Day => "DAY",
        UsageGroup::Workflow => "WF",
        UsageGroup::Model => "MODEL",
    };
    format!("{}#USAGE#{group}", tenant_pk(tenant_id))
}

fn row_from(tenant_id: &str, group: UsageGroup, item: &Item) -> Result<UsageRow, StoreError> {
    let sk = get_s(item, "sk")?;
    let (day, name) = match sk.split_once('#') {
        Some((day, name)) => (day.to_string(), Some(name.to_string())),
        None => (sk, None),
    };
    let mut values = [0u64; 12];
    for (value, name) in values.iter_mut().zip(UsageCounters::NAMES) {
        *value = get_opt_n(item, name)?.unwrap_or(0);
    }
    Ok(UsageRow { tenant_id: tenant_id.to_string(), day, group, name, counters: UsageCounters::from_values(values) })
}

impl DynamoStore {
    fn usage_update(&self, row: &UsageRow) -> Result<Option<Update>, StoreError> {
        let added: Vec<(&str, u64)> =
            UsageCounters::NAMES.into_iter().zip(row.counters.values()).filter(|(_, v)| *v > 0).collect();
        if added.is_empty() {
            return Ok(None);
        }
        let expression = added.iter().map(|(name, _)| format!("{name} :{name}")).collect::<Vec<_>>().join(", ");
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(usage_pk(&row.tenant_id, row.group), crate::usage::row_key(row))))
            .update_expression(format!("SET entity = :entity ADD {expression}"))
            .expression_attribute_values(":entity", s("usage"));
        for (name, value) in added {
            update = update.expression_attribute_values(format!(":{name}"), n(value));
        }
        update.build().map(Some).map_err(|e| StoreError::Internal(e.to_string()))
    }
}

#[async_trait]
impl UsageStore for DynamoStore {
    async fn add_usage(&self, finishes: &[String], rows: &[UsageRow]) -> Result<bool, StoreError> {
        if finishes.len() + rows.len() > crate::usage::MAX_TRANSACTION_ITEMS {
            return Err(StoreError::Internal("more finishes and rows than one transaction holds".into()));
        }
        let expires = chrono::Utc::now().timestamp() + FINISH_MARKER_SECONDS;
        let mut items = Vec::new();
        for finish in finishes {
            let (execution, finished_at) = finish.rsplit_once('#').unwrap_or((finish.as_str(), ""));
            let mut marker = key(format!("USAGEFIN#{execution}"), finished_at.to_string());
            marker.insert("ttl".into(), n(expires));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(marker))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        for row in rows {
            if let Some(update) = self.usage_update(row)? {
                items.push(TransactWriteItem::builder().update(update).build());
            }
        }
        // Two batches (two shards) touching one tenant's day together conflict now and then
        // (TransactionConflict): retried with jitter here, then left to the stream's retry.
        let sent = retry_conflicts(4, || async {
            self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await.map_err(classify)
        })
        .await;
        condition_met(sent)
    }

    async fn list_usage(
        &self,
        tenant_id: &str,
        group: UsageGroup,
        from: &str,
        to: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<UsageRow>, StoreError> {
        let pk = usage_pk(tenant_id, group);
        // `~` sorts after `#`: the last day's named rows are in range too.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(format!("{to}~")))
            .limit((limit + 1) as i32)
            .set_exclusive_start_key(after.map(|a| key(pk.clone(), a.to_string())))
            .send()
            .await
            .map_err(classify)?;
        let mut items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| row_from(tenant_id, group, item))
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(crate::usage::row_key) } else { None };
        Ok(Page { items, next_after })
    }
}

/// The executions a stream batch shows changing into a final status. Records of other items,
/// and changes that do not end an execution, are left out.
pub fn finishes_from_stream(event: &StreamEvent) -> Vec<FinishedExecution> {
    event.records.iter().filter_map(finish_from).collect()
}

fn text<'a>(item: &'a serde_dynamo::Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(serde_dynamo::AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn finish_from(record: &EventRecord) -> Option<FinishedExecution> {
    let (new, old) = (&record.change.new_image, &record.change.old_image);
    if text(new, "entity") != Some("execution") {
        return None;
    }
    let status = ExecutionStatus::parse(text(new, "status")?)?;
    let was_final = text(old, "status").and_then(ExecutionStatus::parse).is_some_and(|s| s.is_final());
    if !status.is_final() || was_final {
        return None;
    }
    let spent = |item: &serde_dynamo::Item| -> crate::model::ExecutionUsage {
        text(item, "usage").and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default()
    };
    let Some(tenant_id) = text(new, "pk").and_then(|pk| pk.strip_prefix("T#")) else {
        tracing::error!(event_id = %record.event_id, "an execution's change has no tenant key; not counted");
        return None;
    };
    Some(FinishedExecution {
        tenant_id: tenant_id.to_string(),
        execution_id: text(new, "execution_id").unwrap_or_default().to_string(),
        workflow_id: text(new, "workflow_id").unwrap_or_default().to_string(),
        status,
        // Every final write sets finished_at; were one missing, the record's own time (the same
        // on every delivery) keeps the finish's identity stable.
        finished_at: text(new, "finished_at")
            .map(str::to_string)
            .unwrap_or_else(|| record.change.approximate_creation_date_time.to_rfc3339()),
        // What it spent since it was last counted: a redrive left the kept steps' spend.
        spent: spent(new).minus(&spent(old)),
    })
}
