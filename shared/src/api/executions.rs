//! Execution routes: start, read with steps, list, cancel, redrive. The rules are in
//! `executions::start`; this module only translates HTTP to and from them.

use super::views::{
    CallbackAccepted, CancelAccepted, ChildView, ChildrenView, ExecutionLinks, ExecutionStarted, ExecutionSummaryView,
    ExecutionTotals, ExecutionView, Page, ParentView, RedriveAccepted, StartExecutionRequest, StepView, ValueLink,
    VersionRef, WaitView,
};
use super::{Call, paging, truncate, workflows};
use crate::api::http::{self, Reply};
use crate::cursor;
use crate::error::{ApiError, ErrorCode, StoreError};
use crate::executions::callbacks::{self, Answered, CallbackError};
use crate::executions::start::{self as lifecycle, LifecycleError, StartCommand, Started, VersionChoice};
use crate::model::StepStatus;
use crate::model::values::{ValueRef, execution_prefix, shown};
use crate::model::{ExecutionRecord, ExecutionStatus};
use lambda_http::http::StatusCode;

use serde_json::Value;

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
    crate::model::values::execution_link(id)
}

/// A request's `version`: absent (the deployed one), `"draft"`, or a version number.
pub(super) fn version_choice(version: Option<&Value>) -> Result<VersionChoice, ApiError> {
    match version {
        None => Ok(VersionChoice::Deployed),
        Some(Value::String(s)) if s == "draft" => Ok(VersionChoice::Draft),
        Some(v) => match v.as_u64().filter(|n| (1..=u32::MAX as u64).contains(n)) {
            Some(n) => Ok(VersionChoice::Number(n as u32)),
            None => Err(ApiError::invalid_request("version must be a positive integer or \"draft\"")),
        },
    }
}

/// The error a start's or a forecast's version choice gets: named with the workflow.
pub(super) fn version_error(workflow_id: &str, e: LifecycleError) -> ApiError {
    match e {
        LifecycleError::VersionNotFound(n) => ApiError::version_not_found(workflow_id, n),
        LifecycleError::NoDeployedVersion => ApiError::new(ErrorCode::NoDeployedVersion, e.to_string()).suggest(format!(
            "Deploy one with PUT /v1/workflows/{workflow_id}/deployment, or pass \"version\": \"draft\" or a version number."
        )),
        other => api_error(other),
    }
}

pub async fn start(call: &Call<'_>) -> Result<Reply, ApiError> {
    let request: StartExecutionRequest = http::typed_body(call.req)?;
    let wait = wait_param(call)?;
    let workflow_id = workflows::workflow_id(call)?;
    let workflow = workflows::load(call, &workflow_id).await?;
    let version = version_choice(request.version.as_ref())?;
    let request_id = http::request_id(call.req);
    let command = StartCommand {
        tenant_id: call.tenant_id,
        workflow: &workflow,
        version,
        input: request.input,
        idempotency_key: http::header(call.req, "idempotency-key"),
        request_id: &request_id,
        retention: call.app.config.execution_retention,
        trigger: None,
    };
    // Named with the workflow, as the other version routes do.
    let started = lifecycle::start(call.app.store()?, call.app.queue.as_ref(), command)
        .await
        .map_err(|e| version_error(&workflow_id, e))?;
    match started {
        Started::Replayed(existing) => {
            // A client retrying a `?wait` request that timed out gets the end it waited for.
            let existing = waited(call, existing, wait).await?;
            if existing.status.is_final() && wait.is_some() {
                return execution_reply(call, existing).await;
            }
            Ok(Reply::ok(started_view(&existing)))
        }
        Started::New(record) => {
            let location = link(&record.execution_id);
            let record = waited(call, record, wait).await?;
            if record.status.is_final() {
                // Ended within the wait: the whole execution, as GET shows it.
                return Ok(execution_reply(call, record).await?.with_header("location", location));
            }
            let mut reply = Reply::created(started_view(&record), location);
            reply.status = StatusCode::ACCEPTED;
            Ok(reply)
        }
    }
}

/// The envelope for a lifecycle rule that refused.
pub(super) fn api_error(error: LifecycleError) -> ApiError {
    let message = error.to_string();
    match error {
        LifecycleError::NoDeployedVersion => ApiError::new(ErrorCode::NoDeployedVersion, message),
        LifecycleError::VersionNotFound(_) => ApiError::new(ErrorCode::VersionNotFound, message),
        LifecycleError::InputNotObject | LifecycleError::IdempotencyKeyMalformed | LifecycleError::InputTooDeep => {
            ApiError::invalid_request(message)
        }
        LifecycleError::InputTooLarge { .. } => ApiError::new(ErrorCode::PayloadTooLarge, message),
        LifecycleError::InputInvalid(problems) => {
            ApiError::new(ErrorCode::InputInvalid, message).with_details(problems)
        }
        LifecycleError::InputSchemaUnusable => ApiError::new(ErrorCode::InternalError, message),
        LifecycleError::IdempotencyKeyReused => ApiError::new(ErrorCode::IdempotencyKeyReused, message)
            .suggest("Use a new Idempotency-Key for a different request."),
        LifecycleError::AlreadyFinished(_) => ApiError::new(ErrorCode::ExecutionFinished, message),
        LifecycleError::NotRedrivable(_) | LifecycleError::ExpiresTooSoon(_) => {
            ApiError::new(ErrorCode::ExecutionNotRedrivable, message).suggest("Start a new execution instead.")
        }
        LifecycleError::ChildOfParent(parent) => ApiError::new(ErrorCode::ExecutionNotRedrivable, message)
            .suggest(format!("POST /v1/executions/{parent}/redrive")),
        LifecycleError::StillLeased => ApiError::new(ErrorCode::ExecutionNotRedrivable, message)
            .suggest("Retry after the worker's lease expires (at most the worker's timeout, 5 minutes)."),
        LifecycleError::BudgetExceeded { .. } => ApiError::new(ErrorCode::BudgetExceeded, message)
            .suggest("Raise the budget (PUT /v1/budget) or wait for the month to turn (UTC)."),
        LifecycleError::Store(e) => e.into(),
    }
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

/// Children a GET shows per node (the rest: GET each child, ids derive from the index).
const SHOWN_CHILDREN: usize = 100;

/// How long a presigned URL to a value stays valid.
const VALUE_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// GET /v1/executions/{execution_id}/values/{value}: the whole value, inline (200) or through a
/// presigned S3 URL (303).
pub async fn get_value(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = execution_id(call)?;
    let execution = find_execution(call, &id).await?;
    let name = http::path_param(call.req, "value").unwrap_or_default();
    let not_found = || {
        ApiError::new(ErrorCode::ValueNotFound, format!("execution '{id}' has no value '{}'", truncate(&name, 80)))
            .suggest("Use input, output, <node_id>.output or <node_id>.input; GET the execution to see its steps.")
    };
    let stored = match name.as_str() {
        "input" => execution.input,
        "output" => execution.output,
        other => {
            let (node, part) = other.rsplit_once('.').ok_or_else(not_found)?;
            let steps = call.app.store()?.load_steps(call.tenant_id, &id).await?;
            let step = steps.into_iter().find(|s| s.node_id == node).ok_or_else(not_found)?;
            match part {
                "output" => step.output,
                "input" => step.input,
                _ => return Err(not_found()),
            }
        }
    };
    // Only a reference to this execution's own values is followed: a tenant can write a value
    // shaped like one, naming anything.
    let own = ValueRef::of(&stored).filter(|r| r.key.starts_with(&execution_prefix(call.tenant_id, &id)));
    let Some(reference) = own else { return Ok(Reply::raw(stored)) };
    let url = call.app.store()?.value_url(&reference.key, VALUE_LINK_TTL).await?;
    let body =
        ValueLink { url: url.clone(), size_bytes: reference.size_bytes, expires_in_seconds: VALUE_LINK_TTL.as_secs() };
    Ok(Reply::see_other(body, url))
}

/// GET /v1/executions/{execution_id}; with `?wait=N`, once it is final or N seconds passed.
pub async fn get(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = execution_id(call)?;
    let wait = wait_param(call)?;
    let execution = find_execution(call, &id).await?;
    let execution = waited(call, execution, wait).await?;
    execution_reply(call, execution).await
}

/// A `?wait=N` and when the request came: the wait ends by `ANSWER_BY` after it whatever N is,
/// so the answer (a read of the steps, a cold start before) still beats API Gateway's 29 s.
#[derive(Clone, Copy)]
struct Wait {
    asked: std::time::Duration,
    since: std::time::Instant,
}

const ANSWER_BY: std::time::Duration = std::time::Duration::from_secs(27);

impl Wait {
    fn left(self) -> std::time::Duration {
        self.asked.min(ANSWER_BY.saturating_sub(self.since.elapsed()))
    }
}

/// The execution once it is final or the asked wait is over (as it is, with no wait).
async fn waited(call: &Call<'_>, execution: ExecutionRecord, wait: Option<Wait>) -> Result<ExecutionRecord, ApiError> {
    match wait {
        Some(wait) => Ok(crate::executions::wait_for_end(call.app.store()?, execution, wait.left()).await?),
        None => Ok(execution),
    }
}

/// `?wait=N`: whole seconds from 0 to `executions::MAX_WAIT`.
fn wait_param(call: &Call<'_>) -> Result<Option<Wait>, ApiError> {
    let max = crate::executions::MAX_WAIT.as_secs();
    let since = std::time::Instant::now();
    let Some(raw) = http::query_param(call.req, "wait") else { return Ok(None) };
    match raw.parse::<u64>() {
        Ok(seconds) if seconds <= max => Ok(Some(Wait { asked: std::time::Duration::from_secs(seconds), since })),
        _ => Err(ApiError::invalid_request(format!(
            "wait must be a whole number of seconds from 0 to {max}, not '{}'",
            truncate(&raw, 16)
        ))),
    }
}

/// 200 with the execution as GET shows it: every node's step, children, waits.
async fn execution_reply(call: &Call<'_>, execution: ExecutionRecord) -> Result<Reply, ApiError> {
    let id = execution.execution_id.clone();
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
                input: step.map(|s| shown(s.input.clone(), call.tenant_id, &id)).unwrap_or(Value::Null),
                output: step.map(|s| shown(s.output.clone(), call.tenant_id, &id)).unwrap_or(Value::Null),
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
    let mut children = Vec::new();
    for node in definition.nodes.iter().filter(|n| n.node_type == "flow.map" || n.node_type == "flow.subworkflow") {
        let store = call.app.store()?;
        let Some(batch) = store.get_child_batch(call.tenant_id, &id, &node.id).await? else { continue };
        let items = store
            .list_children(call.tenant_id, &id, &node.id, 0, SHOWN_CHILDREN)
            .await?
            .into_iter()
            .map(|c| ChildView {
                index: c.parent.as_ref().map(|p| p.index).unwrap_or_default(),
                execution_id: c.execution_id,
                status: c.status.as_str(),
            })
            .collect();
        children.push(ChildrenView {
            node_id: node.id.clone(),
            workflow_id: batch.workflow_id,
            version: batch.version,
            total: batch.total,
            succeeded: batch.succeeded,
            failed: batch.failed,
            items,
        });
    }
    // What it waits on: the parked nodes without a final step (an answered approval is done).
    let waiting_on: Vec<WaitView> = if execution.status.is_final() {
        Vec::new()
    } else {
        let public_url = call.app.config.public_api_url.as_deref();
        execution
            .waits
            .iter()
            .filter(|w| recorded.get(&w.node_id).is_none_or(|s| !s.status.is_final()))
            .map(|w| WaitView {
                node_id: w.node_id.clone(),
                kind: w.kind,
                since: w.since.clone(),
                until: w.until.clone(),
                callback_url: w.callback_token.as_deref().map(|token| crate::model::callback_url(public_url, token)),
            })
            .collect()
    };
    Ok(Reply::ok(ExecutionView {
        execution_id: execution.execution_id,
        workflow_id: execution.workflow_id,
        version: VersionRef(execution.version),
        status: execution.status.as_str(),
        input: shown(execution.input, call.tenant_id, &id),
        output: shown(execution.output, call.tenant_id, &id),
        error: execution.error,
        created_at: execution.created_at,
        started_at: execution.started_at,
        finished_at: execution.finished_at,
        duration_ms,
        deadline_at: execution.deadline_at,
        cancel_requested: execution.cancel_requested,
        waiting_reason: execution.waiting_reason,
        waiting_on,
        parent: execution.parent.map(|p| ParentView {
            execution_id: p.execution_id,
            node_id: p.node_id,
            index: p.index,
        }),
        trigger_id: execution.trigger_id,
        children,
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
    let status = match lifecycle::cancel(call.app.store()?, &execution).await.map_err(api_error)? {
        lifecycle::CancelOutcome::Cancelled => {
            // A child cancelled here: its own message lets the worker move its parent on.
            if execution.parent.is_some() {
                let message = crate::queue::ExecutionMessage {
                    tenant_id: execution.tenant_id.clone(),
                    execution_id: execution.execution_id.clone(),
                    request_id: execution.request_id.clone(),
                };
                if let Err(e) = call.app.queue.send(&message).await {
                    tracing::error!(error = %e, "a cancelled child's after-end message was not sent");
                }
            }
            ExecutionStatus::Cancelled
        }
        lifecycle::CancelOutcome::Requested => execution.status,
    };
    Ok(Reply::accepted(CancelAccepted { execution_id: id, status: status.as_str(), cancel_requested: true }))
}

/// Resumes a failed or timed-out execution (`executions::start::redrive` says how).
pub async fn redrive(call: &Call<'_>) -> Result<Reply, ApiError> {
    let id = execution_id(call)?;
    let execution = find_execution(call, &id).await?;
    let request_id = http::request_id(call.req);
    let redrive_count = lifecycle::redrive(call.app.store()?, call.app.queue.as_ref(), &execution, &request_id)
        .await
        .map_err(api_error)?;
    Ok(Reply::accepted(RedriveAccepted {
        status: ExecutionStatus::Queued.as_str(),
        redrive_count,
        links: ExecutionLinks { self_link: link(&id) },
        execution_id: id,
    }))
}

/// An approval's answer: the JSON body (an empty body answers `{}`, for links and buttons
/// that post nothing).
fn answer_body(call: &Call<'_>) -> Result<Value, ApiError> {
    if call.req.body().as_ref().is_empty() {
        return Ok(serde_json::json!({}));
    }
    let (body, _) = http::json_body(call.req)?;
    if crate::model::limits::depth_over(&body, crate::model::limits::MAX_VALUE_DEPTH) {
        return Err(ApiError::invalid_request(format!(
            "the body nests deeper than {} levels",
            crate::model::limits::MAX_VALUE_DEPTH
        )));
    }
    Ok(body)
}

fn callback_error(error: CallbackError, execution_id: &str) -> ApiError {
    let message = error.to_string();
    match error {
        CallbackError::NotFound => ApiError::new(ErrorCode::CallbackNotFound, message),
        CallbackError::ExecutionNotFound => execution_not_found(execution_id),
        CallbackError::NotWaiting(_) => ApiError::new(ErrorCode::ExecutionNotWaiting, message)
            .suggest(format!("GET {} shows what the execution waits on (`waiting_on`).", link(execution_id))),
        CallbackError::PayloadInvalid(problems) => {
            ApiError::new(ErrorCode::CallbackPayloadInvalid, message).with_details(problems)
        }
        CallbackError::Store(e) => e.into(),
    }
}

fn answered_view(answered: Answered) -> CallbackAccepted {
    CallbackAccepted {
        links: ExecutionLinks { self_link: link(&answered.execution_id) },
        execution_id: answered.execution_id,
        node_id: answered.node_id,
        status: "accepted",
    }
}

/// POST /v1/callbacks/{token}: answers an approval with its token (no API key: the token is
/// the credential). 404 for an unknown, used or expired token alike.
pub async fn complete_callback(call: &Call<'_>) -> Result<Reply, ApiError> {
    let token = http::path_param(call.req, "token").unwrap_or_default();
    let body = answer_body(call)?;
    let answered = callbacks::answer_by_token(call.app.store()?, call.app.queue.as_ref(), &token, body)
        .await
        .map_err(|e| callback_error(e, ""))?;
    Ok(Reply::accepted(answered_view(answered)))
}

/// POST /v1/executions/{execution_id}/callbacks/{node_id}: answers an approval as the tenant.
pub async fn complete_execution_callback(call: &Call<'_>) -> Result<Reply, ApiError> {
    let body = answer_body(call)?;
    let id = execution_id(call)?;
    let node_id = http::path_param(call.req, "node_id").unwrap_or_default();
    let store = call.app.store()?;
    let answered = callbacks::answer_by_node(store, call.app.queue.as_ref(), call.tenant_id, &id, &node_id, body)
        .await
        .map_err(|e| callback_error(e, &id))?;
    Ok(Reply::accepted(answered_view(answered)))
}

/// GET /v1/workflows/{workflow_id}/executions: one workflow's executions.
pub async fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let workflow_id = workflows::workflow_id(call)?;
    workflows::load(call, &workflow_id).await?;
    list_page(call, Some(&workflow_id)).await
}

/// GET /v1/executions: every execution of the tenant (children included), e.g.
/// `?status=waiting` for what waits on people, time or children.
pub async fn list_all(call: &Call<'_>) -> Result<Reply, ApiError> {
    list_page(call, None).await
}

async fn list_page(call: &Call<'_>, workflow_id: Option<&str>) -> Result<Reply, ApiError> {
    let status = match http::query_param(call.req, "status") {
        None => None,
        Some(raw) => Some(ExecutionStatus::parse(&raw).ok_or_else(|| {
            ApiError::invalid_request(
                "status must be one of queued, running, waiting, succeeded, failed, cancelled, timed_out",
            )
        })?),
    };
    let trigger_id = match http::query_param(call.req, "trigger_id") {
        None => None,
        Some(raw) if http::is_canonical_ulid(&raw) => Some(raw),
        Some(_) => return Err(ApiError::invalid_request("trigger_id must be a trigger's id (a ULID)")),
    };
    let scope = format!(
        "executions|{}|{}|{}|{}",
        call.tenant_id,
        workflow_id.unwrap_or("*"),
        status.map(|s| s.as_str()).unwrap_or(""),
        trigger_id.as_deref().unwrap_or("")
    );
    let (limit, after) = paging(call, &scope)?;
    let filter = crate::store::ExecutionFilter { status, trigger_id };
    let page = call.app.store()?.list_executions(call.tenant_id, workflow_id, &filter, after.as_deref(), limit).await?;
    let key = &call.app.config.cursor_signing_key;
    let items = page
        .items
        .iter()
        // Past retention: gone, as GET says (a page may come back short; the cursor goes on).
        .filter(|e| !e.is_expired())
        .map(|e| ExecutionSummaryView {
            execution_id: e.execution_id.clone(),
            workflow_id: e.workflow_id.clone(),
            status: e.status.as_str(),
            version: VersionRef(e.version),
            created_at: e.created_at.clone(),
            started_at: e.started_at.clone(),
            finished_at: e.finished_at.clone(),
            error: e.error.clone(),
            trigger_id: e.trigger_id.clone(),
            links: ExecutionLinks { self_link: link(&e.execution_id) },
        })
        .collect();
    Ok(Reply::ok(Page { items, next_token: page.next_after.map(|after| cursor::encode(key, &scope, &after)) }))
}

/// GET /v1/executions/{execution_id}/events: the execution's events as server-sent events,
/// from after `Last-Event-ID` (header, or `?last_event_id=` for clients that cannot set it).
/// 204 when that id is the final event's: the client has everything (an EventSource stops
/// reconnecting on 204).
pub async fn events(call: &Call<'_>) -> Result<Reply, ApiError> {
    use crate::events::EventId;
    use crate::events::stream::{StreamSettings, Subscription, already_complete};
    let id = execution_id(call)?;
    let execution = find_execution(call, &id).await?;
    let raw = http::header(call.req, "last-event-id")
        .map(str::to_string)
        .or_else(|| http::query_param(call.req, "last_event_id"));
    let after = match raw.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        None => None,
        Some(raw) => Some(raw.parse::<EventId>().map_err(|_| {
            ApiError::invalid_request(format!(
                "Last-Event-ID '{}' is not an event id of this stream (<seq>-<index>, as the stream's `id:` lines)",
                truncate(raw, 32)
            ))
        })?),
    };
    let store = call.app.shared_store()?;
    if already_complete(store.as_ref(), &execution, after).await? {
        return Ok(Reply::no_content());
    }
    let settings = StreamSettings { max_duration: call.app.config.events_stream_max, ..StreamSettings::default() };
    Ok(Reply::event_stream(Subscription {
        store,
        tenant_id: call.tenant_id.to_string(),
        execution_id: id,
        after,
        settings,
    }))
}
