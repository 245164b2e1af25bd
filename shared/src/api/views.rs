//! Typed request and response bodies of the HTTP API. Handlers answer with these (never with ad
//! hoc JSON), and `api::openapi` builds the OpenAPI document's schemas from the same types, so
//! the document cannot drift from what the routes send.

use crate::model::{StepError, StepStatus, TokenUsage, WorkflowDefinition};
use crate::validation::Problem;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// GET /health.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthView {
    /// Always `ok`.
    pub status: &'static str,
    pub service: &'static str,
    /// The deployed crate version.
    pub version: &'static str,
    pub stage: String,
}

/// GET /health/live.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveView {
    /// Always `ok`.
    pub status: &'static str,
}

/// One dependency checked by GET /health/ready (also the error details of its 503).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyCheck {
    pub name: &'static str,
    /// `ok` or `error`.
    pub status: &'static str,
    /// How long the check took, ms.
    pub latency_ms: u64,
}

/// GET /health/ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    /// Always `ready` (otherwise 503).
    pub status: &'static str,
    pub checks: Vec<ReadyCheck>,
}

/// A node type with the JSON Schema its `config` must match.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeTypeView {
    #[serde(rename = "type")]
    pub node_type: &'static str,
    pub description: &'static str,
    /// A JSON Schema (draft 2020-12).
    pub config_schema: Value,
}

/// GET /v1/node-types.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeTypeList {
    pub items: Vec<NodeTypeView>,
}

/// POST /v1/workflows/validate: every problem at once; `valid` when there is none.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationReport {
    pub valid: bool,
    pub problems: Vec<Problem>,
}

/// A workflow with its draft definition.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    /// ULID.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// Grows by one on every draft change.
    pub revision: u64,
    /// The revision as an entity tag (`"<revision>"`), for `If-Match`.
    pub etag: String,
    /// The newest published version, null before the first publish.
    pub latest_version: Option<u32>,
    pub deployed_version: Option<u32>,
    /// Whether the draft changed since the last publish.
    pub has_unpublished_changes: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    pub definition: WorkflowDefinition,
}

/// A workflow in a listing (no definition).
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowSummaryView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub revision: u64,
    pub latest_version: Option<u32>,
    pub deployed_version: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
}

/// An immutable published version.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub workflow_id: String,
    pub version: u32,
    /// The draft revision it was published from.
    pub source_revision: u64,
    pub created_at: String,
    pub definition: WorkflowDefinition,
}

/// A version in a listing (no definition).
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummaryView {
    pub workflow_id: String,
    pub version: u32,
    pub name: String,
    pub source_revision: u64,
    pub created_at: String,
}

/// One page of a newest-first listing. Pass `next_token` back as the `next_token` query
/// parameter for the next page; null on the last page. (Documented per item type by
/// `api::openapi`, as WorkflowPage, VersionPage and so on.)
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// POST /v1/api-keys body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    /// 1 to 100 characters.
    pub name: String,
    /// RFC 3339, in the future; the key never expires without it.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// An API key as listed (the key itself is never shown again).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The key's first characters, to recognise it.
    pub prefix: String,
    /// `active`, `expired` or `revoked`.
    pub status: &'static str,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// The key a rotation replaced, and when it stops working.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplacedKey {
    pub id: String,
    pub expires_at: Option<String>,
}

/// A new API key: the one time its plaintext `key` appears.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyView {
    #[serde(flatten)]
    pub view: ApiKeyView,
    pub key: String,
    /// On rotation only: the key this one replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<ReplacedKey>,
}

/// PUT /v1/credentials/{name} body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCredentialRequest {
    /// `openai` (any OpenAI-compatible API) or `anthropic`.
    pub provider: String,
    /// The provider key; stored in Secrets Manager, never returned.
    pub api_key: String,
    /// An https URL (OpenAI-compatible servers); the provider's own API without it.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// A provider credential without its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub name: String,
    pub provider: String,
    pub base_url: Option<String>,
    /// The key's last four characters.
    pub api_key_last4: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A version number, or `"draft"` for an execution of the draft (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRef(pub Option<u32>);

impl Serialize for VersionRef {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(version) => serializer.serialize_u32(version),
            None => serializer.serialize_str("draft"),
        }
    }
}

impl utoipa::PartialSchema for VersionRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::Integer)).minimum(Some(1)))
            .item(ObjectBuilder::new().schema_type(SchemaType::new(Type::String)).enum_values(Some(["draft"])))
            .description(Some("A published version, or \"draft\"."))
            .into()
    }
}

impl ToSchema for VersionRef {
    fn name() -> std::borrow::Cow<'static, str> {
        "VersionRef".into()
    }
}

/// Links of an execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionLinks {
    #[serde(rename = "self")]
    pub self_link: String,
}

/// POST /v1/workflows/{workflow_id}/executions body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartExecutionRequest {
    /// The execution's input; checked against the definition's `input_schema`. At most 2 MiB of JSON, 64 levels deep.
    #[serde(default)]
    pub input: Option<Value>,
    /// A published version number, or `"draft"`; without it, the deployed version.
    #[serde(default)]
    #[schema(value_type = Option<VersionRef>)]
    pub version: Option<Value>,
}

/// A started (202) or replayed (200, same Idempotency-Key) execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionStarted {
    pub execution_id: String,
    /// `queued` when new.
    pub status: &'static str,
    pub workflow_id: String,
    pub version: VersionRef,
    pub created_at: String,
    pub links: ExecutionLinks,
}

/// One node of an execution.
#[derive(Debug, Serialize, ToSchema)]
pub struct StepView {
    pub node_id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    pub status: StepStatus,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// What the node was called with, rendered (secrets redacted).
    pub input: Value,
    pub output: Value,
    pub error: Option<StepError>,
    pub usage: Option<TokenUsage>,
    /// US dollars; null when the node used no priced model.
    pub cost_usd: Option<f64>,
}

/// GET /v1/executions/{execution_id}/values/{value} for a value kept in S3 (303, `Location`
/// is `url`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ValueLink {
    /// A presigned GET URL for the value's JSON.
    pub url: String,
    pub size_bytes: u64,
    pub expires_in_seconds: u64,
}

/// Tokens and cost over an execution's model calls.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionTotals {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars over the priced steps.
    pub cost_usd: f64,
    /// Model calls whose price is unknown (not in `cost_usd`).
    pub unpriced_steps: u32,
}

/// GET /v1/executions/{execution_id}.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionView {
    pub execution_id: String,
    pub workflow_id: String,
    pub version: VersionRef,
    /// `queued`, `running`, `waiting`, `succeeded`, `failed`, `cancelled` or `timed_out`.
    pub status: &'static str,
    pub input: Value,
    pub output: Value,
    pub error: Option<StepError>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
    /// When the execution times out (RFC 3339).
    pub deadline_at: String,
    pub cancel_requested: bool,
    /// Why a queued execution has not started yet, e.g. its tenant's limit of running
    /// executions; absent once a worker runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<String>,
    /// The parked nodes an unfinished execution waits on (`flow.wait`, `flow.approval`);
    /// absent when it waits on none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<WaitView>,
    /// A child execution's parent (flow.subworkflow, flow.map); absent for others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentView>,
    /// The trigger (webhook or schedule) that started it; absent when a client did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    /// The child executions its flow.subworkflow and flow.map nodes started, per node.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ChildrenView>,
    pub steps: Vec<StepView>,
    pub redrive_count: u32,
    /// When retention deletes the execution (RFC 3339).
    pub expires_at: Option<String>,
    pub totals: ExecutionTotals,
}

/// An execution in a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionSummaryView {
    pub execution_id: String,
    pub workflow_id: String,
    pub status: &'static str,
    pub version: VersionRef,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub error: Option<StepError>,
    /// The trigger that started it; absent when a client did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger_id: Option<String>,
    pub links: ExecutionLinks,
}

/// POST /v1/executions/{execution_id}/redrive (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveAccepted {
    pub execution_id: String,
    /// `queued`.
    pub status: &'static str,
    /// How many times the execution has been redriven, this one included.
    pub redrive_count: u32,
    pub links: ExecutionLinks,
}

/// Where a child execution came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParentView {
    pub execution_id: String,
    pub node_id: String,
    /// The item's index (0 for a flow.subworkflow).
    pub index: u32,
}

/// One flow.subworkflow's or flow.map's children.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChildrenView {
    pub node_id: String,
    pub workflow_id: String,
    pub version: u32,
    pub total: u32,
    pub succeeded: u32,
    /// Ended otherwise (failed, timed out, cancelled).
    pub failed: u32,
    /// The first 100 children in item order (each is an execution: GET it for its steps).
    pub items: Vec<ChildView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChildView {
    pub execution_id: String,
    pub index: u32,
    pub status: &'static str,
}

/// A parked node's wait, as GET /v1/executions/{execution_id} shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WaitView {
    pub node_id: String,
    /// `timer` (flow.wait) or `approval` (flow.approval).
    pub kind: crate::model::WaitKind,
    /// When the wait began (RFC 3339).
    pub since: String,
    /// When it ends: the timer's time, or the approval's expiry; absent for an approval with no
    /// `timeout_seconds` (the execution's deadline ends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Approvals: where to POST the answer without an API key (single use). Absolute when
    /// `PUBLIC_API_URL` is set, else a path. The tenant may also answer with its key at
    /// `POST /v1/executions/{execution_id}/callbacks/{node_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

/// An approval's answer: any JSON (an empty body is `{}`); it must match the approval's
/// `payload_schema` when it has one, and becomes the node's output.
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct CallbackAnswer(pub Value);

/// POST /v1/callbacks/{token} and POST /v1/executions/{execution_id}/callbacks/{node_id} (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackAccepted {
    pub execution_id: String,
    pub node_id: String,
    /// `accepted`: the answer is the node's output and the execution resumes.
    pub status: &'static str,
    pub links: ExecutionLinks,
}

/// POST /v1/executions/{execution_id}/cancel (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct CancelAccepted {
    pub execution_id: String,
    /// `cancelled` when the execution was still queued (it ended at once); otherwise its
    /// status when the cancel was requested (the worker stops it before its next node).
    pub status: &'static str,
    pub cancel_requested: bool,
}

/// PUT /v1/workflows/{workflow_id}/deployment body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// A published version.
    pub version: u32,
}

/// The error envelope every 4xx and 5xx carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong, in a form a program can act on.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One of the documented error codes (see each response's `x-error-codes`).
    pub code: String,
    pub message: String,
    /// Per-problem details (validation problems, schema errors, failed checks).
    pub details: Vec<Value>,
    /// What to do about it.
    pub suggestions: Vec<String>,
    /// Quote it when reporting a problem.
    pub request_id: String,
    /// RFC 3339.
    pub timestamp: String,
}

/// A trigger: what starts its workflow's deployed version from outside (GET, list, PATCH).
#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerView {
    pub id: String,
    pub workflow_id: String,
    /// `webhook` or `schedule`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// A webhook's settings; absent for a schedule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
    /// A schedule's settings; absent for a webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleView>,
    /// The last run it started (or why it could not); absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_run: Option<TriggerRunView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// Where senders POST: `<API>/hooks/{hook_id}`.
    pub url: String,
    /// `nodeai`, `github`, `stripe`, `slack` or `none`.
    pub scheme: &'static str,
    /// True when the scheme is `none`: anyone with the URL can start runs.
    pub unsigned: bool,
    /// `async` (202 at once) or `sync` (waits for the output).
    pub mode: &'static str,
    /// How long a `sync` hook waits for the run, seconds (1-25).
    pub sync_timeout_seconds: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    pub timezone: String,
    pub input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<String>,
    /// EventBridge Scheduler's expression for it, e.g. `cron(0 9 ? * MON-FRI *)`.
    pub expression: String,
    /// The next 5 fire times (RFC 3339, UTC) in its time zone, daylight saving as Scheduler
    /// applies it; empty when disabled or past `end_at`.
    pub next_fire_times: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TriggerRunView {
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// The execution's status as it is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// Why no run started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A new webhook trigger or a rotated secret: the one time a generated signing secret appears.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewTriggerView {
    #[serde(flatten)]
    pub view: TriggerView,
    /// The signing secret NodeAI generated (absent when the body gave one, and for schedules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// On rotation: until when the previous secret still verifies (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_expires_at: Option<String>,
}

/// POST /hooks/{hook_id} answered before the run finished (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct HookAccepted {
    pub execution_id: String,
    /// The execution's status when the answer was sent.
    pub status: &'static str,
}

/// Slack's `url_verification` handshake, answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlackChallenge {
    pub challenge: String,
}

/// POST /v1/workflows/{workflow_id}/triggers body (PATCH takes any of its fields but `type` and
/// `secret`). Webhook fields: `scheme`, `mode`, `sync_timeout_seconds`, `secret`; schedule
/// fields: `cron` or `rate`, `timezone`, `input`, `start_at`, `end_at`.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body; the route checks it field by field, with paths
pub struct TriggerRequest {
    /// `webhook` or `schedule`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Default true; an enabled trigger needs a deployed version.
    pub enabled: Option<bool>,
    /// At most 200 characters.
    pub description: Option<String>,
    /// `nodeai` (default), `github`, `stripe`, `slack`, or `none` (unsigned, only when asked for).
    pub scheme: Option<String>,
    /// `async` (default) or `sync`.
    pub mode: Option<String>,
    /// 1 to 25, default 10.
    pub sync_timeout_seconds: Option<u64>,
    /// The provider's signing secret (required for `stripe` and `slack`; NodeAI generates one
    /// for `nodeai` and `github` when absent and shows it once).
    pub secret: Option<String>,
    /// Five-field cron, e.g. `0 9 * * MON-FRI`.
    pub cron: Option<String>,
    /// `<n> minutes|hours|days`, e.g. `5 minutes`.
    pub rate: Option<String>,
    /// IANA time zone, default `UTC`.
    pub timezone: Option<String>,
    /// Each scheduled run's input (an object of at most 64 KiB).
    pub input: Option<Value>,
    /// RFC 3339: no fire before.
    pub start_at: Option<String>,
    /// RFC 3339: no fire after.
    pub end_at: Option<String>,
}

/// POST .../rotate-secret body (optional): the new secret Stripe or Slack issued.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct RotateSecretRequest {
    pub secret: Option<String>,
}

/// A webhook delivery's body: any JSON (parsed into the run's `input.body`) or any text.
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
pub struct WebhookDelivery(pub Value);

/// Executions by final status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionCounts {
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub timed_out: u64,
}

/// One usage row (a day, or a day of one workflow or model), or the totals over a range.
/// Dollars are US dollars, exact to the nano-dollar.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRowView {
    /// The UTC day, YYYY-MM-DD; absent on the totals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub day: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Executions that ended that day, by final status (a redriven one counts each time it
    /// ends); absent on model rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executions: Option<ExecutionCounts>,
    /// Steps that ran (succeeded or failed); absent on model rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_runs: Option<u64>,
    /// Steps that called a model.
    pub llm_calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `input_tokens`).
    pub cached_input_tokens: u64,
    /// The priced calls' cost.
    pub model_cost_usd: f64,
    /// Model calls with no known price: their tokens count, their cost is not in `model_cost_usd`.
    pub unpriced_calls: u64,
    /// NodeAI's own AWS cost, estimated per execution (README "Costs"); absent on model rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aws_cost_usd: Option<f64>,
}

/// GET /v1/usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    pub group_by: crate::usage::UsageGroup,
    /// Over the whole range (every page shows them).
    pub totals: UsageRowView,
    /// In day order, then by workflow id or model.
    pub items: Vec<UsageRowView>,
    pub next_token: Option<String>,
}

/// GET /v1/models/prices.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelPriceList {
    /// By model name prefix; a model takes the longest prefix its name starts with, and a model
    /// that matches none is unpriced (its cost is null, never 0).
    pub items: Vec<crate::nodes::prices::ModelPrice>,
}

/// PUT /v1/budget body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// US dollars of model calls per UTC calendar month, above 0.
    pub monthly_usd: f64,
    /// Whole percentages (1 to 1000) that raise an alert once each per month; default [50, 80, 100].
    pub alert_at_percent: Option<Vec<u32>>,
    /// Default `stop_model_calls`.
    pub on_exceed: Option<crate::budgets::OnExceed>,
}

/// GET and PUT /v1/budget: the budget (null when none is set) and the month's spend, US dollars.
#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetView {
    pub monthly_usd: Option<f64>,
    pub alert_at_percent: Vec<u32>,
    pub on_exceed: Option<crate::budgets::OnExceed>,
    pub updated_at: Option<String>,
    /// The UTC month the spend is for, YYYY-MM.
    pub month: String,
    /// What this month's settled model calls cost.
    pub spent_usd: f64,
    /// Held by model calls in flight (their worst case until they answer).
    pub reserved_usd: f64,
    /// What new calls may still reserve; null without a budget.
    pub remaining_usd: Option<f64>,
    /// Alert thresholds already crossed this month.
    pub alerts_sent: Vec<u32>,
}

/// POST /v1/workflows/{workflow_id}/forecast.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForecastView {
    pub workflow_id: String,
    #[schema(value_type = VersionRef)]
    pub version: VersionRef,
    #[serde(flatten)]
    pub forecast: crate::forecast::Forecast,
}

/// POST /v1/assistant/sessions body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantSessionRequest {
    /// The tenant credential (PUT /v1/credentials/{name}) the assistant calls its model with.
    pub credential: String,
    /// The model to ask, as the credential's provider names it (1 to 200 characters).
    pub model: String,
    /// A workflow to refine: its draft is the starting definition, and apply replaces it.
    pub workflow_id: Option<String>,
}

/// POST /v1/assistant/sessions/{session_id}/messages body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantMessageRequest {
    /// 1 to 5,000 characters, stored and sent to the model exactly as given.
    pub message: String,
}

/// POST /v1/assistant/sessions/{session_id}/apply body (may be empty: `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssistantApplyRequest {
    /// Replace this workflow's draft instead of the session's workflow (or creating one).
    pub workflow_id: Option<String>,
    /// The workflow's ETag (`"3"`) the replacement expects; default: the revision the session
    /// read. 412 when the draft has changed since.
    pub if_match: Option<String>,
}

/// One assistant turn: what the user said, what the assistant proposed, and whether it validated.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantTurnView {
    pub session_id: String,
    /// 1, 2, ...
    pub turn: u32,
    pub message: String,
    /// The assistant's words.
    pub reply: String,
    /// The proposed definition (the last round's); null when it was over the definition size
    /// limit, and in GET for turns before the last 10 (one answer stays small).
    pub proposal: Option<Value>,
    pub valid: bool,
    /// Validation problems left in the proposal after the repair rounds (empty when valid).
    pub problems: Vec<Value>,
    /// RFC 6902 JSON Patch from the session's definition before the turn to the proposal; null
    /// where `proposal` is.
    pub patch: Option<Value>,
    /// Model calls the turn made (1 to 3).
    pub rounds: u32,
    pub usage: TokenUsage,
    /// What the turn's model calls cost, US dollars; null when the model has no price.
    pub cost_usd: Option<f64>,
    pub created_at: String,
}

/// GET /v1/assistant/sessions/{session_id} and the create answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantSessionView {
    pub session_id: String,
    pub credential: String,
    pub model: String,
    pub workflow_id: Option<String>,
    /// The definition the next message refines: the last valid proposal, or the workflow's draft.
    pub definition: Option<Value>,
    /// Whether `definition` is a proposal of this session that validated (what apply applies).
    pub proposal_valid: bool,
    pub created_at: String,
    pub updated_at: String,
    /// When the session ends unless used again (RFC 3339, UTC).
    pub expires_at: String,
    pub turns: Vec<AssistantTurnView>,
}
