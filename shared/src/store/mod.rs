//! Store ports: what the domain needs from persistence. Adapters: `dynamo` (production, and the
//! emulator in tests) and `memory` (domain unit tests). `conformance` holds the one suite both
//! must pass.

use crate::error::StoreError;
use crate::model::{ApiKeyRecord, CredentialRecord, Tenant, VersionRecord, WorkflowDefinition, WorkflowRecord};
use crate::model::{CallbackRecord, ChildBatch, ExecutionRecord, ExecutionStatus, ParentLink, Wait};
use crate::model::{ExecutionUsage, StepError, StepRecord};
use async_trait::async_trait;

// Test support: compiled only for tests and for crates that enable `test-util`.
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod dynamo;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod s3;
pub(crate) mod sdk_error;
pub mod secrets_manager;
pub mod values;

/// One page of a newest-first listing. `next_after` is the sort key to resume after; the API
/// layer wraps it in a signed cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

/// A workflow in a listing: everything but the definition's nodes and edges.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowSummary {
    pub workflow_id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub revision: u64,
    pub latest_version: u32,
    pub deployed_version: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
}

/// A published version in a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionSummary {
    pub version: u32,
    pub name: String,
    pub source_revision: u64,
    pub created_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployOutcome {
    Deployed,
    WorkflowMissing,
    VersionMissing,
}

/// Workflows, their drafts and versions. Every call is scoped by tenant: an id from another
/// tenant is indistinguishable from a missing one.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    /// Creates the workflow; never overwrites (ConditionFailed if the id exists).
    async fn create_workflow(&self, record: &WorkflowRecord) -> Result<(), StoreError>;
    async fn get_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<Option<WorkflowRecord>, StoreError>;
    /// Newest first; `after` resumes a listing; `tag` keeps only workflows carrying it.
    async fn list_workflows(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
        tag: Option<&str>,
    ) -> Result<Page<WorkflowSummary>, StoreError>;
    /// Replaces the draft if the stored revision is `expected_revision`, bumping the revision.
    /// Ok(None) if the workflow does not exist; ConditionFailed if the revision moved.
    async fn replace_draft(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        definition: &WorkflowDefinition,
        expected_revision: u64,
        updated_at: &str,
    ) -> Result<Option<WorkflowRecord>, StoreError>;
    /// Deletes the workflow and its versions; false if it did not exist.
    async fn delete_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<bool, StoreError>;
    /// Writes `version` and moves the workflow's `latest_version` to it, atomically, provided
    /// the workflow is still at `version.source_revision` and `version.version - 1`.
    async fn publish_version(&self, version: &VersionRecord) -> Result<(), StoreError>;
    async fn get_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
    ) -> Result<Option<VersionRecord>, StoreError>;
    /// Newest first, as summaries (a listing never reads whole definitions).
    async fn list_versions(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VersionSummary>, StoreError>;
    async fn set_deployed_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
        updated_at: &str,
    ) -> Result<DeployOutcome, StoreError>;
}

/// Tenants and the hashes of their API keys.
#[async_trait]
pub trait TenantStore: Send + Sync {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError>;
    async fn get_tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError>;
    /// Sets tier and usage key; false if the tenant does not exist.
    async fn update_tenant_plan(
        &self,
        tenant_id: &str,
        tier: &str,
        usage_key_id: &str,
        usage_key_value: &str,
    ) -> Result<bool, StoreError>;
    /// Never overwrites an existing hash.
    async fn put_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// A tenant's key by id (None for another tenant's id).
    async fn find_api_key_by_id(&self, tenant_id: &str, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// A tenant's keys, live, revoked and expired alike, newest first; `after` (a key id)
    /// resumes a listing.
    async fn list_api_keys(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ApiKeyRecord>, StoreError>;
    /// How many of a tenant's keys are live at `now` (not revoked, not expired), counted over
    /// all of them however many were revoked: the limit of `MAX_KEYS_PER_TENANT` live keys
    /// holds on this.
    async fn count_live_api_keys(&self, tenant_id: &str, now: &str) -> Result<usize, StoreError>;
    /// Marks the key revoked at `at` (keeps an earlier revocation).
    async fn revoke_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError>;
    /// Moves the key's expiry to `at` unless it already expires earlier.
    async fn expire_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError>;
    /// Records use (coarse: callers write at most about once an hour per key).
    async fn touch_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError>;
}

/// Provider credential metadata (the secret values live in a `SecretStore`).
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Creates or replaces; keeps the original `created_at`.
    async fn put_credential(&self, record: &CredentialRecord) -> Result<CredentialRecord, StoreError>;
    async fn get_credential(&self, tenant_id: &str, name: &str) -> Result<Option<CredentialRecord>, StoreError>;
    /// By name, in order; `after` resumes a listing.
    async fn list_credentials(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CredentialRecord>, StoreError>;
    async fn delete_credential(&self, tenant_id: &str, name: &str) -> Result<bool, StoreError>;
}

/// Secret values (Secrets Manager in AWS). Names are built by `secrets::secret_name`.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates the secret or stores a new value for it.
    async fn put_secret(&self, name: &str, value: &str) -> Result<(), StoreError>;
    async fn get_secret(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Deletes at once (no recovery window), so the name can be reused. A missing secret is not
    /// an error (Secrets Manager's forced delete does not say whether it existed).
    async fn delete_secret(&self, name: &str) -> Result<(), StoreError>;
}

pub const MAX_KEYS_PER_TENANT: usize = 50;

/// What an Idempotency-Key already stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    New,
    Existing { body_hash: String, execution_id: String },
}

/// How an execution ended, for `ExecutionStore::finish_execution`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionEnd {
    pub status: ExecutionStatus,
    /// The execution's output (Null unless it succeeded); bounded as stored.
    pub output: serde_json::Value,
    pub error: Option<StepError>,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    /// A child execution's parent: the same write counts this end in the parent's child batch
    /// (`succeeded`, or `failed` for any other end), so a child's end is counted exactly once.
    pub child_of: Option<ParentLink>,
    /// What the execution's steps spent: kept on the execution by the same write, where the
    /// usage counters read it from the table's change stream (`crate::usage`).
    pub usage: ExecutionUsage,
}

impl ExecutionEnd {
    /// Ends now.
    pub fn now(status: ExecutionStatus, output: serde_json::Value, error: Option<StepError>) -> Self {
        ExecutionEnd {
            status,
            output,
            error,
            at: crate::model::now_rfc3339(),
            child_of: None,
            usage: ExecutionUsage::default(),
        }
    }
    /// The same end, with what the steps spent.
    pub fn spent(self, usage: ExecutionUsage) -> Self {
        ExecutionEnd { usage, ..self }
    }
    /// The same end, counted in the parent's batch when the execution is a child.
    pub fn counted_for(self, parent: Option<&ParentLink>) -> Self {
        ExecutionEnd { child_of: parent.cloned(), ..self }
    }
    /// Failed now with `error`.
    pub fn failed(error: StepError) -> Self {
        ExecutionEnd::now(ExecutionStatus::Failed, serde_json::Value::Null, Some(error))
    }
}

/// Whose write an execution's end is: every write to an unfinished execution is conditional on
/// its lease, so a worker that lost its lease, or the API while a worker runs it, never
/// overwrites the run in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseGuard<'a> {
    /// The worker holding the lease under this owner id (one per SQS delivery).
    Held(&'a str),
    /// Nobody may hold a live lease at `now` (RFC 3339): the API and a last delivery giving up.
    Free { now: &'a str },
    /// As `Free`, and the execution is still due for the sweeper (`sweep_at` before `now`): a
    /// worker that checkpointed since the sweeper read the index moved it on, and is not failed.
    Stranded { now: &'a str },
}

/// An unfinished execution the sweeper found with no progress (`stranded_executions`).
#[derive(Debug, Clone, PartialEq)]
pub struct StrandedExecution {
    pub tenant_id: String,
    pub execution_id: String,
    pub status: ExecutionStatus,
    /// The execution's timeout, RFC 3339.
    pub deadline_at: String,
    /// Sweeps that found its lease expired (a crashed run), since the last checkpoint (or the
    /// start, or a redrive).
    pub sweep_count: u32,
    /// A worker's lease on it expired (it crashed, or was killed); false for an execution never
    /// claimed or checkpointed (it waits in the queue, perhaps behind a backlog).
    pub lease_expired: bool,
    /// The request that started it, for log correlation of the re-enqueued message.
    pub request_id: String,
}

/// Executions: records, definition snapshots, the worker lease, and lifecycle transitions.
#[async_trait]
pub trait ExecutionStore: Send + Sync {
    /// Creates the execution with its definition snapshot, atomically; never overwrites.
    async fn create_execution(
        &self,
        record: &ExecutionRecord,
        definition: &WorkflowDefinition,
    ) -> Result<(), StoreError>;
    async fn get_execution(&self, tenant_id: &str, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError>;
    async fn get_execution_definition(
        &self,
        tenant_id: &str,
        execution_id: &str,
    ) -> Result<Option<WorkflowDefinition>, StoreError>;
    /// Takes the lease until `until` if nobody holds it, it expired before `now`, or `owner`
    /// already holds it, and marks the execution running (first start time kept): one
    /// conditional write. False if another worker holds it or the execution is final.
    async fn claim_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        until: &str,
        now: &str,
    ) -> Result<bool, StoreError>;
    /// Checkpoint: gives the lease back if `owner` still holds it, and keeps `steps` (results of
    /// pure nodes not recorded one by one) in the same request.
    async fn release_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        steps: &[StepRecord],
    ) -> Result<(), StoreError>;
    /// Records a final status, releases the lease and keeps `steps` (the run's unrecorded pure
    /// and skipped steps) in one request, unless the execution is already final or `guard` does
    /// not hold: false then (nothing written). Removes the execution from the sweep index.
    async fn finish_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        end: ExecutionEnd,
        steps: &[StepRecord],
        guard: LeaseGuard<'_>,
    ) -> Result<bool, StoreError>;
    /// Parks a leased execution: `waiting` with `waits`, the lease released and `steps` kept,
    /// in one request; the sweeper looks at it at `next_sweep_at` (its earliest wake-up plus
    /// `SWEEP_GRACE`: the backstop for a lost timer). False (nothing written) if `owner` no
    /// longer holds the lease.
    async fn park_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        waits: &[Wait],
        steps: &[StepRecord],
        next_sweep_at: &str,
    ) -> Result<bool, StoreError>;
    /// Creates a node's child batch unless one exists; false then (a resumed or redriven parent
    /// finds the batch it started).
    async fn put_child_batch(&self, batch: &ChildBatch) -> Result<bool, StoreError>;
    /// A node's child batch with its counts (strongly consistent).
    async fn get_child_batch(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
    ) -> Result<Option<ChildBatch>, StoreError>;
    /// Redrives a failed (or timed-out, or cancelled) child as `redrive_execution` does and, in
    /// the same transaction, takes its end back out of the batch's `failed` count: it will be
    /// counted again when it ends again. False if the child is not in such a state, or leased.
    #[allow(clippy::too_many_arguments)]
    async fn redrive_child(
        &self,
        tenant_id: &str,
        child_execution_id: &str,
        parent: &ParentLink,
        deadline_at: &str,
        hold: &str,
        hold_until: &str,
        now: &str,
        kept: &ExecutionUsage,
    ) -> Result<bool, StoreError>;
    /// Records that the batch was set up for the parent's redrive `generation`.
    async fn set_batch_generation(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
        generation: u32,
    ) -> Result<(), StoreError>;
    /// A node's child executions in item order, from `from_index`, at most `limit`: one key
    /// range (`model::child_id_prefix`), never a scan.
    async fn list_children(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, StoreError>;
    /// Keeps the waits of a run that checkpoints (the lease holder's, `owner`): the next
    /// invocation finds them begun. False if `owner` no longer holds the lease.
    async fn keep_waits(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        waits: &[Wait],
    ) -> Result<bool, StoreError>;
    /// Stores an approval's callback token under its hash; never overwrites (ConditionFailed).
    /// The item expires (TTL) a day after the token.
    async fn put_callback(&self, record: &CallbackRecord) -> Result<(), StoreError>;
    /// The callback a token's hash names, expired or not (the caller checks `expires_at`).
    async fn find_callback(&self, token_hash: &str) -> Result<Option<CallbackRecord>, StoreError>;
    /// Asks a queued, running or waiting execution to stop before its next node; false if it is
    /// final or does not exist.
    async fn request_cancel(&self, tenant_id: &str, execution_id: &str) -> Result<bool, StoreError>;
    /// Puts a failed or timed-out execution that no worker holds back to queued with a new
    /// deadline: its end (finished_at, output, error) is cleared, `redrive_count` goes up, and
    /// `hold` takes the lease until `hold_until` (so no stale message runs it while its steps are
    /// reset; release it after). `kept` is what the steps the redrive keeps spent: the usage
    /// counters count the next end's spend from there. One conditional write; false if the
    /// execution is not failed or timed out, or a live lease is held on it.
    #[allow(clippy::too_many_arguments)]
    async fn redrive_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        deadline_at: &str,
        hold: &str,
        hold_until: &str,
        now: &str,
        kept: &ExecutionUsage,
    ) -> Result<bool, StoreError>;
    /// Unfinished executions whose `sweep_at` passed before `now` (their lease expired, or they
    /// were queued or checkpointed that long ago with no worker picking them up), oldest first,
    /// at most `limit`: read from the sparse sweep index, never a scan.
    async fn stranded_executions(&self, now: &str, limit: usize) -> Result<Vec<StrandedExecution>, StoreError>;
    /// The sweeper's claim on a stranded execution: if it is still unfinished, unleased at
    /// `now` and due (`sweep_at` before `now`), moves `sweep_at` to `next_sweep_at` and, if
    /// `counted` (its lease had expired: a crash), counts one more sweep. False if a worker took
    /// it or finished it since.
    async fn mark_swept(
        &self,
        tenant_id: &str,
        execution_id: &str,
        next_sweep_at: &str,
        now: &str,
        counted: bool,
    ) -> Result<bool, StoreError>;
    /// Takes one of the tenant's `limit` run slots for the execution until `until` (RFC 3339):
    /// slots that expired before `now` are freed first, and the execution's own slot is renewed
    /// (a second delivery of it takes no second slot). False if all are taken. Slots expire
    /// with the lease they go with, so a crashed worker's slot comes back by itself.
    async fn acquire_run_slot(
        &self,
        tenant_id: &str,
        execution_id: &str,
        until: &str,
        now: &str,
        limit: u32,
    ) -> Result<bool, StoreError>;
    /// Frees the execution's run slot (nothing if it holds none).
    async fn release_run_slot(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError>;
    /// Records why a queued execution waits (shown by GET; None clears it) and when the sweeper
    /// should look at it next (an answered approval whose resume message could not be sent
    /// moves this to now). No-op on a final execution.
    async fn set_waiting(
        &self,
        tenant_id: &str,
        execution_id: &str,
        reason: Option<&str>,
        next_sweep_at: &str,
    ) -> Result<(), StoreError>;
    /// Claims an Idempotency-Key for 24 h: `New` if it was free (or expired), else what it
    /// already names. One conditional write.
    async fn claim_idempotency_key(
        &self,
        tenant_id: &str,
        key_hash: &str,
        body_hash: &str,
        execution_id: &str,
        expires_at: &str,
        now: &str,
    ) -> Result<IdempotencyClaim, StoreError>;
    /// A workflow's executions (or, with no workflow, all the tenant's: children included),
    /// newest first; `filter` keeps only those of a status and/or a trigger. Queries, never a
    /// scan (the filter applies to what the query reads).
    async fn list_executions(
        &self,
        tenant_id: &str,
        workflow_id: Option<&str>,
        filter: &ExecutionFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ExecutionRecord>, StoreError>;
}

/// What an execution listing keeps: a status, the trigger that started it, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub status: Option<ExecutionStatus>,
    pub trigger_id: Option<String>,
}

/// The durable per-node results of executions.
#[async_trait]
pub trait StepStore: Send + Sync {
    /// Every step of the execution: those recorded one by one and those kept in bulk by a
    /// checkpoint or the finish (one per node; a step recorded alone wins).
    async fn load_steps(&self, tenant_id: &str, execution_id: &str) -> Result<Vec<StepRecord>, StoreError>;
    /// Writes a final step unless one is already recorded for that node (ConditionFailed then):
    /// a succeeded node's result is never replaced, so it is never paid for twice.
    async fn record_step(&self, tenant_id: &str, execution_id: &str, step: &StepRecord) -> Result<(), StoreError>;
    /// Before a redrive: forgets every step that did not succeed, and the steps kept in bulk
    /// (pure nodes, recomputed at no cost). Succeeded side-effecting nodes keep their records.
    async fn reset_steps_for_redrive(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError>;
}

/// Readiness: can the store be reached right now?
#[async_trait]
pub trait HealthProbe: Send + Sync {
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Everything a route needs from the table, as one object.
/// Where large values live (S3; `model::values` says which and under what key). Values are
/// JSON bytes; the store encrypts at rest and expires them with the execution's retention.
#[async_trait]
pub trait ValueStore: Send + Sync {
    async fn put_value(&self, key: &str, json: Vec<u8>) -> Result<(), StoreError>;
    /// The value's JSON bytes; None when it does not exist (expired, or never written).
    async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// A URL that reads the value without other credentials until `expires_in` has passed
    /// (an S3 presigned GET), for values too large for a Lambda response (6 MB).
    async fn value_url(&self, key: &str, expires_in: std::time::Duration) -> Result<String, StoreError>;
}

pub trait Store:
    WorkflowStore
    + TenantStore
    + CredentialStore
    + ExecutionStore
    + StepStore
    + ValueStore
    + HealthProbe
    + crate::triggers::TriggerStore
    + crate::events::EventStore
    + crate::usage::UsageStore
    + crate::budgets::BudgetStore
    + crate::assistant::AssistantStore
{
}
impl<
    T: WorkflowStore
        + TenantStore
        + CredentialStore
        + ExecutionStore
        + StepStore
        + ValueStore
        + HealthProbe
        + crate::triggers::TriggerStore
        + crate::events::EventStore
        + crate::usage::UsageStore
        + crate::budgets::BudgetStore
        + crate::assistant::AssistantStore,
> Store for T
{
}

/// The sort key a version listing resumes after.
pub fn version_sort_key(version: u32) -> String {
    format!("{version:010}")
}

/// One step per node: a step recorded alone (side-effecting nodes, conditional write) wins over
/// one kept in bulk; among bulk copies (a pure node recomputed after a crash), the last kept.
pub fn merge_steps(alone: Vec<StepRecord>, bulk: Vec<StepRecord>) -> Vec<StepRecord> {
    let mut by_node: std::collections::BTreeMap<String, StepRecord> = std::collections::BTreeMap::new();
    for step in bulk {
        by_node.insert(step.node_id.clone(), step);
    }
    for step in alone {
        by_node.insert(step.node_id.clone(), step);
    }
    by_node.into_values().collect()
}
