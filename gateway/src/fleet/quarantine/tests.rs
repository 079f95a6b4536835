//! A gateway's quarantines changed by another process on its store: each one lifted is
//! audited with who lifted it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::audit::config::AuditConfig;
use crate::audit::read::Reader;
use crate::state::sqlite::SqliteStore;

fn manual(name: &str, until_ms: Option<i64>) -> QuarantineRecord {
    QuarantineRecord {
        target: Target::Agent(name.into()),
        reason: "incident 4711".into(),
        trigger: "manual".into(),
        by: Actor::cli("alice"),
        created_ms: now_ms(),
        until_ms,
    }
}

#[tokio::test]
async fn a_refresh_that_read_the_store_before_a_quarantine_was_written_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::open(&dir.path().join("audit"), &AuditConfig::default()).unwrap();
    let gateway = Quarantines::new(audit.clone(), QuarantineMetrics::new());
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let _ = gateway.store.set(store.clone());
    // In force here, its write to the store still under way when a refresh reads the store.
    let record = manual("rogue", None);
    gateway.hold_here(Arc::new(record.clone()));
    gateway.refresh().await.unwrap();
    assert_eq!(
        gateway.list().len(),
        1,
        "a stale read of the store lifted it"
    );
    // Written, then read: the store's copy is the one kept, and nothing more is held here.
    store.quarantine(record.clone()).await.unwrap();
    gateway.made_here.written(&record);
    gateway.refresh().await.unwrap();
    assert_eq!(gateway.list().len(), 1);
    assert!(gateway.made_here().is_empty());
    // Released in another process: a read of the store after the write shows it released.
    let again = manual("again", None);
    gateway.hold_here(Arc::new(again.clone()));
    store.quarantine(again.clone()).await.unwrap();
    gateway.made_here.written(&again);
    store
        .release(&again.target, &Actor::cli("bob"))
        .await
        .unwrap();
    gateway.refresh().await.unwrap();
    assert_eq!(
        gateway.list().len(),
        1,
        "released elsewhere: {:?}",
        gateway.list()
    );
    audit.close().await.unwrap();
}

#[tokio::test]
async fn a_refresh_audits_who_released_a_quarantine_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let audit_dir = dir.path().join("audit");
    let audit = AuditLog::open(&audit_dir, &AuditConfig::default()).unwrap();
    let gateway = Quarantines::new(audit.clone(), QuarantineMetrics::new());
    let _ = gateway
        .store
        .set(Arc::new(SqliteStore::open(&path).await.unwrap()));
    // The command line, in another process on the same file.
    let cli = SqliteStore::open(&path).await.unwrap();

    let released = manual("released", None);
    let by_older_warden = manual("by-older-warden", None);
    let expiring = manual("expiring", Some(now_ms() + 300));
    for record in [&released, &by_older_warden, &expiring] {
        cli.quarantine(record.clone()).await.unwrap();
    }
    gateway.refresh().await.unwrap();
    assert_eq!(gateway.list().len(), 3);

    cli.release(&released.target, &Actor::cli("alice"))
        .await
        .unwrap()
        .unwrap();
    cli.release(&by_older_warden.target, &Actor::cli("bob"))
        .await
        .unwrap()
        .unwrap();
    // An older Warden released this one without keeping who did.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "DELETE FROM quarantine_releases WHERE name = 'by-older-warden'",
            [],
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    gateway.refresh().await.unwrap();
    assert!(gateway.list().is_empty());

    audit.close().await.unwrap();
    let released_by: HashMap<String, Value> = Reader::new(&audit_dir)
        .next_batch()
        .unwrap()
        .into_iter()
        .filter(|r| r.value["kind"] == "system" && r.value["detail"]["event"] == "release")
        .map(|r| {
            let detail = &r.value["detail"];
            (
                detail["target"]["name"].as_str().unwrap().to_owned(),
                detail["released_by"].clone(),
            )
        })
        .collect();
    assert_eq!(
        released_by,
        HashMap::from([
            (
                "released".to_owned(),
                json!({"id": "alice", "issuer": "warden-cli"})
            ),
            (
                "by-older-warden".to_owned(),
                json!({"id": "another process", "issuer": "warden"})
            ),
            (
                "expiring".to_owned(),
                json!({"id": "expiry", "issuer": "warden"})
            ),
        ])
    );
}

/// Two replicas on one store, a load balancer spreading an agent's requests over them: the
/// trigger on denies counts the fleet's denies, not each replica's.
#[tokio::test]
async fn denies_spread_over_replicas_quarantine_as_on_one() {
    let dir = tempfile::tempdir().unwrap();
    let replicas = two_replicas_on_one_store(dir.path()).await;
    let trigger = config::DeniesTrigger {
        count: 6,
        window: Duration::from_secs(300),
    };
    let agent: Arc<str> = "prober".into();
    let now = now_ms();
    // Five denies, spread over both replicas, each shared on the next tick: none fires yet.
    for n in 0..5 {
        let (gateway, _, _, _) = &replicas[n % 2];
        assert!(!gateway.denies.deny(&agent, &trigger, now + n as i64));
        for (gateway, store, _, name) in &replicas {
            gateway
                .share_step(&**store, name, Some(&trigger), now + n as i64)
                .await
                .unwrap();
        }
    }
    // The sixth within the window, on either replica, fires.
    let (gateway, _, _, _) = &replicas[1];
    assert!(
        gateway.denies.deny(&agent, &trigger, now + 5),
        "six denies within the window, three on each replica, did not quarantine"
    );
    for (_, _, audit, _) in replicas {
        audit.close().await.unwrap();
    }
}

/// The trigger fires on one replica with the denies of another: once the operator releases
/// the agent, the other replica's denies counted in that firing do not fire it again with
/// fewer new ones than the trigger's count.
#[tokio::test]
async fn denies_counted_in_a_firing_elsewhere_do_not_fire_again_after_a_release() {
    let dir = tempfile::tempdir().unwrap();
    let replicas = two_replicas_on_one_store(dir.path()).await;
    let trigger = config::DeniesTrigger {
        count: 6,
        window: Duration::from_secs(300),
    };
    let agent: Arc<str> = "prober".into();
    let now = now_ms();
    // Three denies on b, two on a, each shared; the sixth, on a, fires with b's three.
    for n in 0..5 {
        let (gateway, _, _, _) = &replicas[(n + 1) % 2];
        assert!(!gateway.denies.deny(&agent, &trigger, now + n as i64));
        share_all(&replicas, &trigger, now + n as i64).await;
    }
    assert!(replicas[0].0.denies.deny(&agent, &trigger, now + 5));
    share_all(&replicas, &trigger, now + 5).await;
    // Released within the window: three new denies on b are three, not six.
    for n in 6..9 {
        assert!(
            !replicas[1].0.denies.deny(&agent, &trigger, now + n),
            "b's denies counted in a's firing fired again after {} new ones",
            n - 5
        );
        share_all(&replicas, &trigger, now + n).await;
    }
    // Six new ones do.
    for n in 9..11 {
        assert!(!replicas[0].0.denies.deny(&agent, &trigger, now + n));
        share_all(&replicas, &trigger, now + n).await;
    }
    assert!(replicas[1].0.denies.deny(&agent, &trigger, now + 11));
    for (_, _, audit, _) in replicas {
        audit.close().await.unwrap();
    }
}

/// Two ticks of each replica, in turn, at `at`: one for each to store its denies, one for
/// each to read the other's.
/// Replicas `a` and `b`, each with its own audit log, sharing one SQLite state store in `dir`.
async fn two_replicas_on_one_store(
    dir: &std::path::Path,
) -> Vec<(
    Quarantines,
    Arc<dyn crate::state::fleet::FleetRepository>,
    AuditLog,
    &'static str,
)> {
    let path = dir.join("state.db");
    let mut replicas = Vec::new();
    for name in ["a", "b"] {
        let audit =
            AuditLog::open(&dir.join(format!("audit-{name}")), &AuditConfig::default()).unwrap();
        let gateway = Quarantines::new(audit.clone(), QuarantineMetrics::new());
        let store = crate::state::Store::sqlite(SqliteStore::open(&path).await.unwrap());
        replicas.push((gateway, store.fleet(), audit, name));
    }
    replicas
}

async fn share_all(
    replicas: &[(
        Quarantines,
        Arc<dyn crate::state::fleet::FleetRepository>,
        AuditLog,
        &str,
    )],
    trigger: &config::DeniesTrigger,
    at: i64,
) {
    for _ in 0..2 {
        for (gateway, store, _, name) in replicas {
            gateway
                .share_step(&**store, name, Some(trigger), at)
                .await
                .unwrap();
        }
    }
}
