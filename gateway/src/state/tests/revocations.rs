//! Token revocations, on both backends: stored, replaced (kept until the later expiry), seen
//! by another handle (another process on the file, another replica on the database),
//! announced on PostgreSQL, dropped once expired.

use std::time::Duration;

use super::Backend;
use crate::state::pins::now_ms;
use crate::state::quarantine::Actor;
use crate::state::revocations::{RevocationRecord, Revoked};

on_both_backends!(
    a_revocation_is_shared_replaced_and_expires,
    an_agent_revocation_keeps_the_latest_cutoff_and_expiry,
);

fn record(target: Revoked, reason: &str, created_ms: i64, expires_ms: i64) -> RevocationRecord {
    RevocationRecord {
        target,
        reason: reason.into(),
        by: Actor::new("alice", "https://sso.example.com"),
        created_ms,
        expires_ms,
    }
}

async fn a_revocation_is_shared_replaced_and_expires(backend: Backend) {
    let one = backend.open().await.revocations();
    let other = backend.open().await.revocations();
    let mut announced = other.announcements();
    let start = other.revision().await.unwrap();
    let now = now_ms();
    let day = 86_400_000;

    one.revoke(record(
        Revoked::Token("jti-1".into()),
        "leaked",
        now,
        now + day,
    ))
    .await
    .unwrap();
    one.revoke(record(
        Revoked::Agent("rogue".into()),
        "stolen",
        now,
        now + day,
    ))
    .await
    .unwrap();
    one.revoke(record(
        Revoked::Token("jti-1".into()),
        "leaked in a log",
        now,
        now + day,
    ))
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
    let token = active
        .iter()
        .find(|r| r.target == Revoked::Token("jti-1".into()))
        .unwrap();
    assert_eq!(token.reason, "leaked in a log");
    assert_eq!(token.by, Actor::new("alice", "https://sso.example.com"));
    assert!(
        active
            .iter()
            .any(|r| r.target == Revoked::Agent("rogue".into()))
    );

    // Once every token it stops has expired, a revocation is dropped from the store. Its
    // end is a second away, so that a loaded machine still reads it in force first.
    let end = now_ms() + 1_000;
    one.revoke(record(Revoked::Token("brief".into()), "brief", now, end))
        .await
        .unwrap();
    let read = other.active().await.unwrap();
    if now_ms() < end {
        assert_eq!(read.len(), 3, "{read:?}");
    }
    let left = u64::try_from(end + 30 - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(left)).await;
    let before = other.revision().await.unwrap();
    let active = other.active().await.unwrap();
    assert_eq!(active.len(), 2, "{active:?}");
    assert!(!active.iter().any(|r| r.target.name() == "brief"));
    assert!(
        other.revision().await.unwrap() > before,
        "dropping an expired revocation is a change the others learn of"
    );
}

async fn an_agent_revocation_keeps_the_latest_cutoff_and_expiry(backend: Backend) {
    let store = backend.open().await.revocations();
    let now = now_ms();
    let agent = || Revoked::Agent("a\u{1}b".into());
    store
        .revoke(record(agent(), "first", now, now + 10_000_000))
        .await
        .unwrap();
    // Made with an older time and a shorter expiry (another process's clock, a shorter
    // maximum lifetime): it neither moves the cutoff back nor drops the revocation earlier.
    store
        .revoke(record(agent(), "second", now - 5_000, now + 1_000_000))
        .await
        .unwrap();
    let active = store.active().await.unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].target, agent());
    assert_eq!(active[0].reason, "second");
    assert_eq!(active[0].created_ms, now);
    assert_eq!(active[0].expires_ms, now + 10_000_000);
}
