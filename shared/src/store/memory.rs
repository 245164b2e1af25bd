//! In-memory adapter for domain unit tests. Same semantics as the DynamoDB adapter, proven by
//! the conformance suite.

use super::{
    DeployOutcome, HealthProbe, Page, TenantStore, VersionSummary, WorkflowStore, WorkflowSummary, version_sort_key,
};
use crate::error::StoreError;
use crate::model::{ApiKeyRecord, Tenant, VersionRecord, WorkflowDefinition, WorkflowRecord};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (tenant, workflow id) -> record; BTreeMap keeps ULID order.
    workflows: BTreeMap<(String, String), WorkflowRecord>,
    /// (tenant, workflow id, version sort key) -> record.
    versions: BTreeMap<(String, String, String), VersionRecord>,
    tenants: BTreeMap<String, Tenant>,
    api_keys: BTreeMap<String, ApiKeyRecord>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
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
}

#[async_trait]
impl HealthProbe for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    crate::store_conformance_tests!(async { super::MemoryStore::new() });
}
