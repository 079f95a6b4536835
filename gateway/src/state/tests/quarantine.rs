//! Quarantines, on both backends: stored, replaced, released, expired, seen by another handle
//! (another process on the file, another replica on the database), announced on PostgreSQL.

use std::time::Duration;

use super::Backend;
use crate::state::pins::now_ms;
use crate::state::quarantine::{Actor, QuarantineRecord, RELEASES_KEPT_MS, ReleaseRecord, Target};

on_both_backends!(
    a_quarantine_is_shared_replaced_released_and_expires,
    who_released_a_quarantine_is_kept_for_every_replica,
    who_released_is_pruned_after_a_week,
    a_release_that_cannot_record_who_released_releases_nothing,
);

fn record(target: Target, reason: &str, until_ms: Option<i64>) -> QuarantineRecord {
    QuarantineRecord {
        target,
        reason: reason.into(),
        trigger: "manual".into(),
        by: Actor::new("alice", "https://sso.example.com"),
        created_ms: now_ms(),
        until_ms,
    }
}

async fn a_quarantine_is_shared_replaced_released_and_expires(backend: Backend) {
    let one = backend.open().await.quarantine();
    let other = backend.open().await.quarantine();
    let mut announced = other.announcements();
    let start = other.revision().await.unwrap();

    one.quarantine(record(Target::Agent("rogue".into()), "first", None))
        .await
        .unwrap();
    one.quarantine(record(Target::Group("red".into()), "drill", None))
        .await
        .unwrap();
    // Replaced, not added: a new reason for the same agent.
    one.quarantine(record(Target::Agent("rogue".into()), "second", None))
        .await
        .unwrap();
    if let Some(rx) = announced.as_mut() {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("PostgreSQL announces the change to the other replica")
            .unwrap();
    }
    assert!(other.revision().await.unwrap() > start);
    let active = other.active().await.unwrap();
    assert_eq!(active.len(), 2, "{active:?}");
    let rogue = active
        .iter()
        .find(|r| r.target == Target::Agent("rogue".into()))
        .unwrap();
    assert_eq!(rogue.reason, "second");
    assert_eq!(rogue.by, Actor::new("alice", "https://sso.example.com"));

    let released = other
        .release(&Target::Group("red".into()), &Actor::cli("bob"))
        .await
        .unwrap()
        .expect("it was quarantined");
    assert_eq!(released.reason, "drill");
    assert!(
        one.release(&Target::Group("red".into()), &Actor::cli("bob"))
            .await
            .unwrap()
            .is_none()
    );

    // An expired quarantine is not in force and is removed.
    one.quarantine(record(
        Target::Agent("brief".into()),
        "brief",
        Some(now_ms() + 50),
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(80)).await;
    let active = one.active().await.unwrap();
    assert_eq!(
        active.iter().map(|r| r.target.name()).collect::<Vec<_>>(),
        ["rogue"]
    );
}

async fn who_released_a_quarantine_is_kept_for_every_replica(backend: Backend) {
    let one = backend.open().await.quarantine();
    let other = backend.open().await.quarantine();
    let rogue = Target::Agent("rogue".into());
    let first = record(rogue.clone(), "first", None);
    one.quarantine(first.clone()).await.unwrap();
    let red = record(Target::Group("red".into()), "drill", None);
    one.quarantine(red.clone()).await.unwrap();

    let before = now_ms();
    let alice = Actor::cli("alice");
    other.release(&rogue, &alice).await.unwrap().unwrap();
    // Releasing what is not quarantined keeps no one's name.
    assert!(
        other
            .release(&Target::Agent("honest".into()), &alice)
            .await
            .unwrap()
            .is_none()
    );
    let asked = [
        (rogue.clone(), first.created_ms),
        (red.target.clone(), red.created_ms),
        (Target::Agent("honest".into()), first.created_ms),
        (rogue.clone(), first.created_ms - 1),
    ];
    let releases = one.releases(&asked).await.unwrap();
    assert_eq!(releases.len(), 1, "only the released one: {releases:?}");
    let release = &releases[0];
    assert_eq!(
        (&release.target, release.created_ms, &release.by),
        (&rogue, first.created_ms, &alice)
    );
    assert!(
        (before..=now_ms()).contains(&release.released_ms),
        "{release:?}"
    );

    // A later quarantine of the same target is another one, released by someone else.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = record(rogue.clone(), "second", None);
    assert_ne!(second.created_ms, first.created_ms);
    one.quarantine(second.clone()).await.unwrap();
    let carol = Actor::new("carol", "https://sso.example.com");
    one.release(&rogue, &carol).await.unwrap().unwrap();
    let mut releases = other
        .releases(&[
            (rogue.clone(), second.created_ms),
            (rogue.clone(), first.created_ms),
        ])
        .await
        .unwrap();
    releases.sort_by_key(|r| r.created_ms);
    let by: Vec<_> = releases
        .iter()
        .map(|r| (r.created_ms, r.by.clone()))
        .collect();
    assert_eq!(by, [(first.created_ms, alice), (second.created_ms, carol)]);
    assert_eq!(
        other.releases(&[]).await.unwrap(),
        Vec::<ReleaseRecord>::new()
    );
}

async fn who_released_is_pruned_after_a_week(backend: Backend) {
    let store = backend.open().await.quarantine();
    let old = record(Target::Agent("old".into()), "old", None);
    let recent = record(Target::Agent("recent".into()), "recent", None);
    store.quarantine(old.clone()).await.unwrap();
    store.quarantine(recent.clone()).await.unwrap();
    store
        .release(&old.target, &Actor::cli("alice"))
        .await
        .unwrap();
    // Released a week and a minute ago.
    backend
        .execute(&format!(
            "UPDATE quarantine_releases SET released_ms = released_ms - {}",
            RELEASES_KEPT_MS + 60_000
        ))
        .await;
    let keys = [
        (old.target.clone(), old.created_ms),
        (recent.target.clone(), recent.created_ms),
    ];
    assert_eq!(store.releases(&keys).await.unwrap().len(), 1);
    // The next release prunes it.
    store
        .release(&recent.target, &Actor::cli("bob"))
        .await
        .unwrap();
    let releases = store.releases(&keys).await.unwrap();
    assert_eq!(
        releases.iter().map(|r| r.target.name()).collect::<Vec<_>>(),
        ["recent"]
    );
}

async fn a_release_that_cannot_record_who_released_releases_nothing(backend: Backend) {
    let store = backend.open().await.quarantine();
    let rogue = record(Target::Agent("rogue".into()), "incident", None);
    store.quarantine(rogue.clone()).await.unwrap();
    let revision = store.revision().await.unwrap();
    backend.execute("DROP TABLE quarantine_releases").await;
    let err = store
        .release(&rogue.target, &Actor::cli("alice"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("release a quarantine"), "{err}");
    assert_eq!(store.active().await.unwrap(), [rogue]);
    assert_eq!(store.revision().await.unwrap(), revision);
}
