//! Executions and their steps as records: what the store keeps and the API shows.

use super::{new_id, now_rfc3339, rfc3339_in};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Default execution timeout; a workflow may set its own `timeout_seconds`, up to 24 h
/// (`MAX_EXECUTION_TIMEOUT`), or 30 days when it has a node that waits
/// (`MAX_WAITING_EXECUTION_TIMEOUT`).
pub const DEFAULT_EXECUTION_TIMEOUT: Duration = Duration::from_secs(15 * 60);
pub const MAX_EXECUTION_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
pub const MAX_WAITING_EXECUTION_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long an execution's records are kept unless `EXECUTION_RETENTION_DAYS` says otherwise.
pub const DEFAULT_EXECUTION_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// A redrive's new deadline must fall this long before the records expire, so no step it
/// relies on is deleted while it runs (a deleted succeeded step would be run, and paid for,
/// again). Retention counts from the deadline, so a redrive within `retention - REDRIVE_MARGIN`
/// of the first deadline is always allowed.
pub const REDRIVE_MARGIN: Duration = Duration::from_secs(24 * 3600);

/// How long an unfinished execution may go without a worker holding it (queued, checkpointed,
/// or waiting for a tenant slot) before the sweeper looks at it; a leased one is looked at when
/// its lease expires.
pub const SWEEP_GRACE: Duration = Duration::from_secs(5 * 60);

/// Sweeps without a checkpoint after which the sweeper fails an execution (`WORKER_FAILED`)
/// instead of enqueueing it again: a run that kills its worker (out of memory, a hard timeout)
/// is tried this many more times, not forever.
pub const MAX_SWEEPS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Queued,
    Running,
    /// Parked: a node waits for time, a person or a callback; no worker holds it.
    Waiting,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl ExecutionStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, ExecutionStatus::Queued | ExecutionStatus::Running | ExecutionStatus::Waiting)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Waiting => "waiting",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::TimedOut => "timed_out",
        }
    }
    pub fn parse(text: &str) -> Option<ExecutionStatus> {
        serde_json::from_value(Value::String(text.to_string())).ok()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub tenant_id: String,
    pub execution_id: String,
    pub workflow_id: String,
    /// None: the draft at start time (its definition is snapshotted with the execution).
    pub version: Option<u32>,
    pub status: ExecutionStatus,
    pub input: Value,
    pub output: Value,
    pub error: Option<StepError>,
    pub request_id: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// When the execution times out (created_at + the workflow's execution timeout).
    pub deadline_at: String,
    pub cancel_requested: bool,
    /// How many times the execution was redriven after failing or timing out.
    pub redrive_count: u32,
    /// When its records expire (created_at + the retention); DynamoDB's TTL deletes them after.
    /// None for records written before retention existed: they are kept.
    pub expires_at: Option<String>,
    /// Why a queued execution is not running yet (its tenant's limit of running executions);
    /// None once a worker runs it.
    pub waiting_reason: Option<String>,
    /// What a parked execution waits on, one entry per parked node (kept while it runs again,
    /// so a resumed run knows when each wait began).
    pub waits: Vec<Wait>,
}

/// What a parked node waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// `flow.wait`: a point in time.
    Timer,
    /// `flow.approval`: a callback with a body (a person, or another system).
    Approval,
}

/// One parked node's wait, kept on the execution while it is parked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wait {
    pub node_id: String,
    pub kind: WaitKind,
    /// When the wait began, RFC 3339.
    pub since: String,
    /// When it ends: the timer's time, or the approval's expiry (None: at the execution's
    /// deadline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The approval's callback token: the credential of `POST /v1/callbacks/{token}`, shown
    /// to the tenant as a URL (the token's hash is its lookup key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_token: Option<String>,
}

impl Wait {
    /// When the worker must look at the execution again for this wait: its end, or the
    /// execution's deadline, whichever is first (RFC 3339 texts compare as times).
    pub fn wake_at<'a>(&'a self, deadline_at: &'a str) -> &'a str {
        match self.until.as_deref() {
            Some(until) if until < deadline_at => until,
            _ => deadline_at,
        }
    }
}

/// Where an approval's answer is posted: `<public API URL>/v1/callbacks/<token>`, or the path
/// alone when the public URL is not configured.
pub fn callback_url(public_api_url: Option<&str>, token: &str) -> String {
    format!("{}/v1/callbacks/{token}", public_api_url.unwrap_or_default())
}

/// An approval's callback token as stored: found by the token's SHA-256, never by the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackRecord {
    pub token_hash: String,
    pub tenant_id: String,
    pub execution_id: String,
    pub node_id: String,
    /// After this (RFC 3339) the token answers 404.
    pub expires_at: String,
}

impl ExecutionRecord {
    /// A new execution waiting for a worker.
    pub fn queued(
        tenant_id: &str,
        workflow_id: &str,
        version: Option<u32>,
        input: Value,
        request_id: &str,
        timeout: Duration,
    ) -> ExecutionRecord {
        ExecutionRecord {
            tenant_id: tenant_id.to_string(),
            execution_id: new_id(),
            workflow_id: workflow_id.to_string(),
            version,
            status: ExecutionStatus::Queued,
            input,
            output: Value::Null,
            error: None,
            request_id: request_id.to_string(),
            created_at: now_rfc3339(),
            started_at: None,
            finished_at: None,
            deadline_at: rfc3339_in(timeout.as_secs() as i64),
            cancel_requested: false,
            redrive_count: 0,
            expires_at: Some(rfc3339_in(DEFAULT_EXECUTION_RETENTION.as_secs() as i64)),
            waiting_reason: None,
            waits: Vec::new(),
        }
    }

    /// Past its retention: DynamoDB's TTL deletes its items some time after (in no set order),
    /// so it is treated as gone already.
    pub fn is_expired(&self) -> bool {
        self.expires_at.as_deref().is_some_and(|expiry| now_rfc3339().as_str() >= expiry)
    }

    /// The same execution with its records kept for `retention` after its deadline: an
    /// execution that waits (up to 30 days) keeps its records as long after it as one that
    /// does not.
    pub fn retained_for(self, retention: Duration) -> ExecutionRecord {
        let deadline = chrono::DateTime::parse_from_rfc3339(&self.deadline_at)
            .map(|at| at.with_timezone(&chrono::Utc))
            .unwrap_or_else(|_| chrono::Utc::now());
        let expiry = deadline + chrono::Duration::from_std(retention).unwrap_or_default();
        ExecutionRecord { expires_at: Some(expiry.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)), ..self }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

impl StepStatus {
    /// The name the API and the store use.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepError {
    pub code: String,
    pub message: String,
}

/// One node's durable result within one execution.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub node_id: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub output: Value,
    pub error: Option<StepError>,
    /// What the node was called with, rendered (secrets redacted); null when it has none.
    #[serde(default)]
    pub input: Value,
    #[serde(default)]
    pub usage: Option<TokenUsage>,
    /// None when the node used no priced model (unknown model: None, never 0).
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// Tokens a model call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// Whole nano-dollars: costs and their sums stay readable (no 0.30000000000000004).
pub fn round_usd(dollars: f64) -> f64 {
    (dollars * 1e9).round() / 1e9
}
