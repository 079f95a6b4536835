//! A cut tail: a log cut back to one of its records with `head.json` rewritten to match (it
//! is not signed). What verify can still tell locally (a run without its stop record), what
//! only a head kept elsewhere shows, and that an agent's content never passes for a record's
//! own kind.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::anchor::{self, Anchor};
use super::error::{EditEvidence, Problem, TruncationEvidence, VerifyError};
use super::event::{AuditEvent, EventKind};
use super::log::AuditLog;
use super::record::{ChainFields, HexHash, hash_line};
use super::run_end::LastRun;
use super::signed_tests::{
    config, event, keys, kind, lines, segment, signer, tampered, write_lines,
};
use super::verify::{VerifyOptions, verify_with};

fn system(what: &str) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::System);
    event.detail = Some(json!({ "event": what }));
    event
}

/// Signed, every record covered, the last run stopped, and `heads` still in the log.
fn complete(heads: Vec<Anchor>) -> VerifyOptions {
    VerifyOptions {
        keys: keys(),
        require_signed: true,
        require_stopped: true,
        heads,
        ..VerifyOptions::default()
    }
}

/// Appends one run as the server writes it: start, `n` decisions, stop (and the closing
/// checkpoint `close` adds).
async fn run(dir: &Path, n: u64, every: u64) {
    let log = AuditLog::open_signed(dir, &config(every), signer(), Vec::new()).unwrap();
    log.append(system("start")).await.unwrap();
    for i in 1..=n {
        log.append(event(i)).await.unwrap();
    }
    log.append(system("stop")).await.unwrap();
    log.close().await.unwrap();
}

/// Cuts segment 1 back to its first `keep` lines and rewrites `head.json` to its new last
/// record, as whoever holds the files can. Returns the head cut away.
fn cut_back(dir: &Path, keep: usize) -> Anchor {
    let path = segment(dir, 1);
    let mut all = lines(&path);
    let last = all.last().unwrap().clone();
    let cut = Anchor {
        seq: ChainFields::parse(last.as_bytes()).unwrap().seq,
        hash: HexHash(hash_line(last.as_bytes())),
    };
    all.truncate(keep);
    write_lines(&path, &all);
    let kept = all.last().unwrap();
    let seq = ChainFields::parse(kept.as_bytes()).unwrap().seq;
    anchor::write(dir, seq, &hash_line(kept.as_bytes()), None).unwrap();
    cut
}

#[tokio::test]
async fn a_log_cut_back_to_a_checkpoint_mid_run_has_no_stop_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    run(&dir, 7, 3).await;
    let whole = verify_with(&dir, &complete(Vec::new())).unwrap();
    assert_eq!(whole.last_run, LastRun::Stopped { stop: 12 }, "{whole}");
    assert!(
        whole
            .to_string()
            .contains("ended with its stop record (seq 12)")
    );

    // start and its checkpoint, decisions 1 to 3, checkpoint (seq 6): the run's first
    // periodic checkpoint.
    let all = lines(&segment(&dir, 1));
    assert_eq!(kind(&all[1]), "checkpoint");
    assert_eq!(kind(&all[5]), "checkpoint");
    cut_back(&dir, 6);
    let lenient = VerifyOptions {
        keys: keys(),
        require_signed: true,
        ..VerifyOptions::default()
    };
    let report = verify_with(&dir, &lenient).expect("every record left is signed and chains");
    assert_eq!(report.last_run, LastRun::Open { start: Some(1) });
    let said = report.to_string();
    assert!(
        said.contains("WARNING: the last run (started at seq 1) has no stop record"),
        "{said}"
    );
    match verify_with(&dir, &complete(Vec::new())) {
        Err(e @ VerifyError::NotStopped { .. }) => {
            assert!(matches!(
                e,
                VerifyError::NotStopped {
                    start: Some(1),
                    head_seq: 6
                }
            ));
            assert!(e.to_string().contains("--against-siem"), "{e}");
        }
        other => panic!("expected the missing stop record, got {other:?}"),
    }
}

#[tokio::test]
async fn a_log_cut_back_to_an_earlier_run_shows_only_against_a_head_kept_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    run(&dir, 2, 1000).await; // start, checkpoint, 1, 2, stop, checkpoint: seq 1-6
    run(&dir, 3, 1000).await; // seq 7-13
    let kept_elsewhere = verify_with(&dir, &complete(Vec::new())).unwrap();
    assert_eq!(kept_elsewhere.head_seq, 13);
    let head = Anchor {
        seq: kept_elsewhere.head_seq,
        hash: HexHash(kept_elsewhere.head_hash),
    };
    let checked = verify_with(&dir, &complete(vec![head])).unwrap();
    assert_eq!(checked.heads_checked, 1, "{checked}");

    // The whole second run cut away: what is left is a whole, signed, stopped run. Locally
    // nothing shows; that is the limit docs/audit.md states.
    assert_eq!(cut_back(&dir, 6), head);
    let local = verify_with(&dir, &complete(Vec::new())).unwrap();
    assert_eq!(local.last_run, LastRun::Stopped { stop: 5 });
    let (seq, problem) = tampered(verify_with(&dir, &complete(vec![head])));
    assert_eq!(seq, 6);
    assert_eq!(
        problem,
        Problem::Truncated(TruncationEvidence::KnownHeadAhead { seq: 13 })
    );
    assert!(
        problem
            .to_string()
            .contains("the head given with --head names seq 13")
    );
}

#[tokio::test]
async fn a_head_kept_elsewhere_whose_record_was_replaced_is_edited() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    run(&dir, 2, 1000).await;
    let other = Anchor {
        seq: 3,
        hash: HexHash(hash_line(b"another record")),
    };
    let (seq, problem) = tampered(verify_with(&dir, &complete(vec![other])));
    assert_eq!(seq, 3);
    assert_eq!(problem, Problem::Edited(EditEvidence::KnownHead));
}

#[tokio::test]
async fn a_log_a_warden_is_writing_is_live_not_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open_signed(&dir, &config(1), signer(), Vec::new()).unwrap();
    log.append(system("start")).await.unwrap();
    log.append(event(1)).await.unwrap();
    let stopped_required = VerifyOptions {
        keys: keys(),
        require_stopped: true,
        ..VerifyOptions::default()
    };
    let live = verify_with(&dir, &stopped_required).expect("a live log's open run is expected");
    assert_eq!(live.last_run, LastRun::Live, "{live}");
    // Closed without its stop record (the server writes one; a killed one does not).
    log.close().await.unwrap();
    assert!(matches!(
        verify_with(&dir, &stopped_required),
        Err(VerifyError::NotStopped { start: Some(1), .. })
    ));
}

#[tokio::test]
async fn a_live_log_passes_require_signed_only_while_its_unsigned_tail_is_recent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    // Checkpoints every 1000 records: what was just written waits for the interval.
    let log = AuditLog::open_signed(&dir, &config(1000), signer(), Vec::new()).unwrap();
    log.append(system("start")).await.unwrap();
    log.append(event(1)).await.unwrap();
    let daily = |window: u64| VerifyOptions {
        keys: keys(),
        require_signed: true,
        require_stopped: true,
        live_window: Duration::from_secs(window),
        ..VerifyOptions::default()
    };
    let live = verify_with(&dir, &daily(30)).expect("seconds-old records of a live run");
    // The start record is signed at once (seq 2); the decision waits for the interval.
    assert_eq!(live.live_tail, Some((3, 3)), "{live}");
    assert!(live.to_string().contains("not proven here"), "{live}");
    // A lock proves nothing more: records older than the window are not waived.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        verify_with(&dir, &daily(1)),
        Err(VerifyError::Unsigned { .. })
    ));
    log.close().await.unwrap();
    // Stopped without its stop record: no longer live, nothing waived.
    assert!(matches!(
        verify_with(&dir, &daily(30)),
        Err(VerifyError::NotStopped { start: Some(1), .. })
    ));
}

#[tokio::test]
async fn an_agent_body_that_says_checkpoint_or_retention_is_content_not_the_record_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open_signed(&dir, &config(1000), signer(), Vec::new()).unwrap();
    for body in [
        json!({"kind": "checkpoint"}),
        json!({"kind": "retention", "detail": {"removed": [{"last": 1, "last_hash": "00"}]}}),
    ] {
        let mut recorded = event(1);
        recorded.content = Some(body);
        log.append(recorded).await.unwrap();
    }
    log.close().await.unwrap();
    let all = lines(&segment(&dir, 1));
    assert!(
        all[0].contains(r#""content":{"kind":"checkpoint"}"#),
        "{}",
        all[0]
    );
    let report = verify_with(
        &dir,
        &VerifyOptions {
            keys: keys(),
            require_signed: true,
            ..VerifyOptions::default()
        },
    )
    .expect("an agent's content is not a checkpoint");
    assert_eq!(report.checkpoints, 1, "only the closing one: {report}");
    assert_eq!(report.records, 3);
}
