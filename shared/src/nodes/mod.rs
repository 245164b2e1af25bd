//! The node-type registry. Adding a node type = one module here, one line in `NODE_TYPES` (its
//! catalogue entry: schema and validation hooks) and one in `runner` (its executor). The two are
//! apart so that API functions, which validate definitions, never link an executor or the HTTP
//! client: only the worker reaches `runner`.

use crate::engine::{NodeCall, NodeFailure, NodeOutput};
use async_trait::async_trait;
pub use runtime::{NodeRuntime, RegistryExecutor};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

pub mod breaker;
mod data_json;
pub mod flow_approval;
mod flow_children;
mod flow_output;
pub mod flow_wait;
pub mod http_guard;
mod http_request;
pub(crate) mod llm_chat;
mod logic_condition;
pub mod outbound;
pub mod prices;
mod runtime;
pub mod sse;
mod text_template;

/// A template that failed to render fails its node, permanently: the same template over the same
/// scope would fail again.
impl From<crate::template::TemplateError> for NodeFailure {
    fn from(error: crate::template::TemplateError) -> Self {
        NodeFailure::permanent(error.code, error.message)
    }
}

/// A node type's catalogue entry: its name, what it does, the JSON Schema its `config` must
/// match, and what validation and the engine need to know about it.
pub trait NodeType: Sync {
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
    /// What the node waits for when it parks the execution (None: it runs like any other).
    /// Parking nodes have no `NodeRun`: the engine handles them (`engine::parking`).
    fn parks(&self) -> Option<crate::model::WaitKind> {
        None
    }
    /// JSON pointers (inside `config`) of values that are data, never templates.
    fn literal_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// Names its templates see beyond `input`, `nodes` and `execution`.
    fn extra_template_roots(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A node type's executor.
#[async_trait]
pub trait NodeRun: Sync {
    /// Runs the node once over the run's template scope and returns its output (with its
    /// rendered input and, for model calls, usage and cost).
    async fn execute(&self, call: &NodeCall<'_>, runtime: &NodeRuntime) -> Result<NodeOutput, NodeFailure>;
}

/// The executor of a node type (None for an unknown type). Only the worker calls this.
pub fn runner(name: &str) -> Option<&'static dyn NodeRun> {
    Some(match name {
        "llm.chat" => &llm_chat::LlmChat,
        "http.request" => &http_request::HttpRequest,
        "text.template" => &text_template::TextTemplate,
        "logic.condition" => &logic_condition::LogicCondition,
        "data.json" => &data_json::DataJson,
        "flow.output" => &flow_output::FlowOutput,
        _ => return None,
    })
}

pub static NODE_TYPES: &[&dyn NodeType] = &[
    &llm_chat::LlmChat,
    &http_request::HttpRequest,
    &text_template::TextTemplate,
    &logic_condition::LogicCondition,
    &data_json::DataJson,
    &flow_output::FlowOutput,
    &flow_wait::FlowWait,
    &flow_approval::FlowApproval,
    &flow_children::FlowSubworkflow,
    &flow_children::FlowMap,
];

pub fn find(name: &str) -> Option<&'static dyn NodeType> {
    NODE_TYPES.iter().copied().find(|kind| kind.name() == name)
}

/// What a node type waits for when it parks the execution (None: not a parking type).
pub fn parks(name: &str) -> Option<crate::model::WaitKind> {
    find(name).and_then(|kind| kind.parks())
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
            NODE_TYPES
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
        for kind in NODE_TYPES {
            assert!(names.insert(kind.name()), "duplicate node type {}", kind.name());
            assert!(config_validator(kind.name()).is_some());
            assert_eq!(kind.config_schema()["type"], "object", "{} config must be an object", kind.name());
        }
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn every_catalogued_type_has_an_executor_and_no_other() {
        for kind in NODE_TYPES {
            // Parking types are run by the engine itself.
            assert_eq!(runner(kind.name()).is_some(), kind.parks().is_none(), "{}", kind.name());
        }
        assert!(runner("no.such").is_none());
    }
}
