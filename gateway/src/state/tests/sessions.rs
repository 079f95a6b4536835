//! Approval-console sessions, on both backends.

use std::time::Duration;

use super::Backend;
use crate::state::sessions::NewSession;

on_both_backends!(
    a_session_is_resumed_by_its_id_only_while_it_lasts,
    expired_sessions_are_purged_and_logouts_delete,
    one_refresher_at_a_time_replaces_the_tokens_of_the_version_it_read,
    a_refresh_moves_the_end_of_the_session_only_when_told,
    a_resume_that_waited_for_the_session_past_its_end_finds_it_ended,
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

async fn one_refresher_at_a_time_replaces_the_tokens_of_the_version_it_read(backend: Backend) {
    // Two replicas (two handles on one store) refresh one session's tokens at once.
    let one = backend.open().await.sessions();
    let two = backend.open().await.sessions();
    one.create(session("s", Duration::from_secs(3600)))
        .await
        .unwrap();
    let read = one.resume("s").await.unwrap().unwrap();
    assert_eq!(read.idp_token_version, 0);
    assert_eq!(read.idp_refreshing_until_ms, None);
    let until = crate::state::pins::now_ms() + 60_000;
    assert!(
        one.claim_refresh("s", 0, until).await.unwrap(),
        "the first claims"
    );
    assert!(
        !two.claim_refresh("s", 0, until).await.unwrap(),
        "the other waits while the claim holds"
    );
    let claimed = two.resume("s").await.unwrap().unwrap();
    assert_eq!(claimed.idp_refreshing_until_ms, Some(until));
    assert!(
        one.replace_idp_token("s", 0, b"sealed-v1".to_vec(), None)
            .await
            .unwrap()
    );
    // A replacement of the version already replaced (a late second refresher) is refused: the
    // newer tokens stay.
    assert!(
        !two.replace_idp_token("s", 0, b"sealed-late".to_vec(), None)
            .await
            .unwrap()
    );
    let now = two.resume("s").await.unwrap().unwrap();
    assert_eq!(now.idp_token_version, 1);
    assert_eq!(now.sealed_idp_token.as_deref(), Some(&b"sealed-v1"[..]));
    assert_eq!(now.idp_refreshing_until_ms, None, "the claim is lifted");
    assert!(
        !two.claim_refresh("s", 0, until).await.unwrap(),
        "an old version cannot be claimed"
    );
    // A failed refresh lifts its own claim (not another's), so the next try need not wait.
    assert!(one.claim_refresh("s", 1, until).await.unwrap());
    two.release_refresh("s", 1, until + 1).await.unwrap();
    assert!(
        !two.claim_refresh("s", 1, until).await.unwrap(),
        "not its claim"
    );
    one.release_refresh("s", 1, until).await.unwrap();
    assert!(two.claim_refresh("s", 1, until).await.unwrap());
    two.release_refresh("s", 1, until).await.unwrap();
    // A claim that lapsed (its replica died mid-refresh) can be taken over.
    let lapsed = crate::state::pins::now_ms() - 1;
    assert!(one.claim_refresh("s", 1, lapsed).await.unwrap());
    assert!(two.claim_refresh("s", 1, until).await.unwrap());
    // Nothing is claimed or replaced for a session that is gone.
    assert!(one.delete("s").await.unwrap());
    assert!(!one.claim_refresh("s", 1, until).await.unwrap());
    assert!(!one.replace_idp_token("s", 1, vec![1], None).await.unwrap());
}

async fn a_refresh_moves_the_end_of_the_session_only_when_told(backend: Backend) {
    let sessions = backend.open().await.sessions();
    // A second: the steps before its first end take a few round trips each, on a loaded
    // machine too.
    sessions
        .create(session("s", Duration::from_secs(1)))
        .await
        .unwrap();
    let read = sessions.resume("s").await.unwrap().unwrap();
    // Tokens renewed without a new ID token: the session ends when it did.
    assert!(
        sessions
            .replace_idp_token("s", 0, b"sealed-v1".to_vec(), None)
            .await
            .unwrap()
    );
    let kept = sessions.resume("s").await.unwrap().unwrap();
    assert_eq!(kept.expires_ms, read.expires_ms);
    // A new ID token: the session lasts until it expires, past its first end.
    let later = crate::state::pins::now_ms() + 60_000;
    assert!(
        sessions
            .replace_idp_token("s", 1, b"sealed-v2".to_vec(), Some(later))
            .await
            .unwrap()
    );
    let moved = sessions.resume("s").await.unwrap().unwrap();
    assert_eq!(moved.expires_ms, later);
    assert_eq!(moved.created_ms, read.created_ms, "still the same sign-in");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        sessions.resume("s").await.unwrap().is_some(),
        "alive past its first end"
    );
    // A session already over is not brought back.
    sessions
        .create(session("gone", Duration::from_millis(50)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        !sessions
            .replace_idp_token("gone", 0, vec![1], Some(later))
            .await
            .unwrap()
    );
    assert_eq!(sessions.resume("gone").await.unwrap(), None);
}

/// A resume asked before a session's end but made after it, having waited for another
/// replica's step on the session (PostgreSQL: its row's lock; SQLite: the store's write lock),
/// finds it ended: the time it is judged by is read once the lock is held.
async fn a_resume_that_waited_for_the_session_past_its_end_finds_it_ended(backend: Backend) {
    let sessions = backend.open().await.sessions();
    sessions
        .create(session("late", Duration::from_secs(3)))
        .await
        .unwrap();
    let end = sessions.resume("late").await.unwrap().unwrap().expires_ms;
    let holding = super::hold_lock(
        &backend,
        &format!(
            "SELECT 1 FROM console_sessions WHERE id_hash = '{}' FOR UPDATE",
            crate::state::sessions::secret_hash("late")
        ),
        "l.relation = 'console_sessions'::regclass AND l.mode = 'RowShareLock'",
        end + 400,
    )
    .await;
    assert!(
        crate::state::pins::now_ms() < end,
        "the lock was taken before the session's end"
    );
    let resumed = sessions.resume("late").await.unwrap();
    holding.await.unwrap();
    assert_eq!(resumed, None, "a session resumed after its end");
}
