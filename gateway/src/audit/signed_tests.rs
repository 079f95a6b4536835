//! Signed checkpoints end to end: the writer appends them (by count, by time, at each
//! segment's end, at close), `verify_with` checks them, and every kind of tampering shows.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::Value;

use super::anchor;
use super::checkpoint::{Checkpoint, CheckpointProblem, Keys};
use super::config::{AuditConfig, SigningConfig};
use super::error::{Problem, VerifyError};
use super::event::{AuditEvent, EventKind};
use super::log::AuditLog;
use super::record::{ChainFields, hash_line, to_hex};
use super::signer::Signer;
use super::verify::{VerifyOptions, VerifyReport, verify_with};

const KEY: [u8; 32] = [9; 32];

pub(super) fn signer() -> Arc<Signer> {
    Arc::new(Signer::new(SigningKey::from_bytes(&KEY)))
}

pub(super) fn keys() -> Keys {
    Keys::one(SigningKey::from_bytes(&KEY).verifying_key())
}

pub(super) fn strict() -> VerifyOptions {
    VerifyOptions {
        keys: keys(),
        require_signed: true,
        ..VerifyOptions::default()
    }
}

pub(super) fn lenient() -> VerifyOptions {
    VerifyOptions {
        keys: keys(),
        require_signed: false,
        ..VerifyOptions::default()
    }
}

pub(super) fn config(every: u64) -> AuditConfig {
    AuditConfig {
        signing: SigningConfig {
            checkpoint_records: every,
            checkpoint_interval: Duration::from_secs(3600),
            ..SigningConfig::default()
        },
        ..AuditConfig::default()
    }
}

pub(super) fn event(i: u64) -> AuditEvent {
    let mut event = AuditEvent::now(EventKind::Decision);
    event.request_id = format!("req-{i}").into();
    event.action = "llm:chat".into();
    event.decision = "allow".into();
    event
}

/// A closed signed log of `n` appended records (plus its checkpoints).
pub(super) async fn signed_log(n: u64, cfg: &AuditConfig) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open_signed(&dir, cfg, signer(), Vec::new()).unwrap();
    for i in 1..=n {
        log.append(event(i)).await.unwrap();
    }
    log.close().await.unwrap();
    (tmp, dir)
}

pub(super) fn segment(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("audit-{n:06}.jsonl"))
}

pub(super) fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(super) fn write_lines(path: &Path, lines: &[String]) {
    fs::write(path, lines.join("\n") + "\n").unwrap();
}

pub(super) fn kind(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["kind"].as_str().unwrap().to_owned()
}

/// Recomputes every `prev` from line `from` on, as someone who rewrites the file would, and
/// moves `head.json` along.
pub(super) fn rechain(dir: &Path, path: &Path, lines: &mut [String], from: usize) {
    for i in from.max(1)..lines.len() {
        let mut v: Value = serde_json::from_str(&lines[i]).unwrap();
        v["prev"] = Value::String(to_hex(&hash_line(lines[i - 1].as_bytes())));
        lines[i] = serde_json::to_string(&v).unwrap();
    }
    write_lines(path, lines);
    let last = lines.last().unwrap();
    let seq = ChainFields::parse(last.as_bytes()).unwrap().seq;
    anchor::write(dir, seq, &hash_line(last.as_bytes()), None).unwrap();
}

pub(super) fn tampered(result: Result<VerifyReport, VerifyError>) -> (u64, Problem) {
    match result {
        Err(VerifyError::Tampered { at, problem }) => (at.seq.unwrap_or(0), problem),
        other => panic!("expected a tampered log, got {other:?}"),
    }
}

#[tokio::test]
async fn checkpoints_cover_every_record_by_count_and_at_close() {
    let (_tmp, dir) = signed_log(25, &config(10)).await;
    let report = verify_with(&dir, &strict()).unwrap();
    assert!(report.unsigned.is_empty(), "{report}");
    assert!(report.signatures_checked);
    // After records 1-10, 12-21, and at close after 23-27.
    assert_eq!(report.checkpoints, 3, "{report}");
    assert_eq!(report.records, 28);
    let all = lines(&segment(&dir, 1));
    assert_eq!(kind(&all[10]), "checkpoint");
    assert_eq!(kind(all.last().unwrap()), "checkpoint");
    let cp: AuditEvent = serde_json::from_str(&all[10]).unwrap();
    let cp = Checkpoint::of(&cp).unwrap();
    assert_eq!((cp.from, cp.to), (1, 10));
    assert_eq!(cp.hash.0, hash_line(all[9].as_bytes()));
}

#[tokio::test]
async fn a_checkpoint_follows_within_the_interval_while_the_log_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let mut cfg = config(1000);
    cfg.signing.checkpoint_interval = Duration::from_millis(50);
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    for i in 1..=3 {
        log.append(event(i)).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let all = lines(&segment(&dir, 1));
        let text: String = all.concat();
        if text.contains("\"kind\":\"checkpoint\"") {
            // It covers what was written before it (all three, unless the machine was slow
            // enough for the interval to pass between two appends).
            let at = all.iter().position(|l| kind(l) == "checkpoint").unwrap();
            let cp: Value = serde_json::from_str(&all[at]).unwrap();
            assert!(at >= 1, "{all:#?}");
            assert_eq!(cp["detail"]["from"], 1, "{all:#?}");
            assert_eq!(cp["detail"]["to"], at as u64, "{all:#?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log.close().await.unwrap();
    let verified = verify_with(&dir, &strict());
    assert!(verified.is_ok(), "{verified:?}");
}

#[tokio::test]
async fn every_segment_ends_with_a_checkpoint_and_reopening_continues_signed() {
    let mut cfg = config(1000);
    cfg.segment_bytes = 1200;
    let (_tmp, dir) = signed_log(30, &cfg).await;
    let report = verify_with(&dir, &strict()).unwrap();
    assert!(report.segments >= 4, "{report}");
    for n in 1..=report.segments {
        let all = lines(&segment(&dir, n));
        assert_eq!(kind(all.last().unwrap()), "checkpoint", "segment {n}");
    }
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    log.append(event(31)).await.unwrap();
    log.close().await.unwrap();
    let again = verify_with(&dir, &strict()).unwrap();
    assert!(again.unsigned.is_empty(), "{again}");
}

#[tokio::test]
async fn a_record_appended_with_recomputed_hashes_is_unsigned() {
    let (_tmp, dir) = signed_log(5, &config(1000)).await;
    let path = segment(&dir, 1);
    let mut all = lines(&path);
    let last: Value = serde_json::from_str(all.last().unwrap()).unwrap();
    let seq = last["seq"].as_u64().unwrap() + 1;
    let mut forged: Value = serde_json::from_str(&all[0]).unwrap();
    forged["seq"] = seq.into();
    forged["request_id"] = "forged".into();
    all.push(serde_json::to_string(&forged).unwrap());
    let n = all.len();
    rechain(&dir, &path, &mut all, n - 1);

    let report = verify_with(&dir, &lenient()).unwrap();
    assert_eq!(report.unsigned, vec![(seq, seq)], "{report}");
    assert!(report.to_string().contains("unsigned"), "{report}");
    match verify_with(&dir, &strict()) {
        Err(VerifyError::Unsigned { unsigned, .. }) => assert_eq!(unsigned, vec![(seq, seq)]),
        other => panic!("expected unsigned records, got {other:?}"),
    }
}

#[tokio::test]
async fn a_record_forged_under_a_checkpoint_fails_even_with_every_hash_recomputed() {
    let (_tmp, dir) = signed_log(20, &config(10)).await;
    let path = segment(&dir, 1);
    let mut all = lines(&path);
    let mut edited: Value = serde_json::from_str(&all[4]).unwrap();
    edited["decision"] = "deny".into();
    all[4] = serde_json::to_string(&edited).unwrap();
    rechain(&dir, &path, &mut all, 5);
    let (seq, problem) = tampered(verify_with(&dir, &lenient()));
    assert_eq!(seq, 11, "the first checkpoint after the edit");
    assert_eq!(
        problem,
        Problem::Checkpoint(CheckpointProblem::Rewritten { from: 1, to: 10 })
    );
    assert_eq!(problem.kind(), "edited");
}

#[tokio::test]
async fn a_replaced_or_altered_checkpoint_is_forged() {
    let (_tmp, dir) = signed_log(10, &config(5)).await;
    let path = segment(&dir, 1);
    let original = lines(&path);
    assert_eq!(kind(&original[5]), "checkpoint");

    // Signed by another key, with the right chain facts.
    let mut all = original.clone();
    let other = Signer::new(SigningKey::from_bytes(&[1; 32]));
    let fields = ChainFields::parse(all[5].as_bytes()).unwrap();
    let mut replaced: Value = serde_json::from_str(&all[5]).unwrap();
    let mine = Checkpoint::event(&other, 1, 5, &fields.prev.0);
    replaced["detail"] = mine.detail.unwrap();
    replaced["time"] = serde_json::to_value(mine.time).unwrap();
    all[5] = serde_json::to_string(&replaced).unwrap();
    rechain(&dir, &path, &mut all, 6);
    let (seq, problem) = tampered(verify_with(&dir, &lenient()));
    assert_eq!(seq, 6);
    assert!(
        matches!(
            problem,
            Problem::Checkpoint(CheckpointProblem::UnknownKey(_))
        ),
        "{problem}"
    );

    // Its range widened: the signature no longer verifies.
    let mut all = original.clone();
    let mut widened: Value = serde_json::from_str(&all[5]).unwrap();
    widened["detail"]["from"] = 0.into();
    all[5] = serde_json::to_string(&widened).unwrap();
    rechain(&dir, &path, &mut all, 6);
    let (_, problem) = tampered(verify_with(&dir, &lenient()));
    assert!(
        matches!(
            problem,
            Problem::Checkpoint(CheckpointProblem::BadSignature(_))
        ),
        "{problem}"
    );
    assert_eq!(problem.kind(), "forged");
}

#[tokio::test]
async fn records_a_killed_writer_left_unsigned_stay_unsigned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let cfg = config(1000);
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    for i in 1..=4 {
        log.append(event(i)).await.unwrap();
    }
    // What a crash leaves: the files as they are now, without the close's checkpoint.
    let crashed = tmp.path().join("crashed");
    fs::create_dir(&crashed).unwrap();
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), crashed.join(entry.file_name())).unwrap();
    }
    log.close().await.unwrap();

    let log = AuditLog::open_signed(&crashed, &cfg, signer(), Vec::new()).unwrap();
    log.append(event(5)).await.unwrap();
    log.close().await.unwrap();
    let report = verify_with(&crashed, &lenient()).unwrap();
    assert_eq!(report.unsigned, vec![(1, 4)], "{report}");
    // Reported as what it is: the tail of a run that ended without its stop record.
    assert_eq!(report.crash_tails, vec![(1, 4)], "{report}");
    assert!(
        report.to_string().contains(
            "the tail of a run killed or crashed before its next checkpoint (its hash chain \
             holds, no signature covers it): seq 1 to 4"
        ),
        "{report}"
    );
    match verify_with(&crashed, &strict()) {
        Err(e @ VerifyError::Unsigned { .. }) => {
            assert!(
                e.to_string().contains("--accept-unsigned-crash-tail"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Accepted when asked, and only that.
    let accepting = VerifyOptions {
        accept_crash_tails: true,
        ..strict()
    };
    verify_with(&crashed, &accepting).expect("the crash tail is accepted");
}

#[tokio::test]
async fn records_added_after_a_clean_stop_are_no_crash_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let cfg = config(1000);
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    log.append(event(1)).await.unwrap();
    let mut stop = AuditEvent::now(EventKind::System);
    stop.detail = Some(serde_json::json!({"event": "stop"}));
    log.append(stop).await.unwrap();
    log.close().await.unwrap();
    // Someone appends a record with correct hashes while no Warden runs; Warden starts again.
    let path = segment(&dir, 1);
    let mut all = lines(&path);
    let last = all.len() - 1;
    let mut added: Value = serde_json::from_str(&all[0]).unwrap();
    added["seq"] = (ChainFields::parse(all[last].as_bytes()).unwrap().seq + 1).into();
    all.push(serde_json::to_string(&added).unwrap());
    rechain(&dir, &path, &mut all, last + 1);
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    log.append(event(2)).await.unwrap();
    log.close().await.unwrap();
    let accepting = VerifyOptions {
        accept_crash_tails: true,
        ..strict()
    };
    let report = verify_with(&dir, &lenient()).unwrap();
    assert_eq!(report.unsigned.len(), 1, "{report}");
    assert!(report.crash_tails.is_empty(), "{report}");
    assert!(matches!(
        verify_with(&dir, &accepting),
        Err(VerifyError::Unsigned { .. })
    ));
}

#[tokio::test]
async fn an_unsigned_log_reports_every_record_unsigned_and_require_signed_needs_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("audit");
    let log = AuditLog::open(&dir, &AuditConfig::default()).unwrap();
    log.append(event(1)).await.unwrap();
    log.close().await.unwrap();
    let report = verify_with(&dir, &lenient()).unwrap();
    assert_eq!(report.unsigned, vec![(1, 1)]);
    assert!(matches!(
        verify_with(
            &dir,
            &VerifyOptions {
                keys: Keys::default(),
                require_signed: true,
                ..VerifyOptions::default()
            }
        ),
        Err(VerifyError::NoKey)
    ));
}

#[tokio::test]
async fn the_writer_signs_queued_receipts_after_a_commit() {
    use super::receipt::{Receipt, verify};
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::open_signed(
        &tmp.path().join("audit"),
        &config(1000),
        signer(),
        Vec::new(),
    )
    .unwrap();
    let seq = log.append(event(1)).await.unwrap();
    // The request goes upstream with its receipt queued; the next commit's writer signs it.
    let pending = log.receipt(&Receipt::example(seq)).expect("a signed log");
    log.append(event(2)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !pending.is_signed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer signed the receipt after its next commit"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let receipt = pending.receipt().await.expect("the receipt");
    let verified = verify(&receipt, &keys()).unwrap();
    assert_eq!(verified.claims, Receipt::example(seq));
    log.close().await.unwrap();
}

/// An audit key rotation: the log is reopened with a new key and the old one in
/// `audit.signing.previous_keys`. The JWK Set the new signer publishes (what the admin
/// listener serves) verifies the whole log, checkpoints of both keys; the new key alone
/// does not.
#[tokio::test]
async fn after_a_key_rotation_the_published_keys_verify_checkpoints_of_both() {
    let cfg = config(1000);
    let (tmp, dir) = signed_log(5, &cfg).await;
    let retired = tmp.path().join("retired.pem");
    fs::write(
        &retired,
        crate::keys::public_pem(&SigningKey::from_bytes(&KEY).verifying_key()).unwrap(),
    )
    .unwrap();
    let rotated = SigningConfig {
        key_file: Some(tmp.path().join("new.pem")),
        previous_keys: vec![retired.into()],
        ..cfg.signing.clone()
    };
    let new = Arc::new(Signer::load(&rotated, tmp.path(), None).unwrap());
    let log = AuditLog::open_signed(&dir, &cfg, Arc::clone(&new), Vec::new()).unwrap();
    log.append(event(6)).await.unwrap();
    log.close().await.unwrap();

    let published = crate::keys::public_from_jwks(&new.jwks(), "the served JWK Set").unwrap();
    assert_eq!(published.len(), 2, "{}", new.jwks());
    let report = verify_with(
        &dir,
        &VerifyOptions {
            keys: Keys::new(published),
            ..strict()
        },
    )
    .unwrap();
    assert!(report.unsigned.is_empty(), "{report}");

    let new_only = new.jwks()["keys"][0].clone();
    let new_only = serde_json::json!({ "keys": [new_only] });
    let only = crate::keys::public_from_jwks(&new_only, "the new key").unwrap();
    let err = verify_with(
        &dir,
        &VerifyOptions {
            keys: Keys::new(only),
            ..strict()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not among the keys given"),
        "{err}"
    );
}

/// A rotation is never undone: once a newer key signed the log's checkpoints, a checkpoint
/// signed by the retired key (whose holder could have written it) fails verification, naming
/// its seq, the retired key and the key that took over.
#[tokio::test]
async fn a_checkpoint_of_a_retired_key_after_the_newer_keys_first_is_refused() {
    let cfg = config(1000);
    let (tmp, dir) = signed_log(2, &cfg).await;
    let new_key = SigningKey::from_bytes(&[4; 32]);
    let new = Arc::new(Signer::new(new_key.clone()));
    let log = AuditLog::open_signed(&dir, &cfg, Arc::clone(&new), Vec::new()).unwrap();
    log.append(event(3)).await.unwrap();
    log.close().await.unwrap();
    let both = || VerifyOptions {
        keys: Keys::new(vec![
            (new.key_id().to_owned(), new_key.verifying_key()),
            (
                signer().key_id().to_owned(),
                SigningKey::from_bytes(&KEY).verifying_key(),
            ),
        ]),
        ..lenient()
    };
    verify_with(&dir, &both()).expect("old key, then the new one: a rotation");
    let first_new = lines(&segment(&dir, 1))
        .iter()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["kind"] == "checkpoint" && v["detail"]["key_id"] == new.key_id())
                .then(|| v["seq"].as_u64().unwrap())
        })
        .next()
        .unwrap();

    // The old key signs again.
    let log = AuditLog::open_signed(&dir, &cfg, signer(), Vec::new()).unwrap();
    log.append(event(4)).await.unwrap();
    log.close().await.unwrap();
    let (seq, problem) = tampered(verify_with(&dir, &both()));
    assert!(seq > first_new);
    assert_eq!(
        problem,
        Problem::Checkpoint(CheckpointProblem::RetiredKey(Box::new(
            super::checkpoint::RetiredSigner {
                kid: signer().key_id().to_owned(),
                newer: new.key_id().to_owned(),
                since: first_new,
            }
        )))
    );
    assert_eq!(problem.kind(), "forged");
    let shown = problem.to_string();
    assert!(
        shown.contains(signer().key_id()) && shown.contains(new.key_id()),
        "{shown}"
    );
    drop(tmp);
}

/// `audit.signing.previous_keys`: the signing key itself, or a key listed twice, is refused
/// naming the entry and the key; a retired key past its `until` is no longer published.
#[test]
fn previous_audit_keys_are_checked_and_leave_the_jwk_set_at_their_until() {
    let tmp = tempfile::tempdir().unwrap();
    let retired = tmp.path().join("retired.pem");
    let old = SigningKey::from_bytes(&KEY);
    fs::write(
        &retired,
        crate::keys::public_pem(&old.verifying_key()).unwrap(),
    )
    .unwrap();
    let old_kid = crate::keys::thumbprint(&old.verifying_key().to_bytes());
    let signing = |previous: Vec<crate::keys::PreviousKey>| SigningConfig {
        key_file: Some(tmp.path().join("new.pem")),
        previous_keys: previous,
        ..SigningConfig::default()
    };
    let entry = |until| crate::keys::PreviousKey {
        path: retired.clone(),
        until,
    };
    let err = Signer::load(&signing(vec![entry(None), entry(None)]), tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("audit.signing.previous_keys[1]") && err.contains(&old_kid),
        "{err}"
    );
    let own = SigningConfig {
        key_file: Some(retired.clone()),
        ..signing(vec![])
    };
    // The retired file holds only a public key: sign with the private one it came from.
    let private = tmp.path().join("old.pem");
    fs::write(
        &private,
        ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(
            &old,
            ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF,
        )
        .unwrap()
        .as_bytes(),
    )
    .unwrap();
    let own = SigningConfig {
        key_file: Some(private),
        previous_keys: vec![entry(None)],
        ..own
    };
    let err = Signer::load(&own, tmp.path(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("audit.signing.previous_keys[0]") && err.contains("signing key itself"),
        "{err}"
    );

    let now = std::time::SystemTime::now();
    let kids = |until| {
        let signer = Signer::load(&signing(vec![entry(Some(until))]), tmp.path(), None).unwrap();
        crate::keys::public_from_jwks(&signer.jwks(), "jwks")
            .unwrap()
            .into_iter()
            .map(|(kid, _)| kid)
            .collect::<Vec<_>>()
    };
    assert!(kids(now + Duration::from_secs(3600)).contains(&old_kid));
    assert!(!kids(now - Duration::from_secs(1)).contains(&old_kid));
}
