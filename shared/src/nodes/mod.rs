//! The node-type registry. Adding a node type = one module here and one line in `NODE_KINDS`.

use crate::engine::{NodeCall, NodeFailure, NodeOutput, NodeRuntime};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

mod data_json;
mod flow_output;
mod http_request;
mod llm_chat;
mod logic_condition;
pub mod prices;
mod text_template;

/// A kind of node: its name, what it does, the JSON Schema its `config` must match, and how it
/// runs.
#[async_trait]
pub trait NodeKind: Sync {
    fn name(&self) -> &'static str;
    fn description(&self) -> &'static str;
    fn config_schema(&self) -> Value;
    /// JSON pointers (inside `config`) of string fields holding a minijinja *expression*
    /// rather than a template. Every other string in `config` is a template.
    fn expression_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether running the node reaches outside NodeAI (a paid or non-idempotent call). Such a
    /// node's result is written on its own before anything depends on it; a pure node's result
    /// is kept in bulk at the next checkpoint or the finish, and recomputed if a crash lost it.
    fn has_side_effects(&self) -> bool {
        false
    }
    /// Whether edges leaving this node choose a branch with `"when": "true" | "false"`.
    fn is_condition(&self) -> bool {
        false
    }
    /// Runs the node once over the run's template scope and returns its output (with its
    /// rendered input and, for model calls, usage and cost).
    async fn execute(&self, call: &NodeCall<'_>, runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure>;
}

pub static NODE_KINDS: &[&dyn NodeKind] = &[
    &llm_chat::LlmChat,
    &http_request::HttpRequest,
    &text_template::TextTemplate,
    &logic_condition::LogicCondition,
    &data_json::DataJson,
    &flow_output::FlowOutput,
];

pub fn find(name: &str) -> Option<&'static dyn NodeKind> {
    NODE_KINDS.iter().copied().find(|kind| kind.name() == name)
}

/// Unknown types count as side-effecting: never assume a call is free to repeat.
pub fn has_side_effects(name: &str) -> bool {
    find(name).is_none_or(|kind| kind.has_side_effects())
}

/// Compiled config validators, built once per process.
pub fn config_validator(name: &str) -> Option<&'static jsonschema::Validator> {
    static VALIDATORS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    VALIDATORS
        .get_or_init(|| {
            NODE_KINDS
                .iter()
                .map(|kind| {
                    let validator = jsonschema::validator_for(&kind.config_schema())
                        .unwrap_or_else(|e| panic!("node type {} has an invalid config schema: {e}", kind.name()));
                    (kind.name(), validator)
                })
                .collect()
        })
        .get(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_compiles_and_names_are_unique() {
        let mut names = std::collections::HashSet::new();
        for kind in NODE_KINDS {
            assert!(names.insert(kind.name()), "duplicate node type {}", kind.name());
            assert!(config_validator(kind.name()).is_some());
            assert_eq!(kind.config_schema()["type"], "object", "{} config must be an object", kind.name());
        }
        assert_eq!(names.len(), 6);
    }
}
