//! The one place that reads configuration. Read once per cold start; a missing or malformed
//! variable stops the function with one line naming it.

use std::fmt;
use std::time::Duration;

#[derive(Clone)]
pub struct Config {
    /// DynamoDB table holding every entity (single-table design).
    pub table_name: String,
    /// Deployment stage shown by `GET /health` (e.g. `local`, `prod`).
    pub stage: String,
    /// HMAC key that signs list cursors so clients cannot forge or alter them.
    pub cursor_signing_key: Vec<u8>,
    /// tracing filter directive, e.g. `info` or `nodeai=debug`.
    pub log_level: String,
    /// How long a warm instance trusts a key lookup: the most a revoked key keeps working.
    pub key_cache_ttl: Duration,
    /// How long a rotated key keeps working after `POST /v1/api-keys/{key_id}/rotate`.
    pub key_rotation_grace: Duration,
    /// How long one events stream stays open before it ends and the client reconnects
    /// (API Gateway ends a streamed response at 15 minutes).
    pub events_stream_max: Duration,
    /// Browser origins allowed by CORS (exact matches); empty means no CORS headers at all.
    pub cors_allowed_origins: Vec<String>,
    /// The SQS queue executions go through (start-execution and the worker need it).
    pub execution_queue_url: Option<String>,
    /// The S3 bucket large values go to (start-execution, get-execution-value and the worker).
    pub values_bucket: Option<String>,
    /// Hosts http.request may reach although they resolve to private addresses.
    pub http_allowed_private_hosts: Vec<String>,
    /// How long the worker trusts a provider credential it read from Secrets Manager.
    pub credential_cache_ttl: Duration,
    /// Consecutive provider failures (per tenant and host) that open a circuit.
    pub circuit_breaker_threshold: u32,
    /// How long an open circuit fails fast before one trial call.
    pub circuit_breaker_cool_down: Duration,
    /// How long an execution's records (input, output, steps) are kept before DynamoDB's TTL
    /// deletes them.
    pub execution_retention: Duration,
    /// Model prices added to (or overriding) the built-in table: (name prefix, input $/M,
    /// output $/M).
    pub model_prices: Vec<crate::nodes::prices::ModelPrice>,
    /// How many executions of one tenant run at once, by tier.
    pub running_limits: RunningLimits,
    /// The worker's invocation budget when the runtime's deadline is unusable: cargo-lambda's
    /// local runtime sends a fixed `Lambda-Runtime-Deadline-Ms` of 600000 (1970). In AWS the
    /// deadline is always real and this is not used.
    pub worker_timeout: Duration,
    /// The API's public base URL (`https://api.example.com/prod`), for the callback URLs
    /// approvals announce and GET shows; None: they are relative paths (`/v1/callbacks/...`).
    pub public_api_url: Option<String>,
    /// Where the worker puts wake-ups further away than `wait_sqs_max_delay` (EventBridge
    /// Scheduler); None: an SQS delay of at most 15 minutes, then the sweeper's backstop.
    pub wait_scheduler: Option<WaitSchedulerConfig>,
    /// Where schedule triggers' recurring schedules go (the trigger routes, delete-workflow);
    /// their functions stop at cold start without it.
    pub trigger_scheduler: Option<WaitSchedulerConfig>,
    /// Wake-ups up to this far away go through an SQS delay (at most 900 s).
    pub wait_sqs_max_delay: Duration,
    /// The whole time an assistant turn may take, its model calls included (at most 25 s:
    /// inside API Gateway's 29 s integration limit).
    pub assistant_turn_timeout: Duration,
}

/// EventBridge Scheduler's settings for long waits: the schedule group, the role Scheduler
/// sends to the queue with, and the queue's ARN (the schedules' target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitSchedulerConfig {
    pub group: String,
    pub role_arn: String,
    pub queue_arn: String,
}

/// How many executions of one tenant may run at once, by the tenant's tier (free, pro,
/// enterprise; an unknown tier gets the free limit). An execution over its tenant's limit stays
/// `queued` and is delivered again later, never failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningLimits {
    pub free: u32,
    pub pro: u32,
    pub enterprise: u32,
    /// How long a deferred delivery waits before it comes back, at least; up to twice this
    /// with jitter, so a tenant's waiting executions do not all come back at once.
    pub wait: Duration,
}

impl Default for RunningLimits {
    fn default() -> Self {
        RunningLimits::DEFAULT
    }
}

impl RunningLimits {
    pub const DEFAULT: RunningLimits =
        RunningLimits { free: 5, pro: 50, enterprise: 500, wait: Duration::from_secs(20) };

    pub fn for_tier(&self, tier: &str) -> u32 {
        match tier {
            "enterprise" => self.enterprise,
            "pro" => self.pro,
            _ => self.free,
        }
    }

    /// `free=5,pro=50,enterprise=500`: every tier named once, each limit 1 to 10,000.
    pub fn parse(raw: &str) -> Result<RunningLimits, String> {
        let shape = "must be like free=5,pro=50,enterprise=500 (each tier once, limits 1 to 10000)";
        let mut limits: [Option<u32>; 3] = [None; 3];
        for part in raw.split(',') {
            let (tier, limit) = part.trim().split_once('=').ok_or(shape)?;
            let limit = limit.trim().parse::<u32>().ok().filter(|n| (1..=10_000).contains(n)).ok_or(shape)?;
            let slot = match tier.trim() {
                "free" => &mut limits[0],
                "pro" => &mut limits[1],
                "enterprise" => &mut limits[2],
                _ => return Err(shape.into()),
            };
            if slot.replace(limit).is_some() {
                return Err(shape.into());
            }
        }
        match limits {
            [Some(free), Some(pro), Some(enterprise)] => {
                Ok(RunningLimits { free, pro, enterprise, ..RunningLimits::DEFAULT })
            }
            _ => Err(shape.into()),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("table_name", &self.table_name)
            .field("stage", &self.stage)
            .field("cursor_signing_key", &"<redacted>")
            .field("log_level", &self.log_level)
            .field("key_cache_ttl", &self.key_cache_ttl)
            .field("key_rotation_grace", &self.key_rotation_grace)
            .field("events_stream_max", &self.events_stream_max)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("execution_queue_url", &self.execution_queue_url)
            .field("http_allowed_private_hosts", &self.http_allowed_private_hosts)
            .field("credential_cache_ttl", &self.credential_cache_ttl)
            .field("circuit_breaker_threshold", &self.circuit_breaker_threshold)
            .field("circuit_breaker_cool_down", &self.circuit_breaker_cool_down)
            .field("execution_retention", &self.execution_retention)
            .field("model_prices", &self.model_prices)
            .field("running_limits", &self.running_limits)
            .field("worker_timeout", &self.worker_timeout)
            .field("public_api_url", &self.public_api_url)
            .field("wait_scheduler", &self.wait_scheduler)
            .field("trigger_scheduler", &self.trigger_scheduler)
            .field("wait_sqs_max_delay", &self.wait_sqs_max_delay)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// Every variable the functions read, with its meaning, for the README.
pub const VARIABLES: &[(&str, &str)] = &[
    ("TABLE_NAME", "required; the DynamoDB table (3-255 chars of [A-Za-z0-9_.-])"),
    ("CURSOR_SIGNING_KEY", "required; at least 32 characters; signs list cursors"),
    ("STAGE", "optional, default `local`; shown by GET /health"),
    (
        "AWS_LAMBDA_LOG_LEVEL",
        "set by Lambda from the template's `LoggingConfig.ApplicationLogLevel` (TRACE to FATAL); wins over `LOG_LEVEL`",
    ),
    (
        "LOG_LEVEL",
        "optional, default `info`; a tracing filter such as `debug` or `nodeai=debug` (local stack; ignored when `AWS_LAMBDA_LOG_LEVEL` is set)",
    ),
    (
        "KEY_CACHE_TTL_SECONDS",
        "optional, default 30, at most 60; how long a warm function trusts a key lookup (a revoked key stops within this)",
    ),
    ("KEY_ROTATION_GRACE_SECONDS", "optional, default 3600; how long a rotated key keeps working"),
    (
        "EVENTS_STREAM_MAX_SECONDS",
        "optional, default 840, at most 900; how long one `GET /v1/executions/{id}/events` stream stays open before it ends cleanly and the client reconnects with `Last-Event-ID`",
    ),
    (
        "ASSISTANT_TURN_TIMEOUT_MS",
        "optional, default 25000, 100 to 25000; the whole time one assistant message may take, its model calls and repair rounds included (504 `ASSISTANT_TIMEOUT` past it)",
    ),
    (
        "CORS_ALLOWED_ORIGINS",
        "optional; comma-separated exact origins (https://app.example.com) allowed by CORS; empty: no CORS",
    ),
    ("EXECUTION_QUEUE_URL", "required by start-execution and the worker; the SQS queue executions go through"),
    (
        "VALUES_BUCKET",
        "required by start-execution, get-execution-value and the worker; the S3 bucket for values over 64 KB",
    ),
    (
        "HTTP_ALLOWED_PRIVATE_HOSTS",
        "optional; comma-separated hosts (or host:port) http.request may reach on private or loopback addresses; empty: public addresses only",
    ),
    (
        "CREDENTIAL_CACHE_TTL_SECONDS",
        "optional, default 60, at most 300; how long the worker reuses a provider credential before reading it again",
    ),
    (
        "CIRCUIT_BREAKER_THRESHOLD",
        "optional, default 5, 1 to 100; consecutive provider failures (per tenant and host) that open a circuit",
    ),
    (
        "CIRCUIT_BREAKER_COOL_DOWN_SECONDS",
        "optional, default 30, at most 3600; how long an open circuit fails fast before one trial call",
    ),
    (
        "EXECUTION_RETENTION_DAYS",
        "optional, default 30, 3 to 3650; how long an execution's records (input, output, steps) are kept before DynamoDB's TTL deletes them",
    ),
    (
        "MODEL_PRICES",
        "optional; JSON object of model name prefix to [input, output] or [input, output, cached input] dollars per million tokens, e.g. {\"llama3\": [0, 0]}; adds to and overrides the built-in price table (GET /v1/models/prices shows the result)",
    ),
    (
        "RUNNING_EXECUTION_LIMITS",
        "optional, default `free=5,pro=50,enterprise=500`; executions of one tenant running at once, by tier (each 1 to 10000); more stay queued",
    ),
    (
        "WORKER_TIMEOUT_SECONDS",
        "optional, default 300, 11 to 900; the worker's time per invocation when the runtime gives no real deadline (the local stack: cargo-lambda sends a fixed one in 1970)",
    ),
    (
        "PUBLIC_API_URL",
        "optional; the API's public base URL (https://abc.execute-api.eu-west-1.amazonaws.com/prod): approval callback URLs start with it; empty: relative paths",
    ),
    (
        "WAIT_SCHEDULE_GROUP",
        "optional (the worker); EventBridge Scheduler group for wake-ups of long waits; needs WAIT_SCHEDULE_ROLE_ARN and EXECUTION_QUEUE_ARN",
    ),
    (
        "TRIGGER_SCHEDULE_GROUP",
        "optional (the trigger routes); EventBridge Scheduler group for schedule triggers; needs WAIT_SCHEDULE_ROLE_ARN and EXECUTION_QUEUE_ARN",
    ),
    (
        "WAIT_SCHEDULE_ROLE_ARN",
        "optional (the worker, the trigger routes); the role EventBridge Scheduler sends wake-ups and schedule triggers' messages to the queue with",
    ),
    (
        "EXECUTION_QUEUE_ARN",
        "optional (the worker, the trigger routes); the execution queue's ARN, the schedules' target",
    ),
    (
        "WAIT_SQS_MAX_DELAY_SECONDS",
        "optional, default 900, 1 to 900; wake-ups up to this far away use an SQS delay, later ones a one-time schedule (the local stack's tests lower it)",
    ),
    ("AWS_ENDPOINT_URL", "optional; points the AWS SDK at an emulator (moto) locally"),
];

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Same as `from_env`, over any lookup: lets tests check the messages without touching
    /// the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let required = |variable: &'static str| {
            lookup(variable)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError { variable, problem: "is not set".into() })
        };
        let table_name = checked_table_name(required("TABLE_NAME")?)?;
        let cursor_signing_key = required("CURSOR_SIGNING_KEY")?;
        if cursor_signing_key.len() < 32 {
            return Err(ConfigError {
                variable: "CURSOR_SIGNING_KEY",
                problem: format!("must be at least 32 characters (got {})", cursor_signing_key.len()),
            });
        }
        let stage = lookup("STAGE").filter(|s| !s.is_empty()).unwrap_or_else(|| "local".into());
        if !stage.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || stage.len() > 32 {
            return Err(ConfigError { variable: "STAGE", problem: "must be up to 32 letters, digits or '-'".into() });
        }
        // Lambda's LoggingConfig (ApplicationLogLevel) sets AWS_LAMBDA_LOG_LEVEL and wins;
        // LOG_LEVEL (any tracing filter) serves the local stack.
        let (level_variable, log_level) = match lookup("AWS_LAMBDA_LOG_LEVEL").filter(|s| !s.is_empty()) {
            Some(level) => {
                let level = match level.to_ascii_lowercase().as_str() {
                    known @ ("trace" | "debug" | "info" | "warn" | "error") => known.to_string(),
                    // Lambda's FATAL has no tracing level: errors are the most severe there are.
                    "fatal" => "error".to_string(),
                    _ => {
                        return Err(ConfigError {
                            variable: "AWS_LAMBDA_LOG_LEVEL",
                            problem: format!("must be TRACE, DEBUG, INFO, WARN, ERROR or FATAL, not {level:?}"),
                        });
                    }
                };
                ("AWS_LAMBDA_LOG_LEVEL", level)
            }
            None => ("LOG_LEVEL", lookup("LOG_LEVEL").filter(|s| !s.is_empty()).unwrap_or_else(|| "info".into())),
        };
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(ConfigError {
                variable: level_variable,
                problem: format!("is not a valid filter: {log_level:?}"),
            });
        }
        let seconds = |variable: &'static str, default: u64, max: u64| -> Result<Duration, ConfigError> {
            match lookup(variable).filter(|v| !v.is_empty()) {
                None => Ok(Duration::from_secs(default)),
                Some(raw) => match raw.parse::<u64>() {
                    Ok(n) if n <= max => Ok(Duration::from_secs(n)),
                    _ => Err(ConfigError {
                        variable,
                        problem: format!("must be a whole number of seconds from 0 to {max}"),
                    }),
                },
            }
        };
        let key_cache_ttl = seconds("KEY_CACHE_TTL_SECONDS", 30, 60)?;
        let key_rotation_grace = seconds("KEY_ROTATION_GRACE_SECONDS", 3600, 30 * 24 * 3600)?;
        let events_stream_max = seconds("EVENTS_STREAM_MAX_SECONDS", 840, 900)?;
        let cors_allowed_origins: Vec<String> = lookup("CORS_ALLOWED_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        for origin in &cors_allowed_origins {
            let scheme_ok = origin.starts_with("https://") || origin.starts_with("http://");
            let host = origin.split_once("://").map(|(_, h)| h).unwrap_or("");
            if !scheme_ok || host.is_empty() || host.contains('/') || origin.contains('*') {
                return Err(ConfigError {
                    variable: "CORS_ALLOWED_ORIGINS",
                    problem: format!("{origin:?} is not an exact origin like https://app.example.com (no wildcards)"),
                });
            }
        }
        let execution_queue_url = lookup("EXECUTION_QUEUE_URL").filter(|v| !v.trim().is_empty());
        if let Some(url) = &execution_queue_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError { variable: "EXECUTION_QUEUE_URL", problem: "must be an SQS queue URL".into() });
        }
        let values_bucket = lookup("VALUES_BUCKET").filter(|v| !v.trim().is_empty());
        if let Some(bucket) = &values_bucket
            && !((3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'))
        {
            return Err(ConfigError {
                variable: "VALUES_BUCKET",
                problem: "must be an S3 bucket name (3-63 chars of [a-z0-9.-])".into(),
            });
        }
        let http_allowed_private_hosts: Vec<String> = lookup("HTTP_ALLOWED_PRIVATE_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        if let Some(bad) = http_allowed_private_hosts.iter().find(|h| h.contains('/') || h.contains('*')) {
            return Err(ConfigError {
                variable: "HTTP_ALLOWED_PRIVATE_HOSTS",
                problem: format!("{bad:?} must be a host or host:port, without scheme or wildcard"),
            });
        }
        let credential_cache_ttl = seconds("CREDENTIAL_CACHE_TTL_SECONDS", 60, 300)?;
        let worker_timeout = seconds("WORKER_TIMEOUT_SECONDS", 300, 900)?;
        if worker_timeout <= crate::worker::CHECKPOINT_MARGIN {
            // No wave could start: every invocation would checkpoint at once.
            return Err(ConfigError {
                variable: "WORKER_TIMEOUT_SECONDS",
                problem: "must be more than the checkpoint margin of 10 seconds (11 to 900)".into(),
            });
        }
        let circuit_breaker_threshold = match lookup("CIRCUIT_BREAKER_THRESHOLD").filter(|v| !v.is_empty()) {
            None => crate::nodes::breaker::DEFAULT_THRESHOLD,
            Some(raw) => raw.parse::<u32>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| ConfigError {
                variable: "CIRCUIT_BREAKER_THRESHOLD",
                problem: "must be a whole number from 1 to 100".into(),
            })?,
        };
        let circuit_breaker_cool_down =
            seconds("CIRCUIT_BREAKER_COOL_DOWN_SECONDS", crate::nodes::breaker::DEFAULT_COOL_DOWN.as_secs(), 3600)?;
        let execution_retention = match lookup("EXECUTION_RETENTION_DAYS").filter(|v| !v.is_empty()) {
            None => crate::model::DEFAULT_EXECUTION_RETENTION,
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|days| (3..=3650).contains(days))
                .map(|days| Duration::from_secs(days * 24 * 3600))
                .ok_or_else(|| ConfigError {
                    variable: "EXECUTION_RETENTION_DAYS",
                    // At least 3: a redrive needs a day of records left after its new deadline
                    // (REDRIVE_MARGIN), counted from the first deadline.
                    problem: "must be a whole number of days from 3 to 3650".into(),
                })?,
        };
        let model_prices = match lookup("MODEL_PRICES").filter(|v| !v.trim().is_empty()) {
            None => Vec::new(),
            Some(raw) => {
                parse_model_prices(&raw).map_err(|problem| ConfigError { variable: "MODEL_PRICES", problem })?
            }
        };
        let running_limits = match lookup("RUNNING_EXECUTION_LIMITS").filter(|v| !v.trim().is_empty()) {
            None => RunningLimits::default(),
            Some(raw) => RunningLimits::parse(&raw)
                .map_err(|problem| ConfigError { variable: "RUNNING_EXECUTION_LIMITS", problem })?,
        };
        let public_api_url = lookup("PUBLIC_API_URL").map(|v| v.trim().trim_end_matches('/').to_string());
        let public_api_url = public_api_url.filter(|v| !v.is_empty());
        if let Some(url) = &public_api_url
            && !((url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 512 && !url.contains(' '))
        {
            return Err(ConfigError {
                variable: "PUBLIC_API_URL",
                problem: "must be an http(s) URL such as https://api.example.com/prod".into(),
            });
        }
        // Scheduler's target (the role it sends with, and the queue) serves both schedule
        // groups: a group needs both; the two go together.
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let target = match (get("WAIT_SCHEDULE_ROLE_ARN"), get("EXECUTION_QUEUE_ARN")) {
            (None, None) => None,
            (Some(role_arn), Some(queue_arn)) => {
                for (variable, arn) in [("WAIT_SCHEDULE_ROLE_ARN", &role_arn), ("EXECUTION_QUEUE_ARN", &queue_arn)] {
                    if !arn.starts_with("arn:") {
                        return Err(ConfigError { variable, problem: "must be an ARN (arn:aws:...)".into() });
                    }
                }
                Some((role_arn, queue_arn))
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    variable: "WAIT_SCHEDULE_ROLE_ARN",
                    problem: "is missing: WAIT_SCHEDULE_ROLE_ARN and EXECUTION_QUEUE_ARN go together".into(),
                });
            }
            (Some(_), None) => {
                return Err(ConfigError {
                    variable: "EXECUTION_QUEUE_ARN",
                    problem: "is missing: WAIT_SCHEDULE_ROLE_ARN and EXECUTION_QUEUE_ARN go together".into(),
                });
            }
        };
        let group_with_target = |variable: &'static str| -> Result<Option<WaitSchedulerConfig>, ConfigError> {
            let Some(group) = get(variable) else { return Ok(None) };
            match &target {
                Some((role_arn, queue_arn)) => {
                    Ok(Some(WaitSchedulerConfig { group, role_arn: role_arn.clone(), queue_arn: queue_arn.clone() }))
                }
                None => Err(ConfigError {
                    variable: "WAIT_SCHEDULE_ROLE_ARN",
                    problem: format!("is missing: {variable} needs WAIT_SCHEDULE_ROLE_ARN and EXECUTION_QUEUE_ARN"),
                }),
            }
        };
        let wait_scheduler = group_with_target("WAIT_SCHEDULE_GROUP")?;
        let trigger_scheduler = group_with_target("TRIGGER_SCHEDULE_GROUP")?;
        let wait_sqs_max_delay = seconds("WAIT_SQS_MAX_DELAY_SECONDS", 900, 900)?;
        if wait_sqs_max_delay.is_zero() {
            return Err(ConfigError {
                variable: "WAIT_SQS_MAX_DELAY_SECONDS",
                problem: "must be a whole number of seconds from 1 to 900".into(),
            });
        }
        let assistant_turn_timeout = match lookup("ASSISTANT_TURN_TIMEOUT_MS").filter(|v| !v.is_empty()) {
            None => Duration::from_millis(crate::assistant::MAX_TURN_MS),
            Some(raw) => raw
                .parse::<u64>()
                .ok()
                .filter(|ms| (100..=crate::assistant::MAX_TURN_MS).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| ConfigError {
                    variable: "ASSISTANT_TURN_TIMEOUT_MS",
                    problem: format!(
                        "must be a whole number of milliseconds from 100 to {}",
                        crate::assistant::MAX_TURN_MS
                    ),
                })?,
        };
        Ok(Config {
            assistant_turn_timeout,
            public_api_url,
            wait_scheduler,
            trigger_scheduler,
            wait_sqs_max_delay,
            worker_timeout,
            running_limits,
            model_prices,
            execution_retention,
            credential_cache_ttl,
            circuit_breaker_threshold,
            circuit_breaker_cool_down,
            http_allowed_private_hosts,
            execution_queue_url,
            values_bucket,
            table_name,
            stage,
            cursor_signing_key: cursor_signing_key.into_bytes(),
            log_level,
            key_cache_ttl,
            key_rotation_grace,
            events_stream_max,
            cors_allowed_origins,
        })
    }
}

/// `TABLE_NAME` alone, for the admin tool (which signs no cursors).
pub fn table_name_from_env() -> Result<String, ConfigError> {
    let name = std::env::var("TABLE_NAME").ok().filter(|v| !v.trim().is_empty());
    checked_table_name(name.ok_or_else(|| ConfigError { variable: "TABLE_NAME", problem: "is not set".into() })?)
}

/// `USAGE_PLAN_PREFIX` for the admin tool: usage plans are `<prefix>-free|pro|enterprise`
/// (the stack's UsagePlanPrefix output). Defaults to `nodeai-<STAGE or local>`.
pub fn usage_plan_prefix_from_env() -> Result<String, ConfigError> {
    let prefix = std::env::var("USAGE_PLAN_PREFIX").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        format!("nodeai-{}", std::env::var("STAGE").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| "local".into()))
    });
    if prefix.len() <= 100 && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        Ok(prefix)
    } else {
        Err(ConfigError {
            variable: "USAGE_PLAN_PREFIX",
            problem: "must be up to 100 letters, digits, '-' or '_'".into(),
        })
    }
}

fn checked_table_name(table_name: String) -> Result<String, ConfigError> {
    let ok = (3..=255).contains(&table_name.len())
        && table_name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(table_name)
    } else {
        Err(ConfigError {
            variable: "TABLE_NAME",
            problem: "must be 3-255 characters of letters, digits, '_', '.' or '-'".into(),
        })
    }
}

/// `{"llama3": [0, 0], "my-finetune": [0.3, 1.2]}`: name prefix to [input, output] dollars per
/// million tokens, each a number from 0 to 1,000.
use crate::nodes::prices::configured_price;

fn parse_model_prices(raw: &str) -> Result<Vec<crate::nodes::prices::ModelPrice>, String> {
    let shape = "must be a JSON object like {\"llama3\": [0, 0]}: model name prefix to [input, output] or [input, output, cached input] dollars per million tokens";
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(raw).map_err(|_| shape.to_string())?;
    if object.len() > 200 {
        return Err("may list at most 200 models".into());
    }
    let price = |v: &serde_json::Value| v.as_f64().filter(|p| (0.0..=1000.0).contains(p));
    object
        .iter()
        .map(|(model, prices)| match prices.as_array().map(Vec::as_slice) {
            Some(listed @ ([_, _] | [_, _, _])) if !model.is_empty() && model.len() <= 200 => {
                let read: Option<Vec<f64>> = listed.iter().map(price).collect();
                match read.as_deref() {
                    Some([input, output]) => Ok(configured_price(model, *input, *output, None)),
                    Some([input, output, cached]) => Ok(configured_price(model, *input, *output, Some(*cached))),
                    _ => Err(format!("{model:?}: prices must be numbers from 0 to 1000 (dollars per million tokens)")),
                }
            }
            _ => Err(format!("{model:?}: {shape}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn missing_table_is_named() {
        let err = Config::from_lookup(lookup(&[("CURSOR_SIGNING_KEY", KEY)])).unwrap_err();
        assert_eq!(err.variable, "TABLE_NAME");
        assert_eq!(err.to_string(), "configuration error: TABLE_NAME is not set");
    }

    #[test]
    fn short_signing_key_is_rejected() {
        let err =
            Config::from_lookup(lookup(&[("TABLE_NAME", "nodeai"), ("CURSOR_SIGNING_KEY", "short")])).unwrap_err();
        assert_eq!(err.variable, "CURSOR_SIGNING_KEY");
    }

    #[test]
    fn bad_table_name_and_log_level_are_rejected() {
        let err = Config::from_lookup(lookup(&[("TABLE_NAME", "no spaces"), ("CURSOR_SIGNING_KEY", KEY)])).unwrap_err();
        assert_eq!(err.variable, "TABLE_NAME");
        let err =
            Config::from_lookup(lookup(&[("TABLE_NAME", "nodeai"), ("CURSOR_SIGNING_KEY", KEY), ("LOG_LEVEL", "[[[")]))
                .unwrap_err();
        assert_eq!(err.variable, "LOG_LEVEL");
    }

    #[test]
    fn lambda_log_level_wins_over_log_level() {
        let base = [("TABLE_NAME", "nodeai"), ("CURSOR_SIGNING_KEY", KEY), ("LOG_LEVEL", "debug")];
        let with = |level: &'static str| {
            let mut vars = base.to_vec();
            vars.push(("AWS_LAMBDA_LOG_LEVEL", level));
            Config::from_lookup(lookup(&vars))
        };
        assert_eq!(Config::from_lookup(lookup(&base)).unwrap().log_level, "debug");
        assert_eq!(with("WARN").unwrap().log_level, "warn");
        assert_eq!(with("FATAL").unwrap().log_level, "error", "FATAL has no tracing level");
        assert_eq!(with("LOUD").unwrap_err().variable, "AWS_LAMBDA_LOG_LEVEL");
    }

    #[test]
    fn durations_and_origins_are_checked() {
        let base = [("TABLE_NAME", "nodeai"), ("CURSOR_SIGNING_KEY", KEY)];
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = base.to_vec();
            pairs.push(extra);
            Config::from_lookup(lookup(&pairs))
        };
        assert_eq!(with(("KEY_CACHE_TTL_SECONDS", "61")).unwrap_err().variable, "KEY_CACHE_TTL_SECONDS");
        assert_eq!(with(("KEY_CACHE_TTL_SECONDS", "ten")).unwrap_err().variable, "KEY_CACHE_TTL_SECONDS");
        assert_eq!(with(("KEY_CACHE_TTL_SECONDS", "5")).unwrap().key_cache_ttl, Duration::from_secs(5));
        assert_eq!(with(("KEY_ROTATION_GRACE_SECONDS", "-1")).unwrap_err().variable, "KEY_ROTATION_GRACE_SECONDS");
        assert_eq!(with(("EVENTS_STREAM_MAX_SECONDS", "901")).unwrap_err().variable, "EVENTS_STREAM_MAX_SECONDS");
        assert_eq!(with(("ASSISTANT_TURN_TIMEOUT_MS", "25001")).unwrap_err().variable, "ASSISTANT_TURN_TIMEOUT_MS");
        assert_eq!(
            with(("ASSISTANT_TURN_TIMEOUT_MS", "2000")).unwrap().assistant_turn_timeout,
            Duration::from_millis(2000)
        );
        assert_eq!(with(("CORS_ALLOWED_ORIGINS", "*")).unwrap_err().variable, "CORS_ALLOWED_ORIGINS");
        assert_eq!(
            with(("CORS_ALLOWED_ORIGINS", "https://*.example.com")).unwrap_err().variable,
            "CORS_ALLOWED_ORIGINS"
        );
        assert_eq!(with(("CORS_ALLOWED_ORIGINS", "example.com")).unwrap_err().variable, "CORS_ALLOWED_ORIGINS");
        assert_eq!(with(("CREDENTIAL_CACHE_TTL_SECONDS", "301")).unwrap_err().variable, "CREDENTIAL_CACHE_TTL_SECONDS");
        assert_eq!(with(("CIRCUIT_BREAKER_THRESHOLD", "0")).unwrap_err().variable, "CIRCUIT_BREAKER_THRESHOLD");
        assert_eq!(with(("CIRCUIT_BREAKER_THRESHOLD", "7")).unwrap().circuit_breaker_threshold, 7);
        assert_eq!(
            with(("CIRCUIT_BREAKER_COOL_DOWN_SECONDS", "3601")).unwrap_err().variable,
            "CIRCUIT_BREAKER_COOL_DOWN_SECONDS"
        );
        for bad in ["2", "3651", "a month"] {
            assert_eq!(with(("EXECUTION_RETENTION_DAYS", bad)).unwrap_err().variable, "EXECUTION_RETENTION_DAYS");
        }
        let days = |n: u64| Duration::from_secs(n * 24 * 3600);
        assert_eq!(with(("EXECUTION_RETENTION_DAYS", "90")).unwrap().execution_retention, days(90));
        for bad in [
            "not json",
            "[1, 2]",
            r#"{"llama3": 0}"#,
            r#"{"llama3": [0]}"#,
            r#"{"llama3": [-1, 0]}"#,
            r#"{"llama3": [1, 2, 3, 4]}"#,
            r#"{"llama3": [1, 2, "x"]}"#,
            r#"{"": [0, 0]}"#,
        ] {
            let err = with(("MODEL_PRICES", bad)).unwrap_err();
            assert_eq!(err.variable, "MODEL_PRICES", "{bad}");
        }
        for bad in ["free=5", "free=5,pro=50,enterprise=0", "free=5,pro=50,pro=5,enterprise=9", "gold=1", "x"] {
            let err = with(("RUNNING_EXECUTION_LIMITS", bad)).unwrap_err();
            assert_eq!(err.variable, "RUNNING_EXECUTION_LIMITS", "{bad}");
        }
        for bad in ["10", "5", "901", "x"] {
            assert_eq!(with(("WORKER_TIMEOUT_SECONDS", bad)).unwrap_err().variable, "WORKER_TIMEOUT_SECONDS", "{bad}");
        }
        assert_eq!(with(("WORKER_TIMEOUT_SECONDS", "20")).unwrap().worker_timeout, Duration::from_secs(20));
        let limits = with(("RUNNING_EXECUTION_LIMITS", "free=2, pro=20, enterprise=2000")).unwrap().running_limits;
        assert_eq!((limits.for_tier("free"), limits.for_tier("pro"), limits.for_tier("enterprise")), (2, 20, 2000));
        assert_eq!(limits.for_tier("unknown"), 2, "an unknown tier gets the free limit");
        let configured = with(("MODEL_PRICES", r#"{"llama3": [0, 0], "ft:gpt-4o-mini": [0.3, 1.2, 0.15]}"#)).unwrap();
        let mut prices = configured.model_prices;
        prices.sort_by(|a, b| a.model.cmp(&b.model));
        assert_eq!(
            prices,
            vec![configured_price("ft:gpt-4o-mini", 0.3, 1.2, Some(0.15)), configured_price("llama3", 0.0, 0.0, None)]
        );
        let config = with(("CORS_ALLOWED_ORIGINS", "https://a.example.com, http://localhost:3000/")).unwrap();
        assert_eq!(config.cors_allowed_origins, vec!["https://a.example.com", "http://localhost:3000"]);
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_lookup(lookup(&[("TABLE_NAME", "nodeai"), ("CURSOR_SIGNING_KEY", KEY)])).unwrap();
        assert_eq!(config.stage, "local");
        assert_eq!(config.log_level, "info");
        assert_eq!(config.key_cache_ttl, Duration::from_secs(30));
        assert_eq!(config.key_rotation_grace, Duration::from_secs(3600));
        assert_eq!(config.events_stream_max, Duration::from_secs(840));
        assert!(config.cors_allowed_origins.is_empty());
        assert_eq!(config.credential_cache_ttl, Duration::from_secs(60));
        assert_eq!((config.circuit_breaker_threshold, config.circuit_breaker_cool_down), (5, Duration::from_secs(30)));
        assert_eq!(config.execution_retention, Duration::from_secs(30 * 24 * 3600));
        assert!(config.model_prices.is_empty());
        assert!(!format!("{config:?}").contains(KEY), "Debug must not print the signing key");
    }
}
