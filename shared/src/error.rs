//! The one error type every route answers with, and the stable codes clients may match on.

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

/// Every error code NodeAI returns. The README table is generated from this list
/// (`ErrorCode::ALL`), so adding a variant here documents it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidJson,
    InvalidRequest,
    InvalidCursor,
    Unauthorized,
    RouteNotFound,
    WorkflowNotFound,
    VersionNotFound,
    ApiKeyNotFound,
    CredentialNotFound,
    ExecutionNotFound,
    ValueNotFound,
    MethodNotAllowed,
    ConcurrentModification,
    DraftUnchanged,
    KeyLimitReached,
    ApiKeyNotActive,
    NoDeployedVersion,
    ExecutionFinished,
    ExecutionNotRedrivable,
    CallbackNotFound,
    ExecutionNotWaiting,
    CallbackPayloadInvalid,
    PreconditionFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    InputInvalid,
    IdempotencyKeyReused,
    RateLimited,
    QuotaExceeded,
    BudgetExceeded,
    InternalError,
    TriggerNotFound,
    HookNotFound,
    TriggerInvalid,
    TriggerLimitReached,
    WebhookSignatureInvalid,
    WebhookTimestampStale,
    ExecutionFailed,
    ServiceUnavailable,
    AssistantSessionNotFound,
    AssistantLimitReached,
    AssistantMessageInvalid,
    NoValidProposal,
    AssistantTimeout,
    AssistantNoDefinition,
    ModelCallFailed,
    CredentialInvalid,
    ModelUnpriced,
}

impl ErrorCode {
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidJson,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidCursor,
        ErrorCode::Unauthorized,
        ErrorCode::RouteNotFound,
        ErrorCode::WorkflowNotFound,
        ErrorCode::VersionNotFound,
        ErrorCode::ApiKeyNotFound,
        ErrorCode::CredentialNotFound,
        ErrorCode::ExecutionNotFound,
        ErrorCode::ValueNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::ConcurrentModification,
        ErrorCode::DraftUnchanged,
        ErrorCode::KeyLimitReached,
        ErrorCode::ApiKeyNotActive,
        ErrorCode::NoDeployedVersion,
        ErrorCode::ExecutionFinished,
        ErrorCode::ExecutionNotRedrivable,
        ErrorCode::CallbackNotFound,
        ErrorCode::ExecutionNotWaiting,
        ErrorCode::CallbackPayloadInvalid,
        ErrorCode::PreconditionFailed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::ValidationFailed,
        ErrorCode::InputInvalid,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::RateLimited,
        ErrorCode::QuotaExceeded,
        ErrorCode::BudgetExceeded,
        ErrorCode::InternalError,
        ErrorCode::TriggerNotFound,
        ErrorCode::HookNotFound,
        ErrorCode::TriggerInvalid,
        ErrorCode::TriggerLimitReached,
        ErrorCode::WebhookSignatureInvalid,
        ErrorCode::WebhookTimestampStale,
        ErrorCode::ExecutionFailed,
        ErrorCode::ServiceUnavailable,
        ErrorCode::AssistantSessionNotFound,
        ErrorCode::AssistantLimitReached,
        ErrorCode::AssistantMessageInvalid,
        ErrorCode::NoValidProposal,
        ErrorCode::AssistantTimeout,
        ErrorCode::AssistantNoDefinition,
        ErrorCode::ModelCallFailed,
        ErrorCode::CredentialInvalid,
        ErrorCode::ModelUnpriced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::InvalidCursor => "INVALID_CURSOR",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::RouteNotFound => "ROUTE_NOT_FOUND",
            ErrorCode::WorkflowNotFound => "WORKFLOW_NOT_FOUND",
            ErrorCode::VersionNotFound => "VERSION_NOT_FOUND",
            ErrorCode::ApiKeyNotFound => "API_KEY_NOT_FOUND",
            ErrorCode::CredentialNotFound => "CREDENTIAL_NOT_FOUND",
            ErrorCode::ExecutionNotFound => "EXECUTION_NOT_FOUND",
            ErrorCode::ValueNotFound => "VALUE_NOT_FOUND",
            ErrorCode::NoDeployedVersion => "NO_DEPLOYED_VERSION",
            ErrorCode::ExecutionFinished => "EXECUTION_FINISHED",
            ErrorCode::ExecutionNotRedrivable => "EXECUTION_NOT_REDRIVABLE",
            ErrorCode::CallbackNotFound => "CALLBACK_NOT_FOUND",
            ErrorCode::ExecutionNotWaiting => "EXECUTION_NOT_WAITING",
            ErrorCode::CallbackPayloadInvalid => "CALLBACK_PAYLOAD_INVALID",
            ErrorCode::InputInvalid => "INPUT_INVALID",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::KeyLimitReached => "KEY_LIMIT_REACHED",
            ErrorCode::ApiKeyNotActive => "API_KEY_NOT_ACTIVE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::BudgetExceeded => "BUDGET_EXCEEDED",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::ConcurrentModification => "CONCURRENT_MODIFICATION",
            ErrorCode::DraftUnchanged => "DRAFT_UNCHANGED",
            ErrorCode::PreconditionFailed => "PRECONDITION_FAILED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::TriggerNotFound => "TRIGGER_NOT_FOUND",
            ErrorCode::HookNotFound => "HOOK_NOT_FOUND",
            ErrorCode::TriggerInvalid => "TRIGGER_INVALID",
            ErrorCode::TriggerLimitReached => "TRIGGER_LIMIT_REACHED",
            ErrorCode::WebhookSignatureInvalid => "WEBHOOK_SIGNATURE_INVALID",
            ErrorCode::WebhookTimestampStale => "WEBHOOK_TIMESTAMP_STALE",
            ErrorCode::ExecutionFailed => "EXECUTION_FAILED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::AssistantSessionNotFound => "ASSISTANT_SESSION_NOT_FOUND",
            ErrorCode::AssistantLimitReached => "ASSISTANT_LIMIT_REACHED",
            ErrorCode::AssistantMessageInvalid => "ASSISTANT_MESSAGE_INVALID",
            ErrorCode::NoValidProposal => "NO_VALID_PROPOSAL",
            ErrorCode::AssistantTimeout => "ASSISTANT_TIMEOUT",
            ErrorCode::AssistantNoDefinition => "ASSISTANT_NO_DEFINITION",
            ErrorCode::ModelCallFailed => "MODEL_CALL_FAILED",
            ErrorCode::CredentialInvalid => "CREDENTIAL_INVALID",
            ErrorCode::ModelUnpriced => "MODEL_UNPRICED",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidJson | ErrorCode::InvalidRequest | ErrorCode::InvalidCursor => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::RouteNotFound
            | ErrorCode::WorkflowNotFound
            | ErrorCode::VersionNotFound
            | ErrorCode::ApiKeyNotFound
            | ErrorCode::CredentialNotFound
            | ErrorCode::ExecutionNotFound
            | ErrorCode::CallbackNotFound
            | ErrorCode::ValueNotFound => StatusCode::NOT_FOUND,
            ErrorCode::KeyLimitReached
            | ErrorCode::ApiKeyNotActive
            | ErrorCode::NoDeployedVersion
            | ErrorCode::ExecutionFinished
            | ErrorCode::ExecutionNotRedrivable
            | ErrorCode::ExecutionNotWaiting => StatusCode::CONFLICT,
            ErrorCode::InputInvalid | ErrorCode::IdempotencyKeyReused | ErrorCode::CallbackPayloadInvalid => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ErrorCode::RateLimited | ErrorCode::QuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::BudgetExceeded => StatusCode::PAYMENT_REQUIRED,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::ConcurrentModification | ErrorCode::DraftUnchanged => StatusCode::CONFLICT,
            ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TriggerNotFound => StatusCode::NOT_FOUND,
            ErrorCode::HookNotFound => StatusCode::NOT_FOUND,
            ErrorCode::TriggerInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TriggerLimitReached => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::WebhookSignatureInvalid => StatusCode::UNAUTHORIZED,
            ErrorCode::WebhookTimestampStale => StatusCode::UNAUTHORIZED,
            ErrorCode::ExecutionFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AssistantSessionNotFound => StatusCode::NOT_FOUND,
            ErrorCode::AssistantLimitReached => StatusCode::CONFLICT,
            ErrorCode::AssistantMessageInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::NoValidProposal => StatusCode::CONFLICT,
            ErrorCode::AssistantTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::AssistantNoDefinition => StatusCode::BAD_GATEWAY,
            ErrorCode::ModelCallFailed => StatusCode::BAD_GATEWAY,
            ErrorCode::CredentialInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ModelUnpriced => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// One line for the README's error table.
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "The body is not valid JSON (the message gives line and column) or is empty.",
            ErrorCode::InvalidRequest => "A query parameter, header or body field has the wrong type or value.",
            ErrorCode::InvalidCursor => "`next_token` was altered or belongs to another listing.",
            ErrorCode::Unauthorized => {
                "The `Authorization: Bearer <key>` header is missing, malformed or not a live key."
            }
            ErrorCode::RouteNotFound => "No route has this path.",
            ErrorCode::WorkflowNotFound => "No workflow with this id exists for your tenant.",
            ErrorCode::VersionNotFound => "The workflow has no such published version.",
            ErrorCode::ApiKeyNotFound => "No API key with this id exists for your tenant.",
            ErrorCode::CredentialNotFound => "No provider credential with this name exists for your tenant.",
            ErrorCode::ExecutionNotFound => "No execution with this id exists for your tenant.",
            ErrorCode::ValueNotFound => {
                "The execution has no such value: use input, output, <node_id>.output or <node_id>.input of a node that ran."
            }
            ErrorCode::TriggerNotFound => "The trigger does not exist on this workflow (or belongs to another tenant).",
            ErrorCode::HookNotFound => "No enabled webhook trigger has this URL (unknown, disabled or deleted).",
            ErrorCode::TriggerInvalid => {
                "The trigger has problems (expression, time zone, scheme, limits); `details` lists each with its path."
            }
            ErrorCode::TriggerLimitReached => {
                "The workflow already has 20 triggers, or the tenant 200: delete one first."
            }
            ErrorCode::WebhookSignatureInvalid => {
                "The webhook's signature header is missing, malformed or does not match the body; nothing was started."
            }
            ErrorCode::WebhookTimestampStale => {
                "The webhook's signed timestamp is outside the scheme's tolerance (5 minutes); nothing was started."
            }
            ErrorCode::ExecutionFailed => {
                "A `sync` webhook's run ended failed, cancelled or timed out; the `NodeAI-Execution-Id` header names it."
            }
            ErrorCode::NoDeployedVersion => "The workflow has no deployed version; deploy one or pass `\"version\"`.",
            ErrorCode::ExecutionFinished => "The execution has already finished, so it cannot be cancelled.",
            ErrorCode::ExecutionNotRedrivable => "Only a failed or timed-out execution can be redriven.",
            ErrorCode::CallbackNotFound => {
                "The callback token is unknown, already used, or expired, or its execution has ended."
            }
            ErrorCode::ExecutionNotWaiting => {
                "The execution is not waiting on that node for an answer (not reached yet, or already answered)."
            }
            ErrorCode::CallbackPayloadInvalid => {
                "The callback's body does not match the approval's `payload_schema`; `details` lists why."
            }
            ErrorCode::IdempotencyKeyReused => {
                "This `Idempotency-Key` was used on this workflow in the last 24 h with a different body."
            }
            ErrorCode::InputInvalid => {
                "The execution input does not match the workflow's `input_schema`; `details` lists why."
            }
            ErrorCode::KeyLimitReached => "The tenant already has the most API keys allowed (50); revoke one first.",
            ErrorCode::ApiKeyNotActive => "The API key is revoked or expired, so it cannot be rotated.",
            ErrorCode::RateLimited => {
                "Too many requests for your tier (API Gateway throttle); retry after `Retry-After` seconds."
            }
            ErrorCode::QuotaExceeded => "Your tier's daily request quota is used up; it resets at 00:00 UTC.",
            ErrorCode::BudgetExceeded => {
                "The month's model spend reached the budget and it blocks new runs (`on_exceed: block_new_runs`) until the month turns (UTC) or the budget is raised; or an assistant call's worst case does not fit in what is left."
            }
            ErrorCode::MethodNotAllowed => "The path exists but not with this method; see the `Allow` header.",
            ErrorCode::ConcurrentModification => {
                "Another request changed the workflow at the same time; read it again and retry."
            }
            ErrorCode::DraftUnchanged => "The draft has not changed since the last published version.",
            ErrorCode::PreconditionFailed => "`If-Match` names an ETag that is no longer current.",
            ErrorCode::PayloadTooLarge => "The body is larger than 1 MiB, or an execution's input larger than 256 KiB.",
            ErrorCode::UnsupportedMediaType => "The body must be sent as `Content-Type: application/json`.",
            ErrorCode::ValidationFailed => "The workflow definition has problems; `details` lists every one.",
            ErrorCode::InternalError => "An unexpected error; report the request id.",
            ErrorCode::ServiceUnavailable => {
                "The data store is throttled or unreachable; retry after `Retry-After` seconds."
            }
            ErrorCode::AssistantSessionNotFound => {
                "No open assistant session with this id exists for your tenant (ended, expired after 24 h idle or 7 days, or never created)."
            }
            ErrorCode::AssistantLimitReached => {
                "The tenant already has 20 open assistant sessions, or the session has had its 50 turns: end one (DELETE) or start a new session."
            }
            ErrorCode::AssistantMessageInvalid => "The assistant message must be 1 to 5,000 characters.",
            ErrorCode::NoValidProposal => {
                "The session has no proposal that validated, so there is nothing to apply; send another message."
            }
            ErrorCode::AssistantTimeout => {
                "The assistant turn did not finish within its time budget (25 s); nothing was recorded for it. Retry, or ask for a smaller change."
            }
            ErrorCode::AssistantNoDefinition => {
                "The model answered without a workflow definition in every round (3); nothing was recorded. Rephrase, or use a model that supports tool calls."
            }
            ErrorCode::ModelCallFailed => {
                "The model provider failed (an error status or object, a refusal, unreachable, or its circuit is open); the message gives the provider's words."
            }
            ErrorCode::CredentialInvalid => {
                "The credential cannot be used: unreadable, an unknown provider, or a base_url the outbound guard refuses."
            }
            ErrorCode::ModelUnpriced => {
                "A budget applies and the model has no price: give it one with MODEL_PRICES or choose a priced model."
            }
        }
    }
}

/// A failed request as the client will see it. Built only through the constructors below so
/// the message never carries internals.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Vec<Value>,
    pub suggestions: Vec<String>,
    /// Extra response headers (`Allow`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), details: Vec::new(), suggestions: Vec::new(), headers: Vec::new() }
    }

    pub fn with_details(mut self, details: Vec<Value>) -> Self {
        self.details = details;
        self
    }

    pub fn suggest(mut self, suggestion: impl Into<String>) -> Self {
        self.suggestions.push(suggestion.into());
        self
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        ApiError::new(ErrorCode::InvalidRequest, message)
    }

    pub fn workflow_not_found(workflow_id: &str) -> Self {
        ApiError::new(ErrorCode::WorkflowNotFound, format!("workflow '{workflow_id}' was not found"))
            .suggest("List your workflows with GET /v1/workflows.")
    }

    pub fn version_not_found(workflow_id: &str, version: u32) -> Self {
        ApiError::new(ErrorCode::VersionNotFound, format!("workflow '{workflow_id}' has no version {version}"))
            .suggest(format!("List published versions with GET /v1/workflows/{workflow_id}/versions."))
    }

    pub fn unauthorized() -> Self {
        // One message for missing, malformed, unknown and revoked keys: no hints to a guesser.
        ApiError::new(ErrorCode::Unauthorized, "a valid API key is required")
            .suggest("Send the header 'Authorization: Bearer <api key>'.")
    }
}

/// What a store port can fail with. Adapters map their SDK errors onto these; the text in
/// `Unavailable` and `Internal` is for logs only and never reaches a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item exists already, or changed since it was read.
    #[error("conditional write failed")]
    ConditionFailed,
    /// Throttled, timed out or unreachable: worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The item would be over DynamoDB's 400 KB item limit: the request is too large.
    #[error("the item is over the store's size limit")]
    TooLarge,
    #[error("store error: {0}")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::ConditionFailed => {
                ApiError::new(ErrorCode::ConcurrentModification, "the resource was changed by another request")
                    .suggest("Read it again and retry.")
            }
            StoreError::Unavailable(detail) => {
                tracing::warn!(error = %detail, "store unavailable");
                ApiError::new(ErrorCode::ServiceUnavailable, "the data store is busy or unreachable; retry shortly")
                    .with_header("retry-after", "1")
            }
            StoreError::TooLarge => ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the resource would be over the 400 KB the store keeps per item",
            )
            .suggest("Send less: a shorter definition or a smaller input."),
            StoreError::Internal(detail) => {
                tracing::error!(error = %detail, "store error");
                ApiError::new(ErrorCode::InternalError, "an internal error occurred")
            }
        }
    }
}
