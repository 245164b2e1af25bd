//! The one tracing setup: JSON lines on stdout in the shape Lambda's JSON log format and
//! Powertools use, so CloudWatch Logs Insights can filter on every key: top-level `timestamp`
//! (RFC 3339, ms), `level`, `message`, `service` (the function's name), `cold_start`,
//! `function_request_id` and `xray_trace_id` (from the Lambda runtime's invocation span), and
//! NodeAI's correlation ids `request_id`, `tenant_id`, `execution_id`, `node_id` (span fields,
//! lifted to the top level so every line inside a request or a node run carries them).

use serde_json::{Map, Value};
use std::sync::OnceLock;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the JSON subscriber on stdout once. Safe to call again (later calls do nothing),
/// which lets tests and binaries share it.
pub fn init(log_level: &str) {
    init_with_writer(log_level, std::io::stdout);
}

/// The same subscriber writing elsewhere (tests read the lines back). `log_level` filters
/// events only: every span stays enabled, so a WARN or ERROR line still carries the ids of the
/// request, execution and node it happened in (their spans are info-level).
pub fn init_with_writer<W>(log_level: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, filter};
    let events = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let spans = filter::filter_fn(|metadata| metadata.is_span());
    let service = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "nodeai".to_string());
    let lines = tracing_subscriber::fmt::layer()
        .fmt_fields(JsonFields::new())
        .event_format(LambdaJson { service })
        .with_writer(writer)
        .with_ansi(false)
        .with_filter(filter::FilterExt::or(events, spans));
    let _ = tracing_subscriber::registry().with(FirstInvocation).with(lines).try_init();
}

/// Span fields renamed on the way to the top level: the Lambda runtime's invocation span names
/// its ids in camelCase.
fn top_level_name(span_field: &str) -> Option<&str> {
    match span_field {
        "requestId" => Some("function_request_id"),
        "xrayTraceId" => Some("xray_trace_id"),
        // Lambda's own tenant isolation id is not NodeAI's tenant.
        "tenantId" => None,
        other => Some(other),
    }
}

/// The first invocation's Lambda request id: lines of that invocation are `cold_start: true`.
static FIRST_INVOCATION: OnceLock<String> = OnceLock::new();

/// Notes the request id of the first invocation span the Lambda runtime opens, whether or not
/// that invocation writes a line (at WARN the first one may write none).
struct FirstInvocation;

impl<S: Subscriber> tracing_subscriber::Layer<S> for FirstInvocation {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if FIRST_INVOCATION.get().is_none() && attrs.metadata().name() == "Lambda runtime invoke" {
            let mut fields = Map::new();
            attrs.record(&mut FieldVisitor(&mut fields));
            if let Some(Value::String(id)) = fields.remove("requestId") {
                let _ = FIRST_INVOCATION.set(id);
            }
        }
    }
}

/// The event formatter (see the module doc for the keys).
struct LambdaJson {
    service: String,
}

impl<S, N> FormatEvent<S, N> for LambdaJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut line = Map::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        line.insert("timestamp".into(), Value::String(now));
        line.insert("level".into(), Value::String(event.metadata().level().as_str().to_string()));
        line.insert("service".into(), Value::String(self.service.clone()));
        // Outermost span first, so an inner span's field wins.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<N>>() else { continue };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields.as_str()) {
                    for (name, value) in fields {
                        if let Some(name) = top_level_name(&name) {
                            line.insert(name.to_string(), value);
                        }
                    }
                }
            }
        }
        if let Some(Value::String(id)) = line.get("function_request_id") {
            let cold = FIRST_INVOCATION.get().is_some_and(|first| first == id);
            line.insert("cold_start".into(), Value::Bool(cold));
        }
        event.record(&mut FieldVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Writes an event's fields into the line (`message` included).
struct FieldVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
}

/// What the worker measures, as CloudWatch metrics in the `NodeAI` namespace (embedded metric
/// format: JSON lines on stdout that CloudWatch turns into metrics, no API calls). Every metric
/// has the `Stage` dimension; labels are low-cardinality on purpose (each combination is a
/// billed custom metric), so tenant ids stay in the logs, not here.
pub mod metric {
    /// Count, by `status`: executions that ended (succeeded, failed, cancelled, timed_out).
    pub const EXECUTIONS_FINISHED: &str = "ExecutionsFinished";
    /// Milliseconds from start request to end, queueing and continuations included: one value
    /// per finished execution (a batch holds at most BatchSize = 5 in template.yaml, well under
    /// EMF's 100 values per document).
    pub const EXECUTION_LATENCY: &str = "ExecutionLatency";
    /// Count, by `node_type` and `status` (succeeded, failed): node runs, retries included once.
    pub const NODE_RUNS: &str = "NodeRuns";
    /// Milliseconds summed over node runs (all attempts), by `node_type`: the mean is
    /// NodeTime / NodeRuns. A sum, not a value per run: one execution may run 200 nodes, and EMF
    /// takes at most 100 values of a metric per document.
    pub const NODE_TIME: &str = "NodeTime";
    /// Tokens billed by model providers, failed attempts included.
    pub const LLM_INPUT_TOKENS: &str = "LlmInputTokens";
    pub const LLM_OUTPUT_TOKENS: &str = "LlmOutputTokens";
    /// Millionths of a dollar of priced model calls (a sum, for the same reason).
    pub const LLM_COST_MICRO_USD: &str = "LlmCostMicroUsd";
    /// Count, by `tier` and `percent`: budget alert thresholds crossed (once per tenant, threshold
    /// and month; the log line beside it names the tenant).
    pub const BUDGET_ALERTS: &str = "BudgetAlerts";
    /// Count: checkpoints near the Lambda deadline that sent a continuation message.
    pub const CONTINUATIONS: &str = "Continuations";
    /// Count: deliveries that found another worker holding the lease.
    pub const LEASE_BUSY: &str = "LeaseBusy";
    /// Count: runs whose end was not written because their lease was lost meanwhile.
    pub const LEASE_LOST: &str = "LeaseLost";
    /// Count: deliveries deferred because the tenant ran its tier's limit of executions.
    pub const TENANT_LIMITED: &str = "TenantLimited";
    /// Count: runs that parked their execution on a flow.wait or flow.approval.
    pub const EXECUTIONS_PARKED: &str = "ExecutionsParked";
    /// Count: wake-up timers that could not be set (the sweeper's backstop moves the execution on).
    pub const WAKE_UP_FAILURES: &str = "WakeUpFailures";
    /// Count, by `action` (requeued, failed): stranded executions the sweeper found. The
    /// template's StrandedExecutionsAlarm watches it.
    pub const STRANDED_EXECUTIONS: &str = "StrandedExecutions";
    /// Count: execution event batches that could not be written (watchers miss them; the run
    /// itself is unaffected).
    pub const EVENTS_DROPPED: &str = "EventsDropped";
    /// Count: circuits that opened for a tenant and host.
    pub const CIRCUITS_OPENED: &str = "CircuitsOpened";
}

static METRICS: std::sync::OnceLock<Option<&'static metrics_cloudwatch_embedded::Collector>> =
    std::sync::OnceLock::new();

/// Installs the EMF recorder once per process (later calls do nothing). Without it the
/// `metrics` macros cost nothing and emit nothing.
pub fn init_metrics(stage: &str) {
    METRICS.get_or_init(|| {
        let collector = metrics_cloudwatch_embedded::Builder::new()
            .cloudwatch_namespace("NodeAI")
            .with_dimension("Stage", stage.to_string())
            .init()
            .ok()?;
        use metrics::Unit;
        metrics::describe_histogram!(metric::EXECUTION_LATENCY, Unit::Milliseconds, "start request to end");
        metrics::describe_counter!(metric::NODE_TIME, Unit::Milliseconds, "node run time, summed");
        for count in [
            metric::EXECUTIONS_FINISHED,
            metric::NODE_RUNS,
            metric::LLM_INPUT_TOKENS,
            metric::LLM_OUTPUT_TOKENS,
            metric::CONTINUATIONS,
            metric::LEASE_BUSY,
            metric::LEASE_LOST,
            metric::TENANT_LIMITED,
            metric::EXECUTIONS_PARKED,
            metric::WAKE_UP_FAILURES,
            metric::EVENTS_DROPPED,
            metric::STRANDED_EXECUTIONS,
            metric::CIRCUITS_OPENED,
        ] {
            metrics::describe_counter!(count, Unit::Count, "");
        }
        Some(collector)
    });
}

/// Writes what was measured since the last flush as EMF lines (the worker flushes after each
/// batch, before Lambda may freeze the instance).
pub fn flush_metrics(writer: impl std::io::Write) {
    if let Some(Some(collector)) = METRICS.get()
        && let Err(e) = collector.flush(writer)
    {
        tracing::warn!(error = %e, "metrics could not be written");
    }
}
