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

    /// Removes `set`'s floor for `keys` (`warden policy floor reset`) when it is still at
    /// `signed_ns` (the floor the operator saw, and signed), and records who removed it, why
    /// and the signature, in one transaction, dropping the resets of `set` for `keys` older
    /// than the newest [`RESETS_KEPT`]; the reset recorded (`None`: there was no such floor,
    /// and nothing is recorded).
    fn reset<'a>(
        &'a self,
        keys: &'a str,
        set: BundleSet,
        signed_ns: i64,
        by: &'a Resetter,
    ) -> BoxFuture<'a, Result<Option<FloorReset>, StateError>>;

    /// The newest [`RESETS_READ`] resets recorded of the floors kept for `keys`, oldest
    /// first.
    fn resets<'a>(&'a self, keys: &'a str) -> BoxFuture<'a, Result<Vec<FloorReset>, StateError>>;
}

/// How many resets of one set's floor for one fingerprint of trusted keys the store keeps:
/// recording one more drops the oldest beyond it ([`BundleFloorRepository::reset`]), so that
/// the table does not grow for ever. Far more than [`RESETS_READ`]: a gateway reads no older.
pub const RESETS_KEPT: i64 = 1000;

/// How many of the newest resets [`BundleFloorRepository::resets`] reads: each reload reads
/// them, and older ones were named and applied long ago.
pub const RESETS_READ: i64 = 100;

/// Who resets a floor with `warden policy floor reset`, why, and when (milliseconds since the
/// Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resetter {
    pub by: String,
    pub reason: String,
    pub at_ms: i64,
    /// The signature of the reset's statement (`policy/floor_reset.rs`) by a key of
    /// `policy.bundle.public_keys`, as `warden policy floor reset --sign-key` wrote it
    /// (`None`: unsigned; it lowers the fleet's floor but no gateway's own).
    pub signature: Option<String>,
}

/// A floor removed with `warden policy floor reset`, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloorReset {
    /// Its number in the store: a later reset has a higher one.
    pub id: i64,
    /// The floor removed.
    pub floor: StoredFloor,
    pub by: Resetter,
}

impl FloorReset {
    /// The reset numbered `id` in the store, of `set`'s floor for `keys`, which stood at
    /// `signed_ns` (raised at `raised_ms`).
    pub(crate) fn new(
        id: i64,
        keys: String,
        set: BundleSet,
        (signed_ns, raised_ms): (i64, i64),
        by: Resetter,
    ) -> Self {
        FloorReset {
            id,
            floor: StoredFloor {
                trusted_keys: keys,
                set,
                signed_ns,
                raised_ms,
            },
            by,
        }
    }

    /// What every Warden's audit record of the reset says of it (the operator's name and
    /// reason bounded as quoted text).
    pub fn detail(&self) -> serde_json::Value {
        let time = |ms: i64| {
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
            humantime::format_rfc3339_millis(at).to_string()
        };
        let signed = std::time::UNIX_EPOCH
            + std::time::Duration::from_nanos(u64::try_from(self.floor.signed_ns).unwrap_or(0));
        serde_json::json!({
            "reset_id": self.id,
            "set": self.floor.set.as_str(),
            "trusted_keys": self.floor.trusted_keys,
            "old_floor_signed": humantime::format_rfc3339_nanos(signed).to_string(),
            "old_floor_raised": time(self.floor.raised_ms),
            "reset_by": crate::text::bounded(&self.by.by, crate::text::QUOTE_MAX),
            "reason": crate::text::bounded(&self.by.reason, crate::text::QUOTE_MAX),
            "reset_at": time(self.by.at_ms),
            "signed": self.by.signature.is_some(),
        })
    }
}
