//! Stored-size caps: what a step or an execution keeps of a value (DynamoDB items hold 400 KB).

use serde_json::{Value, json};

/// Largest execution input, bytes of JSON (SQS carries only ids; the input is on the execution item,
/// which with a 100 KB output stays under DynamoDB's 400 KB).
pub const MAX_EXECUTION_INPUT_BYTES: usize = 256 * 1024;

/// Largest node output kept as it is; a larger one is stored as a truncated preview (DynamoDB
/// items hold at most 400 KB).
pub const MAX_STORED_OUTPUT_BYTES: usize = 256 * 1024;

/// Largest rendered node input kept as it is.
pub const MAX_STORED_INPUT_BYTES: usize = 64 * 1024;

const PREVIEW_CHARS: usize = 4096;

/// Largest execution output kept on the execution record: with an input of up to 256 KB, the
/// item stays under DynamoDB's 400 KB. The full output stays in the flow.output step.
pub const MAX_EXECUTION_OUTPUT_BYTES: usize = 100 * 1024;

/// A value over `limit` bytes of JSON becomes `{truncated: true, size_bytes, preview}`: node
/// outputs over `MAX_STORED_OUTPUT_BYTES`, rendered inputs over `MAX_STORED_INPUT_BYTES` (kept for
/// reading, not for resuming), so one step stays well inside a DynamoDB item.
pub fn bounded(value: Value, limit: usize) -> Value {
    let text = value.to_string();
    if text.len() <= limit {
        return value;
    }
    json!({ "truncated": true, "size_bytes": text.len(), "preview": text.chars().take(PREVIEW_CHARS).collect::<String>() })
}

pub fn bounded_execution_output(output: serde_json::Value) -> serde_json::Value {
    bounded(output, MAX_EXECUTION_OUTPUT_BYTES)
}
