//! What an execution spent, summed over its steps: the unit the usage counters add up
//! (`crate::usage`). Kept on the execution item by its final write, so counting a finish needs
//! nothing but the change stream's images.

use super::{StepRecord, StepStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The name model calls are counted under when a step billed tokens without naming its model.
pub const UNNAMED_MODEL: &str = "unknown";

/// An execution's spend: node runs and, by model, its calls' tokens and cost.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionUsage {
    /// Steps that ran (succeeded or failed; skipped and parked ones did not run).
    #[serde(default)]
    pub node_runs: u64,
    /// By model name, as the nodes name it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelUsage>,
}

/// One model's calls within an execution (or a counter's period).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// Steps that called it (a step's retried attempts are one call here; their tokens all count).
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Input tokens read from the provider's prompt cache (part of `input_tokens`).
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// The priced calls' cost, nano-dollars (USD x 10^9): integers add up exactly.
    pub cost_nano_usd: u64,
    /// Calls whose model has no price: their tokens count, their cost is not in `cost_nano_usd`.
    #[serde(default)]
    pub unpriced_calls: u64,
}

impl ModelUsage {
    fn plus(self, more: ModelUsage) -> ModelUsage {
        ModelUsage {
            calls: self.calls + more.calls,
            input_tokens: self.input_tokens + more.input_tokens,
            output_tokens: self.output_tokens + more.output_tokens,
            cached_input_tokens: self.cached_input_tokens + more.cached_input_tokens,
            cost_nano_usd: self.cost_nano_usd + more.cost_nano_usd,
            unpriced_calls: self.unpriced_calls + more.unpriced_calls,
        }
    }
    fn minus(self, earlier: ModelUsage) -> ModelUsage {
        ModelUsage {
            calls: self.calls.saturating_sub(earlier.calls),
            input_tokens: self.input_tokens.saturating_sub(earlier.input_tokens),
            output_tokens: self.output_tokens.saturating_sub(earlier.output_tokens),
            cached_input_tokens: self.cached_input_tokens.saturating_sub(earlier.cached_input_tokens),
            cost_nano_usd: self.cost_nano_usd.saturating_sub(earlier.cost_nano_usd),
            unpriced_calls: self.unpriced_calls.saturating_sub(earlier.unpriced_calls),
        }
    }
}

/// Dollars to whole nano-dollars.
pub fn nano_usd(dollars: f64) -> u64 {
    (dollars * 1e9).round().max(0.0) as u64
}

impl ExecutionUsage {
    /// The spend recorded in `steps`.
    pub fn of<'a>(steps: impl IntoIterator<Item = &'a StepRecord>) -> ExecutionUsage {
        let mut usage = ExecutionUsage::default();
        for step in steps {
            if matches!(step.status, StepStatus::Succeeded | StepStatus::Failed) {
                usage.node_runs += 1;
            }
            let Some(tokens) = step.usage else { continue };
            let call = ModelUsage {
                calls: 1,
                input_tokens: tokens.input_tokens,
                output_tokens: tokens.output_tokens,
                cached_input_tokens: tokens.cached_input_tokens,
                cost_nano_usd: step.cost_usd.map(nano_usd).unwrap_or(0),
                unpriced_calls: u64::from(step.cost_usd.is_none()),
            };
            let model = step.model.clone().unwrap_or_else(|| UNNAMED_MODEL.to_string());
            let entry = usage.models.entry(model).or_default();
            *entry = entry.plus(call);
        }
        usage
    }

    /// What was spent since `earlier` (a redriven execution's finish counts only its new spend).
    pub fn minus(&self, earlier: &ExecutionUsage) -> ExecutionUsage {
        let models = self
            .models
            .iter()
            .map(|(model, now)| (model.clone(), now.minus(earlier.models.get(model).copied().unwrap_or_default())))
            .filter(|(_, spent)| *spent != ModelUsage::default())
            .collect();
        ExecutionUsage { node_runs: self.node_runs.saturating_sub(earlier.node_runs), models }
    }

    pub fn is_empty(&self) -> bool {
        *self == ExecutionUsage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenUsage;

    fn step(
        id: &str,
        status: StepStatus,
        model: Option<&str>,
        tokens: Option<(u64, u64)>,
        cost: Option<f64>,
    ) -> StepRecord {
        StepRecord {
            node_id: id.into(),
            status,
            usage: tokens.map(|(i, o)| TokenUsage::new(i, o)),
            cost_usd: cost,
            model: model.map(str::to_string),
            ..StepRecord::default()
        }
    }

    #[test]
    fn usage_sums_steps_by_model_and_counts_runs_and_unpriced_calls() {
        let steps = [
            step("a", StepStatus::Succeeded, Some("gpt-4o-mini"), Some((100, 20)), Some(0.000027)),
            step("b", StepStatus::Failed, Some("gpt-4o-mini"), Some((50, 0)), Some(0.0000075)),
            step("c", StepStatus::Succeeded, Some("llama3"), Some((10, 5)), None),
            step("d", StepStatus::Succeeded, None, None, None),
            step("e", StepStatus::Skipped, None, None, None),
        ];
        let usage = ExecutionUsage::of(&steps);
        assert_eq!(usage.node_runs, 4, "skipped steps did not run");
        let mini = usage.models["gpt-4o-mini"];
        assert_eq!((mini.calls, mini.input_tokens, mini.output_tokens, mini.cost_nano_usd), (2, 150, 20, 34_500));
        let llama = usage.models["llama3"];
        assert_eq!((llama.calls, llama.unpriced_calls, llama.cost_nano_usd), (1, 1, 0));
        assert_eq!(usage.models.len(), 2);
        let json = serde_json::to_value(&usage).unwrap();
        assert_eq!(serde_json::from_value::<ExecutionUsage>(json).unwrap(), usage);
    }

    #[test]
    fn minus_leaves_what_was_spent_since() {
        let first = ExecutionUsage::of(&[step("a", StepStatus::Succeeded, Some("m"), Some((100, 10)), Some(0.001))]);
        let later = ExecutionUsage::of(&[
            step("a", StepStatus::Succeeded, Some("m"), Some((100, 10)), Some(0.001)),
            step("b", StepStatus::Succeeded, Some("m"), Some((7, 3)), Some(0.0001)),
            step("c", StepStatus::Succeeded, Some("n"), Some((1, 1)), Some(0.0)),
        ]);
        let since = later.minus(&first);
        assert_eq!(since.node_runs, 2);
        assert_eq!(
            (since.models["m"].calls, since.models["m"].input_tokens, since.models["m"].cost_nano_usd),
            (1, 7, 100_000)
        );
        assert_eq!(since.models["n"].calls, 1);
        assert!(first.minus(&first).is_empty());
    }
}
