//! `warden budgets …`: what every agent, group and the fleet spent in the current day and
//! month against their budgets, as the replicas sharing the state store have stored it (each
//! adds its spend every `budgets.sync_interval`); and resetting an account's spend, which the
//! store records with who reset it, for every gateway's audit log.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use warden::fleet::budget::{BudgetLimit, BudgetsConfig, FLEET, Period, Scope, index};
use warden::state::fleet::{SpendReset, SpendRow};
use warden::text::revealed_line;

use super::cli_agents::operator_of;

#[derive(Subcommand)]
pub enum BudgetsCommand {
    /// Spend of the current day and month (UTC) per agent, group and the fleet: dollars,
    /// input and output tokens, and what is left of the budgets on each.
    Show {
        /// Only this scope: agent, group or fleet.
        #[arg(long, value_parser = parse_scope)]
        scope: Option<Scope>,
        /// Only this agent or group.
        #[arg(long)]
        name: Option<String>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Forget the spend of the current day and month of one account (--scope and --name), of
    /// a scope (--scope), or of everyone (--all); gateways apply it at their next sync. The
    /// state store keeps who reset what and when, and every running gateway on it writes a
    /// `budget_reset` system record to its audit log at that sync.
    Reset {
        /// The scope to reset: agent, group or fleet (alone: every account of the scope).
        #[arg(long, value_parser = parse_scope)]
        scope: Option<Scope>,
        /// Only this agent or group of --scope.
        #[arg(long, requires = "scope")]
        name: Option<String>,
        /// Every account (with --yes).
        #[arg(long, conflicts_with_all = ["scope", "name"])]
        all: bool,
        /// Confirm --all: every agent's, group's and the fleet's spend is wiped.
        #[arg(long)]
        yes: bool,
        /// Who resets, as every gateway's audit record names them: this name of the issuer
        /// `warden-cli` (default: $USER, else $LOGNAME; without either, --as is required).
        #[arg(long = "as", value_name = "OPERATOR")]
        operator: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::from_stored(text)
        .ok_or_else(|| format!("{text:?} is not a scope: agent, group or fleet"))
}

pub fn budgets(command: BudgetsCommand) -> Result<ExitCode> {
    let path = match &command {
        BudgetsCommand::Show { config, .. } | BudgetsCommand::Reset { config, .. } => config,
    };
    if let BudgetsCommand::Reset {
        all: true,
        yes: false,
        ..
    } = &command
    {
        bail!(
            "--all wipes the spend of every agent, group and the fleet for the current day and \
             month; run again with --yes to do it (or name one account with --scope and --name)"
        );
    }
    if let BudgetsCommand::Reset {
        scope: None,
        all: false,
        ..
    } = &command
    {
        bail!("name what to reset: --scope (and --name), or --all");
    }
    if let BudgetsCommand::Reset { operator, .. } = &command {
        // Refused before the store is touched: a reset names who made it.
        operator_of(operator.clone())?;
    }
    let config = super::load(path.as_deref())?;
    let now = SystemTime::now();
    let periods = (
        i64::from(index(Period::Day, now)),
        i64::from(index(Period::Month, now)),
    );
    super::cli_runtime()?.block_on(async {
        let store = super::open_store(&config).await?;
        let fleet = store.fleet();
        match command {
            BudgetsCommand::Show {
                scope, name, json, ..
            } => {
                let rows = fleet
                    .spend(periods.0, periods.1)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                let accounts: Vec<Account> = accounts(&config.budgets, rows, periods)
                    .into_iter()
                    .filter(|a| scope.is_none_or(|s| a.scope == s))
                    .filter(|a| name.as_deref().is_none_or(|n| a.name == n))
                    .collect();
                if json {
                    let all: Vec<Value> = accounts.iter().map(Account::json).collect();
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    print_table(&accounts);
                }
                Ok(ExitCode::SUCCESS)
            }
            BudgetsCommand::Reset {
                scope,
                name,
                operator,
                ..
            } => {
                let reset = SpendReset {
                    scope: scope.map(|s| s.as_str().to_owned()),
                    name,
                    by: operator_of(operator)?,
                };
                let record = fleet
                    .reset_spend(reset, periods)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                println!(
                    "reset the spend of {} account(s) as {} (reset {}); gateways apply it and \
                     audit it within budgets.sync_interval",
                    record.accounts,
                    revealed_line(&record.reset.by.to_string()),
                    record.id
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// One account in one period, with the budgets on it.
struct Account {
    scope: Scope,
    name: String,
    period: Period,
    /// The day (`2026-12-04`) or month (`2026-12`).
    start: String,
    input_tokens: u64,
    output_tokens: u64,
    micro_usd: u64,
    limits: Vec<BudgetLimit>,
}

impl Account {
    fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// The tightest of its token budgets and of its dollar budgets.
    fn limit(&self) -> (Option<u64>, Option<f64>) {
        let tokens = self.limits.iter().filter_map(|l| l.tokens).min();
        let usd = self
            .limits
            .iter()
            .filter_map(|l| l.usd)
            .min_by(|a, b| a.total_cmp(b));
        (tokens, usd)
    }

    fn usd(&self) -> f64 {
        self.micro_usd as f64 / 1e6
    }

    fn json(&self) -> Value {
        let (tokens, usd) = self.limit();
        json!({
            "scope": self.scope.as_str(),
            "name": self.name,
            "period": self.period.as_str(),
            "period_start": self.start,
            "spent_usd": self.usd(),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "limit": {"tokens": tokens, "usd": usd},
            "remaining": {
                "tokens": tokens.map(|t| t.saturating_sub(self.tokens())),
                "usd": usd.map(|u| (u - self.usd()).max(0.0)),
            },
            "exceeded": tokens.is_some_and(|t| self.tokens() >= t)
                || usd.is_some_and(|u| self.micro_usd >= (u * 1e6).round() as u64),
        })
    }
}

/// The stored spend, with the budgets that bound each account, and the named budgets nothing
/// was spent against yet.
fn accounts(config: &BudgetsConfig, rows: Vec<SpendRow>, (day, month): (i64, i64)) -> Vec<Account> {
    let start = |period: Period, index: i64| match period {
        Period::Day => humantime::format_rfc3339_seconds(
            UNIX_EPOCH + Duration::from_secs(u64::try_from(index).unwrap_or(0) * 86_400),
        )
        .to_string()[..10]
            .to_owned(),
        Period::Month => format!("{}-{:02}", index / 12, index % 12 + 1),
    };
    let limits = |scope: Scope, name: &str, period: Period| -> Vec<BudgetLimit> {
        config
            .limits
            .iter()
            .filter(|l| l.scope == scope && l.period == period)
            .filter(|l| {
                scope == Scope::Fleet || l.name.as_deref().is_some_and(|n| n == "*" || n == name)
            })
            .cloned()
            .collect()
    };
    let mut accounts: Vec<Account> = rows
        .into_iter()
        .filter_map(|row| {
            let (scope, period) = (
                Scope::from_stored(&row.scope)?,
                Period::from_stored(&row.period)?,
            );
            Some(Account {
                limits: limits(scope, &row.name, period),
                start: start(period, row.index),
                scope,
                name: row.name,
                period,
                input_tokens: u64::try_from(row.input_tokens).unwrap_or(0),
                output_tokens: u64::try_from(row.output_tokens).unwrap_or(0),
                micro_usd: u64::try_from(row.micro_usd).unwrap_or(0),
            })
        })
        .collect();
    for limit in &config.limits {
        let name = match (limit.scope, limit.name.as_deref()) {
            (Scope::Fleet, _) => FLEET,
            (_, Some(name)) if name != "*" => name,
            _ => continue,
        };
        let known = accounts
            .iter()
            .any(|a| a.scope == limit.scope && a.name == name && a.period == limit.period);
        if !known {
            let index = match limit.period {
                Period::Day => day,
                Period::Month => month,
            };
            accounts.push(Account {
                scope: limit.scope,
                name: name.to_owned(),
                period: limit.period,
                start: start(limit.period, index),
                input_tokens: 0,
                output_tokens: 0,
                micro_usd: 0,
                limits: limits(limit.scope, name, limit.period),
            });
        }
    }
    accounts.sort_by(|a, b| {
        (a.scope.as_str(), &a.name, a.period.as_str()).cmp(&(
            b.scope.as_str(),
            &b.name,
            b.period.as_str(),
        ))
    });
    accounts
}

fn print_table(accounts: &[Account]) {
    if accounts.is_empty() {
        println!("nothing spent yet this day or month, and no budget configured");
        return;
    }
    for line in table(accounts) {
        println!("{line}");
    }
}

/// The lines of the table of `accounts`, headed.
fn table(accounts: &[Account]) -> Vec<String> {
    let mut lines = vec![
        [
            "SCOPE",
            "NAME",
            "PERIOD",
            "SPENT USD",
            "TOKENS IN",
            "TOKENS OUT",
            "LIMIT",
            "REMAINING",
        ]
        .map(str::to_owned),
    ];
    for a in accounts {
        let (tokens, usd) = a.limit();
        let mut limit = Vec::new();
        let mut left = Vec::new();
        if let Some(usd) = usd {
            limit.push(format!("${usd:.2}"));
            left.push(format!("${:.4}", (usd - a.usd()).max(0.0)));
        }
        if let Some(tokens) = tokens {
            limit.push(format!("{tokens} tokens"));
            left.push(format!("{} tokens", tokens.saturating_sub(a.tokens())));
        }
        let or_dash = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        lines.push([
            a.scope.as_str().to_owned(),
            // An agent's or group's name comes from its token: shown, never acted on.
            revealed_line(&a.name).into_owned(),
            format!("{} {}", a.period.as_str(), a.start),
            format!("{:.4}", a.usd()),
            a.input_tokens.to_string(),
            a.output_tokens.to_string(),
            or_dash(limit),
            or_dash(left),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    lines
        .iter()
        .map(|line| {
            let cells: Vec<String> = line
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_name_with_terminal_escapes_is_shown_not_sent_to_the_terminal() {
        let account = Account {
            scope: Scope::Agent,
            name: "bot\u{1b}]0;owned\u{7}\u{1b}[31m".into(),
            period: Period::Day,
            start: "2026-12-04".into(),
            input_tokens: 1,
            output_tokens: 2,
            micro_usd: 0,
            limits: Vec::new(),
        };
        let lines = table(&[account]);
        assert_eq!(lines.len(), 2);
        assert!(!lines[1].chars().any(char::is_control), "{:?}", lines[1]);
        assert!(
            lines[1].contains("bot\\u{1b}]0;owned\\u{7}\\u{1b}[31m"),
            "{}",
            lines[1]
        );
    }
}
