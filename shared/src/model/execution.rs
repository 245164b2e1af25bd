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
    /// A child execution's parent (flow.subworkflow, flow.map): where it reports its end.
    pub parent: Option<ParentLink>,
    /// How many parents above it (0 for an execution started through the API).
    pub depth: u32,
    /// The trigger that started it (a webhook or a schedule); None when a client started it.
    pub trigger_id: Option<String>,
}

/// The deepest a child execution may be (a parent's child's child... counts 1, 2, ...): a
/// cycle of workflows calling each other ends here at run time.
pub const MAX_CHILD_DEPTH: u32 = 5;

/// The most items one `flow.map` runs.
pub const MAX_MAP_ITEMS: usize = 10_000;

/// Where a child execution reports: its parent, the parent's node, and its item's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLink {
    pub execution_id: String,
    pub node_id: String,
    pub index: u32,
}

/// Crockford's base32, as ULIDs use it.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

fn crockford(mut value: u64, chars: usize) -> String {
    let mut out = vec![b'0'; chars];
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[(value & 31) as usize];
        value >>= 5;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The first 16 characters of every child id of one parent's node: the parent's timestamp
/// (10) and 6 characters of a hash of parent and node. Children of a node are one key range.
pub fn child_id_prefix(parent_execution_id: &str, node_id: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(format!("{parent_execution_id}/{node_id}").as_bytes());
    let bits = u64::from_be_bytes([hash[0], hash[1], hash[2], hash[3], hash[4], hash[5], hash[6], hash[7]]) >> 34;
    format!("{}{}", parent_execution_id.get(..10).unwrap_or("0000000000"), crockford(bits, 6))
}

/// A child execution's id, derived from its parent, the parent's node and the item's index, so
/// creating it twice (a redelivery, a crash) finds the same execution. A valid ULID (the
/// parent's time, then 80 bits); children of one node sort by index.
pub fn child_execution_id(parent_execution_id: &str, node_id: &str, index: u32) -> String {
    format!("{}{}", child_id_prefix(parent_execution_id, node_id), crockford(u64::from(index), 10))
}

/// One flow.subworkflow's or flow.map's children, kept beside the parent (not on its item):
/// what to run, how many at once, and how many have ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildBatch {
    pub tenant_id: String,
    pub parent_execution_id: String,
    pub node_id: String,
    pub workflow_id: String,
    pub version: u32,
    /// The children's inputs, in item order: a JSON array, or (over 64 KB) a reference to it in
    /// the value store (`store::values`).
    pub inputs: Value,
    /// How many children (the array's length).
    pub total: u32,
    /// Children running at once: item `i + concurrency` starts when item `i` ends.
    pub concurrency: u32,
    /// Failed children the batch accepts before it fails.
    pub tolerated_failures: u32,
    /// The children's depth (the parent's plus one).
    pub depth: u32,
    /// The parent's request id, carried into the children's log lines.
    pub request_id: String,
    /// How long the children's records are kept after their deadline.
    pub retention_seconds: u64,
    /// Children that ended `succeeded`, and ended otherwise (counted by each child's finish).
    pub succeeded: u32,
    pub failed: u32,
    /// The parent's `redrive_count` the batch was last set up for: a redriven parent redrives
    /// the failed children once, and only those.
    pub generation: u32,
}

impl ChildBatch {
    /// Every child has ended.
    pub fn complete(&self) -> bool {
        self.succeeded + self.failed >= self.total
    }
    /// More children failed than it tolerates: the batch has failed (children still running end
    /// on their own; no more start).
    pub fn failed_beyond_tolerance(&self) -> bool {
        self.failed > self.tolerated_failures
    }
}

/// What a parked node waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// `flow.wait`: a point in time.
    Timer,
    /// `flow.approval`: a callback with a body (a person, or another system).
    Approval,
    /// `flow.subworkflow`, `flow.map`: child executions.
    Children,
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
            parent: None,
            depth: 0,
            trigger_id: None,
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
    /// The model that billed `usage` (llm.chat's `model`, as sent); None for nodes that call none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Tokens a model call used. `input_tokens` counts every input token, the cached ones too;
/// the cache counts say how many of them the provider billed at its cache prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache (OpenAI `cached_tokens`, Anthropic
    /// `cache_read_input_tokens`), billed at the cached-input price.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache (Anthropic `cache_creation_input_tokens`),
    /// billed at the cache-write price.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_input_tokens: u64,
}

impl TokenUsage {
    /// Input and output counts alone (no cache).
    pub fn new(input_tokens: u64, output_tokens: u64) -> TokenUsage {
        TokenUsage { input_tokens, output_tokens, ..TokenUsage::default() }
    }
    /// Both calls' tokens.
    pub fn plus(self, more: TokenUsage) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input_tokens + more.input_tokens,
            output_tokens: self.output_tokens + more.output_tokens,
            cached_input_tokens: self.cached_input_tokens + more.cached_input_tokens,
            cache_write_input_tokens: self.cache_write_input_tokens + more.cache_write_input_tokens,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Whole nano-dollars: costs and their sums stay readable (no 0.30000000000000004).
pub fn round_usd(dollars: f64) -> f64 {
    (dollars * 1e9).round() / 1e9
}
