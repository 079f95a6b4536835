//! The rollback floors of signed policy bundles, shared by every replica: for the enforced set
//! (`policy.dir`) and the shadow set (`policy.shadow_dir`), the newest time of signing any
//! gateway on the store loaded. A floor only rises: raising it to a time before it leaves it
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

/// The rollback floors of signed policy bundles in the state store, shared by every replica.
/// Times are nanoseconds since the Unix epoch.
pub trait BundleFloorRepository: Send + Sync {
    /// `set`'s floor: the newest time of signing loaded by any gateway on the store (`None`:
    /// none was).
    fn floor(&self, set: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>>;

    /// Raises `set`'s floor to `signed_ns` unless it is there or above already, atomically,
    /// and returns the floor after: `signed_ns`, or the later time a gateway loaded before.
    fn raise(&self, set: BundleSet, signed_ns: i64) -> BoxFuture<'_, Result<i64, StateError>>;
}
