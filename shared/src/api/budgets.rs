//! PUT /v1/budget and GET /v1/budget: the tenant's monthly model budget (`crate::budgets`).

use super::Call;
use super::views::{BudgetRequest, BudgetView};
use crate::api::http::{self, Reply};
use crate::budgets::{Budget, DEFAULT_ALERTS, MonthSpend, OnExceed, month_of};
use crate::error::ApiError;

/// The largest monthly budget, US dollars.
pub const MAX_MONTHLY_USD: f64 = 10_000_000.0;
/// At most this many alert thresholds.
pub const MAX_ALERTS: usize = 10;

/// PUT /v1/budget: sets (or replaces) the budget; answers it with this month's spend.
pub async fn put(call: &Call<'_>) -> Result<Reply, ApiError> {
    let request: BudgetRequest = http::typed_body(call.req)?;
    if !(request.monthly_usd.is_finite() && request.monthly_usd > 0.0 && request.monthly_usd <= MAX_MONTHLY_USD) {
        return Err(ApiError::invalid_request(format!(
            "monthly_usd must be a number above 0 and at most {MAX_MONTHLY_USD}"
        )));
    }
    let mut alerts = request.alert_at_percent.unwrap_or_else(|| DEFAULT_ALERTS.to_vec());
    if alerts.len() > MAX_ALERTS || alerts.iter().any(|p| !(1..=1000).contains(p)) {
        return Err(ApiError::invalid_request(format!(
            "alert_at_percent holds at most {MAX_ALERTS} whole percentages from 1 to 1000"
        )));
    }
    alerts.sort_unstable();
    alerts.dedup();
    let budget = Budget {
        monthly_usd: request.monthly_usd,
        alert_at_percent: alerts,
        on_exceed: request.on_exceed.unwrap_or(OnExceed::StopModelCalls),
        updated_at: crate::model::now_rfc3339(),
    };
    let store = call.app.store()?;
    store.put_budget(call.tenant_id, &budget).await?;
    let month = month_of(chrono::Utc::now());
    let spend = store.month_spend(call.tenant_id, &month).await?;
    Ok(Reply::ok(view(Some(&budget), &month, &spend)))
}

/// GET /v1/budget: the budget (null fields when none is set) and this month's spend so far:
/// settled, reserved by calls in flight, and what remains.
pub async fn get(call: &Call<'_>) -> Result<Reply, ApiError> {
    let store = call.app.store()?;
    let budget = store.get_budget(call.tenant_id).await?;
    let month = month_of(chrono::Utc::now());
    let spend = store.month_spend(call.tenant_id, &month).await?;
    Ok(Reply::ok(view(budget.as_ref(), &month, &spend)))
}

fn view(budget: Option<&Budget>, month: &str, spend: &MonthSpend) -> BudgetView {
    let usd = |nano: u64| nano as f64 / 1e9;
    let mut alerts_sent = spend.alerts_sent.clone();
    alerts_sent.sort_unstable();
    BudgetView {
        monthly_usd: budget.map(|b| b.monthly_usd),
        alert_at_percent: budget.map(|b| b.alert_at_percent.clone()).unwrap_or_default(),
        on_exceed: budget.map(|b| b.on_exceed),
        updated_at: budget.map(|b| b.updated_at.clone()),
        month: month.to_string(),
        spent_usd: usd(spend.spent_nano),
        reserved_usd: usd(spend.reserved_nano()),
        remaining_usd: budget.map(|b| usd(b.limit_nano().saturating_sub(spend.committed_nano))),
        alerts_sent,
    }
}
