//! Test harness: an `App` wired to the DynamoDB emulator with a fresh table, a provisioned
//! tenant, and request builders that produce the same `lambda_http::Request` a function sees.

pub mod stack;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};
use nodeai::api::{self, App, ROUTES, Route};
use nodeai::config::{Config, RunningLimits};
use nodeai::queue::SqsExecutionQueue;
use nodeai::store::dynamo::{DynamoStore, create_table};
use nodeai::store::secrets_manager::SecretsManagerStore;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SIGNING_KEY: &str = "test-signing-key-0123456789abcdef";

/// The emulator endpoint from `scripts/test`. Refuses anything but loopback so a test can
/// never touch a real AWS account.
pub fn emulator_endpoint() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect(
        "AWS_ENDPOINT_URL is not set: run the integration tests through scripts/test, which starts the emulator",
    );
    assert!(
        endpoint.starts_with("http://127.0.0.1:") || endpoint.starts_with("http://localhost:"),
        "tests only talk to a loopback emulator, not {endpoint}"
    );
    endpoint
}

pub async fn dynamo_client() -> aws_sdk_dynamodb::Client {
    emulator_endpoint();
    let sdk = aws_config::load_from_env().await;
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// A DynamoDB store on a fresh table of its own, with a fresh values bucket (S3) for large values.
pub async fn fresh_store() -> DynamoStore {
    let client = dynamo_client().await;
    let table = format!("nodeai-test-{}", ulid::Ulid::new().to_string().to_lowercase());
    create_table(&client, &table, nodeai::store::dynamo::ChangeStream::Off).await.expect("create the test table");
    let values = fresh_value_store().await;
    DynamoStore::new(client, table).with_values(Arc::new(values))
}

/// The S3 value store on a fresh bucket of the emulator.
pub async fn fresh_value_store() -> nodeai::store::s3::S3ValueStore {
    emulator_endpoint();
    let client = nodeai::store::s3::client(&aws_config::load_from_env().await);
    let bucket = format!("nodeai-test-{}", ulid::Ulid::new().to_string().to_lowercase());
    nodeai::store::s3::create_bucket(&client, &bucket).await.expect("create the test bucket");
    nodeai::store::s3::S3ValueStore::new(client, bucket)
}

/// Secrets Manager on the emulator.
pub async fn secret_store() -> SecretsManagerStore {
    emulator_endpoint();
    let sdk = aws_config::load_from_env().await;
    SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk))
}

pub async fn sqs_client() -> aws_sdk_sqs::Client {
    emulator_endpoint();
    aws_sdk_sqs::Client::new(&aws_config::load_from_env().await)
}

/// A new SQS queue on the emulator, with its URL.
pub async fn fresh_queue() -> (SqsExecutionQueue, String) {
    let client = sqs_client().await;
    let name = format!("nodeai-test-{}", ulid::Ulid::new().to_string().to_lowercase());
    let url =
        client.create_queue().queue_name(name).send().await.expect("create the test queue").queue_url.expect("a url");
    (SqsExecutionQueue::new(client, url.clone()), url)
}

pub struct TestApp {
    pub app: App,
    pub store: Arc<DynamoStore>,
    /// Secrets Manager on the emulator, as the app holds it.
    pub secrets: Arc<SecretsManagerStore>,
    /// A tenant provisioned on the table, with its key.
    pub tenant_id: String,
    pub key: String,
    /// The SQS queue (on the emulator) this app sends executions to.
    pub queue_url: String,
}

impl TestApp {
    pub async fn new() -> TestApp {
        TestApp::with_settings(&[]).await
    }

    /// A test app with extra configuration variables (e.g. KEY_CACHE_TTL_SECONDS).
    pub async fn with_settings(settings: &[(&str, &str)]) -> TestApp {
        let store = fresh_store().await;
        let settings: HashMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let config = Config::from_lookup(|name| match name {
            "TABLE_NAME" => Some(store.table().to_string()),
            "CURSOR_SIGNING_KEY" => Some(SIGNING_KEY.to_string()),
            "STAGE" => Some("test".to_string()),
            other => settings.get(other).cloned(),
        })
        .expect("test config is valid");
        // As wiring.rs does: the store writes steps with the configured retention.
        let store = Arc::new(store.with_execution_retention(config.execution_retention));
        let (queue, queue_url) = fresh_queue().await;
        let secrets = Arc::new(secret_store().await);
        // Model calls as the assistant's function makes them, to stubs on loopback.
        let models = nodeai::nodes::NodeRuntime {
            allowed_private_hosts: vec!["127.0.0.1".into()],
            ..nodeai::wiring::node_runtime(&config, secrets.clone(), store.clone())
        };
        let app = App::new(config)
            .with_store(store.clone())
            .with_secrets(secrets.clone())
            .with_queue(Arc::new(queue))
            .with_models(Arc::new(models));
        let (tenant, key) = nodeai::auth::provision_tenant(store.as_ref(), "Test tenant", "free", None)
            .await
            .expect("provision the test tenant");
        TestApp { app, store, secrets, tenant_id: tenant.tenant_id, key, queue_url }
    }

    /// Another app instance (its own key cache, as another warm Lambda) on the same table.
    pub fn another_instance(&self) -> App {
        let config = (*self.app.config).clone();
        let mut app = App::new(config).with_queue(self.app.queue.clone());
        app.models = self.app.models.clone();
        let app = match self.app.store.clone() {
            Some(store) => app.with_store(store),
            None => app,
        };
        match self.app.secrets.clone() {
            Some(secrets) => app.with_secrets(secrets),
            None => app,
        }
    }

    /// Another tenant on the same table.
    pub async fn other_tenant(&self) -> (String, String) {
        let (tenant, key) = nodeai::auth::provision_tenant(self.store.as_ref(), "Other tenant", "free", None)
            .await
            .expect("provision another tenant");
        (tenant.tenant_id, key)
    }

    /// Calls a route in-process, as its function would, with this tenant's key.
    pub async fn call(&self, route: Route, params: &[(&str, &str)], body: Option<Value>) -> Reply {
        self.send(route, RequestSpec::new(params).key(&self.key).json(body)).await
    }

    pub async fn send(&self, route: Route, spec: RequestSpec) -> Reply {
        let request = spec.build(route);
        Reply::from(api::handle(&self.app, route, request).await)
    }

    pub async fn create_workflow(&self, definition: Value) -> String {
        let reply = self.call(Route::CreateWorkflow, &[], Some(definition)).await;
        assert_eq!(reply.status, 201, "create failed: {}", reply.body);
        reply.body["id"].as_str().expect("id").to_string()
    }
}

/// Everything about a request but its route.
#[derive(Default, Clone)]
pub struct RequestSpec {
    pub params: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub method: Option<Method>,
    pub path: Option<String>,
    /// The tenant an API Gateway authorizer context names (as a cached authorizer answer would).
    pub authorized_tenant: Option<String>,
}

impl RequestSpec {
    pub fn new(params: &[(&str, &str)]) -> Self {
        RequestSpec {
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        }
    }
    pub fn key(self, key: &str) -> Self {
        self.header("authorization", &format!("Bearer {key}"))
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_string(), value.to_string()));
        self
    }
    pub fn json(mut self, body: Option<Value>) -> Self {
        if let Some(body) = body {
            self.body = Some(body.to_string().into_bytes());
            self.headers.push(("content-type".into(), "application/json".into()));
        }
        self
    }
    /// A raw body with no content type set.
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }
    pub fn path(mut self, path: &str) -> Self {
        self.path = Some(path.to_string());
        self
    }
    /// As API Gateway passes the request on: with the authorizer's context naming `tenant_id`.
    pub fn authorized_as(mut self, tenant_id: &str) -> Self {
        self.authorized_tenant = Some(tenant_id.to_string());
        self
    }

    pub fn build(self, route: Route) -> Request {
        let spec = ROUTES.iter().find(|s| s.route == route);
        let mut path = self.path.clone().or_else(|| spec.map(|s| s.path.to_string())).unwrap_or_else(|| "/".into());
        for (name, value) in &self.params {
            path = path.replace(&format!("{{{name}}}"), &percent_encode(value));
        }
        let method =
            self.method.clone().or_else(|| spec.map(|s| s.method.parse().expect("method"))).unwrap_or(Method::GET);
        let mut builder = lambda_http::http::Request::builder().method(method).uri(path);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let body = match self.body {
            Some(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Body::Text(text),
                Err(e) => Body::Binary(e.into_bytes()),
            },
            None => Body::Empty,
        };
        let params: HashMap<String, String> = self.params.into_iter().collect();
        let query: HashMap<String, String> = self.query.into_iter().collect();
        let request = builder
            .body(body)
            .expect("request builds")
            .with_path_parameters(params)
            .with_query_string_parameters(query);
        match self.authorized_tenant {
            None => request,
            Some(tenant_id) => {
                let mut context = aws_lambda_events::apigw::ApiGatewayProxyRequestContext::default();
                context.authorizer.fields.insert("tenant_id".into(), Value::String(tenant_id));
                request.with_request_context(lambda_http::request::RequestContext::ApiGatewayV1(context))
            }
        }
    }
}

/// Percent-encodes a path segment the way a client would put it on the wire.
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A response with its body parsed.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub raw: String,
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Self {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let raw = String::from_utf8_lossy(response.body().as_ref()).to_string();
        let body = if raw.is_empty() { Value::Null } else { serde_json::from_str(&raw).expect("responses are JSON") };
        Reply { status, headers, body, raw }
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Asserts the error envelope and its code; returns the `error` object.
    pub fn assert_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status, status, "expected {status} {code}, got {}", self.raw);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "{}", self.raw);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.raw);
        assert!(error["details"].is_array() && error["suggestions"].is_array(), "{}", self.raw);
        assert!(error["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{}", self.raw);
        assert!(error["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{}", self.raw);
        error
    }
}

/// A small valid definition: fetch -> summarize -> done (the README example).
pub fn sample_definition(name: &str) -> Value {
    serde_json::json!({
        "name": name,
        "description": "Summarize a page",
        "tags": ["demo"],
        "input_schema": { "type": "object", "required": ["url"], "properties": { "url": { "type": "string" } } },
        "nodes": [
            { "id": "fetch", "type": "http.request", "config": { "method": "GET", "url": "{{ input.url }}" },
              "retry": { "max_attempts": 3, "initial_delay_ms": 500 }, "timeout_ms": 10000, "on_error": "fail" },
            { "id": "summarize", "type": "llm.chat",
              "config": { "credential": "openai-main", "model": "gpt-4o-mini",
                          "messages": [ { "role": "user", "content": "Summarize: {{ nodes.fetch.output.body }}" } ] } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.summarize.output.text }}" } }
        ],
        "edges": [ { "from": "fetch", "to": "summarize" }, { "from": "summarize", "to": "done" } ]
    })
}

/// Received SQS messages as the Lambda event source hands them to the worker.
pub fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for message in messages {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id.clone();
        record.body = message.body.clone();
        event.records.push(record);
    }
    event
}

/// One worker invocation with `budget` of Lambda time left.
pub async fn run_worker_for(t: &TestApp, executor: &nodeai::nodes::RegistryExecutor, budget: Duration) -> usize {
    let client = sqs_client().await;
    let out = client.receive_message().queue_url(&t.queue_url).max_number_of_messages(10).send().await.unwrap();
    let messages = out.messages.unwrap_or_default();
    let event = sqs_event(&messages);
    let queue = SqsExecutionQueue::new(client, t.queue_url.clone());
    let deadline = Instant::now() + budget;
    let response = nodeai::worker::handle_batch(
        t.store.as_ref(),
        executor,
        &queue,
        event,
        "test-worker",
        deadline,
        &RunningLimits::DEFAULT,
    )
    .await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    messages.len()
}

/// The worker as deployed: loopback stubs allow-listed, credentials read from Secrets Manager on
/// the emulator (where PUT /v1/credentials put them), the given circuit breakers, the app's
/// prices (`MODEL_PRICES`) and budgets kept in its table.
pub async fn deployed_like(
    t: &TestApp,
    breakers: nodeai::nodes::breaker::CircuitBreakers,
) -> nodeai::nodes::RegistryExecutor {
    let secrets = std::sync::Arc::new(secret_store().await);
    let resolver = nodeai::secrets::CredentialResolver::new(secrets, &t.app.config.stage, Duration::from_secs(60));
    let runtime = nodeai::nodes::NodeRuntime {
        allowed_private_hosts: vec!["127.0.0.1".into()],
        credentials: Some(std::sync::Arc::new(resolver)),
        breakers: std::sync::Arc::new(breakers),
        prices: std::sync::Arc::new(nodeai::nodes::prices::PriceTable::with_configured(
            t.app.config.model_prices.clone(),
        )),
        budgets: Some(t.store.clone() as std::sync::Arc<dyn nodeai::store::Store>),
        ..Default::default()
    };
    nodeai::nodes::RegistryExecutor { runtime }
}

/// Every log line the code under test writes, kept to be searched; a `MakeWriter` for
/// `nodeai::telemetry::init_with_writer`, so the lines have the deployed format.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

/// Ends an execution as failed (`HTTP_500`), as a worker would, so it can be redriven.
pub async fn fail_execution(t: &TestApp, execution_id: &str) {
    use nodeai::store::{ExecutionEnd, ExecutionStore, LeaseGuard};
    let error = nodeai::model::StepError { code: "HTTP_500".into(), message: "down".into() };
    let now = nodeai::model::now_rfc3339();
    let ended = t
        .store
        .finish_execution(&t.tenant_id, execution_id, ExecutionEnd::failed(error), &[], LeaseGuard::Free { now: &now })
        .await
        .unwrap();
    assert!(ended, "the execution was unfinished and unleased");
}

/// A loopback HTTP stub that counts, per key (a tenant, a test), the calls in flight at once
/// (the highest count seen), answers `/work/<tenant>/<execution>` after 300 ms, and holds
/// `/hang/...` until the caller goes away.
/// Per key: calls in flight now, the most in flight at once, and all calls made.
type CallCounts = (usize, usize, usize);

pub struct InFlight {
    pub url: String,
    peaks: std::sync::Arc<std::sync::Mutex<HashMap<String, CallCounts>>>,
}

impl InFlight {
    pub async fn start() -> InFlight {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let peaks: std::sync::Arc<std::sync::Mutex<HashMap<String, CallCounts>>> = Default::default();
        let counts = peaks.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let counts = counts.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8192];
                    let Ok(read) = socket.read(&mut buffer).await else { return };
                    let head = String::from_utf8_lossy(&buffer[..read]).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let mut parts = path.trim_start_matches('/').split('/');
                    let (kind, tenant) =
                        (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
                    let change = |delta: isize| {
                        let mut all = counts.lock().unwrap();
                        let (now, peak, total) = all.entry(tenant.clone()).or_default();
                        *now = now.saturating_add_signed(delta);
                        *peak = (*peak).max(*now);
                        *total += usize::from(delta > 0);
                    };
                    change(1);
                    if kind == "hang" {
                        // Until the worker abandons the call (it closes the connection).
                        let _ = socket.read(&mut buffer).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                            .await;
                    }
                    change(-1);
                });
            }
        });
        InFlight { url, peaks }
    }

    /// How many calls of `key` were made.
    pub fn calls(&self, key: &str) -> usize {
        self.peaks.lock().unwrap().get(key).map(|(_, _, total)| *total).unwrap_or(0)
    }

    /// The most calls of `key` in flight at once.
    pub fn peak(&self, tenant: &str) -> usize {
        self.peaks.lock().unwrap().get(tenant).map(|(_, peak, _)| *peak).unwrap_or(0)
    }
}

/// The registry executor with loopback allow-listed, for tests whose targets are stubs.
pub fn loopback_allowed() -> nodeai::nodes::RegistryExecutor {
    let runtime = nodeai::nodes::NodeRuntime { allowed_private_hosts: vec!["127.0.0.1".into()], ..Default::default() };
    nodeai::nodes::RegistryExecutor { runtime }
}

/// Lambda's SQS event source with `workers` instances: each receives up to 5 messages, runs
/// them with `invocation` of time, and deletes those that did not fail, until `done()` holds
/// (checked when the queue is empty) or `limit` has passed.
#[allow(clippy::too_many_arguments)]
pub async fn run_workers<F, Fut>(
    t: &TestApp,
    executor: &dyn nodeai::engine::NodeExecutor,
    queue: &dyn nodeai::queue::ExecutionQueue,
    limits: &RunningLimits,
    workers: usize,
    invocation: Duration,
    limit: Duration,
    done: &F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let client = sqs_client().await;
    let started = Instant::now();
    let finished = std::sync::atomic::AtomicBool::new(false);
    let worker = |n: usize| {
        let (finished, client) = (&finished, &client);
        async move {
            while started.elapsed() < limit && !finished.load(std::sync::atomic::Ordering::SeqCst) {
                let out = client
                    .receive_message()
                    .queue_url(&t.queue_url)
                    .max_number_of_messages(5)
                    .visibility_timeout(20)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .unwrap();
                let messages = out.messages.unwrap_or_default();
                if messages.is_empty() {
                    if n == 0 && done().await {
                        finished.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    continue;
                }
                let event = sqs_event(&messages);
                let deadline = Instant::now() + invocation;
                let response = nodeai::worker::handle_batch(
                    t.store.as_ref(),
                    executor,
                    queue,
                    event,
                    &format!("w{n}"),
                    deadline,
                    limits,
                )
                .await;
                let failed: Vec<String> = response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
                for message in messages {
                    if !failed.contains(&message.message_id.clone().unwrap_or_default()) {
                        client
                            .delete_message()
                            .queue_url(&t.queue_url)
                            .receipt_handle(message.receipt_handle.unwrap())
                            .send()
                            .await
                            .unwrap();
                    }
                }
            }
        }
    };
    futures_util::future::join_all((0..workers).map(worker)).await;
}

/// A model provider on loopback for the assistant: it answers each call with the next scripted
/// reply (the last one again once the script runs out) in the real wire format of OpenAI Chat
/// Completions (a `tool_calls` function call) or Anthropic Messages (a `tool_use` block).
pub struct ScriptedModel {
    pub server: wiremock::MockServer,
    pub anthropic: bool,
}

/// One scripted reply: the `propose_workflow` tool input, or plain text (no tool call).
#[derive(Clone)]
pub enum ScriptedReply {
    Tool(Value),
    Text(String),
    /// The reply, after a delay of its own.
    Delayed(Duration, Box<ScriptedReply>),
}

struct ScriptResponder {
    replies: Vec<ScriptedReply>,
    anthropic: bool,
    delay: Duration,
    next: std::sync::atomic::AtomicUsize,
}

impl wiremock::Respond for ScriptResponder {
    fn respond(&self, _: &wiremock::Request) -> wiremock::ResponseTemplate {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let (mut reply, mut delay) = (self.replies[n.min(self.replies.len() - 1)].clone(), self.delay);
        while let ScriptedReply::Delayed(own, inner) = reply {
            (reply, delay) = (*inner, own);
        }
        let body = match (self.anthropic, reply) {
            (false, ScriptedReply::Tool(input)) => serde_json::json!({
                "id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": "gpt-test",
                "choices": [{ "index": 0, "finish_reason": "tool_calls", "message": { "role": "assistant", "content": null,
                    "tool_calls": [{ "id": format!("call_{n}"), "type": "function",
                        "function": { "name": "propose_workflow", "arguments": input.to_string() } }] } }],
                "usage": { "prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200 } }),
            (false, ScriptedReply::Text(text)) => serde_json::json!({
                "id": format!("chatcmpl-{n}"), "object": "chat.completion", "model": "gpt-test",
                "choices": [{ "index": 0, "finish_reason": "stop", "message": { "role": "assistant", "content": text } }],
                "usage": { "prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200 } }),
            (true, ScriptedReply::Tool(input)) => serde_json::json!({
                "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": "claude-test",
                "content": [{ "type": "text", "text": "Here is the workflow." },
                            { "type": "tool_use", "id": format!("toolu_{n}"), "name": "propose_workflow", "input": input }],
                "stop_reason": "tool_use", "usage": { "input_tokens": 1000, "output_tokens": 200 } }),
            (true, ScriptedReply::Text(text)) => serde_json::json!({
                "id": format!("msg_{n}"), "type": "message", "role": "assistant", "model": "claude-test",
                "content": [{ "type": "text", "text": text }],
                "stop_reason": "end_turn", "usage": { "input_tokens": 1000, "output_tokens": 200 } }),
            (_, ScriptedReply::Delayed(..)) => unreachable!("unwrapped above"),
        };
        wiremock::ResponseTemplate::new(200).set_body_json(body).set_delay(delay)
    }
}

impl ScriptedModel {
    /// A stub answering `replies` in order (`anthropic`: the Messages format, else OpenAI's),
    /// each after `delay`.
    pub async fn start(anthropic: bool, replies: Vec<ScriptedReply>, delay: Duration) -> ScriptedModel {
        let server = wiremock::MockServer::start().await;
        let path = if anthropic { "/v1/messages" } else { "/chat/completions" };
        let responder = ScriptResponder { replies, anthropic, delay, next: Default::default() };
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path(path))
            .respond_with(responder)
            .mount(&server)
            .await;
        ScriptedModel { server, anthropic }
    }

    /// The credential body that points at this stub.
    pub fn credential(&self) -> Value {
        let provider = if self.anthropic { "anthropic" } else { "openai" };
        serde_json::json!({ "provider": provider, "api_key": "sk-assistant-test-0000", "base_url": self.server.uri() })
    }

    /// The bodies of the calls received so far, in order.
    pub async fn requests(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }
}

/// A proposal that validates: one text.template node greeting `input.name`, and its output.
pub fn valid_proposal(name: &str) -> Value {
    serde_json::json!({ "message": format!("A workflow named {name}."), "definition": {
        "name": name,
        "nodes": [
            { "id": "greet", "type": "text.template", "config": { "template": "Hello {{ input.name }}" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.greet.output.text }}" } }
        ],
        "edges": [ { "from": "greet", "to": "done" } ] } })
}
