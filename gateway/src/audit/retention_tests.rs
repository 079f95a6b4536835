//! Retention end to end: the writer deletes the oldest closed segments only after a signed
//! `retention` record names them, never what a SIEM sink has not acknowledged (unless told),
//! refuses decisions when full, and `verify` accepts what retention shortened and nothing
//! else.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::config::{AuditConfig, RetentionConfig, WhenFull};
use super::error::{AuditError, Problem};
use super::log::AuditLog;
use super::record::ChainFields;
use super::segment::list_segments;
use super::signed_tests::{
    config, event, lines, rechain, segment, signed_log, signer, strict, tampered,
};
use super::verify::verify_with;

const SEGMENT: u64 = 2048;

fn bounded(max_bytes: u64, when_full: WhenFull) -> AuditConfig {
    AuditConfig {
        segment_bytes: SEGMENT,
        retention: RetentionConfig {
            max_bytes: Some(max_bytes),
            when_full,
            ..RetentionConfig::default()
        },
        ..config(5)
    }
}

fn numbers(dir: &Path) -> Vec<u64> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

fn first_seq(dir: &Path) -> u64 {
    let first = numbers(dir)[0];
    let line = &lines(&segment(dir, first))[0];
    ChainFields::parse(line.as_bytes()).unwrap().seq
}

/// Every `retention` record in the log, oldest first.
fn retention_records(dir: &Path) -> Vec<Value> {
    numbers(dir)
        .into_iter()
        .flat_map(|n| lines(&segment(dir, n)))
        .map(|l| serde_json::from_str::<Value>(&l).unwrap())
        .filter(|v| v["kind"] == "retention")
        .collect()
}

fn write_cursor(dir: &Path, sink: &str, seq: u64) {
    fs::create_dir_all(dir.join("cursors")).unwrap();
    fs::write(
        dir.join("cursors").join(format!("{sink}.json")),
        format!("{{\"seq\":{seq}}}"),
    )
    .unwrap();
}

#[tokio::test]
async fn the_oldest_segments_go_under_a_signed_record_and_verify_accepts_what_is_left() {
    let (_tmp, dir) = signed_log(120, &bounded(4 * SEGMENT, WhenFull::Refuse)).await;
    let kept = numbers(&dir);
    assert!(kept[0] > 1, "nothing was deleted: {kept:?}");
    let bytes: u64 = list_segments(&dir)
        .unwrap()
        .iter()
        .map(|(_, name)| fs::metadata(dir.join(name)).unwrap().len())
        .sum();
    assert!(bytes <= 5 * SEGMENT, "{bytes} bytes left in {kept:?}");
    let records = retention_records(&dir);
    let last = records.last().expect("a retention record");
    assert_eq!(last["detail"]["reason"], "max_bytes");
    let first = first_seq(&dir);
    assert_eq!(last["detail"]["first_kept"], first);

    let report = verify_with(&dir, &strict()).unwrap();
    assert_eq!(report.removed.map(|r| r.0), Some(first - 1), "{report}");
    assert!(
        report.to_string().contains("removed by retention"),
        "{report}"
    );

    // Deleting one more segment than retention did shows, naming what is missing.
    fs::remove_file(segment(&dir, kept[0])).unwrap();
    let (_, problem) = tampered(verify_with(&dir, &strict()));
    let second = first_seq(&dir);
    assert_eq!(
        problem,
        Problem::Deleted {
            first,
            last: second - 1
        }
    );
}

#[tokio::test]
async fn a_retention_record_added_by_whoever_deleted_segments_does_not_account_for_them() {
    let cfg = AuditConfig {
        segment_bytes: SEGMENT,
        ..config(5)
    };
    let (_tmp, dir) = signed_log(40, &cfg).await;
    let n = numbers(&dir);
    assert!(n.len() >= 3, "{n:?}");
    // Segment 1 deleted, and a record claiming retention removed it appended (hashes
    // recomputed): unsigned, so it accounts for nothing when keys are given.
    let second = lines(&segment(&dir, n[1]));
    let start: Value = serde_json::from_str(&second[0]).unwrap();
    fs::remove_file(segment(&dir, n[0])).unwrap();
    let last_path = segment(&dir, *n.last().unwrap());
    let mut last = lines(&last_path);
    let mut forged: Value = serde_json::from_str(last.last().unwrap()).unwrap();
    let seq = forged["seq"].as_u64().unwrap() + 1;
    forged["seq"] = seq.into();
    forged["kind"] = "retention".into();
    forged["detail"] = serde_json::json!({"reason": "max_age", "removed": [{
        "segment": "audit-000001.jsonl", "first": 1,
        "last": start["seq"].as_u64().unwrap() - 1, "last_hash": start["prev"], "bytes": 1}]});
    last.push(serde_json::to_string(&forged).unwrap());
    let from = last.len() - 1;
    rechain(&dir, &last_path, &mut last, from);
    let (_, problem) = tampered(verify_with(&dir, &strict()));
    assert!(
        matches!(problem, Problem::Deleted { first: 1, .. }),
        "{problem:?}"
    );
    // Without keys, nothing is signed and the claim is taken as written.
    assert!(verify_with(&dir, &super::verify::VerifyOptions::default()).is_ok());
}

#[tokio::test]
async fn a_sink_that_has_not_acknowledged_holds_segments_and_a_full_log_refuses_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let cfg = bounded(4 * SEGMENT, WhenFull::Refuse);
    let log = AuditLog::open_signed(&dir, &cfg, signer(), vec![("splunk".into(), 0)]).unwrap();
    let mut refused = None;
    for i in 1..=400 {
        match log.append(event(i)).await {
            Ok(_) => {}
            Err(e @ AuditError::Full { .. }) => {
                refused = Some((i, e));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (at, error) = refused.expect("the log never filled up");
    assert!(
        error.to_string().contains("audit.retention.max_bytes"),
        "{error}"
    );
    assert!(log.is_full());
    assert_eq!(numbers(&dir)[0], 1, "an unacknowledged segment was deleted");
    assert_eq!(log.stats().full.get(), 1);

    // A cursor file claiming the sink has everything (anyone who can write the directory can
    // write one) frees nothing: retention trusts only what the shipper reported.
    write_cursor(&dir, "splunk", log.head().0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(log.is_full(), "a cursor file let retention go on");
    assert_eq!(numbers(&dir)[0], 1, "a forged cursor deleted a segment");

    // The sink catches up: retention deletes what it has, and decisions go on within seconds.
    log.acknowledged().set("splunk", log.head().0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match log.append(event(at)).await {
            Ok(_) => break,
            Err(AuditError::Full { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still refused after the sink caught up: {e}"),
        }
    }
    assert!(!log.is_full());
    assert!(numbers(&dir)[0] > 1);
    log.close().await.unwrap();
    verify_with(&dir, &strict()).unwrap();
}

#[tokio::test]
async fn delete_unshipped_keeps_writing_and_names_what_the_sink_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let cfg = bounded(4 * SEGMENT, WhenFull::DeleteUnshipped);
    let log = AuditLog::open_signed(&dir, &cfg, signer(), vec![("splunk".into(), 0)]).unwrap();
    log.acknowledged().set("splunk", 3);
    for i in 1..=120 {
        log.append(event(i)).await.unwrap();
    }
    let lost = log.stats().deleted_unshipped.get();
    log.close().await.unwrap();
    // Everything before the first kept record went; the sink had received 1 to 3 of it.
    let first = first_seq(&dir);
    assert_eq!(lost, first - 1 - 3);
    let records = retention_records(&dir);
    let last = &records.last().unwrap()["detail"];
    assert_eq!(last["reason"], "when_full");
    let removed = last["removed"].as_array().unwrap();
    assert_eq!(
        last["unshipped"]["splunk"]["from"],
        removed[0]["first"].as_u64().unwrap().max(4)
    );
    assert_eq!(last["unshipped"]["splunk"]["to"], first - 1);
    assert_eq!(last["acknowledged"]["splunk"], 3);
    verify_with(&dir, &strict()).unwrap();
}

#[tokio::test]
async fn segments_older_than_max_age_go_once_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let cfg = AuditConfig {
        segment_bytes: SEGMENT,
        retention: RetentionConfig {
            max_age: Some(Duration::from_millis(800)),
            ..RetentionConfig::default()
        },
        ..config(5)
    };
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    for i in 1..=12 {
        log.append(event(i)).await.unwrap();
    }
    assert!(numbers(&dir).len() >= 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // The next rotation has retention look: what ended more than 800 ms ago goes.
    for i in 13..=30 {
        log.append(event(i)).await.unwrap();
    }
    log.close().await.unwrap();
    assert!(numbers(&dir)[0] > 1, "{:?}", numbers(&dir));
    let records = retention_records(&dir);
    assert_eq!(records[0]["detail"]["reason"], "max_age");
    verify_with(&dir, &strict()).unwrap();
}

#[tokio::test]
async fn after_a_restart_a_sink_counts_from_its_position_at_start_without_a_report() {
    // A first run (no retention) leaves a log over the bound the second run has, every
    // record of it acknowledged by the sink in that run (its verified cursor says so).
    let unbounded = AuditConfig {
        segment_bytes: SEGMENT,
        ..config(5)
    };
    for when_full in [WhenFull::DeleteUnshipped, WhenFull::Refuse] {
        let (_tmp, dir) = signed_log(120, &unbounded).await;
        assert!(numbers(&dir).len() > 5, "{:?}", numbers(&dir));
        let acknowledged = first_run_head(&dir);
        let cfg = bounded(4 * SEGMENT, when_full);
        let at_start = vec![("splunk".into(), acknowledged)];
        let log = AuditLog::open_signed(&dir, &cfg, signer(), at_start).unwrap();
        // No shipper reports: the oldest go anyway, none as unshipped, and nothing is refused.
        let deadline = Instant::now() + Duration::from_secs(5);
        while numbers(&dir)[0] == 1 {
            assert!(
                Instant::now() < deadline,
                "retention waited for a report ({when_full:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!log.is_full(), "{when_full:?}");
        log.append(event(1)).await.unwrap();
        log.close().await.unwrap();
        assert_eq!(log.stats().deleted_unshipped.get(), 0);
        let records = retention_records(&dir);
        let detail = &records[0]["detail"];
        assert_eq!(detail["reason"], "max_bytes", "{detail}");
        assert!(detail.get("unshipped").is_none(), "{detail}");
        assert_eq!(detail["acknowledged"]["splunk"], acknowledged);
        verify_with(&dir, &strict()).unwrap();
    }
}

#[tokio::test]
async fn after_a_restart_a_sink_without_a_verified_position_has_acknowledged_nothing() {
    let unbounded = AuditConfig {
        segment_bytes: SEGMENT,
        ..config(5)
    };
    let (_tmp, dir) = signed_log(120, &unbounded).await;
    let cfg = bounded(4 * SEGMENT, WhenFull::DeleteUnshipped);
    let log = AuditLog::open_signed(&dir, &cfg, signer(), vec![("splunk".into(), 0)]).unwrap();
    // Its shipper would report 0 when it starts: the oldest go at once, named unshipped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while numbers(&dir)[0] == 1 {
        assert!(Instant::now() < deadline, "retention waited for a report");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    log.close().await.unwrap();
    let records = retention_records(&dir);
    let detail = &records[0]["detail"];
    assert_eq!(detail["reason"], "when_full", "{detail}");
    assert_eq!(detail["unshipped"]["splunk"]["from"], 1, "{detail}");
    assert!(log.stats().deleted_unshipped.get() > 0);
    verify_with(&dir, &strict()).unwrap();
}

/// The last seq of the closed log in `dir`.
fn first_run_head(dir: &Path) -> u64 {
    let last = *numbers(dir).last().unwrap();
    let line = lines(&segment(dir, last)).pop().unwrap();
    ChainFields::parse(line.as_bytes()).unwrap().seq
}
