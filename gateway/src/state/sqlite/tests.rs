use super::*;
use crate::state::pins::{ApproveOutcome, Approver, PinRepository, StoredDefinition};

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
async fn first_use_pins_once_and_later_definitions_wait_for_approval() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    let (pin, created) = store
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(pin.approved.unwrap().0.digest, "sha256:a");
    // A second first use (another replica racing) keeps the first pin.
    let (pin, created) = store
        .pin_first_use("fs", "t", definition("b"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(pin.approved.unwrap().0.digest, "sha256:a");

    let (pin, recorded) = store.propose("fs", "t", definition("b")).await.unwrap();
    assert!(recorded);
    assert_eq!(pin.pending.unwrap().digest, "sha256:b");
    // The same change seen again is not news; the approved definition is never pending.
    assert!(!store.propose("fs", "t", definition("b")).await.unwrap().1);
    assert!(!store.propose("fs", "t", definition("a")).await.unwrap().1);
}

#[tokio::test]
async fn approving_moves_the_pending_definition_only_if_it_is_the_one_expected() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    store
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    store.propose("fs", "t", definition("b")).await.unwrap();
    let alice = Approver::Operator("alice".into());

    let outcome = store
        .approve_pending("fs", "t", Some("sha256:zzz"), alice.clone())
        .await
        .unwrap();
    assert!(matches!(outcome, ApproveOutcome::DigestMismatch(_)));

    let ApproveOutcome::Approved(pin) = store
        .approve_pending("fs", "t", Some("sha256:b"), alice.clone())
        .await
        .unwrap()
    else {
        panic!("not approved")
    };
    assert_eq!(pin.pending, None);
    let (approved, by) = pin.approved.unwrap();
    assert_eq!((approved.digest.as_str(), by), ("sha256:b", alice.clone()));

    assert!(matches!(
        store
            .approve_pending("fs", "t", None, alice.clone())
            .await
            .unwrap(),
        ApproveOutcome::AlreadyApproved(_)
    ));
    assert_eq!(
        store
            .approve_pending("fs", "nope", None, alice)
            .await
            .unwrap(),
        ApproveOutcome::Unknown
    );
}

#[tokio::test]
async fn an_operator_approval_confirms_a_first_use_pin() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    store
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    let bob = Approver::Operator("bob".into());
    let ApproveOutcome::Approved(pin) = store
        .approve_pending("fs", "t", None, bob.clone())
        .await
        .unwrap()
    else {
        panic!("not approved")
    };
    let (approved, by) = pin.approved.unwrap();
    assert_eq!((approved.digest.as_str(), by), ("sha256:a", bob));
}

#[tokio::test]
async fn a_configured_approval_clears_the_same_pending_definition_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
    store.propose("fs", "t", definition("a")).await.unwrap();
    let pin = store
        .approve_definition("fs", "t", definition("a"), Approver::Configuration)
        .await
        .unwrap();
    assert_eq!(pin.pending, None);
    store.propose("fs", "t", definition("b")).await.unwrap();
    let pin = store
        .approve_definition("fs", "t", definition("c"), Approver::Configuration)
        .await
        .unwrap();
    assert_eq!(pin.approved.unwrap().0.digest, "sha256:c");
    assert_eq!(pin.pending.unwrap().digest, "sha256:b");
}

#[tokio::test]
async fn every_change_bumps_the_revision_another_process_reads() {
    let dir = tempfile::tempdir().unwrap();
    let writer = store(&dir).await;
    let reader = SqliteStore::open(writer.path()).await.unwrap();
    let before = reader.revision().await.unwrap();
    writer
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    let after_pin = reader.revision().await.unwrap();
    assert!(after_pin > before);
    // Nothing changed: the revision stays.
    writer.propose("fs", "t", definition("a")).await.unwrap();
    assert_eq!(reader.revision().await.unwrap(), after_pin);
    writer.propose("fs", "t", definition("b")).await.unwrap();
    assert!(reader.revision().await.unwrap() > after_pin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_in_two_processes_record_a_change_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = store(&dir).await;
    let second = SqliteStore::open(first.path()).await.unwrap();
    first
        .pin_first_use("fs", "t", definition("a"))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store.propose("fs", "t", definition("b")).await.unwrap().1
        }));
    }
    let mut recorded = 0;
    for task in tasks {
        recorded += usize::from(task.await.unwrap());
    }
    assert_eq!(recorded, 1, "exactly one writer records the change");
    // And many tools at once, from both handles: every one is there afterwards.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        tasks.push(tokio::spawn(async move {
            store
                .pin_first_use("fs", &format!("tool{i}"), definition("a"))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(first.all().await.unwrap().len(), 21);
}
