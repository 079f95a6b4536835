//! The price table: US dollars per million input and output tokens, by provider and model.
//! Warden ships one (`prices.yaml`, embedded); `budgets.prices` names a file that replaces it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

/// What goes wrong with budgets.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The price table file cannot be read.
    #[error("cannot read the price table {path}: {error}")]
    PricesRead { path: String, error: String },
    /// The price table is not one.
    #[error(
        "{origin} is not a price table ({error}); write `<provider>: {{ <model>: {{ input: <USD per million tokens>, output: <USD per million tokens> }} }}`"
    )]
    Prices { origin: String, error: String },
}

/// The table Warden ships.
const SHIPPED: &str = include_str!("prices.yaml");

/// What one model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million input (prompt) tokens.
    pub input: f64,
    /// Per million output (generated) tokens.
    pub output: f64,
}

/// Prices by provider, then by model name (or the start of one).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct Prices(BTreeMap<String, BTreeMap<String, Price>>);

impl Prices {
    /// The table Warden ships.
    pub fn shipped() -> Prices {
        // Checked by a test: the shipped table always parses.
        Prices::parse(SHIPPED, "the shipped price table").unwrap_or_default()
    }

    /// The table in the file at `path`.
    pub fn load(path: &Path) -> Result<Prices, BudgetError> {
        let text = std::fs::read_to_string(path).map_err(|e| BudgetError::PricesRead {
            path: path.display().to_string(),
            error: e.to_string(),
        })?;
        Prices::parse(&text, &path.display().to_string())
    }

    /// The table in `text` (`origin`: where it came from, for the error).
    pub fn parse(text: &str, origin: &str) -> Result<Prices, BudgetError> {
        let prices: Prices = serde_saphyr::from_str(text).map_err(|e| BudgetError::Prices {
            origin: origin.to_owned(),
            error: e.to_string(),
        })?;
        for (provider, models) in &prices.0 {
            for (model, price) in models {
                let valid = |v: f64| v.is_finite() && v >= 0.0;
                if !valid(price.input) || !valid(price.output) {
                    return Err(BudgetError::Prices {
                        origin: origin.to_owned(),
                        error: format!(
                            "{provider}.{model}: prices must be dollars per million tokens, \
                             zero or more"
                        ),
                    });
                }
            }
        }
        Ok(prices)
    }

    /// Whether the table names `model` exactly, for any provider (a configured model name, not
    /// one an agent made up).
    pub fn names(&self, model: &str) -> bool {
        self.0.values().any(|models| models.contains_key(model))
    }

    /// The price of `provider`'s `model`: the entry with the longest name `model` starts with.
    pub fn price(&self, provider: &str, model: &str) -> Option<Price> {
        self.0
            .get(provider)?
            .iter()
            .filter(|(name, _)| model.starts_with(name.as_str()))
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| *price)
    }

    /// What `input` and `output` tokens of `provider`'s `model` cost, in millionths of a US
    /// dollar (a price per million tokens is a price per token in micro-dollars); `None` for a
    /// model the table does not price.
    pub fn cost_micro_usd(
        &self,
        provider: &str,
        model: &str,
        input: u64,
        output: u64,
    ) -> Option<u64> {
        let price = self.price(provider, model)?;
        let cost = input as f64 * price.input + output as f64 * price.output;
        Some(cost.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_table_parses_and_prices_by_the_longest_prefix() {
        let prices = Prices::parse(SHIPPED, "shipped").expect("shipped table");
        let mini = prices
            .price("openai", "gpt-4o-mini-2024-07-18")
            .expect("priced");
        assert_eq!(mini.input, 0.15);
        let full = prices.price("openai", "gpt-4o-2024-08-06").expect("priced");
        assert_eq!(full.output, 10.0);
        assert_eq!(prices.price("openai", "unknown-model"), None);
        // The names it counts as configured are its own, exactly: no name it prices by prefix.
        assert!(prices.names("gpt-4o") && prices.names("claude-opus-4"));
        assert!(!prices.names("gpt-4o-2024-08-06") && !prices.names("unknown-model"));
        assert_eq!(prices.price("nobody", "gpt-4o"), None);
    }

    #[test]
    fn cost_is_in_micro_dollars() {
        let prices = Prices::parse("p: { m: { input: 2.5, output: 10 } }", "test").expect("ok");
        // 1000 input tokens at $2.50/M = $0.0025; 100 output at $10/M = $0.001.
        assert_eq!(prices.cost_micro_usd("p", "m", 1000, 100), Some(3500));
    }

    #[test]
    fn a_negative_price_is_refused_with_where_it_is() {
        let err = Prices::parse("p: { m: { input: -1, output: 1 } }", "prices.yaml")
            .expect_err("negative");
        assert!(err.to_string().contains("p.m"), "{err}");
        assert!(err.to_string().contains("prices.yaml"), "{err}");
    }
}
