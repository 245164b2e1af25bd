//! `flow.wait`: parks the execution until a point in time. No worker runs while it waits:
//! the worker records the wait, releases the execution, and a timer (an SQS delay up to 15
//! minutes, an EventBridge Scheduler one-time schedule beyond) wakes it.

use super::NodeType;
use crate::engine::NodeFailure;
use crate::model::{MAX_WAITING_EXECUTION_TIMEOUT, StepErrorCode, WaitKind};
use crate::template::{off_executor, render_value};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub struct FlowWait;

impl NodeType for FlowWait {
    fn name(&self) -> &'static str {
        "flow.wait"
    }
    fn description(&self) -> &'static str {
        "Parks the execution for `seconds` (a number or a template) or until `until` (an RFC 3339 time, templated); nothing runs while it waits. Output: {since, until}."
    }
    fn config_schema(&self) -> Value {
        let max = MAX_WAITING_EXECUTION_TIMEOUT.as_secs();
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "seconds": {
                    "oneOf": [
                        { "type": "integer", "minimum": 0, "maximum": max },
                        { "type": "string", "minLength": 1, "maxLength": 4096 }
                    ]
                },
                "until": { "type": "string", "minLength": 1, "maxLength": 4096 }
            },
            "oneOf": [ { "required": ["seconds"] }, { "required": ["until"] } ]
        })
    }
    fn has_side_effects(&self) -> bool {
        // Its step is written on its own, conditionally: a resumed run must not wait again.
        true
    }
    fn parks(&self) -> Option<WaitKind> {
        Some(WaitKind::Timer)
    }
}

/// When a wait that began at `since` ends: `since + seconds`, or `until` as rendered. Fails
/// with `WAIT_INVALID` when a template renders something else (the message says what).
pub async fn wait_until(config: &Value, scope: &Value, since: DateTime<Utc>) -> Result<DateTime<Utc>, NodeFailure> {
    let (config, scope) = (config.clone(), scope.clone());
    let config = off_executor(move || render_value(&config, &scope)).await?;
    let invalid = |message: String| NodeFailure::permanent(StepErrorCode::WaitInvalid, message);
    let max = MAX_WAITING_EXECUTION_TIMEOUT.as_secs();
    if let Some(seconds) = config.get("seconds") {
        let parsed = match seconds {
            Value::Number(n) => n.as_u64(),
            Value::String(text) => text.trim().parse::<u64>().ok(),
            _ => None,
        };
        return match parsed.filter(|s| *s <= max) {
            Some(seconds) => Ok(since + chrono::Duration::seconds(seconds as i64)),
            None => Err(invalid(format!("`seconds` must render to a whole number from 0 to {max}"))),
        };
    }
    let until = config.get("until").and_then(Value::as_str).unwrap_or_default();
    DateTime::parse_from_rfc3339(until.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| invalid(format!("`until` must render to an RFC 3339 time such as 2026-12-01T09:00:00Z ({e})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn since() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z").unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn seconds_and_until_in_every_form() {
        let scope = json!({ "input": { "delay": "90", "at": "2026-12-24T18:00:00+01:00" } });
        let at = |config: Value| {
            let scope = scope.clone();
            async move { wait_until(&config, &scope, since()).await }
        };
        assert_eq!(at(json!({ "seconds": 2 })).await.unwrap(), since() + chrono::Duration::seconds(2));
        assert_eq!(
            at(json!({ "seconds": "{{ input.delay }}" })).await.unwrap(),
            since() + chrono::Duration::seconds(90)
        );
        assert_eq!(at(json!({ "until": "{{ input.at }}" })).await.unwrap().to_rfc3339(), "2026-12-24T17:00:00+00:00");
        for bad in [json!({ "seconds": "soon" }), json!({ "seconds": "-5" }), json!({ "until": "tomorrow" })] {
            let failure = at(bad.clone()).await.unwrap_err();
            assert_eq!(failure.code, "WAIT_INVALID", "{bad}");
            assert!(!failure.retryable);
        }
        let too_long = json!({ "seconds": (MAX_WAITING_EXECUTION_TIMEOUT.as_secs() + 1).to_string() });
        assert_eq!(at(too_long).await.unwrap_err().code, "WAIT_INVALID");
    }
}
