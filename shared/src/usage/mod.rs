//! Usage counters: what each tenant's finished executions spent, per UTC day, in total, by
//! workflow and by model.
//!
//! Counting adds no write to a run. An execution's final write keeps what its steps spent
//! (`ExecutionUsage`, the `usage` attribute); the table's change stream delivers that write to
//! the `count-usage` function (a Lambda event source on DynamoDB Streams, filtered to changes
//! into a final status), which adds a whole batch of finishes to the counters at once: one
//! update per (tenant, day) row touched, however many executions the batch holds. So a busy
//! tenant's day row takes one write per batch, not one per execution (no hot item).
//!
//! Nothing counts twice:
//! - A finish is counted on the change *into* a final status; a finish that was already final
//!   (a redelivered message, a second worker) writes nothing, so the stream has nothing.
//! - A redriven execution counts again when it ends again (executions by final status count
//!   ends), but only what it spent since: its redrive keeps what its kept steps spent, and the
//!   next end counts the difference.
//! - A finish delivered again (Lambda retrying a batch, whatever records it then holds) is
//!   recognised: each finish's counter updates go in one transaction with a marker item named
//!   after the finish (its execution and end time), written only if absent. A transaction
//!   whose marker exists is cancelled whole, and its finishes are then counted one by one,
//!   skipping those already counted.

use crate::error::StoreError;
use crate::model::{ExecutionStatus, ExecutionUsage};
use crate::store::Page;
use async_trait::async_trait;
use serde::Serialize;
use std::collections::BTreeMap;

/// NodeAI's own AWS cost of one execution, nano-dollars: the 10-node workflow of
/// `scripts/bench aws_requests` (docs/benchmarks.md: $10.46 per million with Lambda, DynamoDB,
/// SQS and Secrets Manager, plus $2.50 of sweep-index writes), rounded up with its share of
/// the usage counting itself. An estimate, not a bill: a run's real cost grows with its
/// side-effecting nodes, values kept in S3, events and waits.
pub const AWS_COST_PER_EXECUTION_NANO_USD: u64 = 13_000;

/// Which rows a listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    /// One row per day: every counter.
    Day,
    /// One row per day and workflow: every counter.
    Workflow,
    /// One row per day and model: the model counters (calls, tokens, cost).
    Model,
}

impl UsageGroup {
    pub fn parse(text: &str) -> Option<UsageGroup> {
        match text {
            "day" => Some(UsageGroup::Day),
            "workflow" => Some(UsageGroup::Workflow),
            "model" => Some(UsageGroup::Model),
            _ => None,
        }
    }
}

/// The counters of one row. Costs in nano-dollars (USD x 10^9), so sums are exact integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageCounters {
    pub executions_succeeded: u64,
    pub executions_failed: u64,
    pub executions_cancelled: u64,
    pub executions_timed_out: u64,
    pub node_runs: u64,
    /// Steps that called a model.
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Priced model calls' cost.
    pub model_cost_nano_usd: u64,
    /// Model calls with no known price (their cost is not in `model_cost_nano_usd`).
    pub unpriced_calls: u64,
    /// NodeAI's AWS cost estimate (`AWS_COST_PER_EXECUTION_NANO_USD` per finish).
    pub aws_cost_nano_usd: u64,
}

/// Counter names as stored, with their values: one place for both stores.
impl UsageCounters {
    pub const NAMES: [&'static str; 12] = [
        "executions_succeeded",
        "executions_failed",
        "executions_cancelled",
        "executions_timed_out",
        "node_runs",
        "llm_calls",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "model_cost_nano_usd",
        "unpriced_calls",
        "aws_cost_nano_usd",
    ];

    pub fn values(&self) -> [u64; 12] {
        [
            self.executions_succeeded,
            self.executions_failed,
            self.executions_cancelled,
            self.executions_timed_out,
            self.node_runs,
            self.llm_calls,
            self.input_tokens,
            self.output_tokens,
            self.cached_input_tokens,
            self.model_cost_nano_usd,
            self.unpriced_calls,
            self.aws_cost_nano_usd,
        ]
    }

    /// From values in `NAMES` order.
    pub fn from_values(v: [u64; 12]) -> UsageCounters {
        UsageCounters {
            executions_succeeded: v[0],
            executions_failed: v[1],
            executions_cancelled: v[2],
            executions_timed_out: v[3],
            node_runs: v[4],
            llm_calls: v[5],
            input_tokens: v[6],
            output_tokens: v[7],
            cached_input_tokens: v[8],
            model_cost_nano_usd: v[9],
            unpriced_calls: v[10],
            aws_cost_nano_usd: v[11],
        }
    }

    pub fn plus(&self, more: &UsageCounters) -> UsageCounters {
        let (a, b) = (self.values(), more.values());
        UsageCounters::from_values(std::array::from_fn(|i| a[i] + b[i]))
    }

    pub fn executions(&self) -> u64 {
        self.executions_succeeded + self.executions_failed + self.executions_cancelled + self.executions_timed_out
    }
}

/// One counter row: a tenant's day, in total or for one workflow or model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub tenant_id: String,
    /// The UTC day, YYYY-MM-DD.
    pub day: String,
    pub group: UsageGroup,
    /// The workflow id or the model name; None for a day row.
    pub name: Option<String>,
    pub counters: UsageCounters,
}

/// Finish markers and counter rows one `add_usage` may write (DynamoDB's 100 per transaction).
pub const MAX_TRANSACTION_ITEMS: usize = 100;

/// One execution's change into a final status, as the change stream shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedExecution {
    pub tenant_id: String,
    pub execution_id: String,
    pub workflow_id: String,
    pub status: ExecutionStatus,
    /// RFC 3339, UTC: its day is the counters' day.
    pub finished_at: String,
    /// What it spent since it was last counted (everything, unless it was redriven).
    pub spent: ExecutionUsage,
}

impl FinishedExecution {
    /// The finish's identity: its execution and end time (a redriven execution's next end is
    /// another finish).
    pub fn finish_id(&self) -> String {
        format!("{}#{}#{}", self.tenant_id, self.execution_id, self.finished_at)
    }
}

/// The counter store: rows added once per batch, read by range.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds every row's counters (one update per row) and marks every finish in `finishes`
    /// (`FinishedExecution::finish_id`) as counted, in one transaction: false (nothing written)
    /// when one of them was counted already. At most `MAX_TRANSACTION_ITEMS` finishes and rows
    /// together.
    async fn add_usage(&self, finishes: &[String], rows: &[UsageRow]) -> Result<bool, StoreError>;
    /// A tenant's rows of `group` from day `from` to day `to` (YYYY-MM-DD, both included), in
    /// day order (then by name), after the row key `after`, at most `limit`. A Query, never a
    /// Scan. `next_after` continues the listing.
    async fn list_usage(
        &self,
        tenant_id: &str,
        group: UsageGroup,
        from: &str,
        to: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<UsageRow>, StoreError>;
}

/// A row's position in its listing: day, then name.
pub fn row_key(row: &UsageRow) -> String {
    match &row.name {
        Some(name) => format!("{}#{name}", row.day),
        None => row.day.clone(),
    }
}

/// A counter row's identity: (tenant, group, day, name).
type RowKey = (String, UsageGroup, String, Option<String>);

/// The rows one finish adds to (its day, its workflow's day, each model's day), with what it adds.
fn rows_of(finish: &FinishedExecution) -> Vec<(RowKey, UsageCounters)> {
    let day = finish.finished_at.get(..10).unwrap_or("1970-01-01").to_string();
    let models = finish.spent.models.values();
    let model_total = models.fold(UsageCounters::default(), |sum, m| sum.plus(&model_counters(m)));
    let status = |s: ExecutionStatus| u64::from(finish.status == s);
    let execution = UsageCounters {
        executions_succeeded: status(ExecutionStatus::Succeeded),
        executions_failed: status(ExecutionStatus::Failed),
        executions_cancelled: status(ExecutionStatus::Cancelled),
        executions_timed_out: status(ExecutionStatus::TimedOut),
        node_runs: finish.spent.node_runs,
        aws_cost_nano_usd: AWS_COST_PER_EXECUTION_NANO_USD,
        ..model_total
    };
    let key = |group, name: Option<String>| (finish.tenant_id.clone(), group, day.clone(), name);
    let mut rows = vec![
        (key(UsageGroup::Day, None), execution),
        (key(UsageGroup::Workflow, Some(finish.workflow_id.clone())), execution),
    ];
    for (model, used) in &finish.spent.models {
        rows.push((key(UsageGroup::Model, Some(model.clone())), model_counters(used)));
    }
    rows
}

/// The counter rows a batch of finishes adds up to, sorted by (tenant, group, day, name).
pub fn aggregate(finishes: &[FinishedExecution]) -> Vec<UsageRow> {
    let mut rows: BTreeMap<RowKey, UsageCounters> = BTreeMap::new();
    for (key, counters) in finishes.iter().flat_map(rows_of) {
        let row = rows.entry(key).or_default();
        *row = row.plus(&counters);
    }
    rows.into_iter()
        .map(|((tenant_id, group, day, name), counters)| UsageRow { tenant_id, day, group, name, counters })
        .collect()
}

fn model_counters(used: &crate::model::ModelUsage) -> UsageCounters {
    UsageCounters {
        llm_calls: used.calls,
        input_tokens: used.input_tokens,
        output_tokens: used.output_tokens,
        cached_input_tokens: used.cached_input_tokens,
        model_cost_nano_usd: used.cost_nano_usd,
        unpriced_calls: used.unpriced_calls,
        ..UsageCounters::default()
    }
}

/// Counts a stream batch's finishes: as few transactions as fit (each finish marked with its
/// rows), and, when one holds a finish already counted, its finishes one by one. Returns how
/// many finishes it counted (the others were counted before).
pub async fn count_finishes(store: &dyn UsageStore, finishes: &[FinishedExecution]) -> Result<usize, StoreError> {
    let mut counted = 0;
    for chunk in chunks(finishes) {
        let ids: Vec<String> = chunk.iter().map(FinishedExecution::finish_id).collect();
        if store.add_usage(&ids, &aggregate(chunk)).await? {
            counted += chunk.len();
            continue;
        }
        for finish in chunk {
            let one = std::slice::from_ref(finish);
            if store.add_usage(&[finish.finish_id()], &aggregate(one)).await? {
                counted += 1;
            }
        }
    }
    Ok(counted)
}

/// Consecutive finishes whose markers and rows fit one transaction. The rows a chunk touches
/// grow as finishes join it, so each finish's rows are looked at once.
fn chunks(finishes: &[FinishedExecution]) -> Vec<&[FinishedExecution]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < finishes.len() {
        let mut rows: std::collections::BTreeSet<RowKey> =
            rows_of(&finishes[start]).into_iter().map(|(k, _)| k).collect();
        let mut end = start + 1;
        while end < finishes.len() {
            // A finish that does not fit ends the chunk: the rows it added are not used again.
            rows.extend(rows_of(&finishes[end]).into_iter().map(|(k, _)| k));
            if (end + 1 - start) + rows.len() > MAX_TRANSACTION_ITEMS {
                break;
            }
            end += 1;
        }
        out.push(&finishes[start..end]);
        start = end;
    }
    out
}

#[cfg(test)]
mod tests;
