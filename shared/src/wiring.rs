//! Cold-start wiring shared by every function's `main`: read configuration, set up tracing,
//! build the AWS clients its route uses once, then serve requests with its one handler.

use crate::api::{self, App, Handler, Route};
use crate::config::Config;
use crate::queue::SqsExecutionQueue;
use crate::store::dynamo::DynamoStore;
use crate::store::s3::S3ValueStore;
use crate::store::secrets_manager::SecretsManagerStore;
use lambda_http::{Request, service_fn};
use std::convert::Infallible;
use std::sync::Arc;
use tracing::Instrument;

pub type Error = lambda_http::Error;

/// Adds one AWS client to the app. A plain function pointer, so a function links the SDK of a
/// client only when its `main` asks for it.
type AddClient = fn(&Config, &aws_config::SdkConfig, App) -> App;

/// Cold start of an API function: configuration (a bad variable stops the function with one line
/// naming it) and tracing, then only the clients its route uses:
/// `wiring::builder().dynamodb().sqs().build().await`.
pub fn builder() -> Builder {
    Builder { config: config_and_tracing() }
}

/// A builder with no AWS client yet: `build` loads no AWS configuration at all.
pub struct Builder {
    config: Config,
}

/// A builder with at least one AWS client: `build` loads the AWS configuration once.
pub struct AwsBuilder {
    config: Config,
    clients: Vec<AddClient>,
}

impl Builder {
    fn aws(self, client: AddClient) -> AwsBuilder {
        AwsBuilder { config: self.config, clients: vec![client] }
    }
    /// DynamoDB: tenant data, and the API key check where no authorizer ran (the local stack).
    pub fn dynamodb(self) -> AwsBuilder {
        self.aws(add_dynamodb)
    }
    /// DynamoDB with the S3 value store for values over 64 KB (start-execution,
    /// get-execution-value).
    pub fn dynamodb_with_values(self) -> AwsBuilder {
        self.aws(add_dynamodb_with_values)
    }
    /// The execution queue (SQS).
    pub fn sqs(self) -> AwsBuilder {
        self.aws(add_sqs)
    }
    /// Secrets Manager (credential values).
    pub fn secrets_manager(self) -> AwsBuilder {
        self.aws(add_secrets_manager)
    }
    /// EventBridge Scheduler for schedule triggers (`TRIGGER_SCHEDULE_GROUP`).
    pub fn scheduler(self) -> AwsBuilder {
        self.aws(add_scheduler)
    }
    /// DynamoDB, and model calls as the worker makes them: credentials from Secrets Manager,
    /// the outbound guard, circuit breakers, prices and budgets (the assistant's messages).
    pub fn model_calls(self) -> AwsBuilder {
        self.aws(add_model_calls)
    }
    pub async fn build(self) -> App {
        App::new(self.config)
    }
}

impl AwsBuilder {
    pub fn dynamodb(mut self) -> Self {
        self.clients.push(add_dynamodb);
        self
    }
    pub fn sqs(mut self) -> Self {
        self.clients.push(add_sqs);
        self
    }
    pub fn secrets_manager(mut self) -> Self {
        self.clients.push(add_secrets_manager);
        self
    }
    pub fn scheduler(mut self) -> Self {
        self.clients.push(add_scheduler);
        self
    }
    pub async fn build(self) -> App {
        let sdk_config = aws_config::load_from_env().await;
        let clients = self.clients;
        let config = self.config.clone();
        clients.into_iter().fold(App::new(self.config), |app, add| add(&config, &sdk_config, app))
    }
}

fn add_dynamodb(config: &Config, sdk_config: &aws_config::SdkConfig, app: App) -> App {
    app.with_store(Arc::new(dynamo_store(config, sdk_config)))
}

fn add_dynamodb_with_values(config: &Config, sdk_config: &aws_config::SdkConfig, app: App) -> App {
    app.with_store(Arc::new(dynamo_store(config, sdk_config).with_values(Arc::new(value_store(config, sdk_config)))))
}

/// The S3 value store; a function that needs it stops at cold start without `VALUES_BUCKET`.
fn value_store(config: &Config, sdk_config: &aws_config::SdkConfig) -> S3ValueStore {
    let Some(bucket) = &config.values_bucket else { exit_with_config_error("VALUES_BUCKET is not set") };
    S3ValueStore::new(crate::store::s3::client(sdk_config), bucket.clone())
}

fn add_sqs(config: &Config, sdk_config: &aws_config::SdkConfig, app: App) -> App {
    match &config.execution_queue_url {
        Some(url) => app.with_queue(Arc::new(SqsExecutionQueue::new(aws_sdk_sqs::Client::new(sdk_config), url))),
        None => exit_with_config_error("EXECUTION_QUEUE_URL is not set"),
    }
}

fn add_model_calls(config: &Config, sdk_config: &aws_config::SdkConfig, app: App) -> App {
    let store: Arc<dyn crate::store::Store> = Arc::new(dynamo_store(config, sdk_config));
    let secrets = Arc::new(SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk_config)));
    let runtime = node_runtime(config, secrets, store.clone());
    app.with_store(store).with_models(Arc::new(runtime))
}

/// What model and HTTP calls run with, from configuration: one per warm instance (the worker,
/// the assistant's messages, and tests' apps).
pub fn node_runtime(
    config: &Config,
    secrets: Arc<dyn crate::store::SecretStore>,
    store: Arc<dyn crate::store::Store>,
) -> crate::nodes::NodeRuntime {
    crate::nodes::NodeRuntime {
        public_api_url: config.public_api_url.clone(),
        allowed_private_hosts: config.http_allowed_private_hosts.clone(),
        credentials: Some(Arc::new(crate::secrets::CredentialResolver::new(
            secrets,
            &config.stage,
            config.credential_cache_ttl,
        ))),
        breakers: Arc::new(crate::nodes::breaker::CircuitBreakers::new(
            config.circuit_breaker_threshold,
            config.circuit_breaker_cool_down,
        )),
        prices: Arc::new(crate::nodes::prices::PriceTable::with_configured(config.model_prices.clone())),
        budgets: Some(store),
        ..Default::default()
    }
}

fn add_secrets_manager(_: &Config, sdk_config: &aws_config::SdkConfig, app: App) -> App {
    app.with_secrets(Arc::new(SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(sdk_config))))
}

fn add_scheduler(config: &Config, sdk_config: &aws_config::SdkConfig, app: App) -> App {
    let Some(target) = config.trigger_scheduler.clone() else {
        exit_with_config_error("TRIGGER_SCHEDULE_GROUP is not set")
    };
    app.with_schedules(Arc::new(crate::queue::TriggerScheduler {
        client: aws_sdk_scheduler::Client::new(sdk_config),
        group: target.group,
        role_arn: target.role_arn,
        queue_arn: target.queue_arn,
    }))
}

fn exit_with_config_error(message: &str) -> ! {
    eprintln!("configuration error: {message}");
    std::process::exit(1)
}

/// Serves the SQS worker: each batch's messages run their executions; failures come back as
/// batch item failures (the event source needs `ReportBatchItemFailures`).
pub async fn serve_worker() -> Result<(), Error> {
    use aws_lambda_events::event::sqs::SqsEvent;
    use lambda_http::lambda_runtime::{self, LambdaEvent};
    let config = config_and_tracing();
    // Only the worker measures (and flushes after each batch); API functions have no recorder.
    crate::telemetry::init_metrics(&config.stage);
    let Some(queue_url) = config.execution_queue_url.clone() else {
        exit_with_config_error("EXECUTION_QUEUE_URL is not set");
    };
    let sdk_config = aws_config::load_from_env().await;
    let store = Arc::new(dynamo_store(&config, &sdk_config).with_values(Arc::new(value_store(&config, &sdk_config))));
    let mut queue = SqsExecutionQueue::new(aws_sdk_sqs::Client::new(&sdk_config), queue_url);
    if let Some(scheduler) = config.wait_scheduler.clone() {
        let scheduler = crate::queue::WaitScheduler {
            client: aws_sdk_scheduler::Client::new(&sdk_config),
            group: scheduler.group,
            role_arn: scheduler.role_arn,
            queue_arn: scheduler.queue_arn,
        };
        queue = queue.with_scheduler(scheduler, config.wait_sqs_max_delay);
    }
    let queue = Arc::new(queue);
    let secrets = Arc::new(SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk_config)));
    let runtime = node_runtime(&config, secrets, store.clone());
    let executor = Arc::new(crate::nodes::RegistryExecutor { runtime });
    let (limits, worker_timeout) = (config.running_limits, config.worker_timeout);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let (store, queue, executor) = (store.clone(), queue.clone(), executor.clone());
        async move {
            // The invocation deadline, as an Instant: what is left of the Lambda's time.
            let deadline = std::time::Instant::now() + invocation_budget(event.context.deadline(), worker_timeout);
            // Each delivery's lease owner is this invocation's id and its message id.
            let invocation_id = event.context.request_id.clone();
            let response = crate::worker::handle_batch(
                store.as_ref(),
                executor.as_ref(),
                queue.as_ref(),
                event.payload,
                &invocation_id,
                deadline,
                &limits,
            )
            .await;
            // Before the response: Lambda may freeze the instance right after it.
            crate::telemetry::flush_metrics(std::io::stdout());
            Ok::<_, Error>(response)
        }
    }))
    .await
}

/// What is left of an invocation: until the runtime's deadline, or `worker_timeout` when that
/// deadline is not real (more than a day gone: cargo-lambda's local runtime sends 600000 ms,
/// 1970). A deadline just passed is real: nothing is left.
fn invocation_budget(deadline: std::time::SystemTime, worker_timeout: std::time::Duration) -> std::time::Duration {
    let now = std::time::SystemTime::now();
    match deadline.duration_since(now) {
        Ok(left) => left,
        Err(passed) if passed.duration() > std::time::Duration::from_secs(24 * 3600) => worker_timeout,
        Err(_) => std::time::Duration::ZERO,
    }
}

/// Cold start of the sweeper (`executions::sweep`): DynamoDB and the execution queue. Each
/// scheduled invocation (EventBridge Scheduler; any payload) sweeps once as of the clock and
/// answers with what it did.
pub async fn serve_sweeper() -> Result<(), Error> {
    use lambda_http::lambda_runtime::{self, LambdaEvent};
    let config = config_and_tracing();
    crate::telemetry::init_metrics(&config.stage);
    let Some(queue_url) = config.execution_queue_url.clone() else {
        exit_with_config_error("EXECUTION_QUEUE_URL is not set");
    };
    let sdk_config = aws_config::load_from_env().await;
    let store = Arc::new(dynamo_store(&config, &sdk_config));
    let queue = Arc::new(SqsExecutionQueue::new(aws_sdk_sqs::Client::new(&sdk_config), queue_url));
    lambda_runtime::run(service_fn(move |_: LambdaEvent<serde_json::Value>| {
        let (store, queue) = (store.clone(), queue.clone());
        async move {
            let report = crate::executions::sweep::sweep(store.as_ref(), queue.as_ref(), chrono::Utc::now()).await;
            crate::telemetry::flush_metrics(std::io::stdout());
            match report {
                Ok(report) => {
                    tracing::info!(?report, "sweep done");
                    Ok(serde_json::to_value(report).unwrap_or_default())
                }
                // An invocation error: Lambda's Errors metric (and its alarm) sees it.
                Err(e) => Err(Error::from(format!("the sweep could not read or write the table: {e}"))),
            }
        }
    }))
    .await
}

/// Cold start of the usage counter (`usage`): DynamoDB only. Each invocation is a batch of the
/// table's change stream (the Lambda event source, filtered to executions changing into a final
/// status); it adds the batch's finishes to the counters. An error fails the invocation, and
/// the event source retries the same batch, which counts once.
pub async fn serve_usage_counter() -> Result<(), Error> {
    use aws_lambda_events::event::dynamodb::Event;
    use lambda_http::lambda_runtime::{self, LambdaEvent};
    let config = config_and_tracing();
    crate::telemetry::init_metrics(&config.stage);
    let sdk_config = aws_config::load_from_env().await;
    let store = Arc::new(dynamo_store(&config, &sdk_config));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| {
        let store = store.clone();
        async move {
            let finishes = crate::store::dynamo::finishes_from_stream(&event.payload);
            let counted = crate::usage::count_finishes(store.as_ref(), &finishes).await;
            crate::telemetry::flush_metrics(std::io::stdout());
            match counted {
                Ok(counted) => {
                    let records = event.payload.records.len();
                    tracing::info!(records, finishes = finishes.len(), counted, "usage counted");
                    Ok(serde_json::json!({ "finishes": finishes.len(), "counted": counted }))
                }
                Err(e) => Err(Error::from(format!("the usage counters could not be written: {e}"))),
            }
        }
    }))
    .await
}

/// The DynamoDB adapter as every function uses it: the configured table and retention.
fn dynamo_store(config: &Config, sdk_config: &aws_config::SdkConfig) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk_config), config.table_name.clone())
        .with_execution_retention(config.execution_retention)
}

fn config_and_tracing() -> Config {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(1);
        }
    };
    crate::telemetry::init(&config.log_level);
    config
}

/// Serves `route` with `handler` (its one handler, named by the function's `main`) on the Lambda
/// runtime until the instance is retired.
pub async fn serve(app: App, route: Route, handler: Handler) -> Result<(), Error> {
    lambda_http::run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(api::respond(&app, route, handler, req).await) }
    }))
    .await
}

/// Serves `route` with a streamed response (Lambda response streaming; API Gateway's
/// `ResponseTransferMode: STREAM`): the head as `respond` makes it, then the reply's event
/// stream as it comes. A reply with no stream (an error, a 204) is sent whole.
pub async fn serve_event_stream(app: App, route: Route, handler: Handler) -> Result<(), Error> {
    loop {
        // A client that goes away mid-stream can make the runtime client fail to finish the
        // response (hyper's IncompleteMessage), which ends the runtime loop: the instance
        // serves on instead of exiting (the next request would pay a cold start).
        if let Err(e) = serve_event_stream_once(app.clone(), route, handler).await {
            tracing::warn!(error = %e, "the runtime loop ended with an error; serving on");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

async fn serve_event_stream_once(app: App, route: Route, handler: Handler) -> Result<(), Error> {
    use lambda_http::lambda_runtime::streaming::{Body as StreamBody, channel};
    use lambda_http::request::RequestContext;
    use lambda_http::{RequestExt, Response};
    lambda_http::run_with_streaming_response(service_fn(move |req: Request| {
        let app = app.clone();
        async move {
            if matches!(req.request_context_ref(), Some(RequestContext::PassThrough)) {
                // Not an API request: API Gateway's invocation after a streamed response ends.
                tracing::debug!("non-HTTP invocation acknowledged");
                return Ok::<_, Infallible>(Response::new(StreamBody::from(Vec::<u8>::new())));
            }
            let (response, subscription) = api::respond_with_stream(&app, route, handler, req).await;
            let (head, body) = response.into_parts();
            let Some(subscription) = subscription else {
                return Ok(Response::from_parts(head, StreamBody::from(body.to_vec())));
            };
            let (mut sender, streamed) = channel();
            let (frames, mut pending) = tokio::sync::mpsc::channel::<String>(64);
            let execution_id = subscription.execution_id.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::events::stream::pump(subscription, frames).await {
                    tracing::warn!(error = %e, execution_id, "event stream ended by a store error");
                }
            });
            tokio::spawn(async move {
                while let Some(frame) = pending.recv().await {
                    if sender.send_data(frame.into()).await.is_err() {
                        // The client went away: dropping `pending` stops the pump.
                        break;
                    }
                }
            });
            Ok(Response::from_parts(head, streamed))
        }
    }))
    .await
}

/// Serves the REQUEST authorizer. A refusal is the error message "Unauthorized", which API
/// Gateway turns into its 401 gateway response.
pub async fn serve_authorizer() -> Result<(), Error> {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest;
    use lambda_http::lambda_runtime::{self, LambdaEvent};
    let config = config_and_tracing();
    let sdk_config = aws_config::load_from_env().await;
    let store = Arc::new(dynamo_store(&config, &sdk_config));
    let keys = Arc::new(crate::auth::KeyCache::new(config.key_cache_ttl));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| {
        let (store, keys) = (store.clone(), keys.clone());
        let span = tracing::info_span!("authorize", request_id = %event.context.request_id);
        async move {
            crate::authorizer::authorize(store.as_ref(), &keys, &event.payload).await.map_err(|e| {
                tracing::info!(outcome = %e, "request refused");
                Error::from(e.to_string())
            })
        }
        .instrument(span)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::invocation_budget;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    #[test]
    fn the_invocation_budget_is_the_runtimes_deadline_unless_it_is_not_real() {
        let timeout = Duration::from_secs(300);
        let left = invocation_budget(SystemTime::now() + Duration::from_secs(60), timeout);
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(60), "{left:?}");
        assert_eq!(invocation_budget(SystemTime::now() - Duration::from_secs(1), timeout), Duration::ZERO);
        // cargo-lambda's local runtime: Lambda-Runtime-Deadline-Ms 600000.
        assert_eq!(invocation_budget(UNIX_EPOCH + Duration::from_millis(600_000), timeout), timeout);
    }
}
