//! In-memory adapter for domain unit tests. Same semantics as the DynamoDB adapter, proven by
//! the conformance suite.

use super::{
    CredentialStore, DeployOutcome, ExecutionEnd, ExecutionStore, HealthProbe, IdempotencyClaim, LeaseGuard, Page,
    SecretStore, StepStore, StrandedExecution, TenantStore, VersionSummary, WorkflowStore, WorkflowSummary,
    version_sort_key,
};
use crate::error::StoreError;
use crate::model::{ApiKeyRecord, CredentialRecord, Tenant, VersionRecord, WorkflowDefinition, WorkflowRecord};
use crate::model::{CallbackRecord, ChildBatch, ExecutionRecord, ExecutionStatus, SWEEP_GRACE, Wait, rfc3339_in};
use crate::model::{StepRecord, StepStatus};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Fault injection for tests: every step read fails as a store outage would.
    step_reads_fail: bool,
    /// (tenant, group, row key) -> usage row.
    usage: BTreeMap<(String, crate::usage::UsageGroup, String), crate::usage::UsageRow>,
    /// Finishes already counted (`FinishedExecution::finish_id`).
    usage_batches: std::collections::BTreeSet<String>,
    /// (tenant, session id) -> assistant session, and its turns.
    assistant: BTreeMap<(String, String), (crate::assistant::AssistantSession, Vec<crate::assistant::AssistantTurn>)>,
    /// tenant -> budget.
    budgets: BTreeMap<String, crate::budgets::Budget>,
    /// (tenant, month) -> spend.
    month_spend: BTreeMap<(String, String), crate::budgets::MonthSpend>,
    /// (tenant, workflow id) -> record; BTreeMap keeps ULID order.
    workflows: BTreeMap<(String, String), WorkflowRecord>,
    /// (tenant, workflow id, version sort key) -> record.
    versions: BTreeMap<(String, String, String), VersionRecord>,
    tenants: BTreeMap<String, Tenant>,
    api_keys: BTreeMap<String, ApiKeyRecord>,
    /// (tenant, credential name) -> metadata.
    credentials: BTreeMap<(String, String), CredentialRecord>,
    secrets: BTreeMap<String, String>,
    /// Value store key -> JSON bytes.
    values: BTreeMap<String, Vec<u8>>,
    /// (tenant, execution, node) -> final step recorded alone.
    steps: BTreeMap<(String, String, String), StepRecord>,
    /// (tenant, execution) -> steps kept in bulk by checkpoints and finishes.
    bulk_steps: BTreeMap<(String, String), Vec<StepRecord>>,
    /// (tenant, execution) -> the execution with its snapshot and lease.
    executions: BTreeMap<(String, String), StoredExecution>,
    /// tenant -> execution -> run slot expiry.
    run_slots: BTreeMap<String, BTreeMap<String, String>>,
    /// token hash -> callback.
    callbacks: BTreeMap<String, CallbackRecord>,
    /// (tenant, parent execution, node) -> child batch.
    batches: BTreeMap<(String, String, String), ChildBatch>,
    /// (tenant, key hash) -> (body hash, execution id, expires_at).
    idempotency: BTreeMap<(String, String), (String, String, String)>,
    /// (tenant, workflow, trigger id) -> trigger.
    triggers: BTreeMap<(String, String, String), crate::triggers::TriggerRecord>,
    /// (tenant, execution, seq) -> an event batch.
    events: BTreeMap<(String, String, u64), crate::events::EventBatch>,
}

struct StoredExecution {
    record: ExecutionRecord,
    definition: WorkflowDefinition,
    /// (owner, expiry)
    lease: Option<(String, String)>,
    /// When the sweeper looks at it (None once final), and its sweeps since the last checkpoint.
    sweep_at: Option<String>,
    sweep_count: u32,
}

impl StoredExecution {
    /// Back to queued with a new deadline, its end cleared, held by `hold` (a redrive).
    fn redrive(&mut self, deadline_at: &str, hold: &str, hold_until: &str) {
        let record = &mut self.record;
        record.status = ExecutionStatus::Queued;
        record.finished_at = None;
        record.output = serde_json::Value::Null;
        record.error = None;
        record.deadline_at = deadline_at.to_string();
        record.redrive_count += 1;
        record.cancel_requested = false;
        record.waits.clear();
        self.lease = Some((hold.to_string(), hold_until.to_string()));
        self.sweep_at = Some(hold_until.to_string());
        self.sweep_count = 0;
    }

    fn lease_allows(&self, guard: LeaseGuard<'_>) -> bool {
        match guard {
            LeaseGuard::Held(owner) => self.lease.as_ref().is_some_and(|(holder, _)| holder == owner),
            LeaseGuard::Free { now } => self.lease.as_ref().is_none_or(|(_, expiry)| expiry.as_str() < now),
            LeaseGuard::Stranded { now } => {
                self.sweep_at.as_deref().is_some_and(|at| at < now) && self.lease_allows(LeaseGuard::Free { now })
            }
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// From now on every step read fails (`Unavailable`), as in a store outage.
    pub fn fail_step_reads(&self) {
        self.lock().step_reads_fail = true;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another test thread panicked; the data is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Newest-first paging over keys sorted ascending: items strictly before `after`.
fn page_desc<T: Clone>(items: Vec<(String, T)>, after: Option<&str>, limit: usize) -> Page<T> {
    let mut chosen: Vec<(String, T)> =
        items.into_iter().rev().filter(|(k, _)| after.is_none_or(|a| k.as_str() < a)).collect();
    let more = chosen.len() > limit;
    chosen.truncate(limit);
    let next_after = if more { chosen.last().map(|(k, _)| k.clone()) } else { None };
    Page { items: chosen.into_iter().map(|(_, v)| v).collect(), next_after }
}

pub fn summarize(record: &WorkflowRecord) -> WorkflowSummary {
    WorkflowSummary {
        workflow_id: record.workflow_id.clone(),
        name: record.definition.name.clone(),
        description: record.definition.description.clone(),
        tags: record.definition.tags.clone(),
        revision: record.revision,
        latest_version: record.latest_version,
        deployed_version: record.deployed_version,
        created_at: record.created_at.clone(),
        updated_at: record.updated_at.clone(),
    }
}

pub fn summarize_version(version: &VersionRecord) -> VersionSummary {
    VersionSummary {
        version: version.version,
        name: version.definition.name.clone(),
        source_revision: version.source_revision,
        created_at: version.created_at.clone(),
    }
}

#[async_trait]
impl WorkflowStore for MemoryStore {
    async fn create_workflow(&self, record: &WorkflowRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let key = (record.tenant_id.clone(), record.workflow_id.clone());
        if inner.workflows.contains_key(&key) {
            return Err(StoreError::ConditionFailed);
        }
        inner.workflows.insert(key, record.clone());
        Ok(())
    }

    async fn get_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        Ok(self.lock().workflows.get(&(tenant_id.to_string(), workflow_id.to_string())).cloned())
    }

    async fn list_workflows(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
        tag: Option<&str>,
    ) -> Result<Page<WorkflowSummary>, StoreError> {
        let inner = self.lock();
        let items = inner
            .workflows
            .iter()
            .filter(|((t, _), r)| t == tenant_id && tag.is_none_or(|tag| r.definition.tags.iter().any(|x| x == tag)))
            .map(|((_, id), r)| (id.clone(), summarize(r)))
            .collect();
        Ok(page_desc(items, after, limit))
    }

    async fn replace_draft(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        definition: &WorkflowDefinition,
        expected_revision: u64,
        updated_at: &str,
    ) -> Result<Option<WorkflowRecord>, StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.workflows.get_mut(&(tenant_id.to_string(), workflow_id.to_string())) else {
            return Ok(None);
        };
        if record.revision != expected_revision {
            return Err(StoreError::ConditionFailed);
        }
        record.definition = definition.clone();
        record.revision += 1;
        record.updated_at = updated_at.to_string();
        Ok(Some(record.clone()))
    }

    async fn delete_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let existed = inner.workflows.remove(&(tenant_id.to_string(), workflow_id.to_string())).is_some();
        inner.versions.retain(|(t, w, _), _| !(t == tenant_id && w == workflow_id));
        Ok(existed)
    }

    async fn publish_version(&self, version: &VersionRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let version_key = (version.tenant_id.clone(), version.workflow_id.clone(), version_sort_key(version.version));
        if inner.versions.contains_key(&version_key) {
            return Err(StoreError::ConditionFailed);
        }
        let Some(record) = inner.workflows.get_mut(&(version.tenant_id.clone(), version.workflow_id.clone())) else {
            return Err(StoreError::ConditionFailed);
        };
        if record.revision != version.source_revision || record.latest_version + 1 != version.version {
            return Err(StoreError::ConditionFailed);
        }
        record.latest_version = version.version;
        record.published_revision = version.source_revision;
        inner.versions.insert(version_key, version.clone());
        Ok(())
    }

    async fn get_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let key = (tenant_id.to_string(), workflow_id.to_string(), version_sort_key(version));
        Ok(self.lock().versions.get(&key).cloned())
    }

    async fn list_versions(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VersionSummary>, StoreError> {
        let inner = self.lock();
        let items = inner
            .versions
            .iter()
            .filter(|((t, w, _), _)| t == tenant_id && w == workflow_id)
            .map(|((_, _, k), v)| (k.clone(), summarize_version(v)))
            .collect();
        Ok(page_desc(items, after, limit))
    }

    async fn set_deployed_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
        updated_at: &str,
    ) -> Result<DeployOutcome, StoreError> {
        let mut inner = self.lock();
        let Some(record) = inner.workflows.get_mut(&(tenant_id.to_string(), workflow_id.to_string())) else {
            return Ok(DeployOutcome::WorkflowMissing);
        };
        if version == 0 || version > record.latest_version {
            return Ok(DeployOutcome::VersionMissing);
        }
        record.deployed_version = Some(version);
        record.updated_at = updated_at.to_string();
        Ok(DeployOutcome::Deployed)
    }
}

#[async_trait]
impl TenantStore for MemoryStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.tenants.contains_key(&tenant.tenant_id) {
            return Err(StoreError::ConditionFailed);
        }
        inner.tenants.insert(tenant.tenant_id.clone(), tenant.clone());
        Ok(())
    }

    async fn get_tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        Ok(self.lock().tenants.get(tenant_id).cloned())
    }

    async fn put_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.api_keys.contains_key(&key.key_hash) {
            return Err(StoreError::ConditionFailed);
        }
        inner.api_keys.insert(key.key_hash.clone(), key.clone());
        Ok(())
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.lock().api_keys.get(key_hash).cloned())
    }

    async fn update_tenant_plan(
        &self,
        tenant_id: &str,
        tier: &str,
        usage_key_id: &str,
        usage_key_value: &str,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(tenant) = inner.tenants.get_mut(tenant_id) else { return Ok(false) };
        tenant.tier = tier.to_string();
        tenant.usage_key_id = Some(usage_key_id.to_string());
        tenant.usage_key_value = Some(usage_key_value.to_string());
        Ok(true)
    }

    async fn find_api_key_by_id(&self, tenant_id: &str, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(self.lock().api_keys.values().find(|k| k.tenant_id == tenant_id && k.key_id == key_id).cloned())
    }

    async fn list_api_keys(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ApiKeyRecord>, StoreError> {
        let mut keys: Vec<(String, ApiKeyRecord)> = self
            .lock()
            .api_keys
            .values()
            .filter(|k| k.tenant_id == tenant_id)
            .map(|k| (k.key_id.clone(), k.clone()))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(page_desc(keys, after, limit))
    }

    async fn count_live_api_keys(&self, tenant_id: &str, now: &str) -> Result<usize, StoreError> {
        Ok(self.lock().api_keys.values().filter(|k| k.tenant_id == tenant_id && k.is_live(now)).count())
    }

    async fn revoke_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        if let Some(key) = self.lock().api_keys.get_mut(key_hash) {
            key.revoked_at.get_or_insert_with(|| at.to_string());
        }
        Ok(())
    }

    async fn expire_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        if let Some(key) = self.lock().api_keys.get_mut(key_hash)
            && key.expires_at.as_deref().is_none_or(|current| current > at)
        {
            key.expires_at = Some(at.to_string());
        }
        Ok(())
    }

    async fn touch_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        if let Some(key) = self.lock().api_keys.get_mut(key_hash) {
            key.last_used_at = Some(at.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl CredentialStore for MemoryStore {
    async fn put_credential(&self, record: &CredentialRecord) -> Result<CredentialRecord, StoreError> {
        let mut inner = self.lock();
        let key = (record.tenant_id.clone(), record.name.clone());
        let mut stored = record.clone();
        if let Some(existing) = inner.credentials.get(&key) {
            stored.created_at = existing.created_at.clone();
        }
        inner.credentials.insert(key, stored.clone());
        Ok(stored)
    }

    async fn get_credential(&self, tenant_id: &str, name: &str) -> Result<Option<CredentialRecord>, StoreError> {
        Ok(self.lock().credentials.get(&(tenant_id.to_string(), name.to_string())).cloned())
    }

    async fn list_credentials(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CredentialRecord>, StoreError> {
        let inner = self.lock();
        let mut items: Vec<CredentialRecord> = inner
            .credentials
            .values()
            .filter(|c| c.tenant_id == tenant_id && after.is_none_or(|a| c.name.as_str() > a))
            .cloned()
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|c| c.name.clone()) } else { None };
        Ok(Page { items, next_after })
    }

    async fn delete_credential(&self, tenant_id: &str, name: &str) -> Result<bool, StoreError> {
        Ok(self.lock().credentials.remove(&(tenant_id.to_string(), name.to_string())).is_some())
    }
}

#[async_trait]
impl SecretStore for MemoryStore {
    async fn put_secret(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.lock().secrets.insert(name.to_string(), value.to_string());
        Ok(())
    }

    async fn get_secret(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().secrets.get(name).cloned())
    }

    async fn delete_secret(&self, name: &str) -> Result<(), StoreError> {
        self.lock().secrets.remove(name);
        Ok(())
    }
}

#[async_trait]
impl HealthProbe for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl StepStore for MemoryStore {
    async fn load_steps(&self, tenant_id: &str, execution_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let inner = self.lock();
        if inner.step_reads_fail {
            return Err(StoreError::Unavailable("throttled".into()));
        }
        let alone: Vec<StepRecord> = inner
            .steps
            .iter()
            .filter(|((t, e, _), _)| t == tenant_id && e == execution_id)
            .map(|(_, step)| step.clone())
            .collect();
        let bulk =
            inner.bulk_steps.get(&(tenant_id.to_string(), execution_id.to_string())).cloned().unwrap_or_default();
        Ok(super::merge_steps(alone, bulk))
    }

    async fn record_step(&self, tenant_id: &str, execution_id: &str, step: &StepRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let key = (tenant_id.to_string(), execution_id.to_string(), step.node_id.clone());
        if inner.steps.contains_key(&key) {
            return Err(StoreError::ConditionFailed);
        }
        inner.steps.insert(key, step.clone());
        Ok(())
    }

    async fn reset_steps_for_redrive(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner
            .steps
            .retain(|(t, e, _), step| !(t == tenant_id && e == execution_id) || step.status == StepStatus::Succeeded);
        inner.bulk_steps.remove(&(tenant_id.to_string(), execution_id.to_string()));
        Ok(())
    }
}

#[async_trait]
impl ExecutionStore for MemoryStore {
    async fn create_execution(
        &self,
        record: &ExecutionRecord,
        definition: &WorkflowDefinition,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let key = (record.tenant_id.clone(), record.execution_id.clone());
        if inner.executions.contains_key(&key) {
            return Err(StoreError::ConditionFailed);
        }
        inner.executions.insert(
            key,
            StoredExecution {
                record: record.clone(),
                definition: definition.clone(),
                lease: None,
                sweep_at: (!record.status.is_final()).then(|| rfc3339_in(SWEEP_GRACE.as_secs() as i64)),
                sweep_count: 0,
            },
        );
        Ok(())
    }

    async fn get_execution(&self, tenant_id: &str, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        Ok(self.lock().executions.get(&(tenant_id.to_string(), execution_id.to_string())).map(|e| e.record.clone()))
    }

    async fn get_execution_definition(
        &self,
        tenant_id: &str,
        execution_id: &str,
    ) -> Result<Option<WorkflowDefinition>, StoreError> {
        Ok(self.lock().executions.get(&(tenant_id.to_string(), execution_id.to_string())).map(|e| e.definition.clone()))
    }

    async fn claim_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        until: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(entry) = inner.executions.get_mut(&(tenant_id.to_string(), execution_id.to_string())) else {
            return Ok(false);
        };
        let free = entry.lease.as_ref().is_none_or(|(holder, expiry)| holder == owner || expiry.as_str() < now);
        if !free || entry.record.status.is_final() {
            return Ok(false);
        }
        entry.lease = Some((owner.to_string(), until.to_string()));
        entry.sweep_at = Some(until.to_string());
        entry.record.waiting_reason = None;
        entry.record.status = ExecutionStatus::Running;
        entry.record.started_at.get_or_insert_with(|| now.to_string());
        Ok(true)
    }

    async fn release_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        steps: &[StepRecord],
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let key = (tenant_id.to_string(), execution_id.to_string());
        if let Some(entry) = inner.executions.get_mut(&key)
            && entry.lease.as_ref().is_some_and(|(holder, _)| holder == owner)
        {
            entry.lease = None;
            entry.sweep_at = Some(rfc3339_in(SWEEP_GRACE.as_secs() as i64));
            entry.sweep_count = 0;
            inner.bulk_steps.entry(key).or_default().extend(steps.iter().cloned());
        }
        Ok(())
    }

    async fn finish_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        end: ExecutionEnd,
        steps: &[StepRecord],
        guard: LeaseGuard<'_>,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let key = (tenant_id.to_string(), execution_id.to_string());
        let Some(entry) = inner.executions.get_mut(&key) else { return Ok(false) };
        if entry.record.status.is_final() || !entry.lease_allows(guard) {
            return Ok(false);
        }
        entry.record.status = end.status;
        entry.record.output = crate::model::limits::bounded_execution_output(end.output);
        entry.record.error = end.error;
        entry.record.finished_at = Some(end.at);
        entry.record.waiting_reason = None;
        entry.record.waits.clear();
        entry.lease = None;
        entry.sweep_at = None;
        inner.bulk_steps.entry(key).or_default().extend(steps.iter().cloned());
        if let Some(parent) = &end.child_of {
            let batch_key = (tenant_id.to_string(), parent.execution_id.clone(), parent.node_id.clone());
            if let Some(batch) = inner.batches.get_mut(&batch_key) {
                if end.status == ExecutionStatus::Succeeded {
                    batch.succeeded += 1;
                } else {
                    batch.failed += 1;
                }
            }
        }
        Ok(true)
    }

    async fn park_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        waits: &[Wait],
        steps: &[StepRecord],
        next_sweep_at: &str,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let key = (tenant_id.to_string(), execution_id.to_string());
        let Some(entry) = inner.executions.get_mut(&key) else { return Ok(false) };
        if entry.record.status != ExecutionStatus::Running || !entry.lease_allows(LeaseGuard::Held(owner)) {
            return Ok(false);
        }
        entry.record.status = ExecutionStatus::Waiting;
        entry.record.waits = waits.to_vec();
        entry.lease = None;
        entry.sweep_at = Some(next_sweep_at.to_string());
        entry.sweep_count = 0;
        inner.bulk_steps.entry(key).or_default().extend(steps.iter().cloned());
        Ok(true)
    }

    async fn put_child_batch(&self, batch: &ChildBatch) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let key = (batch.tenant_id.clone(), batch.parent_execution_id.clone(), batch.node_id.clone());
        if inner.batches.contains_key(&key) {
            return Ok(false);
        }
        inner.batches.insert(key, batch.clone());
        Ok(true)
    }

    async fn redrive_child(
        &self,
        tenant_id: &str,
        child_execution_id: &str,
        parent: &crate::model::ParentLink,
        deadline_at: &str,
        hold: &str,
        hold_until: &str,
        now: &str,
        _kept: &crate::model::ExecutionUsage,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        match inner.executions.get_mut(&(tenant_id.to_string(), child_execution_id.to_string())) {
            Some(entry)
                if matches!(
                    entry.record.status,
                    ExecutionStatus::Failed | ExecutionStatus::TimedOut | ExecutionStatus::Cancelled
                ) && entry.lease_allows(LeaseGuard::Free { now }) =>
            {
                entry.redrive(deadline_at, hold, hold_until);
            }
            _ => return Ok(false),
        }
        let key = (tenant_id.to_string(), parent.execution_id.clone(), parent.node_id.clone());
        if let Some(batch) = inner.batches.get_mut(&key) {
            batch.failed = batch.failed.saturating_sub(1);
        }
        Ok(true)
    }

    async fn set_batch_generation(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
        generation: u32,
    ) -> Result<(), StoreError> {
        let key = (tenant_id.to_string(), parent_execution_id.to_string(), node_id.to_string());
        if let Some(batch) = self.lock().batches.get_mut(&key) {
            batch.generation = generation;
        }
        Ok(())
    }

    async fn get_child_batch(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
    ) -> Result<Option<ChildBatch>, StoreError> {
        let key = (tenant_id.to_string(), parent_execution_id.to_string(), node_id.to_string());
        Ok(self.lock().batches.get(&key).cloned())
    }

    async fn list_children(
        &self,
        tenant_id: &str,
        parent_execution_id: &str,
        node_id: &str,
        from_index: u32,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        let inner = self.lock();
        let mut children: Vec<ExecutionRecord> = inner
            .executions
            .iter()
            .filter(|((t, _), e)| {
                t == tenant_id
                    && e.record.parent.as_ref().is_some_and(|p| {
                        p.execution_id == parent_execution_id && p.node_id == node_id && p.index >= from_index
                    })
            })
            .map(|(_, e)| e.record.clone())
            .collect();
        children.sort_by_key(|c| c.parent.as_ref().map(|p| p.index));
        children.truncate(limit);
        Ok(children)
    }

    async fn keep_waits(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        waits: &[Wait],
    ) -> Result<bool, StoreError> {
        match self.lock().executions.get_mut(&(tenant_id.to_string(), execution_id.to_string())) {
            Some(entry) if entry.lease_allows(LeaseGuard::Held(owner)) => {
                entry.record.waits = waits.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn put_callback(&self, record: &CallbackRecord) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.callbacks.contains_key(&record.token_hash) {
            return Err(StoreError::ConditionFailed);
        }
        inner.callbacks.insert(record.token_hash.clone(), record.clone());
        Ok(())
    }

    async fn find_callback(&self, token_hash: &str) -> Result<Option<CallbackRecord>, StoreError> {
        Ok(self.lock().callbacks.get(token_hash).cloned())
    }

    async fn claim_idempotency_key(
        &self,
        tenant_id: &str,
        key_hash: &str,
        body_hash: &str,
        execution_id: &str,
        expires_at: &str,
        now: &str,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut inner = self.lock();
        let key = (tenant_id.to_string(), key_hash.to_string());
        if let Some((body, id, expiry)) = inner.idempotency.get(&key)
            && expiry.as_str() >= now
        {
            return Ok(IdempotencyClaim::Existing { body_hash: body.clone(), execution_id: id.clone() });
        }
        inner.idempotency.insert(key, (body_hash.to_string(), execution_id.to_string(), expires_at.to_string()));
        Ok(IdempotencyClaim::New)
    }

    async fn list_executions(
        &self,
        tenant_id: &str,
        workflow_id: Option<&str>,
        filter: &super::ExecutionFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ExecutionRecord>, StoreError> {
        let inner = self.lock();
        let items = inner
            .executions
            .iter()
            .filter(|((t, _), e)| {
                t == tenant_id
                    && workflow_id.is_none_or(|w| e.record.workflow_id == w)
                    && filter.status.is_none_or(|s| e.record.status == s)
                    && filter.trigger_id.as_ref().is_none_or(|t| e.record.trigger_id.as_ref() == Some(t))
            })
            .map(|((_, id), e)| (id.clone(), e.record.clone()))
            .collect();
        Ok(page_desc(items, after, limit))
    }

    async fn request_cancel(&self, tenant_id: &str, execution_id: &str) -> Result<bool, StoreError> {
        match self.lock().executions.get_mut(&(tenant_id.to_string(), execution_id.to_string())) {
            Some(entry) if !entry.record.status.is_final() => {
                entry.record.cancel_requested = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn redrive_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        deadline_at: &str,
        hold: &str,
        hold_until: &str,
        now: &str,
        _kept: &crate::model::ExecutionUsage,
    ) -> Result<bool, StoreError> {
        match self.lock().executions.get_mut(&(tenant_id.to_string(), execution_id.to_string())) {
            Some(entry)
                if matches!(entry.record.status, ExecutionStatus::Failed | ExecutionStatus::TimedOut)
                    && entry.lease_allows(LeaseGuard::Free { now }) =>
            {
                entry.redrive(deadline_at, hold, hold_until);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn stranded_executions(&self, now: &str, limit: usize) -> Result<Vec<StrandedExecution>, StoreError> {
        let inner = self.lock();
        let mut found: Vec<StrandedExecution> = inner
            .executions
            .iter()
            .filter(|(_, e)| e.sweep_at.as_deref().is_some_and(|at| at < now))
            .map(|((tenant_id, execution_id), e)| StrandedExecution {
                tenant_id: tenant_id.clone(),
                execution_id: execution_id.clone(),
                status: e.record.status,
                deadline_at: e.record.deadline_at.clone(),
                sweep_count: e.sweep_count,
                request_id: e.record.request_id.clone(),
                lease_expired: e.lease.is_some(),
            })
            .collect();
        found.sort_by(|a, b| a.execution_id.cmp(&b.execution_id));
        found.truncate(limit);
        Ok(found)
    }

    async fn mark_swept(
        &self,
        tenant_id: &str,
        execution_id: &str,
        next_sweep_at: &str,
        now: &str,
        counted: bool,
    ) -> Result<bool, StoreError> {
        match self.lock().executions.get_mut(&(tenant_id.to_string(), execution_id.to_string())) {
            Some(entry) if entry.lease_allows(LeaseGuard::Stranded { now }) => {
                entry.sweep_at = Some(next_sweep_at.to_string());
                entry.sweep_count += u32::from(counted);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn acquire_run_slot(
        &self,
        tenant_id: &str,
        execution_id: &str,
        until: &str,
        now: &str,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let slots = inner.run_slots.entry(tenant_id.to_string()).or_default();
        slots.retain(|_, expiry| expiry.as_str() >= now);
        if !slots.contains_key(execution_id) && slots.len() >= limit as usize {
            return Ok(false);
        }
        slots.insert(execution_id.to_string(), until.to_string());
        Ok(true)
    }

    async fn release_run_slot(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError> {
        if let Some(slots) = self.lock().run_slots.get_mut(tenant_id) {
            slots.remove(execution_id);
        }
        Ok(())
    }

    async fn set_waiting(
        &self,
        tenant_id: &str,
        execution_id: &str,
        reason: Option<&str>,
        next_sweep_at: &str,
    ) -> Result<(), StoreError> {
        if let Some(entry) = self.lock().executions.get_mut(&(tenant_id.to_string(), execution_id.to_string()))
            && entry.sweep_at.is_some()
        {
            entry.record.waiting_reason = reason.map(str::to_string);
            entry.sweep_at = Some(next_sweep_at.to_string());
        }
        Ok(())
    }
}

#[async_trait]
impl super::ValueStore for MemoryStore {
    async fn put_value(&self, key: &str, json: Vec<u8>) -> Result<(), StoreError> {
        self.lock().values.insert(key.to_string(), json);
        Ok(())
    }
    async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.lock().values.get(key).cloned())
    }
    async fn value_url(&self, key: &str, _expires_in: std::time::Duration) -> Result<String, StoreError> {
        Ok(format!("memory:///{key}"))
    }
}

#[async_trait]
impl crate::triggers::TriggerStore for MemoryStore {
    async fn create_trigger(
        &self,
        record: &crate::triggers::TriggerRecord,
        max_for_workflow: usize,
        max_for_tenant: usize,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let of_tenant = inner.triggers.keys().filter(|(t, _, _)| *t == record.tenant_id);
        let of_workflow = of_tenant.clone().filter(|(_, w, _)| *w == record.workflow_id).count();
        if of_tenant.count() >= max_for_tenant || of_workflow >= max_for_workflow {
            return Ok(false);
        }
        let key = (record.tenant_id.clone(), record.workflow_id.clone(), record.trigger_id.clone());
        inner.triggers.insert(key, record.clone());
        Ok(true)
    }

    async fn get_trigger(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        trigger_id: &str,
    ) -> Result<Option<crate::triggers::TriggerRecord>, StoreError> {
        let key = (tenant_id.to_string(), workflow_id.to_string(), trigger_id.to_string());
        Ok(self.lock().triggers.get(&key).cloned())
    }

    async fn list_triggers(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<crate::triggers::TriggerRecord>, StoreError> {
        let inner = self.lock();
        let mut items: Vec<_> = inner
            .triggers
            .iter()
            .filter(|((t, w, id), _)| t == tenant_id && w == workflow_id && after.is_none_or(|a| id.as_str() > a))
            .map(|(_, record)| record.clone())
            .take(limit + 1)
            .collect();
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|t| t.trigger_id.clone()) } else { None };
        Ok(Page { items, next_after })
    }

    async fn count_triggers(&self, tenant_id: &str, workflow_id: &str) -> Result<usize, StoreError> {
        Ok(self.lock().triggers.keys().filter(|(t, w, _)| t == tenant_id && w == workflow_id).count())
    }

    async fn replace_trigger(
        &self,
        record: &crate::triggers::TriggerRecord,
        expected_revision: u64,
    ) -> Result<bool, StoreError> {
        let key = (record.tenant_id.clone(), record.workflow_id.clone(), record.trigger_id.clone());
        match self.lock().triggers.get_mut(&key) {
            Some(stored) if stored.revision == expected_revision => {
                let last_run = stored.last_run.take();
                *stored = crate::triggers::TriggerRecord { last_run, ..record.clone() };
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_trigger(&self, record: &crate::triggers::TriggerRecord) -> Result<bool, StoreError> {
        let key = (record.tenant_id.clone(), record.workflow_id.clone(), record.trigger_id.clone());
        Ok(self.lock().triggers.remove(&key).is_some())
    }

    async fn find_hook(&self, hook_id: &str) -> Result<Option<crate::triggers::TriggerRecord>, StoreError> {
        let inner = self.lock();
        Ok(inner.triggers.values().find(|t| t.webhook().is_some_and(|w| w.hook_id == hook_id)).cloned())
    }

    async fn record_trigger_run(
        &self,
        record: &crate::triggers::TriggerRecord,
        run: &crate::triggers::TriggerRun,
    ) -> Result<(), StoreError> {
        let key = (record.tenant_id.clone(), record.workflow_id.clone(), record.trigger_id.clone());
        if let Some(stored) = self.lock().triggers.get_mut(&key) {
            stored.last_run = Some(run.clone());
        }
        Ok(())
    }
}

/// An execution's event batches from `from_seq` on, as keys of `Inner::events`.
fn event_range(tenant_id: &str, execution_id: &str, from_seq: u64) -> std::ops::RangeInclusive<(String, String, u64)> {
    let (t, e) = (tenant_id.to_string(), execution_id.to_string());
    (t.clone(), e.clone(), from_seq)..=(t, e, u64::MAX)
}

#[async_trait]
impl crate::events::EventStore for MemoryStore {
    async fn append_events(
        &self,
        tenant_id: &str,
        execution_id: &str,
        batch: &crate::events::EventBatch,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let key = (tenant_id.to_string(), execution_id.to_string(), batch.seq);
        if inner.events.contains_key(&key) {
            return Err(StoreError::ConditionFailed);
        }
        inner.events.insert(key, batch.clone());
        Ok(())
    }

    async fn read_events(
        &self,
        tenant_id: &str,
        execution_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<crate::events::EventBatch>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .events
            .range(event_range(tenant_id, execution_id, from_seq))
            .take(limit.max(1))
            .map(|(_, batch)| batch.clone())
            .collect())
    }

    async fn last_event_seq(&self, tenant_id: &str, execution_id: &str) -> Result<u64, StoreError> {
        let inner = self.lock();
        Ok(inner
            .events
            .range(event_range(tenant_id, execution_id, 0))
            .next_back()
            .map(|((_, _, s), _)| *s)
            .unwrap_or(0))
    }
}

#[async_trait]
impl crate::usage::UsageStore for MemoryStore {
    async fn add_usage(&self, finishes: &[String], rows: &[crate::usage::UsageRow]) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if finishes.iter().any(|f| inner.usage_batches.contains(f)) {
            return Ok(false);
        }
        inner.usage_batches.extend(finishes.iter().cloned());
        for row in rows {
            let key = (row.tenant_id.clone(), row.group, crate::usage::row_key(row));
            let stored = inner
                .usage
                .entry(key)
                .or_insert_with(|| crate::usage::UsageRow { counters: Default::default(), ..row.clone() });
            stored.counters = stored.counters.plus(&row.counters);
        }
        Ok(true)
    }

    async fn list_usage(
        &self,
        tenant_id: &str,
        group: crate::usage::UsageGroup,
        from: &str,
        to: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<crate::usage::UsageRow>, StoreError> {
        let inner = self.lock();
        let end = format!("{to}~");
        let mut rows: Vec<crate::usage::UsageRow> = inner
            .usage
            .range((tenant_id.to_string(), group, from.to_string())..=(tenant_id.to_string(), group, end))
            .filter(|((_, _, key), _)| after.is_none_or(|after| key.as_str() > after))
            .map(|(_, row)| row.clone())
            .take(limit + 1)
            .collect();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next_after = if more { rows.last().map(crate::usage::row_key) } else { None };
        Ok(Page { items: rows, next_after })
    }
}

#[async_trait]
impl crate::budgets::BudgetStore for MemoryStore {
    async fn get_budget(&self, tenant_id: &str) -> Result<Option<crate::budgets::Budget>, StoreError> {
        Ok(self.lock().budgets.get(tenant_id).cloned())
    }

    async fn put_budget(&self, tenant_id: &str, budget: &crate::budgets::Budget) -> Result<(), StoreError> {
        self.lock().budgets.insert(tenant_id.to_string(), budget.clone());
        Ok(())
    }

    async fn month_spend(&self, tenant_id: &str, month: &str) -> Result<crate::budgets::MonthSpend, StoreError> {
        Ok(self.lock().month_spend.get(&(tenant_id.to_string(), month.to_string())).cloned().unwrap_or_default())
    }

    async fn reserve(
        &self,
        tenant_id: &str,
        month: &str,
        amount_nano: u64,
        limit_nano: u64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let spend = inner.month_spend.entry((tenant_id.to_string(), month.to_string())).or_default();
        if spend.committed_nano.saturating_add(amount_nano) > limit_nano {
            return Ok(false);
        }
        spend.committed_nano += amount_nano;
        Ok(true)
    }

    async fn settle(
        &self,
        tenant_id: &str,
        month: &str,
        reserved_nano: u64,
        actual_nano: u64,
    ) -> Result<crate::budgets::MonthSpend, StoreError> {
        let mut inner = self.lock();
        let spend = inner.month_spend.entry((tenant_id.to_string(), month.to_string())).or_default();
        spend.committed_nano = (spend.committed_nano + actual_nano).saturating_sub(reserved_nano);
        spend.spent_nano += actual_nano;
        Ok(spend.clone())
    }

    async fn mark_alert(&self, tenant_id: &str, month: &str, percent: u32) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let spend = inner.month_spend.entry((tenant_id.to_string(), month.to_string())).or_default();
        if spend.alerts_sent.contains(&percent) {
            return Ok(false);
        }
        spend.alerts_sent.push(percent);
        Ok(true)
    }
}

#[async_trait]
impl crate::assistant::AssistantStore for MemoryStore {
    async fn create_session(
        &self,
        tenant_id: &str,
        session: &crate::assistant::AssistantSession,
        max_open: usize,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let open = inner.assistant.iter().filter(|((t, _), (s, _))| t == tenant_id && s.is_open(now)).count();
        if open >= max_open {
            return Ok(false);
        }
        inner.assistant.insert((tenant_id.to_string(), session.session_id.clone()), (session.clone(), Vec::new()));
        Ok(true)
    }

    async fn get_session(
        &self,
        tenant_id: &str,
        session_id: &str,
    ) -> Result<Option<crate::assistant::AssistantSession>, StoreError> {
        Ok(self.lock().assistant.get(&(tenant_id.to_string(), session_id.to_string())).map(|(s, _)| s.clone()))
    }

    async fn list_turns(
        &self,
        tenant_id: &str,
        session_id: &str,
    ) -> Result<Vec<crate::assistant::AssistantTurn>, StoreError> {
        Ok(self
            .lock()
            .assistant
            .get(&(tenant_id.to_string(), session_id.to_string()))
            .map(|(_, turns)| turns.clone())
            .unwrap_or_default())
    }

    async fn save_turn(
        &self,
        tenant_id: &str,
        session: &crate::assistant::AssistantSession,
        turn: Option<&crate::assistant::AssistantTurn>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some((stored, turns)) = inner.assistant.get_mut(&(tenant_id.to_string(), session.session_id.clone()))
        else {
            return Ok(false);
        };
        if stored.revision + 1 != session.revision || !stored.is_open(now) {
            return Ok(false);
        }
        *stored = session.clone();
        turns.extend(turn.cloned());
        Ok(true)
    }

    async fn delete_session(&self, tenant_id: &str, session_id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().assistant.remove(&(tenant_id.to_string(), session_id.to_string())).is_some())
    }
}

#[cfg(test)]
mod tests {
    crate::store_conformance_tests!(async { super::MemoryStore::new() });
    crate::secret_store_conformance_tests!(async { super::MemoryStore::new() });
}
