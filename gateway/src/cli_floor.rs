//! `warden policy floor …`: the fleet's rollback floors of signed policy bundles in the state
//! store. `show` lists them (and the resets recorded); `reset` removes one on purpose, so that
//! an older signed bundle may load again, and records who removed it, why and when: the
//! command cannot append to the gateways' audit logs, so each Warden on the store names the
//! reset in its own log when it next checks the floors (`policy/floor_reset.rs`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, anyhow, bail};
use clap::{Subcommand, ValueEnum};

use warden::policy::{fleet_floor, floor_reset};
use warden::state::bundle_floors::{BundleSet, FloorReset, Resetter, StoredFloor};

#[derive(Subcommand)]
pub enum FloorCommand {
    /// List every rollback floor in the state store: the set (enforced, shadow), the
    /// fingerprint of the trusted keys it is kept for, when the newest bundle loaded was
    /// signed and when the floor was last raised; then the resets recorded.
    Show {
        /// Print JSON (`floors`, `resets`) instead of a table.
        #[arg(long)]
        json: bool,
        /// Configuration file the gateway runs with: the command reads its state store
        /// (`state.postgres`, else `<data_dir>/state.db`). Relative paths in it are taken from
        /// the working directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Remove a set's rollback floor, so that a bundle signed before it may load (to go back
    /// to an older release on purpose), and record who removed it and why. Each Warden on the
    /// store names the reset in its audit log at its next start or reload, lifts its own floor
    /// at or below the one removed when the reset is signed (`--sign-key`), and names the
    /// reset in the record of a bundle it loads below it.
    Reset {
        /// The set whose floor is removed.
        #[arg(long, value_enum)]
        set: SetArg,
        /// The fingerprint of the trusted keys the floor is kept for, as `show` lists it
        /// (default: that of the configuration's `policy.bundle.public_keys`).
        #[arg(long, value_name = "FINGERPRINT")]
        keys: Option<String>,
        /// Why, as the audit records of the reset say (required).
        #[arg(long)]
        reason: Option<String>,
        /// Who resets it, as recorded (default: $USER, else $LOGNAME).
        #[arg(long = "as", value_name = "NAME")]
        operator: Option<String>,
        /// The private key (PEM, as `warden policy keygen` writes it) of one of the
        /// `policy.bundle.public_keys`, to sign the reset with: only a signed reset lifts the
        /// gateways' own floors (an unsigned one lowers the fleet's floor in the store only,
        /// and each gateway keeps its own).
        #[arg(long, value_name = "PATH")]
        sign_key: Option<PathBuf>,
        /// Only say which floor would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Configuration file the gateway runs with: the command acts on its state store
        /// (`state.postgres`, else `<data_dir>/state.db`). Relative paths in it are taken from
        /// the working directory.
        #[arg(short, long, env = "WARDEN_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// A policy set, as `--set` names it.
#[derive(Clone, Copy, ValueEnum)]
pub enum SetArg {
    Enforced,
    Shadow,
}

impl From<SetArg> for BundleSet {
    fn from(set: SetArg) -> BundleSet {
        match set {
            SetArg::Enforced => BundleSet::Enforced,
            SetArg::Shadow => BundleSet::Shadow,
        }
    }
}

pub fn floor(command: FloorCommand) -> Result<ExitCode> {
    let path = match &command {
        FloorCommand::Show { config, .. } | FloorCommand::Reset { config, .. } => config.clone(),
    };
    let config = super::load(path.as_deref())?;
    // Refused before the store is opened: a reset must say why.
    let resetter = match &command {
        FloorCommand::Reset {
            reason,
            operator,
            dry_run: false,
            ..
        } => Some(resetter(operator.clone(), reason.clone())?),
        _ => None,
    };
    let signing = match &command {
        FloorCommand::Reset {
            sign_key: Some(path),
            dry_run: false,
            ..
        } => Some(signing_key(path)?),
        _ => None,
    };
    // The fingerprint of the configuration's trusted keys, when it names any.
    let configured = (!config.policy.bundle.public_keys.is_empty())
        .then(|| fleet_floor::trusted_keys(&config.policy))
        .transpose()
        .map_err(|e| anyhow!("policy.bundle.public_keys: {e}"))?;
    super::cli_runtime()?.block_on(async {
        let store = super::open_store(&config).await?;
        let floors = store.bundle_floors();
        let failed = |e: warden::state::StateError| anyhow!("{e}");
        let all = floors.all().await.map_err(failed)?;
        match command {
            FloorCommand::Show { json, .. } => {
                let mut keys: Vec<&str> = all.iter().map(|f| f.trusted_keys.as_str()).collect();
                keys.extend(configured.as_deref());
                keys.sort_unstable();
                keys.dedup();
                let mut resets = Vec::new();
                for keys in keys {
                    resets.extend(floors.resets(keys).await.map_err(failed)?);
                }
                if json {
                    println!("{}", show_json(&all, &resets));
                } else {
                    print!("{}", show_table(&all, &resets));
                }
                Ok(ExitCode::SUCCESS)
            }
            FloorCommand::Reset { set, keys, .. } => {
                let trust = configured
                    .is_some()
                    .then(|| warden::policy::bundle::Trust::load(&config.policy.bundle.public_keys))
                    .transpose()
                    .map_err(|e| anyhow!("policy.bundle.public_keys: {e}"))?;
                let set = BundleSet::from(set);
                let keys = chosen_keys(keys, configured.clone(), &all, set)?;
                let Some(floor) = all
                    .iter()
                    .find(|f| f.trusted_keys == keys && f.set == set)
                else {
                    println!(
                        "no {} floor is kept for {keys}: nothing to reset",
                        set.as_str()
                    );
                    return Ok(ExitCode::SUCCESS);
                };
                let Some(mut by) = resetter else {
                    println!(
                        "would reset the {} floor for {keys}: bundle signed {}, raised {} (dry run: nothing changed)",
                        set.as_str(),
                        signed(floor),
                        raised(floor.raised_ms)
                    );
                    return Ok(ExitCode::SUCCESS);
                };
                if let Some(key) = &signing {
                    let signature = floor_reset::sign(floor, &by, key);
                    // A key the gateways do not trust would sign a reset they all ignore.
                    let statement = floor_reset::statement(floor, &by);
                    if let Some(trust) = trust.as_ref().filter(|_| configured.as_deref() == Some(keys.as_str()))
                        && !warden::policy::bundle::verify_statement(&statement, &signature, trust)
                    {
                        bail!(
                            "--sign-key: the key is not one of policy.bundle.public_keys, so no gateway would accept the reset; sign with the private key of one of them (nothing changed)"
                        );
                    }
                    by.signature = Some(signature);
                }
                let lifts = if by.signature.is_some() {
                    "signed: each lifts its own floor at or below the one removed"
                } else {
                    "unsigned (no --sign-key): each keeps its own floor, so only a gateway without one (a new data_dir) may load the older bundle"
                };
                match floors
                    .reset(&keys, set, floor.signed_ns, &by)
                    .await
                    .map_err(failed)?
                {
                    Some(reset) => println!(
                        "reset the {} floor for {keys} (bundle signed {}, raised {}), recorded as reset {} by {}, {lifts}: each Warden on the store names it in its audit log at its next start or reload; reload them to load the older bundle",
                        set.as_str(),
                        signed(&reset.floor),
                        raised(reset.floor.raised_ms),
                        reset.id,
                        reset.by.by
                    ),
                    None => println!(
                        "the {} floor for {keys} changed or went since it was read (a gateway loaded a newer bundle, or another reset): nothing was reset; run the command again",
                        set.as_str()
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Who resets a floor and why: `--as`, else $USER, else $LOGNAME; a reset without a reason is
/// refused, for the audit records would not say why the floor went.
fn resetter(operator: Option<String>, reason: Option<String>) -> Result<Resetter> {
    let Some(reason) = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
    else {
        bail!(
            "--reason is required: say why the floor is reset (the audit record of every Warden on the store says it), e.g. --reason 'withdraw release 2026-12-01'"
        );
    };
    Ok(Resetter {
        by: super::operator_name(operator)?,
        reason,
        at_ms: warden::state::pins::now_ms(),
        signature: None,
    })
}

/// The private key `--sign-key` names.
fn signing_key(path: &std::path::Path) -> Result<ed25519_dalek::SigningKey> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("--sign-key {}: cannot read the key: {e}", path.display()))?;
    warden::keys::from_pem(&pem, &path.display().to_string()).map_err(|e| {
        anyhow!(
            "--sign-key: {e} (give the private key `warden policy keygen` wrote, not the .pub file)"
        )
    })
}

/// The fingerprint of the floor to reset: `--keys`, else the configuration's trusted keys',
/// else the only one with a floor of `set`.
fn chosen_keys(
    keys: Option<String>,
    configured: Option<String>,
    all: &[StoredFloor],
    set: BundleSet,
) -> Result<String> {
    if let Some(keys) = keys.or(configured) {
        return Ok(keys);
    }
    let mut kept: Vec<&str> = all
        .iter()
        .filter(|f| f.set == set)
        .map(|f| f.trusted_keys.as_str())
        .collect();
    match kept.len() {
        1 => Ok(kept.remove(0).to_owned()),
        0 => bail!(
            "no {} floor is kept in the state store, and the configuration names no policy.bundle.public_keys: nothing to reset",
            set.as_str()
        ),
        _ => bail!(
            "{} floors are kept for several sets of trusted keys ({}): name one with --keys FINGERPRINT (`warden policy floor show` lists them)",
            set.as_str(),
            kept.join(", ")
        ),
    }
}

/// When the floor's bundle was signed.
fn signed(floor: &StoredFloor) -> String {
    humantime::format_rfc3339_nanos(fleet_floor::time(floor.signed_ns)).to_string()
}

/// A time in milliseconds since the Unix epoch.
fn raised(ms: i64) -> String {
    let at =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(at).to_string()
}

fn show_json(floors: &[StoredFloor], resets: &[FloorReset]) -> serde_json::Value {
    serde_json::json!({
        "floors": floors.iter().map(|f| serde_json::json!({
            "set": f.set.as_str(),
            "trusted_keys": f.trusted_keys,
            "signed": signed(f),
            "signed_ns": f.signed_ns,
            "raised": raised(f.raised_ms),
        })).collect::<Vec<_>>(),
        "resets": resets.iter().map(FloorReset::detail).collect::<Vec<_>>(),
    })
}

fn show_table(floors: &[StoredFloor], resets: &[FloorReset]) -> String {
    let mut out = String::new();
    if floors.is_empty() {
        out.push_str("no rollback floor is kept in the state store\n");
    } else {
        out.push_str(&format!(
            "{:<9} {:<30} {:<31} {}\n",
            "SET", "TRUSTED KEYS", "BUNDLE SIGNED", "RAISED"
        ));
        for f in floors {
            out.push_str(&format!(
                "{:<9} {:<30} {:<31} {}\n",
                f.set.as_str(),
                f.trusted_keys,
                signed(f),
                raised(f.raised_ms)
            ));
        }
    }
    if !resets.is_empty() {
        out.push_str("\nresets recorded:\n");
        for r in resets {
            out.push_str(&format!(
                "  #{} {} {} floor (bundle signed {}) reset {} by {}: {}\n",
                r.id,
                r.floor.trusted_keys,
                r.floor.set.as_str(),
                signed(&r.floor),
                raised(r.by.at_ms),
                r.by.by,
                r.by.reason
            ));
        }
    }
    out
}
