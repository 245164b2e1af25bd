//! AWS requests and dollars per execution (issue 3's benchmark, parts 2 and 3). Runs a 10-node
//! workflow (2 side-effecting nodes: http.request and llm.chat against loopback stubs) through
//! the real path on the emulator: start-execution's handler, the SQS message, the worker's batch
//! handler, the event source's receive and delete. An SDK interceptor counts every request by
//! operation. Needs AWS_ENDPOINT_URL on loopback (scripts/bench starts moto).

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use lambda_http::{Body, Request, RequestExt};
use nodeai::api::{App, Route, handle};
use nodeai::config::Config;
use nodeai::nodes::{NodeRuntime, RegistryExecutor};
use nodeai::queue::SqsExecutionQueue;
use nodeai::secrets::CredentialResolver;
use nodeai::store::ExecutionStore;
use nodeai::store::dynamo::{DynamoStore, create_table};
use nodeai::store::secrets_manager::SecretsManagerStore;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EXECUTIONS: usize = 20;

/// Counts requests per operation, once per operation call (retries not included).
#[derive(Debug, Clone, Default)]
struct RequestCounter(Arc<Mutex<BTreeMap<String, usize>>>);

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }
    /// Once per operation, before the retry loop: these three services name the operation in
    /// the `X-Amz-Target` header (`DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`, ...).
    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // S3 names no target: its operations are told apart by method (values: PutObject, GetObject).
        let request = context.request();
        let target = match request.headers().get("x-amz-target") {
            Some(target) => target.to_string(),
            None => format!("S3.{}Object", if request.method() == "PUT" { "Put" } else { "Get" }),
        };
        *self.0.lock().unwrap().entry(target).or_default() += 1;
        Ok(())
    }
}

impl RequestCounter {
    fn take(&self) -> BTreeMap<String, usize> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The 10-node workflow; `page` is the path its http.request fetches; `events`: whether its
/// runs record execution events.
fn workflow(stub: &str, page: &str, events: bool) -> Value {
    json!({
        "name": "ten nodes",
        "events": events,
        "input_schema": { "type": "object", "required": ["topic"] },
        "nodes": [
            { "id": "fetch", "type": "http.request", "config": { "method": "GET", "url": format!("{stub}{page}") } },
            { "id": "check", "type": "logic.condition", "config": { "expression": "nodes.fetch.output.status == 200" } },
            { "id": "summarize", "type": "llm.chat", "config": { "credential": "main", "model": "gpt-4o-mini",
              "messages": [ { "role": "user", "content": "Summarize: {{ nodes.fetch.output.body[:2000] }}" } ] } },
            { "id": "fallback", "type": "text.template", "config": { "template": "no page" } },
            { "id": "title", "type": "text.template", "config": { "template": "{{ input.topic | upper }}" } },
            { "id": "shape", "type": "data.json", "config": { "source": {
                "title": "{{ nodes.title.output.text }}", "summary": "{{ nodes.summarize.output.text }}" }, "pick": "" } },
            { "id": "tagline", "type": "text.template", "config": { "template": "{{ nodes.shape.output.title }}!" } },
            { "id": "words", "type": "text.template",
              "config": { "template": "{{ nodes.shape.output.summary | length }} characters" } },
            { "id": "merged", "type": "data.json", "config": { "source": {
                "tagline": "{{ nodes.tagline.output.text }}", "words": "{{ nodes.words.output.text }}" }, "pick": "" } },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.merged.output }}" } }
        ],
        "edges": [
            { "from": "fetch", "to": "check" },
            { "from": "check", "to": "summarize", "when": "true" },
            { "from": "check", "to": "fallback", "when": "false" },
            { "from": "summarize", "to": "shape" },
            { "from": "title", "to": "shape" },
            { "from": "shape", "to": "tagline" },
            { "from": "shape", "to": "words" },
            { "from": "tagline", "to": "merged" },
            { "from": "words", "to": "merged" },
            { "from": "fallback", "to": "merged" },
            { "from": "merged", "to": "done" }
        ]
    })
}

fn request(method: &str, uri: &str, key: &str, params: &[(&str, &str)], body: Option<Value>) -> Request {
    let mut builder =
        lambda_http::http::Request::builder().method(method).uri(uri).header("authorization", format!("Bearer {key}"));
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::Text(b.to_string())).unwrap_or(Body::Empty);
    let params: HashMap<String, String> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    builder.body(body).unwrap().with_path_parameters(params)
}

async fn call(app: &App, route: Route, uri: &str, key: &str, params: &[(&str, &str)], body: Option<Value>) -> Value {
    let response = handle(app, route, request(method_of(route), uri, key, params, body)).await;
    let status = response.status().as_u16();
    let value: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    assert!(status < 300, "{route:?}: {status} {value}");
    value
}

fn method_of(route: Route) -> &'static str {
    nodeai::api::spec_of(route).map(|s| s.method).unwrap_or("GET")
}

// Public list prices, us-east-1, as of 2025.
const LAMBDA_PER_REQUEST: f64 = 0.20 / 1e6;
const LAMBDA_ARM_PER_GB_SECOND: f64 = 0.000_013_333_4;
const SQS_PER_REQUEST: f64 = 0.40 / 1e6;
const S3_PER_PUT: f64 = 0.005 / 1000.0;
const S3_PER_GET: f64 = 0.0004 / 1000.0;
const S3_PER_GB_MONTH: f64 = 0.023;
const DYNAMO_PER_WRITE_UNIT: f64 = 0.625 / 1e6;
const DYNAMO_PER_READ_UNIT: f64 = 0.125 / 1e6;
const SFN_STANDARD_PER_TRANSITION: f64 = 0.025 / 1000.0;
const SFN_EXPRESS_PER_REQUEST: f64 = 1.00 / 1e6;
const SFN_EXPRESS_PER_GB_SECOND: f64 = 0.000_016_67;

#[tokio::main]
async fn main() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL: run through scripts/bench");
    assert!(endpoint.starts_with("http://127.0.0.1:"), "benchmarks only talk to loopback: {endpoint}");
    let counter = RequestCounter::default();
    let sdk = aws_config::load_from_env().await;
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
    );
    let sqs =
        aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(&sdk).interceptor(counter.clone()).build());
    let secrets_client = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
    );
    let table = format!("nodeai-bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    create_table(&dynamo, &table, nodeai::store::dynamo::ChangeStream::Off).await.expect("create the bench table");
    let queue_url =
        sqs.create_queue().queue_name(format!("{table}-executions")).send().await.unwrap().queue_url.unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).interceptor(counter.clone()).build(),
    );
    nodeai::store::s3::create_bucket(&s3, &table).await.expect("create the bench bucket");
    let values = Arc::new(nodeai::store::s3::S3ValueStore::new(s3, table.clone()));
    let store = Arc::new(DynamoStore::new(dynamo, table.clone()).with_values(values));
    let secrets = Arc::new(SecretsManagerStore::new(secrets_client));
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some(table.clone()),
        "CURSOR_SIGNING_KEY" => Some("bench-signing-key-0123456789abcdef".into()),
        "STAGE" => Some("bench".into()),
        _ => None,
    })
    .unwrap();
    let queue = SqsExecutionQueue::new(sqs.clone(), queue_url.clone());
    let app = App::new(config).with_store(store.clone()).with_secrets(secrets.clone()).with_queue(Arc::new(queue));
    let executor = RegistryExecutor {
        runtime: NodeRuntime {
            allowed_private_hosts: vec!["127.0.0.1".into()],
            credentials: Some(Arc::new(CredentialResolver::new(secrets, "bench", Duration::from_secs(60)))),
            ..Default::default()
        },
    };
    let worker_queue = SqsExecutionQueue::new(sqs.clone(), queue_url.clone());

    let stub = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/page"))
        .respond_with(ResponseTemplate::new(200).set_body_string("NodeAI runs AI workflows durably on AWS Lambda."))
        .mount(&stub)
        .await;
    // The large-output case: a 200 KB page, over the 64 KB kept inline, so the fetch step's
    // output goes to S3 (the summary reads a truncated part of it, so only that value is large).
    let large_page = "NodeAI runs AI workflows durably on AWS Lambda. ".repeat(200 * 1024 / 48);
    Mock::given(method("GET"))
        .and(path("/large"))
        .respond_with(ResponseTemplate::new(200).set_body_string(large_page.clone()))
        .mount(&stub)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-bench", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [ { "index": 0, "message": { "role": "assistant", "content": "Durable AI workflows on Lambda." },
                           "finish_reason": "stop" } ],
            "usage": { "prompt_tokens": 40, "completion_tokens": 6, "total_tokens": 46 } })))
        .mount(&stub)
        .await;

    // Set-up, not counted: a tenant, the credential, the workflow published and deployed.
    let (tenant, key) = nodeai::auth::provision_tenant(store.as_ref(), "bench", "free", None).await.unwrap();
    let credential =
        json!({ "provider": "openai", "api_key": "sk-bench-0000", "base_url": format!("{}/v1", stub.uri()) });
    call(&app, Route::PutCredential, "/v1/credentials/main", &key, &[("name", "main")], Some(credential)).await;
    let cases = [
        (" (events on, the default)", "/page", true),
        (" with events off", "/page", false),
        (" with one large output (200 KB)", "/large", true),
    ];
    for (label, page, events) in cases {
        let definition = workflow(&stub.uri(), page, events);
        let created = call(&app, Route::CreateWorkflow, "/v1/workflows", &key, &[], Some(definition)).await;
        let id = created["id"].as_str().unwrap().to_string();
        let params = [("workflow_id", id.as_str())];
        call(&app, Route::PublishVersion, &format!("/v1/workflows/{id}/versions"), &key, &params, None).await;
        let deploy = Some(json!({ "version": 1 }));
        call(&app, Route::DeployVersion, &format!("/v1/workflows/{id}/deployment"), &key, &params, deploy).await;
        counter.take();

        let (mut start_time, mut worker_time) = (Duration::ZERO, Duration::ZERO);
        let mut last_execution = String::new();
        let mut by_phase: BTreeMap<(&str, String), usize> = BTreeMap::new();
        let mut finished_ids = Vec::new();
        for i in 0..EXECUTIONS {
            let began = Instant::now();
            let body = Some(json!({ "input": { "topic": format!("run {i}") } }));
            let started =
                call(&app, Route::StartExecution, &format!("/v1/workflows/{id}/executions"), &key, &params, body).await;
            start_time += began.elapsed();
            for (operation, n) in counter.take() {
                *by_phase.entry(("start-execution", operation)).or_default() += n;
            }
            // The Lambda event source: receive, invoke the worker, delete what succeeded.
            let received = sqs.receive_message().queue_url(&queue_url).max_number_of_messages(1).send().await.unwrap();
            let message = received.messages.unwrap_or_default().pop().expect("the execution's message");
            for (operation, n) in counter.take() {
                *by_phase.entry(("event source", operation)).or_default() += n;
            }
            let mut record = SqsMessage::default();
            record.message_id = message.message_id.clone();
            record.body = message.body.clone();
            let mut event = SqsEvent::default();
            event.records.push(record);
            let began = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(300);
            let limits = nodeai::config::RunningLimits::default();
            let response = nodeai::worker::handle_batch(
                store.as_ref(),
                &executor,
                &worker_queue,
                event,
                "bench-worker",
                deadline,
                &limits,
            )
            .await;
            worker_time += began.elapsed();
            assert!(response.batch_item_failures.is_empty());
            for (operation, n) in counter.take() {
                *by_phase.entry(("execution-worker", operation)).or_default() += n;
            }
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(message.receipt_handle.unwrap_or_default())
                .send()
                .await
                .unwrap();
            for (operation, n) in counter.take() {
                *by_phase.entry(("event source", operation)).or_default() += n;
            }
            let execution_id = started["execution_id"].as_str().unwrap();
            last_execution = execution_id.to_string();
            finished_ids.push(execution_id.to_string());
            let done = store.get_execution(&tenant.tenant_id, execution_id).await.unwrap().unwrap();
            assert_eq!(done.status.as_str(), "succeeded", "{:?}", done.error);
            counter.take(); // the check above is not part of an execution
        }

        let per = |n: usize| n as f64 / EXECUTIONS as f64;
        println!();
        println!(
            "AWS requests per execution of the 10-node workflow{label} (2 side-effecting nodes), mean of {EXECUTIONS}:"
        );
        println!("{:<18} {:<40} {:>8}", "phase", "operation", "count");
        for ((phase, operation), n) in &by_phase {
            println!("{phase:<18} {operation:<40} {:>8.2}", per(*n));
        }
        let count = |phase: Option<&str>, ops: &[&str]| -> f64 {
            by_phase
                .iter()
                .filter(|((p, op), _)| phase.is_none_or(|want| want == *p) && ops.iter().any(|o| op.ends_with(o)))
                .map(|(_, n)| per(*n))
                .sum::<f64>()
                + 0.0 // an empty sum is -0.0
        };
        let writes =
            |phase| count(phase, &[".PutItem", ".UpdateItem", ".DeleteItem", ".TransactWriteItems", ".BatchWriteItem"]);
        let worker_writes = writes(Some("execution-worker"));
        println!(
            "DynamoDB write requests: {:.2} per execution ({:.2} in the worker: side-effecting nodes + claim + finish + run slot taken and released = 6)",
            writes(None),
            worker_writes
        );

        // Capacity units from the sizes of the items one execution leaves (moto reports no real
        // consumed capacity): a write is 1 WRU per KB of the item (transactional: 2), a consistent
        // read 1 RRU per 4 KB.
        let raw = aws_sdk_dynamodb::Client::new(&sdk);
        let units = capacity_units(&raw, &table, &tenant.tenant_id, &id, &last_execution).await;
        println!();
        println!("item sizes of one execution: {}", units.sizes);
        let (write_units, read_units) = (units.write, units.read);
        let sqs_requests = count(None, &[".SendMessage", ".ReceiveMessage", ".DeleteMessage"]);
        let secret_reads = count(None, &[".GetSecretValue"]);
        let start_seconds = start_time.as_secs_f64() / EXECUTIONS as f64;
        let worker_seconds = worker_time.as_secs_f64() / EXECUTIONS as f64;
        let lambda =
            2.0 * LAMBDA_PER_REQUEST + (0.256 * start_seconds + 0.512 * worker_seconds) * LAMBDA_ARM_PER_GB_SECOND;
        let dynamo = write_units as f64 * DYNAMO_PER_WRITE_UNIT + read_units as f64 * DYNAMO_PER_READ_UNIT;
        let sqs_cost = sqs_requests * SQS_PER_REQUEST;
        let secrets_cost = secret_reads * 0.05 / 10_000.0;
        let (s3_puts, s3_gets) = (count(None, &["S3.PutObject"]), count(None, &["S3.GetObject"]));
        // Stored for the 30 days of default retention: one month of the bytes S3 holds.
        let s3_bytes = if page == "/large" { large_page.len() as f64 } else { 0.0 };
        let s3_cost = s3_puts * S3_PER_PUT + s3_gets * S3_PER_GET + s3_bytes / 1e9 * S3_PER_GB_MONTH;
        let nodeai = lambda + dynamo + sqs_cost + secrets_cost + s3_cost;
        // Step Functions for the same workflow: one state per node, a Parallel state for the two
        // roots, plus the start: about 12 transitions (Standard); Express bills per request and
        // duration (64 MB, the orchestration time measured here). Both still need a Lambda (or
        // HTTP task) for each of the 2 side-effecting nodes: 2 Lambda requests are added.
        let task_lambdas = 2.0 * LAMBDA_PER_REQUEST + 2.0 * 0.128 * 0.1 * LAMBDA_ARM_PER_GB_SECOND;
        let standard = 12.0 * SFN_STANDARD_PER_TRANSITION + task_lambdas;
        let express =
            SFN_EXPRESS_PER_REQUEST + 0.064 * worker_seconds.max(0.1) * SFN_EXPRESS_PER_GB_SECOND + task_lambdas;
        println!();
        println!(
            "measured here (emulator latencies): start-execution {:.1} ms, worker {:.1} ms per execution",
            start_seconds * 1e3,
            worker_seconds * 1e3
        );
        println!("{:<44} {:>14}", "dollars per million executions", "USD");
        println!("{:<44} {:>14.2}", "NodeAI: Lambda (2 invocations, arm64)", lambda * 1e6);
        println!("{:<44} {:>14.2}", format!("NodeAI: DynamoDB ({write_units} WRU, {read_units} RRU)"), dynamo * 1e6);
        println!("{:<44} {:>14.2}", format!("NodeAI: SQS ({sqs_requests:.1} requests)"), sqs_cost * 1e6);
        println!("{:<44} {:>14.2}", format!("NodeAI: Secrets Manager ({secret_reads:.2} reads)"), secrets_cost * 1e6);
        println!(
            "{:<44} {:>14.2}",
            format!("NodeAI: S3 ({s3_puts:.1} PUT, {s3_gets:.1} GET, {:.0} KB-month)", s3_bytes / 1024.0),
            s3_cost * 1e6
        );
        println!("{:<44} {:>14.2}", "NodeAI total", nodeai * 1e6);
        println!("{:<44} {:>14.2}", "Step Functions Standard (12 transitions + 2 task Lambdas)", standard * 1e6);
        println!("{:<44} {:>14.2}", "Step Functions Express (+ 2 task Lambdas)", express * 1e6);
        println!("(API Gateway, $3.50 per million REST calls, is the same for all three and left out; so is the time");
        println!(" a worker waits on the model, which a Lambda bills and Standard's callback pattern does not.)");
        usage_counting_cost(store.as_ref(), &counter, &tenant.tenant_id, &id, &finished_ids).await;
    }
    let bench = Bench {
        app: &app,
        store: store.as_ref(),
        executor: &executor,
        sqs: &sqs,
        queue_url: &queue_url,
        counter: &counter,
    };
    bench.approval(&key, &tenant.tenant_id).await;
    bench.map_over_100(&key, &tenant.tenant_id).await;
    bench.webhook(&key).await;
    bench.schedule_fire(&key).await;
    bench.wait_reads(&key).await;
}

/// What issue 11's figures run against: the app, the worker and the counted clients.
struct Bench<'a> {
    app: &'a App,
    store: &'a DynamoStore,
    executor: &'a RegistryExecutor,
    sqs: &'a aws_sdk_sqs::Client,
    queue_url: &'a str,
    counter: &'a RequestCounter,
}

impl Bench<'_> {
    /// `GET /v1/executions/{id}?wait=N` on an execution that does not end meanwhile (queued,
    /// no worker): the reads one wait costs, counted, beside `executions::wait_reads`.
    async fn wait_reads(&self, key: &str) {
        let definition = json!({ "name": "never run", "nodes": [ { "id": "out", "type": "flow.output", "config": { "value": 1 } } ] });
        let created = call(self.app, Route::CreateWorkflow, "/v1/workflows", key, &[], Some(definition)).await;
        let id = created["id"].as_str().unwrap().to_string();
        let body = Some(json!({ "version": "draft", "input": {} }));
        let params = [("workflow_id", id.as_str())];
        let started =
            call(self.app, Route::StartExecution, &format!("/v1/workflows/{id}/executions"), key, &params, body).await;
        let execution_id = started["execution_id"].as_str().unwrap().to_string();
        let seconds = 3;
        self.counter.take();
        let uri = format!("/v1/executions/{execution_id}?wait={seconds}");
        let mut req = request("GET", &uri, key, &[("execution_id", execution_id.as_str())], None);
        req = req.with_query_string_parameters(HashMap::from([("wait".to_string(), seconds.to_string())]));
        let response = handle(self.app, Route::GetExecution, req).await;
        assert_eq!(response.status(), 200);
        let counts = self.counter.take();
        let reads: usize = counts.iter().filter(|(op, _)| op.ends_with(".GetItem")).map(|(_, n)| n).sum();
        let queries: usize = counts.iter().filter(|(op, _)| op.ends_with(".Query")).map(|(_, n)| n).sum();
        // The wait's own reads: the route's lookup, snapshot and steps are there without a wait.
        let waited = reads.saturating_sub(1);
        println!();
        println!(
            "GET /v1/executions/{{id}}?wait={seconds} on a run that does not end: {reads} GetItem ({waited} for the wait, \
                  wait_reads({seconds} s) = {}), {queries} Query",
            nodeai::executions::wait_reads(Duration::from_secs(seconds))
        );
        let worst = nodeai::executions::wait_reads(nodeai::executions::MAX_WAIT);
        println!(
            "a 25 s wait that sees no end: {worst} strongly consistent reads of a record under 4 KB = {worst} RRU = ${:.2} per million waits",
            worst as f64 * DYNAMO_PER_READ_UNIT * 1e6
        );
        let cancel = format!("/v1/executions/{execution_id}/cancel");
        call(self.app, Route::CancelExecution, &cancel, key, &[("execution_id", execution_id.as_str())], None).await;
    }
}

/// Requests counted by operation, summed over a scenario's runs.
type Counts = BTreeMap<String, usize>;

impl Bench<'_> {
    fn add(&self, into: &mut Counts) {
        for (operation, n) in self.counter.take() {
            *into.entry(operation).or_default() += n;
        }
    }

    /// The Lambda event source until the queue is empty: batches of up to 5 (the template's
    /// BatchSize), each one worker invocation. Answers the invocations.
    async fn drain(&self, counts: &mut Counts) -> usize {
        let mut invocations = 0;
        loop {
            let received =
                self.sqs.receive_message().queue_url(self.queue_url).max_number_of_messages(5).send().await.unwrap();
            let messages = received.messages.unwrap_or_default();
            if messages.is_empty() {
                self.add(counts);
                return invocations;
            }
            invocations += 1;
            let mut event = SqsEvent::default();
            for message in &messages {
                let mut record = SqsMessage::default();
                record.message_id = message.message_id.clone();
                record.body = message.body.clone();
                event.records.push(record);
            }
            let queue = SqsExecutionQueue::new(self.sqs.clone(), self.queue_url.to_string());
            let limits = nodeai::config::RunningLimits { free: 100, ..Default::default() };
            let deadline = Instant::now() + Duration::from_secs(300);
            let response =
                nodeai::worker::handle_batch(self.store, self.executor, &queue, event, "bench", deadline, &limits)
                    .await;
            assert!(response.batch_item_failures.is_empty());
            for message in messages {
                self.sqs
                    .delete_message()
                    .queue_url(self.queue_url)
                    .receipt_handle(message.receipt_handle.unwrap_or_default())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn deployed(&self, key: &str, definition: Value) -> String {
        let created = call(self.app, Route::CreateWorkflow, "/v1/workflows", key, &[], Some(definition)).await;
        let id = created["id"].as_str().unwrap().to_string();
        let params = [("workflow_id", id.as_str())];
        call(self.app, Route::PublishVersion, &format!("/v1/workflows/{id}/versions"), key, &params, None).await;
        let deploy = Some(json!({ "version": 1 }));
        call(self.app, Route::DeployVersion, &format!("/v1/workflows/{id}/deployment"), key, &params, deploy).await;
        id
    }

    async fn start(&self, key: &str, workflow_id: &str, input: Value, counts: &mut Counts) -> String {
        self.counter.take();
        let params = [("workflow_id", workflow_id)];
        let uri = format!("/v1/workflows/{workflow_id}/executions");
        let started = call(self.app, Route::StartExecution, &uri, key, &params, Some(json!({ "input": input }))).await;
        self.add(counts);
        started["execution_id"].as_str().unwrap().to_string()
    }

    /// An approval workflow (approve, then output): start, park, the answer through the
    /// callback URL, resume, finish.
    async fn approval(&self, key: &str, tenant_id: &str) {
        let definition = json!({ "name": "approval", "nodes": [
            { "id": "approve", "type": "flow.approval", "config": {} },
            { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.approve.output.ok }}" } } ],
            "edges": [ { "from": "approve", "to": "done" } ] });
        let id = self.deployed(key, definition).await;
        let (mut counts, mut invocations) = (Counts::new(), 0);
        for _ in 0..EXECUTIONS {
            let execution = self.start(key, &id, json!({}), &mut counts).await;
            invocations += 1 + self.drain(&mut counts).await;
            let record = self.store.get_execution(tenant_id, &execution).await.unwrap().unwrap();
            let token = record.waits[0].callback_token.clone().expect("parked on the approval");
            self.counter.take();
            let uri = format!("/v1/callbacks/{token}");
            call(
                self.app,
                Route::CompleteCallback,
                &uri,
                "",
                &[("token", token.as_str())],
                Some(json!({ "ok": true })),
            )
            .await;
            self.add(&mut counts);
            invocations += 1 + self.drain(&mut counts).await;
            let done = self.store.get_execution(tenant_id, &execution).await.unwrap().unwrap();
            assert_eq!(done.status.as_str(), "succeeded");
            self.counter.take();
        }
        // Step Functions Standard: start, a waitForTaskToken task (a Lambda sends the token),
        // the end: 3 transitions and one Lambda.
        let sfn = 3.0 * SFN_STANDARD_PER_TRANSITION + LAMBDA_PER_REQUEST;
        report("an approval workflow (approve, answer, output)", &counts, invocations, EXECUTIONS, sfn);
        println!(" (plus the wake-up set at the deadline, an SQS delay that outlives the run: one send counted above,");
        println!("  one receive, one delete and a read when it comes, about $1.00 more per million)");
    }

    /// A map over 100 items of a one-node workflow, at concurrency 10.
    async fn map_over_100(&self, key: &str, tenant_id: &str) {
        let item = self
            .deployed(
                key,
                json!({ "name": "item", "nodes": [
                    { "id": "loud", "type": "text.template", "config": { "template": "{{ input.item | upper }}" } },
                    { "id": "done", "type": "flow.output", "config": { "value": "{{ nodes.loud.output.text }}" } } ],
                    "edges": [ { "from": "loud", "to": "done" } ] }),
            )
            .await;
        let parent = self
            .deployed(
                key,
                json!({ "name": "map", "nodes": [ { "id": "each", "type": "flow.map",
                    "config": { "workflow_id": item, "items": "{{ input.rows }}", "concurrency": 10 } } ] }),
            )
            .await;
        const RUNS: usize = 3;
        let (mut counts, mut invocations) = (Counts::new(), 0);
        let rows: Vec<String> = (0..100).map(|i| format!("row {i}")).collect();
        for _ in 0..RUNS {
            let execution = self.start(key, &parent, json!({ "rows": rows }), &mut counts).await;
            invocations += 1 + self.drain(&mut counts).await;
            let done = self.store.get_execution(tenant_id, &execution).await.unwrap().unwrap();
            assert_eq!(done.status.as_str(), "succeeded", "{:?}", done.error);
            self.counter.take();
        }
        // Step Functions Standard: a Map state of 100 iterations, each a Lambda task: about 2
        // transitions per iteration plus the start, the map and the end.
        let sfn = (3.0 + 200.0) * SFN_STANDARD_PER_TRANSITION + 100.0 * LAMBDA_PER_REQUEST;
        report("a map over 100 items (concurrency 10, one-node item workflow)", &counts, invocations, RUNS, sfn);
    }
}

impl Bench<'_> {
    /// A signed webhook (GitHub's scheme, async) of a one-node workflow: each delivery
    /// verified (the secret read once per warm instance), started, run.
    async fn webhook(&self, key: &str) {
        let id = self.deployed(key, one_node("hooked")).await;
        let params = [("workflow_id", id.as_str())];
        let body = Some(json!({ "type": "webhook", "scheme": "github" }));
        let trigger =
            call(self.app, Route::CreateTrigger, &format!("/v1/workflows/{id}/triggers"), key, &params, body).await;
        let secret = trigger["secret"].as_str().unwrap().to_string();
        let hook = trigger["webhook"]["url"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
        self.counter.take();
        let (mut counts, mut invocations) = (Counts::new(), 0);
        for n in 0..EXECUTIONS {
            let payload = json!({ "order": n }).to_string();
            let signature = format!("sha256={}", nodeai::triggers::signature::hmac_hex(&secret, payload.as_bytes()));
            let request = lambda_http::http::Request::builder()
                .method("POST")
                .uri(format!("/hooks/{hook}"))
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .header("x-github-delivery", format!("delivery-{n}"))
                .body(Body::Text(payload))
                .unwrap()
                .with_path_parameters(HashMap::from([("hook_id".to_string(), hook.clone())]));
            let response = handle(self.app, Route::ReceiveWebhook, request).await;
            assert_eq!(response.status().as_u16(), 202);
            self.add(&mut counts);
            invocations += 1 + self.drain(&mut counts).await;
        }
        // Step Functions Standard behind an API Gateway service integration: start, one
        // Lambda task, the end.
        let sfn = 3.0 * SFN_STANDARD_PER_TRANSITION + LAMBDA_PER_REQUEST;
        report("a signed webhook delivery (async) of a one-node workflow", &counts, invocations, EXECUTIONS, sfn);
        println!(" (the delivery's secret read is one per warm receive-webhook instance, not per delivery)");
    }

    /// A schedule trigger's fire: Scheduler sends the message (its invocation is $1.00 per
    /// million, added below), the worker starts the run and runs it.
    async fn schedule_fire(&self, key: &str) {
        let id = self.deployed(key, one_node("scheduled")).await;
        let now = nodeai::model::now_rfc3339();
        let trigger = nodeai::triggers::TriggerRecord {
            tenant_id: self.store_tenant(key).await,
            workflow_id: id,
            trigger_id: nodeai::model::new_id(),
            enabled: true,
            description: None,
            source: nodeai::triggers::TriggerSource::Schedule(nodeai::triggers::ScheduleSettings {
                cron: None,
                rate: Some("5 minutes".into()),
                timezone: "UTC".into(),
                input: json!({}),
                start_at: None,
                end_at: None,
            }),
            created_at: now.clone(),
            updated_at: now,
            revision: 1,
            retention_seconds: 30 * 86_400,
            last_run: None,
        };
        use nodeai::triggers::TriggerStore;
        assert!(self.store.create_trigger(&trigger, 20, 200).await.unwrap());
        let message = nodeai::triggers::fire::TriggerFire::for_schedule(&trigger).to_json();
        self.counter.take();
        let (mut counts, mut invocations) = (Counts::new(), 0);
        for n in 0..EXECUTIONS {
            let fired =
                message.replace(nodeai::triggers::fire::SCHEDULED_TIME, &format!("2026-12-01T{:02}:00:00Z", n % 24));
            self.sqs.send_message().queue_url(self.queue_url).message_body(fired).send().await.unwrap();
            self.counter.take(); // Scheduler's send, priced below as its invocation
            invocations += self.drain(&mut counts).await;
        }
        let sfn = 3.0 * SFN_STANDARD_PER_TRANSITION + LAMBDA_PER_REQUEST;
        report("a schedule trigger's fire of a one-node workflow", &counts, invocations, EXECUTIONS, sfn);
        println!(" (both plus EventBridge Scheduler: $1.00 per million fires, whichever the target)");
    }

    async fn store_tenant(&self, key: &str) -> String {
        let record = nodeai::store::TenantStore::find_api_key(self.store, &nodeai::auth::hash_key(key)).await;
        record.unwrap().unwrap().tenant_id
    }
}

fn one_node(name: &str) -> Value {
    json!({ "name": name, "nodes": [
        { "id": "done", "type": "flow.output", "config": { "value": "{{ input }}" } } ] })
}

/// Prints a scenario's requests per execution and its dollars per million beside Step
/// Functions Standard. Write units are estimated from the requests: 1 per item written (items
/// here are under 1 KB), a TransactWriteItems 2 per item for its usual 2 to 3 items (5); reads
/// 1 unit each (an upper bound: most are eventually consistent, half a unit).
fn report(name: &str, counts: &Counts, invocations: usize, runs: usize, step_functions: f64) {
    let per = |n: usize| n as f64 / runs as f64;
    let sum = |ops: &[&str]| -> f64 {
        counts.iter().filter(|(op, _)| ops.iter().any(|o| op.ends_with(o))).map(|(_, n)| per(*n)).sum::<f64>() + 0.0
    };
    println!();
    println!("AWS requests per execution of {name}, mean of {runs}:");
    for (operation, n) in counts {
        println!("  {operation:<44} {:>8.2}", per(*n));
    }
    let write_units = sum(&[".PutItem", ".UpdateItem", ".DeleteItem"]) + 5.0 * sum(&[".TransactWriteItems"]);
    let read_units = sum(&[".GetItem", ".Query"]);
    let sqs = sum(&[".SendMessage", ".ReceiveMessage", ".DeleteMessage"]);
    let lambda_invocations = per(invocations);
    let dynamo = write_units * DYNAMO_PER_WRITE_UNIT + read_units * DYNAMO_PER_READ_UNIT;
    // Each invocation billed 100 ms at 512 MB (the worker; API functions are 256 MB).
    let lambda = lambda_invocations * (LAMBDA_PER_REQUEST + 0.512 * 0.1 * LAMBDA_ARM_PER_GB_SECOND);
    let total = dynamo + sqs * SQS_PER_REQUEST + lambda;
    println!("{:<52} {:>12}", "dollars per million executions", "USD");
    println!(
        "{:<52} {:>12.2}",
        format!("NodeAI: DynamoDB (~{write_units:.1} WRU, ~{read_units:.1} RRU)"),
        dynamo * 1e6
    );
    println!("{:<52} {:>12.2}", format!("NodeAI: SQS ({sqs:.1} requests)"), sqs * SQS_PER_REQUEST * 1e6);
    println!("{:<52} {:>12.2}", format!("NodeAI: Lambda ({lambda_invocations:.1} invocations)"), lambda * 1e6);
    println!("{:<52} {:>12.2}", "NodeAI total", total * 1e6);
    println!("{:<52} {:>12.2}", "Step Functions Standard", step_functions * 1e6);
}

struct CapacityUnits {
    write: u64,
    read: u64,
    sizes: String,
}

/// DynamoDB's item size: attribute names plus values (strings by UTF-8 length, numbers about
/// one byte per two digits, booleans one byte).
fn item_size(item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue;
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    AttributeValue::B(bytes) => bytes.as_ref().len(),
                    AttributeValue::N(number) => number.len().div_ceil(2) + 1,
                    _ => 1,
                }
        })
        .sum()
}

/// The capacity one execution of the bench workflow consumes, from the items it leaves.
async fn capacity_units(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    tenant_id: &str,
    workflow_id: &str,
    execution_id: &str,
) -> CapacityUnits {
    use aws_sdk_dynamodb::types::AttributeValue;
    let get = |pk: String, sk: String| async move {
        let out = client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .send()
            .await
            .unwrap();
        item_size(&out.item.expect("the item exists"))
    };
    let workflow = get(format!("T#{tenant_id}"), format!("WF#{workflow_id}")).await;
    let version = get(format!("T#{tenant_id}#WF#{workflow_id}"), format!("V#{:010}", 1)).await;
    let execution = get(format!("T#{tenant_id}"), format!("EX#{execution_id}")).await;
    let tenant = get(format!("T#{tenant_id}"), "TENANT".to_string()).await;
    // The tenant's run slots (empty again after the run: its size while one slot is held is
    // this plus one entry, still under 1 KB).
    let run_slots = get(format!("T#{tenant_id}"), "RUNNING".to_string()).await;
    let partition = client
        .query()
        .table_name(table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("T#{tenant_id}#EX#{execution_id}")))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let sk = |item: &HashMap<String, AttributeValue>| {
        item.get("sk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
    };
    let sized = |prefix: &str| -> Vec<usize> {
        partition.iter().filter(|item| sk(item).starts_with(prefix)).map(item_size).collect()
    };
    let snapshot = sized("DEF")[0];
    // Event batches: one item each, written once (a run's first write reads the last seq).
    let events = sized("EV#");
    let bulk = sized("STEP#~");
    let steps: Vec<usize> = partition
        .iter()
        .filter(|item| sk(item).starts_with("STEP#") && !sk(item).starts_with("STEP#~"))
        .map(item_size)
        .collect();
    let kb = |bytes: usize| bytes.div_ceil(1024) as u64;
    let four_kb = |bytes: usize| bytes.div_ceil(4096).max(1) as u64;
    // start: the snapshot and the execution (before its output), two puts; the worker takes a
    // run slot (a put of the tenant's slots item) and releases it (an update); the claim
    // updates the execution; a put per side-effecting step; the finish updates the execution
    // and puts the bulk steps, transactionally.
    let write = kb(execution)
        + kb(snapshot)
        + 2 * kb(run_slots + 64)
        + kb(execution)
        + steps.iter().map(|s| kb(*s)).sum::<u64>()
        + 2 * (kb(execution) + bulk.iter().map(|s| kb(*s)).sum::<u64>())
        + events.iter().map(|s| kb(*s)).sum::<u64>();
    // start reads the workflow and the version; the worker the execution, the tenant (its
    // tier), the run slots, the snapshot and the (still empty) steps.
    let read = four_kb(workflow)
        + four_kb(version)
        + four_kb(execution)
        + four_kb(tenant)
        + four_kb(run_slots)
        + four_kb(snapshot)
        + 1
        + u64::from(!events.is_empty());
    let sizes = format!(
        "execution {execution} B, snapshot {snapshot} B, side-effecting steps {steps:?} B, bulk steps {bulk:?} B, \
         workflow {workflow} B, version {version} B, run slots {run_slots} B, event batches {events:?} B"
    );
    CapacityUnits { write, read, sizes }
}

/// What the usage counters add per execution: the finishes of this run counted as the stream
/// consumer counts them (`usage::count_finishes`, the same code), once as one batch of all of
/// them (a busy tenant) and once a batch per execution (a quiet one). Every item a counter
/// transaction writes is under 1 KB: 2 WRU each (transactional).
async fn usage_counting_cost(
    store: &DynamoStore,
    counter: &RequestCounter,
    tenant_id: &str,
    workflow_id: &str,
    execution_ids: &[String],
) {
    use nodeai::store::StepStore;
    let mut finishes = Vec::new();
    for id in execution_ids {
        let steps = store.load_steps(tenant_id, id).await.unwrap();
        finishes.push(nodeai::usage::FinishedExecution {
            tenant_id: tenant_id.to_string(),
            execution_id: id.clone(),
            workflow_id: workflow_id.to_string(),
            status: nodeai::model::ExecutionStatus::Succeeded,
            finished_at: nodeai::model::now_rfc3339(),
            spent: nodeai::model::ExecutionUsage::of(&steps),
        });
    }
    counter.take();
    let counted = nodeai::usage::count_finishes(store, &finishes).await.unwrap();
    assert_eq!(counted, finishes.len());
    let transactions: usize =
        counter.take().into_iter().filter(|(op, _)| op.ends_with(".TransactWriteItems")).map(|(_, n)| n).sum();
    let (n, rows) = (finishes.len(), nodeai::usage::aggregate(&finishes).len());
    // A marker per finish and an update per row, each a transactional write of under 1 KB.
    let units = 2 * (n + rows);
    println!();
    println!("usage counting (count-usage, one stream batch of {n} finishes of one workflow and model):");
    println!(
        "  {transactions} TransactWriteItems: {n} finish markers + {rows} counter rows = {units} WRU: {:.2} WRU, ${:.2} per million executions",
        units as f64 / n as f64,
        units as f64 / n as f64 * DYNAMO_PER_WRITE_UNIT * 1e6
    );
    let single = 2 * (1 + nodeai::usage::aggregate(&finishes[..1]).len());
    println!(
        "  a batch per execution (a quiet tenant): {single} WRU: ${:.2} per million, plus one count-usage invocation each (${:.2})",
        single as f64 * DYNAMO_PER_WRITE_UNIT * 1e6,
        LAMBDA_PER_REQUEST * 1e6
    );
    println!("  the execution's final write grows by its usage attribute (about 200 B), inside the same write");
}
