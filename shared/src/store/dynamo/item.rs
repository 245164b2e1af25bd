//! Attribute helpers: building and reading DynamoDB attribute values, and the deflated
//! encoding of large JSON attributes.

use super::*;

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(StoreError::Internal(format!("item lacks string attribute {name}"))),
    }
}

pub(super) fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    get_opt_n(item, name)?.ok_or_else(|| StoreError::Internal(format!("item lacks number attribute {name}")))
}

pub(super) fn get_opt_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => {
            v.parse().map(Some).map_err(|_| StoreError::Internal(format!("attribute {name} is not a number")))
        }
        _ => Ok(None),
    }
}

pub(super) fn get_tags(item: &Item) -> Vec<String> {
    match item.get("tags") {
        Some(AttributeValue::L(values)) => values.iter().filter_map(|v| v.as_s().ok().cloned()).collect(),
        _ => Vec::new(),
    }
}

/// Large JSON written once per execution (its definition snapshot, bulk steps) is stored
/// deflated, as a binary attribute: a write is billed per KB, and step and definition JSON, full
/// of repeated keys, shrinks to a third or less.
pub(super) fn packed(text: &str) -> Result<AttributeValue, StoreError> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).map_err(|e| StoreError::Internal(format!("deflate: {e}")))?;
    let bytes = encoder.finish().map_err(|e| StoreError::Internal(format!("deflate: {e}")))?;
    Ok(AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(bytes)))
}

/// A text attribute written by `packed` (binary) or as a plain string (older items, and the
/// workflow and version items).
pub(super) fn unpacked(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    use std::io::Read;
    match item.get(name) {
        Some(AttributeValue::B(blob)) => {
            let mut text = String::new();
            flate2::read::DeflateDecoder::new(blob.as_ref())
                .read_to_string(&mut text)
                .map_err(|e| StoreError::Internal(format!("stored {name} does not inflate: {e}")))?;
            Ok(Some(text))
        }
        Some(AttributeValue::S(text)) => Ok(Some(text.clone())),
        _ => Ok(None),
    }
}

pub(super) fn definition_from(item: &Item) -> Result<WorkflowDefinition, StoreError> {
    let text = unpacked(item, "definition")?.ok_or_else(|| StoreError::Internal("definition missing".into()))?;
    serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("stored definition does not parse: {e}")))
}

pub(super) fn definition_json(definition: &WorkflowDefinition) -> Result<String, StoreError> {
    serde_json::to_string(definition).map_err(|e| StoreError::Internal(format!("definition serialization: {e}")))
}
