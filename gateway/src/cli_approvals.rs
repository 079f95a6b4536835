//! `warden approvals …` and `warden approvers …`: deciding approvals from the command line,
//! against the state store of the configuration (the running gateways see the decision at
//! once: the store announces it to every replica).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;

use warden::approval::operator::{Operator, describe};
use warden::state::approvals::VoteDecision;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// List the pending approvals, oldest first.
    List {
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show one approval: what waits, under which policy, who voted.
    Show {
        /// The approval's id (`apr_…`).
        id: String,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Approve an approval, confirmed with a fresh TOTP code of your own enrolment.
    Approve {
        /// The approval's id (`apr_…`).
        id: String,
        #[command(flatten)]
        who: Approver,
    },
    /// Deny an approval, confirmed with a fresh TOTP code of your own enrolment.
    Deny {
        /// The approval's id (`apr_…`).
        id: String,
        #[command(flatten)]
        who: Approver,
    },
}

/// Who decides, and their second factor.
#[derive(clap::Args)]
pub struct Approver {
    /// Your subject, as listed in approvals.operators.
    #[arg(long = "as", value_name = "SUBJECT")]
    subject: String,
    /// The current code of your authenticator app (asked for when not given).
    #[arg(long)]
    code: Option<String>,
    /// Configuration file the gateway runs with: the command acts on its state store
    /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
    /// directory.
    #[arg(short, long, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ApproversCommand {
    /// Enrol an authenticator app for SUBJECT (one of approvals.operators): prints the
    /// otpauth:// URI (and writes its QR code as SVG with --qr); confirm with a first code.
    Enroll {
        /// The approver's subject, as listed in approvals.operators.
        subject: String,
        /// Write the QR code to this file (SVG).
        #[arg(long)]
        qr: Option<PathBuf>,
        /// Confirm the enrolment with a first code of the app instead (after enrolling).
        #[arg(long)]
        confirm: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Remove every second factor of SUBJECT (their authenticator app and passkeys), for an
    /// approver who lost them or whose first enrolment was not theirs. They enrol again in
    /// the console after a fresh sign-in (or with `enroll`). An administrator's step: it needs
    /// the configuration and its state store, and is not in the gateway's audit log.
    Reset {
        /// The approver's subject (their SSO subject, as approvals record it).
        subject: String,
        /// Do it (without it, only say what would be removed).
        #[arg(long)]
        yes: bool,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// The operator of the configuration at `path`, on `runtime`.
async fn operator(config: &warden::config::Config) -> Result<Operator> {
    let secrets = super::offline_secrets(config)?;
    let store =
        warden::state::Store::open_existing(&config.state, &config.data_dir, secrets.as_ref())
            .await
            .map_err(|e| anyhow!("{e}"))?;
    let sealer =
        warden::approval::sealed::sealer(&config.approvals, &config.data_dir, secrets.as_ref())
            .await
            .map_err(|e| anyhow!("{e}"))?;
    let routes =
        warden::route::RouteTable::build(config, secrets.as_ref()).map_err(|e| anyhow!("{e}"))?;
    let policy =
        warden::policy::PolicyEngine::load_with(&config.policy.dir, routes.schema_fragments())
            .map_err(|e| anyhow!("{e}"))?;
    Ok(Operator::new(
        &config.approvals,
        store,
        sealer,
        Arc::new(policy),
    ))
}

fn code_or_prompt(code: Option<String>) -> Result<String> {
    if let Some(code) = code {
        return Ok(code);
    }
    eprint!("TOTP code: ");
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the code from standard input")?;
    Ok(line.trim().to_owned())
}

pub fn approvals(command: ApprovalsCommand) -> Result<ExitCode> {
    let path = match &command {
        ApprovalsCommand::List { config } | ApprovalsCommand::Show { config, .. } => config,
        ApprovalsCommand::Approve { who, .. } | ApprovalsCommand::Deny { who, .. } => &who.config,
    };
    let config = super::load(path.as_deref())?;
    super::cli_runtime()?.block_on(async {
        let operator = operator(&config).await?;
        match command {
            ApprovalsCommand::List { .. } => {
                let pending = operator.pending().await.map_err(|e| anyhow!("{e}"))?;
                if pending.is_empty() {
                    println!("no approval is pending");
                }
                for r in pending {
                    println!(
                        "{}  {}  {}  {}  (policy {})",
                        r.id, r.principal, r.action, r.resource, r.policy
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            ApprovalsCommand::Show { id, .. } => {
                let record = operator.show(&id).await.map_err(|e| anyhow!("{e}"))?;
                print!("{}", describe(&record));
                Ok(ExitCode::SUCCESS)
            }
            ApprovalsCommand::Approve { id, who } => {
                decide(&operator, &id, who, VoteDecision::Approve).await
            }
            ApprovalsCommand::Deny { id, who } => {
                decide(&operator, &id, who, VoteDecision::Deny).await
            }
        }
    })
}

async fn decide(
    operator: &Operator,
    id: &str,
    who: Approver,
    decision: VoteDecision,
) -> Result<ExitCode> {
    let code = code_or_prompt(who.code)?;
    let record = operator
        .decide(id, &who.subject, &code, decision, None)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    println!(
        "{} {} approval {}: it is now {}",
        who.subject,
        match decision {
            VoteDecision::Approve => "approved",
            VoteDecision::Deny => "denied",
        },
        record.id,
        record.status
    );
    Ok(ExitCode::SUCCESS)
}

pub fn approvers(command: ApproversCommand) -> Result<ExitCode> {
    let (subject, qr, confirm, config) = match command {
        ApproversCommand::Enroll {
            subject,
            qr,
            confirm,
            config,
        } => (subject, qr, confirm, config),
        ApproversCommand::Reset {
            subject,
            yes,
            config,
        } => return reset(&subject, yes, config),
    };
    let hint = confirm_hint(&subject, config.as_deref());
    let config = super::load(config.as_deref())?;
    super::cli_runtime()?.block_on(async {
        let operator = operator(&config).await?;
        if let Some(code) = confirm {
            operator
                .confirm(&subject, &code)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            println!("{subject}'s authenticator is enrolled: it confirms approvals from now on");
            return Ok(ExitCode::SUCCESS);
        }
        let enrolment = operator
            .enroll(&subject)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        if let Some(path) = qr {
            std::fs::write(&path, enrolment.qr_svg.as_bytes())
                .with_context(|| format!("cannot write the QR code to {}", path.display()))?;
            eprintln!("QR code written to {}", path.display());
        }
        // The secret is shown once, to the operator enrolling at this terminal.
        println!("{}", &*enrolment.uri);
        eprintln!(
            "Add it to an authenticator app (scan the QR code or type {}), then confirm with \
             `{hint}`.",
            &*enrolment.typed
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// The command that confirms `subject`'s enrolment: with the configuration this one was given,
/// so that the code is checked against the same state store.
fn confirm_hint(subject: &str, config: Option<&std::path::Path>) -> String {
    let quoted = |word: &str| {
        if !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c))
        {
            word.to_owned()
        } else {
            format!("'{}'", word.replace('\'', r"'\''"))
        }
    };
    let mut hint = format!("warden approvers enroll {} --confirm CODE", quoted(subject));
    if let Some(path) = config {
        hint.push_str(" -c ");
        hint.push_str(&quoted(&path.to_string_lossy()));
    }
    hint
}

/// `warden approvers reset SUBJECT`.
fn reset(subject: &str, yes: bool, config: Option<PathBuf>) -> Result<ExitCode> {
    let config = super::load(config.as_deref())?;
    super::cli_runtime()?.block_on(async {
        let operator = operator(&config).await?;
        let held = operator
            .factors_of(subject)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        if held.is_empty() {
            println!("{subject} has no second factor");
            return Ok(ExitCode::SUCCESS);
        }
        if !yes {
            println!(
                "{subject} has {held}; run again with --yes to remove them (they enrol again \
                 after a fresh sign-in)"
            );
            return Ok(ExitCode::from(2));
        }
        let removed = operator.reset(subject).await.map_err(|e| anyhow!("{e}"))?;
        println!("removed {removed} of {subject}: they enrol again after a fresh sign-in");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::confirm_hint;
    use std::path::Path;

    #[test]
    fn the_confirm_hint_keeps_the_configuration_it_was_given() {
        assert_eq!(
            confirm_hint("alice@example.com", Some(Path::new("warden.yaml"))),
            "warden approvers enroll alice@example.com --confirm CODE -c warden.yaml"
        );
        assert_eq!(
            confirm_hint("alice@example.com", None),
            "warden approvers enroll alice@example.com --confirm CODE"
        );
        assert_eq!(
            confirm_hint("Alice Smith", Some(Path::new("/etc/my warden/w.yaml"))),
            "warden approvers enroll 'Alice Smith' --confirm CODE -c '/etc/my warden/w.yaml'"
        );
    }
}
