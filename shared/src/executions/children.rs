//! Child executions: `flow.subworkflow` (one child) and `flow.map` (a child per item, at most
//! `concurrency` at once). The parent's node starts a **child batch** beside the parent (item
//! `T#<tenant>#EX#<parent>` / `BATCH#<node>`: the inputs, the window, the counts) and the first
//! `concurrency` children, then parks. Each child is an ordinary execution with a derived id
//! (`model::child_execution_id`: parent, node, index), so creating it twice finds the same one,
//! and its own SQS message: its own Lambda invocation. A child's end is counted in the batch in
//! the same transaction as the end itself (exactly once); then the worker starts item
//! `index + concurrency` (a sliding window, kept by the children: nothing writes to the parent
//! per item) and, when every child has ended or too many failed, sends the parent a message.
//! The parent reads its children in item order (one key range) and the node succeeds with their
//! outputs, or fails.
//!
//! An end written outside a worker run (a cancel through the API, the sweeper, the last
//! delivery) is followed by a message for the child itself, so the worker does this after-end
//! work for it too; every part of it is idempotent (derived ids, create-if-absent, a parent
//! that is final ignores messages).

use crate::engine::{Children, NodeFailure};
use crate::error::StoreError;
use crate::model::{
    ChildBatch, ExecutionRecord, ExecutionStatus, MAX_CHILD_DEPTH, NodeSpec, ParentLink, StepError, StepErrorCode,
    child_execution_id,
};
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::values::Values;
use crate::store::{Store, WorkflowStore};
use async_trait::async_trait;
use serde_json::Value;
use std::time::Duration;

/// Default `concurrency` of a flow.map.
pub const DEFAULT_MAP_CONCURRENCY: u32 = 10;
/// Children read per page when a parent collects them.
const CHILDREN_PAGE: usize = 500;

/// How a batch ended, as the parent's node sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    /// Each child's output in item order (null for a child that did not succeed).
    pub outputs: Vec<Value>,
    /// The children that did not succeed: index and error.
    pub failures: Vec<(u32, StepError)>,
    pub tolerated_failures: u32,
}

/// The engine's `Children` port over a store and the queue, for one parent execution.
pub struct ChildLauncher<'a, S: Store + ?Sized> {
    pub store: &'a S,
    pub queue: &'a dyn ExecutionQueue,
    pub parent: &'a ExecutionRecord,
}

/// `tolerated_failures`: a count, or a percentage of `total` (`"10%"`), rounded down.
pub fn tolerated(config: &Value, total: u32) -> u32 {
    match config.get("tolerated_failures") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0).min(u64::from(u32::MAX)) as u32,
        Some(Value::String(text)) => {
            let percent: f64 = text.trim().trim_end_matches('%').trim().parse().unwrap_or(0.0);
            ((percent.clamp(0.0, 100.0) / 100.0) * f64::from(total)).floor() as u32
        }
        _ => 0,
    }
}

fn not_runnable(message: String) -> NodeFailure {
    NodeFailure::permanent(StepErrorCode::ChildWorkflowUnavailable, message)
}

/// The version a child runs: `version` when the node pins one, else the deployed one.
async fn child_version<S: WorkflowStore + ?Sized>(
    store: &S,
    tenant_id: &str,
    node: &NodeSpec,
) -> Result<Result<(String, u32), NodeFailure>, StoreError> {
    let workflow_id = node.config.get("workflow_id").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(workflow) = store.get_workflow(tenant_id, &workflow_id).await? else {
        return Ok(Err(not_runnable(format!("workflow '{workflow_id}' does not exist"))));
    };
    let pinned = node.config.get("version").and_then(Value::as_u64).map(|v| v as u32);
    let version = match pinned.or(workflow.deployed_version) {
        Some(version) => version,
        None => return Ok(Err(not_runnable(format!("workflow '{workflow_id}' has no deployed version")))),
    };
    if store.get_version(tenant_id, &workflow_id, version).await?.is_none() {
        return Ok(Err(not_runnable(format!("workflow '{workflow_id}' has no version {version}"))));
    }
    Ok(Ok((workflow_id, version)))
}

#[async_trait]
impl<S: Store + ?Sized> Children for ChildLauncher<'_, S> {
    async fn begin(&self, node: &NodeSpec, inputs: Vec<Value>) -> Result<Result<(), NodeFailure>, StoreError> {
        let parent = self.parent;
        let (tenant_id, parent_id) = (parent.tenant_id.as_str(), parent.execution_id.as_str());
        let batch = match self.store.get_child_batch(tenant_id, parent_id, &node.id).await? {
            // A resumed parent (a crash before it parked): the batch it started.
            Some(batch) => batch,
            None => {
                let depth = parent.depth + 1;
                if depth > MAX_CHILD_DEPTH {
                    return Ok(Err(NodeFailure::permanent(
                        StepErrorCode::ChildDepthExceeded,
                        format!("child executions nest at most {MAX_CHILD_DEPTH} deep (a cycle of workflows?)"),
                    )));
                }
                let (workflow_id, version) = match child_version(self.store, tenant_id, node).await? {
                    Ok(found) => found,
                    Err(failure) => return Ok(Err(failure)),
                };
                let total = inputs.len() as u32;
                let is_map = node.node_type == "flow.map";
                let concurrency = if is_map {
                    node.config.get("concurrency").and_then(Value::as_u64).unwrap_or(u64::from(DEFAULT_MAP_CONCURRENCY))
                        as u32
                } else {
                    1
                };
                let retention = match (&parent.expires_at, chrono::DateTime::parse_from_rfc3339(&parent.deadline_at)) {
                    (Some(expiry), Ok(deadline)) => chrono::DateTime::parse_from_rfc3339(expiry)
                        .map(|e| (e - deadline).num_seconds().max(0) as u64)
                        .unwrap_or(crate::model::DEFAULT_EXECUTION_RETENTION.as_secs()),
                    _ => crate::model::DEFAULT_EXECUTION_RETENTION.as_secs(),
                };
                let values = Values::new(self.store, tenant_id, parent_id);
                let batch = ChildBatch {
                    tenant_id: tenant_id.to_string(),
                    parent_execution_id: parent_id.to_string(),
                    node_id: node.id.clone(),
                    workflow_id,
                    version,
                    inputs: values.keep(&format!("steps/{}/children", node.id), Value::Array(inputs)).await?,
                    total,
                    concurrency: concurrency.max(1),
                    tolerated_failures: if is_map { tolerated(&node.config, total) } else { 0 },
                    depth,
                    request_id: parent.request_id.clone(),
                    retention_seconds: retention,
                    succeeded: 0,
                    failed: 0,
                    generation: parent.redrive_count,
                };
                if !self.store.put_child_batch(&batch).await? {
                    // Another delivery of the parent started it a moment ago: use that one.
                    self.store
                        .get_child_batch(tenant_id, parent_id, &node.id)
                        .await?
                        .ok_or_else(|| StoreError::Internal("a child batch vanished".into()))?
                } else {
                    batch
                }
            }
        };
        if parent.redrive_count > batch.generation {
            // The parent was redriven: its failed children run again, and only those; every
            // window chain that stopped (at a failure beyond the tolerance) goes on from where
            // it stopped.
            redrive_failed_children(self.store, self.queue, &batch).await?;
            for chain in 0..batch.concurrency.min(batch.total) {
                continue_chain(self.store, self.queue, &batch, chain).await?;
            }
            self.store.set_batch_generation(tenant_id, parent_id, &node.id, parent.redrive_count).await?;
        }
        let inputs = batch_inputs(self.store, &batch).await?;
        for index in 0..batch.concurrency.min(batch.total) {
            start_child(self.store, self.queue, &batch, &inputs, index).await?;
        }
        Ok(Ok(()))
    }

    async fn outcome(&self, node: &NodeSpec) -> Result<Option<BatchOutcome>, StoreError> {
        let (tenant_id, parent_id) = (self.parent.tenant_id.as_str(), self.parent.execution_id.as_str());
        let Some(batch) = self.store.get_child_batch(tenant_id, parent_id, &node.id).await? else {
            return Err(StoreError::Internal(format!("node {}'s child batch is gone", node.id)));
        };
        if !(batch.complete() || batch.failed_beyond_tolerance()) {
            return Ok(None);
        }
        let mut outputs = vec![Value::Null; batch.total as usize];
        let mut failures = Vec::new();
        let mut from = 0;
        loop {
            let page = self.store.list_children(tenant_id, parent_id, &node.id, from, CHILDREN_PAGE).await?;
            let Some(last) = page.last().and_then(|c| c.parent.as_ref()).map(|p| p.index) else { break };
            for child in page {
                let index = child.parent.as_ref().map(|p| p.index).unwrap_or_default();
                match child.status {
                    ExecutionStatus::Succeeded => {
                        let values = Values::new(self.store, tenant_id, &child.execution_id);
                        if let Some(slot) = outputs.get_mut(index as usize) {
                            *slot = values.resolve(child.output).await?;
                        }
                    }
                    status if status.is_final() => {
                        let error = child.error.unwrap_or(StepError {
                            code: status.as_str().to_uppercase(),
                            message: format!("the child execution was {}", status.as_str()),
                        });
                        failures.push((index, error));
                    }
                    // Counted as ended but not read as ended: look again at the next wake-up
                    // rather than report a null for it (only a complete batch must be whole).
                    _ if batch.complete() && !batch.failed_beyond_tolerance() => return Ok(None),
                    _ => {}
                }
            }
            from = last + 1;
        }
        Ok(Some(BatchOutcome { outputs, failures, tolerated_failures: batch.tolerated_failures }))
    }
}

/// Redrives every child of the batch that did not succeed (each with its count taken back in the
/// same write), so a redriven map runs only its failed items again.
async fn redrive_failed_children<S: Store + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    batch: &ChildBatch,
) -> Result<(), StoreError> {
    let tenant_id = batch.tenant_id.as_str();
    let mut from = 0;
    loop {
        let page =
            store.list_children(tenant_id, &batch.parent_execution_id, &batch.node_id, from, CHILDREN_PAGE).await?;
        let Some(last) = page.last().and_then(|c| c.parent.as_ref()).map(|p| p.index) else { return Ok(()) };
        for child in page.iter().filter(|c| c.status.is_final() && c.status != ExecutionStatus::Succeeded) {
            let Some(link) = &child.parent else { continue };
            let definition = store.get_execution_definition(tenant_id, &child.execution_id).await?;
            let timeout = definition.as_ref().map(super::start::execution_timeout).unwrap_or_default();
            let deadline = crate::model::rfc3339_in(timeout.as_secs() as i64);
            let hold = format!("redrive/{}", batch.parent_execution_id);
            let (now, hold_until) =
                (crate::model::now_rfc3339(), crate::model::rfc3339_in(super::start::REDRIVE_HOLD.as_secs() as i64));
            let kept = super::start::kept_spend(&store.load_steps(tenant_id, &child.execution_id).await?);
            if !store
                .redrive_child(tenant_id, &child.execution_id, link, &deadline, &hold, &hold_until, &now, &kept)
                .await?
            {
                continue;
            }
            store.reset_steps_for_redrive(tenant_id, &child.execution_id).await?;
            store.release_lease(tenant_id, &child.execution_id, &hold, &[]).await?;
            let message = ExecutionMessage {
                tenant_id: tenant_id.to_string(),
                execution_id: child.execution_id.clone(),
                request_id: batch.request_id.clone(),
            };
            queue.send(&message).await?;
        }
        from = last + 1;
    }
}

/// Starts the first item of a window chain (`from`, `from + concurrency`, ...) that has no
/// execution yet. Items that exist are skipped: normally only `from` is looked at (it is new);
/// after a redrive a chain may have stopped at a failed item whose successors never started.
async fn continue_chain<S: Store + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    batch: &ChildBatch,
    from: u32,
) -> Result<(), StoreError> {
    let mut index = from;
    while index < batch.total {
        let id = child_execution_id(&batch.parent_execution_id, &batch.node_id, index);
        match store.get_execution(&batch.tenant_id, &id).await? {
            None => {
                let inputs = batch_inputs(store, batch).await?;
                return start_child(store, queue, batch, &inputs, index).await;
            }
            // Running (or queued, or redriven): its own end moves the chain on.
            Some(child) if !child.status.is_final() => return Ok(()),
            Some(_) => index += batch.concurrency,
        }
    }
    Ok(())
}

/// The batch's inputs, whole.
async fn batch_inputs<S: Store + ?Sized>(store: &S, batch: &ChildBatch) -> Result<Vec<Value>, StoreError> {
    let values = Values::new(store, &batch.tenant_id, &batch.parent_execution_id);
    match values.resolve(batch.inputs.clone()).await? {
        Value::Array(inputs) => Ok(inputs),
        _ => Err(StoreError::Internal("a child batch's inputs are not a list".into())),
    }
}

/// Creates child `index` (if it does not exist yet) and sends its message.
async fn start_child<S: Store + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    batch: &ChildBatch,
    inputs: &[Value],
    index: u32,
) -> Result<(), StoreError> {
    let tenant_id = batch.tenant_id.as_str();
    let id = child_execution_id(&batch.parent_execution_id, &batch.node_id, index);
    let existing = store.get_execution(tenant_id, &id).await?;
    if existing.as_ref().is_some_and(|child| child.status.is_final()) {
        // Ended already (a resumed or redriven parent walks the window again): nothing to send.
        return Ok(());
    }
    if existing.is_none() {
        let version = store
            .get_version(tenant_id, &batch.workflow_id, batch.version)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("version {} of a child's workflow is gone", batch.version)))?;
        let input = inputs.get(index as usize).cloned().unwrap_or(Value::Null);
        let timeout = super::start::execution_timeout(&version.definition);
        let mut record = ExecutionRecord::queued(
            tenant_id,
            &batch.workflow_id,
            Some(batch.version),
            Value::Null,
            &batch.request_id,
            timeout,
        )
        .retained_for(Duration::from_secs(batch.retention_seconds));
        record.execution_id = id.clone();
        record.input = Values::new(store, tenant_id, &id).keep("input", input).await?;
        record.parent =
            Some(ParentLink { execution_id: batch.parent_execution_id.clone(), node_id: batch.node_id.clone(), index });
        record.depth = batch.depth;
        match store.create_execution(&record, &version.definition).await {
            // Created meanwhile by another delivery: its message is on its way too.
            Ok(()) | Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
    }
    let message =
        ExecutionMessage { tenant_id: tenant_id.to_string(), execution_id: id, request_id: batch.request_id.clone() };
    queue.send(&message).await
}

/// After a child's end: start the item `concurrency` after it (the window slides), and wake the
/// parent when every child has ended or too many failed. Idempotent: run again on every
/// delivery that finds the child final.
pub async fn after_child_end<S: Store + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    child: &ExecutionRecord,
) -> Result<(), StoreError> {
    let Some(link) = &child.parent else { return Ok(()) };
    let tenant_id = child.tenant_id.as_str();
    let Some(batch) = store.get_child_batch(tenant_id, &link.execution_id, &link.node_id).await? else {
        return Ok(());
    };
    let Some(parent) = store.get_execution(tenant_id, &link.execution_id).await? else { return Ok(()) };
    if parent.status.is_final() {
        return Ok(());
    }
    if !batch.failed_beyond_tolerance() {
        continue_chain(store, queue, &batch, link.index + batch.concurrency).await?;
    }
    if batch.complete() || batch.failed_beyond_tolerance() {
        let message = ExecutionMessage {
            tenant_id: tenant_id.to_string(),
            execution_id: parent.execution_id.clone(),
            request_id: parent.request_id.clone(),
        };
        queue.send(&message).await?;
    }
    Ok(())
}

/// Whether a child should stop because its parent ended (cancelled, failed, timed out): a
/// parent's cancel reaches its children this way, at their next delivery or within a second of
/// a running child's cancel check.
pub async fn parent_ended<S: Store + ?Sized>(store: &S, child: &ExecutionRecord) -> Result<bool, StoreError> {
    // Any ancestor: a cancelled grandparent stops a map its parked child started.
    let mut link = child.parent.clone();
    for _ in 0..=MAX_CHILD_DEPTH {
        let Some(current) = link else { return Ok(false) };
        match store.get_execution(&child.tenant_id, &current.execution_id).await? {
            Some(ancestor) if !ancestor.status.is_final() => link = ancestor.parent,
            _ => return Ok(true),
        }
    }
    Ok(false)
}
