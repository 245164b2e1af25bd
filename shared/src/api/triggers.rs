//! Trigger routes (create, list, read, change, delete, rotate a webhook's secret) and the hooks
//! route that webhook senders call. The rules are in `triggers`; this module translates HTTP.

use super::views::{
    HookAccepted, NewTriggerView, Page, ScheduleView, SlackChallenge, TriggerRunView, TriggerView, WebhookView,
};
use super::{Call, paging, truncate, workflows};
use crate::api::http::{self, Reply};
use crate::error::{ApiError, ErrorCode};
use crate::executions::start::{LifecycleError, Started};
use crate::model::{ExecutionRecord, WorkflowRecord, now_rfc3339, rfc3339_in};
use crate::triggers::signature::{self, SignatureError};
use crate::triggers::{
    self as rules, HookSecretCache, MAX_TRIGGERS_PER_TENANT, MAX_TRIGGERS_PER_WORKFLOW, ResponseMode, SignatureScheme,
    TriggerRecord, TriggerSettings, TriggerSource, WebhookSecrets,
};
use chrono::Utc;
use lambda_http::RequestExt;
use lambda_http::http::StatusCode;
use serde_json::{Map, Value, json};
use std::time::Duration;

fn trigger_not_found(id: &str) -> ApiError {
    ApiError::new(ErrorCode::TriggerNotFound, format!("trigger '{}' was not found", truncate(id, 64)))
        .suggest("List the workflow's triggers with GET /v1/workflows/{workflow_id}/triggers.")
}

fn invalid(problems: Vec<Value>) -> ApiError {
    let first = problems.first().and_then(|p| p["message"].as_str()).unwrap_or("the trigger has problems").to_string();
    ApiError::new(ErrorCode::TriggerInvalid, first).with_details(problems)
}

fn hook_url(call: &Call<'_>, hook_id: &str) -> String {
    format!("{}/hooks/{hook_id}", call.app.config.public_api_url.as_deref().unwrap_or(""))
}

fn view(call: &Call<'_>, record: &TriggerRecord, last_status: Option<&'static str>) -> TriggerView {
    let now = Utc::now();
    TriggerView {
        id: record.trigger_id.clone(),
        workflow_id: record.workflow_id.clone(),
        kind: record.kind(),
        enabled: record.enabled,
        description: record.description.clone(),
        created_at: record.created_at.clone(),
        updated_at: record.updated_at.clone(),
        webhook: record.webhook().map(|w| WebhookView {
            url: hook_url(call, &w.hook_id),
            scheme: w.scheme.as_str(),
            unsigned: w.scheme == SignatureScheme::None,
            mode: match w.mode {
                ResponseMode::Async => "async",
                ResponseMode::Sync => "sync",
            },
            sync_timeout_seconds: w.sync_timeout_seconds,
        }),
        schedule: record.schedule().map(|s| {
            let expression = s.expression();
            let parse = |t: &Option<String>| {
                t.as_deref().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).map(|t| t.with_timezone(&Utc))
            };
            // A rate counts from when its schedule was last put (each change puts it again), or
            // from start_at when Scheduler was given it (see TriggerScheduler).
            let anchor = parse(&Some(record.updated_at.clone())).unwrap_or(now);
            let start = parse(&s.start_at).filter(|start| *start > anchor - chrono::Duration::seconds(240));
            let next = match (&expression, rules::schedule::parse_timezone(&s.timezone)) {
                (Ok(expression), Ok(tz)) if record.enabled => expression
                    .next_fire_times(tz, now, anchor, start, parse(&s.end_at), rules::NEXT_FIRE_TIMES)
                    .iter()
                    .map(|t| t.with_timezone(&tz).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .collect(),
                _ => Vec::new(),
            };
            ScheduleView {
                cron: s.cron.clone(),
                rate: s.rate.clone(),
                timezone: s.timezone.clone(),
                input: s.input.clone(),
                start_at: s.start_at.clone(),
                end_at: s.end_at.clone(),
                expression: expression.map(|e| e.aws().to_string()).unwrap_or_default(),
                next_fire_times: next,
            }
        }),
        last_run: record.last_run.as_ref().map(|run| TriggerRunView {
            at: run.at.clone(),
            execution_id: run.execution_id.clone(),
            status: last_status,
            error: run.error.clone(),
        }),
    }
}

fn trigger_id(call: &Call<'_>) -> Result<String, ApiError> {
    http::ulid_param(call.req, "trigger_id").map_err(|raw| trigger_not_found(&raw))
}

/// The caller's workflow and one of its triggers, or 404 (another tenant's is missing too).
async fn load(call: &Call<'_>) -> Result<(WorkflowRecord, TriggerRecord), ApiError> {
    let workflow_id = workflows::workflow_id(call)?;
    // The workflow first: another tenant's answers as a missing one, whatever the trigger id.
    let workflow = workflows::load(call, &workflow_id).await?;
    let trigger_id = trigger_id(call)?;
    let trigger = call.app.store()?.get_trigger(call.tenant_id, &workflow_id, &trigger_id).await?;
    Ok((workflow, trigger.ok_or_else(|| trigger_not_found(&trigger_id))?))
}

fn body_object(call: &Call<'_>) -> Result<Map<String, Value>, ApiError> {
    // Not typed_body: serde's messages may quote what they choke on, and that could be a secret.
    match http::json_body(call.req)?.0 {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::invalid_request("the body must be a JSON object")),
    }
}

/// An enabled trigger needs a deployed version to run.
fn check_deployed(workflow: &WorkflowRecord, settings: &TriggerSettings) -> Result<(), ApiError> {
    if settings.enabled && workflow.deployed_version.is_none() {
        return Err(ApiError::new(
            ErrorCode::NoDeployedVersion,
            "a trigger runs the workflow's deployed version, and it has none",
        )
        .suggest(format!(
            "Deploy a version with PUT /v1/workflows/{}/deployment, or save the trigger with \"enabled\": false.",
            workflow.workflow_id
        )));
    }
    Ok(())
}

/// A schedule's input is checked against the deployed version's `input_schema` when it is
/// saved, not only at each fire (where a refusal shows only as the last run's error).
async fn check_schedule_input(
    call: &Call<'_>,
    workflow: &WorkflowRecord,
    settings: &TriggerSettings,
) -> Result<(), ApiError> {
    let (TriggerSource::Schedule(schedule), Some(version)) = (&settings.source, workflow.deployed_version) else {
        return Ok(());
    };
    if !settings.enabled {
        // Checked when it is enabled: disabling is never refused.
        return Ok(());
    }
    let Some(deployed) = call.app.store()?.get_version(call.tenant_id, &workflow.workflow_id, version).await? else {
        return Ok(());
    };
    match crate::executions::start::check_input(&deployed.definition, &schedule.input) {
        Ok(()) => Ok(()),
        Err(LifecycleError::InputInvalid(problems)) => Err(ApiError::new(
            ErrorCode::TriggerInvalid,
            format!("input does not match the input_schema of deployed version {version}"),
        )
        .with_details(problems)),
        Err(e) => Err(invalid(vec![rules::problem("/input", e.to_string())])),
    }
}

fn secret_problem(settings: &TriggerSettings) -> Option<Value> {
    let TriggerSource::Webhook(w) = &settings.source else { return None };
    match (&settings.secret, w.scheme) {
        (None, scheme) if scheme.needs_given_secret() => Some(rules::problem(
            "/secret",
            format!("a {} webhook needs the signing secret {} issued", scheme.as_str(), scheme.as_str()),
        )),
        (Some(_), SignatureScheme::None) => Some(rules::problem("/secret", "an unsigned webhook has no secret")),
        _ => None,
    }
}

/// POST /v1/workflows/{workflow_id}/triggers.
pub async fn create(call: &Call<'_>) -> Result<Reply, ApiError> {
    let workflow_id = workflows::workflow_id(call)?;
    let workflow = workflows::load(call, &workflow_id).await?;
    let body = body_object(call)?;
    let hook_id = rules::new_hook_id();
    let settings = rules::parse(&body, &hook_id, Utc::now(), None).map_err(invalid)?;
    if let Some(problem) = secret_problem(&settings) {
        return Err(invalid(vec![problem]));
    }
    check_deployed(&workflow, &settings)?;
    check_schedule_input(call, &workflow, &settings).await?;
    let store = call.app.store()?;
    let schedules = match settings.source {
        TriggerSource::Schedule(_) => Some(call.app.schedules()?),
        TriggerSource::Webhook(_) => None,
    };
    if store.count_triggers(call.tenant_id, &workflow_id).await? >= MAX_TRIGGERS_PER_WORKFLOW {
        return Err(limit_reached(format!("the workflow already has {MAX_TRIGGERS_PER_WORKFLOW} triggers")));
    }
    let now = now_rfc3339();
    let record = TriggerRecord {
        tenant_id: call.tenant_id.to_string(),
        workflow_id: workflow_id.clone(),
        trigger_id: crate::model::new_id(),
        enabled: settings.enabled,
        description: settings.description.clone(),
        source: settings.source.clone(),
        created_at: now.clone(),
        updated_at: now,
        revision: 1,
        retention_seconds: call.app.config.execution_retention.as_secs(),
        last_run: None,
    };
    // The secret first: a webhook never exists without the secret that verifies it.
    let secret_name = rules::secret_name(&call.app.config.stage, call.tenant_id, &record.trigger_id);
    let mut generated = None;
    if let Some(w) = record.webhook()
        && w.scheme != SignatureScheme::None
    {
        let secret = settings.secret.clone().unwrap_or_else(|| {
            let new = rules::new_signing_secret();
            generated = Some(new.clone());
            new
        });
        let stored = WebhookSecrets { current: secret, previous: None, previous_until: None };
        call.app.hook_secrets.store(call.app.secrets()?, &secret_name, &stored).await?;
    }
    let created = store.create_trigger(&record, MAX_TRIGGERS_PER_WORKFLOW, MAX_TRIGGERS_PER_TENANT).await;
    if !matches!(created, Ok(true)) {
        // Not saved: its secret goes too (a leftover would verify nothing, but costs).
        if generated.is_some() || settings.secret.is_some() {
            let _ = call.app.secrets()?.delete_secret(&secret_name).await;
        }
        created?;
        return Err(limit_reached(format!(
            "the workflow has {MAX_TRIGGERS_PER_WORKFLOW} triggers or the tenant {MAX_TRIGGERS_PER_TENANT}"
        )));
    }
    if let (Some(schedules), Some(spec)) = (schedules, rules::schedule_spec(&record))
        && let Err(e) = schedules.put_schedule(&spec).await
    {
        // Not half-made: without its schedule the trigger would show but never fire.
        let _ = store.delete_trigger(&record).await;
        return Err(e.into());
    }
    let view = NewTriggerView { view: view(call, &record, None), secret: generated, previous_secret_expires_at: None };
    Ok(Reply::created(view, format!("/v1/workflows/{workflow_id}/triggers/{}", record.trigger_id)))
}

fn limit_reached(message: String) -> ApiError {
    ApiError::new(ErrorCode::TriggerLimitReached, message)
        .with_details(vec![rules::problem("", "delete a trigger you no longer use first")])
        .suggest("Delete a trigger with DELETE /v1/workflows/{workflow_id}/triggers/{trigger_id}.")
}

/// GET /v1/workflows/{workflow_id}/triggers: oldest first, a page at a time.
pub async fn list(call: &Call<'_>) -> Result<Reply, ApiError> {
    let workflow_id = workflows::workflow_id(call)?;
    workflows::load(call, &workflow_id).await?;
    let scope = format!("triggers|{}|{workflow_id}", call.tenant_id);
    let (limit, after) = paging(call, &scope)?;
    let page = call.app.store()?.list_triggers(call.tenant_id, &workflow_id, after.as_deref(), limit).await?;
    let key = &call.app.config.cursor_signing_key;
    Ok(Reply::ok(Page {
        items: page.items.iter().map(|t| view(call, t, None)).collect(),
        next_token: page.next_after.map(|after| crate::cursor::encode(key, &scope, &after)),
    }))
}

/// The status of the trigger's last run as it is now.
async fn last_status(call: &Call<'_>, record: &TriggerRecord) -> Result<Option<&'static str>, ApiError> {
    let Some(id) = record.last_run.as_ref().and_then(|r| r.execution_id.as_deref()) else { return Ok(None) };
    let execution = call.app.store()?.get_execution(call.tenant_id, id).await?;
    Ok(execution.filter(|e| !e.is_expired()).map(|e| e.status.as_str()))
}

/// GET /v1/workflows/{workflow_id}/triggers/{trigger_id}.
pub async fn get(call: &Call<'_>) -> Result<Reply, ApiError> {
    let (_, record) = load(call).await?;
    let status = last_status(call, &record).await?;
    Ok(Reply::ok(view(call, &record, status)))
}

/// PATCH /v1/workflows/{workflow_id}/triggers/{trigger_id}: the fields given replace the
/// stored ones (`null` clears an optional one); the type cannot change.
pub async fn update(call: &Call<'_>) -> Result<Reply, ApiError> {
    let (workflow, old) = load(call).await?;
    let patch = body_object(call)?;
    if patch.contains_key("secret") {
        return Err(invalid(vec![rules::problem(
            "/secret",
            "a secret changes by rotation: POST /v1/workflows/{workflow_id}/triggers/{trigger_id}/rotate-secret",
        )]));
    }
    if patch.get("type").is_some_and(|t| t.as_str() != Some(old.kind())) {
        return Err(invalid(vec![rules::problem("/type", "a trigger's type cannot change; create another trigger")]));
    }
    // The scheme decides which secret exists (none, generated, or the provider's): a new
    // scheme is a new trigger.
    if let Some(w) = old.webhook()
        && patch.get("scheme").is_some_and(|s| s.as_str() != Some(w.scheme.as_str()))
    {
        return Err(invalid(vec![rules::problem(
            "/scheme",
            "a webhook's scheme cannot change (its secret depends on it); create another trigger",
        )]));
    }
    let mut merged = old.settable();
    merged.extend(patch);
    let hook_id = old.webhook().map(|w| w.hook_id.clone()).unwrap_or_default();
    let settings = rules::parse(&merged, &hook_id, Utc::now(), old.schedule()).map_err(invalid)?;
    check_deployed(&workflow, &settings)?;
    check_schedule_input(call, &workflow, &settings).await?;
    let new = TriggerRecord {
        enabled: settings.enabled,
        description: settings.description,
        source: settings.source,
        updated_at: now_rfc3339(),
        revision: old.revision + 1,
        ..old.clone()
    };
    let store = call.app.store()?;
    let schedules = if new.schedule().is_some() { Some(call.app.schedules()?) } else { None };
    if let (Some(schedules), Some(spec)) = (schedules, rules::schedule_spec(&new)) {
        schedules.put_schedule(&spec).await?;
    }
    let replaced = store.replace_trigger(&new, old.revision).await;
    if !matches!(replaced, Ok(true)) {
        // Not saved (another change came first, or the store failed): Scheduler gets the
        // stored trigger's schedule back, whichever change that is.
        if let Some(schedules) = schedules {
            let restored = match store.get_trigger(call.tenant_id, &old.workflow_id, &old.trigger_id).await {
                Ok(Some(current)) => match rules::schedule_spec(&current) {
                    Some(spec) => schedules.put_schedule(&spec).await,
                    None => Ok(()),
                },
                // Deleted meanwhile: the schedule this change put must not outlive it.
                Ok(None) => schedules.delete_schedule(&rules::schedule_name(&old.trigger_id)).await,
                Err(e) => Err(e),
            };
            if let Err(e) = restored {
                tracing::error!(error = %e, "a trigger's schedule may differ from its stored settings");
            }
        }
        replaced?;
        return Err(ApiError::new(ErrorCode::ConcurrentModification, "the trigger changed while this change was made")
            .suggest("GET the trigger and send the change again."));
    }
    let status = last_status(call, &new).await?;
    Ok(Reply::ok(view(call, &new, status)))
}

/// DELETE /v1/workflows/{workflow_id}/triggers/{trigger_id}: its URL answers 404 at once.
pub async fn delete(call: &Call<'_>) -> Result<Reply, ApiError> {
    let (_, record) = load(call).await?;
    remove(call.app, &record).await?;
    Ok(Reply::no_content())
}

/// Removes a trigger with its schedule and secret: the schedule first (a failure there leaves
/// the trigger whole), then the items, then the secret (a leftover secret verifies nothing).
pub(super) async fn remove(app: &super::App, record: &TriggerRecord) -> Result<(), ApiError> {
    if record.schedule().is_some() {
        app.schedules()?.delete_schedule(&rules::schedule_name(&record.trigger_id)).await?;
    }
    app.store()?.delete_trigger(record).await?;
    if record.webhook().is_some_and(|w| w.scheme != SignatureScheme::None) {
        let name = rules::secret_name(&app.config.stage, &record.tenant_id, &record.trigger_id);
        if let Err(e) = app.secrets()?.delete_secret(&name).await {
            tracing::warn!(error = %e, "a deleted trigger's secret was left in the secret store");
        }
        app.hook_secrets.forget(&name);
    }
    Ok(())
}

/// POST /v1/workflows/{workflow_id}/triggers/{trigger_id}/rotate-secret: a new signing secret
/// (generated, or `{"secret"}` for Stripe and Slack, which issue their own); the previous one
/// still verifies for the key-rotation grace period.
pub async fn rotate_secret(call: &Call<'_>) -> Result<Reply, ApiError> {
    let (_, record) = load(call).await?;
    let scheme = record.webhook().map(|w| w.scheme);
    if scheme.is_none_or(|s| s == SignatureScheme::None) {
        return Err(invalid(vec![rules::problem("", "only a signed webhook trigger has a secret to rotate")]));
    }
    let given = match http::header(call.req, "content-type") {
        Some(_) if !call.req.body().is_empty() => {
            let body = body_object(call)?;
            if let Some(key) = body.keys().find(|k| k.as_str() != "secret") {
                return Err(invalid(vec![rules::problem(&format!("/{key}"), format!("{key:?} is not a field here"))]));
            }
            match body.get("secret") {
                None => None,
                Some(Value::String(s)) if (8..=256).contains(&s.len()) => Some(s.clone()),
                Some(_) => return Err(invalid(vec![rules::problem("/secret", "secret must be 8 to 256 characters")])),
            }
        }
        _ => None,
    };
    if given.is_none() && scheme.is_some_and(SignatureScheme::needs_given_secret) {
        return Err(invalid(vec![rules::problem("/secret", "give the new secret the provider issued")]));
    }
    let name = rules::secret_name(&call.app.config.stage, call.tenant_id, &record.trigger_id);
    let secrets = call.app.secrets()?;
    let old = call.app.hook_secrets.load(secrets, &name, Duration::ZERO).await?;
    let generated = given.is_none().then(rules::new_signing_secret);
    let grace_ends = rfc3339_in(call.app.config.key_rotation_grace.as_secs() as i64);
    let stored = WebhookSecrets {
        current: given.or(generated.clone()).unwrap_or_default(),
        previous: old.map(|o| o.current),
        previous_until: Some(grace_ends.clone()),
    };
    call.app.hook_secrets.store(secrets, &name, &stored).await?;
    let view = NewTriggerView {
        view: view(call, &record, None),
        secret: generated,
        previous_secret_expires_at: Some(grace_ends),
    };
    Ok(Reply::ok(view))
}

fn hook_not_found() -> ApiError {
    // The same answer for an unknown, disabled or deleted hook: an id reveals nothing.
    ApiError::new(ErrorCode::HookNotFound, "no webhook answers at this URL")
}

fn signature_refused(error: SignatureError) -> ApiError {
    match error {
        SignatureError::Stale { .. } => ApiError::new(ErrorCode::WebhookTimestampStale, error.to_string())
            .suggest("Sign each delivery when it is sent, with a clock in sync (5 minutes' tolerance)."),
        other => ApiError::new(ErrorCode::WebhookSignatureInvalid, other.to_string())
            .suggest("Sign the raw body with the trigger's secret as its scheme says; see the README's webhook step."),
    }
}

/// Headers that never reach an execution's input: credentials and signatures.
fn kept_header(name: &str) -> bool {
    !matches!(name, "authorization" | "cookie" | "proxy-authorization" | "x-api-key")
        && !SignatureScheme::SIGNATURE_HEADERS.contains(&name)
}

/// POST /hooks/{hook_id}: verifies the sender over the raw body, then starts the trigger's
/// workflow with `{"body", "headers", "query", "method"}` as input. `async` answers 202 with the
/// execution id; `sync` waits up to its timeout and answers 200 with the output when the run
/// succeeded in time. A repeated delivery (the provider's delivery id, an Idempotency-Key, or
/// the same signature) starts nothing new and answers as the first.
pub async fn receive(call: &Call<'_>) -> Result<Reply, ApiError> {
    let hook_id = http::path_param(call.req, "hook_id").unwrap_or_default();
    if !rules::is_hook_id(&hook_id) {
        return Err(hook_not_found());
    }
    let body: &[u8] = call.req.body().as_ref();
    if body.len() > http::MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is {} bytes; the limit is {}", body.len(), http::MAX_BODY_BYTES),
        ));
    }
    let store = call.app.store()?;
    let trigger = store.find_hook(&hook_id).await?.filter(|t| t.enabled).ok_or_else(hook_not_found)?;
    let Some(webhook) = trigger.webhook().cloned() else { return Err(hook_not_found()) };
    let header = |name: &str| http::header(call.req, name).map(str::to_string);
    let verified = verify(call, &trigger, webhook.scheme, &header, body).await?;

    let media_type = http::header(call.req, "content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json = media_type == "application/json" || media_type.ends_with("+json");
    let parsed = if is_json {
        serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::new(ErrorCode::InvalidJson, format!("the body is declared JSON but is not: {e}")))?
    } else {
        Value::String(String::from_utf8_lossy(body).into_owned())
    };
    if webhook.scheme == SignatureScheme::Slack && parsed["type"] == "url_verification" {
        let challenge = parsed["challenge"].as_str().unwrap_or_default().to_string();
        return Ok(Reply::ok(SlackChallenge { challenge }));
    }
    let given = match webhook.scheme {
        SignatureScheme::Github => header("x-github-delivery").map(|id| ("github", id)),
        SignatureScheme::Stripe => parsed["id"].as_str().map(|id| ("stripe", id.to_string())),
        SignatureScheme::Slack => parsed["event_id"].as_str().map(|id| ("slack", id.to_string())),
        SignatureScheme::Nodeai | SignatureScheme::None => None,
    }
    .or_else(|| header("idempotency-key").map(|key| ("key", key)));
    if given.as_ref().is_some_and(|(_, id)| id.is_empty() || id.len() > 255) {
        return Err(ApiError::invalid_request("the delivery id or Idempotency-Key must be 1 to 255 characters"));
    }
    let delivery = given
        .map(|(kind, id)| format!("{kind} {id}"))
        .or(verified.as_ref().map(|signature| format!("signature {signature}")));
    if let (Some(signature), Some(delivery)) = (&verified, &delivery) {
        refuse_replay_under_another_id(call, &trigger, signature, delivery).await?;
    }

    let headers: Map<String, Value> = call
        .req
        .headers()
        .keys()
        .map(|name| name.as_str().to_ascii_lowercase())
        .filter(|name| kept_header(name))
        .map(|name| {
            let values: Vec<&str> = call.req.headers().get_all(&name).iter().filter_map(|v| v.to_str().ok()).collect();
            (name, Value::String(values.join(", ")))
        })
        .collect();
    let query: Map<String, Value> = call
        .req
        .query_string_parameters_ref()
        .map(|q| q.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect())
        .unwrap_or_default();
    let input = json!({ "body": parsed, "headers": headers, "query": query, "method": "POST" });
    let request_id = http::request_id(call.req);
    let started =
        rules::fire::start_run(store, call.app.queue.as_ref(), &trigger, input, delivery.as_deref(), &request_id)
            .await
            .map_err(|e| match e {
                LifecycleError::NoDeployedVersion => ApiError::new(ErrorCode::NoDeployedVersion, e.to_string()),
                other => super::executions::api_error(other),
            })?;
    let execution = match started {
        Started::New(record) | Started::Replayed(record) => record,
    };
    let execution = match webhook.mode {
        ResponseMode::Async => execution,
        ResponseMode::Sync => {
            crate::executions::wait_for_end(
                call.app.store()?,
                execution,
                Duration::from_secs(webhook.sync_timeout_seconds),
            )
            .await?
        }
    };
    answer(call, execution, webhook.mode).await
}

/// A signed delivery sent again under another delivery id (an unsigned header: GitHub's
/// delivery id, an Idempotency-Key) is a replay, not a new delivery: each signature is claimed
/// for 24 h with the delivery id it first came with, and comes again only with that one.
async fn refuse_replay_under_another_id(
    call: &Call<'_>,
    trigger: &TriggerRecord,
    signature: &str,
    delivery: &str,
) -> Result<(), ApiError> {
    // Claimed whatever the delivery id, the signature's own included: a replay with the id
    // removed, or one added, is refused as well as one with the id changed.
    let key = crate::auth::hash_key(&format!("trigger {}\nseen {signature}", trigger.trigger_id));
    let claim = call
        .app
        .store()?
        .claim_idempotency_key(
            &trigger.tenant_id,
            &key,
            &crate::auth::hash_key(delivery),
            "-",
            &rfc3339_in(crate::executions::start::IDEMPOTENCY_WINDOW_SECONDS),
            &now_rfc3339(),
        )
        .await?;
    match claim {
        crate::store::IdempotencyClaim::Existing { body_hash, .. } if body_hash != crate::auth::hash_key(delivery) => {
            Err(ApiError::new(
                ErrorCode::WebhookSignatureInvalid,
                "this signed delivery was already received under another delivery id",
            ))
        }
        _ => Ok(()),
    }
}

/// Verifies a delivery against the trigger's secrets: a cached copy first, a fresh read when
/// that fails and the copy is not brand new (a rotation on another instance). Ok(signature id).
async fn verify(
    call: &Call<'_>,
    trigger: &TriggerRecord,
    scheme: SignatureScheme,
    header: &(dyn Fn(&str) -> Option<String> + Sync),
    body: &[u8],
) -> Result<Option<String>, ApiError> {
    if scheme == SignatureScheme::None {
        return Ok(None);
    }
    let name = rules::secret_name(&call.app.config.stage, &trigger.tenant_id, &trigger.trigger_id);
    let (secrets, cache) = (call.app.secrets()?, &call.app.hook_secrets);
    let now = Utc::now().timestamp();
    let attempt = |stored: Option<WebhookSecrets>| {
        // A trigger whose secret is gone verifies nothing.
        let live = stored.map(|s| s.live(&now_rfc3339())).unwrap_or_default();
        signature::verify(scheme, header, body, &live, now)
    };
    let first = attempt(cache.load(secrets, &name, HookSecretCache::TTL).await?);
    let result = match first {
        Err(SignatureError::Mismatch) if cache.is_stale(&name) => {
            attempt(cache.load(secrets, &name, Duration::ZERO).await?)
        }
        other => other,
    };
    result.map(|v| v.signature_id).map_err(signature_refused)
}

/// 202 with the execution id; in `sync` mode, 200 with the output of a run that succeeded, or
/// 502 for one that ended otherwise (its error stays with the tenant: GET the execution).
async fn answer(call: &Call<'_>, execution: ExecutionRecord, mode: ResponseMode) -> Result<Reply, ApiError> {
    let id = execution.execution_id.clone();
    if mode == ResponseMode::Async || !execution.status.is_final() {
        let mut reply = Reply::accepted(HookAccepted { execution_id: id.clone(), status: execution.status.as_str() });
        reply.status = StatusCode::ACCEPTED;
        return Ok(reply.with_header("nodeai-execution-id", id));
    }
    if execution.status != crate::model::ExecutionStatus::Succeeded {
        return Err(ApiError::new(ErrorCode::ExecutionFailed, format!("the run ended {}", execution.status.as_str()))
            .with_header("nodeai-execution-id", id));
    }
    let values = crate::store::values::Values::new(call.app.store()?, &execution.tenant_id, &execution.execution_id);
    let output = values.resolve(execution.output).await?;
    Ok(Reply::raw(output).with_header("nodeai-execution-id", id))
}
