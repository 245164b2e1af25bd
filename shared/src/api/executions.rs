//! Execution routes: start (queued through SQS), read with steps, cancel.

use super::views::{
    CancelAccepted, ExecutionLinks, ExecutionStarted, ExecutionSummaryView, ExecutionTotals, ExecutionView, Page,
    RedriveAccepted, StartExecutionRequest, StepView, VersionRef,
};
use super::{Call, paging, truncate, workflows};
use crate::cursor;
use crate::error::{ApiError, ErrorCode, StoreError};
use crate::http::{self, Reply};
use crate::model::StepErrorCode;
use crate::model::StepStatus;
use crate::model::{DEFAULT_EXECUTION_TIMEOUT, ExecutionRecord, ExecutionStatus, REDRIVE_MARGIN};
use crate::queue::ExecutionMessage;
use crate::store::IdempotencyClaim;
use lambda_http::http::StatusCode;

use serde_json::{Value, json};

/// Largest execution input.
pub const MAX_INPUT_BYTES: usize = 256 * 1024;

fn execution_not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::ExecutionNotFound, format!("execution '{}' was not found", truncate(id, 64)))
}

/// The tenant's execution, or 404: missing, another tenant's, or past its retention (its items
/// are being deleted, so it answers as the deleted one will).
async fn find_execution(call: &Call<'_>, id: &str) -> Result<ExecutionRecord, ApiError> {
    match call.app.store()?.get_execution(call.tenant_id, id).await? {
        Some(execution) if !execution.is_expired() => Ok(execution),
        _ => Err(execution_not_found(id)),
    }
}

fn execution_id(call: &Call<'_>) -> Result<String, ApiError> {
    http::ulid_param(call.req, "execution_id").map_err(|raw| execution_not_found(&raw))
}

fn link(id: &str) -> String {
    format!("/v1/executions/{id}")
}

pub async fn start(call: &Call<'_>) -> Result<Reply, ApiError> {
    let request: StartExecutionRequest = http::typed_body(call.req)?;
    let workflow_id = workflows::workflow_id(call)?;
    let workflow = workflows::load(call, &workflow_id).await?;
    let (version, definition) = match &request.version {
        None => match workflow.deployed_version {
            Some(n) => (Some(n), None),
            None => {
                return Err(ApiError::new(ErrorCode::NoDeployedVersion, "the workflow has no deployed version")
                    .suggest(format!("Deploy one with PUT /v1/workflows/{workflow_id}/deployment, or pass \"version\": \"draft\" or a version number.")));
            }
        },
        Some(Value::String(s)) if s == "draft" => (None, Some(workflow.definition.clone())),
        Some(v) => match v.as_u64().filter(|n| (1..=u32::MAX as u64).contains(n)) {
            Some(n) => (Some(n as u32), None),
            None => return Err(ApiError::invalid_request("version must be a positive integer or \"draft\"")),
        },
    };
    let definition = match (definition, version) {
        (Some(definition), _) => definition,
        (None, Some(n)) => {
            call.app
                .store()?
                .get_version(call.tenant_id, &workflow_id, n)
                .await?
                .ok_or_else(|| ApiError::version_not_found(&workflow_id, n))?
                .definition
        }
        (None, None) => unreachable!("a draft run carries its definition"),
    };
    let input = request.input.unwrap_or_else(|| json!({}));
    if !input.is_object() {
        return Err(ApiError::invalid_request("input must be a JSON object"));
    }
    let size = input.to_string().len();
    if size > MAX_INPUT_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the input is {size} bytes; the limit is {MAX_INPUT_BYTES}"),
        ));
    }
    if let Some(schema) = &definition.input_schema {
        let validator = jsonschema::validator_for(schema)
            .map_err(|_| ApiError::new(ErrorCode::InternalError, "the workflow's input_schema cannot be used"))?;
        let problems: Vec<Value> = validator
            .iter_errors(&input)
            .map(|e| json!({ "path": format!("/input{}", e.instance_path().as_str()), "message": e.to_string() }))
            .collect();
        if !problems.is_empty() {
            return Err(ApiError::new(ErrorCode::InputInvalid, "the input does not match the workflow's input_schema")
                .with_details(problems));
        }
    }
    let idempotency_key = match http::header(call.req, "idempotency-key") {
        None => None,
        Some(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => Some(key),
        Some(_) => return Err(ApiError::invalid_request("Idempotency-Key must be 1-255 visible ASCII characters")),
    };
    // What "the same request" means: the same input and version, whatever the JSON key order.
    let body_hash = crate::auth::hash_key(&json!({ "input": input, "version": request.version }).to_string());
    let request_id = http::request_id(call.req);
    let mut record = ExecutionRecord::queued(
        call.tenant_id,
        &workflow_id,
        version,
        input,
        &request_id,
        execution_timeout(&definition),
    )
    .retained_for(call.app.config.execution_retention);
    if let Some(key) = idempotency_key {
        let claim = call
            .app
            .store()?
            .claim_idempotency_key(
                call.tenant_id,
                &crate::auth::hash_key(key),
                &body_hash,
                &record.execution_id,
                &crate::model::rfc3339_in(24 * 3600),
                &crate::model::now_rfc3339(),
            )
            .await?;
        match claim {
            IdempotencyClaim::New => {}
            IdempotencyClaim::Existing { body_hash: earlier, .. } if earlier != body_hash => {
                return Err(ApiError::new(
                    ErrorCode::IdempotencyKeyReused,
                    "this Idempotency-Key was already used with a different body",
                )
                .suggest("Use a new Idempotency-Key for a different request."));
            }
            IdempotencyClaim::Existing { execution_id, .. } => {
                match call.app.store()?.get_execution(call.tenant_id, &execution_id).await? {
                    Some(existing) => return Ok(Reply::ok(started_view(&existing))),
                    // The first attempt stopped between claiming the key and creating the
                    // execution: finish it now, under the id the key names.
                    None => record.execution_id = execution_id,
                }
            }
        }
    }
    call.app.store()?.create_execution(&record, &definition).await?;
    enqueue(call, &record.execution_id, request_id).await?;
    let mut reply = Reply::created(started_view(&record), link(&record.execution_id));
    reply.status = StatusCode::ACCEPTED;
    Ok(reply)
}

/// Sends the execution to the worker. If the queue refuses, the execution is failed with
/// `QUEUE_UNAVAILABLE` at once (never left queued with no worker to see it), and can be redriven.
async fn enqueue(call: &Call<'_>, execution_id: &str, request_id: String) -> Result<(), ApiError> {
    let message =
        ExecutionMessage { tenant_id: call.tenant_id.to_string(), execution_id: execution_id.to_string(), request_id };
    let Err(e) = call.app.queue.send(&message).await else {
        return Ok(());
    };
    let error = crate::model::StepError {
        code: StepErrorCode::QueueUnavailable.into(),
        message: "the execution could not be queued".into(),
    };
    let now = crate::model::now_rfc3339();
    let _ = call
        .app
        .store()?
        .finish_execution(call.tenant_id, execution_id, ExecutionStatus::Failed, Value::Null, Some(error), now, &[])
        .await;
    Err(match e {
        StoreError::Internal(detail) => StoreError::Unavailable(detail),
        other => other,
    }
    .into())
}

fn started_view(record: &ExecutionRecord) -> ExecutionStarted {
    ExecutionStarted {
        execution_id: record.execution_id.clone(),
        status: record.status.as_str(),
        workflow_id: record.workflow_id.clone(),
        version: VersionRef(record.version),
        created_at: record.created_at.clone(),
        links: ExecutionLinks { self_link: link(&record.execution_id) },
    }
}

/// The definition an execution runs (every execution has one; a missing one is our fault).
async fn snapshot(call: &Call<'_>, id: &str) -> Result<crate::model::WorkflowDefinition, ApiError> {
    let definition = call.app.store()?.get_execution_definition(call.tenant_id, id).await?;
    Ok(definition.ok_or_else(|| StoreError::Internal(format!("execution {id} has no definition snapshot")))?)
}

pub async fn get(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = execution_id(call)?;
    let execution = find_execution(call, &id).await?;
    let definition = snapshot(call, &id).await?;
    let recorded: std::collections::HashMap<String, crate::model::StepRecord> =
        call.app.store()?.load_steps(call.tenant_id, &id).await?.into_iter().map(|s| (s.node_id.clone(), s)).collect();
    let steps = definition
        .nodes
        .iter()
        .map(|node| {
            let step = recorded.get(&node.id);
            StepView {
                node_id: node.id.clone(),
                node_type: node.node_type.clone(),
                status: step.map(|s| s.status).unwrap_or(StepStatus::Pending),
                attempts: step.map(|s| s.attempts).unwrap_or(0),
                started_at: step.and_then(|s| s.started_at.clone()),
                finished_at: step.and_then(|s| s.finished_at.clone()),
                input: step.map(|s| s.input.clone()).unwrap_or(Value::Null),
                output: step.map(|s| s.output.clone()).unwrap_or(Value::Null),
                error: step.and_then(|s| s.error.clone()),
                usage: step.and_then(|s| s.usage),
                cost_usd: step.and_then(|s| s.cost_usd),
            }
        })
        .collect();
    let duration_ms = match (&execution.started_at, &execution.finished_at) {
        (Some(start), Some(end)) => {
            let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
            match (parse(start), parse(end)) {
                (Some(a), Some(b)) => Some((b - a).num_milliseconds()),
                _ => None,
            }
        }
        _ => None,
    };
    let totals = totals(recorded.values());
    Ok(Reply::ok(ExecutionView {
        execution_id: execution.execution_id,
        workflow_id: execution.workflow_id,
        version: VersionRef(execution.version),
        status: execution.status.as_str(),
        input: execution.input,
        output: execution.output,
        error: execution.error,
        created_at: execution.created_at,
        started_at: execution.started_at,
        finished_at: execution.finished_at,
        duration_ms,
        deadline_at: execution.deadline_at,
        cancel_requested: execution.cancel_requested,
        steps,
        redrive_count: execution.redrive_count,
        expires_at: execution.expires_at,
        totals,
    }))
}

/// Token and cost totals over the steps that called a model. `cost_usd` sums the priced steps;
/// `unpriced_steps` counts model calls whose price is unknown, so a partial sum never passes for
/// the whole bill.
fn totals<'a>(steps: impl Iterator<Item = &'a crate::model::StepRecord>) -> ExecutionTotals {
    let (mut input_tokens, mut output_tokens, mut cost, mut unpriced) = (0u64, 0u64, 0f64, 0u32);
    for step in steps {
        if let Some(usage) = step.usage {
            input_tokens += usage.input_tokens;
            output_tokens += usage.output_tokens;
            match step.cost_usd {
                Some(c) => cost += c,
                None => unpriced += 1,
            }
        }
    }
    ExecutionTotals { input_tokens, output_tokens, cost_usd: crate::model::round_usd(cost), unpriced_steps: unpriced }
}

pub async fn cancel(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = execution_id(call)?;
    let execution = find_execution(call, &id).await?;
    if execution.status.is_final() || !call.app.store()?.request_cancel(call.tenant_id, &id).await? {
        return Err(ApiError::new(
            ErrorCode::ExecutionFinished,
            format!("the execution already finished as {}", execution.status.as_str()),
        ));
    }
    Ok(Reply::accepted(CancelAccepted { execution_id: id, status: execution.status.as_str(), cancel_requested: true }))
}

/// Resumes a failed or timed-out execution: succeeded steps stay (their nodes are not run, or
/// paid for, again); failed and skipped steps are forgotten, so failed and unrun nodes run and
/// branches are decided afresh. The execution gets a new deadline of its full timeout.
pub async fn redrive(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = execution_id(call)?;
    let execution = find_execution(call, &id).await?;
    let not_redrivable = |status: ExecutionStatus| {
        ApiError::new(
            ErrorCode::ExecutionNotRedrivable,
            format!("the execution is {}; only failed or timed-out executions can be redriven", status.as_str()),
        )
        .suggest("Start a new execution instead.")
    };
    if !matches!(execution.status, ExecutionStatus::Failed | ExecutionStatus::TimedOut) {
        return Err(not_redrivable(execution.status));
    }
    // Timestamps share one format, so they compare as text (as the lease's do).
    let margin_from_now = crate::model::rfc3339_in(REDRIVE_MARGIN.as_secs() as i64);
    if let Some(expiry) = execution.expires_at.as_deref().filter(|expiry| margin_from_now.as_str() > *expiry) {
        return Err(ApiError::new(
            ErrorCode::ExecutionNotRedrivable,
            format!("the execution's records expire at {expiry}; a redrive must start at least 2 days before"),
        )
        .suggest("Start a new execution instead."));
    }
    let definition = snapshot(call, &id).await?;
    call.app.store()?.reset_steps_for_redrive(call.tenant_id, &id).await?;
    let deadline = crate::model::rfc3339_in(execution_timeout(&definition).as_secs() as i64);
    if !call.app.store()?.redrive_execution(call.tenant_id, &id, &deadline).await? {
        // Another redrive got there first.
        let now = find_execution(call, &id).await?;
        return Err(not_redrivable(now.status));
    }
    enqueue(call, &id, http::request_id(call.req)).await?;
    Ok(Reply::accepted(RedriveAccepted {
        status: ExecutionStatus::Queued.as_str(),
        redrive_count: execution.redrive_count + 1,
        links: ExecutionLinks { self_link: link(&id) },
        execution_id: id,
    }))
}

/// The workflow's own execution timeout, else the default.
fn execution_timeout(definition: &crate::model::WorkflowDefinition) -> std::time::Duration {
    definition.timeout_seconds.map(std::time::Duration::from_secs).unwrap_or(DEFAULT_EXECUTION_TIMEOUT)
}

pub async fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let status = match http::query_param(call.req, "status") {
        None => None,
        Some(raw) => Some(ExecutionStatus::parse(&raw).ok_or_else(|| {
            ApiError::invalid_request("status must be one of queued, running, succeeded, failed, cancelled, timed_out")
        })?),
    };
    let workflow_id = workflows::workflow_id(call)?;
    workflows::load(call, &workflow_id).await?;
    let scope = format!("executions|{}|{workflow_id}|{}", call.tenant_id, status.map(|s| s.as_str()).unwrap_or(""));
    let (limit, after) = paging(call, &scope)?;
    let page = call.app.store()?.list_executions(call.tenant_id, &workflow_id, status, after.as_deref(), limit).await?;
    let key = &call.app.config.cursor_signing_key;
    let items = page
        .items
        .iter()
        // Past retention: gone, as GET says (a page may come back short; the cursor goes on).
        .filter(|e| !e.is_expired())
        .map(|e| ExecutionSummaryView {
            execution_id: e.execution_id.clone(),
            status: e.status.as_str(),
            version: VersionRef(e.version),
            created_at: e.created_at.clone(),
            started_at: e.started_at.clone(),
            finished_at: e.finished_at.clone(),
            error: e.error.clone(),
            links: ExecutionLinks { self_link: link(&e.execution_id) },
        })
        .collect();
    Ok(Reply::ok(Page { items, next_token: page.next_after.map(|after| cursor::encode(key, &scope, &after)) }))
}
