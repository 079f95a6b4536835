//! The rollback floors of signed policy bundles, shared by every replica: for the enforced set
//! (`policy.dir`) and the shadow set (`policy.shadow_dir`) of each set of trusted public keys
//! (by its fingerprint), the newest time of signing any gateway on the store loaded. A floor only rises: raising it to a time before it leaves it
//! as it is, in one statement, so that replicas raising it at once never lower it. What a
//! floor refuses is decided in `policy/fleet_floor.rs`; this is only what is stored.

use futures_util::future::BoxFuture;

use super::error::StateError;

/// Which policy set a floor is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleSet {
    /// The enforced set, `policy.dir`.
    Enforced,
    /// The candidate judged in its shadow, `policy.shadow_dir`.
    Shadow,
}

impl BundleSet {
    /// The set named `name` (`enforced` or `shadow`, as stored).
    pub fn named(name: &str) -> Option<BundleSet> {
        [BundleSet::Enforced, BundleSet::Shadow]
            .into_iter()
            .find(|set| set.as_str() == name)
    }

    /// `enforced` or `shadow`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            BundleSet::Enforced => "enforced",
            BundleSet::Shadow => "shadow",
        }
    }

    /// The configuration key of the set's directory, for messages.
    pub fn config_key(self) -> &'static str {
        match self {
            BundleSet::Enforced => "policy.dir",
            BundleSet::Shadow => "policy.shadow_dir",
        }
    }
}

/// One stored floor, as `warden policy floor show` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFloor {
    /// The fingerprint of the trusted public keys the floor is kept for.
    pub trusted_keys: String,
    pub set: BundleSet,
    /// The newest time of signing loaded, in nanoseconds since the Unix epoch.
    pub signed_ns: i64,
    /// When it was last raised, in milliseconds since the Unix epoch.
    pub raised_ms: i64,
}

/// The rollback floors of signed policy bundles in the state store, shared by every replica,
/// one per set and fingerprint of the trusted public keys (`keys`): deployments that trust
/// other keys keep floors of their own. Times are nanoseconds since the Unix epoch.
pub trait BundleFloorRepository: Send + Sync {
    /// `set`'s floor for `keys`: the newest time of signing loaded by any gateway on the store
    /// (`None`: none was).
    fn floor(&self, keys: &str, set: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>>;

    /// Raises `set`'s floor for `keys` to `signed_ns` unless it is there or above already,
    /// atomically, and returns the floor after: `signed_ns`, or the later time a gateway
    /// loaded before.
    fn raise(
        &self,
        keys: &str,
        set: BundleSet,
        signed_ns: i64,
    ) -> BoxFuture<'_, Result<i64, StateError>>;

    /// Every floor kept, by fingerprint then set.
    fn all(&self) -> BoxFuture<'_, Result<Vec<StoredFloor>, StateError>>;

    /// Removes `set`'s floor for `keys` (`warden policy floor reset`); whether there was one.
    fn reset(&self, keys: &str, set: BundleSet) -> BoxFuture<'_, Result<bool, StateError>>;
}
