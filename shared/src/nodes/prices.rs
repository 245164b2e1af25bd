//! Model prices in US dollars per million tokens, for `cost_usd` on llm.chat steps. A model is
//! matched by the longest listed name it starts with, so dated snapshots
//! (`gpt-4o-mini-2024-07-18`, `claude-3-5-haiku-20241022`) find their family. A model not listed
//! costs `null`, never 0: self-hosted and unknown models are not free, they are unpriced.
//!
//! Public list prices as of 2025; update this table when providers change them. A deployment adds
//! or overrides entries with `MODEL_PRICES` (self-hosted models at 0, fine-tunes, new models),
//! without a code change.

use crate::model::round_usd;

/// (model name prefix, input $/M tokens, output $/M tokens)
pub const PRICES: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
    ("claude-3-haiku", 0.25, 1.25),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-3-5-sonnet", 3.00, 15.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    ("claude-sonnet-4", 3.00, 15.00),
    ("claude-opus-4", 15.00, 75.00),
];

/// The built-in prices and the deployment's own (`MODEL_PRICES`), which win over a built-in
/// entry of the same name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    configured: Vec<(String, f64, f64)>,
}

impl PriceTable {
    pub fn with_configured(configured: Vec<(String, f64, f64)>) -> PriceTable {
        PriceTable { configured }
    }

    /// The price of a call, or None for a model neither table knows.
    pub fn cost_usd(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<f64> {
        let configured = self.configured.iter().map(|(prefix, i, o)| (prefix.as_str(), *i, *o, 1));
        let built_in = PRICES.iter().map(|(prefix, i, o)| (*prefix, *i, *o, 0));
        // Longest prefix first; on the same prefix the configured entry (rank 1) wins.
        let (_, input_price, output_price, _) = configured
            .chain(built_in)
            .filter(|(prefix, ..)| model.starts_with(prefix))
            .max_by_key(|(prefix, _, _, rank)| (prefix.len(), *rank))?;
        Some(round_usd((input_tokens as f64 * input_price + output_tokens as f64 * output_price) / 1_000_000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_unknown_models_are_unpriced() {
        let prices = PriceTable::default();
        assert_eq!(prices.cost_usd("gpt-4o-mini-2024-07-18", 1_000_000, 1_000_000), Some(0.75));
        assert_eq!(prices.cost_usd("gpt-4o", 1000, 500), Some(0.0075));
        assert_eq!(prices.cost_usd("claude-3-5-haiku-20241022", 2_000, 1_000), Some(0.0056));
        assert_eq!(prices.cost_usd("llama3.1:8b", 1000, 1000), None);
        assert_eq!(prices.cost_usd("gpt-4o", 0, 0), Some(0.0));
    }

    #[test]
    fn configured_prices_add_models_and_override_built_in_ones() {
        let prices = PriceTable::with_configured(vec![("llama3".into(), 0.0, 0.0), ("gpt-4o".into(), 5.0, 20.0)]);
        assert_eq!(prices.cost_usd("llama3.1:8b", 1000, 1000), Some(0.0), "self-hosted: free, and priced");
        assert_eq!(prices.cost_usd("gpt-4o", 1000, 500), Some(0.015), "the configured gpt-4o wins");
        assert_eq!(prices.cost_usd("gpt-4o-mini", 1_000_000, 0), Some(0.15), "a longer built-in prefix still wins");
        assert_eq!(prices.cost_usd("mistral-large", 1, 1), None);
    }
}
