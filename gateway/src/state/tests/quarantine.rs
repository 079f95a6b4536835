//! Quarantines, on both backends: stored, replaced, released, expired, seen by another handle
//! (another process on the file, another replica on the database), announced on PostgreSQL.

use std::time::Duration;

use super::Backend;
use crate::state::pins::now_ms;
use crate::state::quarantine::{Actor, QuarantineRecord, Target};

on_both_backends!(a_quarantine_is_shared_replaced_released_and_expires,);

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
        .release(&Target::Group("red".into()))
        .await
        .unwrap()
        .expect("it was quarantined");
    assert_eq!(released.reason, "drill");
    assert!(
        one.release(&Target::Group("red".into()))
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
