//! The audit log end to end: append, close, tamper with the files, verify, reopen.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::anchor;
use super::config::{AuditConfig, Durability};
use super::error::{AuditError, EditEvidence, Location, Problem, TruncationEvidence, VerifyError};
use super::event::{AuditEvent, EventKind};
use super::faults::Faults;
use super::log::AuditLog;
use super::record::{ChainFields, hash_line};
use super::verify::{VerifyReport, verify, verify_with};

fn event(i: u64) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::Decision);
    event.request_id = format!("req-{i}").into();
    event.action = "llm:chat".into();
    event.resource = "Model::\"openai/gpt-4o\"".into();
    event.decision = "allow".into();
    event
}

fn config() -> AuditConfig {
    AuditConfig::default()
}

/// A closed log of `n` records in a fresh directory.
async fn log_with(n: u64, cfg: &AuditConfig) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, cfg).unwrap();
    for i in 1..=n {
        assert_eq!(log.append(event(i)).await.unwrap(), i);
    }
    log.close().await.unwrap();
    (tmp, dir)
}

/// An open log in a fresh directory whose writes, fsyncs and anchor writes a test can make
/// fail or hold.
fn log_with_faults() -> (tempfile::TempDir, PathBuf, Arc<Faults>, AuditLog) {
    log_with_faults_and(&config())
}

/// [`log_with_faults`] with a configuration of the test's own.
fn log_with_faults_and(cfg: &AuditConfig) -> (tempfile::TempDir, PathBuf, Arc<Faults>, AuditLog) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let faults = Arc::new(Faults::default());
    let log = AuditLog::open_with(&dir, cfg, faults.clone(), None, Vec::new()).unwrap();
    (tmp, dir, faults, log)
}

/// `process` durability with a flush interval of `flush_interval`.
fn process(flush_interval: Duration) -> AuditConfig {
    AuditConfig {
        durability: Durability::Process,
        flush_interval,
        ..AuditConfig::default()
    }
}

fn segment(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("audit-{n:06}.jsonl"))
}

fn read_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A segment's bytes up to its zero-filled reserved space.
fn data(path: &Path) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.truncate(end);
    bytes
}

/// Appends `zeros` zero bytes to a file: the space a running writer reserves ahead.
fn add_zeros(path: &Path, zeros: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes.resize(bytes.len() + zeros, 0);
    fs::write(path, bytes).unwrap();
}

fn side_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(".torn-"))
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).unwrap();
}

fn tampered(result: Result<VerifyReport, VerifyError>) -> (Location, Problem) {
    match result {
        Err(VerifyError::Tampered { at, problem }) => (at, problem),
        other => panic!("expected a tampered log, got {other:?}"),
    }
}

fn at(file: &str, line: u64, seq: u64) -> Location {
    Location {
        file: Arc::from(file),
        line: Some(line),
        seq: Some(seq),
    }
}

#[tokio::test]
async fn appended_records_verify_and_match_the_head() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    assert_eq!(log.head(), (0, [0; 32]));
    for i in 1..=10 {
        assert_eq!(log.append(event(i)).await.unwrap(), i);
    }
    let head = log.head();
    log.close().await.unwrap();

    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 10);
    assert_eq!(report.segments, 1);
    assert_eq!((report.head_seq, report.head_hash), head);
    let lines = read_lines(&segment(&dir, 1));
    assert_eq!(hash_line(lines[9].as_bytes()), head.1);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["request_id"], "req-1");
}

#[tokio::test]
async fn edited_middle_record_is_named_as_edited() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines[4] = lines[4].replace("\"allow\"", "\"deny\"");
    write_lines(&path, &lines);

    let err = verify(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit-000001.jsonl line 5 (seq 5): record was edited after it was written: its hash \
         does not match the \"prev\" of seq 6"
    );
    let (location, problem) = tampered(Err(err));
    assert_eq!(location, at("audit-000001.jsonl", 5, 5));
    assert_eq!(
        problem,
        Problem::Edited(EditEvidence::NextPrev { next_seq: 6 })
    );
}

#[tokio::test]
async fn deleted_line_is_reported_as_missing_seq() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines.remove(4);
    write_lines(&path, &lines);

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location, at("audit-000001.jsonl", 5, 6));
    assert_eq!(problem, Problem::Deleted { first: 5, last: 5 });
    assert_eq!(problem.kind(), "deleted");
}

#[tokio::test]
async fn swapped_lines_are_reported_as_reordered() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines.swap(3, 4);
    write_lines(&path, &lines);

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location, at("audit-000001.jsonl", 4, 5));
    assert_eq!(
        problem,
        Problem::Reordered {
            expected: 4,
            expected_line: Some(5)
        }
    );
}

#[tokio::test]
async fn file_cut_mid_line_is_truncated() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 20]).unwrap();

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location.line, Some(10));
    assert!(matches!(
        problem,
        Problem::Truncated(TruncationEvidence::TornLine { .. })
    ));
}

#[tokio::test]
async fn dropped_last_record_is_truncated_by_the_head_anchor() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines.pop();
    write_lines(&path, &lines);

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location, at("audit-000001.jsonl", 9, 9));
    assert_eq!(
        problem,
        Problem::Truncated(TruncationEvidence::AnchorAhead { anchor_seq: 10 })
    );
}

#[tokio::test]
async fn edited_last_record_is_caught_by_the_head_anchor() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines[9] = lines[9].replace("req-10", "req-99");
    write_lines(&path, &lines);

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location, at("audit-000001.jsonl", 10, 10));
    assert_eq!(problem, Problem::Edited(EditEvidence::Anchor));
}

#[tokio::test]
async fn first_record_with_a_non_zero_prev_is_edited() {
    let (_tmp, dir) = log_with(3, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines[0] = lines[0].replacen(&"0".repeat(64), &"1".repeat(64), 1);
    write_lines(&path, &lines);

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location, at("audit-000001.jsonl", 1, 1));
    assert_eq!(problem, Problem::Edited(EditEvidence::Genesis));
}

#[tokio::test]
async fn line_that_is_not_a_record_is_malformed() {
    let (_tmp, dir) = log_with(5, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines[2] = "{\"hello\":1}".to_owned();
    write_lines(&path, &lines);

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location.line, Some(3));
    assert_eq!(location.seq, None);
    assert!(matches!(problem, Problem::Malformed(ref m) if m.contains("seq")));
}

#[tokio::test]
async fn missing_head_anchor_is_reported() {
    let (_tmp, dir) = log_with(4, &config()).await;
    fs::remove_file(dir.join("head.json")).unwrap();
    assert!(matches!(
        verify(&dir),
        Err(VerifyError::AnchorMissing {
            records: 4,
            head_seq: 4,
            ..
        })
    ));
}

#[test]
fn directory_without_a_log_is_not_a_log() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(verify(tmp.path()), Err(VerifyError::NoLog { .. })));
}

#[tokio::test]
async fn torn_tail_is_set_aside_and_the_chain_continues() {
    let (_tmp, dir) = log_with(5, &config()).await;
    let path = segment(&dir, 1);
    let torn = b"{\"seq\":6,\"prev\":\"ab";
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(torn);
    fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        verify(&dir).unwrap_err().problem(),
        Some(Problem::Truncated(_))
    ));

    let log = AuditLog::open(&dir, &config()).unwrap();
    assert_eq!(log.head().0, 6, "a system record notes the recovery");
    assert_eq!(log.append(event(7)).await.unwrap(), 7);
    log.close().await.unwrap();

    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 7);
    let side: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("audit-000001.jsonl.torn-")
        })
        .collect();
    assert_eq!(side.len(), 1);
    assert_eq!(fs::read(side[0].path()).unwrap(), torn);
    let lines = read_lines(&path);
    let note: AuditEvent = serde_json::from_str(&lines[5]).unwrap();
    assert_eq!(note.kind, EventKind::System);
    let detail = note.detail.unwrap();
    assert_eq!(detail["event"], "audit_torn_tail_set_aside");
    assert_eq!(detail["bytes"], torn.len());
}

#[tokio::test]
async fn reopening_continues_the_chain() {
    let (_tmp, dir) = log_with(3, &config()).await;
    let log = AuditLog::open(&dir, &config()).unwrap();
    assert_eq!(log.head().0, 3);
    assert_eq!(log.append(event(4)).await.unwrap(), 4);
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 4);
}

#[tokio::test]
async fn refuses_to_open_a_log_that_does_not_chain() {
    let (_tmp, dir) = log_with(6, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines[2] = lines[2].replace("req-3", "req-x");
    write_lines(&path, &lines);
    let before = fs::read(&path).unwrap();

    let err = AuditLog::open(&dir, &config()).unwrap_err();
    match &err {
        AuditError::Damaged { source, .. } => {
            assert!(matches!(source.problem(), Some(Problem::Edited(_))))
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert!(err.to_string().contains("warden audit verify"));
    assert_eq!(fs::read(&path).unwrap(), before, "nothing was changed");
}

#[tokio::test]
async fn refuses_to_open_a_log_cut_behind_its_head_anchor() {
    let (_tmp, dir) = log_with(6, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines.truncate(4);
    write_lines(&path, &lines);

    match AuditLog::open(&dir, &config()) {
        Err(AuditError::Damaged { source, .. }) => assert_eq!(
            source.problem(),
            Some(&Problem::Truncated(TruncationEvidence::AnchorAhead {
                anchor_seq: 6
            }))
        ),
        other => panic!("expected Damaged, got {other:?}"),
    }
}

#[tokio::test]
async fn rotates_segments_and_the_chain_crosses_them() {
    let cfg = AuditConfig {
        segment_bytes: 1000,
        ..config()
    };
    let (_tmp, dir) = log_with(30, &cfg).await;
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 30);
    assert!(report.segments >= 5, "{} segments", report.segments);
    for n in 1..=report.segments {
        let len = fs::metadata(segment(&dir, n)).unwrap().len();
        assert!(len > 0 && len <= 1000, "segment {n} is {len} bytes");
    }
    let first_of_second = &read_lines(&segment(&dir, 2))[0];
    let last_of_first = read_lines(&segment(&dir, 1)).pop().unwrap();
    let fields = ChainFields::parse(first_of_second.as_bytes()).unwrap();
    assert_eq!(fields.prev.0, hash_line(last_of_first.as_bytes()));

    let log = AuditLog::open(&dir, &cfg).unwrap();
    assert_eq!(log.append(event(31)).await.unwrap(), 31);
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 31);
}

#[tokio::test]
async fn a_deleted_segment_shows_as_deleted_records() {
    let cfg = AuditConfig {
        segment_bytes: 1000,
        ..config()
    };
    let (_tmp, dir) = log_with(30, &cfg).await;
    let first_of_third = ChainFields::parse(read_lines(&segment(&dir, 3))[0].as_bytes())
        .unwrap()
        .seq;
    let first_of_second = ChainFields::parse(read_lines(&segment(&dir, 2))[0].as_bytes())
        .unwrap()
        .seq;
    fs::remove_file(segment(&dir, 2)).unwrap();

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location, at("audit-000003.jsonl", 1, first_of_third));
    assert_eq!(
        problem,
        Problem::Deleted {
            first: first_of_second,
            last: first_of_third - 1
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_a_gap_free_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(log.append(event(t * 1000 + i)).await.unwrap());
            }
            seqs
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.extend(task.await.unwrap());
    }
    log.close().await.unwrap();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=3200).collect::<Vec<u64>>());
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 3200);
    assert_eq!(report.head_seq, 3200);
}

/// Arms a held fsync, then appends record 1 in a task: the sender releases the fsync.
fn append_with_held_sync(
    log: &AuditLog,
    faults: &Faults,
) -> (
    std::sync::mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<u64, AuditError>>,
) {
    let (release, held) = std::sync::mpsc::channel();
    *faults.held_sync.lock().unwrap() = Some(held);
    let log = log.clone();
    (
        release,
        tokio::spawn(async move { log.append(event(1)).await }),
    )
}

/// The held append stays unanswered (the head unmoved) until released, then gets seq 1.
async fn waits_until_released(
    log: &AuditLog,
    release: std::sync::mpsc::Sender<()>,
    appending: tokio::task::JoinHandle<Result<u64, AuditError>>,
) {
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!appending.is_finished(), "append waits for its commit");
    assert_eq!(log.head().0, 0);
    release.send(()).unwrap();
    assert_eq!(appending.await.unwrap().unwrap(), 1);
    assert_eq!(log.head().0, 1);
}

#[tokio::test]
async fn in_disk_durability_an_append_resolves_only_after_its_write_is_flushed() {
    // The write lands first, the append waits for the fdatasync.
    let (_tmp, dir, faults, log) = log_with_faults();
    let (release, appending) = append_with_held_sync(&log, &faults);
    let path = segment(&dir, 1);
    for _ in 0..200 {
        if data(&path).ends_with(b"}\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        data(&path).split(|&b| b == b'\n').count(),
        2,
        "the record is written"
    );
    waits_until_released(&log, release, appending).await;
    log.close().await.unwrap();
}

#[tokio::test]
async fn records_of_every_size_chain_and_end_at_the_first_nul_in_both_durabilities() {
    for cfg in [config(), process(Duration::from_millis(10))] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let mut seq = 0;
        // Records of many sizes, so commits start and end at every offset in a block; a
        // reopen between the rounds continues a partly written block.
        for round in 0..2 {
            let log = AuditLog::open(&dir, &cfg).unwrap();
            for i in 0..40u64 {
                let mut e = event(i);
                e.reasons = vec!["x".repeat(((i * 977 + round * 131) % 2600) as usize)];
                seq += 1;
                assert_eq!(log.append(e).await.unwrap(), seq);
            }
            let burst: Vec<_> = (0..32).map(|i| log.append(event(1000 + i))).collect();
            for appended in futures_util::future::join_all(burst).await {
                appended.unwrap();
            }
            seq += 32;
            let bytes = fs::read(segment(&dir, 1)).unwrap();
            let written = data(&segment(&dir, 1));
            assert!(bytes[written.len()..].iter().all(|&b| b == 0));
            let lines = written.iter().filter(|&&b| b == b'\n').count();
            assert_eq!(lines as u64, seq, "{:?}", cfg.durability);
            log.close().await.unwrap();
        }
        let report = verify(&dir).unwrap();
        assert_eq!(report.records, seq, "{report:?}");
    }
}

#[tokio::test]
async fn failed_write_fails_its_appends_and_later_records_continue_the_chain() {
    let (_tmp, dir, faults, log) = log_with_faults();
    assert_eq!(log.append(event(1)).await.unwrap(), 1);

    faults.torn_writes.store(1, Ordering::SeqCst);
    let err = log.append(event(2)).await.unwrap_err();
    assert!(matches!(err, AuditError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("audit-000001.jsonl"));
    assert_eq!(log.head().0, 1);

    faults.failed_syncs.store(1, Ordering::SeqCst);
    assert!(matches!(
        log.append(event(3)).await,
        Err(AuditError::Write { .. })
    ));

    // The first commit that succeeds again is led by a record of the outage.
    assert_eq!(log.append(event(4)).await.unwrap(), 3);
    log.close().await.unwrap();
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 3);
    let lines = read_lines(&segment(&dir, 1));
    assert!(lines[1].contains("\"audit_recovered\""), "{}", lines[1]);
    assert!(
        lines[2].contains("req-4"),
        "the failed records left no bytes"
    );
}

#[tokio::test]
async fn an_outage_is_recorded_once_commits_succeed_again_even_without_traffic() {
    let (_tmp, dir, faults, log) = log_with_faults();
    assert_eq!(log.append(event(1)).await.unwrap(), 1);
    assert!(log.is_writable());

    faults.failed_syncs.store(2, Ordering::SeqCst);
    assert!(log.append(event(2)).await.is_err());
    assert!(!log.is_writable());
    // The retry carries the recovery record and fails too: it counts only event 3.
    assert!(log.append(event(3)).await.is_err());
    assert!(!log.is_writable());

    // Nothing more is appended: the writer retries on its own within about a second.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !log.is_writable() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never retried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.head().0, 2, "the recovery record was committed");
    assert_eq!(log.append(event(4)).await.unwrap(), 3);
    log.close().await.unwrap();

    assert_eq!(verify(&dir).unwrap().records, 3);
    let recovery: serde_json::Value =
        serde_json::from_str(&read_lines(&segment(&dir, 1))[1]).unwrap();
    assert_eq!(recovery["kind"], "system");
    let detail = &recovery["detail"];
    assert_eq!(detail["event"], "audit_recovered");
    assert_eq!(detail["failed_records"], 2);
    assert!(detail["failing_since"].as_str().unwrap().ends_with('Z'));
    assert!(
        detail["last_error"].as_str().unwrap().contains("error"),
        "{detail}"
    );
}

#[tokio::test]
async fn detached_records_are_committed_by_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    for i in 1..=20 {
        log.append_detached(event(i));
    }
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 20);
}

#[tokio::test]
async fn an_append_whose_future_is_dropped_unpolled_is_still_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    drop(log.append(event(1)));
    assert_eq!(
        log.append(event(2)).await.unwrap(),
        2,
        "the first took seq 1"
    );
    log.close().await.unwrap();
    let lines = read_lines(&segment(&dir, 1));
    assert_eq!(lines.len(), 2);
    assert!(lines[0].contains("req-1") && lines[1].contains("req-2"));
}

#[tokio::test]
async fn closed_log_refuses_appends_and_closes_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    log.close().await.unwrap();
    assert!(matches!(
        log.append(event(1)).await,
        Err(AuditError::Closed)
    ));
    log.close().await.unwrap();
}

#[tokio::test]
async fn second_writer_on_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    assert!(matches!(
        AuditLog::open(&dir, &config()),
        Err(AuditError::Locked { .. })
    ));
    log.close().await.unwrap();
    AuditLog::open(&dir, &config())
        .unwrap()
        .close()
        .await
        .unwrap();
}

#[tokio::test]
async fn head_anchor_catches_up_while_the_log_is_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    log.append(event(1)).await.unwrap();
    log.append(event(2)).await.unwrap();
    let mut anchored = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        anchored = anchor::read(&dir).unwrap().map_or(0, |a| a.seq);
        if anchored == 2 {
            break;
        }
    }
    assert_eq!(anchored, 2);
    log.close().await.unwrap();
}

#[tokio::test]
async fn torn_write_alone_in_a_fresh_segment_resumes_from_the_previous_one() {
    let cfg = AuditConfig {
        segment_bytes: 1000,
        ..config()
    };
    let (_tmp, dir) = log_with(12, &cfg).await;
    let segments = verify(&dir).unwrap().segments;
    let fresh = segment(&dir, segments + 1);
    fs::write(&fresh, b"{\"seq\":13,\"pr").unwrap();

    let log = AuditLog::open(&dir, &cfg).unwrap();
    assert_eq!(log.head().0, 13, "the recovery note follows seq 12");
    assert_eq!(log.append(event(14)).await.unwrap(), 14);
    log.close().await.unwrap();
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 14);
    let note: AuditEvent = serde_json::from_str(&read_lines(&fresh)[0]).unwrap();
    assert_eq!(note.kind, EventKind::System);
}

#[tokio::test]
async fn open_segment_is_zero_filled_ahead_and_cut_back_on_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    for i in 1..=3 {
        log.append(event(i)).await.unwrap();
    }
    let path = segment(&dir, 1);
    let written = data(&path).len();
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.len() > written, "space is reserved ahead");
    assert!(bytes[written..].iter().all(|&b| b == 0));
    assert_eq!(verify(&dir).unwrap().records, 3, "a live log verifies");

    log.close().await.unwrap();
    assert_eq!(
        fs::read(&path).unwrap().len(),
        written,
        "no zeros once closed"
    );
    assert_eq!(verify(&dir).unwrap().records, 3);
}

#[tokio::test]
async fn zero_tail_left_by_a_crash_is_unused_space() {
    let (_tmp, dir) = log_with(5, &config()).await;
    let path = segment(&dir, 1);
    add_zeros(&path, 3 << 20);
    let report = verify(&dir).unwrap();
    assert_eq!(report.records, 5);

    let log = AuditLog::open(&dir, &config()).unwrap();
    assert_eq!(
        log.head().0,
        5,
        "no recovery note: zeros are not a torn write"
    );
    assert_eq!(log.append(event(6)).await.unwrap(), 6);
    log.close().await.unwrap();
    assert!(side_files(&dir).is_empty());
    assert_eq!(verify(&dir).unwrap().records, 6);
    let bytes = fs::read(&path).unwrap();
    assert!(!bytes.contains(&0), "the record went right after seq 5");
    assert_eq!(read_lines(&path).len(), 6);
}

#[tokio::test]
async fn torn_record_followed_by_zeros_is_a_torn_tail() {
    let (_tmp, dir) = log_with(5, &config()).await;
    let path = segment(&dir, 1);
    let torn = b"{\"seq\":6,\"prev\":\"ab";
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(torn);
    bytes.resize(bytes.len() + 4096, 0);
    fs::write(&path, &bytes).unwrap();

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location.line, Some(6));
    assert_eq!(
        problem,
        Problem::Truncated(TruncationEvidence::TornLine {
            bytes: torn.len() as u64
        })
    );

    let log = AuditLog::open(&dir, &config()).unwrap();
    assert_eq!(log.head().0, 6, "a system record notes the recovery");
    log.close().await.unwrap();
    let side = side_files(&dir);
    assert_eq!(side.len(), 1);
    assert_eq!(
        fs::read(&side[0]).unwrap(),
        torn,
        "the zeros are not set aside"
    );
    assert_eq!(verify(&dir).unwrap().records, 6);
}

#[tokio::test]
async fn bytes_written_past_the_zeros_are_caught_and_set_aside() {
    let (_tmp, dir) = log_with(5, &config()).await;
    let path = segment(&dir, 1);
    let clean_len = fs::read(&path).unwrap().len() as u64;
    let forged = b"{\"seq\":6,\"prev\":\"forged\"}\n";
    let mut bytes = fs::read(&path).unwrap();
    bytes.resize(bytes.len() + 1000, 0);
    bytes.extend_from_slice(forged);
    bytes.resize(bytes.len() + 1000, 0);
    fs::write(&path, &bytes).unwrap();

    let err = verify(&dir).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "audit-000001.jsonl line 6: the log was truncated: its data ends here (zero bytes \
             follow), but {} bytes of data lie after the zeros at offset {}: records were \
             zeroed out or written past the end",
            forged.len(),
            clean_len + 1000
        )
    );

    let log = AuditLog::open(&dir, &config()).unwrap();
    assert_eq!(log.head().0, 6, "a system record notes the recovery");
    log.close().await.unwrap();
    let side = side_files(&dir);
    assert_eq!(side.len(), 1);
    let set_aside = fs::read(&side[0]).unwrap();
    assert_eq!(set_aside.len(), 1000 + forged.len());
    assert!(set_aside.ends_with(forged));
    assert_eq!(verify(&dir).unwrap().records, 6);
}

#[tokio::test]
async fn zeroed_out_records_are_caught_and_the_log_is_not_opened() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let mut bytes = fs::read(&path).unwrap();
    let lines = read_lines(&path);
    let start: usize = lines[..4].iter().map(|l| l.len() + 1).sum();
    let end = start + lines[4].len() + 1 + lines[5].len() + 1;
    bytes[start..end].fill(0);
    fs::write(&path, &bytes).unwrap();

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location.line, Some(5));
    assert_eq!(
        problem,
        Problem::Truncated(TruncationEvidence::DataAfterEnd {
            offset: end as u64,
            bytes: (bytes.len() - end) as u64
        })
    );
    match AuditLog::open(&dir, &config()) {
        Err(AuditError::Damaged { source, .. }) => assert_eq!(
            source.problem(),
            Some(&Problem::Truncated(TruncationEvidence::AnchorAhead {
                anchor_seq: 10
            }))
        ),
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was changed");
}

#[tokio::test]
async fn edited_record_in_a_segment_with_a_zero_tail_is_named_as_edited() {
    let (_tmp, dir) = log_with(10, &config()).await;
    let path = segment(&dir, 1);
    let mut lines = read_lines(&path);
    lines[4] = lines[4].replace("\"allow\"", "\"deny\"");
    write_lines(&path, &lines);
    add_zeros(&path, 1 << 20);

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location, at("audit-000001.jsonl", 5, 5));
    assert_eq!(
        problem,
        Problem::Edited(EditEvidence::NextPrev { next_seq: 6 })
    );
}

#[tokio::test]
async fn zeroed_out_segment_tail_before_a_later_segment_is_caught() {
    let cfg = AuditConfig {
        segment_bytes: 1000,
        ..config()
    };
    let (_tmp, dir) = log_with(12, &cfg).await;
    let path = segment(&dir, 1);
    let mut bytes = fs::read(&path).unwrap();
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    bytes[last_start..].fill(0);
    fs::write(&path, &bytes).unwrap();

    let (location, problem) = tampered(verify(&dir));
    assert_eq!(location.file.as_ref(), "audit-000002.jsonl");
    assert!(matches!(problem, Problem::Deleted { .. }), "{problem:?}");
}

#[tokio::test]
async fn a_detached_record_is_committed_on_its_own_while_the_writer_idles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    assert_eq!(log.append(event(1)).await.unwrap(), 1);
    // Idle long enough for the writer to anchor and sleep without a timeout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut outcome = event(2);
    outcome.kind = EventKind::Outcome;
    log.append_detached(outcome);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while log.head().0 < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox record was not committed while the writer slept"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let text = String::from_utf8(data(&segment(&dir, 1))).unwrap();
    assert!(text.contains("\"kind\":\"outcome\""), "{text}");
    drop(log);
    drop(tmp);
}

#[tokio::test]
async fn detached_records_ride_with_the_next_decision_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    let commits = || log.stats().commits.get();
    assert_eq!(log.append(event(1)).await.unwrap(), 1);
    let before = commits();
    let mut outcome = event(2);
    outcome.kind = EventKind::Outcome;
    log.append_detached(outcome);
    // A decision right after: both in one commit, the outcome first.
    assert_eq!(log.append(event(3)).await.unwrap(), 3);
    assert_eq!(commits(), before + 1, "one commit for both records");
    log.close().await.unwrap();
    let lines = read_lines(&segment(&dir, 1));
    assert!(lines[1].contains("\"kind\":\"outcome\""), "{lines:?}");
}

#[tokio::test]
async fn a_slow_head_anchor_write_does_not_hold_up_commits() {
    let (_tmp, dir, faults, log) = log_with_faults();
    let (release, held) = std::sync::mpsc::channel();
    *faults.held_anchor.lock().unwrap() = Some(held);
    assert_eq!(log.append(event(1)).await.unwrap(), 1);

    // Idle, the writer has head.json catch up: that write starts, and is held.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while faults.held_anchor.lock().unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "no anchor write started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for i in 2..=50 {
        let appended = tokio::time::timeout(Duration::from_secs(2), log.append(event(i))).await;
        let seq = appended.expect("commits go on while head.json is being written");
        assert_eq!(seq.unwrap(), i);
    }

    release.send(()).unwrap();
    log.close().await.unwrap();
    assert_eq!(anchor::read(&dir).unwrap().unwrap().seq, 50);
    assert_eq!(verify(&dir).unwrap().records, 50);
}

/// Waits up to 5 s for `done`.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `audit_recovered` record in segment 1 of `dir`.
fn recovery_record(dir: &Path) -> serde_json::Value {
    read_lines(&segment(dir, 1))
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["detail"]["event"] == "audit_recovered")
        .expect("an audit_recovered record")
}

#[tokio::test]
async fn in_process_durability_an_append_resolves_once_written_and_is_flushed_within_the_interval()
{
    let (_tmp, dir, faults, log) = log_with_faults_and(&process(Duration::from_millis(20)));
    let flushes = || log.stats().flush_seconds.get_sample_count();
    // The flush is held: the append resolves anyway, once its record is in the file.
    let (release, held) = std::sync::mpsc::channel();
    *faults.held_sync.lock().unwrap() = Some(held);
    let appended = tokio::time::timeout(Duration::from_secs(2), log.append(event(1))).await;
    assert_eq!(appended.expect("not held by the flush").unwrap(), 1);
    assert_eq!(data(&segment(&dir, 1)).split(|&b| b == b'\n').count(), 2);
    // The flush starts within the interval and is held there; head.json names only what is on
    // disk, so it stays behind the record until the flush returns.
    eventually("the flush started", || {
        faults.held_sync.lock().unwrap().is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(anchor::read(&dir).unwrap().map_or(0, |a| a.seq), 0);
    release.send(()).unwrap();
    eventually("the flush was counted", || flushes() == 1).await;
    eventually("head.json caught up once flushed", || {
        anchor::read(&dir).unwrap().is_some_and(|a| a.seq == 1)
    })
    .await;
    assert!(log.is_writable());
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 1);
}

#[tokio::test]
async fn in_process_durability_close_and_rotation_flush_what_is_written() {
    // An interval no test waits for: only rotations and the close flush.
    let cfg = AuditConfig {
        segment_bytes: 1000,
        ..process(Duration::from_secs(1))
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &cfg).unwrap();
    for i in 1..=12 {
        assert_eq!(log.append(event(i)).await.unwrap(), i);
    }
    let report = verify(&dir).unwrap();
    let rotations = report.segments - 1;
    assert!(rotations >= 2, "{report:?}");
    assert_eq!(log.stats().flush_seconds.get_sample_count(), rotations);
    log.close().await.unwrap();
    assert_eq!(log.stats().flush_seconds.get_sample_count(), rotations + 1);
    assert_eq!(anchor::read(&dir).unwrap().unwrap().seq, 12);
    assert_eq!(verify(&dir).unwrap().records, 12);
}

#[tokio::test]
async fn in_process_durability_a_failed_flush_fails_the_log_until_a_commit_flushes_again() {
    let (_tmp, dir, faults, log) = log_with_faults_and(&process(Duration::from_millis(5)));
    faults.failed_syncs.store(1, Ordering::SeqCst);
    // Answered once written; its flush then fails: the log is no longer writable.
    assert_eq!(log.append(event(1)).await.unwrap(), 1);
    eventually("the failed flush made the log unwritable", || {
        !log.is_writable()
    })
    .await;
    // The next commit writes record 1 again and flushes before answering: writable again,
    // led by the record of the outage.
    assert_eq!(log.append(event(2)).await.unwrap(), 3);
    assert!(log.is_writable());
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 3);
    let recovery = recovery_record(&dir);
    assert_eq!(recovery["seq"], 2);
    let detail = &recovery["detail"];
    assert_eq!(detail["failed_records"], 0, "{detail}");
    assert_eq!(detail["lost_records"], 0, "{detail}");
    assert!(
        detail["last_error"].as_str().unwrap().contains("error"),
        "{detail}"
    );
}

#[tokio::test]
async fn in_process_durability_commits_while_failing_are_answered_only_once_flushed() {
    let (_tmp, dir, faults, log) = log_with_faults_and(&process(Duration::from_millis(5)));
    assert_eq!(log.append(event(1)).await.unwrap(), 1);
    faults.torn_writes.store(1, Ordering::SeqCst);
    assert!(log.append(event(2)).await.is_err());
    assert!(!log.is_writable());
    // While failing, a commit flushes before it answers: a failed flush fails its records.
    faults.failed_syncs.store(1, Ordering::SeqCst);
    assert!(log.append(event(3)).await.is_err());
    assert_eq!(log.append(event(4)).await.unwrap(), 3);
    log.close().await.unwrap();
    assert_eq!(verify(&dir).unwrap().records, 3);
    assert_eq!(recovery_record(&dir)["detail"]["failed_records"], 2);
}

#[tokio::test]
async fn lost_detached_records_are_counted_alike_by_the_recovery_record_and_the_metric() {
    let (_tmp, dir, faults, log) = log_with_faults();
    let lost = || log.stats().lost.get();
    assert_eq!(log.append(event(1)).await.unwrap(), 1);
    faults.failed_syncs.store(u32::MAX, Ordering::SeqCst);
    for i in 2..=4 {
        log.append_detached(event(i));
    }
    assert!(log.append(event(5)).await.is_err(), "a refused decision");
    // Two more nobody waits for, committed (and failing) on their own or with a retry.
    log.append_detached(event(6));
    log.append_detached(event(7));
    eventually("five detached records were lost", || lost() == 5).await;
    faults.failed_syncs.store(0, Ordering::SeqCst);
    assert!(log.append(event(8)).await.is_ok());
    log.close().await.unwrap();
    assert_eq!(lost(), 5);
    let detail = recovery_record(&dir)["detail"].clone();
    assert_eq!(detail["lost_records"], lost(), "{detail}");
    // The failed records are the lost ones and the refused decision, plus a retry's own
    // records, if it ran: the recovery records are not counted.
    assert_eq!(detail["failed_records"], 6, "{detail}");
}

#[tokio::test]
async fn a_detached_record_appended_once_the_log_is_closed_is_counted_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &config()).unwrap();
    log.append_detached(event(1));
    log.close().await.unwrap();
    assert_eq!(log.stats().lost.get(), 0, "the close committed it");
    log.append_detached(event(2));
    log.append_detached(event(3));
    assert_eq!(log.stats().lost.get(), 2);
    assert_eq!(verify(&dir).unwrap().records, 1);
}

#[tokio::test]
async fn a_retention_record_that_fails_to_commit_is_an_outage_like_any_other() {
    let cfg = AuditConfig {
        segment_bytes: 2048,
        retention: super::config::RetentionConfig {
            max_bytes: Some(4 * 2048),
            ..super::config::RetentionConfig::default()
        },
        ..config()
    };
    let (_tmp, dir, faults, log) = log_with_faults_and(&cfg);
    // The first retention record's write fails (disk full): nothing is deleted then.
    *faults.failed_write_of.lock().unwrap() = Some("\"kind\":\"retention\"");
    let armed = || faults.failed_write_of.lock().unwrap().is_some();
    let mut i = 0;
    while armed() {
        i += 1;
        assert!(i < 1000, "retention never ran");
        log.append(event(i)).await.unwrap();
    }
    // The record that follows is led by the record of the outage, which names the failure
    // and counts no record of an agent's as failed or lost.
    let deleted = log.stats().deleted_segments.get();
    i += 1;
    log.append(event(i)).await.unwrap();
    // The log is open: its current segment ends in reserved zeros.
    let mut recovered = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in read_lines(&path).iter().filter(|l| l.starts_with('{')) {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                if record["detail"]["event"] == "audit_recovered" {
                    recovered.push(record);
                }
            }
        }
    }
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let detail = &recovered[0]["detail"];
    assert_eq!(detail["failed_records"], 0, "{detail}");
    assert_eq!(detail["lost_records"], 0, "{detail}");
    assert!(
        detail["last_error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{detail}"
    );
    assert_eq!(log.stats().lost.get(), 0);
    // Retention goes on at the next segment closed.
    for _ in 0..40 {
        i += 1;
        log.append(event(i)).await.unwrap();
    }
    assert!(
        log.stats().deleted_segments.get() > deleted,
        "retention went on"
    );
    log.close().await.unwrap();
}

/// Every segment's records of `dir`, in order, parsed.
pub(super) fn all_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    segments.sort();
    segments
        .iter()
        .flat_map(|s| read_lines(s))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

#[tokio::test]
async fn an_outage_whose_retries_must_end_the_segment_is_recorded_once_and_whole() {
    // Signed, small segments: a retry that finds the segment full first commits the
    // checkpoint that closes it, so its recovery record is not the batch's first.
    let cfg = AuditConfig {
        segment_bytes: 4096,
        ..super::signed_tests::config(1_000_000)
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let faults = Arc::new(Faults::default());
    let log = AuditLog::open_with(
        &dir,
        &cfg,
        faults.clone(),
        Some(super::signed_tests::signer()),
        Vec::new(),
    )
    .unwrap();
    // Fill segment 1 until an audit_recovered record (over 300 bytes) no longer fits, with
    // records no checkpoint covers yet.
    let mut i = 1;
    while cfg.segment_bytes - (data(&segment(&dir, 1)).len() as u64) >= 300 {
        log.append(event(i)).await.unwrap();
        i += 1;
    }
    assert!(!segment(&dir, 2).exists());

    let syncs_failed = || u32::MAX - faults.failed_syncs.load(Ordering::SeqCst);
    let before = super::event::Timestamp::now().to_string();
    faults.failed_syncs.store(u32::MAX, Ordering::SeqCst);
    assert!(log.append(event(100)).await.is_err());
    let first_failed = super::event::Timestamp::now().to_string();
    // Retries with records, then one on its own with none (about a second later).
    log.append_detached(event(101));
    assert!(log.append(event(102)).await.is_err());
    log.append_detached(event(103));
    assert!(log.append(event(104)).await.is_err());
    eventually("the detached records were lost", || {
        log.stats().lost.get() == 2
    })
    .await;
    let tried = syncs_failed();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while syncs_failed() == tried {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never retried"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    faults.failed_syncs.store(0, Ordering::SeqCst);
    log.append(event(105)).await.unwrap();
    log.close().await.unwrap();

    let records = all_records(&dir);
    let recovered: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["detail"]["event"] == "audit_recovered")
        .collect();
    assert_eq!(recovered.len(), 1, "one outage, one record: {recovered:?}");
    let detail = &recovered[0]["detail"];
    assert_eq!(detail["failed_records"], 5, "{detail}");
    assert_eq!(detail["lost_records"], log.stats().lost.get(), "{detail}");
    let since = detail["failing_since"].as_str().unwrap();
    assert!(
        before.as_str() <= since && since <= first_failed.as_str(),
        "the outage began with the first failure ({before} to {first_failed}), not {since}"
    );
    // The retry did end segment 1 with a checkpoint and led segment 2 with the record.
    let first_of_2: serde_json::Value =
        serde_json::from_str(&read_lines(&segment(&dir, 2))[0]).unwrap();
    assert_eq!(first_of_2["detail"]["event"], "audit_recovered");
    assert_eq!(
        super::signed_tests::kind(read_lines(&segment(&dir, 1)).last().unwrap()),
        "checkpoint"
    );
    verify_with(&dir, &super::signed_tests::strict()).unwrap();
}
