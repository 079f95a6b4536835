//! `process` durability's inline commits (`writer/inline.rs`): the appending thread commits
//! its own record in the normal case, and hands it to the writer thread otherwise.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::anchor;
use super::config::{AuditConfig, Durability};
use super::event::{AuditEvent, EventKind};
use super::faults::Faults;
use super::log::AuditLog;
use super::signed_tests::{config as signed_config, signer, strict};
use super::signer::Signer;
use super::tests::all_records;
use super::verify::{verify, verify_with};

fn event(name: &str) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::Decision);
    event.request_id = name.into();
    event.action = "llm:chat".into();
    event.decision = "allow".into();
    event
}

fn outcome(name: &str) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::Outcome);
    event.request_id = name.into();
    event
}

/// `process` durability; flushes an interval no test waits for unless it says so.
fn process() -> AuditConfig {
    AuditConfig {
        durability: Durability::Process,
        flush_interval: Duration::from_secs(1),
        ..AuditConfig::default()
    }
}

fn open(cfg: &AuditConfig) -> (tempfile::TempDir, PathBuf, Arc<Faults>, AuditLog) {
    open_with(cfg, None)
}

/// A signed log in `process` durability, with a checkpoint every `every` records (and every
/// hour).
fn signed_process_log(every: u64) -> (tempfile::TempDir, PathBuf, Arc<Faults>, AuditLog) {
    let cfg = AuditConfig {
        durability: Durability::Process,
        ..signed_config(every)
    };
    open_with(&cfg, Some(signer()))
}

fn open_with(
    cfg: &AuditConfig,
    signer: Option<Arc<Signer>>,
) -> (tempfile::TempDir, PathBuf, Arc<Faults>, AuditLog) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let faults = Arc::new(Faults::default());
    let log = AuditLog::open_with(&dir, cfg, faults.clone(), signer, Vec::new()).unwrap();
    (tmp, dir, faults, log)
}

/// The seq of the record whose request id is `name`.
fn seq_of(records: &[serde_json::Value], name: &str) -> u64 {
    records
        .iter()
        .find(|r| r["request_id"] == name)
        .unwrap_or_else(|| panic!("no record of {name}"))["seq"]
        .as_u64()
        .unwrap()
}

async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the writer thread is done with its round and the planning after it: an
/// append does not wait for its lock, and an append answered by the round would otherwise
/// find it held and be handed over again.
async fn writer_settled(log: &AuditLog) {
    tokio::time::sleep(Duration::from_millis(10)).await;
    eventually("the writer thread is idle", || log.writer_idle()).await;
}

#[test]
fn concurrent_inline_appends_and_detached_records_form_one_chain_in_order() {
    const THREADS: usize = 8;
    const EACH: usize = 150;
    let (_tmp, dir, _faults, log) = open(&process());
    let seqs: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = log.clone();
                scope.spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    (0..EACH)
                        .map(|i| {
                            // Its outcome record is queued before its decision is appended:
                            // the decision's commit takes it first.
                            log.append_detached(outcome(&format!("out-{t}-{i}")));
                            runtime
                                .block_on(log.append(event(&format!("dec-{t}-{i}"))))
                                .unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let inline = log.stats().inline_commits.get();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(log.close())
        .unwrap();

    let total = (THREADS * EACH) as u64;
    let mut answered = HashSet::new();
    for thread in &seqs {
        assert!(
            thread.windows(2).all(|w| w[0] < w[1]),
            "a thread's records are answered in order"
        );
        for seq in thread {
            assert!(answered.insert(*seq), "seq {seq} answered twice");
        }
    }
    assert_eq!(answered.len() as u64, total);
    let report = verify(&dir).unwrap();
    assert_eq!(
        report.records,
        2 * total,
        "every decision and outcome, once"
    );
    let records = all_records(&dir);
    for (t, thread) in seqs.iter().enumerate() {
        for (i, seq) in thread.iter().enumerate() {
            assert_eq!(seq_of(&records, &format!("dec-{t}-{i}")), *seq);
            assert!(
                seq_of(&records, &format!("out-{t}-{i}")) < *seq,
                "an outcome queued before a decision is in the chain before it"
            );
        }
    }
    // Eight threads appending back to back on a loaded machine often find the lock taken
    // (by another appender or the writer thread): those records are handed over, and the
    // writer commits them together; how many depends on the machine's load.
    assert!(inline > 0, "no append committed inline");
}

#[tokio::test]
async fn an_inline_commit_is_flushed_within_the_interval_and_anchored() {
    let (_tmp, dir, _faults, log) = open(&AuditConfig {
        flush_interval: Duration::from_millis(20),
        ..process()
    });
    // Let the writer thread fall asleep with nothing to time.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(log.append(event("one")).await.unwrap(), 1);
    assert_eq!(log.stats().inline_commits.get(), 1);
    eventually("the inline commit was flushed", || {
        log.stats().flush_seconds.get_sample_count() == 1
    })
    .await;
    eventually("head.json caught up", || {
        anchor::read(&dir).unwrap().is_some_and(|a| a.seq == 1)
    })
    .await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn a_rotation_is_the_writer_threads_and_appends_are_inline_again_after_it() {
    let (_tmp, dir, _faults, log) = open(&AuditConfig {
        segment_bytes: 1500,
        ..process()
    });
    let inline = || log.stats().inline_commits.get();
    let mut handed_over = 0;
    for i in 1..=30u64 {
        writer_settled(&log).await;
        let before = inline();
        assert_eq!(log.append(event(&format!("r{i}"))).await.unwrap(), i);
        handed_over += u64::from(inline() == before);
    }
    log.close().await.unwrap();
    let report = verify(&dir).unwrap();
    assert!(report.segments >= 3, "{report:?}");
    assert_eq!(
        handed_over,
        report.segments - 1,
        "exactly the appends that rotated went to the writer thread"
    );
}

#[tokio::test]
async fn a_checkpoint_due_by_count_is_the_writer_threads_and_comes_at_its_count() {
    let (_tmp, dir, _faults, log) = signed_process_log(5);
    let inline = || log.stats().inline_commits.get();
    for i in 1..=4u64 {
        writer_settled(&log).await;
        assert_eq!(log.append(event(&format!("c{i}"))).await.unwrap(), i);
        assert_eq!(inline(), i, "no checkpoint due: inline");
    }
    // The fifth record makes a checkpoint due: the writer commits both.
    assert_eq!(log.append(event("c5")).await.unwrap(), 5);
    assert_eq!(inline(), 4);
    writer_settled(&log).await;
    assert_eq!(log.append(event("c6")).await.unwrap(), 7);
    assert_eq!(inline(), 5, "inline again");
    log.close().await.unwrap();
    let records = all_records(&dir);
    assert_eq!(records[5]["kind"], "checkpoint", "{}", records[5]);
    let report = verify_with(&dir, &strict()).unwrap();
    assert!(report.checkpoints >= 2, "{report:?}");
}

#[tokio::test]
async fn a_failed_inline_commit_is_an_outage_the_writer_thread_recovers_from() {
    let (_tmp, dir, faults, log) = open(&process());
    let inline = || log.stats().inline_commits.get();
    writer_settled(&log).await;
    assert_eq!(log.append(event("a")).await.unwrap(), 1);
    assert_eq!(inline(), 1);
    // Two outcomes ride with the next decision, whose write is torn.
    log.append_detached(outcome("o1"));
    log.append_detached(outcome("o2"));
    faults.torn_writes.store(1, Ordering::SeqCst);
    assert!(log.append(event("b")).await.is_err());
    assert_eq!(log.stats().lost.get(), 2, "the outcomes nobody waited for");
    assert!(!log.is_writable());
    // Failing: the writer thread commits the next one, after the record of the outage.
    assert_eq!(log.append(event("c")).await.unwrap(), 3);
    assert_eq!(inline(), 1, "not inline while failing");
    assert!(log.is_writable());
    writer_settled(&log).await;
    assert_eq!(log.append(event("d")).await.unwrap(), 4);
    assert_eq!(inline(), 2, "inline again once recovered");
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 4);
    let records = all_records(&dir);
    assert_eq!(records[1]["detail"]["event"], "audit_recovered");
    let detail = &records[1]["detail"];
    assert_eq!(detail["failed_records"], 3, "{detail}");
    assert_eq!(detail["lost_records"], 2, "{detail}");
}

#[tokio::test]
async fn a_failed_inline_commit_is_retried_by_the_writer_without_traffic() {
    let (_tmp, dir, faults, log) = open(&process());
    tokio::time::sleep(Duration::from_millis(50)).await;
    faults.torn_writes.store(1, Ordering::SeqCst);
    assert!(log.append(event("a")).await.is_err());
    assert!(!log.is_writable());
    eventually("the writer retried and recovered on its own", || {
        log.is_writable()
    })
    .await;
    log.close().await.unwrap();
    let records = all_records(&dir);
    assert_eq!(records[0]["detail"]["event"], "audit_recovered");
    assert_eq!(records[0]["detail"]["failed_records"], 1);
    assert_eq!(verify(&dir).unwrap().records, 1);
}

#[tokio::test]
async fn disk_durability_never_commits_inline() {
    let (_tmp, dir, _faults, log) = open(&AuditConfig::default());
    for i in 1..=3u64 {
        assert_eq!(log.append(event(&format!("d{i}"))).await.unwrap(), i);
    }
    assert_eq!(log.stats().inline_commits.get(), 0);
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 3);
}

#[tokio::test]
async fn a_receipt_of_a_record_committed_inline_is_signed_and_verifies() {
    use super::receipt::{Receipt, verify as verify_receipt};
    let (_tmp, dir, _faults, log) = signed_process_log(1000);
    writer_settled(&log).await;
    let seq = log.append(event("r1")).await.unwrap();
    assert_eq!(log.stats().inline_commits.get(), 1);
    let pending = log.receipt(&Receipt::example(seq)).expect("a signed log");
    log.append(event("r2")).await.unwrap();
    // No writer round signs it: the response signs what is queued on its own thread.
    let receipt = pending.receipt().await.expect("the receipt");
    let verified = verify_receipt(&receipt, &super::signed_tests::keys()).unwrap();
    assert_eq!(verified.claims, Receipt::example(seq));
    log.close().await.unwrap();
    verify_with(&dir, &strict()).unwrap();
}

#[test]
fn an_append_while_another_appenders_write_holds_the_lock_is_handed_over_not_waited_for() {
    let (_tmp, dir, faults, log) = open(&process());
    // Let the writer thread fall asleep: the first append is then inline.
    std::thread::sleep(Duration::from_millis(50));
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    *faults.held_write.lock().unwrap() = Some((entered_tx, release_rx));
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    };
    let (first, second) = std::thread::scope(|scope| {
        let first_log = log.clone();
        let first = scope.spawn(move || runtime().block_on(first_log.append(event("a"))));
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the first append's write began");
        let (returned_tx, returned) = std::sync::mpsc::channel();
        let second_log = log.clone();
        let second = scope.spawn(move || {
            let answer = second_log.append(event("b"));
            returned_tx.send(()).unwrap();
            runtime().block_on(answer)
        });
        // Generous: the call takes microseconds when it does not wait for the lock.
        let handed_over = returned.recv_timeout(Duration::from_secs(10));
        drop(release);
        assert!(
            handed_over.is_ok(),
            "the append waited for the lock another appender's write held"
        );
        (first.join().unwrap(), second.join().unwrap())
    });
    assert_eq!(first.unwrap(), 1);
    assert_eq!(
        second.unwrap(),
        2,
        "committed by the writer thread, after it"
    );
    assert!(
        log.stats().inline_commits.get() < 2,
        "the second append was not committed inline"
    );
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(log.close())
        .unwrap();
    assert_eq!(verify(&dir).unwrap().records, 2);
}

#[tokio::test]
async fn inline_commits_write_into_space_the_writer_thread_reserved() {
    let (_tmp, dir, faults, log) = open(&process());
    // Opening reserved the first 1 MiB, on the opening thread (at start-up).
    faults.reserved_on.lock().unwrap().clear();
    let padded = |name: &str, bytes: usize| {
        let mut event = event(name);
        event.detail = Some(serde_json::json!({ "pad": "x".repeat(bytes) }));
        event
    };
    let inline = || log.stats().inline_commits.get();
    let mut seq = 0;
    for round in 0..3 {
        for i in 0..4 {
            writer_settled(&log).await;
            seq += 1;
            let small = padded(&format!("s{round}-{i}"), 1024);
            assert_eq!(log.append(small).await.unwrap(), seq);
        }
        // More than the reserved space left: reserving is the writer thread's.
        let before = inline();
        writer_settled(&log).await;
        seq += 1;
        let big = padded(&format!("big{round}"), 1200 * 1024);
        assert_eq!(log.append(big).await.unwrap(), seq);
        assert_eq!(
            inline(),
            before,
            "a record past the reserved space is handed over"
        );
    }
    assert_eq!(inline(), 12, "the others were committed inline");
    log.close().await.unwrap();
    let reserved_on = faults.reserved_on.lock().unwrap().clone();
    assert!(reserved_on.len() >= 3, "{reserved_on:?}");
    assert!(
        reserved_on.iter().all(|thread| thread == "warden-audit"),
        "only the writer thread reserves: {reserved_on:?}"
    );
    assert_eq!(verify(&dir).unwrap().records, seq);
}

#[tokio::test]
async fn a_panic_in_an_inline_commit_is_an_outage_and_the_chain_goes_on_from_its_head() {
    let (_tmp, dir, faults, log) = open(&process());
    // Let the writer thread fall asleep: the append is then inline.
    tokio::time::sleep(Duration::from_millis(50)).await;
    *faults.panicking_write_of.lock().unwrap() = Some("boom");
    let panicking = log.clone();
    let panicked = std::thread::spawn(move || {
        drop(panicking.append(event("boom")));
    })
    .join();
    assert!(panicked.is_err(), "the inline commit panicked");
    assert_eq!(log.stats().inline_commits.get(), 0);
    // Declined while the lock is poisoned: the writer drops the half-done commit and leads
    // its next with the record of the outage.
    assert_eq!(log.append(event("next")).await.unwrap(), 2);
    assert!(log.is_writable());
    writer_settled(&log).await;
    assert_eq!(log.append(event("after")).await.unwrap(), 3);
    assert_eq!(log.stats().inline_commits.get(), 1, "inline again");
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 3);
    let records = all_records(&dir);
    let detail = &records[0]["detail"];
    assert_eq!(detail["event"], "audit_recovered", "{detail}");
    assert_eq!(detail["failed_records"], 1, "{detail}");
    assert_eq!(detail["lost_records"], 0, "{detail}");
    assert_eq!(records[1]["request_id"], "next");
    assert_eq!(records[2]["request_id"], "after");
}

#[tokio::test]
async fn a_declined_inline_commit_puts_the_outbox_records_it_took_back_in_front() {
    // The writer thread takes the outbox's records on its own 5 ms after they come: if it
    // did so before the decision came (a loaded machine), the case was not met: again.
    for _attempt in 0..5 {
        let (_tmp, dir, _faults, log) = signed_process_log(5);
        for i in 1..=3u64 {
            assert_eq!(log.append(event(&format!("c{i}"))).await.unwrap(), i);
        }
        writer_settled(&log).await;
        let inline = log.stats().inline_commits.get();
        log.append_detached(outcome("o1"));
        log.append_detached(outcome("o2"));
        // With the outbox's two, it makes a checkpoint due (5 records): declined.
        let seq = log.append(event("c4")).await.unwrap();
        let declined = log.stats().inline_commits.get() == inline;
        log.close().await.unwrap();
        if !declined {
            continue;
        }
        assert_eq!(seq, 6, "after the outbox's records");
        assert_eq!(log.stats().lost.get(), 0);
        let records = all_records(&dir);
        let order: Vec<&str> = records
            .iter()
            .map(|r| r["request_id"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            order[..6],
            ["c1", "c2", "c3", "o1", "o2", "c4"],
            "{order:?}"
        );
        assert_eq!(records[6]["kind"], "checkpoint", "{}", records[6]);
        verify_with(&dir, &strict()).unwrap();
        return;
    }
    panic!("the writer thread took the outbox's records before the decision every time");
}

#[test]
fn appends_made_while_the_writer_thread_answers_its_waiters_commit_inline() {
    const DURING: u64 = 3;
    let (_tmp, dir, faults, log) = signed_process_log(5);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    };
    let rt = runtime();
    for i in 1..=4u64 {
        assert_eq!(rt.block_on(log.append(event(&format!("c{i}")))).unwrap(), i);
    }
    rt.block_on(writer_settled(&log));
    let inline = || log.stats().inline_commits.get();
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel::<()>();
    *faults.held_answer.lock().unwrap() = Some((entered_tx, release_rx));
    let (fifth, during) = std::thread::scope(|scope| {
        // The fifth record makes a checkpoint due: the writer thread commits it, and is held
        // before it answers it.
        let fifth_log = log.clone();
        let fifth = scope.spawn(move || runtime().block_on(fifth_log.append(event("c5"))));
        entered
            .recv_timeout(Duration::from_secs(10))
            .expect("the writer thread committed the fifth record and is about to answer it");
        let before = inline();
        let answers: Vec<_> = (1..=DURING)
            .map(|i| log.append(event(&format!("during{i}"))))
            .collect();
        let during = inline() - before;
        drop(release);
        let seqs: Vec<u64> = answers
            .into_iter()
            .map(|answer| rt.block_on(answer).unwrap())
            .collect();
        assert_eq!(seqs, [7, 8, 9], "after the fifth record and its checkpoint");
        (fifth.join().unwrap(), during)
    });
    assert_eq!(fifth.unwrap(), 5);
    assert_eq!(
        during, DURING,
        "the appends made while the writer thread answered found its lock free"
    );
    rt.block_on(log.close()).unwrap();
    let records = all_records(&dir);
    assert_eq!(records[5]["kind"], "checkpoint", "{}", records[5]);
    verify_with(&dir, &strict()).unwrap();
}
