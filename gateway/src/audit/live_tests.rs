//! A live log's last signature: a running writer signs at least every checkpoint interval,
//! idle or not (a heartbeat checkpoint), so a log cut back to an old checkpoint while some
//! process holds `audit.lock` shows by the age of its last signature.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::checkpoint::Checkpoint;
use super::config::AuditConfig;
use super::event::{AuditEvent, EventKind};
use super::log::AuditLog;
use super::record::hash_line;
use super::signed_tests::{config, event, keys, kind, lines, segment, signer, write_lines};
use super::verify::{VerifyOptions, verify_with};
use super::{StaleSignature, VerifyError, anchor};

fn system(what: &str) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::System);
    event.detail = Some(json!({ "event": what }));
    event
}

/// Checkpoints every `interval` (and 1000 records).
fn every(interval: Duration) -> AuditConfig {
    let mut cfg = config(1000);
    cfg.signing.checkpoint_interval = interval;
    cfg
}

/// `--require-signed` (or not) with `--live-window window`.
fn within(window: Duration, require_signed: bool) -> VerifyOptions {
    VerifyOptions {
        keys: keys(),
        require_signed,
        require_stopped: require_signed,
        live_window: window,
        ..VerifyOptions::default()
    }
}

/// Every record of every segment, parsed, in order (a live segment's data ends at its first
/// NUL byte: the space reserved after it).
fn records(dir: &Path) -> Vec<Value> {
    (1..)
        .map(|n| segment(dir, n))
        .take_while(|path| path.exists())
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let data = text.split('\0').next().unwrap_or_default().to_owned();
            data.lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .map(|line| serde_json::from_str(&line).unwrap())
        .collect()
}

/// Fails unless `said` holds every one of `parts`.
fn says(said: &str, parts: &[&str]) {
    for part in parts {
        assert!(said.contains(part), "{part:?} in {said}");
    }
}

/// Holds `dir`'s `audit.lock` as a writer does (anyone who can open the file can).
fn hold_lock(dir: &Path) -> File {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("audit.lock"))
        .unwrap();
    lock.try_lock().unwrap();
    lock
}

#[tokio::test]
async fn an_idle_writer_signs_every_interval_with_a_heartbeat_that_covers_its_last_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let interval = Duration::from_millis(100);
    let log = AuditLog::open_signed(&dir, &every(interval), signer(), Vec::new()).unwrap();
    log.append(system("start")).await.unwrap();
    log.append(event(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let written = records(&dir);
    let kinds: Vec<&str> = written
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        &kinds[..3],
        ["system", "checkpoint", "decision"],
        "the start record is signed at once: {kinds:?}"
    );
    assert!(
        kinds[3..].iter().all(|k| *k == "checkpoint"),
        "only checkpoints while idle: {kinds:?}"
    );
    let first = Checkpoint::of(&serde_json::from_value(written[3].clone()).unwrap()).unwrap();
    assert_eq!((first.from, first.to), (3, 3), "the records written");
    let beats = &written[4..];
    assert!(
        beats.len() >= 3,
        "{} heartbeats in 2.4 s at 100 ms",
        beats.len()
    );
    let time = |r: &Value| humantime::parse_rfc3339(r["time"].as_str().unwrap()).unwrap();
    for pair in written[3..].windows(2) {
        let apart = time(&pair[1]).duration_since(time(&pair[0])).unwrap();
        // Times are kept to the millisecond.
        assert!(
            apart + Duration::from_millis(1) >= interval,
            "one heartbeat an interval, no more: {apart:?} apart"
        );
    }
    for beat in beats {
        let cp = Checkpoint::of(&serde_json::from_value(beat.clone()).unwrap()).unwrap();
        let seq = beat["seq"].as_u64().unwrap();
        assert_eq!(
            (cp.from, cp.to),
            (seq - 1, seq - 1),
            "a heartbeat covers the checkpoint before it, alone"
        );
    }

    // Live, idle for longer than the window, yet its last signature is recent: it passes.
    let report = verify_with(&dir, &within(Duration::from_secs(2), true))
        .expect("an idle live writer's log is signed within the window");
    assert_eq!(report.stale_signature, None, "{report}");
    assert!(report.unsigned.is_empty(), "{report}");
    log.close().await.unwrap();
}

#[tokio::test]
async fn an_idle_writer_that_signed_nothing_of_its_own_writes_no_heartbeat() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open_signed(&dir, &config(1), signer(), Vec::new()).unwrap();
    log.append(event(1)).await.unwrap();
    log.close().await.unwrap();
    let before = records(&dir).len();
    // A second run that writes nothing: it does not sign what the first run wrote.
    let idle = every(Duration::from_millis(100));
    let log = AuditLog::open_signed(&dir, &idle, signer(), Vec::new()).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        records(&dir).len(),
        before,
        "no heartbeat for another run's records"
    );
    log.close().await.unwrap();
}

#[tokio::test]
async fn idle_heartbeats_start_a_new_segment_once_the_current_one_is_old() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let cfg = AuditConfig {
        segment_max_age: Duration::from_millis(300),
        ..every(Duration::from_millis(100))
    };
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    log.append(event(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    log.close().await.unwrap();
    assert!(
        segment(&dir, 2).exists(),
        "an idle log does not grow one segment past its age"
    );
    let second = lines(&segment(&dir, 2));
    assert_eq!(kind(&second[0]), "checkpoint", "a heartbeat begins it");
    let report = verify_with(&dir, &within(Duration::ZERO, false)).unwrap();
    assert!(report.unsigned.is_empty(), "{report}");
    assert!(report.segments >= 2, "{report}");
}

#[tokio::test]
async fn a_live_log_cut_back_to_an_old_checkpoint_fails_by_the_age_of_its_last_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open_signed(&dir, &config(3), signer(), Vec::new()).unwrap();
    log.append(system("start")).await.unwrap();
    for i in 1..=4 {
        log.append(event(i)).await.unwrap();
    }
    log.close().await.unwrap();
    // start and its checkpoint, decisions 1 to 3, checkpoint (seq 6): cut back to it,
    // head.json to match.
    let path = segment(&dir, 1);
    let mut all = lines(&path);
    assert_eq!(kind(&all[5]), "checkpoint");
    all.truncate(6);
    write_lines(&path, &all);
    anchor::write(&dir, 6, &hash_line(all[5].as_bytes()), None).unwrap();
    let _held = hold_lock(&dir);
    let fresh = verify_with(&dir, &within(Duration::from_secs(5), true))
        .expect("a checkpoint signed a moment ago is within the window");
    assert_eq!(fresh.stale_signature, None, "{fresh}");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let window = Duration::from_secs(1);
    match verify_with(&dir, &within(window, true)) {
        Err(VerifyError::StaleSignature { stale }) => {
            assert_eq!(stale.seq, 6);
            assert!(stale.age >= Duration::from_secs(2), "{stale:?}");
            says(
                &stale.to_string(),
                &[
                    "a running Warden signs a checkpoint at least every \
                     audit.signing.checkpoint_interval",
                    "last signature (the checkpoint at seq 6) is ",
                    "s old, more than --live-window (1s)",
                    "may have been cut back",
                    "Verify a copy",
                ],
            );
        }
        other => panic!("expected the stale signature, got {other:?}"),
    }
    // Without --require-signed: a warning, not a failure.
    let warned = verify_with(&dir, &within(window, false)).unwrap();
    assert!(matches!(
        warned.stale_signature,
        Some(StaleSignature { seq: 6, .. })
    ));
    assert!(
        warned
            .to_string()
            .contains("\nWARNING: a process holds this log's lock"),
        "{warned}"
    );
    // Stopped (no lock): unchanged, the age of a stopped log's signature says nothing.
    drop(_held);
    let stopped = verify_with(&dir, &within(window, false)).unwrap();
    assert_eq!(stopped.stale_signature, None, "{stopped}");
}

#[tokio::test]
async fn a_runs_start_record_is_signed_at_once_in_the_same_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open_signed(&dir, &config(1000), signer(), Vec::new()).unwrap();
    log.append(system("start")).await.unwrap();
    log.append(system("stop")).await.unwrap();
    log.close().await.unwrap();
    tokio::time::sleep(Duration::from_millis(2200)).await;
    // The previous run's closing checkpoint is older than the window; this run's start
    // record is signed with it, though its checkpoint interval (an hour) is far off.
    let log = AuditLog::open_signed(&dir, &config(1000), signer(), Vec::new()).unwrap();
    let start = log.append(system("start")).await.unwrap();
    let written = records(&dir);
    let signed = &written[start as usize];
    assert_eq!(signed["kind"], "checkpoint", "{written:?}");
    let cp = Checkpoint::of(&serde_json::from_value(signed.clone()).unwrap()).unwrap();
    assert_eq!(cp.to, start, "it covers the start record");
    let window = Duration::from_secs(2);
    let report = verify_with(&dir, &within(window, true)).expect("a run just begun");
    assert_eq!(report.stale_signature, None, "{report}");
    assert_eq!(report.unsigned_start, None, "{report}");
    assert!(report.unsigned.is_empty(), "{report}");
    log.close().await.unwrap();
}

/// Appends to the log in `dir` (cut back to its record `head`, of line `line`) a `start`
/// record of its own, dated now and chained to it, and rewrites `head.json` to match, as
/// someone hiding what came after the cut would.
fn append_made_up_start(dir: &Path, head: u64, line: &str) -> u64 {
    let mut buf = Vec::new();
    let hash = super::record::encode(
        &mut buf,
        head + 1,
        &hash_line(line.as_bytes()),
        &system("start"),
    )
    .unwrap();
    let mut all = lines(&segment(dir, 1));
    all.push(String::from_utf8(buf).unwrap().trim_end().to_owned());
    write_lines(&segment(dir, 1), &all);
    anchor::write(dir, head + 1, &hash, None).unwrap();
    head + 1
}

#[tokio::test]
async fn a_live_log_cut_back_and_given_a_fresh_start_record_of_its_own_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open_signed(&dir, &config(1000), signer(), Vec::new()).unwrap();
    log.append(system("start")).await.unwrap();
    for i in 1..=3 {
        log.append(event(i)).await.unwrap();
    }
    log.close().await.unwrap();
    // start, its checkpoint (seq 2), decisions 1 to 3, closing checkpoint: cut back to the
    // start's checkpoint and give the log a start record of its own, dated now.
    let path = segment(&dir, 1);
    let mut all = lines(&path);
    assert_eq!(kind(&all[1]), "checkpoint");
    all.truncate(2);
    write_lines(&path, &all);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = append_made_up_start(&dir, 2, &all[1]);
    let _held = hold_lock(&dir);
    let window = Duration::from_secs(1);
    // Its start record is within the window, so its unsigned tail passes as the live run's
    // last moments; but no signature within the window accounts for the start.
    match verify_with(&dir, &within(window, true)) {
        Err(VerifyError::UnsignedStart { unsigned }) => {
            assert_eq!(unsigned.start, start);
            assert!(matches!(unsigned.last_signature, Some((2, age)) if age > window));
            says(
                &unsigned.to_string(),
                &[
                    "signs its run's start record at once",
                    &format!("the last run's start record (seq {start}) is not signed"),
                    "the log's last signature (the checkpoint at seq 2) is ",
                    "old, more than --live-window (1s)",
                    "Verify a copy",
                ],
            );
        }
        other => panic!("expected the unsigned start, got {other:?}"),
    }
    // Without --require-signed: a warning, not a failure.
    let warned = verify_with(&dir, &within(window, false)).unwrap();
    assert_eq!(warned.unsigned_start.map(|u| u.start), Some(start));
    assert!(
        warned
            .to_string()
            .contains("\nWARNING: a process holds this log's lock"),
        "{warned}"
    );
    // Stopped (no lock): the last run is open, as any cut leaves it.
    drop(_held);
    assert_eq!(
        verify_with(&dir, &within(window, false))
            .unwrap()
            .unsigned_start,
        None
    );
}

#[tokio::test]
async fn a_live_log_made_of_a_fresh_start_record_alone_is_refused_when_signatures_are_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    std::fs::create_dir_all(&dir).unwrap();
    let zeros = "0".repeat(64);
    // A log of one start record, chained to the genesis hash: what a brand-new log's
    // first line is.
    let mut buf = Vec::new();
    let hash =
        super::record::encode(&mut buf, 1, &super::record::GENESIS, &system("start")).unwrap();
    std::fs::write(segment(&dir, 1), &buf).unwrap();
    anchor::write(&dir, 1, &hash, None).unwrap();
    assert!(String::from_utf8(buf).unwrap().contains(&zeros));
    let _held = hold_lock(&dir);
    let window = Duration::from_secs(30);
    match verify_with(&dir, &within(window, true)) {
        Err(VerifyError::UnsignedStart { unsigned }) => {
            assert_eq!((unsigned.start, unsigned.last_signature), (1, None));
            assert!(
                unsigned
                    .to_string()
                    .contains("the log holds no signature at all"),
                "{unsigned}"
            );
        }
        other => panic!("expected the unsigned start, got {other:?}"),
    }
    // An unsigned Warden's log, verified without a key, signs nothing: no warning.
    let unkeyed = VerifyOptions {
        live_window: window,
        ..VerifyOptions::default()
    };
    assert_eq!(verify_with(&dir, &unkeyed).unwrap().unsigned_start, None);
}
