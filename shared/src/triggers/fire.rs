//! Starting a trigger's run: the one path for webhooks and schedules, through
//! `executions::start` (the deployed version, the trigger's id on the execution, the delivery
//! id as its idempotency key).

use super::{TriggerRecord, TriggerRun};
use crate::executions::start::{self, LifecycleError, StartCommand, Started, TriggerStart, VersionChoice};
use crate::model::now_rfc3339;
use crate::queue::ExecutionQueue;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The placeholder EventBridge Scheduler replaces with the fire time in a target's input
/// (Scheduler User Guide, "Adding context attributes").
pub const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

/// The message a schedule sends to the execution queue: which trigger, and when it was due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerFire {
    pub trigger: TriggerRef,
    /// The fire time Scheduler meant (RFC 3339): a second delivery of it starts nothing new.
    pub scheduled_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRef {
    pub tenant_id: String,
    pub workflow_id: String,
    pub trigger_id: String,
}

impl TriggerFire {
    /// The message a schedule trigger's schedule sends, with Scheduler's placeholder.
    pub fn for_schedule(record: &TriggerRecord) -> TriggerFire {
        TriggerFire {
            trigger: TriggerRef {
                tenant_id: record.tenant_id.clone(),
                workflow_id: record.workflow_id.clone(),
                trigger_id: record.trigger_id.clone(),
            },
            scheduled_time: SCHEDULED_TIME.to_string(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Starts one run of `trigger` with `input`; `delivery_id` makes a repeated delivery answer
/// with the first run. Records the trigger's last run (a new run, or why none started).
pub async fn start_run<S: Store + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    trigger: &TriggerRecord,
    input: Value,
    delivery_id: Option<&str>,
    request_id: &str,
) -> Result<Started, LifecycleError> {
    let Some(workflow) = store.get_workflow(&trigger.tenant_id, &trigger.workflow_id).await? else {
        return Err(LifecycleError::NoDeployedVersion);
    };
    let command = StartCommand {
        tenant_id: &trigger.tenant_id,
        workflow: &workflow,
        version: VersionChoice::Deployed,
        input: Some(input),
        idempotency_key: None,
        request_id,
        retention: std::time::Duration::from_secs(trigger.retention_seconds),
        trigger: Some(TriggerStart { trigger_id: &trigger.trigger_id, delivery_id }),
    };
    let started = start::start(store, queue, command).await;
    let run = match &started {
        Ok(Started::New(record)) => {
            Some(TriggerRun { at: now_rfc3339(), execution_id: Some(record.execution_id.clone()), error: None })
        }
        Ok(Started::Replayed(_)) => None,
        Err(LifecycleError::Store(_)) => None,
        Err(e) => Some(TriggerRun { at: now_rfc3339(), execution_id: None, error: Some(e.to_string()) }),
    };
    if let Some(run) = run
        && let Err(e) = store.record_trigger_run(trigger, &run).await
    {
        // Only GET's "last run" misses it; the run itself stands.
        tracing::warn!(error = %e, trigger_id = %trigger.trigger_id, "the trigger's last run was not recorded");
    }
    started
}

/// The worker's part for a schedule's message: starts the run unless the trigger is gone or
/// disabled (a fire already on its way when it changed). Err only for what a retry can mend
/// (the store or the queue unavailable).
pub async fn scheduled<S: Store + ?Sized>(
    store: &S,
    queue: &dyn ExecutionQueue,
    fire: &TriggerFire,
) -> Result<(), String> {
    let t = &fire.trigger;
    let trigger = store.get_trigger(&t.tenant_id, &t.workflow_id, &t.trigger_id).await.map_err(|e| e.to_string())?;
    let Some(trigger) = trigger.filter(|t| t.enabled && t.schedule().is_some()) else {
        tracing::info!(trigger_id = %t.trigger_id, "schedule fired for a trigger deleted or disabled since; nothing started");
        return Ok(());
    };
    let input = trigger.schedule().map(|s| s.input.clone()).unwrap_or_default();
    let delivery = format!("schedule {}", fire.scheduled_time);
    let request_id = format!("schedule-{}", t.trigger_id);
    match start_run(store, queue, &trigger, input, Some(&delivery), &request_id).await {
        Ok(Started::New(record)) => {
            tracing::info!(execution_id = %record.execution_id, scheduled_time = %fire.scheduled_time, "scheduled run started");
            Ok(())
        }
        Ok(Started::Replayed(record)) => {
            tracing::info!(execution_id = %record.execution_id, "a repeated delivery of a fire time; nothing new started");
            Ok(())
        }
        Err(LifecycleError::Store(e)) => Err(e.to_string()),
        // The workflow's state refuses it (no deployed version, its input_schema): recorded on
        // the trigger as its last run; a retry would refuse it again.
        Err(e) => {
            tracing::warn!(error = %e, trigger_id = %t.trigger_id, "scheduled run not started");
            Ok(())
        }
    }
}
