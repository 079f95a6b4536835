//! `warden token …`: issue Warden's own agent tokens, revoke them (one by its id, or every
//! token of an agent issued until now), list the revocations; against the state store of the
//! configuration. Every running gateway on that store applies a revocation (at once on
//! PostgreSQL, within `identity.warden_issuer.refresh_interval` on SQLite) and records it in
//! its audit log.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;

use warden::fleet::quarantine::until::rfc3339;
use warden::identity::revocation::{revocation, until_token_expires};
use warden::state::revocations::{RevocationRecord, Revoked};
use warden::text::revealed_line;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print a new agent token on stdout.
    Issue {
        /// Agent id (the token's subject; Cedar `Agent::"<id>"`).
        #[arg(long)]
        agent: String,
        /// Lifetime, e.g. 15m, 1h, 30d; at most identity.warden_issuer.max_ttl (30d unless
        /// configured).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Extra claim, KEY=VALUE (VALUE parsed as JSON when it is JSON), e.g.
        /// --claim fleet=billing --claim 'groups=["eng","oncall"]'. Repeatable.
        #[arg(long = "claim", value_name = "KEY=VALUE")]
        claims: Vec<String>,
        /// Configuration file (for data_dir and identity.warden_issuer).
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
        /// Create the signing key when there is none yet (a gateway started afterwards with
        /// the same data_dir signs and verifies with it). Without it, a missing key is an
        /// error: a gateway refuses tokens signed by any key but its own.
        #[arg(long)]
        create_key: bool,
    },
    /// Revoke Warden agent tokens: one token (--id, or the token itself with --token), or
    /// every token of an agent issued until now (--agent). Their requests are refused with
    /// 401 `token_revoked` on every gateway on the state store; tokens issued afterwards work.
    Revoke {
        #[command(flatten)]
        target: RevokeArgs,
        /// Why: shown to the agent in every refusal, and recorded.
        #[arg(long, default_value = "revoked by an operator")]
        reason: String,
        /// Who revokes, as recorded: this name of the issuer `warden-cli` (default: $USER,
        /// else $LOGNAME; without either, --as is required).
        #[arg(long = "as", value_name = "OPERATOR")]
        operator: Option<String>,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the revocations kept (each until every token it stops has expired).
    Revocations {
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state`, else `<data_dir>/state.db`). Relative paths in it are taken from the working
        /// directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// One token by its id or itself, or every token of an agent.
#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// The token's id (its `jti` claim).
    #[arg(long)]
    id: Option<String>,
    /// The token itself (`-`: read it from standard input); its `jti` is read from it, and
    /// its `exp`, until which the revocation is kept.
    #[arg(long)]
    token: Option<String>,
    /// The agent (its principal id): every token of it issued until now.
    #[arg(long)]
    agent: Option<String>,
}

impl RevokeArgs {
    /// What is revoked, and the token itself when it was given.
    fn target(self) -> Result<(Revoked, Option<String>)> {
        match (self.id, self.token, self.agent) {
            (Some(id), None, None) if !id.trim().is_empty() => Ok((Revoked::Token(id), None)),
            (None, Some(token), None) => {
                let (id, text) = token_id(&token)?;
                Ok((Revoked::Token(id), Some(text)))
            }
            (None, None, Some(agent)) if !agent.is_empty() => Ok((Revoked::Agent(agent), None)),
            _ => bail!("name one token (--id or --token) or one agent (--agent)"),
        }
    }
}

/// The `jti` of `token` (`-`: the token on standard input), read without verifying it (a
/// revocation of an id stops only the token that carries it), and the token's text.
fn token_id(token: &str) -> Result<(String, String)> {
    let mut text = token.to_owned();
    if token == "-" {
        text.clear();
        std::io::stdin().read_to_string(&mut text)?;
    }
    let claims: serde_json::Map<String, serde_json::Value> =
        jsonwebtoken::dangerous::insecure_decode_claims(text.trim())
            .map_err(|_| anyhow!("--token is not a JWT (header.payload.signature)"))?;
    match claims.get("jti").and_then(|v| v.as_str()) {
        Some(id) if !id.is_empty() => Ok((id.to_owned(), text.trim().to_owned())),
        _ => bail!(
            "the token has no `jti` claim: revoke every token of its agent with --agent {:?}",
            claims
                .get("sub")
                .and_then(|v| v.as_str())
                .unwrap_or("<agent>")
        ),
    }
}

fn describe(record: &RevocationRecord) -> String {
    format!(
        "{}  since {}  kept until {}  by {}: {}",
        revealed_line(&record.target.to_string()),
        rfc3339(record.created_ms),
        rfc3339(record.expires_ms),
        revealed_line(&record.by.to_string()),
        revealed_line(&record.reason)
    )
}

pub fn token(command: TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Issue {
            agent,
            ttl,
            claims,
            config,
            create_key,
        } => {
            let config = super::load(config.as_deref())?;
            let claims = claims
                .iter()
                .map(|c| {
                    warden::identity::parse_claim_arg(c).map_err(|e| anyhow!("--claim {c:?}: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            if !config.identity.warden_issuer.enabled {
                bail!(
                    "identity.warden_issuer.enabled is false: Warden does not accept its own tokens in this configuration"
                );
            }
            let issuer = super::token_issuer(&config, create_key)?;
            println!("{}", issuer.issue(&agent, ttl, &claims)?);
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke {
            target,
            reason,
            operator,
            config,
        } => {
            let reason = reason.trim().to_owned();
            if reason.is_empty() {
                bail!("--reason is empty; write the sentence the agent should see");
            }
            let (target, token) = target.target()?;
            let by = super::cli_agents::operator_of(operator)?;
            let config = super::load(config.as_deref())?;
            let mut record = revocation(target, reason, by);
            // Kept until the token's own expiry only when its signature says that expiry is
            // the token's (an altered or another issuer's copy could name an earlier one).
            if let Some(token) = token {
                match signed_exp(&config, &token) {
                    Some(exp) => until_token_expires(&mut record, exp),
                    None => eprintln!(
                        "warden: the token's signature does not verify with this gateway's \
                         signing key: its expiry is not trusted, the revocation is kept for \
                         the longest lifetime a token may have"
                    ),
                }
            }
            super::cli_runtime()?.block_on(async {
                let store = super::open_store(&config).await?;
                store
                    .revocations()
                    .revoke(record.clone())
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                println!("revoked: {}", describe(&record));
                Ok(ExitCode::SUCCESS)
            })
        }
        TokenCommand::Revocations { config } => {
            let config = super::load(config.as_deref())?;
            super::cli_runtime()?.block_on(async {
                let store = super::open_store(&config).await?;
                let all = store
                    .revocations()
                    .active()
                    .await
                    .map_err(|e| anyhow!("{e}"))?;
                if all.is_empty() {
                    println!("no token is revoked");
                }
                for record in all {
                    println!("{}", describe(&record));
                }
                Ok(ExitCode::SUCCESS)
            })
        }
    }
}

/// The `exp` of `token` when the gateway's own signing key signed it (read, never made).
fn signed_exp(config: &warden::config::Config, token: &str) -> Option<u64> {
    let cfg = &config.identity.warden_issuer;
    if cfg.key.is_none() && !warden::identity::issuer_key_path(cfg, &config.data_dir).exists() {
        return None;
    }
    super::token_issuer(config, false).ok()?.signed_exp(token)
}
