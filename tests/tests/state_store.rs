//! The state store as operators watch it: a replica on the run's PostgreSQL says on `/metrics`
//! when its database stops answering (`warden_state_store_up` 0, the failures counted by area
//! and error) and when it answers again, and logs both once; so does a gateway whose SQLite
//! file is moved away from under it (what it wrote there would be lost) until it is back.

use std::time::Duration;

use serde_json::json;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::postgres::Postgres;
use warden_e2e::warden::{Warden, WardenBuilder};

/// The value of the sample `series` (name and labels as exposed) on `metrics`.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Failed operations counted with `error`, over every area.
fn failures(metrics: &str, error: &str) -> f64 {
    let label = format!("error=\"{error}\"");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("warden_state_store_failed_operations_total{") && l.contains(&label)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits up to `within` for `warden_state_store_up` to read `up`; the metrics then.
async fn until_up_is(warden: &Warden, up: f64, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let metrics = warden.metrics().await.unwrap();
        if sample(&metrics, "warden_state_store_up") == Some(up) {
            return metrics;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "warden_state_store_up is not {up} within {within:?}:\n{}\n{}",
            metrics
                .lines()
                .filter(|l| l.starts_with("warden_state_store"))
                .collect::<Vec<_>>()
                .join("\n"),
            warden.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A gateway reading its quarantines from the store every 200 ms, so that a store that stops
/// answering is found within a few of them.
fn gateway(upstream: &FakeLlm) -> WardenBuilder {
    WardenBuilder::new(upstream).set("/fleet/quarantine/refresh_interval", json!("200ms"))
}

/// Waits for `warden`'s store to answer, none of its operations having failed as unreachable;
/// the time of its last success.
async fn answering(warden: &Warden) -> f64 {
    let metrics = until_up_is(warden, 1.0, Duration::from_secs(10)).await;
    let answered = sample(
        &metrics,
        "warden_state_store_last_success_timestamp_seconds",
    )
    .expect("the time of the last success");
    assert!(answered > 1.0e9, "{answered}");
    assert_eq!(failures(&metrics, "unreachable"), 0.0);
    answered
}

/// Waits for `warden`'s store to answer again, after it did at `answered`, and for the log to
/// say so.
async fn answers_again(warden: &Warden, answered: f64) {
    let metrics = until_up_is(warden, 1.0, Duration::from_secs(20)).await;
    let since = sample(
        &metrics,
        "warden_state_store_last_success_timestamp_seconds",
    )
    .unwrap();
    assert!(since > answered, "{since} after {answered}");
    assert!(
        warden.output().contains("the state store answers again"),
        "{}",
        warden.output()
    );
}

#[tokio::test]
async fn a_replica_says_on_metrics_when_its_database_stops_answering_and_when_it_is_back() {
    let pg = Postgres::from_env();
    let database = "warden_e2e_state_store_up";
    let url = pg.fresh_database(database);
    let upstream = FakeLlm::start().await.unwrap();
    let warden = gateway(&upstream)
        .replica_of(&url, None)
        .set("/state/postgres/connect_timeout", json!("1s"))
        .start()
        .await
        .unwrap();
    let answered = answering(&warden).await;

    // The database refuses connections and drops the ones it had: within a few refresh
    // intervals the quarantine follower's read fails, and the gauge says so.
    pg.query(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false; \
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}'"
    ));
    let metrics = until_up_is(&warden, 0.0, Duration::from_secs(20)).await;
    let failed = failures(&metrics, "unreachable")
        + failures(&metrics, "query")
        + failures(&metrics, "timeout");
    assert!(failed >= 1.0, "{metrics}");
    // The gauge can fall first for the listening connection's loss (an outage of its own);
    // an operation's failure, and its log line, follow within a few refresh intervals.
    for _ in 0..200 {
        if warden.output().contains("the state store does not answer") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        warden.output().contains("the state store does not answer"),
        "{}",
        warden.output()
    );
    assert!(!warden.output().contains(pg.password()));

    pg.query(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"));
    answers_again(&warden, answered).await;
}

#[tokio::test]
async fn a_gateway_says_on_metrics_when_its_sqlite_file_is_moved_away_and_when_it_is_back() {
    let upstream = FakeLlm::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (state, away) = (dir.path().join("state"), dir.path().join("moved"));
    let warden = gateway(&upstream)
        .set("/state/sqlite", json!(state.join("state.db")))
        .start()
        .await
        .unwrap();
    let answered = answering(&warden).await;

    // The file's directory moved (a volume unmounted, a clean-up run): what the gateway wrote
    // now would be lost, so the quarantine follower's next read fails, and the gauge says so.
    std::fs::rename(&state, &away).unwrap();
    let metrics = until_up_is(&warden, 0.0, Duration::from_secs(20)).await;
    assert!(failures(&metrics, "unreachable") >= 1.0, "{metrics}");
    // The gauge is set before the outage's log line is written: wait for the line (bounded).
    let said = |output: &str| {
        output.contains("the state store does not answer")
            && output.contains("is no longer the file Warden opened")
    };
    for _ in 0..100 {
        if said(&warden.output()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = warden.output();
    assert!(said(&output), "{output}");

    std::fs::rename(&away, &state).unwrap();
    answers_again(&warden, answered).await;
}
