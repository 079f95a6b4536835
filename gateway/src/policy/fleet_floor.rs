//! The rollback floors every gateway sharing the state store keeps together: a bundle signed
//! before the newest one any of them loaded is refused, as this gateway's own floor refuses it
//! (`policy/rollback.rs`), so that a fresh pod (its `data_dir` new) or a replica behind the
//! others cannot be handed an older, validly signed bundle. Loading a bundle raises its set's
//! floor in the store in the same statement that reads it, and a floor never goes down.
//!
//! A store that does not answer fails the check closed: the start is refused, a reload is
//! refused and the running sets stay. A reload that loads the bundles already running (a
//! configuration change) admits nothing new and does not ask the store.

use std::time::{Duration, SystemTime};

use super::PolicyEngine;
use super::bundle::BundleError;
use super::config::PolicyConfig;
use super::rollback;
use crate::state::bundle_floors::{BundleFloorRepository, BundleSet};

/// Who loaded the newer bundle a fleet refusal names.
const FLEET: &str = "a gateway sharing this state store";

/// Admits the signed sets of `engine` (loaded with `policy`) against the fleet's floors in
/// `floors`, raising each to its set's time of signing; refuses a set signed before its floor.
/// `running` is the engine (and its policy settings) this one replaces on reload. Unsigned
/// sets (no `policy.bundle.public_keys`) are not compared: nothing says when they were made.
pub async fn admit(
    policy: &PolicyConfig,
    engine: &PolicyEngine,
    running: Option<(&PolicyConfig, &PolicyEngine)>,
    floors: &dyn BundleFloorRepository,
) -> Result<(), BundleError> {
    if policy.bundle.public_keys.is_empty() {
        return Ok(());
    }
    for set in [BundleSet::Enforced, BundleSet::Shadow] {
        if set == BundleSet::Shadow && policy.shadow_dir.is_none() {
            continue;
        }
        let signed = rollback::signed(policy, engine, set);
        let already_running = running.is_some_and(|(config, running)| {
            rollback::dir(config, set) == rollback::dir(policy, set)
                && signed.is_some()
                && rollback::signed(config, running, set) == signed
        });
        if !already_running {
            admit_set(rollback::dir(policy, set), set, signed, floors).await?;
        }
    }
    Ok(())
}

/// Admits one set, signed `signed`, against its floor in `floors`.
async fn admit_set(
    dir: &std::path::Path,
    set: BundleSet,
    signed: Option<SystemTime>,
    floors: &dyn BundleFloorRepository,
) -> Result<(), BundleError> {
    let unanswered = |e: crate::state::StateError| BundleError::FleetFloor {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    };
    let floor = match signed {
        Some(at) => {
            let ns = nanos(at).ok_or_else(|| BundleError::SignedOutOfRange {
                dir: dir.display().to_string(),
                signed: humantime::format_rfc3339_nanos(at).to_string(),
            })?;
            Some(floors.raise(set, ns).await.map_err(unanswered)?)
        }
        // A manifest that does not say when it was signed is refused once any floor is kept.
        None => floors.floor(set).await.map_err(unanswered)?,
    };
    rollback::refuse_older(dir, signed, floor.map(time), FLEET)
}

/// `at` in nanoseconds since the Unix epoch, as the store keeps it (`None` before the epoch
/// or after 2262).
fn nanos(at: SystemTime) -> Option<i64> {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_nanos()).ok()
}

/// The time of `ns` nanoseconds since the Unix epoch.
fn time(ns: i64) -> SystemTime {
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

    fn load(policy: &PolicyConfig) -> Arc<PolicyEngine> {
        crate::snapshot::load_policies(policy, &[], rollback::Floors::default()).unwrap()
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
        let (newer, older) = (tmp.path().join("newer"), tmp.path().join("older"));
        signed_sets::write(&newer, "newer", at(2_000));
        signed_sets::write(&older, "older", at(1_000));
        // Two gateways on one store, each with its own data_dir (nothing remembered locally).
        let a = store(tmp.path()).await.bundle_floors();
        let b = store(tmp.path()).await.bundle_floors();

        let policy = settings(tmp.path(), &newer, None);
        admit(&policy, &load(&policy), None, a.as_ref())
            .await
            .unwrap();
        assert_eq!(
            b.floor(BundleSet::Enforced).await.unwrap(),
            Some(2_000_000_000_000)
        );

        let policy = settings(tmp.path(), &older, None);
        let e = admit(&policy, &load(&policy), None, b.as_ref())
            .await
            .unwrap_err();
        assert!(matches!(e, BundleError::Rollback { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("before the bundle a gateway sharing this state store already loaded"),
            "{e}"
        );
        assert!(e.contains("sign it again"), "{e}");
        // The refusal did not lower the floor.
        assert_eq!(
            a.floor(BundleSet::Enforced).await.unwrap(),
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
        admit(&policy, &load(&policy), None, floors.as_ref())
            .await
            .unwrap();
        assert_eq!(
            floors.floor(BundleSet::Shadow).await.unwrap(),
            Some(2_000_000_000_000)
        );
        let policy = settings(tmp.path(), &dir, Some(&older));
        let e = admit(&policy, &load(&policy), None, floors.as_ref())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{}: this bundle was signed", older.display())),
            "{e}"
        );
    }

    /// A state store that does not answer.
    struct Down;

    impl BundleFloorRepository for Down {
        fn floor(&self, _: BundleSet) -> BoxFuture<'_, Result<Option<i64>, StateError>> {
            Box::pin(async { Err(down()) })
        }

        fn raise(&self, _: BundleSet, _: i64) -> BoxFuture<'_, Result<i64, StateError>> {
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
