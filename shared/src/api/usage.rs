//! GET /v1/usage (the usage counters, `crate::usage`) and GET /v1/models/prices (the price
//! table, `nodes::prices`).

use super::views::{ModelPriceList, UsageReport, UsageRowView};
use super::{Call, http, paging, truncate};
use crate::api::http::Reply;
use crate::error::ApiError;
use crate::usage::{UsageCounters, UsageGroup, UsageRow};
use chrono::NaiveDate;

/// The longest range one call reads, days (both ends included).
pub const MAX_USAGE_DAYS: i64 = 366;

/// GET /v1/usage?from=YYYY-MM-DD&to=YYYY-MM-DD&group_by=day|workflow|model: the totals over
/// the range and one row per day (and workflow or model), paged. From defaults to the first
/// day of this UTC month, to to today.
pub async fn report(call: &Call<'_>) -> Result<Reply, ApiError> {
    let today = chrono::Utc::now().date_naive();
    let day = |name: &str, default: NaiveDate| -> Result<NaiveDate, ApiError> {
        match http::query_param(call.req, name) {
            None => Ok(default),
            Some(raw) => {
                NaiveDate::parse_from_str(&raw, "%Y-%m-%d").ok().filter(|_| raw.len() == 10).ok_or_else(|| {
                    ApiError::invalid_request(format!(
                        "{name} must be a day as YYYY-MM-DD, not {:?}",
                        truncate(&raw, 32)
                    ))
                })
            }
        }
    };
    let from = day("from", today.with_day0(0).unwrap_or(today))?;
    let to = day("to", today)?;
    if to < from {
        return Err(ApiError::invalid_request("to must be the same day as from or later"));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_USAGE_DAYS {
        return Err(ApiError::invalid_request(format!(
            "the range is {days} days; one call reads at most {MAX_USAGE_DAYS} (page through shorter ranges)"
        )));
    }
    let group = match http::query_param(call.req, "group_by") {
        None => UsageGroup::Day,
        Some(raw) => UsageGroup::parse(&raw).ok_or_else(|| {
            ApiError::invalid_request(format!("group_by must be day, workflow or model, not {:?}", truncate(&raw, 32)))
        })?,
    };
    let (from, to) = (from.format("%Y-%m-%d").to_string(), to.format("%Y-%m-%d").to_string());
    let scope = format!("usage|{}|{group:?}|{from}|{to}", call.tenant_id);
    let (limit, after) = paging(call, &scope)?;
    let store = call.app.store()?;
    // The totals come from the day rows: at most 366 small items, one Query page.
    let days_read =
        store.list_usage(call.tenant_id, UsageGroup::Day, &from, &to, None, MAX_USAGE_DAYS as usize).await?;
    let totals = days_read.items.iter().fold(UsageCounters::default(), |sum, row| sum.plus(&row.counters));
    let page = if group == UsageGroup::Day && after.is_none() && limit >= days_read.items.len() {
        crate::store::Page { items: days_read.items, next_after: None }
    } else {
        store.list_usage(call.tenant_id, group, &from, &to, after.as_deref(), limit).await?
    };
    let key = &call.app.config.cursor_signing_key;
    Ok(Reply::ok(UsageReport {
        from,
        to,
        group_by: group,
        totals: UsageRowView::of_totals(&totals),
        items: page.items.iter().map(UsageRowView::of).collect(),
        next_token: page.next_after.map(|after| crate::cursor::encode(key, &scope, &after)),
    }))
}

/// GET /v1/models/prices: the price table llm.chat's costs, usage counters and budgets use,
/// with the deployment's `MODEL_PRICES` applied.
pub async fn prices(call: &Call<'_>) -> Result<Reply, ApiError> {
    let table = crate::nodes::prices::PriceTable::with_configured(call.app.config.model_prices.clone());
    Ok(Reply::ok(ModelPriceList { items: table.entries() }))
}

impl UsageRowView {
    fn of(row: &UsageRow) -> UsageRowView {
        let mut view = UsageRowView::of_totals(&row.counters);
        view.day = Some(row.day.clone());
        match row.group {
            UsageGroup::Day => {}
            UsageGroup::Workflow => view.workflow_id = row.name.clone(),
            UsageGroup::Model => {
                // A model row counts calls: execution counts belong to days and workflows.
                view.model = row.name.clone();
                view.executions = None;
                view.node_runs = None;
                view.aws_cost_usd = None;
            }
        }
        view
    }

    fn of_totals(c: &UsageCounters) -> UsageRowView {
        let usd = |nano: u64| nano as f64 / 1e9;
        UsageRowView {
            day: None,
            workflow_id: None,
            model: None,
            executions: Some(super::views::ExecutionCounts {
                total: c.executions(),
                succeeded: c.executions_succeeded,
                failed: c.executions_failed,
                cancelled: c.executions_cancelled,
                timed_out: c.executions_timed_out,
            }),
            node_runs: Some(c.node_runs),
            llm_calls: c.llm_calls,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            cached_input_tokens: c.cached_input_tokens,
            model_cost_usd: usd(c.model_cost_nano_usd),
            unpriced_calls: c.unpriced_calls,
            aws_cost_usd: Some(usd(c.aws_cost_nano_usd)),
        }
    }
}

use chrono::Datelike;
