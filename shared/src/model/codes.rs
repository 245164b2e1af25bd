//! Step error codes: every code a step (or a failed execution) can carry, declared once. The
//! declaration gives the code's text (`as_str`, `Display`) and its meaning, from which the
//! README's table is checked (tests/tests/manifest.rs), as `ErrorCode` does for API errors.

use std::fmt;

/// A step error code. `HttpStatus` and `LlmStatus` stand for a target's or a provider's answer
/// of 400 or more: the recorded code is `HTTP_<status>` / `LLM_<status>` (`with_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepErrorCode {
    HttpStatus,
    HttpTimeout,
    HttpConnectionFailed,
    HttpDnsFailed,
    HttpInvalidRequest,
    HttpClientError,
    HttpResponseTooLarge,
    SsrfBlocked,
    CircuitOpen,
    LlmStatus,
    LlmBadResponse,
    LlmStreamCut,
    BudgetExceeded,
    ModelUnpriced,
    BudgetUnavailable,
    LlmInvalidJson,
    LlmProviderError,
    LlmRefused,
    CredentialNotFound,
    CredentialInvalid,
    CredentialUnavailable,
    TemplateUndefinedVariable,
    TemplateRenderError,
    TemplateOutputTooLarge,
    TemplateWorkLimit,
    JsonPointerNotFound,
    NodeOutputTooDeep,
    NodeOutputTooLarge,
    NodeTimeout,
    UnknownNodeType,
    NodeFailed,
    ExecutionTimedOut,
    QueueUnavailable,
    WorkerFailed,
    WaitInvalid,
    ApprovalTimedOut,
    NotificationFailed,
    ChildWorkflowUnavailable,
    ChildDepthExceeded,
    MapItemsInvalid,
    SubworkflowFailed,
    MapItemsFailed,
}

impl StepErrorCode {
    /// Every code, in the README's order.
    pub const ALL: &'static [StepErrorCode] = &[
        StepErrorCode::HttpStatus,
        StepErrorCode::HttpTimeout,
        StepErrorCode::HttpConnectionFailed,
        StepErrorCode::HttpDnsFailed,
        StepErrorCode::HttpInvalidRequest,
        StepErrorCode::HttpClientError,
        StepErrorCode::HttpResponseTooLarge,
        StepErrorCode::SsrfBlocked,
        StepErrorCode::CircuitOpen,
        StepErrorCode::LlmStatus,
        StepErrorCode::LlmBadResponse,
        StepErrorCode::LlmStreamCut,
        StepErrorCode::BudgetExceeded,
        StepErrorCode::ModelUnpriced,
        StepErrorCode::BudgetUnavailable,
        StepErrorCode::LlmInvalidJson,
        StepErrorCode::LlmProviderError,
        StepErrorCode::LlmRefused,
        StepErrorCode::CredentialNotFound,
        StepErrorCode::CredentialInvalid,
        StepErrorCode::CredentialUnavailable,
        StepErrorCode::TemplateUndefinedVariable,
        StepErrorCode::TemplateRenderError,
        StepErrorCode::TemplateOutputTooLarge,
        StepErrorCode::TemplateWorkLimit,
        StepErrorCode::JsonPointerNotFound,
        StepErrorCode::NodeOutputTooDeep,
        StepErrorCode::NodeOutputTooLarge,
        StepErrorCode::NodeTimeout,
        StepErrorCode::UnknownNodeType,
        StepErrorCode::NodeFailed,
        StepErrorCode::ExecutionTimedOut,
        StepErrorCode::QueueUnavailable,
        StepErrorCode::WorkerFailed,
        StepErrorCode::WaitInvalid,
        StepErrorCode::ApprovalTimedOut,
        StepErrorCode::NotificationFailed,
        StepErrorCode::ChildWorkflowUnavailable,
        StepErrorCode::ChildDepthExceeded,
        StepErrorCode::MapItemsInvalid,
        StepErrorCode::SubworkflowFailed,
        StepErrorCode::MapItemsFailed,
    ];

    /// The code as recorded (`HTTP_<status>` and `LLM_<status>` as patterns).
    pub fn as_str(self) -> &'static str {
        match self {
            StepErrorCode::HttpStatus => "HTTP_<status>",
            StepErrorCode::HttpTimeout => "HTTP_TIMEOUT",
            StepErrorCode::HttpConnectionFailed => "HTTP_CONNECTION_FAILED",
            StepErrorCode::HttpDnsFailed => "HTTP_DNS_FAILED",
            StepErrorCode::HttpInvalidRequest => "HTTP_INVALID_REQUEST",
            StepErrorCode::HttpClientError => "HTTP_CLIENT_ERROR",
            StepErrorCode::HttpResponseTooLarge => "HTTP_RESPONSE_TOO_LARGE",
            StepErrorCode::SsrfBlocked => "SSRF_BLOCKED",
            StepErrorCode::CircuitOpen => "CIRCUIT_OPEN",
            StepErrorCode::LlmStatus => "LLM_<status>",
            StepErrorCode::LlmBadResponse => "LLM_BAD_RESPONSE",
            StepErrorCode::LlmStreamCut => "LLM_STREAM_CUT",
            StepErrorCode::BudgetExceeded => "BUDGET_EXCEEDED",
            StepErrorCode::ModelUnpriced => "MODEL_UNPRICED",
            StepErrorCode::BudgetUnavailable => "BUDGET_UNAVAILABLE",
            StepErrorCode::LlmInvalidJson => "LLM_INVALID_JSON",
            StepErrorCode::LlmProviderError => "LLM_PROVIDER_ERROR",
            StepErrorCode::LlmRefused => "LLM_REFUSED",
            StepErrorCode::CredentialNotFound => "CREDENTIAL_NOT_FOUND",
            StepErrorCode::CredentialInvalid => "CREDENTIAL_INVALID",
            StepErrorCode::CredentialUnavailable => "CREDENTIAL_UNAVAILABLE",
            StepErrorCode::TemplateUndefinedVariable => "TEMPLATE_UNDEFINED_VARIABLE",
            StepErrorCode::TemplateRenderError => "TEMPLATE_RENDER_ERROR",
            StepErrorCode::TemplateOutputTooLarge => "TEMPLATE_OUTPUT_TOO_LARGE",
            StepErrorCode::TemplateWorkLimit => "TEMPLATE_WORK_LIMIT",
            StepErrorCode::JsonPointerNotFound => "JSON_POINTER_NOT_FOUND",
            StepErrorCode::NodeOutputTooDeep => "NODE_OUTPUT_TOO_DEEP",
            StepErrorCode::NodeOutputTooLarge => "NODE_OUTPUT_TOO_LARGE",
            StepErrorCode::NodeTimeout => "NODE_TIMEOUT",
            StepErrorCode::UnknownNodeType => "UNKNOWN_NODE_TYPE",
            StepErrorCode::NodeFailed => "NODE_FAILED",
            StepErrorCode::ExecutionTimedOut => "EXECUTION_TIMED_OUT",
            StepErrorCode::QueueUnavailable => "QUEUE_UNAVAILABLE",
            StepErrorCode::WorkerFailed => "WORKER_FAILED",
            StepErrorCode::WaitInvalid => "WAIT_INVALID",
            StepErrorCode::ApprovalTimedOut => "APPROVAL_TIMED_OUT",
            StepErrorCode::NotificationFailed => "NOTIFICATION_FAILED",
            StepErrorCode::ChildWorkflowUnavailable => "CHILD_WORKFLOW_UNAVAILABLE",
            StepErrorCode::ChildDepthExceeded => "CHILD_DEPTH_EXCEEDED",
            StepErrorCode::MapItemsInvalid => "MAP_ITEMS_INVALID",
            StepErrorCode::SubworkflowFailed => "SUBWORKFLOW_FAILED",
            StepErrorCode::MapItemsFailed => "MAP_ITEMS_FAILED",
        }
    }

    /// One line for the README's table.
    pub fn meaning(self) -> &'static str {
        match self {
            StepErrorCode::HttpStatus => {
                "the target answered that status; 408, 429 and 5xx are retried, other 4xx are not"
            }
            StepErrorCode::HttpTimeout => "the request timed out (retried)",
            StepErrorCode::HttpConnectionFailed => "no connection, or the response was cut off (retried)",
            StepErrorCode::HttpDnsFailed => "the host name did not resolve (retried)",
            StepErrorCode::HttpInvalidRequest => "the rendered method, URL or headers are not a valid request",
            StepErrorCode::HttpClientError => "the HTTP client could not be set up",
            StepErrorCode::HttpResponseTooLarge => "the response is over 1 MiB",
            StepErrorCode::CircuitOpen => {
                "calls to this host are paused after repeated failures; one trial call goes through after the cool-down"
            }
            StepErrorCode::SsrfBlocked => {
                "the URL is not http(s) or resolves to a loopback, private, link-local or unspecified address"
            }
            StepErrorCode::LlmStatus => {
                "the model provider answered that status (its message is included); 408, 429 and 5xx are retried"
            }
            StepErrorCode::LlmBadResponse => "the provider's answer is not a chat reply NodeAI can read",
            StepErrorCode::BudgetExceeded => {
                "the call's worst case (every prompt byte a token plus max_tokens) would cross the tenant's monthly budget or the execution's max_cost_usd; the call was not made"
            }
            StepErrorCode::ModelUnpriced => {
                "a budget or max_cost_usd applies and the model has no price, so the call cannot be reserved; give it one with MODEL_PRICES"
            }
            StepErrorCode::BudgetUnavailable => {
                "the budget could not be read or reserved (the table did not answer); retried under the retry policy"
            }
            StepErrorCode::LlmStreamCut => {
                "a streamed answer (`stream: true`) ended before the provider's end event; retried under the retry policy"
            }
            StepErrorCode::LlmInvalidJson => "`response_format` is `json` and the reply is not JSON",
            StepErrorCode::LlmProviderError => {
                "the provider answered 2xx with an error object (its message is included); overloaded, rate limit and server kinds are retried"
            }
            StepErrorCode::LlmRefused => {
                "the model declined to answer (a refusal or a content filter); its words are included"
            }
            StepErrorCode::CredentialNotFound => "the node's `credential` does not exist for this tenant",
            StepErrorCode::CredentialInvalid => {
                "the stored credential is unreadable, names an unknown provider or has an invalid base_url"
            }
            StepErrorCode::CredentialUnavailable => {
                "Secrets Manager could not be reached (retried), or the worker has no access to it"
            }
            StepErrorCode::TemplateUndefinedVariable => {
                "a template used a name that is not defined (the message names it)"
            }
            StepErrorCode::TemplateRenderError => "a template failed while rendering (unknown filter, wrong type)",
            StepErrorCode::TemplateOutputTooLarge => {
                "a rendered template, or a value it builds on the way, is over 1 MiB"
            }
            StepErrorCode::TemplateWorkLimit => "a template did more than its work budget (5 million steps per string)",
            StepErrorCode::JsonPointerNotFound => "data.json's `pick` names nothing in the source",
            StepErrorCode::NodeOutputTooDeep => "a node's output or rendered input nests deeper than 64 levels",
            StepErrorCode::NodeOutputTooLarge => "a node's output is over 10 MiB of JSON",
            StepErrorCode::NodeTimeout => "the node gave no result within its `timeout_ms` (retried)",
            StepErrorCode::UnknownNodeType => "the node's type is not registered in this version",
            StepErrorCode::NodeFailed => "the node failed without a recorded error",
            StepErrorCode::ExecutionTimedOut => "the execution ran past its `timeout_seconds`",
            StepErrorCode::QueueUnavailable => "the execution could not be queued; redrive it",
            StepErrorCode::WorkerFailed => {
                "the worker failed on every delivery of the execution (it is in the dead-letter queue); redrive it"
            }
            StepErrorCode::WaitInvalid => {
                "flow.wait's `seconds` or `until` did not render to a number of seconds or an RFC 3339 time"
            }
            StepErrorCode::ApprovalTimedOut => "flow.approval got no answer within its `timeout_seconds`",
            StepErrorCode::NotificationFailed => {
                "flow.approval's `notify` request failed (after its retries); no callback was announced"
            }
            StepErrorCode::ChildWorkflowUnavailable => {
                "the workflow a flow.subworkflow or flow.map names does not exist, has no deployed version, or lacks the pinned one"
            }
            StepErrorCode::ChildDepthExceeded => "child executions nest more than 5 deep (a cycle of workflows?)",
            StepErrorCode::MapItemsInvalid => {
                "flow.map's `items` did not render to a JSON array of at most 10,000 items"
            }
            StepErrorCode::SubworkflowFailed => "the child execution did not succeed (the message gives its error)",
            StepErrorCode::MapItemsFailed => {
                "more of flow.map's items failed than `tolerated_failures` allows (the message gives the first)"
            }
        }
    }

    /// The recorded code for an answer of `status`: `HTTP_429`, `LLM_503`. Codes that are not
    /// status families are returned as they are.
    pub fn with_status(self, status: u16) -> String {
        match self {
            StepErrorCode::HttpStatus => format!("HTTP_{status}"),
            StepErrorCode::LlmStatus => format!("LLM_{status}"),
            other => other.as_str().to_string(),
        }
    }
}

impl fmt::Display for StepErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<StepErrorCode> for String {
    fn from(code: StepErrorCode) -> String {
        code.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_documented_and_shaped() {
        let mut seen = std::collections::HashSet::new();
        for code in StepErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code}");
            assert!(!code.meaning().is_empty());
            let text = code.as_str().replace("<status>", "");
            assert!(text.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{code}");
        }
        assert_eq!(StepErrorCode::HttpStatus.with_status(429), "HTTP_429");
        assert_eq!(StepErrorCode::LlmStatus.with_status(503), "LLM_503");
        assert_eq!(StepErrorCode::NodeTimeout.with_status(500), "NODE_TIMEOUT");
    }
}
