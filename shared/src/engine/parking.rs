//! Parking nodes (`flow.wait`, `flow.approval`): the engine runs them itself. Reached for the
//! first time, such a node begins its wait (an approval issues its callback token and sends its
//! notification); reached again on a resumed run, it ends the wait when its time has come
//! (a timer succeeds, an unanswered approval fails with `APPROVAL_TIMED_OUT`) or stays parked.
//! An answered approval needs nothing here: the callback recorded its step, so the node is
//! final before the run reaches it.

use super::{NodeExecutor, RunContext, run_node};
use crate::error::StoreError;
use crate::model::{
    CallbackRecord, NodeSpec, StepError, StepErrorCode, StepRecord, StepStatus, Wait, WaitKind, now_rfc3339,
};
use crate::nodes::{flow_approval, flow_wait};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Where a parking node stands after the run reached it.
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// Still waiting: the execution parks on this (new or carried-over) wait.
    Parked(Wait),
    /// The wait is over (or could not begin): the node's final step.
    Finished(StepRecord),
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at).ok().map(|at| at.with_timezone(&Utc))
}

fn step(node: &NodeSpec, since: &str, status: StepStatus, output: Value, error: Option<StepError>) -> StepRecord {
    StepRecord {
        node_id: node.id.clone(),
        status,
        attempts: 1,
        started_at: Some(since.to_string()),
        finished_at: Some(now_rfc3339()),
        output,
        error,
        ..StepRecord::default()
    }
}

fn failed(node: &NodeSpec, since: &str, code: impl Into<String>, message: String) -> StepRecord {
    step(node, since, StepStatus::Failed, Value::Null, Some(StepError { code: code.into(), message }))
}

/// A callback token: 32 random bytes, URL-safe base64 (256 bits: unguessable).
fn new_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// Advances a parking node whose step is not recorded yet.
pub async fn advance(
    ctx: &RunContext<'_>,
    node: &NodeSpec,
    scope: &Value,
    executor: &dyn NodeExecutor,
) -> Result<Advance, StoreError> {
    let now = Utc::now();
    let existing = ctx.waits.iter().find(|w| w.node_id == node.id);
    match crate::nodes::parks(&node.node_type) {
        Some(WaitKind::Timer) => Ok(timer(node, scope, existing, now).await),
        Some(WaitKind::Approval) => approval(ctx, node, scope, executor, existing, now).await,
        Some(WaitKind::Children) => children(ctx, node, scope, existing, now).await,
        None => Err(StoreError::Internal(format!("node type {} does not park", node.node_type))),
    }
}

async fn timer(node: &NodeSpec, scope: &Value, existing: Option<&Wait>, now: DateTime<Utc>) -> Advance {
    let wait = match existing {
        Some(wait) => wait.clone(),
        None => match flow_wait::wait_until(&node.config, scope, now).await {
            Ok(until) => Wait {
                node_id: node.id.clone(),
                kind: WaitKind::Timer,
                since: stamp(now),
                until: Some(stamp(until)),
                callback_token: None,
            },
            Err(failure) => {
                return Advance::Finished(failed(node, &stamp(now), StepErrorCode::WaitInvalid, failure.message));
            }
        },
    };
    match wait.until.as_deref().and_then(parse) {
        Some(until) if until > now => Advance::Parked(wait),
        _ => {
            let output = json!({ "since": wait.since, "until": wait.until });
            Advance::Finished(step(node, &wait.since, StepStatus::Succeeded, output, None))
        }
    }
}

async fn approval(
    ctx: &RunContext<'_>,
    node: &NodeSpec,
    scope: &Value,
    executor: &dyn NodeExecutor,
    existing: Option<&Wait>,
    now: DateTime<Utc>,
) -> Result<Advance, StoreError> {
    if let Some(wait) = existing {
        return Ok(match wait.until.as_deref().and_then(parse) {
            Some(until) if until <= now => {
                let seconds = node.config.get("timeout_seconds").and_then(Value::as_u64).unwrap_or_default();
                let message = format!("no answer within {seconds} s");
                Advance::Finished(failed(node, &wait.since, StepErrorCode::ApprovalTimedOut, message))
            }
            _ => Advance::Parked(wait.clone()),
        });
    }
    let store =
        ctx.callbacks.ok_or_else(|| StoreError::Internal("this run has no store for approval callbacks".into()))?;
    let since = stamp(now);
    let until = flow_approval::expiry(&node.config, now).map(stamp);
    let token = new_token();
    let expires_at = until.clone().or_else(|| ctx.deadline_at.map(str::to_string)).unwrap_or_else(|| since.clone());
    store
        .put_callback(&CallbackRecord {
            token_hash: crate::auth::hash_key(&token),
            tenant_id: ctx.tenant_id.to_string(),
            execution_id: ctx.execution_id.to_string(),
            node_id: node.id.clone(),
            expires_at: expires_at.clone(),
        })
        .await?;
    if let Some(notification) = flow_approval::notification(node) {
        let mut scope = scope.clone();
        scope["callback"] = json!({ "url": executor.callback_url(&token), "token": token, "expires_at": expires_at });
        // Retried under the approval's own retry policy; never halted half-way (it is one call).
        let sent =
            run_node(ctx.tenant_id, &notification, &scope, executor, &|| false, ctx.events, &super::NO_RUN_LIMIT).await;
        if let Some(error) = sent.and_then(|s| s.error) {
            let message = format!("{}: {}", error.code, error.message);
            return Ok(Advance::Finished(failed(node, &since, StepErrorCode::NotificationFailed, message)));
        }
    }
    Ok(Advance::Parked(Wait {
        node_id: node.id.clone(),
        kind: WaitKind::Approval,
        since,
        until,
        callback_token: Some(token),
    }))
}

/// flow.subworkflow and flow.map: start the children and park; on resume, end with their
/// outputs once every child has ended (or too many failed).
async fn children(
    ctx: &RunContext<'_>,
    node: &NodeSpec,
    scope: &Value,
    existing: Option<&Wait>,
    now: DateTime<Utc>,
) -> Result<Advance, StoreError> {
    let launcher = ctx.children.ok_or_else(|| StoreError::Internal("this run cannot start child executions".into()))?;
    let is_map = node.node_type == "flow.map";
    if let Some(wait) = existing {
        let Some(outcome) = launcher.outcome(node).await? else { return Ok(Advance::Parked(wait.clone())) };
        let failures = outcome.failures.len() as u32;
        let first = outcome.failures.first().map(|(index, e)| (*index, format!("{}: {}", e.code, e.message)));
        return Ok(Advance::Finished(match (is_map, first) {
            (false, Some((_, error))) => failed(
                node,
                &wait.since,
                StepErrorCode::SubworkflowFailed,
                format!("the child execution failed: {error}"),
            ),
            (false, None) => {
                let output = outcome.outputs.into_iter().next().unwrap_or(Value::Null);
                step(node, &wait.since, StepStatus::Succeeded, output, None)
            }
            (true, Some((index, error))) if failures > outcome.tolerated_failures => failed(
                node,
                &wait.since,
                StepErrorCode::MapItemsFailed,
                format!(
                    "{failures} of {} items failed (tolerated: {}); item {index}: {error}",
                    outcome.outputs.len(),
                    outcome.tolerated_failures
                ),
            ),
            (true, _) => step(node, &wait.since, StepStatus::Succeeded, Value::Array(outcome.outputs), None),
        }));
    }
    let since = stamp(now);
    // The children's inputs: the rendered `input` (a subworkflow), or one {item, index} per item.
    let rendered = {
        let field = if is_map { "items" } else { "input" };
        let (value, scope) = (node.config.get(field).cloned().unwrap_or_else(|| json!({})), scope.clone());
        crate::template::off_executor(move || crate::template::render_value(&value, &scope)).await
    };
    let rendered = match rendered {
        Ok(value) => value,
        Err(e) => return Ok(Advance::Finished(failed(node, &since, e.code, e.message))),
    };
    let inputs = match (is_map, rendered) {
        (false, input @ Value::Object(_)) => vec![input],
        (false, _) => {
            let message = "`input` must render to a JSON object".to_string();
            return Ok(Advance::Finished(failed(node, &since, StepErrorCode::MapItemsInvalid, message)));
        }
        (true, Value::Array(items)) if items.len() <= crate::model::MAX_MAP_ITEMS => {
            items.into_iter().enumerate().map(|(index, item)| json!({ "item": item, "index": index })).collect()
        }
        (true, other) => {
            let message = match other {
                Value::Array(items) => {
                    format!("`items` has {} items; the limit is {}", items.len(), crate::model::MAX_MAP_ITEMS)
                }
                _ => "`items` must render to a JSON array".to_string(),
            };
            return Ok(Advance::Finished(failed(node, &since, StepErrorCode::MapItemsInvalid, message)));
        }
    };
    if inputs.is_empty() {
        return Ok(Advance::Finished(step(node, &since, StepStatus::Succeeded, json!([]), None)));
    }
    if let Err(failure) = launcher.begin(node, inputs).await? {
        return Ok(Advance::Finished(failed(node, &since, failure.code, failure.message)));
    }
    Ok(Advance::Parked(Wait {
        node_id: node.id.clone(),
        kind: WaitKind::Children,
        since,
        until: None,
        callback_token: None,
    }))
}
