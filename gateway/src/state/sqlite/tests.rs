//! What only the SQLite backend does: its file, write-ahead logging, `user_version`. The
//! repositories' rules are tested on both backends in `state/tests/`.

use super::*;
use crate::state::pins::{Approver, PinRepository, StoredDefinition};

fn definition(digest: &str) -> StoredDefinition {
    StoredDefinition {
        digest: format!("sha256:{digest}"),
        json: format!(r#"{{"description":"{digest}","name":"t"}}"#),
        at_ms: 1_790_000_000_000,
    }
}

async fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state").join("state.db"))
        .await
        .unwrap()
}

fn user_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_new_store_is_created_in_wal_mode_at_the_latest_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    assert_eq!(
        user_version(store.path()),
        i64::try_from(migrations::MIGRATIONS.len()).unwrap()
    );
    let mode: String = Connection::open(store.path())
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(store.revision().await.unwrap(), 0);
}

#[tokio::test]
async fn a_new_store_and_its_wal_and_shm_files_are_for_warden_s_user_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    // Something written, so that the -wal and -shm files exist.
    store
        .pin_first_use("fs", "read_file", definition("a"))
        .await
        .unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", store.path().display());
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}

#[tokio::test]
async fn pins_survive_a_reopen_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let store = store(&dir).await;
        store
            .pin_first_use("fs", "read_file", definition("a"))
            .await
            .unwrap();
        store.path().to_path_buf()
    };
    // The thread has ended with its last handle; a new process opens the same file.
    let again = SqliteStore::open(&path).await.unwrap();
    let pins = again.all().await.unwrap();
    assert_eq!(pins.len(), 1);
    assert_eq!(pins[0].tool, "read_file");
    assert_eq!(
        pins[0]
            .approved
            .as_ref()
            .map(|(d, by)| (d.digest.as_str(), by)),
        Some(("sha256:a", &Approver::FirstUse))
    );
    assert_eq!(
        user_version(&path),
        i64::try_from(migrations::MIGRATIONS.len()).unwrap()
    );
}

#[tokio::test]
async fn a_store_from_a_newer_warden_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StateError::TooNew { found: 99, .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("restore a backup"), "{text}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(err, StateError::Open { .. }), "{err}");
    assert!(err.to_string().contains("state.db"), "{err}");
    assert!(err.to_string().contains("state.sqlite"), "{err}");
}

#[tokio::test]
async fn quarantines_stored_before_issuers_were_recorded_keep_who_put_them() {
    use crate::state::quarantine::{Actor, QuarantineRepository};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let conn = Connection::open(&path).unwrap();
    for step in &migrations::MIGRATIONS[..7] {
        conn.execute_batch(step).unwrap();
    }
    conn.execute_batch(
        "PRAGMA user_version = 7;
         INSERT INTO quarantines (kind, name, reason, trigger, by, created_ms, until_ms) VALUES
           ('agent', 'a', 'r', 'manual', 'operator:alice', 1, NULL),
           ('agent', 'b', 'r', 'manual', 'admin:alice', 2, NULL),
           ('agent', 'c', 'r', 'canary', 'warden', 3, NULL);",
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(&path).await.unwrap();
    let by: Vec<_> = store
        .active()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.by)
        .collect();
    assert_eq!(
        by,
        [
            Actor::cli("alice"),
            Actor::new("alice", "unrecorded"),
            Actor::warden()
        ]
    );
}

#[test]
fn a_migration_logs_one_info_line_from_and_to_with_each_step_at_debug() {
    use crate::state::migrated::Migrated;
    use crate::state::tests::capture_logs;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = path.display().to_string();
    let latest = migrations::MIGRATIONS.len();
    // A file the release with schema 14 left.
    let mut conn = Connection::open(&path).unwrap();
    for step in &migrations::MIGRATIONS[..14] {
        conn.execute_batch(step).unwrap();
    }
    conn.execute_batch("PRAGMA user_version = 14").unwrap();
    let (guard, captured) = capture_logs(tracing::Level::INFO);
    let migrated = migrations::migrate(&mut conn, &path).unwrap();
    let log = captured.text();
    assert_eq!(
        migrated,
        Migrated {
            from: 14,
            to: latest
        }
    );
    // Only this store's lines: what other tests log meanwhile does not count.
    let own = |log: &str, level: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(level) && l.contains(&store))
            .map(str::to_owned)
            .collect()
    };
    let info = own(&log, " INFO ");
    assert_eq!(info.len(), 1, "one INFO line per start:\n{log}");
    assert!(
        info[0].contains(&format!(
            "state schema migrated from version 14 to {latest} ({} steps)",
            latest - 14
        )),
        "{log}"
    );
    // The steps are at DEBUG: none of them at INFO.
    assert_eq!(own(&log, "").len(), 1, "{log}");
    let again = captured.text().len();
    let migrated = migrations::migrate(&mut conn, &path).unwrap();
    drop(guard);
    let log = captured.text().split_off(again);
    assert_eq!(
        migrated,
        Migrated {
            from: latest,
            to: latest
        }
    );
    let info = own(&log, " INFO ");
    assert_eq!(info.len(), 1, "{log}");
    assert!(
        info[0].contains(&format!(
            "state schema at version {latest}, nothing to apply"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn every_operation_tells_the_store_s_health_whether_it_succeeded() {
    use crate::state::revocations::RevocationRepository;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let health = store.health();
    RevocationRepository::revision(&store).await.unwrap();
    assert!(health.is_up());
    // The table every revision lives in taken away by someone else: the read fails.
    let other = Connection::open(store.path()).unwrap();
    other
        .execute_batch("ALTER TABLE revisions RENAME TO revisions_away")
        .unwrap();
    RevocationRepository::revision(&store).await.unwrap_err();
    assert!(!health.is_up());
    other
        .execute_batch("ALTER TABLE revisions_away RENAME TO revisions")
        .unwrap();
    RevocationRepository::revision(&store).await.unwrap();
    assert!(health.is_up());
}

#[tokio::test]
async fn a_file_moved_away_fails_every_operation_until_it_is_back() {
    use crate::state::revocations::RevocationRepository;
    let dir = tempfile::tempdir().unwrap();
    let (here, away) = (dir.path().join("state"), dir.path().join("away"));
    let store = SqliteStore::open(&here.join("state.db")).await.unwrap();
    let health = store.health();
    RevocationRepository::revision(&store).await.unwrap();

    // The directory moved: the open connection would go on writing a file no start finds.
    std::fs::rename(&here, &away).unwrap();
    let error = RevocationRepository::revision(&store).await.unwrap_err();
    assert!(matches!(error, StateError::Moved { .. }), "{error}");
    assert!(error.to_string().contains("state.db"), "{error}");
    assert!(!health.is_up());
    // Another file at the path is not the one opened either.
    std::fs::create_dir(&here).unwrap();
    std::fs::write(here.join("state.db"), b"").unwrap();
    let error = RevocationRepository::revision(&store).await.unwrap_err();
    assert!(matches!(error, StateError::Moved { .. }), "{error}");

    // Back where it was: the store answers again.
    std::fs::remove_dir_all(&here).unwrap();
    std::fs::rename(&away, &here).unwrap();
    RevocationRepository::revision(&store).await.unwrap();
    assert!(health.is_up());
}

/// What the time-now tests below hold: a console session of `ttl`.
fn console_session(id: &str, ttl: Duration) -> crate::state::sessions::NewSession {
    crate::state::sessions::NewSession {
        id: id.into(),
        csrf_token: format!("csrf-{id}"),
        subject: "alice".into(),
        display_name: "Alice Example".into(),
        groups: vec![],
        aliases: vec![],
        sealed_idp_token: None,
        ttl,
    }
}

/// Another process's transaction holding the file's write lock, as `warden tools …` does.
fn hold_write_lock(path: &Path) -> Connection {
    let other = Connection::open(path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    other
}

#[tokio::test]
async fn a_session_that_ends_while_the_store_waits_for_another_process_is_not_resumed() {
    use crate::state::sessions::SessionRepository;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let ttl = Duration::from_millis(800);
    store.create(console_session("waited", ttl)).await.unwrap();
    let other = hold_write_lock(store.path());
    // Asked while the session lasts; it runs once the other transaction ends, after its end.
    let resumed = tokio::spawn({
        let store = store.clone();
        async move { SessionRepository::resume(&store, "waited").await }
    });
    tokio::time::sleep(ttl + Duration::from_millis(400)).await;
    other.execute_batch("COMMIT").unwrap();
    let resumed = resumed.await.unwrap().unwrap();
    assert!(resumed.is_none(), "resumed past its end: {resumed:?}");
}

#[tokio::test]
async fn a_session_s_last_use_is_when_the_store_ran_it_so_it_never_goes_back() {
    use crate::state::sessions::SessionRepository;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    store
        .create(console_session("raced", Duration::from_secs(3600)))
        .await
        .unwrap();
    // Two uses racing: the one asked for first runs second.
    let first = SessionRepository::resume(&store, "raced");
    tokio::time::sleep(Duration::from_millis(30)).await;
    let second = SessionRepository::resume(&store, "raced")
        .await
        .unwrap()
        .unwrap();
    let first = first.await.unwrap().unwrap();
    assert!(
        first.last_seen_ms >= second.last_seen_ms,
        "last use went back from {} to {}",
        second.last_seen_ms,
        first.last_seen_ms
    );
}

#[tokio::test]
async fn sessions_ended_by_the_time_the_purge_runs_are_purged() {
    use crate::state::sessions::SessionRepository;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let ttl = Duration::from_millis(100);
    store.create(console_session("brief", ttl)).await.unwrap();
    let purge = store.purge_expired();
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(purge.await.unwrap(), 1);
}

/// Session `s`'s label `exfil`, put by `a`, until `expires_ms`.
fn label(expires_ms: i64) -> crate::state::fleet::SessionLabel {
    crate::state::fleet::SessionLabel {
        session: "s".into(),
        label: "exfil".into(),
        owner: "a".into(),
        expires_ms,
        updated_ms: 0,
    }
}

#[tokio::test]
async fn labels_ended_by_the_time_they_are_read_are_tidied_away_first() {
    use crate::state::fleet::FleetRepository;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let label = label(crate::state::pins::now_ms() + 100);
    store.add_labels(vec![label]).await.unwrap();
    let read = FleetRepository::labels(&store, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let labels = read.await.unwrap();
    assert!(labels.is_empty(), "read past their end: {labels:?}");
}

#[tokio::test]
async fn a_batch_written_after_waiting_for_another_process_is_stamped_when_it_took_effect() {
    use crate::state::fleet::FleetRepository;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let label = label(i64::MAX);
    let other = hold_write_lock(store.path());
    let added = tokio::spawn({
        let store = store.clone();
        async move { store.add_labels(vec![label]).await }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let released_ms = crate::state::pins::now_ms();
    other.execute_batch("COMMIT").unwrap();
    added.await.unwrap().unwrap();
    let labels = FleetRepository::labels(&store, 0).await.unwrap();
    assert_eq!(labels.len(), 1);
    assert!(
        labels[0].updated_ms >= released_ms,
        "stamped {} before the write lock was released at {released_ms}",
        labels[0].updated_ms
    );
}
