//! `warden canary …`: issue, list and revoke canary tokens in the state store of the
//! configuration; every running replica looks for a new canary within
//! `canaries.refresh_interval`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use warden::canary::mint::{Kind, mint};

#[derive(Subcommand)]
pub enum CanaryCommand {
    /// Mint a canary token that looks real and record it; plant what it prints (or the file
    /// it writes) in an agent's environment. Any appearance of it in outbound traffic is
    /// denied, recorded and alerted.
    Issue {
        /// What to mint.
        #[arg(long, value_enum)]
        kind: Kind,
        /// What it is for (where it is planted), shown by `list` and in alerts.
        #[arg(long, default_value = "")]
        label: String,
        /// The host a `url` canary lives below (default: canaries.url_host).
        #[arg(long)]
        host: Option<String>,
        /// Where a `document` canary is written (a new file).
        #[arg(long, required_if_eq("kind", "document"))]
        out: Option<PathBuf>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the canaries: id, kind, label, when issued, and whether revoked (never their
    /// values).
    List {
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Stop looking for a canary (its record stays).
    Revoke {
        /// The canary's id (`cn_…`).
        id: String,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Runs `command` against the state store of its configuration.
pub fn canary(command: CanaryCommand) -> Result<ExitCode> {
    let path = match &command {
        CanaryCommand::Issue { config, .. }
        | CanaryCommand::List { config }
        | CanaryCommand::Revoke { config, .. } => config.clone(),
    };
    let config = super::load(path.as_deref())?;
    super::cli_runtime()?.block_on(async {
        let store = super::open_store(&config).await?;
        let canaries = store.canaries();
        match command {
            CanaryCommand::Issue {
                kind,
                label,
                host,
                out,
                ..
            } => {
                let host = host.or_else(|| config.canaries.url_host.clone());
                let minted = mint(kind, &label, host.as_deref())?;
                if let Some(out) = &out {
                    let mut file = warden::private_files::options()
                        .write(true)
                        .create_new(true)
                        .open(out)
                        .with_context(|| {
                            format!(
                                "cannot create {} (an existing file is never overwritten)",
                                out.display()
                            )
                        })?;
                    file.write_all(minted.planted.as_bytes())
                        .with_context(|| format!("cannot write {}", out.display()))?;
                }
                let id = minted.record.id.clone();
                canaries
                    .issue(minted.record)
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                eprintln!(
                    "issued canary {id} ({}); running gateways look for it within {}",
                    kind.as_str(),
                    humantime::format_duration(config.canaries.refresh_interval)
                );
                match out {
                    Some(out) => println!("{id} {}", out.display()),
                    None => print!("{}", minted.planted),
                }
                Ok(ExitCode::SUCCESS)
            }
            CanaryCommand::List { .. } => {
                let list = canaries.list().await.map_err(|e| anyhow!("{e}"))?;
                println!(
                    "{:<20} {:<10} {:<25} {:<8} LABEL",
                    "ID", "KIND", "ISSUED", "STATE"
                );
                for c in list {
                    let issued = std::time::UNIX_EPOCH
                        + std::time::Duration::from_millis(
                            u64::try_from(c.created_ms).unwrap_or(0),
                        );
                    println!(
                        "{:<20} {:<10} {:<25} {:<8} {}",
                        c.id,
                        c.kind,
                        humantime::format_rfc3339_seconds(issued).to_string(),
                        if c.revoked_ms.is_some() {
                            "revoked"
                        } else {
                            "live"
                        },
                        c.label
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            CanaryCommand::Revoke { id, .. } => {
                if !canaries.revoke(&id).await.map_err(|e| anyhow!("{e}"))? {
                    bail!("no live canary {id}: see `warden canary list`");
                }
                println!("revoked {id}");
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}
