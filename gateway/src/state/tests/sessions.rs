//! Approval-console sessions, on both backends.

use std::time::Duration;

use super::Backend;
use crate::state::sessions::NewSession;

on_both_backends!(
    a_session_is_resumed_by_its_id_only_while_it_lasts,
    expired_sessions_are_purged_and_logouts_delete,
);

fn session(id: &str, ttl: Duration) -> NewSession {
    NewSession {
        id: id.into(),
        csrf_token: format!("csrf-{id}"),
        subject: "alice".into(),
        display_name: "Alice Example".into(),
        groups: vec!["sre".into()],
        aliases: vec!["alice@example.com".into()],
        sealed_idp_token: Some(format!("sealed-{id}").into_bytes()),
        ttl,
    }
}

async fn a_session_is_resumed_by_its_id_only_while_it_lasts(backend: Backend) {
    let sessions = backend.open().await.sessions();
    sessions
        .create(session("s3cr3t-session-id", Duration::from_secs(3600)))
        .await
        .unwrap();
    let found = backend
        .open()
        .await
        .sessions()
        .resume("s3cr3t-session-id")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.subject, "alice");
    assert_eq!(found.display_name, "Alice Example");
    assert_eq!(found.groups, ["sre"]);
    assert_eq!(found.aliases, ["alice@example.com"]);
    assert_eq!(
        found.sealed_idp_token.as_deref(),
        Some(&b"sealed-s3cr3t-session-id"[..]),
        "the sign-in's sealed access token comes back with its session"
    );
    assert!(found.csrf_matches("csrf-s3cr3t-session-id"));
    assert!(!found.csrf_matches("csrf-other"));
    // Only the hashes are stored.
    assert!(!found.csrf_hash.contains("csrf-"));
    assert_eq!(sessions.resume("s3cr3t-session-iD").await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = sessions.resume("s3cr3t-session-id").await.unwrap().unwrap();
    assert!(again.last_seen_ms > found.created_ms);

    sessions
        .create(session("short", Duration::from_millis(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(sessions.resume("short").await.unwrap(), None);
}

async fn expired_sessions_are_purged_and_logouts_delete(backend: Backend) {
    let sessions = backend.open().await.sessions();
    sessions
        .create(session("long", Duration::from_secs(3600)))
        .await
        .unwrap();
    sessions
        .create(session("short", Duration::from_millis(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(sessions.purge_expired().await.unwrap(), 1);
    assert_eq!(sessions.purge_expired().await.unwrap(), 0);
    assert!(sessions.delete("long").await.unwrap());
    assert!(!sessions.delete("long").await.unwrap());
    assert_eq!(sessions.resume("long").await.unwrap(), None);
}
