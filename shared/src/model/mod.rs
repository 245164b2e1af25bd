//! The vocabulary every layer shares, with no I/O: the workflow definition a client sends, the
//! records the store keeps (workflows, versions, tenants, keys, credentials, executions and
//! their steps), stored-size limits (`limits`), time and ids. Nothing here imports another
//! module of the crate.

mod codes;
mod execution;
pub mod limits;
mod usage;
pub mod values;

pub use codes::StepErrorCode;
pub use execution::*;
pub use usage::{ExecutionUsage, ModelUsage, UNNAMED_MODEL, nano_usd};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A workflow definition: a DAG of nodes. Unknown fields are refused so a typo never passes
/// silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub edges: Vec<EdgeSpec>,
    /// How long one execution may take, 1 s to 24 h; default 15 min.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Whether runs record events for `GET /v1/executions/{id}/events` (default true); false
    /// for bulk jobs nobody watches: no event writes (the stream then only tells the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<bool>,
    /// The most one execution may spend on model calls, US dollars (0.000001 to 100000): a
    /// call whose worst case would cross it is not made (`BUDGET_EXCEEDED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    #[serde(default = "empty_object")]
    pub config: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub on_error: OnError,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
}

/// What a node's failure does to the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The execution fails.
    #[default]
    Fail,
    /// The error is recorded, the output is null, and the run goes on.
    Continue,
    /// The run follows the node's edges marked `"when": "error"`.
    Branch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// A workflow as stored: the editable draft plus its publishing state. `revision` grows by
/// one on every draft change and is the ETag.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRecord {
    pub tenant_id: String,
    pub workflow_id: String,
    pub definition: WorkflowDefinition,
    pub revision: u64,
    /// Highest published version number; 0 before the first publish.
    pub latest_version: u32,
    pub deployed_version: Option<u32>,
    /// The draft revision that `latest_version` was published from; 0 before the first publish.
    pub published_revision: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl WorkflowRecord {
    /// A new workflow of `tenant_id` (a fresh id): its draft at revision 1, nothing published.
    pub fn new_draft(tenant_id: &str, definition: WorkflowDefinition) -> WorkflowRecord {
        let now = now_rfc3339();
        WorkflowRecord {
            tenant_id: tenant_id.to_string(),
            workflow_id: new_id(),
            definition,
            revision: 1,
            latest_version: 0,
            deployed_version: None,
            published_revision: 0,
            created_at: now.clone(),
            updated_at: now,
        }
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.revision)
    }
}

/// An immutable published version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    pub tenant_id: String,
    pub workflow_id: String,
    pub version: u32,
    pub definition: WorkflowDefinition,
    /// The draft revision it was published from.
    pub source_revision: u64,
    pub created_at: String,
}

/// A tenant: the unit of isolation. Every stored item's key starts with its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    pub tenant_id: String,
    pub name: String,
    /// `free`, `pro` or `enterprise`: which API Gateway usage plan throttles it.
    pub tier: String,
    pub created_at: String,
    /// The tenant's API Gateway API key (id and value): the authorizer returns the value as
    /// `usageIdentifierKey` so the tenant gets its own throttle bucket. None before provisioning.
    pub usage_key_id: Option<String>,
    pub usage_key_value: Option<String>,
}

pub const TIERS: &[&str] = &["free", "pro", "enterprise"];

/// An API key as stored: only its SHA-256 hash, never the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub key_hash: String,
    pub key_id: String,
    pub tenant_id: String,
    pub name: String,
    /// The first characters of the key, for people to recognise it in a list.
    pub display_prefix: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl ApiKeyRecord {
    /// Whether the key may be used at `now` (RFC 3339 as made by `now_rfc3339`, which sorts as text).
    pub fn is_live(&self, now: &str) -> bool {
        self.revoked_at.is_none() && self.expires_at.as_deref().is_none_or(|expiry| expiry > now)
    }
}

/// The current time as RFC 3339 UTC with millisecond precision, the one timestamp format.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An RFC 3339 timestamp from a client, normalised to `now_rfc3339`'s format (UTC, milliseconds),
/// so stored timestamps compare as text.
pub fn normalize_rfc3339(text: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// `now_rfc3339` moved by a number of seconds (negative for the past).
pub fn rfc3339_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A new time-ordered id.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string()
}

/// A provider credential as listed: never its secret value.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialRecord {
    pub tenant_id: String,
    pub name: String,
    pub provider: String,
    pub base_url: Option<String>,
    /// The last 4 characters of the API key, to tell keys apart.
    pub last4: String,
    pub created_at: String,
    pub updated_at: String,
}
