//! Stored-size caps: what a step or an execution keeps of a value (DynamoDB items hold 400 KB).

use serde_json::{Value, json};

/// Largest execution input, bytes of JSON: 2 MiB. API Gateway hands Lambda the body as a JSON
/// string inside the event, where escaping can double it (quotes and backslashes), and a Lambda
/// request is at most 6 MB: 2 MiB always fits. (SQS carries only ids; an input over
/// `values::INLINE_VALUE_BYTES` is kept in S3, referenced from the execution item.)
pub const MAX_EXECUTION_INPUT_BYTES: usize = 2 * 1024 * 1024;

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

/// The deepest a value may nest (objects and arrays): execution inputs, node outputs and
/// rendered inputs. serde_json refuses to read past 128 levels, so a deeper value could be
/// written but never read back; 64 leaves room for a value nested inside another.
pub const MAX_VALUE_DEPTH: usize = 64;

/// The most bytes of an error message a step or an execution keeps (about 1 KB).
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// How deep a value nests (a scalar is 0, `[]` and `{}` are 1), found without recursion, so
/// a hostile value cannot overflow the stack being measured. Stops counting past `limit + 1`.
pub fn depth_over(value: &Value, limit: usize) -> bool {
    let mut pending: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if level + 1 > limit {
            return true;
        }
        pending.extend(children.map(|child| (child, level + 1)));
    }
    false
}

/// The size of `value`'s JSON in bytes, counted without building the text.
pub fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Whether `value`'s JSON is over `limit` bytes, measured without building the text (stops
/// writing at the limit).
pub fn json_size_over(value: &Value, limit: usize) -> bool {
    struct Counter {
        written: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written += buf.len();
            if self.written > self.limit {
                return Err(std::io::Error::other("over"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Counter { written: 0, limit }, value).is_err()
}

/// `message` cut to `MAX_ERROR_MESSAGE_BYTES` at a character boundary, marked with `…` when cut.
pub fn bounded_message(message: &str) -> String {
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message.to_string();
    }
    let mut end = MAX_ERROR_MESSAGE_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_measured_without_recursion() {
        assert!(!depth_over(&json!(1), 0));
        assert!(depth_over(&json!([]), 0));
        assert!(!depth_over(&json!({ "a": [1, { "b": 2 }] }), 3));
        assert!(depth_over(&json!({ "a": [1, { "b": [] }] }), 3));
        // Deeper than any stack would survive recursing over (built and dropped without recursion).
        let mut deep = Value::Null;
        for _ in 0..200_000 {
            deep = Value::Array(vec![deep]);
        }
        assert!(depth_over(&deep, MAX_VALUE_DEPTH));
        // Dismantle it level by level: serde_json's Drop would recurse.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn messages_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded_message("short"), "short");
        let long = "é".repeat(2000);
        let cut = bounded_message(&long);
        assert!(cut.len() <= MAX_ERROR_MESSAGE_BYTES && cut.ends_with('…'), "{}", cut.len());
    }
}
