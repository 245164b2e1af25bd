//! The HTTP API: the route table (the single source for cargo-lambda's router, template.yaml,
//! the OpenAPI document and the tenant-isolation tests) and `respond`, which every function hands
//! its requests to together with its one handler (so a function links only its own route).

use crate::auth::KeyCache;
use crate::config::Config;
use crate::cursor;
use crate::error::{ApiError, ErrorCode};
use crate::queue::{ExecutionQueue, NoQueue};
use crate::store::{SecretStore, Store, TenantStore};
use http::Reply;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

pub mod api_keys;
pub mod assistant;
pub mod budgets;
pub mod credentials;
pub mod executions;
pub mod fallback;
pub mod forecast;
pub mod health;
pub mod http;
pub mod node_types;
pub mod openapi;
pub mod triggers;
pub mod usage;
pub mod views;
pub mod workflows;

/// What every route shares for the life of a warm instance: configuration, the clients its
/// function was wired with (`wiring::builder`), and the key-lookup cache. A function holds only
/// the clients its route uses: health-live none, get-workflow DynamoDB only, and so on.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Option<Arc<dyn Store>>,
    pub secrets: Option<Arc<dyn SecretStore>>,
    pub keys: Arc<KeyCache>,
    pub queue: Arc<dyn ExecutionQueue>,
    /// EventBridge Scheduler for schedule triggers (the trigger routes).
    pub schedules: Option<Arc<dyn crate::triggers::TriggerSchedules>>,
    /// Webhook signing secrets read by this instance (the hooks route).
    pub hook_secrets: Arc<crate::triggers::HookSecretCache>,
    /// What model calls run with (credentials, outbound guard, breakers, prices, budgets): the
    /// assistant's messages route.
    pub models: Option<Arc<crate::nodes::NodeRuntime>>,
}

impl App {
    /// An app with no clients: add them with `with_store`, `with_secrets`, `with_queue`.
    pub fn new(config: Config) -> Self {
        let keys = Arc::new(KeyCache::new(config.key_cache_ttl));
        App {
            config: Arc::new(config),
            store: None,
            secrets: None,
            keys,
            queue: Arc::new(NoQueue),
            schedules: None,
            hook_secrets: Arc::new(crate::triggers::HookSecretCache::new()),
            models: None,
        }
    }

    /// The model-call runtime (the assistant's messages route).
    pub fn with_models(mut self, runtime: Arc<crate::nodes::NodeRuntime>) -> Self {
        self.models = Some(runtime);
        self
    }

    /// The model-call runtime, or a 500 naming the wiring fault (see `store`).
    pub fn models(&self) -> Result<&crate::nodes::NodeRuntime, ApiError> {
        self.models.as_deref().ok_or_else(|| not_wired("the model-call runtime"))
    }

    /// EventBridge Scheduler for schedule triggers (the trigger routes).
    pub fn with_schedules(mut self, schedules: Arc<dyn crate::triggers::TriggerSchedules>) -> Self {
        self.schedules = Some(schedules);
        self
    }

    /// The trigger schedules, or a 500 naming the wiring fault (see `store`).
    pub fn schedules(&self) -> Result<&dyn crate::triggers::TriggerSchedules, ApiError> {
        self.schedules.as_deref().ok_or_else(|| not_wired("EventBridge Scheduler"))
    }

    /// The DynamoDB-backed store (every route that reads or writes tenant data, and key checks).
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Secrets Manager (credential routes).
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// The queue executions are sent to (start-execution, redrive-execution).
    pub fn with_queue(mut self, queue: Arc<dyn ExecutionQueue>) -> Self {
        self.queue = queue;
        self
    }

    /// The store, or a 500 naming the wiring fault: a function whose `main` did not ask for
    /// DynamoDB (`wiring::builder().dynamodb()`) reached a route that needs it.
    pub fn store(&self) -> Result<&dyn Store, ApiError> {
        self.store.as_deref().ok_or_else(|| not_wired("DynamoDB"))
    }

    /// The store as a shared handle, for work that outlives the request's borrow (an event
    /// stream), or a 500 naming the wiring fault (see `store`).
    pub fn shared_store(&self) -> Result<Arc<dyn Store>, ApiError> {
        self.store.clone().ok_or_else(|| not_wired("DynamoDB"))
    }

    /// The secret store, or a 500 naming the wiring fault (see `store`).
    pub fn secrets(&self) -> Result<&dyn SecretStore, ApiError> {
        self.secrets.as_deref().ok_or_else(|| not_wired("Secrets Manager"))
    }
}

fn not_wired(client: &str) -> ApiError {
    tracing::error!(client, "this function was not wired with a client its route uses");
    ApiError::new(ErrorCode::InternalError, "an internal error occurred")
}

/// The future a route handler returns.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Reply, ApiError>> + Send + 'a>>;

/// A route handler, as a function's `main` names it (`nodeai::handler!(api::workflows::get)`).
/// A plain function pointer: naming one handler links that handler and nothing else.
pub type Handler = for<'a> fn(&'a Call<'a>) -> HandlerFuture<'a>;

/// Turns `async fn(&Call<'_>) -> Result<Reply, ApiError>` into a `Handler`.
#[macro_export]
macro_rules! handler {
    ($path:path) => {{
        fn boxed<'a>(call: &'a $crate::api::Call<'a>) -> $crate::api::HandlerFuture<'a> {
            Box::pin($path(call))
        }
        boxed as $crate::api::Handler
    }};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Health,
    HealthLive,
    HealthReady,
    OpenApi,
    ListNodeTypes,
    ValidateWorkflow,
    CreateWorkflow,
    ListWorkflows,
    GetWorkflow,
    UpdateWorkflow,
    DeleteWorkflow,
    PublishVersion,
    ListVersions,
    GetVersion,
    DeployVersion,
    CreateApiKey,
    ListApiKeys,
    RevokeApiKey,
    RotateApiKey,
    PutCredential,
    ListCredentials,
    DeleteCredential,
    StartExecution,
    ListExecutions,
    ListTenantExecutions,
    GetExecution,
    GetExecutionValue,
    StreamExecutionEvents,
    CancelExecution,
    RedriveExecution,
    CompleteCallback,
    CompleteExecutionCallback,
    CreateTrigger,
    ListTriggers,
    GetTrigger,
    UpdateTrigger,
    DeleteTrigger,
    RotateTriggerSecret,
    ReceiveWebhook,
    GetUsage,
    ListModelPrices,
    PutBudget,
    GetBudget,
    ForecastWorkflow,
    CreateAssistantSession,
    GetAssistantSession,
    EndAssistantSession,
    SendAssistantMessage,
    ApplyAssistantProposal,
    /// Unrouted paths (404) and unrouted methods on known paths (405).
    Fallback,
}

pub struct RouteSpec {
    pub route: Route,
    pub method: &'static str,
    /// Path template with `{param}` segments, as API Gateway and cargo-lambda write them.
    pub path: &'static str,
    /// The crate under `functions/` (and its binary) that serves this route.
    pub function: &'static str,
    /// Whether the route needs an API key.
    pub authenticated: bool,
}

const fn spec(
    route: Route,
    method: &'static str,
    path: &'static str,
    function: &'static str,
    authenticated: bool,
) -> RouteSpec {
    RouteSpec { route, method, path, function, authenticated }
}

pub const ROUTES: &[RouteSpec] = &[
    spec(Route::Health, "GET", "/health", "health", false),
    spec(Route::HealthLive, "GET", "/health/live", "health-live", false),
    spec(Route::HealthReady, "GET", "/health/ready", "health-ready", false),
    spec(Route::OpenApi, "GET", "/openapi.json", "get-openapi", false),
    spec(Route::ListNodeTypes, "GET", "/v1/node-types", "list-node-types", true),
    spec(Route::ValidateWorkflow, "POST", "/v1/workflows/validate", "validate-workflow", true),
    spec(Route::CreateWorkflow, "POST", "/v1/workflows", "create-workflow", true),
    spec(Route::ListWorkflows, "GET", "/v1/workflows", "list-workflows", true),
    spec(Route::GetWorkflow, "GET", "/v1/workflows/{workflow_id}", "get-workflow", true),
    spec(Route::UpdateWorkflow, "PUT", "/v1/workflows/{workflow_id}", "update-workflow", true),
    spec(Route::DeleteWorkflow, "DELETE", "/v1/workflows/{workflow_id}", "delete-workflow", true),
    spec(Route::PublishVersion, "POST", "/v1/workflows/{workflow_id}/versions", "publish-version", true),
    spec(Route::ListVersions, "GET", "/v1/workflows/{workflow_id}/versions", "list-versions", true),
    spec(Route::GetVersion, "GET", "/v1/workflows/{workflow_id}/versions/{version}", "get-version", true),
    spec(Route::DeployVersion, "PUT", "/v1/workflows/{workflow_id}/deployment", "deploy-version", true),
    spec(Route::CreateApiKey, "POST", "/v1/api-keys", "create-api-key", true),
    spec(Route::ListApiKeys, "GET", "/v1/api-keys", "list-api-keys", true),
    spec(Route::RevokeApiKey, "DELETE", "/v1/api-keys/{key_id}", "revoke-api-key", true),
    spec(Route::RotateApiKey, "POST", "/v1/api-keys/{key_id}/rotate", "rotate-api-key", true),
    spec(Route::PutCredential, "PUT", "/v1/credentials/{name}", "put-credential", true),
    spec(Route::ListCredentials, "GET", "/v1/credentials", "list-credentials", true),
    spec(Route::DeleteCredential, "DELETE", "/v1/credentials/{name}", "delete-credential", true),
    spec(Route::StartExecution, "POST", "/v1/workflows/{workflow_id}/executions", "start-execution", true),
    spec(Route::ListExecutions, "GET", "/v1/workflows/{workflow_id}/executions", "list-executions", true),
    spec(Route::ListTenantExecutions, "GET", "/v1/executions", "list-tenant-executions", true),
    spec(Route::GetExecution, "GET", "/v1/executions/{execution_id}", "get-execution", true),
    spec(Route::GetExecutionValue, "GET", "/v1/executions/{execution_id}/values/{value}", "get-execution-value", true),
    spec(Route::StreamExecutionEvents, "GET", "/v1/executions/{execution_id}/events", "stream-execution-events", true),
    spec(Route::CancelExecution, "POST", "/v1/executions/{execution_id}/cancel", "cancel-execution", true),
    spec(Route::RedriveExecution, "POST", "/v1/executions/{execution_id}/redrive", "redrive-execution", true),
    spec(Route::CompleteCallback, "POST", "/v1/callbacks/{token}", "complete-callback", false),
    spec(
        Route::CompleteExecutionCallback,
        "POST",
        "/v1/executions/{execution_id}/callbacks/{node_id}",
        "complete-execution-callback",
        true,
    ),
    spec(Route::CreateTrigger, "POST", "/v1/workflows/{workflow_id}/triggers", "create-trigger", true),
    spec(Route::ListTriggers, "GET", "/v1/workflows/{workflow_id}/triggers", "list-triggers", true),
    spec(Route::GetTrigger, "GET", "/v1/workflows/{workflow_id}/triggers/{trigger_id}", "get-trigger", true),
    spec(Route::UpdateTrigger, "PATCH", "/v1/workflows/{workflow_id}/triggers/{trigger_id}", "update-trigger", true),
    spec(Route::DeleteTrigger, "DELETE", "/v1/workflows/{workflow_id}/triggers/{trigger_id}", "delete-trigger", true),
    spec(
        Route::RotateTriggerSecret,
        "POST",
        "/v1/workflows/{workflow_id}/triggers/{trigger_id}/rotate-secret",
        "rotate-trigger-secret",
        true,
    ),
    spec(Route::ReceiveWebhook, "POST", "/hooks/{hook_id}", "receive-webhook", false),
    spec(Route::GetUsage, "GET", "/v1/usage", "get-usage", true),
    spec(Route::ListModelPrices, "GET", "/v1/models/prices", "list-model-prices", true),
    spec(Route::PutBudget, "PUT", "/v1/budget", "put-budget", true),
    spec(Route::GetBudget, "GET", "/v1/budget", "get-budget", true),
    spec(Route::ForecastWorkflow, "POST", "/v1/workflows/{workflow_id}/forecast", "forecast-workflow", true),
    spec(Route::CreateAssistantSession, "POST", "/v1/assistant/sessions", "create-assistant-session", true),
    spec(Route::GetAssistantSession, "GET", "/v1/assistant/sessions/{session_id}", "get-assistant-session", true),
    spec(Route::EndAssistantSession, "DELETE", "/v1/assistant/sessions/{session_id}", "end-assistant-session", true),
    spec(
        Route::SendAssistantMessage,
        "POST",
        "/v1/assistant/sessions/{session_id}/messages",
        "send-assistant-message",
        true,
    ),
    spec(
        Route::ApplyAssistantProposal,
        "POST",
        "/v1/assistant/sessions/{session_id}/apply",
        "apply-assistant-proposal",
        true,
    ),
];

/// The function that answers what no route matches.
pub const FALLBACK_FUNCTION: &str = "route-fallback";

pub fn spec_of(route: Route) -> Option<&'static RouteSpec> {
    ROUTES.iter().find(|s| s.route == route)
}

/// Whether a concrete path matches a template such as `/v1/workflows/{workflow_id}`.
pub fn path_matches(template: &str, path: &str) -> bool {
    let mut t = template.trim_end_matches('/').split('/');
    let mut p = path.trim_end_matches('/').split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') && !ps.is_empty() => {}
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;

/// One authenticated request: the shared state, the request, and the caller's tenant.
pub struct Call<'a> {
    pub app: &'a App,
    pub req: &'a Request,
    pub tenant_id: &'a str,
}

pub(crate) fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `limit` and `next_token` for a listing whose cursor scope is `scope`.
pub(crate) fn paging(call: &Call, scope: &str) -> Result<(usize, Option<String>), ApiError> {
    let limit = match http::query_param(call.req, "limit") {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_request(format!(
                    "limit must be an integer from 1 to {MAX_PAGE_SIZE}, not {:?}",
                    truncate(&raw, 32)
                )));
            }
        },
    };
    let after = http::query_param(call.req, "next_token")
        .map(|token| cursor::decode(&call.app.config.cursor_signing_key, scope, &token))
        .transpose()?;
    Ok((limit, after))
}

/// Answers one request with `handler`, the function's one route: request id, authentication
/// (when `route` needs a key), the handler, the envelope on errors, security headers, CORS and one
/// log line. Never panics outward: a panic becomes a 500 envelope.
pub async fn respond(app: &App, route: Route, handler: Handler, req: Request) -> Response<Body> {
    respond_with_stream(app, route, handler, req).await.0
}

/// As `respond`, and the event stream a reply carries (`Reply::event_stream`): the streaming
/// function sends its events after the head.
pub async fn respond_with_stream(
    app: &App,
    route: Route,
    handler: Handler,
    req: Request,
) -> (Response<Body>, Option<crate::events::stream::Subscription>) {
    let started = Instant::now();
    let request_id = http::request_id(&req);
    let method = req.method().to_string();
    let path = http::route_path(&req);
    let origin = http::header(&req, "origin").map(str::to_string);
    let route_name = spec_of(route).map(|s| s.path).unwrap_or("fallback");
    let span = tracing::info_span!("request", request_id = %request_id, tenant_id = tracing::field::Empty);

    let task = {
        let app = app.clone();
        let inner_span = span.clone();
        tokio::spawn(async move { dispatch(&app, route, handler, &req, &inner_span).await }.instrument(span.clone()))
    };
    let result = match task.await {
        Ok(result) => result,
        Err(join_error) => {
            let _guard = span.enter();
            tracing::error!(panic = join_error.is_panic(), "handler did not finish");
            Err(ApiError::new(ErrorCode::InternalError, "an internal error occurred"))
        }
    };
    let (result, stream) = match result {
        Ok(mut reply) => {
            let stream = reply.stream.take();
            (Ok(reply), stream)
        }
        Err(e) => (Err(e), None),
    };
    let mut response = http::respond(result, &request_id);
    http::apply_cors(&mut response, origin.as_deref(), &app.config.cors_allowed_origins);
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(method = %method, route = route_name, path = %path, status, latency_ms, "request completed");
    });
    (response, stream)
}

async fn dispatch(
    app: &App,
    route: Route,
    handler: Handler,
    req: &Request,
    span: &tracing::Span,
) -> Result<Reply, ApiError> {
    let needs_key = spec_of(route).is_some_and(|s| s.authenticated);
    let tenant_id = if needs_key {
        let tenant = authenticate(app.store()?, &app.keys, req, route).await?;
        span.record("tenant_id", tenant.as_str());
        tenant
    } else {
        String::new()
    };
    let call = Call { app, req, tenant_id: &tenant_id };
    handler(&call).await
}

/// Routes that mint or revoke keys: the caller's key is checked against the table on every
/// call, not through any cache. API Gateway caches the authorizer's answer and the authorizer
/// caches its lookup, so elsewhere a revoked key works for up to twice the cache TTL; long
/// enough, without this, to mint a new key with it.
const FRESH_KEY_ROUTES: &[Route] = &[Route::CreateApiKey, Route::RotateApiKey, Route::RevokeApiKey];

/// The tenant a request is for: from the API Gateway authorizer's context when it ran (REST API
/// in AWS), else by checking the key here (the local stack has no authorizer). Never from a
/// header: a client cannot set an authorizer context. On `FRESH_KEY_ROUTES` the key is read
/// from the table uncached, whatever the authorizer said.
async fn authenticate(
    store: &dyn TenantStore,
    cache: &KeyCache,
    req: &Request,
    route: Route,
) -> Result<String, ApiError> {
    let authorized = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => {
            ctx.authorizer.fields.get("tenant_id").and_then(|v| v.as_str()).filter(|t| !t.is_empty())
        }
        _ => None,
    };
    let fresh = FRESH_KEY_ROUTES.contains(&route);
    if let Some(tenant) = authorized
        && !fresh
    {
        return Ok(tenant.to_string());
    }
    let header = req.headers().get("authorization").and_then(|v| v.to_str().ok());
    let token = crate::auth::bearer_token(header).ok_or_else(ApiError::unauthorized)?;
    let record = if fresh {
        crate::auth::verify_key(store, &KeyCache::new(std::time::Duration::ZERO), token).await?
    } else {
        crate::auth::verify_key(store, cache, token).await?
    };
    // The authorizer's tenant and the key's must agree (they always do unless the context lies).
    if authorized.is_some_and(|tenant| tenant != record.tenant_id) {
        return Err(ApiError::unauthorized());
    }
    Ok(record.tenant_id)
}

/// Every route's handler, by route: for tests and benchmarks, which call any route in one
/// process. Deployed functions never call this (each names its one handler), so it links nothing.
#[cfg(any(test, feature = "test-util"))]
pub fn handler_of(route: Route) -> Handler {
    match route {
        Route::Health => crate::handler!(health::summary),
        Route::HealthLive => crate::handler!(health::live),
        Route::HealthReady => crate::handler!(health::ready),
        Route::OpenApi => crate::handler!(openapi::document),
        Route::ListNodeTypes => crate::handler!(node_types::list),
        Route::ValidateWorkflow => crate::handler!(workflows::validate),
        Route::CreateWorkflow => crate::handler!(workflows::create),
        Route::ListWorkflows => crate::handler!(workflows::list),
        Route::GetWorkflow => crate::handler!(workflows::get),
        Route::UpdateWorkflow => crate::handler!(workflows::update),
        Route::DeleteWorkflow => crate::handler!(workflows::delete),
        Route::PublishVersion => crate::handler!(workflows::publish),
        Route::ListVersions => crate::handler!(workflows::list_versions),
        Route::GetVersion => crate::handler!(workflows::get_version),
        Route::DeployVersion => crate::handler!(workflows::deploy),
        Route::CreateApiKey => crate::handler!(api_keys::create),
        Route::ListApiKeys => crate::handler!(api_keys::list),
        Route::RevokeApiKey => crate::handler!(api_keys::revoke),
        Route::RotateApiKey => crate::handler!(api_keys::rotate),
        Route::PutCredential => crate::handler!(credentials::put),
        Route::ListCredentials => crate::handler!(credentials::list),
        Route::DeleteCredential => crate::handler!(credentials::delete),
        Route::StartExecution => crate::handler!(executions::start),
        Route::ListExecutions => crate::handler!(executions::list),
        Route::ListTenantExecutions => crate::handler!(executions::list_all),
        Route::GetExecution => crate::handler!(executions::get),
        Route::GetExecutionValue => crate::handler!(executions::get_value),
        Route::StreamExecutionEvents => crate::handler!(executions::events),
        Route::CancelExecution => crate::handler!(executions::cancel),
        Route::RedriveExecution => crate::handler!(executions::redrive),
        Route::CompleteCallback => crate::handler!(executions::complete_callback),
        Route::CompleteExecutionCallback => crate::handler!(executions::complete_execution_callback),
        Route::CreateTrigger => crate::handler!(triggers::create),
        Route::ListTriggers => crate::handler!(triggers::list),
        Route::GetTrigger => crate::handler!(triggers::get),
        Route::UpdateTrigger => crate::handler!(triggers::update),
        Route::DeleteTrigger => crate::handler!(triggers::delete),
        Route::RotateTriggerSecret => crate::handler!(triggers::rotate_secret),
        Route::ReceiveWebhook => crate::handler!(triggers::receive),
        Route::GetUsage => crate::handler!(usage::report),
        Route::ListModelPrices => crate::handler!(usage::prices),
        Route::PutBudget => crate::handler!(budgets::put),
        Route::GetBudget => crate::handler!(budgets::get),
        Route::ForecastWorkflow => crate::handler!(forecast::workflow),
        Route::CreateAssistantSession => crate::handler!(assistant::create),
        Route::GetAssistantSession => crate::handler!(assistant::get),
        Route::EndAssistantSession => crate::handler!(assistant::delete),
        Route::SendAssistantMessage => crate::handler!(assistant::message),
        Route::ApplyAssistantProposal => crate::handler!(assistant::apply),
        Route::Fallback => crate::handler!(fallback::answer),
    }
}

/// `respond` with the route's handler from `handler_of`: one call for any route in tests.
#[cfg(any(test, feature = "test-util"))]
pub async fn handle(app: &App, route: Route, req: Request) -> Response<Body> {
    respond(app, route, handler_of(route), req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_paths() {
        assert!(path_matches("/v1/workflows/{workflow_id}", "/v1/workflows/01ABC"));
        assert!(path_matches("/v1/workflows/{workflow_id}", "/v1/workflows/01ABC/"));
        assert!(!path_matches("/v1/workflows/{workflow_id}", "/v1/workflows"));
        assert!(!path_matches("/v1/workflows/{workflow_id}", "/v1/workflows/01ABC/versions"));
        assert!(!path_matches("/v1/workflows/{workflow_id}", "/v1/workflows//"));
        assert!(path_matches("/health", "/health"));
    }

    #[test]
    fn routes_are_unique_and_functions_distinct() {
        let mut seen = std::collections::HashSet::new();
        for spec in ROUTES {
            assert!(seen.insert((spec.method, spec.path)), "duplicate route {} {}", spec.method, spec.path);
        }
        let functions: std::collections::HashSet<_> = ROUTES.iter().map(|s| s.function).collect();
        assert_eq!(functions.len(), ROUTES.len());
    }
}
