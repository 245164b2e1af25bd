//! Model prices in US dollars per million tokens, for `cost_usd` on llm.chat steps, usage
//! counters, budgets and forecasts. A model is matched by the longest listed name it starts with,
//! so dated snapshots (`gpt-4o-mini-2024-07-18`, `claude-haiku-4-5-20251001`) find their
//! family. A model not listed costs `null`, never 0: self-hosted and unknown models are not
//! free, they are unpriced.
//!
//! Each built-in entry names its source and the date it was read. A deployment adds or
//! overrides entries with `MODEL_PRICES` (self-hosted models at 0, fine-tunes, new models, a
//! negotiated rate) without a code change. `GET /v1/models/prices` serves the merged table.

use crate::model::{TokenUsage, round_usd};
use serde::Serialize;

/// One model family's list prices, US dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ModelPrice {
    /// Model name prefix: the longest one a model's name starts with applies.
    pub model: String,
    pub input_usd_per_mtok: f64,
    /// Input tokens read from the prompt cache; None: billed as ordinary input.
    pub cached_input_usd_per_mtok: Option<f64>,
    /// Input tokens written to the prompt cache (Anthropic's 5-minute cache writes); None:
    /// billed as ordinary input.
    pub cache_write_usd_per_mtok: Option<f64>,
    pub output_usd_per_mtok: f64,
    /// Where the price was read (`MODEL_PRICES` for the deployment's own).
    pub source: String,
    /// When it was read (YYYY-MM-DD); None for the deployment's own.
    pub as_of: Option<String>,
}

const OPENAI: &str = "https://developers.openai.com/api/docs/pricing";
const OPENAI_MODELS: &str = "https://developers.openai.com/api/docs/models";
const ANTHROPIC: &str = "https://platform.claude.com/docs/en/about-claude/pricing";
const ANTHROPIC_NOTES: &str = "https://platform.claude.com/docs/en/release-notes/overview";
const ANTHROPIC_MODELS: &str = "https://platform.claude.com/docs/en/about-claude/models/overview";
const GOOGLE: &str = "https://ai.google.dev/gemini-api/docs/pricing";

/// (prefix, input, cached input, 5-minute cache write, output, source, as of): public list
/// prices, standard tier, at the short-context rate (a long prompt may cost more: OpenAI's
/// GPT-5.4 and later double input over 272K tokens, Claude Haiku 5.5 over 100K, Gemini 2.5 Pro
/// over 200K; those calls are under-priced here). Sources as listed in `source`; the dates are
/// those of the copy read. Explicit entries keep a newer model off an older prefix's price
/// (`claude-opus-4-5` is not `claude-opus-4`, `gpt-5.4` is not `gpt-5`).
type Entry = (&'static str, f64, Option<f64>, Option<f64>, f64, &'static str, &'static str);

/// The built-in table.
const PRICES: &[Entry] = &[
    // OpenAI. Cache writes are free up to 5.5; the 30-minute writes of 5.6 and 6.x are priced.
    ("gpt-6.2-sol", 2.00, Some(0.10), Some(2.50), 10.00, OPENAI_MODELS, "2026-11-17"),
    ("gpt-6.1-sol", 2.00, Some(0.10), Some(2.50), 10.00, OPENAI_MODELS, "2026-10-01"),
    ("gpt-6.1-terra", 1.00, Some(0.05), Some(1.25), 5.00, OPENAI_MODELS, "2026-10-26"),
    ("gpt-6-astra", 10.00, Some(1.00), Some(12.50), 50.00, OPENAI_MODELS, "2026-11-17"),
    ("gpt-6-sol", 2.00, Some(0.20), Some(2.50), 10.00, OPENAI_MODELS, "2026-09-22"),
    ("gpt-6-luna", 0.10, Some(0.01), Some(0.125), 0.50, OPENAI_MODELS, "2026-11-17"),
    ("gpt-5.6-terra", 2.00, Some(0.20), Some(2.50), 12.00, OPENAI_MODELS, "2026-11-17"),
    ("gpt-5.6-luna", 0.20, Some(0.02), Some(0.25), 1.20, OPENAI_MODELS, "2026-11-17"),
    ("gpt-5.5", 5.00, Some(0.50), None, 30.00, OPENAI, "2026-05-01"),
    ("gpt-5.5-pro", 30.00, None, None, 180.00, OPENAI, "2026-05-01"),
    ("gpt-5.4", 2.50, Some(0.25), None, 15.00, OPENAI, "2026-05-01"),
    ("gpt-5.4-pro", 30.00, None, None, 180.00, OPENAI, "2026-05-01"),
    ("gpt-5.4-mini", 0.75, Some(0.075), None, 4.50, OPENAI, "2026-05-01"),
    ("gpt-5.4-nano", 0.20, Some(0.02), None, 1.25, OPENAI, "2026-05-01"),
    ("gpt-5.2", 1.75, Some(0.175), None, 14.00, OPENAI, "2026-05-01"),
    ("gpt-5.1", 1.25, Some(0.125), None, 10.00, OPENAI, "2026-05-01"),
    ("gpt-5", 1.25, Some(0.125), None, 10.00, OPENAI, "2026-05-01"),
    ("gpt-5-mini", 0.25, Some(0.025), None, 2.00, OPENAI, "2026-05-01"),
    ("gpt-5-nano", 0.05, Some(0.005), None, 0.40, OPENAI_MODELS, "2026-11-17"),
    ("gpt-4.1", 2.00, Some(0.50), None, 8.00, OPENAI, "2026-05-01"),
    ("gpt-4.1-mini", 0.40, Some(0.10), None, 1.60, OPENAI, "2026-05-01"),
    ("gpt-4.1-nano", 0.10, Some(0.025), None, 0.40, OPENAI, "2026-05-01"),
    ("gpt-4o", 2.50, Some(1.25), None, 10.00, OPENAI, "2026-05-01"),
    ("gpt-4o-mini", 0.15, Some(0.075), None, 0.60, OPENAI, "2026-05-01"),
    ("gpt-3.5-turbo", 0.50, None, None, 1.50, OPENAI, "2025-06-03"),
    ("o3", 2.00, Some(0.50), None, 8.00, OPENAI, "2025-06-10"),
    ("o3-mini", 1.10, Some(0.55), None, 4.40, OPENAI, "2025-06-03"),
    ("o4-mini", 1.10, Some(0.275), None, 4.40, OPENAI, "2025-06-03"),
    // Anthropic: cache reads and 5-minute cache writes.
    ("claude-fable-5-1", 10.00, Some(0.25), Some(12.50), 50.00, ANTHROPIC, "2026-09-22"),
    ("claude-fable-5", 10.00, Some(1.00), Some(12.50), 50.00, ANTHROPIC, "2026-09-22"),
    ("claude-mythos-5-1", 10.00, Some(0.25), Some(12.50), 50.00, ANTHROPIC, "2026-09-22"),
    ("claude-mythos-5", 10.00, Some(1.00), Some(12.50), 50.00, ANTHROPIC, "2026-09-22"),
    ("claude-opus-5-5", 4.00, Some(0.20), Some(5.00), 20.00, ANTHROPIC_MODELS, "2026-09-23"),
    ("claude-opus-5", 5.00, Some(0.50), Some(6.25), 25.00, ANTHROPIC, "2026-09-22"),
    ("claude-opus-4-8", 5.00, Some(0.50), Some(6.25), 25.00, ANTHROPIC, "2026-09-22"),
    ("claude-opus-4-7", 5.00, Some(0.50), Some(6.25), 25.00, ANTHROPIC, "2026-09-22"),
    ("claude-opus-4-6", 5.00, Some(0.50), Some(6.25), 25.00, ANTHROPIC, "2026-09-22"),
    ("claude-opus-4-5", 5.00, Some(0.50), Some(6.25), 25.00, ANTHROPIC, "2026-09-22"),
    ("claude-opus-4", 15.00, Some(1.50), Some(18.75), 75.00, ANTHROPIC, "2026-09-22"),
    ("claude-sonnet-5-5", 2.00, Some(0.10), Some(2.50), 10.00, ANTHROPIC_NOTES, "2026-10-07"),
    ("claude-sonnet-5", 2.00, Some(0.20), Some(2.50), 10.00, ANTHROPIC_MODELS, "2026-09-23"),
    ("claude-sonnet-4", 3.00, Some(0.30), Some(3.75), 15.00, ANTHROPIC, "2026-09-22"),
    ("claude-3-7-sonnet", 3.00, Some(0.30), Some(3.75), 15.00, ANTHROPIC, "2026-03-01"),
    ("claude-haiku-5-5", 0.10, Some(0.01), Some(0.125), 0.50, ANTHROPIC_MODELS, "2026-10-24"),
    ("claude-haiku-4-5", 1.00, Some(0.10), Some(1.25), 5.00, ANTHROPIC, "2026-03-01"),
    ("claude-3-5-haiku", 0.80, Some(0.08), Some(1.00), 4.00, ANTHROPIC, "2026-03-01"),
    ("claude-3-haiku", 0.25, Some(0.03), Some(0.30), 1.25, ANTHROPIC, "2026-03-01"),
    // Google, through its OpenAI-compatible endpoint.
    ("gemini-3.5-flash-lite", 0.30, Some(0.03), None, 2.50, GOOGLE, "2026-10-07"),
    ("gemini-2.5-pro", 1.25, Some(0.125), None, 10.00, GOOGLE, "2026-10-07"),
    ("gemini-2.5-flash", 0.30, Some(0.03), None, 2.50, GOOGLE, "2026-10-07"),
    ("gemini-2.5-flash-lite", 0.10, Some(0.01), None, 0.40, GOOGLE, "2026-10-07"),
];

/// The built-in prices and the deployment's own (`MODEL_PRICES`), which win over a built-in
/// entry of the same name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    configured: Vec<ModelPrice>,
}

impl PriceTable {
    pub fn with_configured(configured: Vec<ModelPrice>) -> PriceTable {
        PriceTable { configured }
    }

    /// Every entry, the deployment's over the built-in ones of the same name, by name.
    pub fn entries(&self) -> Vec<ModelPrice> {
        let mut entries: Vec<ModelPrice> = self.configured.clone();
        for entry in built_in() {
            if !entries.iter().any(|e| e.model == entry.model) {
                entries.push(entry);
            }
        }
        entries.sort_by(|a, b| a.model.cmp(&b.model));
        entries
    }

    /// The entry that prices `model`: the longest prefix it starts with, the deployment's on a tie.
    pub fn price_of(&self, model: &str) -> Option<ModelPrice> {
        let configured = self.configured.iter().cloned().map(|e| (e, 1));
        let built_in = built_in().map(|e| (e, 0));
        configured
            .chain(built_in)
            .filter(|(entry, _)| model.starts_with(&entry.model))
            .max_by_key(|(entry, rank)| (entry.model.len(), *rank))
            .map(|(entry, _)| entry)
    }

    /// The price of a call's tokens, or None for a model neither table knows. Cached and
    /// cache-write input tokens (part of `input_tokens`) are billed at their own prices when
    /// the entry has them.
    pub fn cost_usd(&self, model: &str, usage: &TokenUsage) -> Option<f64> {
        let price = self.price_of(model)?;
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage.cache_write_input_tokens.min(usage.input_tokens - cached);
        let fresh = usage.input_tokens - cached - written;
        let dollars = fresh as f64 * price.input_usd_per_mtok
            + cached as f64 * price.cached_input_usd_per_mtok.unwrap_or(price.input_usd_per_mtok)
            + written as f64 * price.cache_write_usd_per_mtok.unwrap_or(price.input_usd_per_mtok)
            + usage.output_tokens as f64 * price.output_usd_per_mtok;
        Some(round_usd(dollars / 1_000_000.0))
    }
}

fn built_in() -> impl Iterator<Item = ModelPrice> {
    PRICES.iter().map(|&(model, input, cached, write, output, source, as_of)| ModelPrice {
        model: model.to_string(),
        input_usd_per_mtok: input,
        cached_input_usd_per_mtok: cached,
        cache_write_usd_per_mtok: write,
        output_usd_per_mtok: output,
        source: source.to_string(),
        as_of: Some(as_of.to_string()),
    })
}

/// A `MODEL_PRICES` entry: `[input, output]` or `[input, output, cached input]`, dollars per
/// million tokens.
pub fn configured_price(model: &str, input: f64, output: f64, cached_input: Option<f64>) -> ModelPrice {
    ModelPrice {
        model: model.to_string(),
        input_usd_per_mtok: input,
        cached_input_usd_per_mtok: cached_input,
        cache_write_usd_per_mtok: None,
        output_usd_per_mtok: output,
        source: "MODEL_PRICES".to_string(),
        as_of: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_unknown_models_are_unpriced() {
        let prices = PriceTable::default();
        let usage = TokenUsage::new;
        assert_eq!(prices.cost_usd("gpt-4o-mini-2024-07-18", &usage(1_000_000, 1_000_000)), Some(0.75));
        assert_eq!(prices.cost_usd("gpt-4o", &usage(1000, 500)), Some(0.0075));
        assert_eq!(prices.cost_usd("claude-3-5-haiku-20241022", &usage(2_000, 1_000)), Some(0.0056));
        assert_eq!(prices.cost_usd("gpt-5-mini-2025-08-07", &usage(1_000_000, 0)), Some(0.25), "not gpt-5's price");
        assert_eq!(prices.cost_usd("claude-opus-4-5-20251101", &usage(1_000_000, 0)), Some(5.0), "not opus 4's");
        assert_eq!(prices.cost_usd("gpt-5.4-mini", &usage(1_000_000, 0)), Some(0.75), "not gpt-5's");
        assert_eq!(prices.cost_usd("claude-sonnet-5-5", &usage(0, 1_000_000)), Some(10.0));
        assert_eq!(prices.cost_usd("claude-opus-4-1", &usage(1_000_000, 0)), Some(15.0));
        assert_eq!(prices.cost_usd("llama3.1:8b", &usage(1000, 1000)), None);
        assert_eq!(prices.cost_usd("gpt-4o", &usage(0, 0)), Some(0.0));
    }

    #[test]
    fn cached_and_cache_write_tokens_are_billed_at_their_own_prices() {
        let prices = PriceTable::default();
        // gpt-4o-mini: 1000 input of which 800 cached: 200 x 0.15 + 800 x 0.075 = 90 micro-dollars.
        let cached = TokenUsage { cached_input_tokens: 800, ..TokenUsage::new(1000, 0) };
        assert_eq!(prices.cost_usd("gpt-4o-mini", &cached), Some(0.00009));
        // claude-haiku-4-5: 100 fresh x 1.00 + 300 written x 1.25 + 600 read x 0.10 + 10 out x 5.00.
        let anthropic =
            TokenUsage { cached_input_tokens: 600, cache_write_input_tokens: 300, ..TokenUsage::new(1000, 10) };
        assert_eq!(prices.cost_usd("claude-haiku-4-5", &anthropic), Some(0.000585));
        // A model without a cache price bills cached tokens as input.
        let plain = PriceTable::with_configured(vec![configured_price("local", 1.0, 2.0, None)]);
        assert_eq!(plain.cost_usd("local-7b", &cached), Some(0.001));
        // An inconsistent report (more cached than input) is held to the input.
        let odd = TokenUsage { cached_input_tokens: 5000, ..TokenUsage::new(1000, 0) };
        assert_eq!(prices.cost_usd("gpt-4o-mini", &odd), Some(0.000075));
    }

    #[test]
    fn configured_prices_add_models_and_override_built_in_ones() {
        let prices = PriceTable::with_configured(vec![
            configured_price("llama3", 0.0, 0.0, None),
            configured_price("gpt-4o", 5.0, 20.0, Some(2.5)),
        ]);
        let usage = TokenUsage::new;
        assert_eq!(prices.cost_usd("llama3.1:8b", &usage(1000, 1000)), Some(0.0), "self-hosted: free, and priced");
        assert_eq!(prices.cost_usd("gpt-4o", &usage(1000, 500)), Some(0.015), "the configured gpt-4o wins");
        assert_eq!(prices.cost_usd("gpt-4o-mini", &usage(1_000_000, 0)), Some(0.15), "a longer built-in prefix wins");
        assert_eq!(prices.cost_usd("mistral-large", &usage(1, 1)), None);
        let listed = prices.entries();
        let gpt_4o = listed.iter().find(|e| e.model == "gpt-4o").unwrap();
        assert_eq!((gpt_4o.input_usd_per_mtok, gpt_4o.source.as_str()), (5.0, "MODEL_PRICES"));
        assert_eq!(listed.iter().filter(|e| e.model == "gpt-4o").count(), 1, "listed once, the deployment's");
        assert!(listed.windows(2).all(|w| w[0].model < w[1].model), "sorted by name");
        assert!(built_in().all(|e| e.as_of.is_some() && e.source.starts_with("https://")));
    }
}
