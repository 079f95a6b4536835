//! The rollback floors every gateway sharing the state store keeps together: a bundle signed
//! before the newest one any of them loaded is refused, as this gateway's own floor refuses it
//! (`policy/rollback.rs`), so that a fresh pod (its `data_dir` new) or a replica behind the
//! others cannot be handed an older, validly signed bundle. Floors are kept per set (enforced,
//! shadow) and per fingerprint of the trusted public keys: deployments that sign with keys of
//! their own and share a database do not hold each other back.
//!
//! Admission is in two steps. [`check`] reads the floors of every set and refuses any set
//! signed before its floor; only once the whole start or reload has succeeded does
//! [`Admitted::raise`] raise them (a floor never goes down, in one statement), so that a start
//! or reload that fails later leaves the floors where they were and strands no replica. A
//! raise that finds a floor another gateway raised past this set in between refuses it too.
//!
//! A store that does not answer fails the check closed: the start is refused, a reload is
//! refused and the running sets stay. A reload that loads the bundles already running (a
//! configuration change) admits nothing new and does not ask the store.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::PolicyEngine;
use super::bundle::{BundleError, Trust};
use super::config::PolicyConfig;
use super::rollback;
use crate::state::bundle_floors::{BundleFloorRepository, BundleSet};

/// Who loaded the newer bundle a fleet refusal names.
const FLEET: &str = "a gateway sharing this state store";

/// Sets checked against the fleet's floors, whose floors are raised once the start or reload
/// that loads them has succeeded.
#[derive(Debug, Default)]
#[must_use = "the floors are raised only by Admitted::raise"]
pub struct Admitted {
    /// The fingerprint of the trusted keys the floors are kept for.
    keys: String,
    /// Each set to raise the floor of: its directory (for messages) and time of signing.
    sets: Vec<(BundleSet, PathBuf, SystemTime)>,
}

/// Checks the signed sets of `engine` (loaded with `policy`) against the fleet's floors in
/// `floors`, without raising them; refuses a set signed before its floor. `running` is the
/// engine (and its policy settings) this one replaces on reload. Unsigned sets (no
/// `policy.bundle.public_keys`) are not compared: nothing says when they were made.
pub async fn check(
    policy: &PolicyConfig,
    engine: &PolicyEngine,
    running: Option<(&PolicyConfig, &PolicyEngine)>,
    floors: &dyn BundleFloorRepository,
) -> Result<Admitted, BundleError> {
    if policy.bundle.public_keys.is_empty() {
        return Ok(Admitted::default());
    }
    let mut admitted = Admitted {
        keys: trusted_keys(policy)?,
        sets: Vec::new(),
    };
    for set in [BundleSet::Enforced, BundleSet::Shadow] {
        if set == BundleSet::Shadow && policy.shadow_dir.is_none() {
            continue;
        }
        let signed = rollback::signed(policy, engine, set);
        let already_running = running.is_some_and(|(config, running)| {
            rollback::dir(config, set) == rollback::dir(policy, set)
                && config.bundle.public_keys == policy.bundle.public_keys
                && signed.is_some()
                && rollback::signed(config, running, set) == signed
        });
        if already_running {
            continue;
        }
        let dir = rollback::dir(policy, set);
        if let Some(at) = signed {
            nanos(dir, at)?;
        }
        let floor = floors
            .floor(&admitted.keys, set)
            .await
            .map_err(unanswered(dir))?;
        rollback::refuse_older(dir, signed, floor.map(time), FLEET)?;
        if let Some(at) = signed {
            admitted.sets.push((set, dir.to_path_buf(), at));
        }
    }
    Ok(admitted)
}

impl Admitted {
    /// Raises the floor of each set checked to its time of signing; refuses a set another
    /// gateway loaded a newer bundle of since [`check`] (the floor stays where that one put it).
    pub async fn raise(self, floors: &dyn BundleFloorRepository) -> Result<(), BundleError> {
        for (set, dir, at) in &self.sets {
            let floor = floors
                .raise(&self.keys, *set, nanos(dir, *at)?)
                .await
                .map_err(unanswered(dir))?;
            rollback::refuse_older(dir, Some(*at), Some(time(floor)), FLEET)?;
        }
        Ok(())
    }
}

/// The fingerprint of `policy.bundle.public_keys`, which the fleet's floors are kept under.
pub fn trusted_keys(policy: &PolicyConfig) -> Result<String, BundleError> {
    Ok(Trust::load(&policy.bundle.public_keys)?.fingerprint())
}

/// The refusal of a bundle of `dir` whose floor the store did not answer for.
fn unanswered(dir: &Path) -> impl FnOnce(crate::state::StateError) -> BundleError {
    let dir = dir.display().to_string();
    move |e| BundleError::FleetFloor {
        dir,
        reason: e.to_string(),
    }
}

/// `at` in nanoseconds since the Unix epoch, as the store keeps it; refused before the epoch
/// or after 2262.
fn nanos(dir: &Path, at: SystemTime) -> Result<i64, BundleError> {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .and_then(|since| i64::try_from(since.as_nanos()).ok())
        .ok_or_else(|| BundleError::SignedOutOfRange {
            dir: dir.display().to_string(),
            signed: humantime::format_rfc3339_nanos(at).to_string(),
        })
}

/// The time of `ns` nanoseconds since the Unix epoch.
pub fn time(ns: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::policy::rollback::signed_sets::{self, at};
    use crate::state::StateError;
    use crate::state::bundle_floors::{FloorReset, Resetter, StoredFloor};

    /// The policy settings of a signed `dir` (and `shadow`), trusting the test key in `keys`.
    fn settings(keys: &Path, dir: &Path, shadow: Option<&Path>) -> PolicyConfig {
        let mut policy = PolicyConfig {
            dir: dir.to_path_buf(),
            shadow_dir: shadow.map(Path::to_path_buf),
            ..PolicyConfig::default()
        };
        policy.bundle.public_keys = vec![signed_sets::trusted_key(keys)];
        policy
    }

    /// Checks and, once checked, raises: a start or reload that succeeds.
    async fn admit(
        policy: &PolicyConfig,
        engine: &PolicyEngine,
        running: Option<(&PolicyConfig, &PolicyEngine)>,
        floors: &dyn BundleFloorRepository,
    ) -> Result<(), BundleError> {
        check(policy, engine, running, floors)
            .await?
            .raise(floors)
            .await
    }

    /// The fingerprint the test key's floors are kept under.
    fn keys(policy: &PolicyConfig) -> String {
        trusted_keys(policy).unwrap()
    }

    fn load(policy: &PolicyConfig) -> Arc<PolicyEngine> {
        crate::snapshot::load_policies(policy, &[], rollback::Floors::default()).unwrap()
    }

    /// Two sets in `dir`: `newer` signed at 2000 s, `older` at 1000 s.
    fn newer_and_older(dir: &Path) -> (PathBuf, PathBuf) {
        let (newer, older) = (dir.join("newer"), dir.join("older"));
        signed_sets::write(&newer, "newer", at(2_000));
        signed_sets::write(&older, "older", at(1_000));
        (newer, older)
    }

    /// Checks `policy` with an engine loaded from it, as a start does (nothing running), and
    /// raises its floors in `floors`.
    async fn admit_loaded(
        policy: &PolicyConfig,
        floors: &dyn BundleFloorRepository,
    ) -> Result<(), BundleError> {
        admit(policy, &load(policy), None, floors).await
    }

    /// The floor `floors` keep for `set` under the keys `policy` trusts.
    async fn floor_of(
        floors: &dyn BundleFloorRepository,
        policy: &PolicyConfig,
        set: BundleSet,
    ) -> Option<i64> {
        floors.floor(&keys(policy), set).await.unwrap()
    }

    /// The sets of [`newer_and_older`] in `dir`, and the fleet floors of a store there.
    async fn sets_and_floors(dir: &Path) -> (PathBuf, PathBuf, Arc<dyn BundleFloorRepository>) {
        let (newer, older) = newer_and_older(dir);
        (newer, older, store(dir).await.bundle_floors())
    }

    async fn store(dir: &Path) -> crate::state::Store {
        crate::state::Store::sqlite(
            crate::state::sqlite::SqliteStore::open(&dir.join("state.db"))
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn a_bundle_signed_before_one_another_gateway_loaded_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (newer, older) = newer_and_older(tmp.path());
        // Two gateways on one store, each with its own data_dir (nothing remembered locally).
        let a = store(tmp.path()).await.bundle_floors();
        let b = store(tmp.path()).await.bundle_floors();

        let policy = settings(tmp.path(), &newer, None);
        admit_loaded(&policy, a.as_ref()).await.unwrap();
        assert_eq!(
            floor_of(b.as_ref(), &policy, BundleSet::Enforced).await,
            Some(2_000_000_000_000)
        );

        let policy = settings(tmp.path(), &older, None);
        let e = admit_loaded(&policy, b.as_ref()).await.unwrap_err();
        assert!(matches!(e, BundleError::Rollback { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("before the bundle a gateway sharing this state store already loaded"),
            "{e}"
        );
        assert!(e.contains("sign it again"), "{e}");
        // The refusal did not lower the floor.
        assert_eq!(
            floor_of(a.as_ref(), &policy, BundleSet::Enforced).await,
            Some(2_000_000_000_000)
        );

        // Unsigned sets are not compared.
        let mut unsigned = policy.clone();
        unsigned.bundle.public_keys.clear();
        let engine =
            crate::snapshot::load_policies(&unsigned, &[], rollback::Floors::default()).unwrap();
        admit(&unsigned, &engine, None, b.as_ref()).await.unwrap();
    }

    #[tokio::test]
    async fn a_shadow_bundle_has_a_fleet_floor_of_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("policies");
        let (newer, older) = (tmp.path().join("newer"), tmp.path().join("older"));
        signed_sets::write(&dir, "enforced", at(9_000));
        signed_sets::write(&newer, "newer", at(2_000));
        signed_sets::write(&older, "older", at(1_000));
        let floors = store(tmp.path()).await.bundle_floors();

        let policy = settings(tmp.path(), &dir, Some(&newer));
        admit_loaded(&policy, floors.as_ref()).await.unwrap();
        assert_eq!(
            floor_of(floors.as_ref(), &policy, BundleSet::Shadow).await,
            Some(2_000_000_000_000)
        );
        let policy = settings(tmp.path(), &dir, Some(&older));
        let e = admit_loaded(&policy, floors.as_ref())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: this bundle was signed", older.display())),
            "{e}"
        );
    }

    #[tokio::test]
    async fn floors_are_raised_only_once_every_set_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, newer, older) = (
            tmp.path().join("policies"),
            tmp.path().join("newer"),
            tmp.path().join("older"),
        );
        signed_sets::write(&dir, "enforced", at(9_000));
        signed_sets::write(&newer, "newer", at(2_000));
        signed_sets::write(&older, "older", at(1_000));
        let floors = store(tmp.path()).await.bundle_floors();
        let policy = settings(tmp.path(), &dir, Some(&newer));
        admit_loaded(&policy, floors.as_ref()).await.unwrap();
        let keys = keys(&policy);

        // A newer enforced set with an older shadow set: refused, and the enforced floor
        // is where it was (the enforced set was checked first, but not raised).
        let enforced = tmp.path().join("enforced-next");
        signed_sets::write(&enforced, "enforced-next", at(9_500));
        let policy = settings(tmp.path(), &enforced, Some(&older));
        let e = check(&policy, &load(&policy), None, floors.as_ref())
            .await
            .unwrap_err();
        assert!(matches!(e, BundleError::Rollback { .. }), "{e}");
        assert_eq!(
            floors.floor(&keys, BundleSet::Enforced).await.unwrap(),
            Some(9_000_000_000_000)
        );

        // A check that passes raises nothing until the start or reload has succeeded: one
        // that fails after it leaves the floors as they were.
        let policy = settings(tmp.path(), &enforced, Some(&newer));
        let admitted = check(&policy, &load(&policy), None, floors.as_ref())
            .await
            .unwrap();
        assert_eq!(
            floors.floor(&keys, BundleSet::Enforced).await.unwrap(),
            Some(9_000_000_000_000)
        );
        admitted.raise(floors.as_ref()).await.unwrap();
        assert_eq!(
            floors.floor(&keys, BundleSet::Enforced).await.unwrap(),
            Some(9_500_000_000_000)
        );
    }

    #[tokio::test]
    async fn a_newer_bundle_loaded_between_check_and_raise_refuses_the_raise() {
        let tmp = tempfile::tempdir().unwrap();
        let (newer, older, floors) = sets_and_floors(tmp.path()).await;
        let slow = settings(tmp.path(), &older, None);
        let admitted = check(&slow, &load(&slow), None, floors.as_ref())
            .await
            .unwrap();
        let fast = settings(tmp.path(), &newer, None);
        admit_loaded(&fast, floors.as_ref()).await.unwrap();
        let e = admitted.raise(floors.as_ref()).await.unwrap_err();
        assert!(matches!(e, BundleError::Rollback { .. }), "{e}");
        assert_eq!(
            floor_of(floors.as_ref(), &fast, BundleSet::Enforced).await,
            Some(2_000_000_000_000)
        );
    }

    #[tokio::test]
    async fn deployments_trusting_other_keys_do_not_block_each_other() {
        let tmp = tempfile::tempdir().unwrap();
        let (newer, older, floors) = sets_and_floors(tmp.path()).await;
        let one = settings(tmp.path(), &newer, None);
        admit_loaded(&one, floors.as_ref()).await.unwrap();

        // Another deployment on the same database trusts a second key too: its set of
        // trusted keys is another, and so is its floor.
        let other_key = tmp.path().join("other.pub");
        let other = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        std::fs::write(&other_key, crate::keys::public_pem(&other).unwrap()).unwrap();
        let mut two = settings(tmp.path(), &older, None);
        two.bundle.public_keys.push(other_key);
        assert_ne!(keys(&one), keys(&two));
        admit_loaded(&two, floors.as_ref()).await.unwrap();
        assert_eq!(
            floor_of(floors.as_ref(), &one, BundleSet::Enforced).await,
            Some(2_000_000_000_000)
        );
        assert_eq!(
            floor_of(floors.as_ref(), &two, BundleSet::Enforced).await,
            Some(1_000_000_000_000)
        );
    }

    /// A state store that does not answer.
    struct Down;

    impl BundleFloorRepository for Down {
        fn floor(&self, _: &str, _: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>> {
            Box::pin(async { Err(down()) })
        }

        fn raise(&self, _: &str, _: BundleSet, _: i64) -> BoxFuture<'_, Result<i64, StateError>> {
            Box::pin(async { Err(down()) })
        }

        fn all(&self) -> BoxFuture<'_, Result<Vec<StoredFloor>, StateError>> {
            Box::pin(async { Err(down()) })
        }

        fn reset<'a>(
            &'a self,
            _: &'a str,
            _: BundleSet,
            _: i64,
            _: &'a Resetter,
        ) -> BoxFuture<'a, Result<Option<FloorReset>, StateError>> {
            Box::pin(async { Err(down()) })
        }

        fn resets<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<FloorReset>, StateError>> {
            Box::pin(async { Err(down()) })
        }
    }

    fn down() -> StateError {
        StateError::Closed {
            store: "the test's store (down)".into(),
        }
    }

    #[tokio::test]
    async fn a_store_that_does_not_answer_refuses_a_new_bundle_but_not_the_running_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (running, next) = (tmp.path().join("running"), tmp.path().join("next"));
        signed_sets::write(&running, "running", at(1_000));
        signed_sets::write(&next, "next", at(2_000));
        let policy = settings(tmp.path(), &running, None);
        let engine = load(&policy);

        let e = admit(&policy, &engine, None, &Down).await.unwrap_err();
        assert!(matches!(e, BundleError::FleetFloor { .. }), "{e}");
        assert!(
            e.to_string().contains("not loaded until the store answers"),
            "{e}"
        );
        // A reload of the bundle already running (a configuration change) admits nothing new.
        admit(&policy, &engine, Some((&policy, &engine)), &Down)
            .await
            .unwrap();
        let new_policy = settings(tmp.path(), &next, None);
        let e = admit(
            &new_policy,
            &load(&new_policy),
            Some((&policy, &engine)),
            &Down,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, BundleError::FleetFloor { .. }), "{e}");
    }
}
