//! Budgets: a tenant's monthly model spend limit, enforced before the money is spent.
//!
//! Before each `llm.chat` call the worker **reserves** the call's worst case (`worst_case`: its
//! rendered prompt with every byte counted as a token, which no tokenizer exceeds, plus its
//! `max_tokens`, at the model's price) against the tenant's month: one conditional update of
//! the month's `committed` spend (settled + reserved), which succeeds only while it stays
//! within the limit. DynamoDB serialises writes to an item, so concurrent executions cannot
//! overspend together: of two reservations that do not both fit, exactly one is written. A
//! call whose reservation fails is not made: the node fails `BUDGET_EXCEEDED` (its `on_error`
//! applies). After the call the reservation is **settled** to what the call cost (the unspent
//! part returns to the budget), whatever the outcome.
//!
//! An execution's own limit (`max_cost_usd` in the definition) is checked the same way in the
//! run itself (`engine::RunSpend`): what its steps cost so far, plus calls in flight, plus this
//! call's worst case.
//!
//! A model with no known price cannot be reserved: under a budget or a `max_cost_usd`, its call
//! is refused (`MODEL_UNPRICED`); give it a price with `MODEL_PRICES`.

use crate::error::StoreError;
use crate::model::nano_usd;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Output tokens reserved for a call that sets no `max_tokens` (OpenAI-compatible calls may
/// omit it): a call that answers more settles above its reservation.
pub const DEFAULT_RESERVED_OUTPUT_TOKENS: u64 = 4096;

/// The alert thresholds when a budget names none.
pub const DEFAULT_ALERTS: [u32; 3] = [50, 80, 100];

/// What happens once the month's spend reaches the budget. Either way no model call that
/// would cross it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExceed {
    /// New executions are refused (402 `BUDGET_EXCEEDED`) until the month turns or the budget
    /// is raised; runs already going on continue (their model calls are still refused).
    BlockNewRuns,
    /// Model calls are refused; executions still start and their other nodes run.
    StopModelCalls,
}

/// A tenant's monthly budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// US dollars per UTC calendar month, model calls only.
    pub monthly_usd: f64,
    /// Percentages of the budget that raise an alert once each per month (1 to 1000, sorted).
    pub alert_at_percent: Vec<u32>,
    pub on_exceed: OnExceed,
    pub updated_at: String,
}

impl Budget {
    pub fn limit_nano(&self) -> u64 {
        nano_usd(self.monthly_usd)
    }
}

/// A tenant's spend in one month, nano-dollars.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthSpend {
    /// What settled calls cost.
    pub spent_nano: u64,
    /// Settled plus reserved by calls in flight.
    pub committed_nano: u64,
    /// Alert thresholds already announced this month.
    pub alerts_sent: Vec<u32>,
}

impl MonthSpend {
    pub fn reserved_nano(&self) -> u64 {
        self.committed_nano.saturating_sub(self.spent_nano)
    }
}

/// Budgets and month spend.
#[async_trait]
pub trait BudgetStore: Send + Sync {
    async fn get_budget(&self, tenant_id: &str) -> Result<Option<Budget>, StoreError>;
    async fn put_budget(&self, tenant_id: &str, budget: &Budget) -> Result<(), StoreError>;
    /// The month's spend (`YYYY-MM`); zeros for a month with none.
    async fn month_spend(&self, tenant_id: &str, month: &str) -> Result<MonthSpend, StoreError>;
    /// Adds `amount_nano` to the month's committed spend if the sum stays within `limit_nano`;
    /// false (nothing written) otherwise. Atomic against concurrent reservations.
    async fn reserve(
        &self,
        tenant_id: &str,
        month: &str,
        amount_nano: u64,
        limit_nano: u64,
    ) -> Result<bool, StoreError>;
    /// Replaces a reservation by what the call cost: committed moves by `actual - reserved`,
    /// spent by `actual`. Returns the month as it then is.
    async fn settle(
        &self,
        tenant_id: &str,
        month: &str,
        reserved_nano: u64,
        actual_nano: u64,
    ) -> Result<MonthSpend, StoreError>;
    /// Records that the `percent` alert went out this month: false if it already had.
    async fn mark_alert(&self, tenant_id: &str, month: &str, percent: u32) -> Result<bool, StoreError>;
}

/// The UTC month of an RFC 3339 time or of now: `YYYY-MM`.
pub fn month_of(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m").to_string()
}

/// The worst case of a call, nano-dollars: every prompt byte a token, plus the output tokens
/// it may produce, at the model's price; None for a model with no price.
pub fn worst_case_nano(
    prices: &crate::nodes::prices::PriceTable,
    model: &str,
    prompt_bytes: u64,
    max_output_tokens: Option<u64>,
) -> Option<u64> {
    let usage =
        crate::model::TokenUsage::new(prompt_bytes, max_output_tokens.unwrap_or(DEFAULT_RESERVED_OUTPUT_TOKENS));
    prices.cost_usd(model, &usage).map(nano_usd)
}

/// After a settle: the thresholds the month has now crossed that were not announced yet are
/// announced once each (an EMF metric with the tenant's tier, a log line with the tenant id).
pub async fn announce_alerts(
    store: &dyn crate::store::Store,
    tenant_id: &str,
    month: &str,
    budget: &Budget,
    spend: &MonthSpend,
) -> Result<Vec<u32>, StoreError> {
    let limit = budget.limit_nano().max(1);
    let mut announced = Vec::new();
    let mut tier: Option<String> = None;
    for &percent in &budget.alert_at_percent {
        let reached = spend.spent_nano as u128 * 100 >= limit as u128 * percent as u128;
        if reached && !spend.alerts_sent.contains(&percent) && store.mark_alert(tenant_id, month, percent).await? {
            tracing::warn!(
                tenant_id,
                month,
                percent,
                spent_usd = spend.spent_nano as f64 / 1e9,
                monthly_usd = budget.monthly_usd,
                "budget alert: the month's model spend crossed a threshold"
            );
            // The tier, not the tenant id: a metric dimension per tenant would be unbounded.
            if tier.is_none() {
                let tenant = store.get_tenant(tenant_id).await?;
                tier = Some(tenant.map(|t| t.tier).unwrap_or_else(|| "unknown".into()));
            }
            let tier = tier.clone().unwrap_or_default();
            metrics::counter!(crate::telemetry::metric::BUDGET_ALERTS, "tier" => tier, "percent" => percent.to_string())
                .increment(1);
            announced.push(percent);
        }
    }
    Ok(announced)
}

#[cfg(test)]
mod tests;

/// A model call's reservations (the run's and the tenant's month's), settled once it answered.
/// One dropped unsettled (its node cut off by a timeout or a checkpoint while the call was in
/// flight, when the provider may have billed it) counts as spent at its worst case.
pub struct CallReservation<'a> {
    run: &'a crate::engine::RunSpend,
    amount_nano: u64,
    tenant: Option<TenantReservation>,
    open: bool,
}

impl Drop for CallReservation<'_> {
    fn drop(&mut self) {
        // The run's share stays committed as it is; the month's moves from reserved to spent.
        let (Some(t), true) = (self.tenant.take(), self.open) else { return };
        let amount = self.amount_nano;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            tracing::warn!(tenant_id = %t.tenant_id, reserved_nano = amount, "a cut-off model call counts at its worst case");
            if let Err(e) = t.store.settle(&t.tenant_id, &t.month, amount, amount).await {
                tracing::error!(error = %e, "a cut-off call's reservation was not settled");
            }
        });
    }
}

struct TenantReservation {
    store: std::sync::Arc<dyn crate::store::Store>,
    tenant_id: String,
    month: String,
    budget: Budget,
}

/// Reserves a model call's worst case against `run` (the execution's `max_cost_usd`;
/// `engine::NO_RUN_LIMIT` outside a run) and the tenant's
/// monthly budget, before the call. `prompt_bytes`: the request body's size (a bound on the
/// prompt's tokens). Refuses with `BUDGET_EXCEEDED` when either would be crossed (nothing stays
/// reserved then), `MODEL_UNPRICED` when a limit applies to a model with no price.
pub async fn reserve_call<'a>(
    tenant_id: &str,
    run: &'a crate::engine::RunSpend,
    store: Option<&std::sync::Arc<dyn crate::store::Store>>,
    prices: &crate::nodes::prices::PriceTable,
    model: &str,
    prompt_bytes: u64,
    max_output_tokens: Option<u64>,
) -> Result<CallReservation<'a>, crate::engine::NodeFailure> {
    use crate::engine::NodeFailure;
    use crate::model::StepErrorCode;
    let budget = match store {
        Some(store) => store.get_budget(tenant_id).await.map_err(|e| {
            tracing::warn!(error = %e, "the budget could not be read");
            NodeFailure::retryable(StepErrorCode::BudgetUnavailable, "the budget could not be read")
        })?,
        None => None,
    };
    if budget.is_none() && run.limit_nano().is_none() {
        return Ok(CallReservation { run, amount_nano: 0, tenant: None, open: false });
    }
    let Some(amount_nano) = worst_case_nano(prices, model, prompt_bytes, max_output_tokens) else {
        return Err(NodeFailure::permanent(
            StepErrorCode::ModelUnpriced,
            format!("'{model}' has no price, and a budget applies: give it one with MODEL_PRICES"),
        ));
    };
    let dollars = |nano: u64| nano as f64 / 1e9;
    if !run.reserve(amount_nano) {
        let limit = run.limit_nano().unwrap_or(0);
        return Err(NodeFailure::permanent(
            StepErrorCode::BudgetExceeded,
            format!(
                "this call could cost up to ${:.6}, which would cross the execution's max_cost_usd of ${:.6}",
                dollars(amount_nano),
                dollars(limit)
            ),
        ));
    }
    let mut reservation = CallReservation { run, amount_nano, tenant: None, open: true };
    let (Some(store), Some(budget)) = (store, budget) else { return Ok(reservation) };
    let month = month_of(chrono::Utc::now());
    match store.reserve(tenant_id, &month, amount_nano, budget.limit_nano()).await {
        Ok(true) => {
            reservation.tenant =
                Some(TenantReservation { store: store.clone(), tenant_id: tenant_id.to_string(), month, budget });
            Ok(reservation)
        }
        Ok(false) => {
            reservation.settle(None).await;
            tracing::info!(tenant_id = tenant_id, "a model call was refused: the monthly budget would be crossed");
            Err(NodeFailure::permanent(
                StepErrorCode::BudgetExceeded,
                format!(
                    "this call could cost up to ${:.6}, which would cross the monthly budget of ${:.2}",
                    dollars(amount_nano),
                    budget.monthly_usd
                ),
            ))
        }
        Err(e) => {
            reservation.settle(None).await;
            tracing::warn!(error = %e, "the budget reservation could not be written");
            Err(NodeFailure::retryable(StepErrorCode::BudgetUnavailable, "the budget reservation could not be written"))
        }
    }
}

impl CallReservation<'_> {
    /// Settles to what the call cost (`cost_usd`; None: nothing was billed, or the price is
    /// unknown) and announces budget alerts it crossed. A settle that fails is logged: the
    /// reservation then stays counted this month (the budget errs on the safe side).
    pub async fn settle(mut self, cost_usd: Option<f64>) {
        self.open = false;
        let actual = cost_usd.map(nano_usd).unwrap_or(0);
        self.run.settle(self.amount_nano, actual);
        let Some(t) = self.tenant.take() else { return };
        match t.store.settle(&t.tenant_id, &t.month, self.amount_nano, actual).await {
            Ok(spend) => {
                if let Err(e) = announce_alerts(t.store.as_ref(), &t.tenant_id, &t.month, &t.budget, &spend).await {
                    tracing::warn!(error = %e, "a budget alert could not be recorded");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, reserved_nano = self.amount_nano, "a budget reservation was not settled")
            }
        }
    }
}
