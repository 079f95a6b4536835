//! The rollback floors of signed policy bundles, on both backends: one per set, seen by
//! another handle (another process on the file, another replica on the database), never
//! lowered, also when many replicas raise them at once.

use super::Backend;
use crate::state::bundle_floors::{BundleSet, RESETS_KEPT, RESETS_READ, Resetter, StoredFloor};

/// The fingerprint of the trusted keys the floors are kept for.
const KEYS: &str = "sha256:one-deployment";

on_both_backends!(
    a_floor_rises_is_shared_and_is_never_lowered,
    replicas_raising_a_floor_at_once_leave_the_highest,
    deployments_trusting_other_keys_keep_floors_of_their_own,
    a_reset_removes_the_floor_and_records_who_why_and_what,
    only_the_newest_resets_are_read,
    only_the_newest_resets_of_a_set_are_kept,
);

async fn a_floor_rises_is_shared_and_is_never_lowered(backend: Backend) {
    let one = backend.open().await.bundle_floors();
    let other = backend.open().await.bundle_floors();
    assert_eq!(one.floor(KEYS, BundleSet::Enforced).await.unwrap(), None);

    assert_eq!(
        one.raise(KEYS, BundleSet::Enforced, 2_000).await.unwrap(),
        2_000
    );
    assert_eq!(
        other.floor(KEYS, BundleSet::Enforced).await.unwrap(),
        Some(2_000)
    );
    // An older time leaves the floor where it is, and says where that is.
    assert_eq!(
        other.raise(KEYS, BundleSet::Enforced, 1_000).await.unwrap(),
        2_000
    );
    assert_eq!(
        one.floor(KEYS, BundleSet::Enforced).await.unwrap(),
        Some(2_000)
    );
    assert_eq!(
        other.raise(KEYS, BundleSet::Enforced, 3_000).await.unwrap(),
        3_000
    );
    assert_eq!(
        one.floor(KEYS, BundleSet::Enforced).await.unwrap(),
        Some(3_000)
    );
    // The shadow set's floor is its own.
    assert_eq!(one.floor(KEYS, BundleSet::Shadow).await.unwrap(), None);
    assert_eq!(
        one.raise(KEYS, BundleSet::Shadow, 1_500).await.unwrap(),
        1_500
    );
    assert_eq!(
        other.floor(KEYS, BundleSet::Shadow).await.unwrap(),
        Some(1_500)
    );
    assert_eq!(
        other.floor(KEYS, BundleSet::Enforced).await.unwrap(),
        Some(3_000)
    );
}

async fn replicas_raising_a_floor_at_once_leave_the_highest(backend: Backend) {
    let mut replicas = Vec::new();
    for _ in 0..4 {
        replicas.push(backend.open().await.bundle_floors());
    }
    // Every replica raises to a different time at once, highest first and last mixed: what
    // any raise returns is at least its own time, and the floor ends at the highest.
    let mut raises = tokio::task::JoinSet::new();
    for (i, floors) in replicas.iter().enumerate() {
        for step in 0..25_i64 {
            let floors = std::sync::Arc::clone(floors);
            let at = if (step + i as i64) % 2 == 0 {
                10_000 - step * 4 - i as i64
            } else {
                1_000 + step * 4 + i as i64
            };
            raises.spawn(async move { (at, floors.raise(KEYS, BundleSet::Enforced, at).await) });
        }
    }
    while let Some(done) = raises.join_next().await {
        let (at, floor) = done.unwrap();
        let floor = floor.unwrap();
        assert!(floor >= at, "a raise to {at} answered a floor of {floor}");
    }
    for floors in &replicas {
        assert_eq!(
            floors.floor(KEYS, BundleSet::Enforced).await.unwrap(),
            Some(10_000)
        );
    }
}

async fn deployments_trusting_other_keys_keep_floors_of_their_own(backend: Backend) {
    let floors = backend.open().await.bundle_floors();
    let other = "sha256:another-deployment";
    assert_eq!(
        floors
            .raise(KEYS, BundleSet::Enforced, 9_000)
            .await
            .unwrap(),
        9_000
    );
    // Another deployment on the same database, signing with its own key, is not held back.
    assert_eq!(
        floors.floor(other, BundleSet::Enforced).await.unwrap(),
        None
    );
    assert_eq!(
        floors
            .raise(other, BundleSet::Enforced, 1_000)
            .await
            .unwrap(),
        1_000
    );
    assert_eq!(
        floors.floor(KEYS, BundleSet::Enforced).await.unwrap(),
        Some(9_000)
    );
    assert_eq!(
        floors
            .all()
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.trusted_keys, f.set, f.signed_ns))
            .collect::<Vec<_>>(),
        vec![
            (other.to_owned(), BundleSet::Enforced, 1_000),
            (KEYS.to_owned(), BundleSet::Enforced, 9_000),
        ]
    );
    // A reset removes one floor, and only it.
    let by = resetter();
    assert!(
        floors
            .reset(KEYS, BundleSet::Enforced, 9_000, &by)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        floors
            .reset(KEYS, BundleSet::Enforced, 9_000, &by)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(floors.floor(KEYS, BundleSet::Enforced).await.unwrap(), None);
    let left: Vec<StoredFloor> = floors.all().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].trusted_keys, other);
}

fn resetter() -> Resetter {
    Resetter {
        by: "alice".into(),
        reason: "withdraw the bad release 2026-12-01".into(),
        at_ms: 1_700_000_000_000,
        signature: None,
    }
}

async fn a_reset_removes_the_floor_and_records_who_why_and_what(backend: Backend) {
    let floors = backend.open().await.bundle_floors();
    let other = backend.open().await.bundle_floors();
    floors
        .raise(KEYS, BundleSet::Enforced, 5_000)
        .await
        .unwrap();
    floors.raise(KEYS, BundleSet::Shadow, 4_000).await.unwrap();
    let kept = floors.all().await.unwrap();
    assert!(floors.resets(KEYS).await.unwrap().is_empty());

    let by = Resetter {
        signature: Some("{\"alg\":\"Ed25519\"}".into()),
        ..resetter()
    };
    // A floor that is no longer the one the operator saw (and signed) is not removed.
    assert_eq!(
        floors
            .reset(KEYS, BundleSet::Enforced, 4_999, &by)
            .await
            .unwrap(),
        None
    );
    let reset = floors
        .reset(KEYS, BundleSet::Enforced, 5_000, &by)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reset.by, by);
    assert_eq!(reset.floor.set, BundleSet::Enforced);
    assert_eq!(reset.floor.signed_ns, 5_000);
    assert_eq!(
        Some(&reset.floor),
        kept.iter().find(|f| f.set == BundleSet::Enforced)
    );
    // Every replica sees the floor gone and the reset recorded; the shadow set's floor stays.
    assert_eq!(other.floor(KEYS, BundleSet::Enforced).await.unwrap(), None);
    assert_eq!(
        other.floor(KEYS, BundleSet::Shadow).await.unwrap(),
        Some(4_000)
    );
    assert_eq!(other.resets(KEYS).await.unwrap(), vec![reset.clone()]);
    assert!(other.resets("sha256:another").await.unwrap().is_empty());

    // A floor raised again and reset again: a second record, numbered after the first.
    other.raise(KEYS, BundleSet::Enforced, 3_000).await.unwrap();
    let again = other
        .reset(KEYS, BundleSet::Enforced, 3_000, &by)
        .await
        .unwrap()
        .unwrap();
    assert!(again.id > reset.id);
    assert_eq!(again.floor.signed_ns, 3_000);
    assert_eq!(floors.resets(KEYS).await.unwrap(), vec![reset, again]);
}

async fn only_the_newest_resets_are_read(backend: Backend) {
    let floors = backend.open().await.bundle_floors();
    let by = resetter();
    for at in 1..=RESETS_READ + 2 {
        floors.raise(KEYS, BundleSet::Shadow, at).await.unwrap();
        floors
            .reset(KEYS, BundleSet::Shadow, at, &by)
            .await
            .unwrap()
            .unwrap();
    }
    let read = floors.resets(KEYS).await.unwrap();
    // The newest, oldest first: the two oldest are left out.
    assert_eq!(
        read.iter().map(|r| r.floor.signed_ns).collect::<Vec<_>>(),
        (3..=RESETS_READ + 2).collect::<Vec<_>>()
    );
}

async fn only_the_newest_resets_of_a_set_are_kept(backend: Backend) {
    let floors = backend.open().await.bundle_floors();
    // An old reset of the enforced set, then as many of the shadow set as are kept (written
    // at once: the resets of years), numbered 1 to RESETS_KEPT.
    backend
        .execute(&format!(
            "INSERT INTO policy_bundle_floor_resets (trusted_keys, bundle, old_signed_ns, \
             old_raised_ms, reset_by, reason, reset_at_ms) \
             VALUES ('{KEYS}', 'enforced', 7, 0, 'alice', 'old', 0)"
        ))
        .await;
    backend
        .execute(&format!(
            "INSERT INTO policy_bundle_floor_resets (trusted_keys, bundle, old_signed_ns, \
             old_raised_ms, reset_by, reason, reset_at_ms) \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {RESETS_KEPT}) \
             SELECT '{KEYS}', 'shadow', i, 0, 'alice', 'old', 0 FROM n"
        ))
        .await;
    // One more: the oldest of the shadow set's is dropped, the enforced set's is kept.
    let at = RESETS_KEPT + 1;
    floors.raise(KEYS, BundleSet::Shadow, at).await.unwrap();
    floors
        .reset(KEYS, BundleSet::Shadow, at, &resetter())
        .await
        .unwrap()
        .unwrap();
    // Left to read: those at 100 or before, all of them within what a gateway reads.
    backend
        .execute("DELETE FROM policy_bundle_floor_resets WHERE old_signed_ns > 100")
        .await;
    let read: Vec<(BundleSet, i64)> = floors
        .resets(KEYS)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.floor.set, r.floor.signed_ns))
        .collect();
    let mut kept = vec![(BundleSet::Enforced, 7)];
    kept.extend((2..=100).map(|at| (BundleSet::Shadow, at)));
    assert!(kept.len() <= RESETS_READ as usize);
    assert_eq!(read, kept);
}
