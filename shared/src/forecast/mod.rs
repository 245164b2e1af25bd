//! The forecast: what one execution of a workflow will cost, before it runs. Nothing is
//! called and nothing is written.
//!
//! Per `llm.chat` node:
//! - **Input tokens**: the prompt rendered from the given input and counted with the model
//!   family's tokenizer: OpenAI's `o200k_base` (gpt-4o, gpt-4.1, gpt-5 and later, o-series) or
//!   `cl100k_base` (gpt-4, gpt-3.5), exactly as OpenAI counts a chat request (3 tokens per
//!   message, its role and content, and 3 that prime the reply; OpenAI cookbook, "How to count
//!   tokens with tiktoken"). Other families (Claude, Gemini, open models) publish no tokenizer
//!   to run offline: their count is `o200k_base`'s, an approximation (`tokenizer_exact: false`).
//! - A prompt that uses an earlier node's output is rendered with that node's output from the
//!   workflow's latest succeeded execution; with no such execution, it is rendered without it
//!   (`input_complete: false`, and why).
//! - **Output tokens**: `max_tokens` is the upper bound (4,096 when unset, as budgets reserve);
//!   with past executions (the latest 20 that succeeded), the observed minimum, median and
//!   95th percentile, and in how many of them the node ran.
//! - **Dollars**: low (nodes a branch may skip left out, observed minimum output), expected
//!   (observed median output, weighted by how often the node ran; without history, the upper
//!   bound) and high (every node, `max_tokens`), at the price table's prices; NodeAI's AWS
//!   cost per execution is added to the totals.

use crate::model::{NodeSpec, StepRecord, StepStatus, WorkflowDefinition};
use crate::nodes::prices::PriceTable;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

/// How many past succeeded executions the forecast reads.
pub const HISTORY_EXECUTIONS: usize = 20;

/// A range of US dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CostRange {
    pub low: f64,
    pub expected: f64,
    pub high: f64,
}

/// What past executions show of a node.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Observed {
    /// Succeeded executions read. The output figures are 0 when the node produced none in them.
    pub executions: usize,
    /// In how many of them the node ran (not skipped by a branch).
    pub ran: usize,
    pub output_tokens_min: u64,
    pub output_tokens_median: u64,
    pub output_tokens_p95: u64,
}

/// One `llm.chat` node's forecast.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct NodeForecast {
    pub node_id: String,
    pub model: String,
    /// `o200k_base` or `cl100k_base`.
    pub tokenizer: &'static str,
    /// False when the tokenizer stands in for the model family's own (not OpenAI).
    pub tokenizer_exact: bool,
    pub input_tokens: u64,
    /// False when the prompt uses an earlier node's output that could not be known.
    pub input_complete: bool,
    /// How the prompt was rendered.
    pub input_basis: String,
    pub max_output_tokens: u64,
    pub observed: Option<Observed>,
    /// True when a branch (an edge with `when`) may skip the node.
    pub may_be_skipped: bool,
    /// None when the model has no price.
    pub cost_usd: Option<CostRange>,
}

/// The whole forecast.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Forecast {
    pub nodes: Vec<NodeForecast>,
    /// Model calls of the priced nodes.
    pub model_cost_usd: CostRange,
    /// NodeAI's AWS cost estimate per execution.
    pub aws_cost_usd: f64,
    /// Model cost plus AWS cost.
    pub total_cost_usd: CostRange,
    /// Nodes whose model has no price (not in the totals).
    pub unpriced_nodes: Vec<String>,
    pub history_executions: usize,
}

/// The tokenizer for a model family and whether it is that family's own.
pub fn tokenizer_for(model: &str) -> (&'static str, &'static tiktoken_rs::CoreBPE, bool) {
    let o200k = ["gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-6", "o1", "o3", "o4", "chatgpt-4o"];
    if o200k.iter().any(|prefix| model.starts_with(prefix)) {
        ("o200k_base", tiktoken_rs::o200k_base_singleton(), true)
    } else if model.starts_with("gpt-4") || model.starts_with("gpt-3.5") {
        ("cl100k_base", tiktoken_rs::cl100k_base_singleton(), true)
    } else {
        ("o200k_base", tiktoken_rs::o200k_base_singleton(), false)
    }
}

/// A chat request's prompt tokens as OpenAI counts them: per message 3 tokens, its role and
/// its content; 3 more prime the reply. `messages` are (role, content) pairs, the system
/// prompt first when there is one.
pub fn chat_tokens(bpe: &tiktoken_rs::CoreBPE, messages: &[(String, String)]) -> u64 {
    let count = |text: &str| bpe.encode_with_special_tokens(text).len() as u64;
    messages.iter().map(|(role, content)| 3 + count(role) + count(content)).sum::<u64>() + 3
}

/// The (role, content) pairs of a rendered llm.chat config.
fn chat_messages(config: &Value) -> Vec<(String, String)> {
    let mut messages = Vec::new();
    if let Some(system) = config["system"].as_str() {
        messages.push(("system".to_string(), system.to_string()));
    }
    for message in config["messages"].as_array().into_iter().flatten() {
        let content = match &message["content"] {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        messages.push((message["role"].as_str().unwrap_or("user").to_string(), content));
    }
    messages
}

/// Nodes a branch may skip: a node is certain to run when it has no incoming edge, or an
/// incoming edge with no `when` from a node certain to run.
fn may_be_skipped(definition: &WorkflowDefinition) -> HashSet<String> {
    let mut certain: HashSet<&str> = HashSet::new();
    loop {
        let before = certain.len();
        for node in &definition.nodes {
            let incoming: Vec<_> = definition.edges.iter().filter(|e| e.to == node.id).collect();
            if incoming.is_empty() || incoming.iter().any(|e| e.when.is_none() && certain.contains(e.from.as_str())) {
                certain.insert(node.id.as_str());
            }
        }
        if certain.len() == before {
            break;
        }
    }
    definition.nodes.iter().filter(|n| !certain.contains(n.id.as_str())).map(|n| n.id.clone()).collect()
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], percent: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// The forecast of `definition` run with `input`, given the steps of past succeeded
/// executions (newest first).
pub fn forecast(
    definition: &WorkflowDefinition,
    input: &Value,
    history: &[Vec<StepRecord>],
    prices: &PriceTable,
) -> Forecast {
    let skippable = may_be_skipped(definition);
    // The latest run's outputs stand in for the nodes a prompt uses.
    let latest: HashMap<&str, &StepRecord> =
        history.first().map(|steps| steps.iter().map(|s| (s.node_id.as_str(), s)).collect()).unwrap_or_default();
    let node_ids: Vec<&str> = definition.nodes.iter().map(|n| n.id.as_str()).collect();
    let mut nodes = Vec::new();
    let mut unpriced = Vec::new();
    let (mut model_cost, dollars) = (CostRange::default(), |nano: f64| nano / 1e9);
    for node in definition.nodes.iter().filter(|n| n.node_type == "llm.chat") {
        let one = node_forecast(node, input, history, &latest, &node_ids, skippable.contains(&node.id), prices);
        match one.cost_usd {
            Some(cost) => {
                model_cost.low += cost.low;
                model_cost.expected += cost.expected;
                model_cost.high += cost.high;
            }
            None => unpriced.push(node.id.clone()),
        }
        nodes.push(one);
    }
    let round = crate::model::round_usd;
    let model_cost =
        CostRange { low: round(model_cost.low), expected: round(model_cost.expected), high: round(model_cost.high) };
    let aws = dollars(crate::usage::AWS_COST_PER_EXECUTION_NANO_USD as f64);
    Forecast {
        nodes,
        model_cost_usd: model_cost,
        aws_cost_usd: aws,
        total_cost_usd: CostRange {
            low: round(model_cost.low + aws),
            expected: round(model_cost.expected + aws),
            high: round(model_cost.high + aws),
        },
        unpriced_nodes: unpriced,
        history_executions: history.len(),
    }
}

fn node_forecast(
    node: &NodeSpec,
    input: &Value,
    history: &[Vec<StepRecord>],
    latest: &HashMap<&str, &StepRecord>,
    node_ids: &[&str],
    may_be_skipped: bool,
    prices: &PriceTable,
) -> NodeForecast {
    let config = &node.config;
    let text = config.to_string();
    let uses: Vec<&str> = node_ids
        .iter()
        .copied()
        .filter(|id| text.contains(&format!("nodes.{id}.")) || text.contains(&format!("nodes[\\\"{id}\\\"]")))
        .collect();
    let known: Vec<&str> = uses.iter().copied().filter(|id| latest.contains_key(id)).collect();
    let mut scope = json!({ "input": input, "nodes": {}, "execution": { "id": "forecast", "workflow_id": "" } });
    for id in &known {
        scope["nodes"][*id] = json!({ "output": latest[id].output, "error": null });
    }
    let rendered = crate::template::render_value(config, &scope).unwrap_or_else(|_| config.clone());
    let model = rendered["model"].as_str().unwrap_or_default().to_string();
    let (tokenizer, bpe, exact) = tokenizer_for(&model);
    let input_tokens = chat_tokens(bpe, &chat_messages(&rendered));
    let missing: Vec<&str> = uses.iter().copied().filter(|id| !known.contains(id)).collect();
    let input_basis = if uses.is_empty() {
        "rendered from the input".to_string()
    } else if missing.is_empty() {
        format!("rendered with the latest succeeded run's output of {}", uses.join(", "))
    } else {
        format!(
            "unknown: uses the output of {}, and no succeeded execution shows it; counted without it",
            missing.join(", ")
        )
    };
    let max_output = rendered["max_tokens"].as_u64().unwrap_or(crate::budgets::DEFAULT_RESERVED_OUTPUT_TOKENS);
    let outputs: Vec<u64> = {
        let mut outputs: Vec<u64> = history
            .iter()
            .filter_map(|steps| steps.iter().find(|s| s.node_id == node.id && s.status == StepStatus::Succeeded))
            .filter_map(|s| s.usage.map(|u| u.output_tokens))
            .collect();
        outputs.sort_unstable();
        outputs
    };
    let ran = history
        .iter()
        .filter(|steps| steps.iter().any(|s| s.node_id == node.id && s.status != StepStatus::Skipped))
        .count();
    let observed = (!history.is_empty()).then(|| Observed {
        executions: history.len(),
        ran,
        output_tokens_min: outputs.first().copied().unwrap_or(0),
        output_tokens_median: percentile(&outputs, 50),
        output_tokens_p95: percentile(&outputs, 95),
    });
    let cost = |output: u64| prices.cost_usd(&model, &crate::model::TokenUsage::new(input_tokens, output));
    let cost_usd = match (cost(0), cost(max_output)) {
        (Some(_), Some(high)) => {
            // Without outputs to go by, the upper bound; weighted by how often the node ran.
            let (low_output, expected_output, ran_share) = match &observed {
                Some(o) if !outputs.is_empty() => {
                    (o.output_tokens_min, o.output_tokens_median, o.ran as f64 / o.executions as f64)
                }
                Some(o) => (0, max_output, o.ran as f64 / o.executions as f64),
                None => (0, max_output, 1.0),
            };
            let low = if may_be_skipped { 0.0 } else { cost(low_output).unwrap_or(0.0) };
            let expected = crate::model::round_usd(cost(expected_output).unwrap_or(0.0) * ran_share);
            Some(CostRange { low, expected, high })
        }
        _ => None,
    };
    NodeForecast {
        node_id: node.id.clone(),
        model,
        tokenizer,
        tokenizer_exact: exact,
        input_tokens,
        input_complete: missing.is_empty(),
        input_basis,
        max_output_tokens: max_output,
        observed,
        may_be_skipped,
        cost_usd,
    }
}

#[cfg(test)]
mod tests;
