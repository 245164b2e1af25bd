//! Request reading and the one response builder. Every response (success or error) leaves
//! through `respond`, so security headers and the request id are never forgotten.

use crate::error::{ApiError, ErrorCode};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = crate::model::limits::MAX_EXECUTION_INPUT_BYTES + 64 * 1024;

/// A successful answer before it is rendered.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(&'static str, String)>,
    /// A server-sent event stream to send after the head (`Reply::event_stream`); only the
    /// streaming function (`wiring::serve_event_stream`) sends it.
    pub stream: Option<crate::events::stream::Subscription>,
}

impl Reply {
    /// 200 with `body` (a typed view from `api::views`).
    pub fn ok(body: impl serde::Serialize) -> Self {
        Reply { status: StatusCode::OK, body: Some(to_json(body)), headers: Vec::new(), stream: None }
    }
    /// 202 with `body`.
    pub fn accepted(body: impl serde::Serialize) -> Self {
        Reply { status: StatusCode::ACCEPTED, body: Some(to_json(body)), headers: Vec::new(), stream: None }
    }
    /// 201 with `body` and `Location`.
    pub fn created(body: impl serde::Serialize, location: String) -> Self {
        Reply {
            status: StatusCode::CREATED,
            body: Some(to_json(body)),
            headers: vec![("location", location)],
            stream: None,
        }
    }
    /// 200 with a JSON value as it is (a stored value, not a view).
    pub fn raw(body: Value) -> Self {
        Reply { status: StatusCode::OK, body: Some(body), headers: Vec::new(), stream: None }
    }
    /// 303 See Other to `location`, with `body` saying where and why.
    pub fn see_other(body: impl serde::Serialize, location: String) -> Self {
        Reply {
            status: StatusCode::SEE_OTHER,
            body: Some(to_json(body)),
            headers: vec![("location", location)],
            stream: None,
        }
    }
    pub fn no_content() -> Self {
        Reply { status: StatusCode::NO_CONTENT, body: None, headers: Vec::new(), stream: None }
    }
    /// 200 `text/event-stream`: the subscription's events follow the head.
    pub fn event_stream(subscription: crate::events::stream::Subscription) -> Self {
        Reply {
            status: StatusCode::OK,
            body: None,
            headers: vec![
                ("content-type", "text/event-stream".into()),
                ("cache-control", "no-cache".into()),
                // Proxies that buffer (nginx) pass each event on at once.
                ("x-accel-buffering", "no".into()),
            ],
            stream: Some(subscription),
        }
    }
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A view as JSON. Views are plain data (strings, numbers, maps with string keys), which always
/// serialize; null is the unreachable fallback.
fn to_json(body: impl serde::Serialize) -> Value {
    serde_json::to_value(body).unwrap_or(Value::Null)
}

/// The request id: the client's `X-Request-ID` when it is safe to echo (at most 128 chars of
/// `[A-Za-z0-9._-]`), else the API Gateway request id, else the Lambda request id.
pub fn request_id(req: &Request) -> String {
    let client = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    });
    if let Some(id) = client {
        return id.to_string();
    }
    let gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    gateway
        .filter(|id| !id.is_empty())
        .or_else(|| req.lambda_context_ref().map(|ctx| ctx.request_id.clone()).filter(|id| !id.is_empty()))
        .unwrap_or_else(crate::model::new_id)
}

/// The request path as routed, without the API Gateway stage that lambda_http puts in front of
/// REST (v1) paths (`/prod/v1/workflows` -> `/v1/workflows`).
pub fn route_path(req: &Request) -> String {
    let path = req.uri().path();
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    if let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") {
        let prefix = format!("/{stage}");
        if let Some(rest) = path.strip_prefix(&prefix)
            && rest.starts_with('/')
        {
            return rest.to_string();
        }
    }
    path.to_string()
}

pub fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn path_param(req: &Request, name: &str) -> Option<String> {
    req.path_parameters_ref().and_then(|p| p.first(name)).map(str::to_string)
}

/// A path parameter that must be a canonical (upper-case) ULID: Ok(id), or Err(the raw text) for
/// anything else, which cannot name a stored item and so answers like a missing one.
pub fn ulid_param(req: &Request, name: &str) -> Result<String, String> {
    let raw = path_param(req, name).unwrap_or_default();
    if is_canonical_ulid(&raw) { Ok(raw) } else { Err(raw) }
}

/// Whether `raw` is a ULID as this API writes them (26 characters, upper case): any other
/// spelling names nothing that exists.
pub fn is_canonical_ulid(raw: &str) -> bool {
    ulid::Ulid::from_string(raw).is_ok_and(|parsed| parsed.to_string() == raw)
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_string)
}

/// The body as JSON, with its size in bytes. Checks content type, size and syntax, each with
/// its own error.
pub fn json_body(req: &Request) -> Result<(Value, usize), ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is {} bytes; the limit is {MAX_BODY_BYTES}", bytes.len()),
        ));
    }
    let content_type = header(req, "content-type").unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            if media_type.is_empty() {
                "the request has no Content-Type".to_string()
            } else {
                format!("Content-Type {media_type:?} is not supported")
            },
        )
        .suggest("Send the body as JSON with 'Content-Type: application/json'."));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(ErrorCode::InvalidJson, "the request body is empty; a JSON object is expected"));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {} at line {} column {}", syntax_message(&e), e.line(), e.column()),
        )
        .with_details(vec![json!({ "line": e.line(), "column": e.column() })])
    })?;
    Ok((value, bytes.len()))
}

/// serde_json's message without its trailing " at line L column C" (we add our own).
fn syntax_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// The body as a typed request object: JSON problems as `json_body`, shape problems as 400.
pub fn typed_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let (value, _) = json_body(req)?;
    // serde would also build a struct from an array ([1, 2] as its fields in order): refuse that.
    if !value.is_object() {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::invalid_request(format!("the body does not have the expected shape: {e}")))
}

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-store"),
    ("content-security-policy", "default-src 'none'"),
    ("referrer-policy", "no-referrer"),
];

/// Request headers a browser may send cross-origin.
pub const CORS_ALLOWED_HEADERS: &str = "authorization, content-type, if-match, idempotency-key, x-request-id";
const CORS_EXPOSED_HEADERS: &str = "etag, location, retry-after, allow, x-request-id";

/// Adds CORS headers when the request's `Origin` is in the allow-list (exact match). Bearer
/// keys, not cookies, authenticate, so `Access-Control-Allow-Credentials` is never sent and
/// `*` is never used.
pub fn apply_cors(response: &mut Response<Body>, origin: Option<&str>, allowed: &[String]) {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin) = origin.filter(|o| allowed.iter().any(|a| a == o)) else {
        headers.remove("access-control-allow-methods");
        headers.remove("access-control-allow-headers");
        headers.remove("access-control-max-age");
        return;
    };
    if let Ok(value) = HeaderValue::from_str(origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(CORS_EXPOSED_HEADERS));
    }
}

/// Renders a reply or an error: the one response builder.
pub fn respond(result: Result<Reply, ApiError>, request_id: &str) -> Response<Body> {
    let (status, body, headers) = match result {
        Ok(reply) => (reply.status, reply.body, reply.headers),
        Err(err) => (err.code.status(), Some(error_body(&err, request_id)), err.headers),
    };
    let mut response = Response::new(match &body {
        Some(value) => Body::Text(value.to_string()),
        None => Body::Empty,
    });
    *response.status_mut() = status;
    let map = response.headers_mut();
    if body.is_some() {
        map.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    for (name, value) in SECURITY_HEADERS {
        map.insert(*name, HeaderValue::from_static(value));
    }
    for (name, value) in headers.iter().map(|(n, v)| (*n, v.as_str())).chain([("x-request-id", request_id)]) {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(name, value);
        }
    }
    response
}

/// The error envelope.
pub fn error_body(err: &ApiError, request_id: &str) -> Value {
    json!({
        "error": {
            "code": err.code.as_str(),
            "message": err.message,
            "details": err.details,
            "suggestions": err.suggestions,
            "request_id": request_id,
            "timestamp": crate::model::now_rfc3339(),
        }
    })
}
