//! The execution queue on SQS, and the one-time EventBridge Scheduler schedules that deliver a
//! parked execution's wake-up to it when the wait is longer than an SQS delay (the only module
//! that knows these SDKs).

use super::{ExecutionMessage, ExecutionQueue, MAX_SQS_DELAY};
use crate::error::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use std::time::Duration;

pub struct SqsExecutionQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    /// Wake-ups further away than this go through `scheduler` (at most `MAX_SQS_DELAY`).
    max_delay: Duration,
    scheduler: Option<WaitScheduler>,
}

/// Where long waits' one-time schedules go: EventBridge Scheduler's group, the role it sends to
/// the queue with, and the queue's ARN (its target).
pub struct WaitScheduler {
    pub client: aws_sdk_scheduler::Client,
    pub group: String,
    pub role_arn: String,
    pub queue_arn: String,
}

impl SqsExecutionQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        SqsExecutionQueue { client, queue_url: queue_url.into(), max_delay: MAX_SQS_DELAY, scheduler: None }
    }

    /// The queue with long waits going through EventBridge Scheduler when they are further
    /// away than `max_delay` (capped at SQS's 15 minutes; the local stack lowers it so that
    /// its tests take the scheduler's path in seconds).
    pub fn with_scheduler(self, scheduler: WaitScheduler, max_delay: Duration) -> Self {
        SqsExecutionQueue { scheduler: Some(scheduler), max_delay: max_delay.min(MAX_SQS_DELAY), ..self }
    }
}

/// The schedule's name: one per execution and wake-up time, so a second park on the same
/// wake-up creates nothing (ConflictException) and two waits never share one.
fn schedule_name(message: &ExecutionMessage, at: DateTime<Utc>) -> String {
    format!("nodeai-{}-{}", message.execution_id, at.timestamp())
}

#[async_trait]
impl ExecutionQueue for SqsExecutionQueue {
    async fn send_delayed(&self, message: &ExecutionMessage, delay: Duration) -> Result<(), StoreError> {
        let body = serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        let mut request = self.client.send_message().queue_url(&self.queue_url).message_body(body);
        if !delay.is_zero() {
            request = request.delay_seconds(delay.as_secs().clamp(1, 900) as i32);
        }
        // No SQS error code is retried here: only a request that got no answer is Unavailable.
        request.send().await.map(|_| ()).map_err(|e| crate::store::sdk_error::classify_sdk_error(e, &[]))
    }

    async fn send_at(&self, message: &ExecutionMessage, at: DateTime<Utc>) -> Result<(), StoreError> {
        let delay = super::delay_until(at);
        let Some(scheduler) = self.scheduler.as_ref().filter(|_| delay > self.max_delay) else {
            return self.send_delayed(message, delay.min(MAX_SQS_DELAY)).await;
        };
        use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
        let body = serde_json::to_string(message).map_err(|e| StoreError::Internal(e.to_string()))?;
        let internal = |e: aws_sdk_scheduler::error::BuildError| StoreError::Internal(e.to_string());
        // `at()` takes whole seconds, no zone suffix; rounded up so it never fires early.
        let fire_at = at + chrono::Duration::milliseconds(999);
        let expression = format!("at({})", fire_at.to_rfc3339_opts(SecondsFormat::Secs, true).trim_end_matches('Z'));
        let created = scheduler
            .client
            .create_schedule()
            .name(schedule_name(message, at))
            .group_name(&scheduler.group)
            .schedule_expression(expression)
            .schedule_expression_timezone("UTC")
            .flexible_time_window(
                FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(internal)?,
            )
            .target(
                Target::builder()
                    .arn(&scheduler.queue_arn)
                    .role_arn(&scheduler.role_arn)
                    .input(body)
                    .build()
                    .map_err(internal)?,
            )
            // The schedule deletes itself once it has fired: nothing to clean up.
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Already there: the same wake-up of the same execution.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conflict_exception()) => Ok(()),
            Err(e) => Err(crate::store::sdk_error::classify_sdk_error(e, &["ThrottlingException"])),
        }
    }
}

/// Schedule triggers' recurring schedules in EventBridge Scheduler: the stack's trigger group,
/// the role Scheduler sends with, and the execution queue as their target.
pub struct TriggerScheduler {
    pub client: aws_sdk_scheduler::Client,
    pub group: String,
    pub role_arn: String,
    pub queue_arn: String,
}

/// A start or end date as Scheduler takes it; None once it is no later than `not_before`
/// (Scheduler refuses a StartDate over 5 minutes old: a trigger whose `start_at` has long
/// passed is changed without it, and a rate then counts from the change).
fn scheduler_time(text: &Option<String>, not_before: DateTime<Utc>) -> Option<aws_sdk_scheduler::primitives::DateTime> {
    let at = chrono::DateTime::parse_from_rfc3339(text.as_deref()?).ok()?;
    (at > not_before).then(|| aws_sdk_scheduler::primitives::DateTime::from_secs(at.timestamp()))
}

#[async_trait]
impl crate::triggers::TriggerSchedules for TriggerScheduler {
    async fn put_schedule(&self, spec: &crate::triggers::ScheduleSpec) -> Result<(), StoreError> {
        use aws_sdk_scheduler::types::{FlexibleTimeWindow, FlexibleTimeWindowMode, ScheduleState, Target};
        let internal = |e: aws_sdk_scheduler::error::BuildError| StoreError::Internal(e.to_string());
        let window = FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(internal)?;
        let target = Target::builder()
            .arn(&self.queue_arn)
            .role_arn(&self.role_arn)
            .input(&spec.message)
            .build()
            .map_err(internal)?;
        let now = Utc::now();
        // Past its end, a schedule is disabled (an EndDate in the past is refused, and without
        // one it would fire on).
        let ended = spec.end_at.as_deref().and_then(|e| DateTime::parse_from_rfc3339(e).ok()).is_some_and(|e| e <= now);
        let state = if spec.enabled && !ended { ScheduleState::Enabled } else { ScheduleState::Disabled };
        let start_floor = now - chrono::Duration::seconds(240);
        const TRANSIENT: &[&str] = &["ThrottlingException", "InternalServerException"];
        let created = self
            .client
            .create_schedule()
            .name(&spec.name)
            .group_name(&self.group)
            .schedule_expression(&spec.expression)
            .schedule_expression_timezone(&spec.timezone)
            .set_start_date(scheduler_time(&spec.start_at, start_floor))
            .set_end_date(scheduler_time(&spec.end_at, now))
            .state(state.clone())
            .flexible_time_window(window.clone())
            .target(target.clone())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // There already (a change): UpdateSchedule replaces every field.
            Err(e) if e.as_service_error().is_some_and(|e| e.is_conflict_exception()) => self
                .client
                .update_schedule()
                .name(&spec.name)
                .group_name(&self.group)
                .schedule_expression(&spec.expression)
                .schedule_expression_timezone(&spec.timezone)
                .set_start_date(scheduler_time(&spec.start_at, start_floor))
                .set_end_date(scheduler_time(&spec.end_at, now))
                .state(state)
                .flexible_time_window(window)
                .target(target)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| crate::store::sdk_error::classify_sdk_error(e, TRANSIENT)),
            Err(e) => Err(crate::store::sdk_error::classify_sdk_error(e, TRANSIENT)),
        }
    }

    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        match self.client.delete_schedule().name(name).group_name(&self.group).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(crate::store::sdk_error::classify_sdk_error(e, &["ThrottlingException"])),
        }
    }
}
