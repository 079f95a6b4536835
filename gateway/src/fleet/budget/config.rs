//! `budgets:` token and cost budgets per agent, group and fleet, per day and month, and the
//! price table that turns tokens into dollars.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::prices::Prices;

/// `budgets:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawBudgets")]
pub struct BudgetsConfig {
    /// `budgets.prices`: a price table that replaces the shipped one.
    pub prices: Option<PathBuf>,
    /// `budgets.limits`: the budgets.
    pub limits: Vec<BudgetLimit>,
    /// `budgets.sync_interval`: how often a replica adds its spend to the state store and
    /// reads every replica's totals (read at start).
    pub sync_interval: Duration,
    /// `budgets.stale_after`: how long a replica decides on the fleet's totals it last read
    /// before it stops trusting them (unset: three `sync_interval`s).
    pub stale_after: Duration,
    /// `budgets.on_stale`: how a replica decides budgets past `stale_after`.
    pub on_stale: OnStale,
    /// `budgets.drain_timeout`: how long the rest of a response is read, for its usage, once
    /// its agent has gone.
    pub drain_timeout: Duration,
    /// `budgets.drain_bytes`: how many more bytes of a response are read, for its usage, once
    /// its agent has gone.
    pub drain_bytes: u64,
    /// `budgets.reserve`: what an LLM call in flight reserves against its budgets.
    pub reserve: ReserveConfig,
    /// The price table in force (`prices`, else the shipped one), read when the configuration
    /// is loaded.
    pub table: Arc<Prices>,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        BudgetsConfig {
            prices: None,
            limits: Vec::new(),
            sync_interval: SYNC_INTERVAL,
            stale_after: SYNC_INTERVAL * STALE_INTERVALS,
            on_stale: OnStale::Refuse,
            drain_timeout: DRAIN_TIMEOUT,
            drain_bytes: DRAIN_BYTES,
            reserve: ReserveConfig::default(),
            table: Arc::new(Prices::shipped()),
        }
    }
}

/// The section as written.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawBudgets {
    prices: Option<PathBuf>,
    limits: Vec<BudgetLimit>,
    #[serde(with = "humantime_serde")]
    sync_interval: Duration,
    #[serde(with = "humantime_serde")]
    stale_after: Option<Duration>,
    on_stale: OnStale,
    #[serde(with = "humantime_serde")]
    drain_timeout: Duration,
    drain_bytes: u64,
    reserve: ReserveConfig,
}

impl Default for RawBudgets {
    fn default() -> Self {
        RawBudgets {
            prices: None,
            limits: Vec::new(),
            sync_interval: SYNC_INTERVAL,
            stale_after: None,
            on_stale: OnStale::Refuse,
            drain_timeout: DRAIN_TIMEOUT,
            drain_bytes: DRAIN_BYTES,
            reserve: ReserveConfig::default(),
        }
    }
}

/// `budgets.reserve`: what an LLM call reserves against its agent's budgets while it is in
/// flight (`reserve.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReserveConfig {
    /// `budgets.reserve.default_output_tokens`: the output tokens reserved for a call that
    /// sets no output limit (`max_tokens` and the like).
    pub default_output_tokens: u64,
    /// `budgets.reserve.max_output_tokens`: the most output tokens one call reserves for each
    /// choice it asks for, whatever output limit it sets: a call asking for 10^9 tokens does
    /// not hold its group's and the fleet's budgets for all. It bounds only what is held in
    /// flight, not what is charged.
    pub max_output_tokens: u64,
}

impl Default for ReserveConfig {
    fn default() -> Self {
        ReserveConfig {
            default_output_tokens: DEFAULT_OUTPUT_TOKENS,
            max_output_tokens: MAX_OUTPUT_TOKENS,
        }
    }
}

/// `budgets.reserve.default_output_tokens` unless set.
const DEFAULT_OUTPUT_TOKENS: u64 = 4096;

/// `budgets.reserve.max_output_tokens` unless set: the largest output limit a model of the
/// shipped price table accepts (Claude 3.7 Sonnet's, with its extended-output option; o3's is
/// 100 000, Gemini 2.5's 65 536).
const MAX_OUTPUT_TOKENS: u64 = 128_000;

/// `budgets.sync_interval` unless set.
const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// `budgets.drain_timeout` unless set.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// `budgets.drain_bytes` unless set: 16 MiB.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// `budgets.stale_after` unless set: this many `sync_interval`s.
const STALE_INTERVALS: u32 = 3;

/// How a replica decides budgets once the fleet's totals it last read are older than
/// `budgets.stale_after` (the state store does not answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStale {
    /// Refuse every action a budget bounds and a policy judges by its budget
    /// (`budget_unavailable`): no budget is overspent, nothing bounded goes through.
    #[default]
    Refuse,
    /// Spend this replica's share of what was left at the last read (1/N, N the replicas
    /// seen then): traffic goes on, the budget holds if every replica does the same, and a
    /// replica that went away leaves its share unspent.
    Share,
}

impl OnStale {
    /// Its name in the configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OnStale::Refuse => "refuse",
            OnStale::Share => "share",
        }
    }
}

impl TryFrom<RawBudgets> for BudgetsConfig {
    type Error = String;

    fn try_from(raw: RawBudgets) -> Result<Self, String> {
        let table = match &raw.prices {
            Some(path) => Prices::load(path).map_err(|e| format!("prices: {e}"))?,
            None => Prices::shipped(),
        };
        Ok(BudgetsConfig {
            prices: raw.prices,
            limits: raw.limits,
            sync_interval: raw.sync_interval,
            stale_after: raw
                .stale_after
                .unwrap_or(raw.sync_interval * STALE_INTERVALS),
            on_stale: raw.on_stale,
            drain_timeout: raw.drain_timeout,
            drain_bytes: raw.drain_bytes,
            reserve: raw.reserve,
            table: Arc::new(table),
        })
    }
}

/// One budget: what one agent, group or the fleet may spend in a day or a month.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLimit {
    /// Whose spend it bounds.
    pub scope: Scope,
    /// The agent's id or the group's name; `*` for each agent (or each group) on its own.
    /// None for the fleet.
    #[serde(default)]
    pub name: Option<String>,
    /// Over which period spend is counted (calendar days and months, UTC).
    pub period: Period,
    /// Input and output tokens, together.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// US dollars, priced by the price table.
    #[serde(default)]
    pub usd: Option<f64>,
}

/// Whose spend a budget bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// One agent (a principal id).
    Agent,
    /// The agents of one group.
    Group,
    /// Every agent.
    Fleet,
}

impl Scope {
    /// The scope `as_str` names.
    pub fn from_stored(text: &str) -> Option<Scope> {
        match text {
            "agent" => Some(Scope::Agent),
            "group" => Some(Scope::Group),
            "fleet" => Some(Scope::Fleet),
            _ => None,
        }
    }

    /// Its name in metrics and `warden budgets show`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Agent => "agent",
            Scope::Group => "group",
            Scope::Fleet => "fleet",
        }
    }
}

/// The period a budget counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// The calendar day, UTC.
    Day,
    /// The calendar month, UTC.
    Month,
}

impl Period {
    /// Both, in the order they are reported.
    pub const ALL: [Period; 2] = [Period::Day, Period::Month];

    /// The period `as_str` names.
    pub fn from_stored(text: &str) -> Option<Period> {
        match text {
            "day" => Some(Period::Day),
            "month" => Some(Period::Month),
            _ => None,
        }
    }

    /// Its name in metrics and `warden budgets show`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Month => "month",
        }
    }
}

impl BudgetsConfig {
    /// `(key, message)` for every mistake.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&self.sync_interval) {
            errors.push((
                "budgets.sync_interval".to_owned(),
                "give 10ms to 60s: how often spend is shared with the other replicas".into(),
            ));
        }
        if self.stale_after < self.sync_interval * 2 {
            errors.push((
                "budgets.stale_after".to_owned(),
                format!(
                    "give at least two budgets.sync_interval ({:?}): a replica reads the fleet's \
                     spend once per interval, so a shorter bound would count a working store \
                     as away",
                    self.sync_interval * 2
                ),
            ));
        }
        if self.reserve.default_output_tokens == 0 {
            errors.push((
                "budgets.reserve.default_output_tokens".to_owned(),
                "must be at least 1: a call that sets no output limit can generate tokens, and \
                 reserving none would let calls in flight overspend a budget unseen"
                    .into(),
            ));
        }
        if self.reserve.max_output_tokens < self.reserve.default_output_tokens {
            errors.push((
                "budgets.reserve.max_output_tokens".to_owned(),
                format!(
                    "must be at least budgets.reserve.default_output_tokens ({}): it bounds \
                     what one call reserves for its output, the default included",
                    self.reserve.default_output_tokens
                ),
            ));
        }
        for (i, limit) in self.limits.iter().enumerate() {
            let key = format!("budgets.limits[{i}]");
            match (limit.scope, &limit.name) {
                (Scope::Fleet, Some(_)) => errors.push((
                    format!("{key}.name"),
                    "a fleet budget has no name: remove it".into(),
                )),
                (Scope::Agent | Scope::Group, None) => errors.push((
                    format!("{key}.name"),
                    format!(
                        "a {} budget names its {} (or `*` for each on its own)",
                        limit.scope.as_str(),
                        limit.scope.as_str()
                    ),
                )),
                (_, Some(name)) if name.is_empty() => {
                    errors.push((format!("{key}.name"), "cannot be empty".into()));
                }
                _ => {}
            }
            if limit.tokens.is_none() && limit.usd.is_none() {
                errors.push((
                    key.clone(),
                    "set `tokens`, `usd` or both: a budget without either bounds nothing".into(),
                ));
            }
            if limit.tokens == Some(0) {
                errors.push((format!("{key}.tokens"), "must be at least 1".into()));
            }
            if let Some(usd) = limit.usd
                && !(usd.is_finite() && usd > 0.0)
            {
                errors.push((
                    format!("{key}.usd"),
                    format!("{usd} is not a budget: give US dollars, more than 0"),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<BudgetsConfig, String> {
        serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn limits_parse_and_mistakes_are_named() {
        let config = parse(
            "limits:\n\
             - { scope: agent, name: '*', period: day, tokens: 1000 }\n\
             - { scope: fleet, name: all, period: month }\n\
             - { scope: group, period: day, usd: -2 }\n",
        )
        .expect("parses");
        assert_eq!(config.limits[0].scope, Scope::Agent);
        let errors = config.validate();
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "budgets.limits[1].name",
                "budgets.limits[1]",
                "budgets.limits[2].name",
                "budgets.limits[2].usd"
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn a_missing_price_file_is_an_error_naming_it() {
        let err = parse("prices: /nonexistent/prices.yaml").expect_err("missing file");
        assert!(err.contains("/nonexistent/prices.yaml"), "{err}");
    }

    #[test]
    fn stale_after_follows_the_interval_unless_set_and_must_leave_room_for_two() {
        let config = parse("sync_interval: 2s").expect("parses");
        assert_eq!(config.stale_after, Duration::from_secs(6));
        assert_eq!(config.on_stale, OnStale::Refuse);
        let config = parse("stale_after: 30s\non_stale: share").expect("parses");
        assert_eq!(
            (config.stale_after, config.on_stale),
            (Duration::from_secs(30), OnStale::Share)
        );
        let errors = parse("sync_interval: 1s\nstale_after: 1500ms")
            .expect("parses")
            .validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "budgets.stale_after");
        assert!(parse("on_stale: ignore").is_err(), "refuse or share only");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse("limit: []").is_err());
        assert!(parse("reserve: { default_output: 10 }").is_err());
    }

    #[test]
    fn the_default_output_reserved_is_4096_unless_set_and_never_zero() {
        assert_eq!(
            parse("{}").expect("parses").reserve.default_output_tokens,
            4096
        );
        let config = parse("reserve: { default_output_tokens: 1000 }").expect("parses");
        assert_eq!(config.reserve.default_output_tokens, 1000);
        let errors = parse("reserve: { default_output_tokens: 0 }")
            .expect("parses")
            .validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "budgets.reserve.default_output_tokens");
    }

    #[test]
    fn the_output_one_call_reserves_is_capped_at_128000_unless_set_and_not_below_the_default() {
        assert_eq!(
            parse("{}").expect("parses").reserve.max_output_tokens,
            128_000
        );
        let config = parse("reserve: { max_output_tokens: 32000 }").expect("parses");
        assert_eq!(config.reserve.max_output_tokens, 32_000);
        assert_eq!(config.validate(), []);
        let errors = parse("reserve: { default_output_tokens: 8192, max_output_tokens: 4096 }")
            .expect("parses")
            .validate();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "budgets.reserve.max_output_tokens");
        assert!(errors[0].1.contains("8192"), "{errors:?}");
    }
}
