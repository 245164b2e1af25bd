//! The one tracing setup: JSON lines on stdout, which CloudWatch Logs (JSON log format) indexes.
//! Correlation fields (request_id, tenant_id, execution_id, node_id) are span fields, so every
//! event inside a request's span carries them.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber on stdout once. Safe to call again (later calls do nothing),
/// which lets tests and binaries share it.
pub fn init(log_level: &str) {
    init_with_writer(log_level, std::io::stdout);
}

/// The same subscriber writing elsewhere (tests read the lines back).
pub fn init_with_writer<W>(log_level: &str, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_writer(writer)
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(false)
        // CloudWatch adds its own timestamp, but local logs and tests want one too.
        .with_ansi(false)
        .try_init();
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
    /// Count: checkpoints near the Lambda deadline that sent a continuation message.
    pub const CONTINUATIONS: &str = "Continuations";
    /// Count: deliveries that found another worker holding the lease.
    pub const LEASE_BUSY: &str = "LeaseBusy";
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
