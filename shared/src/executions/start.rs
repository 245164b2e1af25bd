//! The rules of starting, cancelling and redriving an execution, with no HTTP types: the API
//! (`api::executions`) reads the request, calls these, and turns a `LifecycleError` into its
//! error envelope. Triggers other than HTTP (schedules, webhooks) call the same functions.

use crate::error::StoreError;
use crate::model::limits::MAX_EXECUTION_INPUT_BYTES;
use crate::model::{
    DEFAULT_EXECUTION_TIMEOUT, ExecutionRecord, ExecutionStatus, REDRIVE_MARGIN, StepError, StepErrorCode,
    WorkflowDefinition, WorkflowRecord, now_rfc3339, rfc3339_in,
};
use crate::queue::{ExecutionMessage, ExecutionQueue};
use crate::store::values::Values;
use crate::store::{ExecutionEnd, ExecutionStore, IdempotencyClaim, LeaseGuard, StepStore, ValueStore, WorkflowStore};
use serde_json::{Value, json};
use std::time::Duration;

/// How long an Idempotency-Key is remembered, seconds.
pub const IDEMPOTENCY_WINDOW_SECONDS: i64 = 24 * 3600;

/// Which definition an execution runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionChoice {
    /// The workflow's deployed version (the default).
    Deployed,
    /// The draft as it is now (snapshotted with the execution).
    Draft,
    /// A published version.
    Number(u32),
}

/// A request to start an execution.
#[derive(Debug)]
pub struct StartCommand<'a> {
    pub tenant_id: &'a str,
    pub workflow: &'a WorkflowRecord,
    pub version: VersionChoice,
    /// The input; `{}` when absent. Must be an object of at most `MAX_EXECUTION_INPUT_BYTES`.
    pub input: Option<Value>,
    /// The caller's Idempotency-Key: 1 to 255 visible ASCII characters; the same key and body
    /// within 24 h answer with the first execution instead of starting another.
    pub idempotency_key: Option<&'a str>,
    /// For log correlation through the worker.
    pub request_id: &'a str,
    /// How long the execution's records are kept.
    pub retention: Duration,
    /// The trigger starting it (a webhook delivery or a schedule's fire time); None for a
    /// client's call.
    pub trigger: Option<TriggerStart<'a>>,
}

/// A start by a trigger. `delivery_id` names the delivery (a provider's delivery or event id,
/// a signature, a schedule's fire time): a second start with the same one within 24 h answers
/// with the first execution, whatever its body (a provider's retry carries new headers).
#[derive(Debug, Clone, Copy)]
pub struct TriggerStart<'a> {
    pub trigger_id: &'a str,
    pub delivery_id: Option<&'a str>,
}

/// A started execution: a new one, or the one an Idempotency-Key already started.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    New(ExecutionRecord),
    Replayed(ExecutionRecord),
}

/// Why an execution could not be started, cancelled or redriven.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("the workflow has no deployed version")]
    NoDeployedVersion,
    #[error("the workflow has no version {0}")]
    VersionNotFound(u32),
    #[error("input must be a JSON object")]
    InputNotObject,
    #[error("the input nests deeper than {} levels", crate::model::limits::MAX_VALUE_DEPTH)]
    InputTooDeep,
    #[error("the input is {size} bytes; the limit is {MAX_EXECUTION_INPUT_BYTES}")]
    InputTooLarge { size: usize },
    /// Each problem is `{path, message}`, the path a JSON pointer under `/input`.
    #[error("the input does not match the workflow's input_schema")]
    InputInvalid(Vec<Value>),
    #[error("the workflow's input_schema cannot be used")]
    InputSchemaUnusable,
    #[error("Idempotency-Key must be 1-255 visible ASCII characters")]
    IdempotencyKeyMalformed,
    #[error("this Idempotency-Key was already used with a different body")]
    IdempotencyKeyReused,
    #[error("the execution already finished as {}", .0.as_str())]
    AlreadyFinished(ExecutionStatus),
    #[error("the execution is {}; only failed or timed-out executions can be redriven", .0.as_str())]
    NotRedrivable(ExecutionStatus),
    #[error("a worker still holds the execution; redrive it once its lease has expired")]
    StillLeased,
    #[error("this is a child execution of {0}: redrive the parent, which reruns its failed children")]
    ChildOfParent(String),
    /// Retention would delete its records during the redrive.
    #[error("the execution's records expire at {0}; a redrive must start at least 2 days before")]
    ExpiresTooSoon(String),
    #[error("the month's model spend (${spent:.2}) reached the budget of ${monthly_usd:.2}, which blocks new runs")]
    BudgetExceeded { spent: f64, monthly_usd: f64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A budget that blocks new runs refuses them once the month's committed spend (settled plus
/// reserved) reached it: one read of the budget, and one of the month when there is one.
async fn check_budget<S: crate::budgets::BudgetStore + ?Sized>(
    store: &S,
    tenant_id: &str,
) -> Result<(), LifecycleError> {
    let Some(budget) = store.get_budget(tenant_id).await? else { return Ok(()) };
    if budget.on_exceed != crate::budgets::OnExceed::BlockNewRuns {
        return Ok(());
    }
    let month = crate::budgets::month_of(chrono::Utc::now());
    let spend = store.month_spend(tenant_id, &month).await?;
    if spend.committed_nano >= budget.limit_nano() {
        return Err(LifecycleError::BudgetExceeded {
            spent: spend.committed_nano as f64 / 1e9,
            monthly_usd: budget.monthly_usd,
        });
    }
    Ok(())
}

/// The workflow's own execution timeout, else the default.
pub fn execution_timeout(definition: &WorkflowDefinition) -> Duration {
    definition.timeout_seconds.map(Duration::from_secs).unwrap_or(DEFAULT_EXECUTION_TIMEOUT)
}

/// Checks the input, claims the Idempotency-Key, writes the snapshot and the execution, and
/// queues it. A replayed key answers with the first execution and starts nothing.
pub async fn start<S>(
    store: &S,
    queue: &dyn ExecutionQueue,
    command: StartCommand<'_>,
) -> Result<Started, LifecycleError>
where
    S: WorkflowStore + ExecutionStore + ValueStore + crate::budgets::BudgetStore + ?Sized,
{
    let workflow = command.workflow;
    let (version, definition) = definition_of(store, workflow, command.version).await?;
    let input = command.input.unwrap_or_else(|| json!({}));
    check_input(&definition, &input)?;
    if let Some(key) = command.idempotency_key
        && !((1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(LifecycleError::IdempotencyKeyMalformed);
    }
    // What "the same request" means: the same input and version, whatever the JSON key order.
    let version_text = match command.version {
        VersionChoice::Deployed => Value::Null,
        VersionChoice::Draft => json!("draft"),
        VersionChoice::Number(n) => json!(n),
    };
    let mut body_hash = crate::auth::hash_key(&json!({ "input": input, "version": version_text }).to_string());
    let mut record = ExecutionRecord::queued(
        command.tenant_id,
        &workflow.workflow_id,
        version,
        input,
        command.request_id,
        execution_timeout(&definition),
    )
    .retained_for(command.retention);
    record.trigger_id = command.trigger.map(|t| t.trigger_id.to_string());
    // A key names one request to one workflow: the same key sent to another workflow is
    // another request and starts that workflow (Stripe scopes keys per account and endpoint
    // the same way). A trigger's delivery id names one delivery to that trigger.
    let scoped_key = match (command.trigger, command.idempotency_key) {
        (Some(TriggerStart { trigger_id, delivery_id: Some(delivery) }), _) => {
            let scoped = format!("trigger {trigger_id}\n{delivery}");
            body_hash = crate::auth::hash_key(&scoped);
            Some(scoped)
        }
        (Some(_), _) => None,
        (None, Some(key)) => Some(format!("POST /v1/workflows/{}/executions\n{key}", workflow.workflow_id)),
        (None, None) => None,
    };
    if let Some(scoped_key) = &scoped_key {
        let claim = store
            .claim_idempotency_key(
                command.tenant_id,
                &crate::auth::hash_key(scoped_key),
                &body_hash,
                &record.execution_id,
                &rfc3339_in(IDEMPOTENCY_WINDOW_SECONDS),
                &now_rfc3339(),
            )
            .await?;
        match claim {
            IdempotencyClaim::New => {}
            IdempotencyClaim::Existing { body_hash: earlier, .. } if earlier != body_hash => {
                return Err(LifecycleError::IdempotencyKeyReused);
            }
            IdempotencyClaim::Existing { execution_id, .. } => {
                match store.get_execution(command.tenant_id, &execution_id).await? {
                    Some(existing) => return Ok(Started::Replayed(existing)),
                    // The first attempt stopped between claiming the key and creating the
                    // execution: finish it now, under the id the key names.
                    None => record.execution_id = execution_id,
                }
            }
        }
    }
    // After the replay check: a start that already happened answers as it did, budget or not.
    check_budget(store, &workflow.tenant_id).await?;
    // A large input is kept in the value store (S3); the item holds its reference.
    record.input = Values::new(store, command.tenant_id, &record.execution_id).keep("input", record.input).await?;
    match store.create_execution(&record, &definition).await {
        Ok(()) => {}
        // A replay racing the first request (which created the execution, or is creating it
        // under another definition): the first one's records stand, never rewritten.
        Err(StoreError::ConditionFailed) if scoped_key.is_some() => {
            return match store.get_execution(command.tenant_id, &record.execution_id).await? {
                Some(existing) => Ok(Started::Replayed(existing)),
                None => Err(StoreError::ConditionFailed.into()),
            };
        }
        Err(e) => return Err(e.into()),
    }
    enqueue(store, queue, command.tenant_id, &record.execution_id, command.request_id).await?;
    Ok(Started::New(record))
}

/// The version a choice names (None: the draft) and its definition.
pub async fn definition_of<S: WorkflowStore + ?Sized>(
    store: &S,
    workflow: &WorkflowRecord,
    choice: VersionChoice,
) -> Result<(Option<u32>, WorkflowDefinition), LifecycleError> {
    Ok(match choice {
        VersionChoice::Draft => (None, workflow.definition.clone()),
        VersionChoice::Deployed => {
            let n = workflow.deployed_version.ok_or(LifecycleError::NoDeployedVersion)?;
            (Some(n), published(store, workflow, n).await?)
        }
        VersionChoice::Number(n) => (Some(n), published(store, workflow, n).await?),
    })
}

async fn published<S: WorkflowStore + ?Sized>(
    store: &S,
    workflow: &WorkflowRecord,
    version: u32,
) -> Result<WorkflowDefinition, LifecycleError> {
    let found = store.get_version(&workflow.tenant_id, &workflow.workflow_id, version).await?;
    Ok(found.ok_or(LifecycleError::VersionNotFound(version))?.definition)
}

/// An input is an object of at most `MAX_EXECUTION_INPUT_BYTES` that matches the definition's
/// `input_schema` (every problem at once).
pub fn check_input(definition: &WorkflowDefinition, input: &Value) -> Result<(), LifecycleError> {
    if !input.is_object() {
        return Err(LifecycleError::InputNotObject);
    }
    if crate::model::limits::depth_over(input, crate::model::limits::MAX_VALUE_DEPTH) {
        return Err(LifecycleError::InputTooDeep);
    }
    let size = input.to_string().len();
    if size > MAX_EXECUTION_INPUT_BYTES {
        return Err(LifecycleError::InputTooLarge { size });
    }
    if let Some(schema) = &definition.input_schema {
        let problems =
            crate::validation::instance_problems(schema, input, "/input").ok_or(LifecycleError::InputSchemaUnusable)?;
        if !problems.is_empty() {
            return Err(LifecycleError::InputInvalid(problems));
        }
    }
    Ok(())
}

/// Sends the execution to the worker. If the queue refuses, the execution is failed with
/// `QUEUE_UNAVAILABLE` at once (never left queued with no worker to see it), and can be redriven.
async fn enqueue<S: ExecutionStore + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    tenant_id: &str,
    execution_id: &str,
    request_id: &str,
) -> Result<(), LifecycleError> {
    let message = ExecutionMessage {
        tenant_id: tenant_id.to_string(),
        execution_id: execution_id.to_string(),
        request_id: request_id.to_string(),
    };
    let Err(e) = queue.send(&message).await else {
        return Ok(());
    };
    let error =
        StepError { code: StepErrorCode::QueueUnavailable.into(), message: "the execution could not be queued".into() };
    // Only if no worker holds it (a redrive's message may have gone out before this one failed).
    let now = now_rfc3339();
    let _ = store
        .finish_execution(tenant_id, execution_id, ExecutionEnd::failed(error), &[], LeaseGuard::Free { now: &now })
        .await;
    Err(match e {
        StoreError::Internal(detail) => StoreError::Unavailable(detail),
        other => other,
    }
    .into())
}

/// Stops an execution. A queued one that no worker holds ends `cancelled` at once (returns
/// `Cancelled`); a running one is asked to stop, and its worker sees the flag within a second,
/// before its next node or attempt (returns `Requested`).
/// What a redrive's kept steps (the succeeded ones) spent.
pub(crate) fn kept_spend(steps: &[crate::model::StepRecord]) -> crate::model::ExecutionUsage {
    crate::model::ExecutionUsage::of(steps.iter().filter(|s| s.status == crate::model::StepStatus::Succeeded))
}

pub async fn cancel<S: ExecutionStore + StepStore + ?Sized>(
    store: &S,
    execution: &ExecutionRecord,
) -> Result<CancelOutcome, LifecycleError> {
    let (tenant_id, id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
    if execution.status.is_final() {
        return Err(LifecycleError::AlreadyFinished(execution.status));
    }
    // Queued or parked: no worker holds it, so it ends here (a parked execution's wake-up
    // message later finds it final and does nothing).
    if matches!(execution.status, ExecutionStatus::Queued | ExecutionStatus::Waiting) {
        let now = now_rfc3339();
        let end = ExecutionEnd::now(ExecutionStatus::Cancelled, Value::Null, None)
            .counted_for(execution.parent.as_ref())
            .spent(super::recorded_spend(store, tenant_id, id).await?);
        if store.finish_execution(tenant_id, id, end, &[], LeaseGuard::Free { now: &now }).await? {
            return Ok(CancelOutcome::Cancelled);
        }
        // A worker took it meanwhile: ask it to stop, as for a running one.
    }
    if !store.request_cancel(tenant_id, id).await? {
        let now = store.get_execution(tenant_id, id).await?.map(|e| e.status).unwrap_or(execution.status);
        return Err(LifecycleError::AlreadyFinished(now));
    }
    Ok(CancelOutcome::Requested)
}

/// What `cancel` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The execution was queued and is now `cancelled`.
    Cancelled,
    /// The execution is running; its worker stops it before its next node or attempt.
    Requested,
}

/// Resumes a failed or timed-out execution: succeeded steps stay (their nodes are not run, or
/// paid for, again); failed and skipped steps are forgotten, so failed and unrun nodes run and
/// branches are decided afresh. The execution gets a new deadline of its full timeout. Returns
/// its redrive count, this redrive included.
pub async fn redrive<S>(
    store: &S,
    queue: &dyn ExecutionQueue,
    execution: &ExecutionRecord,
    request_id: &str,
) -> Result<u32, LifecycleError>
where
    S: ExecutionStore + StepStore + ?Sized,
{
    let (tenant_id, id) = (execution.tenant_id.as_str(), execution.execution_id.as_str());
    if let Some(parent) = &execution.parent {
        // Its end is counted in its parent's batch: redriving it alone would count it twice.
        return Err(LifecycleError::ChildOfParent(parent.execution_id.clone()));
    }
    if !matches!(execution.status, ExecutionStatus::Failed | ExecutionStatus::TimedOut) {
        return Err(LifecycleError::NotRedrivable(execution.status));
    }
    let definition = store
        .get_execution_definition(tenant_id, id)
        .await?
        .ok_or_else(|| StoreError::Internal(format!("execution {id} has no definition snapshot")))?;
    let timeout = execution_timeout(&definition);
    let deadline = rfc3339_in(timeout.as_secs() as i64);
    // The records must outlive the new deadline by REDRIVE_MARGIN. Timestamps share one
    // format, so they compare as text (as the lease's do).
    let needed = rfc3339_in((timeout + REDRIVE_MARGIN).as_secs() as i64);
    if let Some(expiry) = execution.expires_at.as_deref().filter(|expiry| needed.as_str() > *expiry) {
        return Err(LifecycleError::ExpiresTooSoon(expiry.to_string()));
    }
    // The state and the lease are checked, and the execution held, before any step is
    // forgotten: a stale message cannot run it between the reset and the enqueue.
    let hold = format!("redrive/{request_id}");
    let (now, hold_until) = (now_rfc3339(), rfc3339_in(REDRIVE_HOLD.as_secs() as i64));
    // The kept steps were counted when it ended: its next end counts from them.
    let kept = kept_spend(&store.load_steps(tenant_id, id).await?);
    if !store.redrive_execution(tenant_id, id, &deadline, &hold, &hold_until, &now, &kept).await? {
        // Another redrive got there first, or a worker still holds it.
        return Err(match store.get_execution(tenant_id, id).await? {
            Some(now) if now.status != execution.status => LifecycleError::NotRedrivable(now.status),
            _ => LifecycleError::StillLeased,
        });
    }
    store.reset_steps_for_redrive(tenant_id, id).await?;
    store.release_lease(tenant_id, id, &hold, &[]).await?;
    enqueue(store, queue, tenant_id, id, request_id).await?;
    Ok(execution.redrive_count + 1)
}

/// How long a redrive holds the execution while it resets its steps; if the redrive dies
/// half-way, the sweeper finds the execution when this runs out.
pub const REDRIVE_HOLD: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::KeptQueue;
    use crate::queue::NoQueue;
    use crate::store::memory::MemoryStore;

    fn workflow() -> WorkflowRecord {
        let definition = serde_json::from_value(json!({
            "name": "w",
            "input_schema": { "type": "object", "required": ["n"] },
            "nodes": [ { "id": "out", "type": "flow.output", "config": { "value": "{{ input.n }}" } } ]
        }))
        .unwrap();
        WorkflowRecord::new_draft("t1", definition)
    }

    fn command<'a>(workflow: &'a WorkflowRecord, input: Value, key: Option<&'a str>) -> StartCommand<'a> {
        StartCommand {
            tenant_id: "t1",
            workflow,
            version: VersionChoice::Draft,
            input: Some(input),
            idempotency_key: key,
            request_id: "r1",
            retention: Duration::from_secs(3 * 24 * 3600),
            trigger: None,
        }
    }

    #[tokio::test]
    async fn a_replayed_key_answers_with_the_first_execution_and_queues_nothing_more() {
        let (store, queue, workflow) = (MemoryStore::new(), KeptQueue::default(), workflow());
        let Started::New(first) =
            start(&store, &queue, command(&workflow, json!({ "n": 1 }), Some("k"))).await.unwrap()
        else {
            panic!("the first start is new")
        };
        let again = start(&store, &queue, command(&workflow, json!({ "n": 1 }), Some("k"))).await.unwrap();
        assert_eq!(again, Started::Replayed(first.clone()));
        assert_eq!(queue.messages().len(), 1);
        let other = start(&store, &queue, command(&workflow, json!({ "n": 2 }), Some("k"))).await;
        assert!(matches!(other, Err(LifecycleError::IdempotencyKeyReused)), "{other:?}");
        let deployed = StartCommand { version: VersionChoice::Deployed, ..command(&workflow, json!({ "n": 1 }), None) };
        assert!(matches!(start(&store, &queue, deployed).await, Err(LifecycleError::NoDeployedVersion)));
    }

    #[tokio::test]
    async fn a_key_is_scoped_to_its_workflow() {
        let (store, queue) = (MemoryStore::new(), KeptQueue::default());
        let (a, mut b) = (workflow(), workflow());
        b.definition.name = "b".into();
        let body = || json!({ "n": 1 });
        let Started::New(on_a) = start(&store, &queue, command(&a, body(), Some("k"))).await.unwrap() else {
            panic!("new on A")
        };
        // The same key and body to workflow B is another request: B runs.
        let Started::New(on_b) = start(&store, &queue, command(&b, body(), Some("k"))).await.unwrap() else {
            panic!("the key sent to another workflow must start that workflow")
        };
        assert_eq!(
            (on_a.workflow_id.as_str(), on_b.workflow_id.as_str()),
            (a.workflow_id.as_str(), b.workflow_id.as_str())
        );
        assert_ne!(on_a.execution_id, on_b.execution_id);
        // Each replays its own, and A's snapshot is still A's.
        assert_eq!(
            start(&store, &queue, command(&a, body(), Some("k"))).await.unwrap(),
            Started::Replayed(on_a.clone())
        );
        assert_eq!(start(&store, &queue, command(&b, body(), Some("k"))).await.unwrap(), Started::Replayed(on_b));
        let snapshot = store.get_execution_definition("t1", &on_a.execution_id).await.unwrap().unwrap();
        assert_eq!(snapshot, a.definition);
        assert_eq!(queue.messages().len(), 2);
    }

    #[tokio::test]
    async fn bad_input_is_refused_and_a_refusing_queue_fails_the_execution_at_once() {
        let (store, workflow) = (MemoryStore::new(), workflow());
        let missing = start(&store, &NoQueue, command(&workflow, json!({}), None)).await;
        assert!(matches!(&missing, Err(LifecycleError::InputInvalid(problems)) if problems.len() == 1), "{missing:?}");
        let list = start(&store, &NoQueue, command(&workflow, json!([1]), None)).await;
        assert!(matches!(list, Err(LifecycleError::InputNotObject)));
        let big = json!({ "n": "x".repeat(MAX_EXECUTION_INPUT_BYTES) });
        assert!(matches!(
            start(&store, &NoQueue, command(&workflow, big, None)).await,
            Err(LifecycleError::InputTooLarge { .. })
        ));

        let refused = start(&store, &NoQueue, command(&workflow, json!({ "n": 1 }), None)).await;
        assert!(matches!(refused, Err(LifecycleError::Store(StoreError::Unavailable(_)))), "{refused:?}");
        let page =
            store.list_executions("t1", Some(&workflow.workflow_id), &Default::default(), None, 10).await.unwrap();
        let failed = &page.items[0];
        assert_eq!(failed.status, ExecutionStatus::Failed);
        assert_eq!(failed.error.as_ref().map(|e| e.code.as_str()), Some("QUEUE_UNAVAILABLE"));
        // Failed, so it can be redriven; a redrive refused by the queue fails it again.
        assert!(matches!(redrive(&store, &NoQueue, failed, "r2").await, Err(LifecycleError::Store(_))));
        let queue = KeptQueue::default();
        let failed = store.get_execution("t1", &failed.execution_id).await.unwrap().unwrap();
        assert_eq!(redrive(&store, &queue, &failed, "r3").await.unwrap(), failed.redrive_count + 1);
        assert_eq!(queue.messages()[0].request_id, "r3");
    }
}
