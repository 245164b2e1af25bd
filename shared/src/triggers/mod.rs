//! Triggers: what starts a workflow's deployed version from outside, without an API key. A
//! webhook trigger answers `POST /hooks/{hook_id}` from a signed sender; a schedule trigger is
//! an EventBridge Scheduler schedule whose target is the execution queue. Each run is an
//! execution like any other, with `trigger_id` on it.

use crate::error::StoreError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub mod fire;
pub mod schedule;
pub mod signature;

pub use signature::SignatureScheme;

/// The most triggers one workflow may have.
pub const MAX_TRIGGERS_PER_WORKFLOW: usize = 20;
/// The most triggers one tenant may have, over all its workflows.
pub const MAX_TRIGGERS_PER_TENANT: usize = 200;
/// The longest a `sync` webhook waits for its run, seconds (inside API Gateway's 29 s).
pub const MAX_SYNC_TIMEOUT_SECONDS: u64 = 25;
pub const DEFAULT_SYNC_TIMEOUT_SECONDS: u64 = 10;
/// The largest `input` a schedule trigger may carry, bytes of JSON.
pub const MAX_SCHEDULE_INPUT_BYTES: usize = 64 * 1024;
/// How many upcoming fire times GET shows.
pub const NEXT_FIRE_TIMES: usize = 5;

/// A trigger as stored (one item; the hook id's item holds a copy for one-read lookups).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub tenant_id: String,
    pub workflow_id: String,
    /// A ULID.
    pub trigger_id: String,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub source: TriggerSource,
    pub created_at: String,
    pub updated_at: String,
    /// Bumped by each change; a change is written only over the revision it read.
    pub revision: u64,
    /// How long its executions' records are kept, seconds (the stack's retention when the
    /// trigger was saved: the worker that starts scheduled runs has no API configuration).
    pub retention_seconds: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<TriggerRun>,
}

/// What fires a trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TriggerSource {
    Webhook(WebhookSettings),
    Schedule(ScheduleSettings),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSettings {
    /// 32 lower-case hex characters (128 random bits): the URL's only secret-free part, and
    /// not derived from anything.
    pub hook_id: String,
    pub scheme: SignatureScheme,
    pub mode: ResponseMode,
    pub sync_timeout_seconds: u64,
}

/// How a webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    /// 202 with the execution id at once.
    Async,
    /// Waits up to `sync_timeout_seconds`: 200 with the output when the run succeeded in time.
    Sync,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSettings {
    /// Five-field cron, as given; exactly one of `cron` and `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// `"<n> minutes|hours|days"`, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// IANA name; `UTC` by default.
    pub timezone: String,
    /// Each run's input.
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<String>,
}

impl ScheduleSettings {
    /// The checked expression (stored settings were checked when saved).
    pub fn expression(&self) -> Result<schedule::Expression, String> {
        match (&self.cron, &self.rate) {
            (Some(cron), _) => schedule::parse_cron(cron),
            (None, Some(rate)) => schedule::parse_rate(rate),
            (None, None) => Err("a schedule has a cron or a rate".into()),
        }
    }
}

/// The last time a trigger started (or could not start) a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRun {
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Why no run started (no deployed version, input refused by the workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl TriggerRecord {
    pub fn webhook(&self) -> Option<&WebhookSettings> {
        match &self.source {
            TriggerSource::Webhook(w) => Some(w),
            TriggerSource::Schedule(_) => None,
        }
    }
    pub fn schedule(&self) -> Option<&ScheduleSettings> {
        match &self.source {
            TriggerSource::Schedule(s) => Some(s),
            TriggerSource::Webhook(_) => None,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self.source {
            TriggerSource::Webhook(_) => "webhook",
            TriggerSource::Schedule(_) => "schedule",
        }
    }

    /// The settable fields as a client sends them: what a PATCH is merged into.
    pub fn settable(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert("type".into(), json!(self.kind()));
        out.insert("enabled".into(), json!(self.enabled));
        if let Some(description) = &self.description {
            out.insert("description".into(), json!(description));
        }
        match &self.source {
            TriggerSource::Webhook(w) => {
                out.insert("scheme".into(), json!(w.scheme));
                out.insert("mode".into(), json!(w.mode));
                out.insert("sync_timeout_seconds".into(), json!(w.sync_timeout_seconds));
            }
            TriggerSource::Schedule(s) => {
                if let Value::Object(fields) = serde_json::to_value(s).unwrap_or_default() {
                    out.extend(fields);
                }
            }
        }
        out
    }
}

/// A new random hook id: 128 bits as 32 lower-case hex characters.
pub fn new_hook_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `text` has a hook id's shape (anything else cannot name one).
pub fn is_hook_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new signing secret: `whsec_` and 32 random bytes in hex. The whole string is the HMAC
/// key (as Stripe's are).
pub fn new_signing_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// One problem with a trigger, at a JSON pointer into the request body.
pub fn problem(path: &str, message: impl Into<String>) -> Value {
    json!({ "path": path, "message": message.into() })
}

/// A trigger's checked settings: what `parse` makes of a request body (create) or of the
/// stored settings with a PATCH merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSettings {
    pub enabled: bool,
    pub description: Option<String>,
    pub source: TriggerSource,
    /// A signing secret given in the body (Stripe's and Slack's are issued by them).
    pub secret: Option<String>,
}

/// Checks a trigger body: every problem at once, each with its path. `hook_id` is the
/// webhook's id (kept on a PATCH, new on a create). `now` bounds a new `start_at` and, for an
/// enabled schedule, `end_at`; `stored` is the schedule a PATCH changes (its `start_at` may have
/// passed since).
pub fn parse(
    body: &Map<String, Value>,
    hook_id: &str,
    now: chrono::DateTime<chrono::Utc>,
    stored: Option<&ScheduleSettings>,
) -> Result<TriggerSettings, Vec<Value>> {
    let mut problems = Vec::new();
    let kind = body.get("type").and_then(Value::as_str);
    let allowed: &[&str] = match kind {
        Some("webhook") => &["type", "enabled", "description", "scheme", "mode", "sync_timeout_seconds", "secret"],
        Some("schedule") => {
            &["type", "enabled", "description", "cron", "rate", "timezone", "input", "start_at", "end_at"]
        }
        _ => {
            return Err(vec![problem("/type", "type must be \"webhook\" or \"schedule\"")]);
        }
    };
    for key in body.keys().filter(|k| !allowed.contains(&k.as_str())) {
        problems
            .push(problem(&format!("/{key}"), format!("{key:?} is not a field of a {} trigger", kind.unwrap_or(""))));
    }
    let enabled = match body.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            problems.push(problem("/enabled", "enabled must be true or false"));
            true
        }
    };
    let description = match body.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= 200 => Some(s.clone()),
        Some(_) => {
            problems.push(problem("/description", "description must be a string of at most 200 characters"));
            None
        }
    };
    let text = |name: &str, problems: &mut Vec<Value>| -> Option<String> {
        match body.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                problems.push(problem(&format!("/{name}"), format!("{name} must be a string")));
                None
            }
        }
    };
    let mut secret = None;
    let source = if kind == Some("webhook") {
        let scheme = match text("scheme", &mut problems) {
            None => SignatureScheme::Nodeai,
            Some(name) => SignatureScheme::parse(&name).unwrap_or_else(|| {
                problems.push(problem("/scheme", format!("scheme must be one of {}", SignatureScheme::ALL.join(", "))));
                SignatureScheme::Nodeai
            }),
        };
        let mode = match text("mode", &mut problems).as_deref() {
            None | Some("async") => ResponseMode::Async,
            Some("sync") => ResponseMode::Sync,
            Some(_) => {
                problems.push(problem("/mode", "mode must be \"async\" or \"sync\""));
                ResponseMode::Async
            }
        };
        let sync_timeout_seconds = match body.get("sync_timeout_seconds") {
            None | Some(Value::Null) => DEFAULT_SYNC_TIMEOUT_SECONDS,
            Some(v) => match v.as_u64().filter(|n| (1..=MAX_SYNC_TIMEOUT_SECONDS).contains(n)) {
                Some(n) => n,
                None => {
                    problems.push(problem(
                        "/sync_timeout_seconds",
                        format!("sync_timeout_seconds must be a whole number from 1 to {MAX_SYNC_TIMEOUT_SECONDS}"),
                    ));
                    DEFAULT_SYNC_TIMEOUT_SECONDS
                }
            },
        };
        secret = text("secret", &mut problems);
        if let Some(given) = &secret
            && !(8..=256).contains(&given.len())
        {
            problems.push(problem("/secret", "secret must be 8 to 256 characters"));
        }
        TriggerSource::Webhook(WebhookSettings { hook_id: hook_id.to_string(), scheme, mode, sync_timeout_seconds })
    } else {
        let (cron, rate) = (text("cron", &mut problems), text("rate", &mut problems));
        match (&cron, &rate) {
            (Some(c), None) => {
                if let Err(e) = schedule::parse_cron(c) {
                    problems.push(problem("/cron", e));
                }
            }
            (None, Some(r)) => {
                if let Err(e) = schedule::parse_rate(r) {
                    problems.push(problem("/rate", e));
                }
            }
            (Some(_), Some(_)) => problems.push(problem("/rate", "give cron or rate, not both")),
            (None, None) => {
                problems.push(problem("/cron", "a schedule needs cron (\"0 9 * * MON-FRI\") or rate (\"5 minutes\")"))
            }
        }
        let timezone = text("timezone", &mut problems).unwrap_or_else(|| "UTC".into());
        if let Err(e) = schedule::parse_timezone(&timezone) {
            problems.push(problem("/timezone", e));
        }
        let input = match body.get("input") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) if crate::model::limits::json_size(v) <= MAX_SCHEDULE_INPUT_BYTES => v.clone(),
            Some(Value::Object(_)) => {
                problems.push(problem("/input", format!("input is larger than {MAX_SCHEDULE_INPUT_BYTES} bytes")));
                json!({})
            }
            Some(_) => {
                problems.push(problem("/input", "input must be a JSON object"));
                json!({})
            }
        };
        let instant = |name: &str, problems: &mut Vec<Value>| -> Option<String> {
            let raw = text(name, problems)?;
            match crate::model::normalize_rfc3339(&raw) {
                Some(at) => Some(at),
                None => {
                    problems.push(problem(
                        &format!("/{name}"),
                        format!("{name} must be an RFC 3339 time such as 2027-01-01T09:00:00Z"),
                    ));
                    None
                }
            }
        };
        let (start_at, end_at) = (instant("start_at", &mut problems), instant("end_at", &mut problems));
        let now_text = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        if let Some(start) = &start_at
            && stored.is_none_or(|s| s.start_at.as_ref() != Some(start))
            && start.as_str() <= now_text.as_str()
        {
            problems.push(problem("/start_at", "start_at must be in the future (leave it out to start now)"));
        }
        if let Some(end) = &end_at {
            if start_at.as_ref().is_some_and(|start| start >= end) {
                problems.push(problem("/end_at", "end_at must be after start_at"));
            } else if enabled && end.as_str() <= now_text.as_str() {
                problems.push(problem("/end_at", "end_at has passed: an enabled schedule would never fire"));
            }
        }
        TriggerSource::Schedule(ScheduleSettings { cron, rate, timezone, input, start_at, end_at })
    };
    if problems.is_empty() { Ok(TriggerSettings { enabled, description, source, secret }) } else { Err(problems) }
}

/// A webhook trigger's secrets as kept in the secret store (JSON): the current one and, for a
/// grace period after a rotation, the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookSecrets {
    pub current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    /// When `previous` stops verifying (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<String>,
}

impl WebhookSecrets {
    /// The secrets that verify at `now`.
    pub fn live(&self, now: &str) -> Vec<String> {
        let mut out = vec![self.current.clone()];
        if let (Some(previous), Some(until)) = (&self.previous, &self.previous_until)
            && now < until.as_str()
        {
            out.push(previous.clone());
        }
        out
    }
}

/// The secret store's name for a trigger's signing secrets: under the tenant's prefix, in a
/// `triggers/` folder no credential name can reach (credential names have no `/`).
pub fn secret_name(stage: &str, tenant_id: &str, trigger_id: &str) -> String {
    format!("nodeai/{stage}/{tenant_id}/triggers/{trigger_id}")
}

/// A warm instance's copy of webhook secrets, so a delivery costs no Secrets Manager read
/// (GetSecretValue is $0.05 per 10,000). A signature that does not verify against a copy older
/// than `REFRESH_AFTER` is checked once more against a fresh read (a rotation elsewhere).
pub struct HookSecretCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<WebhookSecrets>)>>,
}

impl HookSecretCache {
    /// The longest a copy is used.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(300);
    /// A copy at least this old is read again when a signature does not verify.
    pub const REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn new() -> Self {
        HookSecretCache { entries: Default::default() }
    }

    /// The secrets under `name`, from a copy no older than `max_age` or from the store.
    pub async fn load(
        &self,
        store: &dyn crate::store::SecretStore,
        name: &str,
        max_age: std::time::Duration,
    ) -> Result<Option<WebhookSecrets>, StoreError> {
        let cached = self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        if let Some((at, secrets)) = cached
            && at.elapsed() < max_age
        {
            return Ok(secrets);
        }
        let secrets = match store.get_secret(name).await? {
            Some(text) => Some(
                serde_json::from_str::<WebhookSecrets>(&text)
                    .map_err(|_| StoreError::Internal("a stored webhook secret is not readable".into()))?,
            ),
            None => None,
        };
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), (std::time::Instant::now(), secrets.clone()));
        Ok(secrets)
    }

    /// Writes the secrets under `name` (JSON, as `load` reads them) and drops this instance's
    /// copy.
    pub async fn store(
        &self,
        store: &dyn crate::store::SecretStore,
        name: &str,
        secrets: &WebhookSecrets,
    ) -> Result<(), StoreError> {
        let text = serde_json::to_string(secrets).map_err(|e| StoreError::Internal(e.to_string()))?;
        store.put_secret(name, &text).await?;
        self.forget(name);
        Ok(())
    }

    /// Whether the copy of `name` is older than `REFRESH_AFTER` (or absent).
    pub fn is_stale(&self, name: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(name).is_none_or(|(at, _)| at.elapsed() >= Self::REFRESH_AFTER)
    }

    pub fn forget(&self, name: &str) {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
    }
}

impl Default for HookSecretCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Persistence of triggers (DynamoDB; memory for unit tests), with the conformance suite's
/// `triggers_*` tests for both.
#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// Writes a new trigger (and its hook id's item), counting it in its workflow's and its
    /// tenant's triggers in the same transaction: false, writing nothing, when the workflow
    /// already has `max_for_workflow` or the tenant `max_for_tenant`.
    async fn create_trigger(
        &self,
        record: &TriggerRecord,
        max_for_workflow: usize,
        max_for_tenant: usize,
    ) -> Result<bool, StoreError>;
    async fn get_trigger(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        trigger_id: &str,
    ) -> Result<Option<TriggerRecord>, StoreError>;
    /// A workflow's triggers, oldest first, a page at a time.
    async fn list_triggers(
        &self,
        tenant_id: &str,
        workflow_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<crate::store::Page<TriggerRecord>, StoreError>;
    async fn count_triggers(&self, tenant_id: &str, workflow_id: &str) -> Result<usize, StoreError>;
    /// Writes `record` over the stored one if its revision is still `expected_revision`:
    /// false when another change came first (or it was deleted). The last run is not part of
    /// a change: the stored one stays.
    async fn replace_trigger(&self, record: &TriggerRecord, expected_revision: u64) -> Result<bool, StoreError>;
    /// Deletes the trigger and its hook id's item, uncounting it: false if it was not there.
    async fn delete_trigger(&self, record: &TriggerRecord) -> Result<bool, StoreError>;
    /// The webhook trigger a hook id names (one read).
    async fn find_hook(&self, hook_id: &str) -> Result<Option<TriggerRecord>, StoreError>;
    /// Records the last run on the trigger's item, beside its settings (not a new revision, and
    /// never lost to a change made meanwhile).
    async fn record_trigger_run(&self, record: &TriggerRecord, run: &TriggerRun) -> Result<(), StoreError>;
}

/// A schedule trigger's EventBridge Scheduler schedule, as the port sets it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSpec {
    /// `nodeai-trigger-<trigger_id>`.
    pub name: String,
    /// Scheduler's expression: `cron(...)` or `rate(...)`.
    pub expression: String,
    pub timezone: String,
    pub start_at: Option<String>,
    pub end_at: Option<String>,
    pub enabled: bool,
    /// The message the schedule sends to the execution queue (`fire::TriggerFire` as JSON, with
    /// Scheduler's `<aws.scheduler.scheduled-time>` placeholder).
    pub message: String,
}

/// Where schedule triggers' schedules live (EventBridge Scheduler, in the stack's trigger
/// schedule group; memory for unit tests).
#[async_trait]
pub trait TriggerSchedules: Send + Sync {
    /// Creates the schedule, or replaces it when it exists.
    async fn put_schedule(&self, spec: &ScheduleSpec) -> Result<(), StoreError>;
    /// Deletes it; deleting one that is not there is not an error.
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError>;
}

/// A trigger's schedule name.
pub fn schedule_name(trigger_id: &str) -> String {
    format!("nodeai-trigger-{trigger_id}")
}

/// The schedule a schedule trigger keeps in Scheduler.
pub fn schedule_spec(record: &TriggerRecord) -> Option<ScheduleSpec> {
    let settings = record.schedule()?;
    let expression = settings.expression().ok()?;
    Some(ScheduleSpec {
        name: schedule_name(&record.trigger_id),
        expression: expression.aws().to_string(),
        timezone: settings.timezone.clone(),
        start_at: settings.start_at.clone(),
        end_at: settings.end_at.clone(),
        enabled: record.enabled,
        message: fire::TriggerFire::for_schedule(record).to_json(),
    })
}

/// A Scheduler that keeps schedules in memory (unit tests).
#[cfg(any(test, feature = "test-util"))]
#[derive(Default)]
pub struct KeptSchedules(pub std::sync::Mutex<std::collections::BTreeMap<String, ScheduleSpec>>);

#[cfg(any(test, feature = "test-util"))]
#[async_trait]
impl TriggerSchedules for KeptSchedules {
    async fn put_schedule(&self, spec: &ScheduleSpec) -> Result<(), StoreError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(spec.name.clone(), spec.clone());
        Ok(())
    }
    async fn delete_schedule(&self, name: &str) -> Result<(), StoreError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn paths(result: Result<TriggerSettings, Vec<Value>>) -> Vec<String> {
        result.unwrap_err().iter().map(|p| p["path"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn a_webhook_defaults_to_a_signed_async_hook() {
        let settings = parse(&body(json!({ "type": "webhook" })), "h", chrono::Utc::now(), None).unwrap();
        let TriggerSource::Webhook(w) = settings.source else { panic!("a webhook") };
        assert_eq!((w.scheme, w.mode, w.sync_timeout_seconds), (SignatureScheme::Nodeai, ResponseMode::Async, 10));
        assert!(settings.enabled);
    }

    #[test]
    fn every_problem_comes_back_with_its_path() {
        let now = chrono::Utc::now();
        let found = paths(parse(
            &body(
                json!({ "type": "webhook", "scheme": "md5", "mode": "later", "sync_timeout_seconds": 26, "colour": 1 }),
            ),
            "h",
            now,
            None,
        ));
        assert_eq!(found, vec!["/colour", "/scheme", "/mode", "/sync_timeout_seconds"]);
        let found = paths(parse(
            &body(json!({ "type": "schedule", "cron": "0 9 * *", "timezone": "Europe/Nowhere", "input": [1],
                           "start_at": "2030-01-02T00:00:00Z", "end_at": "2030-01-01T00:00:00Z" })),
            "h",
            now,
            None,
        ));
        assert_eq!(found, vec!["/cron", "/timezone", "/input", "/end_at"]);
        assert_eq!(paths(parse(&body(json!({ "type": "schedule" })), "h", now, None)), vec!["/cron"]);
        assert_eq!(paths(parse(&body(json!({ "type": "cron" })), "h", now, None)), vec!["/type"]);
        assert_eq!(
            paths(parse(
                &body(json!({ "type": "schedule", "rate": "5 minutes", "end_at": "2020-01-01T00:00:00Z" })),
                "h",
                now,
                None
            )),
            vec!["/end_at"]
        );
        // A past start_at is refused when given, not when a PATCH keeps the stored one; a past
        // end_at only matters while the schedule is enabled.
        let past = json!({ "type": "schedule", "rate": "5 minutes", "start_at": "2020-01-01T00:00:00Z" });
        assert_eq!(paths(parse(&body(past.clone()), "h", now, None)), vec!["/start_at"]);
        let stored = ScheduleSettings {
            cron: None,
            rate: Some("5 minutes".into()),
            timezone: "UTC".into(),
            input: json!({}),
            start_at: Some("2020-01-01T00:00:00.000Z".into()),
            end_at: None,
        };
        assert!(parse(&body(past), "h", now, Some(&stored)).is_ok());
        let ended =
            json!({ "type": "schedule", "rate": "5 minutes", "end_at": "2020-01-01T00:00:00Z", "enabled": false });
        assert!(parse(&body(ended), "h", now, None).is_ok());
    }

    #[test]
    fn settable_fields_parse_back_to_the_same_settings() {
        let now = chrono::Utc::now();
        let given = json!({ "type": "schedule", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin",
                            "input": { "report": "daily" }, "enabled": false, "description": "weekday report" });
        let settings = parse(&body(given), "h", now, None).unwrap();
        let record = TriggerRecord {
            tenant_id: "t".into(),
            workflow_id: "w".into(),
            trigger_id: "x".into(),
            enabled: settings.enabled,
            description: settings.description.clone(),
            source: settings.source.clone(),
            created_at: String::new(),
            updated_at: String::new(),
            revision: 1,
            retention_seconds: 1,
            last_run: None,
        };
        assert_eq!(parse(&record.settable(), "h", now, None).unwrap(), settings);
        assert_eq!(schedule_spec(&record).unwrap().expression, "cron(0 9 ? * MON-FRI *)");
    }

    #[test]
    fn the_documented_limits_are_the_enforced_ones() {
        let meaning = crate::error::ErrorCode::TriggerLimitReached.meaning();
        assert!(meaning.contains(&format!(" {MAX_TRIGGERS_PER_WORKFLOW} ")), "{meaning}");
        assert!(meaning.contains(&format!(" {MAX_TRIGGERS_PER_TENANT}:")), "{meaning}");
    }

    #[test]
    fn hook_ids_are_random_and_shaped() {
        let (a, b) = (new_hook_id(), new_hook_id());
        assert!(is_hook_id(&a) && is_hook_id(&b) && a != b);
        assert!(!is_hook_id("../../etc") && !is_hook_id(&a.to_uppercase()));
    }

    #[test]
    fn a_previous_secret_is_live_until_its_grace_period_ends() {
        let secrets = WebhookSecrets {
            current: "new".into(),
            previous: Some("old".into()),
            previous_until: Some("2026-01-01T00:00:00.000Z".into()),
        };
        assert_eq!(secrets.live("2025-12-31T23:59:59.000Z"), vec!["new", "old"]);
        assert_eq!(secrets.live("2026-01-01T00:00:00.000Z"), vec!["new"]);
    }
}
