//! Answers to approvals (`flow.approval`). An answer is the node's step, recorded with the
//! same conditional write as any side-effecting result, so it is single-use by construction:
//! the first answer wins, a second finds the step recorded; an expiry the worker recorded first
//! wins over a late answer the same way. After recording, a message resumes the execution (a
//! duplicate resume finds nothing new to do).
//!
//! Two ways in: the callback token (`POST /v1/callbacks/{token}`; no API key, the token is
//! the credential, bound to its tenant, execution and node) and the tenant's own key with the
//! execution and node (`POST /v1/executions/{id}/callbacks/{node_id}`, for operators).

use crate::error::StoreError;
use crate::model::{ExecutionRecord, StepRecord, StepStatus, WaitKind, now_rfc3339};
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::values::Values;
use crate::store::{ExecutionStore, StepStore, ValueStore};
use serde_json::Value;

/// Why an answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// Token unknown, used or expired, or its execution ended (all alike: a token reveals nothing).
    #[error("the callback is unknown, already used, or expired")]
    NotFound,
    /// The execution is not the caller's (operator route).
    #[error("the execution was not found")]
    ExecutionNotFound,
    /// Operator route: the node is not an approval the execution waits on.
    #[error("{0}")]
    NotWaiting(String),
    /// The body does not match the approval's `payload_schema`: `{path, message}` each.
    #[error("the body does not match the approval's payload_schema")]
    PayloadInvalid(Vec<Value>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An answer accepted: the approval's step is recorded and the execution resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    pub execution_id: String,
    pub node_id: String,
}

/// Answers with a callback token (`POST /v1/callbacks/{token}`).
pub async fn answer_by_token<S>(
    store: &S,
    queue: &dyn ExecutionQueue,
    token: &str,
    body: Value,
) -> Result<Answered, CallbackError>
where
    S: ExecutionStore + StepStore + ValueStore + ?Sized,
{
    // Tokens are 43 URL-safe base64 characters: anything else is not worth a read.
    if token.len() != 43 || !token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(CallbackError::NotFound);
    }
    let Some(callback) = store.find_callback(&crate::auth::hash_key(token)).await? else {
        return Err(CallbackError::NotFound);
    };
    if now_rfc3339() >= callback.expires_at {
        return Err(CallbackError::NotFound);
    }
    let execution = match store.get_execution(&callback.tenant_id, &callback.execution_id).await? {
        Some(execution) if !execution.status.is_final() && !execution.is_expired() => execution,
        _ => return Err(CallbackError::NotFound),
    };
    record_answer(store, queue, &execution, &callback.node_id, body).await?.ok_or(CallbackError::NotFound)
}

/// Answers as the tenant (`POST /v1/executions/{execution_id}/callbacks/{node_id}`): the node
/// must be an approval the execution is waiting on.
pub async fn answer_by_node<S>(
    store: &S,
    queue: &dyn ExecutionQueue,
    tenant_id: &str,
    execution_id: &str,
    node_id: &str,
    body: Value,
) -> Result<Answered, CallbackError>
where
    S: ExecutionStore + StepStore + ValueStore + ?Sized,
{
    let execution = match store.get_execution(tenant_id, execution_id).await? {
        Some(execution) if !execution.is_expired() => execution,
        _ => return Err(CallbackError::ExecutionNotFound),
    };
    if execution.status.is_final() {
        return Err(CallbackError::NotWaiting(format!("the execution has ended ({})", execution.status.as_str())));
    }
    let now = now_rfc3339();
    let waiting = execution.waits.iter().find(|w| w.node_id == node_id && w.kind == WaitKind::Approval);
    match waiting {
        None => {
            return Err(CallbackError::NotWaiting(format!(
                "the execution is not waiting for an answer on node '{}'",
                crate::api::truncate(node_id, 64)
            )));
        }
        Some(wait) if wait.until.as_deref().is_some_and(|until| until <= now.as_str()) => {
            return Err(CallbackError::NotWaiting("the approval has expired".into()));
        }
        Some(_) => {}
    }
    record_answer(store, queue, &execution, node_id, body)
        .await?
        .ok_or_else(|| CallbackError::NotWaiting("the approval was already answered (or expired)".into()))
}

/// Checks the body against the approval's schema, records it as the node's step and resumes the
/// execution. None when the node's step was already recorded (answered, or expired).
async fn record_answer<S>(
    store: &S,
    queue: &dyn ExecutionQueue,
    execution: &ExecutionRecord,
    node_id: &str,
    body: Value,
) -> Result<Option<Answered>, CallbackError>
where
    S: ExecutionStore + StepStore + ValueStore + ?Sized,
{
    let (tenant_id, execution_id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
    let definition = store
        .get_execution_definition(tenant_id, execution_id)
        .await?
        .ok_or_else(|| StoreError::Internal(format!("execution {execution_id} has no definition snapshot")))?;
    let Some(node) = definition.nodes.iter().find(|n| n.id == node_id && n.node_type == "flow.approval") else {
        return Err(CallbackError::NotWaiting("that node is not a flow.approval of this execution".into()));
    };
    if let Some(schema) = crate::nodes::flow_approval::payload_schema(node) {
        // Validation compiled it when the workflow was saved; a schema that fails now is ours.
        let problems = crate::validation::instance_problems(schema, &body, "")
            .ok_or_else(|| StoreError::Internal("an approval's payload_schema does not compile".into()))?;
        if !problems.is_empty() {
            return Err(CallbackError::PayloadInvalid(problems));
        }
    }
    let since = execution.waits.iter().find(|w| w.node_id == node_id).map(|w| w.since.clone());
    let values = Values::new(store, tenant_id, execution_id);
    let output = values.keep(&format!("steps/{node_id}/{}/output", crate::model::new_id()), body).await?;
    let step = StepRecord {
        node_id: node_id.to_string(),
        status: StepStatus::Succeeded,
        attempts: 1,
        started_at: since,
        finished_at: Some(now_rfc3339()),
        output,
        ..StepRecord::default()
    };
    match store.record_step(tenant_id, execution_id, &step).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let message = ExecutionMessage {
        tenant_id: tenant_id.to_string(),
        execution_id: execution_id.to_string(),
        request_id: execution.request_id.clone(),
    };
    if let Err(e) = queue.send(&message).await {
        // The answer is kept; the sweeper resumes the execution within its interval instead.
        tracing::error!(error = %e, "resume message not sent; marking the execution due for the sweeper");
        store.set_waiting(tenant_id, execution_id, None, &now_rfc3339()).await?;
    }
    tracing::info!(tenant_id, execution_id, node_id, "approval answered");
    Ok(Some(Answered { execution_id: execution_id.to_string(), node_id: node_id.to_string() }))
}
