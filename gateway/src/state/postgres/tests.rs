//! What only the PostgreSQL backend does: its URL, its connection errors, migrations under
//! the advisory lock. The repositories' rules are tested on both backends in `state/tests/`;
//! these tests, too, need the cluster `tests/run` starts, except where they say otherwise.

use std::time::Duration;

use super::migrations::MIGRATIONS;
use super::*;
use crate::state::Store;
use crate::state::config::{PostgresConfig, PostgresTls, StateConfig};
use crate::state::tests::{drop_database, fresh_database, options, psql};

/// Runs without the cluster: nothing listens on the port.
#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://warden:hunter2-secret@127.0.0.1:{port}/wardenstate");
    let err = PostgresStore::connect(PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..options(&url)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StateError::PostgresConnect { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("warden@127.0.0.1:{port}/wardenstate")),
        "{text}"
    );
    assert!(text.contains("state.postgres.url"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // What happened, not only tokio-postgres's "error connecting to server".
    assert!(text.contains("Connection refused"), "{text}");
}

/// Runs without the cluster.
#[tokio::test]
async fn a_url_that_is_not_one_is_refused_without_quoting_it() {
    let err = PostgresStore::connect(options("postgres://warden:hunter2@host:notaport/db"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StateError::PostgresUrlInvalid { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn a_database_from_a_newer_warden_is_refused_with_what_to_do() {
    let url = fresh_database("postgres_a_database_from_a_newer_warden").await;
    drop(PostgresStore::connect(options(&url)).await.unwrap());
    psql(&url, "UPDATE warden_schema SET version = 99").await;
    let err = PostgresStore::connect(options(&url)).await.unwrap_err();
    assert!(
        matches!(err, StateError::PostgresTooNew { found: 99, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("restore a backup"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_at_once_migrate_the_database_once() {
    let url = fresh_database("postgres_replicas_starting_at_once").await;
    let mut starting = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        starting.push(tokio::spawn(async move {
            PostgresStore::connect(options(&url)).await
        }));
    }
    for replica in starting {
        replica.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        psql(
            &url,
            "SELECT count(*) || ' ' || max(version) FROM warden_schema"
        )
        .await,
        format!("1 {}", MIGRATIONS.len())
    );
    assert_eq!(
        psql(
            &url,
            "SELECT revision FROM revisions WHERE concern = 'pins'"
        )
        .await,
        "0"
    );
}

#[tokio::test]
async fn the_store_reads_its_url_from_the_configured_source() {
    let url = fresh_database("postgres_the_store_reads_its_url").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state-url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let config = StateConfig {
        sqlite: None,
        postgres: Some(PostgresConfig {
            url: crate::secrets::CredentialSource::File(file),
            pool_size: 2,
            connect_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(10),
            tls: PostgresTls::default(),
        }),
    };
    let store = Store::open(&config, dir.path(), None).await.unwrap();
    assert!(
        store.location().starts_with("postgres "),
        "{}",
        store.location()
    );
    let password = url.split('@').next().unwrap().rsplit(':').next().unwrap();
    assert!(!store.location().contains(password), "{}", store.location());
    assert_eq!(store.pins().revision().await.unwrap(), 0);
    // Nothing was written to data_dir.
    assert!(!dir.path().join("state.db").exists());

    let missing = StateConfig {
        postgres: Some(PostgresConfig {
            url: crate::secrets::CredentialSource::Env("WARDEN_TEST_NO_SUCH_VARIABLE".into()),
            ..config.postgres.clone().unwrap()
        }),
        ..config
    };
    let err = Store::open(&missing, dir.path(), None).await.unwrap_err();
    assert!(matches!(err, StateError::PostgresUrl { .. }), "{err}");
    assert!(err.to_string().contains("state.postgres.url"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_an_error_never_an_answer() {
    use crate::state::approvals::ApprovalRepository;
    let test = "postgres_a_lost_database_is_an_error";
    let url = fresh_database(test).await;
    let store = PostgresStore::connect(PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..options(&url)
    })
    .await
    .unwrap();
    assert_eq!(store.get("apr_x").await.unwrap(), None);
    drop_database(test).await;
    let err = store.get("apr_x").await.unwrap_err();
    assert!(
        matches!(
            err,
            StateError::PostgresConnect { .. } | StateError::PostgresQuery { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains(store.database()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_waiting_on_a_lock_fails_after_the_query_timeout() {
    use crate::state::approvals::ApprovalRepository;
    let url = fresh_database("postgres_an_operation_waiting_on_a_lock").await;
    let store = PostgresStore::connect(PostgresOptions {
        query_timeout: Duration::from_millis(500),
        ..options(&url)
    })
    .await
    .unwrap();
    // Another session holds the approvals table: every read of it waits.
    let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    holder
        .batch_execute("BEGIN; LOCK TABLE approvals IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Every pooled connection idle, none made by the read below.
    let idle = store.pool.status().size;
    assert!(idle >= 1, "the store keeps a connection from its start");

    let err = tokio::time::timeout(Duration::from_secs(60), store.get("apr_x"))
        .await
        .expect("the read ends at its query timeout, not when the lock is released")
        .unwrap_err();
    assert!(matches!(err, StateError::PostgresTimeout { .. }), "{err}");
    assert!(
        err.to_string().contains("state.postgres.query_timeout"),
        "{err}"
    );
    let waiting = psql(
        &url,
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND application_name = 'warden' AND datname = current_database()",
    )
    .await;
    assert_eq!(waiting, "0", "the statement was cancelled on the server");
    assert_eq!(
        store.pool.status().size,
        idle - 1,
        "the timed-out connection is closed, not given to the next user"
    );

    holder.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(store.get("apr_x").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_told_when_the_listening_connection_was_lost() {
    use crate::state::approvals::{
        ApprovalRepository, NewApproval, SecondFactor, Vote, VoteDecision,
    };
    let url = fresh_database("postgres_watchers_are_told_when_the_listening").await;
    let holder = PostgresStore::connect(options(&url)).await.unwrap();
    let console = PostgresStore::connect(options(&url)).await.unwrap();
    let mut creation = holder.changes.subscribe();
    let (record, _) = holder
        .create_or_find(NewApproval {
            digest: "sha256:a".into(),
            principal: "Agent::\"a\"".into(),
            action: "Action::\"llm:chat\"".into(),
            resource: "Model::\"m\"".into(),
            context: serde_json::json!({}),
            policy: "p".into(),
            reason: "r".into(),
            approver_groups: vec![],
            required: 1,
            ttl: Duration::from_secs(3600),
            pending_cap: None,
        })
        .await
        .unwrap();
    // The creation's own notification reaches the holder's listening connection some time
    // after the creation returns (later still on a busy machine): it is awaited here, so that
    // the watch below is woken by what the loss of that connection brings, not by it.
    tokio::time::timeout(Duration::from_secs(10), async {
        while *creation.recv().await.unwrap() != *record.id {}
    })
    .await
    .expect("the creation was not announced within 10 s");
    let mut watch = holder.watch(&record.id);
    // Both stores' listening connections are cut.
    let cut = psql(
        &url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .await;
    assert_eq!(cut, "2");
    tokio::time::timeout(Duration::from_secs(10), watch.changed())
        .await
        .expect("not told within 10 s that changes may have been missed")
        .unwrap();
    // Told once listening again, which the store's health heard of before the watchers were
    // told (`listen.rs`): the loss was counted, and listening again brought it up.
    let health = holder.health();
    use crate::state::health::{Area, Failure};
    assert_eq!(
        health.failures(Area::Notifications, Failure::Unreachable),
        1
    );
    assert!(health.is_up());
    // Listening again: a decision on the other replica arrives.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut watch = holder.watch(&record.id);
    console
        .vote(
            &record.id,
            Vote {
                approver: "alice".into(),
                names: Vec::new(),
                decision: VoteDecision::Approve,
                factor: SecondFactor::Totp,
                source: None,
                at_ms: crate::state::pins::now_ms(),
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("the decision was not announced within 5 s after reconnecting")
        .unwrap();
}

/// Runs without the cluster.
#[tokio::test]
async fn a_ca_file_without_certificates_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("db-ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = PostgresStore::connect(PostgresOptions {
        ca_file: Some(ca.clone()),
        ..options("postgres://warden:pw@127.0.0.1:1/warden")
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StateError::PostgresTls { .. }), "{err}");
    assert!(err.to_string().contains("db-ca.pem"), "{err}");
}

/// Runs without the cluster: refused before connecting, at start and by `warden check`.
#[tokio::test]
async fn verify_ca_without_a_ca_file_is_refused_at_start_and_by_check() {
    let url = "postgres://warden:pw@127.0.0.1:1/warden?sslmode=verify-ca";
    let err = PostgresStore::connect(options(url)).await.unwrap_err();
    assert!(matches!(err, StateError::VerifyCaWithoutCaFile), "{err}");
    assert!(
        err.to_string().contains("state.postgres.tls.ca_file"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state-url");
    let configured = |url: &str, ca_file: Option<std::path::PathBuf>| {
        std::fs::write(&file, format!("{url}\n")).unwrap();
        configured_tls_fault(&PostgresConfig {
            url: crate::secrets::CredentialSource::File(file.clone()),
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
            tls: PostgresTls { ca_file },
        })
    };
    let fault = configured(url, None).expect("verify-ca without ca_file is refused");
    assert!(
        matches!(fault, StateError::VerifyCaWithoutCaFile),
        "{fault}"
    );
    assert!(configured(url, Some("/etc/warden/db-ca.pem".into())).is_none());
    assert!(configured(&url.replace("verify-ca", "verify-full"), None).is_none());
    assert!(configured("host=db user=warden sslmode=verify-ca", None).is_some());
}

/// Runs without the cluster: refused before connecting, at start and by `warden check`.
#[tokio::test]
async fn sslrootcert_naming_another_file_than_ca_file_is_refused_at_start_and_by_check() {
    let url = "postgres://warden:pw@127.0.0.1:1/warden?sslmode=verify-full&sslrootcert=/etc/warden/url-ca.pem";
    let err = PostgresStore::connect(PostgresOptions {
        ca_file: Some("/etc/warden/db-ca.pem".into()),
        ..options(url)
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, StateError::SslRootCertConflict { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("pw@"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state-url");
    std::fs::write(&file, format!("{url}\n")).unwrap();
    let configured = |ca_file: Option<std::path::PathBuf>| {
        configured_tls_fault(&PostgresConfig {
            url: crate::secrets::CredentialSource::File(file.clone()),
            pool_size: 2,
            connect_timeout: Duration::from_secs(1),
            query_timeout: Duration::from_secs(1),
            tls: PostgresTls { ca_file },
        })
    };
    let fault = configured(Some("/etc/warden/db-ca.pem".into())).expect("refused");
    assert!(
        matches!(fault, StateError::SslRootCertConflict { .. }),
        "{fault}"
    );
    assert!(configured(Some("/etc/warden/url-ca.pem".into())).is_none());
    assert!(configured(None).is_none());
    // A CA file named in the URL is read as ca_file is: one without certificates is refused,
    // naming it.
    let ca = dir.path().join("url-ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let err = PostgresStore::connect(options(&format!(
        "postgres://warden:pw@127.0.0.1:1/warden?sslrootcert={}",
        ca.display()
    )))
    .await
    .unwrap_err();
    assert!(matches!(err, StateError::PostgresTls { .. }), "{err}");
    assert!(err.to_string().contains("url-ca.pem"), "{err}");
}

#[tokio::test]
async fn sslmode_require_refuses_a_server_without_tls() {
    let url = fresh_database("postgres_sslmode_require_refuses").await;
    let url = url.replace("sslmode=disable", "sslmode=require");
    let err = PostgresStore::connect(PostgresOptions {
        connect_timeout: Duration::from_secs(5),
        ..options(&url)
    })
    .await
    .unwrap_err();
    assert!(matches!(err, StateError::PostgresConnect { .. }), "{err}");
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn migrations_log_one_info_line_and_server_notices_stay_out_of_info() {
    use crate::state::migrated::Migrated;
    use crate::state::tests::capture_logs;
    use deadpool_postgres::Connect;
    let test = "postgres_migrations_log_each_step";
    let url = fresh_database(test).await;
    let config: tokio_postgres::Config = url.parse().unwrap();
    let (guard, captured) = capture_logs(tracing::Level::DEBUG);
    // A connection as the pool makes them; its task runs on this test's thread.
    let (mut client, _task) = super::notices::LoggingConnect {
        tls: tokio_postgres::NoTls,
    }
    .connect(&config)
    .await
    .unwrap();
    // A database the release with schema 14 left.
    client
        .batch_execute(
            "CREATE TABLE warden_schema (version BIGINT NOT NULL);
             INSERT INTO warden_schema (version) VALUES (14);",
        )
        .await
        .unwrap();
    for step in &MIGRATIONS[..14] {
        client.batch_execute(step).await.unwrap();
    }
    let latest = MIGRATIONS.len();
    // Named after the test, so that its lines are told from any other test's.
    let store = test;
    let migrated = migrations::migrate(&mut client, store).await.unwrap();
    assert_eq!(
        migrated,
        Migrated {
            from: 14,
            to: latest
        }
    );
    // Again: `CREATE TABLE IF NOT EXISTS warden_schema` makes the server send its notice.
    let again = migrations::migrate(&mut client, store).await.unwrap();
    assert_eq!(
        again,
        Migrated {
            from: latest,
            to: latest
        }
    );
    client
        .batch_execute(
            "DO $$ BEGIN RAISE NOTICE 'a test notice'; RAISE WARNING 'a test warning'; END $$",
        )
        .await
        .unwrap();
    drop(guard);
    let log = captured.text();
    let own = |level: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains(level) && l.contains(&format!("store=\"{store}\"")))
            .collect()
    };
    let info = own(" INFO ");
    assert_eq!(info.len(), 2, "one INFO line per start:\n{log}");
    assert!(
        info[0].contains(&format!(
            "state schema migrated from version 14 to {latest} ({} steps)",
            latest - 14
        )),
        "{log}"
    );
    assert!(
        info[1].contains(&format!(
            "state schema at version {latest}, nothing to apply"
        )),
        "{log}"
    );
    let steps = own(" DEBUG ");
    assert_eq!(steps.len(), latest - 14, "{log}");
    for (line, version) in steps.iter().zip(14..) {
        assert!(
            line.contains(&format!(
                "state schema migrated from version {version} to {}",
                version + 1
            )),
            "{line}"
        );
    }
    // Other tests' connections log meanwhile: this one's are on this thread.
    let this_thread = captured.this_thread();
    assert!(!this_thread.contains("already exists"), "{this_thread}");
    let notice = log
        .lines()
        .find(|l| l.contains("a test notice"))
        .expect(&log);
    assert!(notice.contains(" DEBUG "), "{notice}");
    let warning = log
        .lines()
        .find(|l| l.contains("a test warning"))
        .expect(&log);
    assert!(warning.contains(" WARN "), "{warning}");
    drop(client);
    drop_database(test).await;
}
