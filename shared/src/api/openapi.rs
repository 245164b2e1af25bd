//! The OpenAPI 3.1 document, generated from the route table (`ROUTES`: paths, methods, which
//! need a key), each route's documentation below (summary, body, answer, the error codes it can
//! return) and the typed views (`api::views`, schemas by utoipa's `ToSchema`). Committed as
//! `openapi.json` (scripts/test fails when it differs from `document()`), served by
//! GET /openapi.json without a key.

use super::views::*;
use super::{Call, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ROUTES, Route, RouteSpec};
use crate::api::http::Reply;
use crate::error::{ApiError, ErrorCode};
use crate::model::WorkflowDefinition;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;
use utoipa::ToSchema;
use utoipa::openapi::{RefOr, schema::Schema};

/// GET /openapi.json: the document (built once per warm instance).
pub async fn document(_call: &Call<'_>) -> Result<Reply, ApiError> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Ok(Reply::ok(DOCUMENT.get_or_init(build).clone()).with_header("cache-control", "public, max-age=300".into()))
}

/// How a route is documented: what `ROUTES` does not say.
struct RouteDoc {
    summary: &'static str,
    /// Schema name of the JSON body, with an example.
    body: Option<(&'static str, Value)>,
    /// Success status and the schema name of its body (None: no body).
    success: (u16, Option<&'static str>),
    query: &'static [Query],
    headers: &'static [Header],
    /// Route-specific error codes (the common ones are added by `errors_of`).
    errors: &'static [ErrorCode],
}

#[derive(Clone, Copy)]
enum Query {
    Paging,
    Tag,
    Status,
    TriggerId,
    /// `?wait=N`: answer once the execution is final or N seconds have passed.
    Wait,
    LastEventId,
    /// `from`, `to` and `group_by` of GET /v1/usage.
    UsageRange,
}

#[derive(Clone, Copy)]
enum Header {
    IfMatch,
    IdempotencyKey,
    LastEventId,
}

const GREETING: &str = include_str!("../../../events/fixtures/greeting-workflow.json");

fn example_definition() -> Value {
    serde_json::from_str(GREETING).unwrap_or(Value::Null)
}

fn doc(route: Route) -> RouteDoc {
    use ErrorCode::*;
    let plain = |summary, success: (u16, Option<&'static str>), errors| RouteDoc {
        summary,
        body: None,
        success,
        query: &[],
        headers: &[],
        errors,
    };
    match route {
        Route::Health => plain("Service, version and stage.", (200, Some("HealthView")), &[]),
        Route::HealthLive => plain("Liveness: the process answers (no AWS call).", (200, Some("LiveView")), &[]),
        Route::HealthReady => plain("Readiness: DynamoDB answers.", (200, Some("ReadyView")), &[]),
        Route::OpenApi => plain("This document.", (200, None), &[]),
        Route::ListNodeTypes => {
            plain("Every node type with the JSON Schema of its config.", (200, Some("NodeTypeList")), &[])
        }
        Route::ValidateWorkflow => RouteDoc {
            body: Some(("WorkflowDefinition", example_definition())),
            ..plain(
                "Checks a definition without saving it; every problem at once.",
                (200, Some("ValidationReport")),
                &[],
            )
        },
        Route::CreateWorkflow => RouteDoc {
            body: Some(("WorkflowDefinition", example_definition())),
            ..plain(
                "Creates a workflow from a valid definition (its draft).",
                (201, Some("WorkflowView")),
                &[ValidationFailed],
            )
        },
        Route::ListWorkflows => RouteDoc {
            query: &[Query::Paging, Query::Tag],
            ..plain("The tenant's workflows, newest first.", (200, Some("WorkflowPage")), &[])
        },
        Route::GetWorkflow => plain("One workflow with its draft.", (200, Some("WorkflowView")), &[WorkflowNotFound]),
        Route::UpdateWorkflow => RouteDoc {
            body: Some(("WorkflowDefinition", example_definition())),
            headers: &[Header::IfMatch],
            ..plain(
                "Replaces the draft (optimistic concurrency with If-Match).",
                (200, Some("WorkflowView")),
                &[WorkflowNotFound, ValidationFailed, PreconditionFailed, ConcurrentModification],
            )
        },
        Route::DeleteWorkflow => plain("Deletes a workflow.", (204, None), &[WorkflowNotFound]),
        Route::PublishVersion => plain(
            "Publishes the draft as the next immutable version.",
            (201, Some("VersionView")),
            &[WorkflowNotFound, DraftUnchanged, ConcurrentModification],
        ),
        Route::ListVersions => RouteDoc {
            query: &[Query::Paging],
            ..plain("A workflow's versions, newest first.", (200, Some("VersionPage")), &[WorkflowNotFound])
        },
        Route::GetVersion => plain(
            "One published version.",
            (200, Some("VersionView")),
            &[InvalidRequest, WorkflowNotFound, VersionNotFound],
        ),
        Route::DeployVersion => RouteDoc {
            body: Some(("DeployRequest", json!({ "version": 1 }))),
            ..plain(
                "Makes a published version the one executions run by default.",
                (200, Some("WorkflowView")),
                &[WorkflowNotFound, VersionNotFound],
            )
        },
        Route::CreateApiKey => RouteDoc {
            body: Some(("CreateApiKeyRequest", json!({ "name": "ci pipeline" }))),
            ..plain("Creates an API key; its value is shown once.", (201, Some("NewApiKeyView")), &[KeyLimitReached])
        },
        Route::ListApiKeys => RouteDoc {
            query: &[Query::Paging],
            ..plain(
                "The tenant's API keys, live, revoked and expired, newest first (never their values).",
                (200, Some("ApiKeyPage")),
                &[],
            )
        },
        Route::RevokeApiKey => plain("Revokes an API key at once.", (204, None), &[ApiKeyNotFound]),
        Route::RotateApiKey => plain(
            "A new key replacing this one; the old one works for a grace period.",
            (201, Some("NewApiKeyView")),
            &[ApiKeyNotFound, ApiKeyNotActive, KeyLimitReached],
        ),
        Route::PutCredential => RouteDoc {
            body: Some((
                "PutCredentialRequest",
                json!({ "provider": "openai", "api_key": "sk-example", "base_url": "https://api.openai.com/v1" }),
            )),
            ..plain(
                "Creates (201) or replaces (200) a provider credential; the value goes to Secrets Manager.",
                (201, Some("CredentialView")),
                &[],
            )
        },
        Route::ListCredentials => RouteDoc {
            query: &[Query::Paging],
            ..plain("The tenant's credentials (never their values).", (200, Some("CredentialPage")), &[])
        },
        Route::DeleteCredential => plain("Deletes a credential and its secret.", (204, None), &[CredentialNotFound]),
        Route::StartExecution => RouteDoc {
            body: Some(("StartExecutionRequest", json!({ "input": { "name": "Ada", "vip": true } }))),
            headers: &[Header::IdempotencyKey],
            query: &[Query::Wait],
            ..plain(
                "Starts an execution (202); the same Idempotency-Key and body within 24 h answers 200 with the first. \
                 With `?wait=N` it answers 200 with the finished execution when it ends within N seconds, else 202.",
                (202, Some("ExecutionStarted")),
                &[
                    InvalidRequest,
                    WorkflowNotFound,
                    VersionNotFound,
                    NoDeployedVersion,
                    InputInvalid,
                    IdempotencyKeyReused,
                    // Two first requests with one key racing to create the execution.
                    ConcurrentModification,
                    BudgetExceeded,
                ],
            )
        },
        Route::ListExecutions => RouteDoc {
            query: &[Query::Paging, Query::Status, Query::TriggerId],
            ..plain("A workflow's executions, newest first.", (200, Some("ExecutionPage")), &[WorkflowNotFound])
        },
        Route::ListTenantExecutions => RouteDoc {
            query: &[Query::Paging, Query::Status, Query::TriggerId],
            ..plain(
                "Every execution of the tenant, child executions included, newest first; `?status=waiting` lists what waits on people, time or children.",
                (200, Some("ExecutionPage")),
                &[],
            )
        },
        Route::GetExecution => RouteDoc {
            query: &[Query::Wait],
            ..plain(
                "One execution with every node's step, tokens and cost; `?wait=N` answers as soon as it is final, or after N seconds as it then is.",
                (200, Some("ExecutionView")),
                &[ExecutionNotFound],
            )
        },
        Route::StreamExecutionEvents => RouteDoc {
            query: &[Query::LastEventId],
            headers: &[Header::LastEventId],
            ..plain(
                "The execution's events as server-sent events (`text/event-stream`), in order, ending with its final event; \
                 resumes after `Last-Event-ID`. 204 when that id is already the final event's.",
                (200, None),
                &[ExecutionNotFound],
            )
        },
        Route::GetExecutionValue => plain(
            "One whole value of an execution (`input`, `output`, `<node_id>.output`, `<node_id>.input`): \
             200 with the value itself when it is stored inline, 303 to a presigned URL valid 15 minutes \
             when it is kept in S3 (any size up to the node output limit).",
            (303, Some("ValueLink")),
            &[ExecutionNotFound, ValueNotFound],
        ),
        Route::CancelExecution => plain(
            "Asks a running or queued execution to stop.",
            (202, Some("CancelAccepted")),
            &[ExecutionNotFound, ExecutionFinished],
        ),
        Route::RedriveExecution => plain(
            "Resumes a failed or timed-out execution; succeeded steps are not run (or paid) again.",
            (202, Some("RedriveAccepted")),
            &[ExecutionNotFound, ExecutionNotRedrivable],
        ),
        Route::CompleteCallback => RouteDoc {
            body: Some(("CallbackAnswer", json!({ "approved": true, "comment": "ship it" }))),
            ..plain(
                "Answers a flow.approval with its callback token (no API key: the token is the credential, single use). \
                 The body becomes the node's output and the execution resumes.",
                (202, Some("CallbackAccepted")),
                &[CallbackNotFound, CallbackPayloadInvalid, RateLimited],
            )
        },
        Route::CompleteExecutionCallback => RouteDoc {
            body: Some(("CallbackAnswer", json!({ "approved": false, "comment": "not this week" }))),
            ..plain(
                "Answers a flow.approval the execution waits on, as the tenant (for operators and tools).",
                (202, Some("CallbackAccepted")),
                &[ExecutionNotFound, ExecutionNotWaiting, CallbackPayloadInvalid],
            )
        },
        Route::CreateTrigger => RouteDoc {
            body: Some((
                "TriggerRequest",
                json!({ "type": "schedule", "cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "input": { "report": "daily" } }),
            )),
            ..plain(
                "Adds a trigger that runs the workflow's deployed version: a webhook (its URL, and once its generated signing secret) or a schedule on EventBridge Scheduler.",
                (201, Some("NewTriggerView")),
                &[WorkflowNotFound, TriggerInvalid, TriggerLimitReached, NoDeployedVersion],
            )
        },
        Route::ListTriggers => RouteDoc {
            query: &[Query::Paging],
            ..plain("A workflow's triggers, oldest first.", (200, Some("TriggerPage")), &[WorkflowNotFound])
        },
        Route::GetTrigger => plain(
            "One trigger: a schedule's next 5 fire times in its time zone, and the last run with its status.",
            (200, Some("TriggerView")),
            &[WorkflowNotFound, TriggerNotFound],
        ),
        Route::UpdateTrigger => RouteDoc {
            body: Some(("TriggerRequest", json!({ "enabled": false }))),
            ..plain(
                "Changes a trigger's fields (null clears an optional one); its type and URL stay.",
                (200, Some("TriggerView")),
                &[WorkflowNotFound, TriggerNotFound, TriggerInvalid, NoDeployedVersion, ConcurrentModification],
            )
        },
        Route::DeleteTrigger => plain(
            "Deletes a trigger with its schedule and secret; its URL answers 404 at once.",
            (204, None),
            &[WorkflowNotFound, TriggerNotFound],
        ),
        Route::RotateTriggerSecret => RouteDoc {
            body: Some(("RotateSecretRequest", json!({}))),
            ..plain(
                "A new signing secret for a webhook (shown once); the previous one verifies for the key-rotation grace period.",
                (200, Some("NewTriggerView")),
                &[WorkflowNotFound, TriggerNotFound, TriggerInvalid],
            )
        },
        Route::ReceiveWebhook => RouteDoc {
            body: Some(("WebhookDelivery", json!({ "event": "order.paid", "order": 42 }))),
            ..plain(
                "A webhook delivery (no API key: the signature is the credential, checked over the raw body). \
                 `async` triggers answer 202 with the execution id; `sync` ones 200 with the run's output when it succeeds in time.",
                (202, Some("HookAccepted")),
                &[
                    HookNotFound,
                    WebhookSignatureInvalid,
                    WebhookTimestampStale,
                    NoDeployedVersion,
                    InputInvalid,
                    ExecutionFailed,
                    RateLimited,
                ],
            )
        },
        Route::GetUsage => RouteDoc {
            query: &[Query::UsageRange, Query::Paging],
            ..plain(
                "The tenant's usage counters over a range of UTC days (at most 366): totals, and rows by day, workflow or model. \
                 Finished executions are counted within seconds of their end.",
                (200, Some("UsageReport")),
                &[],
            )
        },
        Route::ListModelPrices => plain(
            "The model prices costs are computed with (USD per million tokens), with the deployment's MODEL_PRICES applied.",
            (200, Some("ModelPriceList")),
            &[],
        ),
        Route::PutBudget => RouteDoc {
            body: Some((
                "BudgetRequest",
                json!({ "monthly_usd": 50, "alert_at_percent": [50, 80, 100], "on_exceed": "block_new_runs" }),
            )),
            ..plain(
                "Sets the tenant's monthly model budget: each model call reserves its worst case against it first, and a call that would cross it is not made.",
                (200, Some("BudgetView")),
                &[],
            )
        },
        Route::GetBudget => plain(
            "The budget and this month's model spend: settled, reserved by calls in flight, remaining.",
            (200, Some("BudgetView")),
            &[],
        ),
        Route::ForecastWorkflow => RouteDoc {
            body: Some(("StartExecutionRequest", json!({ "input": { "name": "Ada" }, "version": "draft" }))),
            ..plain(
                "What one execution with this input will cost, before it runs: per llm.chat node its prompt tokens (counted with the model family's tokenizer), \
                 its output bound and observed median and p95, and a low / expected / high dollar range; no model is called and nothing is written.",
                (200, Some("ForecastView")),
                &[WorkflowNotFound, VersionNotFound, NoDeployedVersion, InputInvalid],
            )
        },
        Route::CreateAssistantSession => RouteDoc {
            body: Some((
                "AssistantSessionRequest",
                json!({ "credential": "openai-main", "model": "gpt-5-mini", "workflow_id": null }),
            )),
            ..plain(
                "Opens a workflow-assistant session on a tenant credential and model, optionally on a workflow whose draft it refines. \
                 A session ends 24 h after its last message or apply (7 days at most); at most 20 are open per tenant.",
                (201, Some("AssistantSessionView")),
                &[CredentialNotFound, WorkflowNotFound, AssistantLimitReached],
            )
        },
        Route::GetAssistantSession => plain(
            "The session, its current definition and its conversation (each turn's message, reply, proposal, problems, patch, tokens and cost).",
            (200, Some("AssistantSessionView")),
            &[AssistantSessionNotFound],
        ),
        Route::EndAssistantSession => {
            plain("Ends the session and deletes its conversation.", (204, None), &[AssistantSessionNotFound])
        }
        Route::SendAssistantMessage => RouteDoc {
            body: Some((
                "AssistantMessageRequest",
                json!({ "message": "Fetch a URL from the input, summarize it with gpt-5-mini and return the summary." }),
            )),
            ..plain(
                "One turn: the session's model proposes a complete definition (a tool call), NodeAI validates it and sends problems back for repair \
                 (at most 3 model calls), and answers the proposal, whether it is valid, the problems left, an RFC 6902 patch from the session's \
                 definition, tokens and cost. The whole turn has a 25 s budget; only a completed turn is recorded.",
                (200, Some("AssistantTurnView")),
                &[
                    AssistantSessionNotFound,
                    AssistantMessageInvalid,
                    AssistantLimitReached,
                    CredentialNotFound,
                    CredentialInvalid,
                    BudgetExceeded,
                    ModelUnpriced,
                    ModelCallFailed,
                    AssistantNoDefinition,
                    AssistantTimeout,
                    ConcurrentModification,
                ],
            )
        },
        Route::ApplyAssistantProposal => RouteDoc {
            body: Some(("AssistantApplyRequest", json!({ "if_match": "\"3\"" }))),
            ..plain(
                "Creates a workflow from the session's last valid proposal (201), or replaces the session's (or the named) workflow's draft (200) \
                 if its ETag is still `if_match` (default: the revision the session read).",
                (201, Some("WorkflowView")),
                &[AssistantSessionNotFound, NoValidProposal, WorkflowNotFound, PreconditionFailed, ValidationFailed],
            )
        },
        Route::Fallback => plain("", (404, None), &[RouteNotFound, MethodNotAllowed]),
    }
}

/// The codes a route can answer with: its own, plus those every route of its kind shares.
fn errors_of(spec: &RouteSpec, doc: &RouteDoc) -> Vec<ErrorCode> {
    use ErrorCode::*;
    let mut codes: Vec<ErrorCode> = Vec::new();
    if spec.authenticated {
        codes.extend([Unauthorized, RateLimited, QuotaExceeded]);
    }
    if doc.body.is_some() {
        codes.extend([InvalidJson, InvalidRequest, PayloadTooLarge, UnsupportedMediaType]);
    }
    if !doc.query.is_empty() {
        codes.extend([InvalidRequest, InvalidCursor]);
    }
    codes.extend(doc.errors);
    codes.push(InternalError);
    // Only routes that reach a store can find it throttled or unreachable.
    if spec.authenticated || matches!(spec.route, Route::HealthReady | Route::CompleteCallback | Route::ReceiveWebhook)
    {
        codes.push(ServiceUnavailable);
    }
    let mut unique = Vec::new();
    for code in codes {
        if !unique.contains(&code) {
            unique.push(code);
        }
    }
    unique
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn path_parameter(name: &str) -> Value {
    let schema = match name {
        "version" => json!({ "type": "integer", "minimum": 1 }),
        "name" => json!({ "type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$" }),
        _ => json!({ "type": "string", "description": "ULID", "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$" }),
    };
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

fn query_parameters(query: Query) -> Vec<Value> {
    match query {
        Query::Paging => vec![
            json!({ "name": "limit", "in": "query", "required": false,
                    "schema": { "type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE } }),
            json!({ "name": "next_token", "in": "query", "required": false,
                    "description": "The previous page's next_token.", "schema": { "type": "string" } }),
        ],
        Query::Tag => vec![json!({ "name": "tag", "in": "query", "required": false,
                                   "description": "Only workflows with this tag.", "schema": { "type": "string" } })],
        Query::Status => vec![json!({ "name": "status", "in": "query", "required": false,
            "schema": { "enum": ["queued", "running", "waiting", "succeeded", "failed", "cancelled", "timed_out"] } })],
        Query::TriggerId => vec![json!({ "name": "trigger_id", "in": "query", "required": false,
            "description": "Only the runs this trigger started.", "schema": { "type": "string" } })],
        Query::Wait => vec![json!({ "name": "wait", "in": "query", "required": false,
            "description": "Seconds (0 to 25) to wait for the execution to end before answering; it answers as soon as it ends.",
            "schema": { "type": "integer", "minimum": 0, "maximum": crate::executions::MAX_WAIT.as_secs() } })],
        Query::LastEventId => vec![json!({ "name": "last_event_id", "in": "query", "required": false,
            "description": "As the Last-Event-ID header, for clients that cannot set it.",
            "schema": { "type": "string", "pattern": "^[0-9]{1,10}-[0-9]{1,5}$" } })],
        Query::UsageRange => vec![
            json!({ "name": "from", "in": "query", "required": false,
                    "description": "The first UTC day (YYYY-MM-DD); the first day of this month by default.",
                    "schema": { "type": "string", "format": "date" } }),
            json!({ "name": "to", "in": "query", "required": false,
                    "description": "The last UTC day (YYYY-MM-DD), included; today by default. At most 366 days from `from`.",
                    "schema": { "type": "string", "format": "date" } }),
            json!({ "name": "group_by", "in": "query", "required": false,
                    "schema": { "enum": ["day", "workflow", "model"], "default": "day" } }),
        ],
    }
}

fn header_parameter(header: Header) -> Value {
    match header {
        Header::IfMatch => json!({ "name": "If-Match", "in": "header", "required": false,
            "description": "The ETag read (e.g. \"3\"); a stale one answers 412.", "schema": { "type": "string" } }),
        Header::IdempotencyKey => json!({ "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "1 to 255 printable characters; remembered 24 h.", "schema": { "type": "string", "maxLength": 255 } }),
        Header::LastEventId => json!({ "name": "Last-Event-ID", "in": "header", "required": false,
            "description": "The id of the last event received (`<seq>-<index>`): the stream resumes after it.",
            "schema": { "type": "string", "pattern": "^[0-9]{1,10}-[0-9]{1,5}$" } }),
    }
}

fn error_responses(codes: &[ErrorCode]) -> Map<String, Value> {
    let mut by_status: std::collections::BTreeMap<u16, Vec<ErrorCode>> = Default::default();
    for code in codes {
        by_status.entry(code.status().as_u16()).or_default().push(*code);
    }
    by_status
        .into_iter()
        .map(|(status, codes)| {
            let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
            let description = codes.iter().map(|c| format!("`{}`: {}", c.as_str(), c.meaning())).collect::<Vec<_>>();
            (
                status.to_string(),
                json!({
                    "description": description.join(" "),
                    "content": { "application/json": { "schema": schema_ref("ErrorEnvelope") } },
                    "x-error-codes": names,
                }),
            )
        })
        .collect()
}

fn operation(spec: &RouteSpec) -> Value {
    let doc = doc(spec.route);
    let mut parameters: Vec<Value> = spec
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(path_parameter)
        .collect();
    parameters.extend(doc.query.iter().flat_map(|q| query_parameters(*q)));
    parameters.extend(doc.headers.iter().map(|h| header_parameter(*h)));
    let mut responses = Map::new();
    let (status, body) = doc.success;
    let content = match (spec.route, body) {
        (Route::OpenApi, _) => json!({ "application/json": { "schema": { "type": "object" } } }),
        (_, Some(name)) => json!({ "application/json": { "schema": schema_ref(name) } }),
        (_, None) => Value::Null,
    };
    let mut success = json!({ "description": doc.summary });
    if !content.is_null() {
        success["content"] = content;
    }
    responses.insert(status.to_string(), success);
    if spec.route == Route::PutCredential {
        responses.insert(
            "200".into(),
            json!({ "description": "Replaced.", "content": { "application/json": { "schema": schema_ref("CredentialView") } } }),
        );
    }
    if spec.route == Route::GetExecutionValue {
        responses.insert(
            "200".into(),
            json!({ "description": "The value, stored inline: any JSON.", "content": { "application/json": { "schema": {} } } }),
        );
    }
    if spec.route == Route::StartExecution {
        responses.insert(
            "200".into(),
            json!({ "description": "The execution this Idempotency-Key started; with `?wait=N`, the execution that ended within N seconds.",
                    "content": { "application/json": { "schema": { "oneOf": [schema_ref("ExecutionStarted"), schema_ref("ExecutionView")] } } } }),
        );
    }
    if spec.route == Route::StreamExecutionEvents {
        responses.insert(
            "200".into(),
            json!({
                "description": "One SSE frame per event: `id: <seq>-<index>`, `event: <type>`, `data: <one JSON line>` with `type`, `at` and the \
                    event's fields. Types: execution.started, step.started, step.retrying, step.delta, step.succeeded, step.failed, \
                    step.skipped, execution.waiting, execution.resumed, then one of execution.succeeded|failed|cancelled|timed_out, \
                    after which the stream ends. Lines starting with `:` are heartbeats. The stream also ends on its own before \
                    15 minutes; reconnect with Last-Event-ID.",
                "content": { "text/event-stream": {
                    "schema": { "type": "string" },
                    "example": "retry: 1000\n\nid: 1-0\nevent: execution.started\ndata: {\"type\":\"execution.started\",\"at\":\"2026-11-30T09:00:00.000Z\",\"redrive_count\":0}\n\n"
                } },
            }),
        );
        responses.insert(
            "204".into(),
            json!({ "description": "Last-Event-ID is the final event's: nothing more will come." }),
        );
    }
    responses.extend(error_responses(&errors_of(spec, &doc)));
    let mut op = json!({
        "operationId": spec.function,
        "summary": doc.summary,
        "parameters": parameters,
        "responses": responses,
        "security": if spec.authenticated { json!([{ "bearer": [] }]) } else { json!([]) },
    });
    if let Some((name, example)) = doc.body {
        op["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": schema_ref(name), "example": example } },
        });
    }
    op
}

/// Adds `T`'s schema and every schema it refers to.
fn add_schema<T: ToSchema>(schemas: &mut Map<String, Value>) {
    let mut nested: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut nested);
    for (name, schema) in nested {
        schemas.insert(name, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
    schemas.insert(T::name().into_owned(), serde_json::to_value(T::schema()).unwrap_or(Value::Null));
}

/// A listing page of `T`, named `name`.
fn add_page<T: ToSchema>(schemas: &mut Map<String, Value>, name: &str) {
    add_schema::<T>(schemas);
    schemas.insert(
        name.to_string(),
        json!({
            "type": "object",
            "required": ["items", "next_token"],
            "properties": {
                "items": { "type": "array", "items": schema_ref(&T::name()) },
                "next_token": { "type": ["string", "null"], "description": "Pass back as next_token for the next page; null on the last." },
            },
        }),
    );
}

fn schemas() -> Map<String, Value> {
    let mut schemas = Map::new();
    add_schema::<HealthView>(&mut schemas);
    add_schema::<LiveView>(&mut schemas);
    add_schema::<ReadyView>(&mut schemas);
    add_schema::<NodeTypeList>(&mut schemas);
    add_schema::<UsageReport>(&mut schemas);
    add_schema::<ModelPriceList>(&mut schemas);
    add_schema::<BudgetRequest>(&mut schemas);
    add_schema::<BudgetView>(&mut schemas);
    add_schema::<AssistantSessionRequest>(&mut schemas);
    add_schema::<AssistantMessageRequest>(&mut schemas);
    add_schema::<AssistantApplyRequest>(&mut schemas);
    add_schema::<AssistantTurnView>(&mut schemas);
    add_schema::<AssistantSessionView>(&mut schemas);
    add_schema::<ForecastView>(&mut schemas);
    add_schema::<ValidationReport>(&mut schemas);
    add_schema::<WorkflowDefinition>(&mut schemas);
    add_schema::<WorkflowView>(&mut schemas);
    add_page::<WorkflowSummaryView>(&mut schemas, "WorkflowPage");
    add_schema::<VersionView>(&mut schemas);
    add_page::<VersionSummaryView>(&mut schemas, "VersionPage");
    add_schema::<DeployRequest>(&mut schemas);
    add_schema::<CreateApiKeyRequest>(&mut schemas);
    add_schema::<NewApiKeyView>(&mut schemas);
    add_page::<ApiKeyView>(&mut schemas, "ApiKeyPage");
    add_schema::<PutCredentialRequest>(&mut schemas);
    add_page::<CredentialView>(&mut schemas, "CredentialPage");
    add_schema::<StartExecutionRequest>(&mut schemas);
    add_schema::<ExecutionStarted>(&mut schemas);
    add_schema::<ExecutionView>(&mut schemas);
    add_schema::<crate::api::views::ValueLink>(&mut schemas);
    add_page::<ExecutionSummaryView>(&mut schemas, "ExecutionPage");
    add_schema::<CancelAccepted>(&mut schemas);
    add_schema::<RedriveAccepted>(&mut schemas);
    add_schema::<CallbackAnswer>(&mut schemas);
    add_schema::<ParentView>(&mut schemas);
    add_schema::<ChildrenView>(&mut schemas);
    add_schema::<ChildView>(&mut schemas);
    add_schema::<CallbackAccepted>(&mut schemas);
    add_schema::<TriggerRequest>(&mut schemas);
    add_schema::<RotateSecretRequest>(&mut schemas);
    add_schema::<NewTriggerView>(&mut schemas);
    add_schema::<TriggerView>(&mut schemas);
    add_page::<TriggerView>(&mut schemas, "TriggerPage");
    add_schema::<HookAccepted>(&mut schemas);
    add_schema::<WebhookDelivery>(&mut schemas);
    add_schema::<ErrorEnvelope>(&mut schemas);
    schemas
}

/// The whole document.
pub fn build() -> Value {
    let mut paths = Map::new();
    for spec in ROUTES {
        let item = paths.entry(spec.path.to_string()).or_insert_with(|| json!({}));
        item[spec.method.to_lowercase()] = operation(spec);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "NodeAI",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Build, version and run AI workflows durably. Every error answers with the ErrorEnvelope; its `code` is one of the documented codes (x-error-codes on each response).",
        },
        // Relative to this document, so it names the stage the document was served from.
        "servers": [ { "url": ".", "description": "the stage that served this document" } ],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "An API key: Authorization: Bearer nk_..." },
            },
        },
    })
}

/// The committed document's text: pretty JSON with a final newline.
pub fn render() -> String {
    let mut text = serde_json::to_string_pretty(&build()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_its_method_and_security() {
        let document = build();
        for spec in ROUTES {
            let op = &document["paths"][spec.path][spec.method.to_lowercase()];
            assert_eq!(op["operationId"], spec.function, "{} {}", spec.method, spec.path);
            assert_eq!(op["security"].as_array().map(|a| !a.is_empty()), Some(spec.authenticated));
            assert!(!doc(spec.route).summary.is_empty());
        }
    }

    #[test]
    fn every_schema_reference_resolves() {
        let text = render();
        let document: Value = serde_json::from_str(&text).unwrap();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "unresolved $ref {name}");
        }
    }

    #[test]
    fn unauthorized_is_documented_on_every_keyed_route_only() {
        let document = build();
        for spec in ROUTES {
            let codes = document["paths"][spec.path][spec.method.to_lowercase()]["responses"]["401"]["x-error-codes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(codes.contains(&json!("UNAUTHORIZED")), spec.authenticated, "{}", spec.function);
        }
    }
}
