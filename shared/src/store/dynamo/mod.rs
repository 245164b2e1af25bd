//! DynamoDB adapter: single-table design. The key design is documented in ARCHITECTURE.md:
//!
//! | entity   | pk                      | sk            |
//! |----------|-------------------------|---------------|
//! | tenant   | `T#<tenant>`            | `TENANT`      |
//! | workflow | `T#<tenant>`            | `WF#<ulid>`   |
//! | version  | `T#<tenant>#WF#<ulid>`  | `V#<10-digit>`|
//! | api key  | `KEY#<sha256 hex>`      | `KEY`         | gsi1: `T#<tenant>` / `APIKEY#<ulid>`
//! | credential | `T#<tenant>`          | `CRED#<name>` |
//! | execution | `T#<tenant>`           | `EX#<ulid>`   | gsi1: `T#<tenant>#WF#<ulid>` / `EX#<ulid>`; while unfinished, sweep: `SWEEP#<0-3>` / `sweep_at`
//! | running  | `T#<tenant>`            | `RUNNING`     | the tenant's run slots (execution -> lease expiry)
//! | callback | `CB#<sha256 hex of token>` | `CB`       | an approval's token -> tenant, execution, node
//! | trigger  | `T#<tenant>#TRG#<workflow>` | `TRG#<ulid>` | the trigger as JSON (`doc`), `revision`
//! | hook     | `HOOK#<hook id>`        | `HOOK`        | a webhook trigger's copy, found by its URL's id
//! | trigger count | `T#<tenant>`       | `TRIGGERS`    | the tenant's triggers (limit check)
//! | snapshot | `T#<tenant>#EX#<ulid>`  | `DEF`         |
//! | step     | `T#<tenant>#EX#<ulid>`  | `STEP#<node>` |
//! | events   | `T#<tenant>#EX#<ulid>`  | `EV#<10-digit seq>` | a batch of execution events (`events`)
//!
//! Every tenant-owned key starts with the tenant id, so no request can name another tenant's
//! item. Listings are Queries on one partition, newest first (ULIDs sort by time).

use super::{
    CredentialStore, DeployOutcome, ExecutionEnd, ExecutionFilter, ExecutionStore, HealthProbe, IdempotencyClaim,
    LeaseGuard, Page, StepStore, StrandedExecution, TenantStore, VersionSummary, WorkflowStore, WorkflowSummary,
    version_sort_key,
};
use crate::error::StoreError;
use crate::model::{ApiKeyRecord, CredentialRecord, Tenant, VersionRecord, WorkflowDefinition, WorkflowRecord};
use crate::model::{CallbackRecord, ChildBatch, ExecutionRecord, ExecutionStatus, ParentLink, Wait};
use crate::model::{StepError, StepRecord, StepStatus};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    Projection, ProjectionType, Put, ScalarAttributeType, TransactWriteItem, Update, WriteRequest,
};
use std::collections::HashMap;

mod assistant;
mod budgets;
mod credentials;
mod events;
mod executions;
mod item;
mod keys;
mod steps;
mod table;
mod tenants;
mod triggers;
mod usage;
mod workflows;

use item::*;
use keys::*;
use steps::{TRANSACTION_BYTES, TRANSACTION_ITEMS, bulk_step_items};
pub use table::{ChangeStream, SWEEP_PROJECTION, create_table};
pub use usage::finishes_from_stream;

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
    /// Where values too large for an item go (S3), for the functions that write or read them.
    values: Option<std::sync::Arc<dyn crate::store::ValueStore>>,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoStore {
            client,
            table: table.into(),
            execution_retention: crate::model::DEFAULT_EXECUTION_RETENTION,
            values: None,
        }
    }

    /// The store with a value store for large values (`model::values`).
    pub fn with_values(self, values: std::sync::Arc<dyn crate::store::ValueStore>) -> Self {
        DynamoStore { values: Some(values), ..self }
    }

    fn values(&self) -> Result<&dyn crate::store::ValueStore, StoreError> {
        self.values
            .as_deref()
            .ok_or_else(|| StoreError::Internal("this function was built without a value store".into()))
    }

    /// The store with `EXECUTION_RETENTION_DAYS` applied to the steps it writes.
    pub fn with_execution_retention(self, retention: std::time::Duration) -> Self {
        DynamoStore { execution_retention: retention, ..self }
    }

    /// The `ttl` attribute of a step written now: DynamoDB deletes the item after it. Its
    /// execution expires at its deadline plus the retention, and a step is written before that
    /// deadline, at most the longest timeout (30 days) before it: so a step is kept for the
    /// retention plus that longest timeout, and never expires before its execution (a redrive
    /// relies on it). It may outlive its execution by up to 30 days, unreachable: every read
    /// goes through the execution, which answers 404 from its `expires_at` on.
    fn step_ttl(&self) -> AttributeValue {
        let kept = self.execution_retention + crate::model::MAX_WAITING_EXECUTION_TIMEOUT;
        n(chrono::Utc::now().timestamp() + kept.as_secs() as i64)
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

/// The resume point (the id part of a sort key) from a LastEvaluatedKey.
fn resume_after(last_key: &Item, prefix: &str) -> Option<String> {
    get_opt_s(last_key, "sk").and_then(|sk| sk.strip_prefix(prefix).map(str::to_string))
}

/// Runs `attempt` up to `attempts` times while it fails as `Unavailable` (DynamoDB cancels
/// transactions that overlap on an item: TransactionConflict), sleeping a growing, jittered
/// 20-200 ms × the attempt number between tries; the last failure is returned as it is.
async fn retry_conflicts<T, F, Fut>(attempts: u64, mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut tried = 1;
    loop {
        match attempt().await {
            Err(StoreError::Unavailable(_)) if tried < attempts => {
                let jitter = 20 + rand::random::<u64>() % 180;
                tokio::time::sleep(std::time::Duration::from_millis(jitter * tried)).await;
                tried += 1;
            }
            other => return other,
        }
    }
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
        // "Item size has exceeded the maximum allowed size" (and its transactional twin).
        Some("ValidationException" | "TransactionCanceledException")
            if detail.contains("size") && detail.contains("exceed") =>
        {
            StoreError::TooLarge
        }
        Some("TransactionCanceledException") if detail.contains("ConditionalCheckFailed") => {
            StoreError::ConditionFailed
        }
        _ => super::sdk_error::classify_sdk_error(
            err,
            &[
                "ProvisionedThroughputExceededException",
                "ThrottlingException",
                "RequestLimitExceeded",
                "InternalServerError",
                "ServiceUnavailable",
                "TransactionConflictException",
                "TransactionCanceledException",
            ],
        ),
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
        self.update_if(api_key_key(key_hash), update, condition, vec![(":at", s(at))]).await?;
        Ok(())
    }
}

impl DynamoStore {
    /// Applies `update` to the execution item and keeps `steps` in bulk items
    /// (`STEP#~<ulid>`, never a node id) in the same TransactWriteItems, so a checkpoint or a
    /// finish is one request. Bulk items beyond one transaction's limits (huge outputs only)
    /// are put first, on their own. `also` joins the same transaction (a child's end counted in
    /// its parent's batch).
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
        also: Option<Update>,
    ) -> Result<bool, StoreError> {
        if steps.is_empty() && also.is_none() {
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
        if let Some(also) = also {
            transaction = transaction.transact_items(TransactWriteItem::builder().update(also).build());
        }
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
        self.query_prefix(&execution_items_pk(tenant_id, execution_id), STEP_PREFIX).await
    }

    /// Every item of partition `pk` whose sort key begins with `prefix`, all pages, strongly
    /// consistent.
    async fn query_prefix(&self, pk: &str, prefix: &str) -> Result<Vec<Item>, StoreError> {
        let (mut items, mut start) = (Vec::new(), None);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(pk))
                .expression_attribute_values(":prefix", s(prefix))
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

/// Names for the reserved words `#status`, `#output`, `#error` and `#usage` the expressions use; None when
/// they use none (DynamoDB refuses an empty map).
fn reserved_names(update: &str, condition: &str) -> Option<HashMap<String, String>> {
    let names: HashMap<String, String> =
        [("#status", "status"), ("#output", "output"), ("#error", "error"), ("#usage", "usage")]
            .into_iter()
            .filter(|(placeholder, _)| update.contains(placeholder) || condition.contains(placeholder))
            .map(|(placeholder, name)| (placeholder.to_string(), name.to_string()))
            .collect();
    (!names.is_empty()).then_some(names)
}

#[async_trait]
impl HealthProbe for DynamoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.client.describe_table().table_name(&self.table).send().await.map_err(classify)?;
        Ok(())
    }
}

/// Large values go to the value store the adapter was given (`with_values`).
#[async_trait::async_trait]
impl crate::store::ValueStore for DynamoStore {
    async fn put_value(&self, key: &str, json: Vec<u8>) -> Result<(), StoreError> {
        self.values()?.put_value(key, json).await
    }
    async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.values()?.get_value(key).await
    }
    async fn value_url(&self, key: &str, expires_in: std::time::Duration) -> Result<String, StoreError> {
        self.values()?.value_url(key, expires_in).await
    }
}
