//! `warden agents …`: quarantine an agent or a group, release it, list what is quarantined;
//! against the state store of the configuration. Every running gateway on that store applies
//! the change (at once on PostgreSQL, within `fleet.quarantine.refresh_interval` on SQLite)
//! and records it in its audit log.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;

use warden::fleet::quarantine::until::{parse_until, rfc3339};
use warden::state::pins::now_ms;
use warden::state::quarantine::{Actor, QuarantineRecord, Target};
use warden::text::revealed_line;

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Quarantine an agent (its principal id) or, with --group, every agent of a group: their
    /// new requests are refused with the reason, their streams, MCP sessions and egress
    /// tunnels cut.
    Quarantine {
        #[command(flatten)]
        target: TargetArgs,
        /// Why: shown to the agent in every refusal, and recorded.
        #[arg(long, default_value = "quarantined by an operator")]
        reason: String,
        /// When it ends by itself: a duration from now (`30m`, `2h`) or an RFC 3339 time
        /// (`2026-12-05T09:00:00Z`); without it, until released.
        #[arg(long, value_parser = parse_until)]
        until: Option<i64>,
        /// Who quarantines, as recorded: this name of the issuer `warden-cli` (default: $USER,
        /// else $LOGNAME; without either, --as is required).
        #[arg(long = "as", value_name = "OPERATOR")]
        operator: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Release an agent or, with --group, a group from quarantine. Every gateway on the state
    /// store records the release with who released it; exits with status 1 when the target
    /// was not quarantined.
    Release {
        #[command(flatten)]
        target: TargetArgs,
        /// Who releases, as recorded by every gateway: this name of the issuer `warden-cli`
        /// (default: $USER, else $LOGNAME; without either, --as is required).
        #[arg(long = "as", value_name = "OPERATOR")]
        operator: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the agents and groups in quarantine.
    List {
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// An agent, or a group with --group.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// The agent's principal id (as in the audit log).
    name: Option<String>,
    /// A group: every agent in it.
    #[arg(long)]
    group: Option<String>,
}

impl TargetArgs {
    fn target(self) -> Result<Target> {
        match (self.name, self.group) {
            (Some(name), None) if !name.trim().is_empty() => Ok(Target::Agent(name)),
            (None, Some(group)) if !group.trim().is_empty() => Ok(Target::Group(group)),
            _ => bail!("name one agent, or one group with --group"),
        }
    }
}

/// The operator of the command line, of the issuer `warden-cli`: `--as`, else $USER, else
/// $LOGNAME; refused when none names anyone ([`super::operator_name`]).
pub fn operator_of(named: Option<String>) -> Result<Actor> {
    Ok(Actor::cli(&super::operator_name(named)?))
}

fn describe(record: &QuarantineRecord) -> String {
    let until = record.until_ms.map_or("until released".to_owned(), |ms| {
        format!("until {}", rfc3339(ms))
    });
    // Names, the trigger and the reason may come from an agent (an automatic quarantine):
    // shown, never acted on by the terminal.
    format!(
        "{}  {}  since {}  {}  by {}  ({}): {}",
        record.target.kind(),
        revealed_line(record.target.name()),
        rfc3339(record.created_ms),
        until,
        revealed_line(&record.by.to_string()),
        revealed_line(&record.trigger),
        revealed_line(&record.reason)
    )
}

pub fn agents(command: AgentsCommand) -> Result<ExitCode> {
    let path = match &command {
        AgentsCommand::Quarantine { config, .. }
        | AgentsCommand::Release { config, .. }
        | AgentsCommand::List { config } => config,
    };
    let config = super::load(path.as_deref())?;
    super::cli_runtime()?.block_on(async {
        let store = super::open_store(&config).await?;
        let repository = store.quarantine();
        match command {
            AgentsCommand::Quarantine {
                target,
                reason,
                until,
                operator,
                ..
            } => {
                let reason = reason.trim().to_owned();
                if reason.is_empty() {
                    bail!("--reason is empty; write the sentence the agent should see");
                }
                let record = QuarantineRecord {
                    target: target.target()?,
                    reason,
                    trigger: "manual".into(),
                    by: operator_of(operator)?,
                    created_ms: now_ms(),
                    until_ms: until,
                };
                repository
                    .quarantine(record.clone())
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                println!("quarantined: {}", describe(&record));
                Ok(ExitCode::SUCCESS)
            }
            AgentsCommand::Release {
                target, operator, ..
            } => {
                let target = target.target()?;
                let by = operator_of(operator)?;
                match repository.release(&target, &by).await.map_err(|e| {
                    anyhow!("{e}; `warden agents list` shows whether it is still quarantined")
                })? {
                    Some(record) => {
                        println!("released by {by}: {}", describe(&record));
                        Ok(ExitCode::SUCCESS)
                    }
                    None => {
                        eprintln!("{target} is not quarantined");
                        Ok(ExitCode::FAILURE)
                    }
                }
            }
            AgentsCommand::List { .. } => {
                let all = repository.active().await.map_err(|e| anyhow!("{e}"))?;
                if all.is_empty() {
                    println!("no agent or group is quarantined");
                }
                for record in all {
                    println!("{}", describe(&record));
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_quarantine_shows_terminal_escapes_in_names_and_reasons_never_sends_them() {
        let record = QuarantineRecord {
            target: Target::Agent("bot\u{1b}]0;owned\u{7}\u{1b}[31m".into()),
            reason: "canary\nseen \u{1b}[2J".into(),
            trigger: "canary".into(),
            by: Actor::cli("warden"),
            created_ms: 0,
            until_ms: None,
        };
        let line = describe(&record);
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains("bot\\u{1b}]0;owned\\u{7}\\u{1b}[31m"),
            "{line}"
        );
        assert!(line.contains("canary\\nseen \\u{1b}[2J"), "{line}");
    }
}
