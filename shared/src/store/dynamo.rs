//! DynamoDB adapter: single-table design. The key design is documented in ARCHITECTURE.md:
//!
//! | entity   | pk                      | sk            |
//! |----------|-------------------------|---------------|
//! | tenant   | `T#<tenant>`            | `TENANT`      |
//! | workflow | `T#<tenant>`            | `WF#<ulid>`   |
//! | version  | `T#<tenant>#WF#<ulid>`  | `V#<10-digit>`|
//! | api key  | `KEY#<sha256 hex>`      | `KEY`         | gsi1: `T#<tenant>` / `APIKEY#<ulid>`
//! | credential | `T#<tenant>`          | `CRED#<name>` |
//! | execution | `T#<tenant>`           | `EX#<ulid>`   | gsi1: `T#<tenant>#WF#<ulid>` / `EX#<ulid>`
//! | snapshot | `T#<tenant>#EX#<ulid>`  | `DEF`         |
//! | step     | `T#<tenant>#EX#<ulid>`  | `STEP#<node>` |
//!
//! Every tenant-owned key starts with the tenant id, so no request can name another tenant's
//! item. Listings are Queries on one partition, newest first (ULIDs sort by time).

use super::{
    CredentialStore, DeployOutcome, ExecutionStore, HealthProbe, IdempotencyClaim, Page, StepStore, TenantStore,
    VersionSummary, WorkflowStore, WorkflowSummary, version_sort_key,
};
use crate::engine::{StepError, StepRecord, StepStatus};
use crate::error::StoreError;
use crate::executions::{ExecutionRecord, ExecutionStatus};
use crate::model::{ApiKeyRecord, CredentialRecord, Tenant, VersionRecord, WorkflowDefinition, WorkflowRecord};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem, Update, WriteRequest,
};
use std::collections::HashMap;

type Item = HashMap<String, AttributeValue>;

/// How many DynamoDB pages one filtered listing may read before it returns what it has with a
/// cursor: bounds the cost and latency of a tag filter that matches rarely.
const MAX_PAGES_PER_LISTING: usize = 5;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// How long step items are kept (their `ttl`); an execution's own items carry its
    /// `expires_at`.
    execution_retention: std::time::Duration,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore { client, table: table.into(), execution_retention: crate::executions::DEFAULT_EXECUTION_RETENTION }
    }

    /// The store with `EXECUTION_RETENTION_DAYS` applied to the steps it writes.
    pub fn with_execution_retention(self, retention: std::time::Duration) -> Self {
        DynamoStore { execution_retention: retention, ..self }
    }

    /// The `ttl` attribute of a step written now: DynamoDB deletes the item after it. A step is
    /// written after its execution was created, so it never expires before the execution.
    fn step_ttl(&self) -> AttributeValue {
        n(chrono::Utc::now().timestamp() + self.execution_retention.as_secs() as i64)
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn tenant_pk(tenant_id: &str) -> String {
    format!("T#{tenant_id}")
}
fn workflow_sk(workflow_id: &str) -> String {
    format!("WF#{workflow_id}")
}
fn versions_pk(tenant_id: &str, workflow_id: &str) -> String {
    format!("T#{tenant_id}#WF#{workflow_id}")
}
fn version_sk(version: u32) -> String {
    format!("V#{}", version_sort_key(version))
}
fn key(pk: String, sk: String) -> Item {
    HashMap::from([("pk".to_string(), AttributeValue::S(pk)), ("sk".to_string(), AttributeValue::S(sk))])
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}
fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(StoreError::Internal(format!("item lacks string attribute {name}"))),
    }
}
fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}
fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    get_opt_n(item, name)?.ok_or_else(|| StoreError::Internal(format!("item lacks number attribute {name}")))
}
fn get_opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map(Some).map_err(|_| StoreError::Internal(format!("attribute {name} is not a number")))
        }
        _ => Ok(None),
    }
}
fn get_tags(item: &Item) -> Vec<String> {
    match item.get("tags") {
        Some(AttributeValue::L(values)) => values.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    }
}
fn definition_from(item: &Item) -> Result<WorkflowDefinition, StoreError> {
    let text = unpacked(item, "definition")?.ok_or_else(|| StoreError::Internal("definition missing".into()))?;
    serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("stored definition does not parse: {e}")))
}

/// Large JSON written once per execution (its definition snapshot, bulk steps) is stored
/// deflated, as a binary attribute: a write is billed per KB, and step and definition JSON, full
/// of repeated keys, shrinks to a third or less.
fn packed(text: &str) -> Result<AttributeValue, StoreError> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).map_err(|e| StoreError::Internal(format!("deflate: {e}")))?;
    let bytes = encoder.finish().map_err(|e| StoreError::Internal(format!("deflate: {e}")))?;
    Ok(AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes)))
}

/// A text attribute written by `packed` (binary) or as a plain string (older items, and the
/// workflow and version items).
fn unpacked(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    use std::io::Read;
    match item.get(name) {
        Some(AttributeValue::B(blob)) => {
            let mut text = String::new();
            flate2::read::DeflateDecoder::new(blob.as_ref())
                .read_to_string(&mut text)
                .map_err(|e| StoreError::Internal(format!("stored {name} does not inflate: {e}")))?;
            Ok(Some(text))
        }
        Some(AttributeValue::S(text)) => Ok(Some(text.clone())),
        _ => Ok(None),
    }
}
fn definition_json(definition: &WorkflowDefinition) -> Result<String, StoreError> {
    serde_json::to_string(definition).map_err(|e| StoreError::Internal(format!("definition serialization: {e}")))
}
/// The resume point (the id part of a sort key) from a LastEvaluatedKey.
fn resume_after(last_key: &Item, prefix: &str) -> Option<String> {
    get_opt_s(last_key, "sk").and_then(|sk| sk.strip_prefix(prefix).map(str::to_string))
}

/// Whether a conditional write applied: Ok(false) when its condition did not hold.
fn condition_met<T>(result: Result<T, StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Maps an SDK failure onto the port's errors; the SDK text goes to logs only.
fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = err.code().map(str::to_string);
    let detail = DisplayErrorContext(&err).to_string();
    match code.as_deref() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed,
        Some("TransactionCanceledException") if detail.contains("ConditionalCheckFailed") => {
            StoreError::ConditionFailed
        }
        Some(
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "InternalServerError"
            | "ServiceUnavailable"
            | "TransactionConflictException"
            | "TransactionCanceledException",
        ) => StoreError::Unavailable(detail),
        Some(_) => StoreError::Internal(detail),
        None => match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
                StoreError::Unavailable(detail)
            }
            _ => StoreError::Internal(detail),
        },
    }
}

fn workflow_from(item: &Item, tenant_id: &str) -> Result<WorkflowRecord, StoreError> {
    Ok(WorkflowRecord {
        tenant_id: tenant_id.to_string(),
        workflow_id: get_s(item, "workflow_id")?,
        definition: definition_from(item)?,
        revision: get_n(item, "revision")?,
        latest_version: get_n(item, "latest_version")?,
        deployed_version: get_opt_n(item, "deployed_version")?,
        published_revision: get_n(item, "published_revision")?,
        created_at: get_s(item, "created_at")?,
        updated_at: get_s(item, "updated_at")?,
    })
}

fn summary_from(item: &Item) -> Result<WorkflowSummary, StoreError> {
    Ok(WorkflowSummary {
        workflow_id: get_s(item, "workflow_id")?,
        name: get_s(item, "name")?,
        description: get_opt_s(item, "description"),
        tags: get_tags(item),
        revision: get_n(item, "revision")?,
        latest_version: get_n(item, "latest_version")?,
        deployed_version: get_opt_n(item, "deployed_version")?,
        created_at: get_s(item, "created_at")?,
        updated_at: get_s(item, "updated_at")?,
    })
}

/// The attributes that mirror the draft (kept beside the JSON so listings can project them).
fn draft_attributes(definition: &WorkflowDefinition) -> Result<Vec<(&'static str, AttributeValue)>, StoreError> {
    let mut attributes = vec![
        ("name", s(&definition.name)),
        ("tags", AttributeValue::L(definition.tags.iter().map(s).collect())),
        ("definition", s(definition_json(definition)?)),
    ];
    if let Some(description) = &definition.description {
        attributes.push(("description", s(description)));
    }
    Ok(attributes)
}

#[async_trait]
impl WorkflowStore for DynamoStore {
    async fn create_workflow(&self, record: &WorkflowRecord) -> Result<(), StoreError> {
        let mut item = key(tenant_pk(&record.tenant_id), workflow_sk(&record.workflow_id));
        item.insert("entity".into(), s("workflow"));
        item.insert("workflow_id".into(), s(&record.workflow_id));
        for (name, value) in draft_attributes(&record.definition)? {
            item.insert(name.into(), value);
        }
        item.insert("revision".into(), n(record.revision));
        item.insert("latest_version".into(), n(record.latest_version));
        item.insert("published_revision".into(), n(record.published_revision));
        if let Some(v) = record.deployed_version {
            item.insert("deployed_version".into(), n(v));
        }
        item.insert("created_at".into(), s(&record.created_at));
        item.insert("updated_at".into(), s(&record.updated_at));
        self.put_new(item).await
    }

    async fn get_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        self.get(key(tenant_pk(tenant_id), workflow_sk(workflow_id)))
            .await?
            .map(|item| workflow_from(&item, tenant_id))
            .transpose()
    }

    async fn list_workflows(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
        tag: Option<&str>,
    ) -> Result<Page<WorkflowSummary>, StoreError> {
        let pk = tenant_pk(tenant_id);
        let mut start = after.map(|a| key(pk.clone(), workflow_sk(a)));
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES_PER_LISTING {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s("WF#"))
                .expression_attribute_names("#name", "name")
                .projection_expression(
                    "sk, workflow_id, #name, description, tags, revision, latest_version, deployed_version, created_at, updated_at",
                )
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take());
            query = match tag {
                // Read one more than asked so we know whether another page exists.
                None => query.limit((limit + 1) as i32),
                Some(tag) => query
                    .filter_expression("contains(tags, :tag)")
                    .expression_attribute_values(":tag", s(tag))
                    .limit(((limit + 1) * 4).min(500) as i32),
            };
            let out = query.send().await.map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                items.push(summary_from(&item)?);
                if items.len() > limit {
                    items.truncate(limit);
                    let next_after = items.last().map(|s| s.workflow_id.clone());
                    return Ok(Page { items, next_after });
                }
            }
            match out.last_evaluated_key {
                None => {
                    return Ok(Page { items, next_after: None });
                }
                Some(last) if page == MAX_PAGES_PER_LISTING => {
                    return Ok(Page { items, next_after: resume_after(&last, "WF#") });
                }
                Some(last) => start = Some(last),
            }
        }
        unreachable!("the loop returns on its last page")
    }

    async fn replace_draft(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        definition: &WorkflowDefinition,
        expected_revision: u64,
        updated_at: &str,
    ) -> Result<Option<WorkflowRecord>, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(tenant_id), workflow_sk(workflow_id))))
            .condition_expression("attribute_exists(pk) AND revision = :expected")
            .expression_attribute_values(":expected", n(expected_revision))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":updated_at", s(updated_at))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        let mut sets = vec!["revision = revision + :one".to_string(), "updated_at = :updated_at".to_string()];
        for (name, value) in draft_attributes(definition)? {
            sets.push(format!("#{name} = :{name}"));
            update = update
                .expression_attribute_names(format!("#{name}"), name)
                .expression_attribute_values(format!(":{name}"), value);
        }
        let mut expression = format!("SET {}", sets.join(", "));
        if definition.description.is_none() {
            expression.push_str(" REMOVE description");
        }
        match update.update_expression(expression).send().await.map_err(classify) {
            Ok(out) => out.attributes.map(|item| workflow_from(&item, tenant_id)).transpose(),
            Err(StoreError::ConditionFailed) => {
                // Tell "gone" from "changed": the caller answers 404 or 412/409.
                match self.get_workflow(tenant_id, workflow_id).await? {
                    None => Ok(None),
                    Some(_) => Err(StoreError::ConditionFailed),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn delete_workflow(&self, tenant_id: &str, workflow_id: &str) -> Result<bool, StoreError> {
        // Versions first, so a half-finished delete never leaves versions without their workflow.
        let pk = versions_pk(tenant_id, workflow_id);
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(&pk))
                .projection_expression("pk, sk")
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            let keys = out.items.unwrap_or_default();
            for chunk in keys.chunks(25) {
                let mut requests: Vec<WriteRequest> = chunk
                    .iter()
                    .map(|k| {
                        let delete = DeleteRequest::builder().set_key(Some(k.clone())).build();
                        delete.map(|d| WriteRequest::builder().delete_request(d).build())
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                for attempt in 0..5 {
                    let out = self
                        .client
                        .batch_write_item()
                        .request_items(&self.table, requests)
                        .send()
                        .await
                        .map_err(classify)?;
                    requests = out.unprocessed_items.and_then(|mut m| m.remove(&self.table)).unwrap_or_default();
                    if requests.is_empty() {
                        break;
                    }
                    if attempt == 4 {
                        return Err(StoreError::Unavailable("batch delete left unprocessed items".into()));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
                }
            }
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        self.delete_existing(key(tenant_pk(tenant_id), workflow_sk(workflow_id))).await
    }

    async fn publish_version(&self, version: &VersionRecord) -> Result<(), StoreError> {
        let internal = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
        let workflow_key = key(tenant_pk(&version.tenant_id), workflow_sk(&version.workflow_id));
        let move_latest = Update::builder()
            .table_name(&self.table)
            .set_key(Some(workflow_key))
            .condition_expression("revision = :revision AND latest_version = :previous")
            .update_expression("SET latest_version = :version, published_revision = :revision")
            .expression_attribute_values(":revision", n(version.source_revision))
            .expression_attribute_values(":previous", n(version.version.saturating_sub(1)))
            .expression_attribute_values(":version", n(version.version))
            .build()
            .map_err(internal)?;
        let mut item = key(versions_pk(&version.tenant_id, &version.workflow_id), version_sk(version.version));
        item.insert("entity".into(), s("version"));
        item.insert("version".into(), n(version.version));
        item.insert("name".into(), s(&version.definition.name));
        item.insert("definition".into(), s(definition_json(&version.definition)?));
        item.insert("source_revision".into(), n(version.source_revision));
        item.insert("created_at".into(), s(&version.created_at));
        let put_version = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(internal)?;
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(move_latest).build())
            .transact_items(TransactWriteItem::builder().put(put_version).build())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn get_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let Some(item) = self.get(key(versions_pk(tenant_id, workflow_id), version_sk(version))).await? else {
            return Ok(None);
        };
        Ok(Some(VersionRecord {
            tenant_id: tenant_id.to_string(),
            workflow_id: workflow_id.to_string(),
            version: get_n(&item, "version")?,
            definition: definition_from(&item)?,
            source_revision: get_n(&item, "source_revision")?,
            created_at: get_s(&item, "created_at")?,
        }))
    }

    async fn list_versions(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<VersionSummary>, StoreError> {
        let pk = versions_pk(tenant_id, workflow_id);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s("V#"))
            .expression_attribute_names("#name", "name")
            .expression_attribute_names("#version", "version")
            .projection_expression("#version, #name, source_revision, created_at")
            .scan_index_forward(false)
            .limit((limit + 1) as i32)
            .set_exclusive_start_key(after.map(|a| key(pk.clone(), format!("V#{a}"))))
            .send()
            .await
            .map_err(classify)?;
        let mut items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                Ok(VersionSummary {
                    version: get_n(item, "version")?,
                    name: get_s(item, "name")?,
                    source_revision: get_n(item, "source_revision")?,
                    created_at: get_s(item, "created_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|v| version_sort_key(v.version)) } else { None };
        Ok(Page { items, next_after })
    }

    async fn set_deployed_version(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        version: u32,
        updated_at: &str,
    ) -> Result<DeployOutcome, StoreError> {
        let deployed = self
            .update_if(
                key(tenant_pk(tenant_id), workflow_sk(workflow_id)),
                "SET deployed_version = :version, updated_at = :updated_at",
                "attribute_exists(pk) AND latest_version >= :version AND :version >= :one",
                vec![(":version", n(version)), (":one", n(1)), (":updated_at", s(updated_at))],
            )
            .await?;
        if deployed {
            return Ok(DeployOutcome::Deployed);
        }
        Ok(match self.get_workflow(tenant_id, workflow_id).await? {
            None => DeployOutcome::WorkflowMissing,
            Some(_) => DeployOutcome::VersionMissing,
        })
    }
}

#[async_trait]
impl TenantStore for DynamoStore {
    async fn create_tenant(&self, tenant: &Tenant) -> Result<(), StoreError> {
        let mut item = key(tenant_pk(&tenant.tenant_id), "TENANT".into());
        item.insert("entity".into(), s("tenant"));
        item.insert("tenant_id".into(), s(&tenant.tenant_id));
        item.insert("name".into(), s(&tenant.name));
        item.insert("tier".into(), s(&tenant.tier));
        item.insert("created_at".into(), s(&tenant.created_at));
        if let (Some(id), Some(value)) = (&tenant.usage_key_id, &tenant.usage_key_value) {
            item.insert("usage_key_id".into(), s(id));
            item.insert("usage_key_value".into(), s(value));
        }
        self.put_new(item).await
    }

    async fn get_tenant(&self, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
        self.get(key(tenant_pk(tenant_id), "TENANT".into()))
            .await?
            .map(|item| {
                Ok(Tenant {
                    tenant_id: get_s(&item, "tenant_id")?,
                    name: get_s(&item, "name")?,
                    tier: get_s(&item, "tier")?,
                    created_at: get_s(&item, "created_at")?,
                    usage_key_id: get_opt_s(&item, "usage_key_id"),
                    usage_key_value: get_opt_s(&item, "usage_key_value"),
                })
            })
            .transpose()
    }

    async fn update_tenant_plan(
        &self,
        tenant_id: &str,
        tier: &str,
        usage_key_id: &str,
        usage_key_value: &str,
    ) -> Result<bool, StoreError> {
        self.update_if(
            key(tenant_pk(tenant_id), "TENANT".into()),
            "SET tier = :tier, usage_key_id = :id, usage_key_value = :value",
            "attribute_exists(pk)",
            vec![(":tier", s(tier)), (":id", s(usage_key_id)), (":value", s(usage_key_value))],
        )
        .await
    }

    async fn put_api_key(&self, api_key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = key(api_key_pk(&api_key.key_hash), "KEY".into());
        item.insert("entity".into(), s("api_key"));
        item.insert("gsi1pk".into(), s(tenant_pk(&api_key.tenant_id)));
        item.insert("gsi1sk".into(), s(format!("APIKEY#{}", api_key.key_id)));
        item.insert("key_hash".into(), s(&api_key.key_hash));
        item.insert("key_id".into(), s(&api_key.key_id));
        item.insert("tenant_id".into(), s(&api_key.tenant_id));
        item.insert("name".into(), s(&api_key.name));
        item.insert("display_prefix".into(), s(&api_key.display_prefix));
        item.insert("created_at".into(), s(&api_key.created_at));
        for (name, value) in [
            ("expires_at", &api_key.expires_at),
            ("revoked_at", &api_key.revoked_at),
            ("last_used_at", &api_key.last_used_at),
        ] {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        self.put_new(item).await
    }

    async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.get(key(api_key_pk(key_hash), "KEY".into())).await?.map(|item| api_key_from(&item)).transpose()
    }

    async fn find_api_key_by_id(&self, tenant_id: &str, key_id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :pk AND gsi1sk = :sk")
            .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
            .expression_attribute_values(":sk", s(format!("APIKEY#{key_id}")))
            .send()
            .await
            .map_err(classify)?;
        out.items.unwrap_or_default().first().map(api_key_from).transpose()
    }

    async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
            .expression_attribute_values(":pk", s(tenant_pk(tenant_id)))
            .expression_attribute_values(":prefix", s("APIKEY#"))
            .limit((super::MAX_KEYS_PER_TENANT * 2) as i32)
            .send()
            .await
            .map_err(classify)?;
        out.items.unwrap_or_default().iter().map(api_key_from).collect()
    }

    async fn revoke_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        self.update_key(key_hash, "SET revoked_at = if_not_exists(revoked_at, :at)", at, None).await
    }

    async fn expire_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        self.update_key(
            key_hash,
            "SET expires_at = :at",
            at,
            Some("attribute_exists(pk) AND (attribute_not_exists(expires_at) OR expires_at > :at)"),
        )
        .await
    }

    async fn touch_api_key(&self, key_hash: &str, at: &str) -> Result<(), StoreError> {
        self.update_key(key_hash, "SET last_used_at = :at", at, None).await
    }
}

impl DynamoStore {
    /// PutItem that never overwrites: ConditionFailed if the key exists.
    async fn put_new(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Strongly consistent GetItem: a read right after a write sees it.
    async fn get(&self, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(out.item)
    }

    /// DeleteItem of an existing item; false if there was none.
    async fn delete_existing(&self, key: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await
            .map_err(classify);
        condition_met(result)
    }

    /// One attribute update on an existing key item; a failed condition is not an error (the
    /// key is gone, or already expires earlier).
    async fn update_key(
        &self,
        key_hash: &str,
        update: &str,
        at: &str,
        condition: Option<&str>,
    ) -> Result<(), StoreError> {
        let condition = condition.unwrap_or("attribute_exists(pk)");
        self.update_if(key(api_key_pk(key_hash), "KEY".into()), update, condition, vec![(":at", s(at))]).await?;
        Ok(())
    }
}

fn api_key_pk(key_hash: &str) -> String {
    format!("KEY#{key_hash}")
}

fn api_key_from(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        key_hash: get_s(item, "key_hash")?,
        key_id: get_s(item, "key_id")?,
        tenant_id: get_s(item, "tenant_id")?,
        name: get_s(item, "name")?,
        display_prefix: get_s(item, "display_prefix")?,
        created_at: get_s(item, "created_at")?,
        expires_at: get_opt_s(item, "expires_at"),
        revoked_at: get_opt_s(item, "revoked_at"),
        last_used_at: get_opt_s(item, "last_used_at"),
    })
}

fn credential_from(item: &Item, tenant_id: &str) -> Result<CredentialRecord, StoreError> {
    Ok(CredentialRecord {
        tenant_id: tenant_id.to_string(),
        name: get_s(item, "name")?,
        provider: get_s(item, "provider")?,
        base_url: get_opt_s(item, "base_url"),
        last4: get_s(item, "last4")?,
        created_at: get_s(item, "created_at")?,
        updated_at: get_s(item, "updated_at")?,
    })
}

#[async_trait]
impl CredentialStore for DynamoStore {
    async fn put_credential(&self, record: &CredentialRecord) -> Result<CredentialRecord, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant_pk(&record.tenant_id), format!("CRED#{}", record.name))))
            .expression_attribute_names("#name", "name")
            .expression_attribute_values(":entity", s("credential"))
            .expression_attribute_values(":name", s(&record.name))
            .expression_attribute_values(":provider", s(&record.provider))
            .expression_attribute_values(":last4", s(&record.last4))
            .expression_attribute_values(":created_at", s(&record.created_at))
            .expression_attribute_values(":updated_at", s(&record.updated_at))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        let mut expression = "SET entity = :entity, #name = :name, provider = :provider, last4 = :last4, \
                              created_at = if_not_exists(created_at, :created_at), updated_at = :updated_at"
            .to_string();
        match &record.base_url {
            Some(url) => {
                expression.push_str(", base_url = :base_url");
                update = update.expression_attribute_values(":base_url", s(url));
            }
            None => expression.push_str(" REMOVE base_url"),
        }
        let out = update.update_expression(expression).send().await.map_err(classify)?;
        let item = out.attributes.ok_or_else(|| StoreError::Internal("update returned no attributes".into()))?;
        credential_from(&item, &record.tenant_id)
    }

    async fn get_credential(&self, tenant_id: &str, name: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.get(key(tenant_pk(tenant_id), format!("CRED#{name}")))
            .await?
            .map(|item| credential_from(&item, tenant_id))
            .transpose()
    }

    async fn list_credentials(
        &self,
        tenant_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<CredentialRecord>, StoreError> {
        let pk = tenant_pk(tenant_id);
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(&pk))
            .expression_attribute_values(":prefix", s("CRED#"))
            .limit((limit + 1) as i32)
            .set_exclusive_start_key(after.map(|a| key(pk.clone(), format!("CRED#{a}"))))
            .send()
            .await
            .map_err(classify)?;
        let mut items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(|i| credential_from(i, tenant_id))
            .collect::<Result<Vec<_>, _>>()?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_after = if more { items.last().map(|c| c.name.clone()) } else { None };
        Ok(Page { items, next_after })
    }

    async fn delete_credential(&self, tenant_id: &str, name: &str) -> Result<bool, StoreError> {
        self.delete_existing(key(tenant_pk(tenant_id), format!("CRED#{name}"))).await
    }
}

fn execution_key(tenant_id: &str, execution_id: &str) -> Item {
    key(tenant_pk(tenant_id), format!("EX#{execution_id}"))
}

fn execution_from(item: &Item, tenant_id: &str) -> Result<ExecutionRecord, StoreError> {
    let json = |name: &str| -> Result<serde_json::Value, StoreError> {
        match get_opt_s(item, name) {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("execution {name}: {e}")))
            }
            None => Ok(serde_json::Value::Null),
        }
    };
    let status = get_s(item, "status")?;
    Ok(ExecutionRecord {
        tenant_id: tenant_id.to_string(),
        execution_id: get_s(item, "execution_id")?,
        workflow_id: get_s(item, "workflow_id")?,
        version: get_opt_n(item, "version")?,
        status: ExecutionStatus::parse(&status).ok_or_else(|| StoreError::Internal(format!("status {status}")))?,
        input: json("input")?,
        output: json("output")?,
        error: match json("error")? {
            serde_json::Value::Null => None,
            value => Some(serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))?),
        },
        request_id: get_s(item, "request_id")?,
        created_at: get_s(item, "created_at")?,
        started_at: get_opt_s(item, "started_at"),
        finished_at: get_opt_s(item, "finished_at"),
        deadline_at: get_s(item, "deadline_at")?,
        cancel_requested: matches!(item.get("cancel_requested"), Some(AttributeValue::Bool(true))),
        redrive_count: get_opt_n(item, "redrive_count")?.unwrap_or(0),
        expires_at: get_opt_s(item, "expires_at"),
    })
}

#[async_trait]
impl ExecutionStore for DynamoStore {
    async fn create_execution(
        &self,
        record: &ExecutionRecord,
        definition: &WorkflowDefinition,
    ) -> Result<(), StoreError> {
        let mut item = execution_key(&record.tenant_id, &record.execution_id);
        item.insert("entity".into(), s("execution"));
        item.insert("gsi1pk".into(), s(format!("T#{}#WF#{}", record.tenant_id, record.workflow_id)));
        item.insert("gsi1sk".into(), s(format!("EX#{}", record.execution_id)));
        item.insert("execution_id".into(), s(&record.execution_id));
        item.insert("workflow_id".into(), s(&record.workflow_id));
        if let Some(version) = record.version {
            item.insert("version".into(), n(version));
        }
        item.insert("status".into(), s(record.status.as_str()));
        item.insert("input".into(), s(record.input.to_string()));
        item.insert("request_id".into(), s(&record.request_id));
        item.insert("created_at".into(), s(&record.created_at));
        item.insert("deadline_at".into(), s(&record.deadline_at));
        item.insert("cancel_requested".into(), AttributeValue::Bool(record.cancel_requested));
        let mut snapshot = key(format!("T#{}#EX#{}", record.tenant_id, record.execution_id), "DEF".into());
        snapshot.insert("entity".into(), s("execution_definition"));
        snapshot.insert("definition".into(), packed(&definition_json(definition)?)?);
        if let Some(expires_at) = &record.expires_at {
            let at = chrono::DateTime::parse_from_rfc3339(expires_at)
                .map_err(|e| StoreError::Internal(format!("expires_at {expires_at}: {e}")))?;
            item.insert("expires_at".into(), s(expires_at));
            // DynamoDB's TTL attribute (epoch seconds) on both items of the execution.
            item.insert("ttl".into(), n(at.timestamp()));
            snapshot.insert("ttl".into(), n(at.timestamp()));
        }
        // Two plain puts, snapshot first, rather than one transaction: no execution ever exists
        // without its snapshot, and it costs half the write units (a transactional write is
        // billed double). An attempt that dies between the two leaves a snapshot nothing
        // points to; a retry under the same id overwrites it.
        self.client.put_item().table_name(&self.table).set_item(Some(snapshot)).send().await.map_err(classify)?;
        self.put_new(item).await
    }

    async fn get_execution(&self, tenant_id: &str, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.get(execution_key(tenant_id, execution_id)).await?.map(|item| execution_from(&item, tenant_id)).transpose()
    }

    async fn get_execution_definition(
        &self,
        tenant_id: &str,
        execution_id: &str,
    ) -> Result<Option<WorkflowDefinition>, StoreError> {
        self.get(key(format!("T#{tenant_id}#EX#{execution_id}"), "DEF".into()))
            .await?
            .map(|item| definition_from(&item))
            .transpose()
    }

    async fn claim_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        until: &str,
        now: &str,
    ) -> Result<bool, StoreError> {
        self.update_if(
            execution_key(tenant_id, execution_id),
            "SET lease_owner = :owner, lease_until = :until, #status = :running, \
             started_at = if_not_exists(started_at, :now)",
            "attribute_exists(pk) AND #status IN (:queued, :running) \
             AND (attribute_not_exists(lease_until) OR lease_until < :now OR lease_owner = :owner)",
            vec![
                (":queued", s("queued")),
                (":running", s("running")),
                (":owner", s(owner)),
                (":until", s(until)),
                (":now", s(now)),
            ],
        )
        .await
    }

    async fn release_lease(
        &self,
        tenant_id: &str,
        execution_id: &str,
        owner: &str,
        steps: &[StepRecord],
    ) -> Result<(), StoreError> {
        let release = "REMOVE lease_owner, lease_until";
        let key = execution_key(tenant_id, execution_id);
        let values = vec![(":owner", s(owner))];
        self.update_with_steps(key, release, "lease_owner = :owner", values, tenant_id, execution_id, steps).await?;
        Ok(())
    }

    async fn finish_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        status: ExecutionStatus,
        output: serde_json::Value,
        error: Option<crate::engine::StepError>,
        at: String,
        steps: &[StepRecord],
    ) -> Result<(), StoreError> {
        let error = match error {
            Some(error) => serde_json::to_string(&error).map_err(|e| StoreError::Internal(e.to_string()))?,
            None => "null".to_string(),
        };
        let finish = "SET #status = :final, #output = :output, #error = :error, finished_at = :at \
                      REMOVE lease_owner, lease_until";
        let values = vec![
            (":queued", s("queued")),
            (":running", s("running")),
            (":final", s(status.as_str())),
            (":output", s(super::bounded_execution_output(output).to_string())),
            (":error", s(error)),
            (":at", s(at)),
        ];
        let key = execution_key(tenant_id, execution_id);
        let condition = "attribute_exists(pk) AND #status IN (:queued, :running)";
        self.update_with_steps(key, finish, condition, values, tenant_id, execution_id, steps).await?;
        Ok(())
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
        let item_key = key(format!("T#{tenant_id}#IDEM#{key_hash}"), "IDEM".into());
        let mut item = item_key.clone();
        item.insert("entity".into(), s("idempotency_key"));
        item.insert("body_hash".into(), s(body_hash));
        item.insert("execution_id".into(), s(execution_id));
        item.insert("expires_at".into(), s(expires_at));
        // DynamoDB TTL removes the record eventually; `expires_at` decides reuse exactly.
        let ttl = chrono::DateTime::parse_from_rfc3339(expires_at).map(|t| t.timestamp()).unwrap_or_default() + 3600;
        item.insert("ttl".into(), n(ttl));
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at < :now")
            .expression_attribute_values(":now", s(now))
            .send()
            .await
            .map_err(classify);
        match put {
            Ok(_) => Ok(IdempotencyClaim::New),
            Err(StoreError::ConditionFailed) => {
                let existing = self
                    .get(item_key)
                    .await?
                    .ok_or_else(|| StoreError::Internal("idempotency record vanished".into()))?;
                Ok(IdempotencyClaim::Existing {
                    body_hash: get_s(&existing, "body_hash")?,
                    execution_id: get_s(&existing, "execution_id")?,
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn list_executions(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        status: Option<ExecutionStatus>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ExecutionRecord>, StoreError> {
        let gsi1pk = format!("T#{tenant_id}#WF#{workflow_id}");
        let mut start = after.map(|a| {
            let mut k = execution_key(tenant_id, a);
            k.insert("gsi1pk".into(), s(&gsi1pk));
            k.insert("gsi1sk".into(), s(format!("EX#{a}")));
            k
        });
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES_PER_LISTING {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi1")
                .key_condition_expression("gsi1pk = :pk AND begins_with(gsi1sk, :prefix)")
                .expression_attribute_values(":pk", s(&gsi1pk))
                .expression_attribute_values(":prefix", s("EX#"))
                .scan_index_forward(false)
                .set_exclusive_start_key(start.take());
            query = match status {
                None => query.limit((limit + 1) as i32),
                Some(status) => query
                    .filter_expression("#status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(status.as_str()))
                    .limit(((limit + 1) * 4).min(500) as i32),
            };
            let out = query.send().await.map_err(classify)?;
            for item in out.items.unwrap_or_default() {
                items.push(execution_from(&item, tenant_id)?);
                if items.len() > limit {
                    items.truncate(limit);
                    let next_after = items.last().map(|e| e.execution_id.clone());
                    return Ok(Page { items, next_after });
                }
            }
            match out.last_evaluated_key {
                None => return Ok(Page { items, next_after: None }),
                Some(last) if page == MAX_PAGES_PER_LISTING => {
                    return Ok(Page { items, next_after: resume_after(&last, "EX#") });
                }
                Some(last) => start = Some(last),
            }
        }
        unreachable!("the loop returns on its last page")
    }

    async fn request_cancel(&self, tenant_id: &str, execution_id: &str) -> Result<bool, StoreError> {
        self.update_if(
            execution_key(tenant_id, execution_id),
            "SET cancel_requested = :yes",
            "attribute_exists(pk) AND #status IN (:queued, :running)",
            vec![(":yes", AttributeValue::Bool(true)), (":queued", s("queued")), (":running", s("running"))],
        )
        .await
    }

    async fn redrive_execution(
        &self,
        tenant_id: &str,
        execution_id: &str,
        deadline_at: &str,
    ) -> Result<bool, StoreError> {
        self.update_if(
            execution_key(tenant_id, execution_id),
            "SET #status = :queued, deadline_at = :deadline, #output = :null, #error = :null, \
             cancel_requested = :no, redrive_count = if_not_exists(redrive_count, :zero) + :one \
             REMOVE finished_at",
            "attribute_exists(pk) AND #status IN (:failed, :timed_out)",
            vec![
                (":queued", s("queued")),
                (":deadline", s(deadline_at)),
                (":null", s("null")),
                (":no", AttributeValue::Bool(false)),
                (":zero", n(0)),
                (":one", n(1)),
                (":failed", s("failed")),
                (":timed_out", s("timed_out")),
            ],
        )
        .await
    }
}

/// Steps kept in bulk go into items of at most this much JSON (an item holds 400 KB).
const BULK_ITEM_BYTES: usize = 300 * 1024;
/// What one TransactWriteItems may carry: 100 actions and 4 MB.
const TRANSACTION_ITEMS: usize = 100;
const TRANSACTION_BYTES: usize = 3 * 1024 * 1024;

impl DynamoStore {
    /// Applies `update` to the execution item and keeps `steps` in bulk items
    /// (`STEP#~<ulid>`, never a node id) in the same TransactWriteItems, so a checkpoint or a
    /// finish is one request. Bulk items beyond one transaction's limits (huge outputs only)
    /// are put first, on their own.
    #[allow(clippy::too_many_arguments)]
    async fn update_with_steps(
        &self,
        key: Item,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
        tenant_id: &str,
        execution_id: &str,
        steps: &[StepRecord],
    ) -> Result<bool, StoreError> {
        if steps.is_empty() {
            return self.update_if(key, update, condition, values).await;
        }
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(reserved_names(update, condition));
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        let update = update.build().map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut items = bulk_step_items(tenant_id, execution_id, steps, self.step_ttl())?;
        let mut in_transaction = Vec::new();
        let mut bytes = 0;
        while let Some((item, size)) = items.pop() {
            if in_transaction.len() + 1 < TRANSACTION_ITEMS && bytes + size < TRANSACTION_BYTES {
                bytes += size;
                in_transaction.push(item);
            } else {
                self.client.put_item().table_name(&self.table).set_item(Some(item)).send().await.map_err(classify)?;
            }
        }
        let mut transaction =
            self.client.transact_write_items().transact_items(TransactWriteItem::builder().update(update).build());
        for item in in_transaction {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?;
            transaction = transaction.transact_items(TransactWriteItem::builder().put(put).build());
        }
        condition_met(transaction.send().await.map_err(classify))
    }

    /// Every step item of an execution (alone and bulk), all pages, strongly consistent.
    async fn step_items(&self, tenant_id: &str, execution_id: &str) -> Result<Vec<Item>, StoreError> {
        let pk = format!("T#{tenant_id}#EX#{execution_id}");
        let (mut items, mut start) = (Vec::new(), None);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&pk))
                .expression_attribute_values(":prefix", s("STEP#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(classify)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(last) => start = Some(last),
                None => return Ok(items),
            }
        }
    }

    /// One conditional UpdateItem; true if the condition held and it applied. `#status`,
    /// `#output` and `#error` (reserved words) may be used in the expressions.
    async fn update_if(
        &self,
        key: Item,
        update: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(reserved_names(update, condition));
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        condition_met(request.send().await.map_err(classify))
    }
}

/// Names for the reserved words `#status`, `#output` and `#error` the expressions use; None when
/// they use none (DynamoDB refuses an empty map).
fn reserved_names(update: &str, condition: &str) -> Option<HashMap<String, String>> {
    let names: HashMap<String, String> = [("#status", "status"), ("#output", "output"), ("#error", "error")]
        .into_iter()
        .filter(|(placeholder, _)| update.contains(placeholder) || condition.contains(placeholder))
        .map(|(placeholder, name)| (placeholder.to_string(), name.to_string()))
        .collect();
    (!names.is_empty()).then_some(names)
}

/// `steps` as bulk items of at most `BULK_ITEM_BYTES` of JSON each, with their sizes.
fn bulk_step_items(
    tenant_id: &str,
    execution_id: &str,
    steps: &[StepRecord],
    ttl: AttributeValue,
) -> Result<Vec<(Item, usize)>, StoreError> {
    let mut chunks: Vec<Vec<&StepRecord>> = vec![Vec::new()];
    let mut size = 0;
    for step in steps {
        let step_size = serde_json::to_string(step).map_err(|e| StoreError::Internal(e.to_string()))?.len();
        if size + step_size > BULK_ITEM_BYTES && !chunks.last().is_some_and(Vec::is_empty) {
            chunks.push(Vec::new());
            size = 0;
        }
        size += step_size;
        chunks.last_mut().expect("one chunk at least").push(step);
    }
    chunks
        .into_iter()
        .map(|chunk| {
            let text = serde_json::to_string(&chunk).map_err(|e| StoreError::Internal(e.to_string()))?;
            let mut item = key(format!("T#{tenant_id}#EX#{execution_id}"), format!("STEP#~{}", crate::model::new_id()));
            item.insert("entity".into(), s("step_bulk"));
            item.insert("ttl".into(), ttl.clone());
            let size = text.len();
            item.insert("bulk_steps".into(), packed(&text)?);
            Ok((item, size))
        })
        .collect()
}

fn step_status(text: &str) -> Result<StepStatus, StoreError> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| StoreError::Internal(format!("unknown step status {text}")))
}

fn step_from(item: &Item) -> Result<StepRecord, StoreError> {
    let json = |name: &str| -> Result<Option<serde_json::Value>, StoreError> {
        get_opt_s(item, name)
            .map(|text| serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("step {name}: {e}"))))
            .transpose()
    };
    let error: Option<StepError> = match json("error")? {
        Some(value) => Some(serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))?),
        None => None,
    };
    Ok(StepRecord {
        node_id: get_s(item, "node_id")?,
        status: step_status(&get_s(item, "status")?)?,
        attempts: get_n(item, "attempts")?,
        started_at: get_opt_s(item, "started_at"),
        finished_at: get_opt_s(item, "finished_at"),
        output: json("output")?.unwrap_or(serde_json::Value::Null),
        error,
        input: json("input")?.unwrap_or(serde_json::Value::Null),
        usage: match json("usage")? {
            Some(value) => serde_json::from_value(value).map_err(|e| StoreError::Internal(e.to_string()))?,
            None => None,
        },
        cost_usd: match item.get("cost_usd") {
            Some(AttributeValue::N(number)) => number.parse().ok(),
            _ => None,
        },
    })
}

#[async_trait]
impl StepStore for DynamoStore {
    async fn load_steps(&self, tenant_id: &str, execution_id: &str) -> Result<Vec<StepRecord>, StoreError> {
        let (mut steps, mut bulk) = (Vec::new(), Vec::new());
        for item in self.step_items(tenant_id, execution_id).await? {
            match unpacked(&item, "bulk_steps")? {
                Some(text) => bulk.extend(
                    serde_json::from_str::<Vec<StepRecord>>(&text)
                        .map_err(|e| StoreError::Internal(format!("bulk steps: {e}")))?,
                ),
                None => steps.push(step_from(&item)?),
            }
        }
        Ok(super::merge_steps(steps, bulk))
    }

    async fn record_step(&self, tenant_id: &str, execution_id: &str, step: &StepRecord) -> Result<(), StoreError> {
        let mut item = key(format!("T#{tenant_id}#EX#{execution_id}"), format!("STEP#{}", step.node_id));
        item.insert("entity".into(), s("step"));
        item.insert("ttl".into(), self.step_ttl());
        item.insert("node_id".into(), s(&step.node_id));
        item.insert("status".into(), s(step.status.as_str()));
        item.insert("attempts".into(), n(step.attempts));
        item.insert("output".into(), s(step.output.to_string()));
        if let Some(error) = &step.error {
            item.insert(
                "error".into(),
                s(serde_json::to_string(error).map_err(|e| StoreError::Internal(e.to_string()))?),
            );
        }
        for (name, value) in [("started_at", &step.started_at), ("finished_at", &step.finished_at)] {
            if let Some(value) = value {
                item.insert(name.into(), s(value));
            }
        }
        if !step.input.is_null() {
            item.insert("input".into(), s(step.input.to_string()));
        }
        if let Some(usage) = &step.usage {
            item.insert(
                "usage".into(),
                s(serde_json::to_string(usage).map_err(|e| StoreError::Internal(e.to_string()))?),
            );
        }
        if let Some(cost) = step.cost_usd {
            item.insert("cost_usd".into(), n(cost));
        }
        self.put_new(item).await
    }

    async fn reset_steps_for_redrive(&self, tenant_id: &str, execution_id: &str) -> Result<(), StoreError> {
        for item in self.step_items(tenant_id, execution_id).await? {
            // Bulk items have no status of their own: they go too (pure steps are recomputed).
            if get_opt_s(&item, "status").as_deref() == Some("succeeded") {
                continue;
            }
            let key: Item = item.into_iter().filter(|(name, _)| name == "pk" || name == "sk").collect();
            self.client.delete_item().table_name(&self.table).set_key(Some(key)).send().await.map_err(classify)?;
        }
        Ok(())
    }
}

#[async_trait]
impl HealthProbe for DynamoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client.describe_table().table_name(&self.table).send().await.map_err(classify)?;
        Ok(())
    }
}

/// Creates the table (local stack and tests; in AWS, template.yaml owns it). Idempotent.
pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
    let attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key_element =
        |name: &str, kind: KeyType| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    let internal = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Internal(e.to_string());
    let result = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk").map_err(internal)?)
        .attribute_definitions(attribute("sk").map_err(internal)?)
        .attribute_definitions(attribute("gsi1pk").map_err(internal)?)
        .attribute_definitions(attribute("gsi1sk").map_err(internal)?)
        .key_schema(key_element("pk", KeyType::Hash).map_err(internal)?)
        .key_schema(key_element("sk", KeyType::Range).map_err(internal)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key_element("gsi1pk", KeyType::Hash).map_err(internal)?)
                .key_schema(key_element("gsi1sk", KeyType::Range).map_err(internal)?)
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .map_err(internal)?,
        )
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
        Err(e) => Err(classify(e)),
    }
}
