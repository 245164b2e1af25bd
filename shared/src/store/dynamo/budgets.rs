//! Budgets (`crate::budgets`): the tenant's `BUDGET` item and one `SPEND#<YYYY-MM>` item per
//! month in the tenant's partition, with `committed` (settled + reserved), `spent` (settled),
//! in nano-dollars, and `alerts_sent` (a number set).

use super::*;
use crate::budgets::{Budget, BudgetStore, MonthSpend};

fn budget_key(tenant_id: &str) -> Item {
    key(tenant_pk(tenant_id), "BUDGET".into())
}
fn spend_key(tenant_id: &str, month: &str) -> Item {
    key(tenant_pk(tenant_id), format!("SPEND#{month}"))
}

fn spend_from(item: &Item) -> Result<MonthSpend, StoreError> {
    let alerts_sent = match item.get("alerts_sent") {
        Some(AttributeValue::Ns(numbers)) => numbers.iter().filter_map(|n| n.parse().ok()).collect(),
        _ => Vec::new(),
    };
    Ok(MonthSpend {
        spent_nano: get_opt_n::<i64>(item, "spent")?.unwrap_or(0).max(0) as u64,
        committed_nano: get_opt_n::<i64>(item, "committed")?.unwrap_or(0).max(0) as u64,
        alerts_sent,
    })
}

#[async_trait]
impl BudgetStore for DynamoStore {
    async fn get_budget(&self, tenant_id: &str) -> Result<Option<Budget>, StoreError> {
        let Some(item) = self.get(budget_key(tenant_id)).await? else { return Ok(None) };
        let text = get_s(&item, "budget")?;
        serde_json::from_str(&text).map(Some).map_err(|e| StoreError::Internal(format!("budget: {e}")))
    }

    async fn put_budget(&self, tenant_id: &str, budget: &Budget) -> Result<(), StoreError> {
        let mut item = budget_key(tenant_id);
        item.insert("entity".into(), s("budget"));
        item.insert(
            "budget".into(),
            s(serde_json::to_string(budget).map_err(|e| StoreError::Internal(e.to_string()))?),
        );
        self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(classify)?;
        Ok(())
    }

    async fn month_spend(&self, tenant_id: &str, month: &str) -> Result<MonthSpend, StoreError> {
        match self.get(spend_key(tenant_id, month)).await? {
            Some(item) => spend_from(&item),
            None => Ok(MonthSpend::default()),
        }
    }

    async fn reserve(
        &self,
        tenant_id: &str,
        month: &str,
        amount_nano: u64,
        limit_nano: u64,
    ) -> Result<bool, StoreError> {
        // No arithmetic in a condition: the largest committed sum this reservation still fits on.
        let Some(room) = limit_nano.checked_sub(amount_nano) else { return Ok(false) };
        self.update_if(
            spend_key(tenant_id, month),
            "SET entity = :entity ADD committed :amount",
            "attribute_not_exists(committed) OR committed <= :room",
            vec![(":entity", s("spend")), (":amount", n(amount_nano)), (":room", n(room))],
        )
        .await
    }

    async fn settle(
        &self,
        tenant_id: &str,
        month: &str,
        reserved_nano: u64,
        actual_nano: u64,
    ) -> Result<MonthSpend, StoreError> {
        let delta = actual_nano as i128 - reserved_nano as i128;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(spend_key(tenant_id, month)))
            .update_expression("SET entity = :entity ADD committed :delta, spent :actual")
            .expression_attribute_values(":entity", s("spend"))
            .expression_attribute_values(":delta", n(delta))
            .expression_attribute_values(":actual", n(actual_nano))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(classify)?;
        spend_from(&out.attributes.unwrap_or_default())
    }

    async fn mark_alert(&self, tenant_id: &str, month: &str, percent: u32) -> Result<bool, StoreError> {
        self.update_if(
            spend_key(tenant_id, month),
            "SET entity = :entity ADD alerts_sent :percent",
            "NOT contains(alerts_sent, :one)",
            vec![
                (":entity", s("spend")),
                (":percent", AttributeValue::Ns(vec![percent.to_string()])),
                (":one", n(percent)),
            ],
        )
        .await
    }
}
