//! `warden state migrate` against the run's PostgreSQL: the schema brought up to date ahead of
//! a rollout (the chart's pre-upgrade Job), each step said, a second run finding nothing to
//! do, a database from a newer Warden refused, and the gateway then starting on it without
//! migrating again.

use std::time::Duration;

use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::postgres::Postgres;
use warden_e2e::warden::{WardenBuilder, run_bounded};

/// `warden state migrate --config` of `setup`: status, stdout, stderr.
async fn migrate(setup: &warden_e2e::warden::Prepared) -> (bool, String, String) {
    let mut cmd = setup.command();
    cmd.args(["state", "migrate", "--config"])
        .arg(&setup.config_path);
    let out = run_bounded(cmd, Duration::from_secs(60)).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn state_migrate_brings_the_postgres_schema_up_to_date_and_exits() {
    let pg = Postgres::from_env();
    let url = pg.fresh_database("warden_e2e_state_migrate");
    let upstream = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&upstream)
        .replica_of(&url, None)
        .write()
        .unwrap();

    // A fresh database: every step, one line each, from version 0 to the binary's.
    let (ok, stdout, stderr) = migrate(&setup).await;
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].ends_with("state schema migrated from version 0 to 1"),
        "{stdout}"
    );
    let latest: usize = lines
        .last()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no last version in {stdout}"));
    assert_eq!(lines.len(), latest, "one line per step:\n{stdout}");
    assert!(!stdout.contains(pg.password()), "{stdout}");
    let version = |pg: &Postgres| {
        pg.query_db(
            "warden_e2e_state_migrate",
            "SELECT version FROM warden_schema",
        )
        .trim()
        .to_owned()
    };
    assert_eq!(version(&pg), latest.to_string());

    // Again: nothing to apply, and the database unchanged.
    let (ok, stdout, stderr) = migrate(&setup).await;
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.trim().ends_with(&format!(
            "state schema at version {latest}, nothing to apply"
        )),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    // The gateway starts on the migrated database and finds nothing to do.
    let warden = WardenBuilder::new(&upstream)
        .replica_of(&url, None)
        .start()
        .await
        .unwrap();
    assert!(
        warden.output().contains(&format!(
            "state schema at version {latest}, nothing to apply"
        )),
        "{}",
        warden.output()
    );
    drop(warden);

    // A database a newer Warden migrated is refused, and left as it is.
    pg.query_db(
        "warden_e2e_state_migrate",
        &format!("UPDATE warden_schema SET version = {}", latest + 1),
    );
    let (ok, stdout, stderr) = migrate(&setup).await;
    assert!(!ok, "accepted a newer schema:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("{}", latest + 1)),
        "the refusal names the version found:\n{stderr}"
    );
    assert_eq!(version(&pg), (latest + 1).to_string());
}
