//! `rate_limits:` how many requests an agent, a group, a route, a model or a tool may make per
//! second (with a burst), and how many may be in flight at once.

use std::time::Duration;

use serde::Deserialize;

/// `rate_limits:` the rules, and how a limited request is answered.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// How a request over a limit is answered.
    pub answer: LimitAnswer,
    /// Every rule applies: a request goes on only if each rule that matches it admits it.
    pub rules: Vec<RateRule>,
    /// How often a replica publishes its rate counts to the state store and charges the
    /// other replicas' to its buckets (read at start).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RateLimitsConfig {
            answer: LimitAnswer::default(),
            rules: Vec::new(),
            sync_interval: Duration::from_millis(500),
        }
    }
}

/// How a request over a limit is answered (`rate_limits.answer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitAnswer {
    /// `429 Too Many Requests` with `retry-after`, in the protocol's own error shape (the
    /// provider's rate-limit error; a JSON-RPC error for MCP).
    #[default]
    Error,
    /// A well-formed answer whose text says the limit was reached and when to retry (a
    /// completion for an LLM call, a tool result or JSON-RPC error for MCP): for agents that
    /// retry 429s in storms. Requests without such a shape still get the 429.
    Refusal,
}

/// One rule (`rate_limits.rules[]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    /// What the rule counts by.
    pub scope: Scope,
    /// Which agent, group, route, model or tool it applies to; `*` (the default) applies it
    /// to each one separately.
    #[serde(default = "any", rename = "match")]
    pub matches: String,
    /// Requests per second, sustained (fractions allowed: `0.5` is one every two seconds).
    #[serde(default)]
    pub rate: Option<f64>,
    /// Requests admitted at once after a quiet spell, before `rate` paces them. Default: the
    /// rate rounded up (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Requests in flight at once (a stream counts until it ends).
    #[serde(default)]
    pub concurrency: Option<u32>,
}

/// What a rule counts by (`rate_limits.rules[].scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The agent (its id).
    Agent,
    /// Each group the agent is in.
    Group,
    /// The route's name.
    Route,
    /// The model an LLM call asks for (its name, e.g. `gpt-4o`).
    Model,
    /// The MCP tool (`<server>/<tool>`) or REST operation (`<api>/<operation>`) called.
    Tool,
}

impl Scope {
    /// Its name in configuration and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Agent => "agent",
            Scope::Group => "group",
            Scope::Route => "route",
            Scope::Model => "model",
            Scope::Tool => "tool",
        }
    }
}

/// The default `match`: each value separately.
pub const ANY: &str = "*";

fn any() -> String {
    ANY.to_owned()
}

impl RateRule {
    /// The burst the rule allows: as configured, else the rate rounded up (at least 1).
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or_else(|| {
            // A validated rate is finite and positive; the cast saturates.
            self.rate.map_or(1, |r| (r.ceil() as u32).max(1))
        })
    }
}

impl RateLimitsConfig {
    /// `(key, message)` for every mistake.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.sync_interval) {
            errors.push((
                "rate_limits.sync_interval".to_owned(),
                "give 10ms to 60s: how often rate counts are shared with the other replicas".into(),
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            let key = |k: &str| format!("rate_limits.rules[{i}].{k}");
            if rule.rate.is_none() && rule.concurrency.is_none() {
                errors.push((
                    format!("rate_limits.rules[{i}]"),
                    "a rule needs `rate` (requests per second), `concurrency` (requests in flight), or both".into(),
                ));
            }
            if let Some(rate) = rule.rate
                && !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0)
            {
                errors.push((
                    key("rate"),
                    format!("must be a number of requests per second above 0 and at most 1000000, not {rate}"),
                ));
            }
            if rule.burst == Some(0) {
                errors.push((key("burst"), "must be at least 1".into()));
            }
            if rule.burst.is_some() && rule.rate.is_none() {
                errors.push((key("burst"), "a burst needs a `rate` to pace it".into()));
            }
            if rule.concurrency == Some(0) {
                errors.push((key("concurrency"), "must be at least 1".into()));
            }
            if rule.matches.is_empty() {
                errors.push((
                    key("match"),
                    "must name an agent, group, route, model or tool, or be `*` for each".into(),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> RateLimitsConfig {
        serde_saphyr::from_str(yaml).expect("parses")
    }

    #[test]
    fn a_rule_defaults_to_each_value_and_a_burst_of_its_rate() {
        let config = rules("rules:\n  - scope: agent\n    rate: 2.5\n");
        let rule = &config.rules[0];
        assert_eq!((rule.matches.as_str(), rule.burst()), ("*", 3));
        assert_eq!(config.answer, LimitAnswer::Error);
        assert!(config.validate().is_empty());
    }

    #[test]
    fn names_each_mistake_by_its_key() {
        let config = rules(
            "rules:\n  - scope: tool\n  - scope: model\n    rate: -1\n  - scope: route\n    burst: 0\n    concurrency: 0\n",
        );
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "rate_limits.rules[0]",
                "rate_limits.rules[1].rate",
                "rate_limits.rules[2].burst",
                "rate_limits.rules[2].burst",
                "rate_limits.rules[2].concurrency",
            ]
        );
    }
}
