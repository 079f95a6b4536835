//! The reloadable part of the gateway: configuration, routes, policies, identity. A reload
//! builds a complete new [`Snapshot`] and swaps it in atomically; an invalid one never replaces
//! the running one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::config::error::ConfigErrors;
use crate::identity::{Identifier, IdentityError};
use crate::policy::bundle::{BundleError, Trust};
use crate::policy::config::PolicyConfig;
use crate::policy::floor_reset;
use crate::policy::rollback::{self, Floors};
use crate::policy::{PolicyEngine, PolicyErrors, SchemaFragment};
use crate::route::{Route, RouteTable};
use crate::secrets::{CredentialError, own};
use crate::state::bundle_floors::{BundleSet, FloorReset};
use crate::vault::{SecretStore, VaultError};

/// One consistent snapshot of everything a request consults.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub policy: Arc<PolicyEngine>,
    pub identity: Arc<Identifier>,
    /// Who operators are (`admin.identity`): the admin API's tokens, never agents'.
    pub operators: Option<Arc<Identifier>>,
    /// The secrets held from Vault (`vault:`); kept across reloads that leave `vault:` as it
    /// was.
    pub secrets: Option<Arc<SecretStore>>,
    /// The catalogue of the agents' tools and their workspace (`propose:`).
    pub propose: Arc<crate::propose::Catalogue>,
    /// The floor resets (`warden policy floor reset`) its signed sets were loaded below, which
    /// the record of the start or reload names.
    pub floor_resets: Vec<FloorReset>,
}

/// Which of this gateway's own rollback floors a build checks the signed sets against.
#[derive(Debug, Clone, Copy)]
pub enum OwnFloors<'a> {
    /// The times remembered in `data_dir` and the running sets', lifted by these resets
    /// ([`floor_reset::lift`]).
    Lifted(&'a [FloorReset]),
    /// None yet: a start checks them with [`Snapshot::check_own_floors`] once the state store
    /// has answered which floors were reset.
    Later,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("configuration is invalid:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error(
        "the policy directory {dir} is invalid (`warden policy validate {dir}` checks it):\n{errors}"
    )]
    Policy { dir: PathBuf, errors: PolicyErrors },
    #[error("policy.bundle.public_keys: {0}")]
    BundleKeys(#[from] BundleError),
    /// A bundle older than the newest loaded (by this gateway, or by any on its state store),
    /// the newest's remembered time unreadable, or the store's floor unanswered.
    #[error("{0}")]
    Rollback(BundleError),
    #[error("identity setup failed: {0}")]
    Identity(#[from] IdentityError),
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("identity.warden_issuer.key: {0}")]
    SigningKey(#[from] CredentialError),
}

impl Snapshot {
    /// Logs a warning for each route whose credential is configured but cannot be read now
    /// (an unset variable, a missing file): its requests are refused with 503 until it can.
    /// At start and after each reload, so a route a reload adds is not silently unusable.
    pub fn warn_of_unavailable_credentials(&self) {
        for route in self.routes.iter() {
            if let Some(e) = route.credential.as_ref().and_then(|c| c.unavailable()) {
                tracing::warn!(route = %route.name, error = %e, "route has no upstream credential; its requests will be refused with 503 until it is configured");
            }
        }
    }

    /// Remembers in `data_dir` when the running policy bundles (enforced and shadow) were
    /// signed, so that a restart refuses older ones too ([`rollback`]); a failure is logged
    /// (these sets are in force whatever happens; the fleet's floor in the state store still
    /// refuses an older bundle after a restart).
    pub fn remember_bundle(&self) {
        for set in [BundleSet::Enforced, BundleSet::Shadow] {
            let Some(signed) = rollback::signed(&self.config.policy, &self.policy, set) else {
                continue;
            };
            // A set loaded below a floor reset on purpose replaces the time remembered.
            let lowered = self.floor_resets.iter().any(|reset| reset.floor.set == set);
            if let Err(e) = rollback::remember(&self.config.data_dir, set, signed, lowered) {
                tracing::warn!(error = %e, key = set.config_key(), "cannot remember when the policy bundle was signed; a restart would not refuse an older bundle by this file");
            }
        }
    }

    /// Checks the signed sets against this gateway's own floors (remembered in `data_dir`),
    /// lifted by the floor `resets` recorded in the state store: the start's check of a
    /// snapshot built with [`OwnFloors::Later`].
    pub fn check_own_floors(&mut self, resets: &[FloorReset]) -> Result<(), SnapshotError> {
        let floors = floor_reset::lift(
            &self.config.policy,
            Floors::remembered(&self.config.data_dir).map_err(SnapshotError::Rollback)?,
            resets,
        );
        refuse_older(&self.config.policy, &self.policy, floors)?;
        self.floor_resets = floor_reset::loaded_below(&self.config.policy, &self.policy, resets);
        Ok(())
    }

    /// Builds a snapshot from `config`, reusing `previous`'s identity (and its key and token
    /// caches) when the identity settings did not change; its signed sets checked against this
    /// gateway's own floors.
    pub async fn build(
        config: Config,
        previous: Option<&Snapshot>,
    ) -> Result<Snapshot, SnapshotError> {
        Self::build_with(config, previous, OwnFloors::Lifted(&[])).await
    }

    /// [`Snapshot::build`], checking the signed sets against `own` floors.
    pub async fn build_with(
        config: Config,
        previous: Option<&Snapshot>,
        own: OwnFloors<'_>,
    ) -> Result<Snapshot, SnapshotError> {
        // A new store starts its upkeep only once the whole snapshot is valid.
        let (secrets, fresh) = match (previous, &config.vault) {
            (Some(p), Some(v)) if p.config.vault.as_ref() == Some(v) => (p.secrets.clone(), false),
            (_, Some(v)) => (Some(SecretStore::idle(v.clone())?), true),
            (_, None) => (None, false),
        };
        let routes = RouteTable::build(&config, secrets.as_ref())?;
        refuse_routes_without_credential(&config, &routes)?;
        let (floors, resets) = match own {
            OwnFloors::Lifted(resets) => {
                let mut floors =
                    Floors::remembered(&config.data_dir).map_err(SnapshotError::Rollback)?;
                if let Some(p) = previous {
                    floors = floors.with_running(&p.config.policy, &p.policy);
                }
                (floor_reset::lift(&config.policy, floors, resets), resets)
            }
            OwnFloors::Later => (Floors::default(), &[][..]),
        };
        let policy = load_policies(&config.policy, routes.schema_fragments(), floors)?;
        let floor_resets = floor_reset::loaded_below(&config.policy, &policy, resets);
        let identity = match previous {
            Some(p)
                if p.config.identity == config.identity && p.config.data_dir == config.data_dir =>
            {
                p.identity.clone()
            }
            _ => Arc::new(identity(&config, secrets.as_ref()).await?),
        };
        let operators = crate::admin::operators::identifier(
            &config,
            previous.and_then(|p| Some((&*p.config, p.operators.as_ref()?))),
        )
        .await?;
        if let (Some(store), true) = (&secrets, fresh) {
            store.start();
        }
        Ok(Snapshot {
            propose: Arc::new(crate::propose::Catalogue::new(&config.propose)),
            floor_resets,
            config: Arc::new(config),
            routes,
            policy,
            identity,
            operators,
            secrets,
        })
    }
}

/// What is wrong with a route's credential now, as the start and `warden check` judge it.
#[derive(Debug)]
pub enum CredentialFault {
    /// The route's connector sends a credential and the route names none: a mistake, not a
    /// route to answer 503 on; the start (or the reload) stops on it. `key` is the route's in
    /// the configuration (`routes[i]`).
    Missing { key: String, error: CredentialError },
    /// Its source does not answer now (an unset variable, a missing file): the route answers
    /// 503 until it does.
    Unavailable(CredentialError),
}

/// Every route of `routes` (built from `config`) with what is wrong with its credential, if
/// anything: the one walk the start and `warden check` share.
pub fn credential_faults<'a>(
    config: &'a Config,
    routes: &'a RouteTable,
) -> impl Iterator<Item = (&'a Arc<Route>, Option<CredentialFault>)> + 'a {
    routes.iter().map(move |route| {
        let fault = match route.credential.as_ref().and_then(|c| c.unavailable()) {
            None => None,
            Some(error @ CredentialError::NotConfigured { .. }) => {
                let index = config
                    .routes
                    .iter()
                    .position(|rc| rc.name.as_deref().unwrap_or(&rc.connector) == &*route.name);
                let key = index.map_or_else(|| "routes".to_owned(), |i| format!("routes[{i}]"));
                Some(CredentialFault::Missing { key, error })
            }
            Some(error) => Some(CredentialFault::Unavailable(error)),
        };
        (route, fault)
    })
}

/// Refuses the first route that needs a credential and names none ([`CredentialFault::Missing`]).
fn refuse_routes_without_credential(
    config: &Config,
    routes: &RouteTable,
) -> Result<(), ConfigErrors> {
    for (_, fault) in credential_faults(config, routes) {
        if let Some(CredentialFault::Missing { key, error }) = fault {
            return Err(ConfigErrors::one(key, error.to_string()));
        }
    }
    Ok(())
}

/// The identity of `config`, with Warden's signing key read from its secret source when
/// `identity.warden_issuer.key` names one.
async fn identity(
    config: &Config,
    secrets: Option<&Arc<SecretStore>>,
) -> Result<Identifier, SnapshotError> {
    let warden = &config.identity.warden_issuer;
    let key = match (&warden.key, warden.enabled) {
        (Some(source), true) => Some((
            own::read(source, secrets, "identity.warden_issuer.key").await?,
            format!("identity.warden_issuer.key ({})", source.kind()),
        )),
        _ => None,
    };
    let key = key
        .as_ref()
        .map(|(pem, origin)| (pem.as_str(), origin.as_str()));
    Ok(Identifier::with_key(&config.identity, &config.data_dir, key).await?)
}

/// Loads and validates the policy set of `policy.dir` (a bundle signed by a key of
/// `policy.bundle.public_keys` when any is configured, and then not signed before its floor
/// in `floors`, the newest bundle this gateway loaded), with the actions of the REST
/// connectors the routes use (`fragments`) declared, and `policy.shadow_dir`'s set (signed
/// too, and not before the shadow floor) in its shadow.
pub fn load_policies(
    policy: &PolicyConfig,
    fragments: &[SchemaFragment],
    floors: Floors,
) -> Result<Arc<PolicyEngine>, SnapshotError> {
    let trust = Trust::load(&policy.bundle.public_keys)?;
    let load = |dir: &Path| {
        PolicyEngine::load_trusted(dir, fragments, &trust).map_err(|errors| SnapshotError::Policy {
            dir: dir.into(),
            errors,
        })
    };
    let engine = load(&policy.dir)?;
    let engine = match &policy.shadow_dir {
        Some(dir) => engine.with_shadow(load(dir)?),
        None => engine,
    };
    if !trust.is_empty() {
        let now = SystemTime::now();
        for set in [BundleSet::Enforced, BundleSet::Shadow] {
            if set == BundleSet::Shadow && policy.shadow_dir.is_none() {
                continue;
            }
            rollback::refuse_future(
                rollback::dir(policy, set),
                rollback::signed(policy, &engine, set),
                now,
            )
            .map_err(SnapshotError::Rollback)?;
        }
        refuse_older(policy, &engine, floors)?;
    }
    Ok(Arc::new(engine))
}

/// Refuses a signed set of `engine` (loaded with `policy`) signed before this gateway's floor
/// of it in `floors`.
fn refuse_older(
    policy: &PolicyConfig,
    engine: &PolicyEngine,
    floors: Floors,
) -> Result<(), SnapshotError> {
    if policy.bundle.public_keys.is_empty() {
        return Ok(());
    }
    for set in [BundleSet::Enforced, BundleSet::Shadow] {
        if set == BundleSet::Shadow && policy.shadow_dir.is_none() {
            continue;
        }
        rollback::refuse_older(
            rollback::dir(policy, set),
            rollback::signed(policy, engine, set),
            floors.of(set),
            rollback::THIS_GATEWAY,
        )
        .map_err(SnapshotError::Rollback)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::rollback::signed_sets::{self, at};

    #[test]
    fn a_bundle_signed_ahead_of_this_gateways_clock_is_refused_and_not_remembered() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, shadow) = (tmp.path().join("policies"), tmp.path().join("shadow"));
        let ahead = SystemTime::now() + std::time::Duration::from_secs(3_600);
        signed_sets::write(&dir, "all", ahead);
        signed_sets::write(&shadow, "candidate", SystemTime::now());
        let mut policy = PolicyConfig {
            dir: dir.clone(),
            ..PolicyConfig::default()
        };
        policy.bundle.public_keys = vec![signed_sets::trusted_key(tmp.path())];
        let message = load_policies(&policy, &[], Floors::default())
            .unwrap_err()
            .to_string();
        assert!(message.contains("more than 5 minutes after"), "{message}");
        assert!(message.contains("the signer's clock is ahead"), "{message}");
        // The shadow set is held to the same bound.
        policy.dir = shadow.clone();
        policy.shadow_dir = Some(dir.clone());
        let message = load_policies(&policy, &[], Floors::default())
            .unwrap_err()
            .to_string();
        assert!(message.starts_with(&dir.display().to_string()), "{message}");
        // Signed again at the real time, it loads.
        signed_sets::write(&dir, "all", SystemTime::now());
        load_policies(&policy, &[], Floors::default()).unwrap();
    }

    #[test]
    fn a_signed_bundle_older_than_the_newest_loaded_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("policies");
        signed_sets::write(&dir, "all", at(1_000));
        let mut policy = PolicyConfig {
            dir: dir.clone(),
            ..PolicyConfig::default()
        };
        policy.bundle.public_keys = vec![signed_sets::trusted_key(tmp.path())];
        let floor = |at| Floors {
            enforced: Some(at),
            shadow: None,
        };
        let engine = load_policies(&policy, &[], floor(at(1_000))).unwrap();
        assert_eq!(engine.bundle_signed(), Some(at(1_000)));
        let message = load_policies(&policy, &[], floor(at(1_001)))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("an older bundle put back is refused"),
            "{message}"
        );
        assert!(message.contains("sign it again"), "{message}");

        // Unsigned sets are not compared: nothing says when they were made.
        policy.bundle.public_keys.clear();
        load_policies(&policy, &[], floor(at(1_001))).unwrap();
    }

    #[test]
    fn a_signed_shadow_bundle_older_than_the_newest_shadow_loaded_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("policies");
        let shadow = tmp.path().join("candidate");
        signed_sets::write(&dir, "all", at(5_000));
        signed_sets::write(&shadow, "candidate", at(1_000));
        let mut policy = PolicyConfig {
            dir: dir.clone(),
            shadow_dir: Some(shadow.clone()),
            ..PolicyConfig::default()
        };
        policy.bundle.public_keys = vec![signed_sets::trusted_key(tmp.path())];
        // The shadow set has its own floor: the enforced set's newer time does not refuse it.
        let engine = load_policies(
            &policy,
            &[],
            Floors {
                enforced: Some(at(5_000)),
                shadow: Some(at(1_000)),
            },
        )
        .unwrap();
        assert_eq!(engine.shadow().unwrap().bundle_signed(), Some(at(1_000)));
        let floors = Floors::default().with_running(&policy, &engine);
        assert_eq!(floors.shadow, Some(at(1_000)));
        let message = load_policies(
            &policy,
            &[],
            Floors {
                enforced: None,
                shadow: Some(at(1_001)),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.starts_with(&format!("{}: this bundle was signed", shadow.display())),
            "{message}"
        );
        assert!(
            message.contains("an older bundle put back is refused"),
            "{message}"
        );
    }

    #[test]
    fn an_invalid_policy_directory_is_named_with_the_command_that_checks_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("policies");
        let policy = PolicyConfig {
            dir: dir.clone(),
            ..PolicyConfig::default()
        };
        let message = load_policies(&policy, &[], Floors::default())
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!(
                "the policy directory {d} is invalid (`warden policy validate {d}` checks it):\n",
                d = dir.display()
            )),
            "{message}"
        );
    }
}
