//! route-fallback: what no route matches. CORS preflights on known paths (204), unrouted
//! methods on known paths (405 with `Allow`), everything else 404.

use super::{Call, ROUTES, path_matches};
use crate::api::http::{self, Reply};
use crate::error::{ApiError, ErrorCode};
use lambda_http::Request;

/// The fallback route's handler.
pub async fn answer(call: &Call<'_>) -> Result<Reply, ApiError> {
    preflight(call.req).ok_or_else(|| fallback(call.req))
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
