//! The HTTP API: the route table (the single source for cargo-lambda's router, template.yaml
//! and the tenant-isolation tests) and the dispatcher every function hands its requests to.

use crate::auth::KeyCache;
use crate::config::Config;
use crate::cursor;
use crate::error::{ApiError, ErrorCode};
use crate::http::{self, Reply};
use crate::queue::{ExecutionQueue, NoQueue};
use crate::store::{SecretStore, Store};
use lambda_http::{Body, Request, Response};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

mod api_keys;
mod credentials;
mod executions;
mod health;
mod node_types;
mod workflows;

/// What every route shares for the life of a warm instance: configuration, the stores, and the
/// key-lookup cache.
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub secrets: Arc<dyn SecretStore>,
    pub keys: Arc<KeyCache>,
    pub queue: Arc<dyn ExecutionQueue>,
}

impl App {
    pub fn new(config: Config, store: Arc<dyn Store>, secrets: Arc<dyn SecretStore>) -> Self {
        let keys = Arc::new(KeyCache::new(config.key_cache_ttl));
        App { config: Arc::new(config), store, secrets, keys, queue: Arc::new(NoQueue) }
    }

    /// The queue executions are sent to (start-execution).
    pub fn with_queue(mut self, queue: Arc<dyn ExecutionQueue>) -> Self {
        self.queue = queue;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Health,
    HealthLive,
    HealthReady,
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
    GetExecution,
    CancelExecution,
    RedriveExecution,
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
    spec(Route::GetExecution, "GET", "/v1/executions/{execution_id}", "get-execution", true),
    spec(Route::CancelExecution, "POST", "/v1/executions/{execution_id}/cancel", "cancel-execution", true),
    spec(Route::RedriveExecution, "POST", "/v1/executions/{execution_id}/redrive", "redrive-execution", true),
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

/// Handles one request for `route`: request id, authentication, the route's domain call, the
/// envelope on errors, and one log line. Never panics outward: a panic becomes a 500 envelope.
pub async fn handle(app: &App, route: Route, req: Request) -> Response<Body> {
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
        tokio::spawn(async move { dispatch(&app, route, &req, &inner_span).await }.instrument(span.clone()))
    };
    let result = match task.await {
        Ok(result) => result,
        Err(join_error) => {
            let _guard = span.enter();
            tracing::error!(panic = join_error.is_panic(), "handler did not finish");
            Err(ApiError::new(ErrorCode::InternalError, "an internal error occurred"))
        }
    };
    let mut response = http::respond(result, &request_id);
    http::apply_cors(&mut response, origin.as_deref(), &app.config.cors_allowed_origins);
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(method = %method, route = route_name, path = %path, status, latency_ms, "request completed");
    });
    response
}

async fn dispatch(app: &App, route: Route, req: &Request, span: &tracing::Span) -> Result<Reply, ApiError> {
    if route == Route::Fallback {
        return preflight(req).ok_or_else(|| fallback(req));
    }
    let needs_key = spec_of(route).is_some_and(|s| s.authenticated);
    let tenant_id = if needs_key {
        let tenant = crate::auth::authenticate(app.store.as_ref(), &app.keys, req).await?;
        span.record("tenant_id", tenant.as_str());
        tenant
    } else {
        String::new()
    };
    let call = Call { app, req, tenant_id: &tenant_id };
    match route {
        Route::Health => health::summary(app).await,
        Route::HealthLive => health::live().await,
        Route::HealthReady => health::ready(app).await,
        Route::ListNodeTypes => node_types::list().await,
        Route::ValidateWorkflow => workflows::validate(&call).await,
        Route::CreateWorkflow => workflows::create(&call).await,
        Route::ListWorkflows => workflows::list(&call).await,
        Route::GetWorkflow => workflows::get(&call).await,
        Route::UpdateWorkflow => workflows::update(&call).await,
        Route::DeleteWorkflow => workflows::delete(&call).await,
        Route::PublishVersion => workflows::publish(&call).await,
        Route::ListVersions => workflows::list_versions(&call).await,
        Route::GetVersion => workflows::get_version(&call).await,
        Route::DeployVersion => workflows::deploy(&call).await,
        Route::CreateApiKey => api_keys::create(&call).await,
        Route::ListApiKeys => api_keys::list(&call).await,
        Route::RevokeApiKey => api_keys::revoke(&call).await,
        Route::RotateApiKey => api_keys::rotate(&call).await,
        Route::PutCredential => credentials::put(&call).await,
        Route::ListCredentials => credentials::list(&call).await,
        Route::DeleteCredential => credentials::delete(&call).await,
        Route::StartExecution => executions::start(&call).await,
        Route::ListExecutions => executions::list(&call).await,
        Route::GetExecution => executions::get(&call).await,
        Route::CancelExecution => executions::cancel(&call).await,
        Route::RedriveExecution => executions::redrive(&call).await,
        Route::Fallback => unreachable!("handled above"),
    }
}

/// A CORS preflight (`OPTIONS` on a known path): 204 with the path's methods. Whether the origin
/// may use them is `http::apply_cors`'s call, so a disallowed origin gets no CORS headers.
fn preflight(req: &Request) -> Option<Reply> {
    if req.method() != lambda_http::http::Method::OPTIONS {
        return None;
    }
    let path = http::route_path(req);
    let methods: Vec<&str> = ROUTES.iter().filter(|s| path_matches(s.path, &path)).map(|s| s.method).collect();
    if methods.is_empty() {
        return None;
    }
    Some(
        Reply::no_content()
            .with_header("access-control-allow-methods", methods.join(", "))
            .with_header("access-control-allow-headers", http::CORS_ALLOWED_HEADERS.to_string())
            .with_header("access-control-max-age", "600".to_string()),
    )
}

/// 405 with `Allow` when the path is known under other methods, else 404.
fn fallback(req: &Request) -> ApiError {
    let path = http::route_path(req);
    let path = path.as_str();
    let allowed: Vec<&str> = ROUTES.iter().filter(|s| path_matches(s.path, path)).map(|s| s.method).collect();
    if allowed.is_empty() {
        ApiError::new(ErrorCode::RouteNotFound, format!("no route for {} {path}", req.method()))
            .suggest("See the README for the list of routes.")
    } else {
        let allow = allowed.join(", ");
        ApiError::new(ErrorCode::MethodNotAllowed, format!("{} is not allowed on {path}", req.method()))
            .suggest(format!("Use one of: {allow}."))
            .with_header("allow", allow)
    }
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
