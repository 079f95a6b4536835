//! The audit log Warden writes is a hash chain `warden audit verify` accepts, and any edit of
//! a record makes verification fail, naming the first bad record.

use serde_json::Value;
use std::time::Duration;
use warden_e2e::stack::{AGENT, FORBID_GPT41, Stack, chat, openai_chat};
use warden_e2e::warden::run_bounded;

#[tokio::test]
async fn audit_verify_passes_on_the_produced_log_and_fails_after_an_edit() {
    let mut s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    for model in ["gpt-4o-mini", "gpt-4.1", "gpt-4o-mini"] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(model, false))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let _ = response.text().await.unwrap();
    }
    let unauthenticated = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    s.audit("rejected", |_| true).await.unwrap();
    s.warden.signal(libc::SIGTERM).unwrap();
    s.warden.wait_exit(Duration::from_secs(15)).await.unwrap();

    let records = s.warden.audit_records();
    let kinds: Vec<&str> = records.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert!(
        kinds.iter().filter(|k| **k == "decision").count() >= 3,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"outcome") && kinds.contains(&"rejected"),
        "{kinds:?}"
    );
    let seqs: Vec<u64> = records.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq counts up from 1 without gaps"
    );
    assert!(
        records
            .iter()
            .all(|r| r["prev"].as_str().is_some_and(|p| p.len() == 64))
    );

    let dir = s.warden.audit_dir();
    let mut verify = s.warden.setup.command();
    verify.args(["audit", "verify"]).arg(&dir);
    let ok = run_bounded(verify, Duration::from_secs(30)).await.unwrap();
    assert!(
        ok.status.success(),
        "untouched log verifies: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Turn the first allow into a deny, as someone hiding a call would.
    let file = dir.join("audit-000001.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let target = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .unwrap();
    let seq = target["seq"].as_u64().unwrap();
    let edited: Vec<String> = text
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            if record["seq"] == seq {
                line.replacen("\"decision\":\"allow\"", "\"decision\":\"deny\"", 1)
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert_ne!(edited.join("\n") + "\n", text, "the edit changed the file");
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();

    let mut verify = s.warden.setup.command();
    verify.args(["audit", "verify"]).arg(&dir);
    let bad = run_bounded(verify, Duration::from_secs(30)).await.unwrap();
    assert!(!bad.status.success(), "an edited log must not verify");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&bad.stdout),
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(report.contains("audit-000001.jsonl"), "{report}");
    assert!(
        report.contains(&format!("seq {seq})")),
        "names the edited record (seq {seq}): {report}"
    );
}

/// The SHA-256 of a record's line, as `prev` and `head.json` write it.
fn line_hash(line: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(line.as_bytes()))
}

#[tokio::test]
async fn a_log_cut_back_with_its_head_rewritten_warns_and_fails_against_a_head_kept_elsewhere() {
    let mut s = Stack::start().await.unwrap();
    let (status, body) = chat(&s.warden, &s.warden.token(AGENT).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    s.audit("outcome", |_| true).await.unwrap();
    s.warden.signal(libc::SIGTERM).unwrap();
    s.warden.wait_exit(Duration::from_secs(15)).await.unwrap();
    let dir = s.warden.audit_dir();
    let verify = |extra: &[&str]| {
        let mut cmd = s.warden.setup.command();
        cmd.args(["audit", "verify"]).arg(&dir).args(extra);
        run_bounded(cmd, Duration::from_secs(30))
    };
    let whole = verify(&[]).await.unwrap();
    let said = String::from_utf8_lossy(&whole.stdout).into_owned();
    assert!(whole.status.success(), "{said}");
    assert!(
        said.contains("the last run ended with its stop record"),
        "{said}"
    );

    // Cut the log back to the record before Warden's stop record, and rewrite head.json to
    // match, as whoever holds the files can.
    let file = dir.join("audit-000001.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.last().unwrap();
    let last_seq = serde_json::from_str::<Value>(last).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let kept_elsewhere = format!("{last_seq}:{}", line_hash(last));
    let stop = lines
        .iter()
        .rposition(|l| {
            let r: Value = serde_json::from_str(l).unwrap();
            r["kind"] == "system" && r["detail"]["event"] == "stop"
        })
        .expect("a stopped Warden wrote its stop record");
    let kept = &lines[..stop];
    std::fs::write(&file, kept.join("\n") + "\n").unwrap();
    let new_last = kept.last().unwrap();
    let new_seq = serde_json::from_str::<Value>(new_last).unwrap()["seq"].clone();
    std::fs::write(
        dir.join("head.json"),
        serde_json::json!({"seq": new_seq, "hash": line_hash(new_last)}).to_string(),
    )
    .unwrap();

    let cut = verify(&[]).await.unwrap();
    let said = String::from_utf8_lossy(&cut.stdout).into_owned();
    assert!(cut.status.success(), "a warning, not a failure: {said}");
    assert!(
        said.contains("WARNING: the last run (started at seq ")
            && said.contains("has no stop record"),
        "{said}"
    );

    let against = verify(&["--head", &kept_elsewhere]).await.unwrap();
    let said = String::from_utf8_lossy(&against.stderr).into_owned();
    assert_eq!(against.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "the log was cut back: the head given with --head names seq {last_seq}"
        )),
        "{said}"
    );
}

/// Lines of JSON a `warden audit ...` command printed.
async fn audit_cli(s: &Stack, args: &[&str]) -> Vec<Value> {
    let mut cmd = s.warden.setup.command();
    cmd.arg("audit").args(args);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    assert!(
        out.status.success(),
        "warden audit {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn audit_tail_export_and_search_read_the_log_in_siem_shapes() {
    use warden_e2e::stack::AGENT;
    let s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    for model in ["gpt-4o-mini", "gpt-4.1"] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(model, false))
            .await
            .unwrap();
        let _ = response.text().await.unwrap();
    }
    s.audit("decision", |r| r["decision"] == "deny")
        .await
        .unwrap();
    let dir = s.warden.audit_dir();
    let dir = dir.to_str().unwrap();

    let denied = audit_cli(&s, &["search", dir, "--decision", "deny", "--agent", AGENT]).await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["resource"], "Model::\"openai/gpt-4.1\"");
    assert!(
        audit_cli(&s, &["search", dir, "--agent", "nobody"])
            .await
            .is_empty()
    );
    let chats = audit_cli(
        &s,
        &[
            "search",
            dir,
            "--action",
            "llm:chat",
            "--decision",
            "decision",
        ],
    )
    .await;
    assert_eq!(chats.len(), 2, "{chats:?}");

    // ECS: the fields a SIEM indexes, with the line's hash as a stable event id.
    let ecs = audit_cli(
        &s,
        &["export", dir, "--since", "2020-01-01", "--format", "ecs"],
    )
    .await;
    let deny = ecs
        .iter()
        .find(|d| d["event"]["type"] == serde_json::json!(["denied"]))
        .expect("the deny in ECS");
    assert_eq!(deny["event"]["outcome"], "failure");
    assert_eq!(deny["user"]["id"], AGENT);
    assert_eq!(deny["rule"]["id"], serde_json::json!(["e2e-forbid-gpt41"]));
    assert_eq!(deny["event"]["id"].as_str().unwrap().len(), 64);
    assert!(deny["@timestamp"].is_string());
    assert!(
        audit_cli(&s, &["export", dir, "--until", "2020-01-01"])
            .await
            .is_empty(),
        "nothing before 2020"
    );
    let ocsf = audit_cli(&s, &["export", dir, "--format", "ocsf"]).await;
    assert!(ocsf.iter().all(|d| d["class_uid"] == 6003), "{ocsf:?}");

    // tail: the last record; with --follow, records written later.
    let last = audit_cli(&s, &["tail", dir, "-n", "1"]).await;
    assert_eq!(last.len(), 1);
    let mut follow = s.warden.setup.command();
    follow
        .args(["audit", "tail", "-n", "0", "--follow", dir])
        .stdout(std::process::Stdio::piped());
    let mut child = follow.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    use tokio::io::AsyncBufReadExt as _;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    // The follower starts at the end of the log whenever its process gets there, so a
    // request made before that is (rightly) not shown: keep making requests until one of
    // their decision records arrives. The log's own records (a signed checkpoint written on
    // its timer) may come first.
    let record = tokio::time::timeout(Duration::from_secs(10), async {
        let mut ticker = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let line = line.unwrap().expect("tail --follow ended");
                    let record: Value = serde_json::from_str(&line).unwrap();
                    if record["kind"] == "decision" {
                        return record;
                    }
                }
                _ = ticker.tick() => {
                    let response = s
                        .post("/openai/chat/completions", &openai_chat("gpt-4.1", false))
                        .await
                        .unwrap();
                    let _ = response.text().await.unwrap();
                }
            }
        }
    })
    .await
    .expect("the decision record within 10 s");
    assert_eq!(record["principal"]["id"], AGENT);
    let _ = child.kill().await;
}

/// `warden audit verify DIR --require-signed --key KEY --live-window 5s`: (success, what it
/// printed on stdout and stderr).
async fn verify_live(s: &Stack, dir: &std::path::Path) -> (bool, String) {
    let mut cmd = s.warden.setup.command();
    cmd.args(["audit", "verify"])
        .arg(dir)
        .args(["--require-signed", "--live-window", "5s", "--key"])
        .arg(s.warden.setup.data_dir.join("keys/audit-signing.pem"));
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A Warden signing every second, idle after one request once it has heartbeated (a
/// checkpoint covering the checkpoint before it).
async fn idle_signing_stack() -> Stack {
    let s = Stack::start_with(|b| {
        b.set(
            "/audit/signing/checkpoint_interval",
            serde_json::json!("1s"),
        )
    })
    .await
    .unwrap();
    let (status, body) = chat(&s.warden, &s.warden.token(AGENT).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let heartbeat = |r: &Value| {
        r["kind"] == "checkpoint"
            && r["detail"]["from"] == r["detail"]["to"]
            && r["detail"]["to"].as_u64().map(|to| to + 1) == r["seq"].as_u64()
    };
    s.warden
        .wait_for_audit(Duration::from_secs(15), heartbeat)
        .await
        .unwrap();
    s
}

/// A copy of the live log in `live` cut back to its first checkpoint, `head.json` rewritten
/// to match, its lock held by this process as a running Warden would hold it: the copy, the
/// lock, and the line it ends with.
fn cut_back_copy(live: &std::path::Path) -> (tempfile::TempDir, std::fs::File, String) {
    let copy = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(live.join("audit-000001.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .iter()
        .position(|l| l.contains(r#""kind":"checkpoint""#))
        .expect("a checkpoint");
    let kept = &lines[..=first];
    std::fs::write(
        copy.path().join("audit-000001.jsonl"),
        kept.join("\n") + "\n",
    )
    .unwrap();
    let cut_seq = serde_json::from_str::<Value>(kept[first]).unwrap()["seq"].clone();
    std::fs::write(
        copy.path().join("head.json"),
        serde_json::json!({"seq": cut_seq, "hash": line_hash(kept[first])}).to_string(),
    )
    .unwrap();
    let lock = std::fs::File::create(copy.path().join("audit.lock")).unwrap();
    lock.try_lock().unwrap();
    (copy, lock, kept[first].to_owned())
}

#[tokio::test]
async fn a_live_logs_copy_cut_back_to_an_old_checkpoint_under_a_held_lock_is_refused() {
    let s = idle_signing_stack().await;
    let live = s.warden.audit_dir();
    let (copy, _lock, cut) = cut_back_copy(&live);
    let cut_seq = serde_json::from_str::<Value>(&cut).unwrap()["seq"].clone();
    // Let the cut-to checkpoint grow older than the window (5 s) the live log keeps.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let (ok, said) = verify_live(&s, copy.path()).await;
    assert!(!ok, "a cut-back copy must not verify as live: {said}");
    assert!(
        said.contains(&format!(
            "last signature (the checkpoint at seq {cut_seq}) is "
        )) && said.contains("more than --live-window (5s)")
            && said.contains("may have been cut back"),
        "{said}"
    );

    // The real live log, idle as long, passes: its last signature is a second old. A verify
    // racing a write may see the last line torn (docs/audit.md#verify): at most twice.
    let mut tries = Vec::new();
    for _ in 0..3 {
        let (ok, said) = verify_live(&s, &live).await;
        if ok {
            assert!(
                said.contains("live: a process holds the log's lock"),
                "{said}"
            );
            assert!(!said.contains("WARNING"), "{said}");
            return;
        }
        assert!(said.contains("the last line is incomplete"), "{said}");
        tries.push(said);
    }
    panic!("the live log never verified: {tries:?}");
}

/// `time` as a record writes it: RFC 3339 UTC with milliseconds.
fn rfc3339_millis(time: std::time::SystemTime) -> String {
    let since = time.duration_since(std::time::UNIX_EPOCH).unwrap();
    let (days, secs) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

#[tokio::test]
async fn a_live_logs_copy_cut_back_and_given_a_fresh_start_record_is_refused() {
    let s = idle_signing_stack().await;
    let live = s.warden.audit_dir();
    let (copy, _lock, cut) = cut_back_copy(&live);
    tokio::time::sleep(Duration::from_secs(6)).await;
    // After the cut, a start record of its own, chained to it and dated now (as it would be
    // again before each verify): the live run's "last moments", not signed yet.
    let start = std::fs::read_to_string(live.join("audit-000001.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains(r#""event":"start""#))
        .expect("Warden's start record")
        .to_owned();
    let cut_seq = serde_json::from_str::<Value>(&cut).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let rest = &start[start.find(r#""kind":"#).unwrap()..];
    let made_up = format!(
        r#"{{"seq":{},"prev":"{}","time":"{}",{rest}"#,
        cut_seq + 1,
        line_hash(&cut),
        rfc3339_millis(std::time::SystemTime::now())
    );
    let segment = copy.path().join("audit-000001.jsonl");
    let mut text = std::fs::read_to_string(&segment).unwrap();
    text.push_str(&made_up);
    text.push('\n');
    std::fs::write(&segment, text).unwrap();
    std::fs::write(
        copy.path().join("head.json"),
        serde_json::json!({"seq": cut_seq + 1, "hash": line_hash(&made_up)}).to_string(),
    )
    .unwrap();

    let (ok, said) = verify_live(&s, copy.path()).await;
    assert!(
        !ok,
        "a made-up start record must not pass a live verify: {said}"
    );
    assert!(
        said.contains(&format!(
            "the last run's start record (seq {}) is not signed",
            cut_seq + 1
        )) && said.contains(&format!("the checkpoint at seq {cut_seq}"))
            && said.contains("more than --live-window (5s)"),
        "{said}"
    );
}

/// An agent that closes its connection once its request is upstream, before the answer:
/// its decision is not left alone (the mark of a Warden that crashed), an outcome record
/// says it went away while the upstream had the request.
#[tokio::test]
async fn an_agent_gone_while_the_upstream_answers_leaves_an_outcome_record() {
    let s = Stack::start().await.unwrap();
    // The answer never comes while the agent is there.
    s.fake.set_response_delay(Duration::from_secs(600));
    let chat = openai_chat("gpt-4o-mini", false);
    let agent = s.call_to_leave("/openai/chat/completions", &chat).await;
    let seen = s.fake.wait_for_requests(1, Duration::from_secs(10)).await;
    assert_eq!(seen.len(), 1, "the request reached the upstream");
    drop(agent);

    let decision = s.audit("decision", |_| true).await.unwrap();
    assert_eq!(decision["decision"], "allow");
    let outcome = s
        .audit("outcome", |r| r["request_id"] == decision["request_id"])
        .await
        .unwrap();
    assert_eq!(outcome["decision_id"], decision["decision_id"]);
    assert_eq!(outcome["principal"]["id"], AGENT);
    let error = outcome["outcome"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("went away"), "{outcome}");
    assert!(
        outcome["outcome"].get("status").is_none(),
        "no answer reached the agent: {outcome}"
    );
}

/// A look-alike agent id (`сi-bot`, its first letter the Cyrillic `с`) is served, not
/// refused, and its decision record notes that it mixes scripts; the Latin `ci-bot`'s does not.
#[tokio::test]
async fn a_look_alike_agent_id_is_noted_in_its_decision_record_not_refused() {
    let mut s = Stack::start().await.unwrap();
    for (agent, findings) in [
        (
            "\u{441}i-bot",
            serde_json::json!([{"detector": "confusable_identifier",
                                "location": "principal.id: Latin and Cyrillic letters"}]),
        ),
        ("ci-bot", Value::Null),
    ] {
        s.token = s.warden.token(agent).await.unwrap();
        let response = s
            .post(
                "/openai/chat/completions",
                &openai_chat("gpt-4o-mini", false),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{agent}");
        let _ = response.text().await.unwrap();
        let decision = s
            .warden
            .wait_for_audit(Duration::from_secs(10), |r| {
                r["kind"] == "decision" && r["principal"]["id"] == agent
            })
            .await
            .unwrap();
        assert_eq!(decision["decision"], "allow", "{decision}");
        assert_eq!(decision["findings"], findings, "{decision}");
    }
}

/// Sets the soft `RLIMIT_FSIZE` of `warden`'s process (its hard limit stays as it is): every
/// write at or past `bytes` of any file then fails (`EFBIG`, and `SIGXFSZ`), as a full disk
/// fails the next write, without a mount. Returns the soft limit it replaced.
fn limit_file_size(warden: &warden_e2e::warden::Warden, bytes: libc::rlim_t) -> libc::rlim_t {
    let pid = libc::pid_t::try_from(warden.pid().expect("warden runs")).unwrap();
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: prlimit(2) reads into `old`, a live rlimit; no other memory is touched.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: bytes.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: prlimit(2) reads `new`, a live rlimit, for a process this test spawned.
    let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &new, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

/// Bytes of the audit segment `dir/name` up to its zero-filled reserved space.
fn segment_data_len(dir: &std::path::Path, name: &str) -> u64 {
    let bytes = std::fs::read(dir.join(name)).unwrap();
    bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len()) as u64
}

#[tokio::test]
async fn an_audit_log_that_cannot_be_written_refuses_requests_until_it_can_again() {
    let mut s = Stack::start().await.unwrap();
    let (status, _) = chat(&s.warden, &s.token).await;
    assert_eq!(status, 200);
    s.audit("outcome", |_| true).await.unwrap();
    assert_eq!(s.fake.requests().len(), 1);

    // From here on, no write reaches past the log's current end (fail_closed is the default).
    let dir = s.warden.audit_dir();
    let end = segment_data_len(&dir, "audit-000001.jsonl");
    let unlimited = limit_file_size(&s.warden, end);
    let refused = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");
    assert_eq!(
        s.fake.requests().len(),
        1,
        "a request whose decision could not be recorded reached the upstream"
    );
    let ready = s
        .warden
        .http()
        .get(s.warden.admin_url("/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        503,
        "not ready while the log cannot be written"
    );
    assert_eq!(
        segment_data_len(&dir, "audit-000001.jsonl"),
        end,
        "nothing reached the log"
    );

    // Writable again: the writer's retry (every second) makes Warden ready, and requests go
    // through. Warden did not die of the failed writes: wait_ready fails if it exited.
    limit_file_size(&s.warden, unlimited);
    s.warden.wait_ready(Duration::from_secs(15)).await.unwrap();
    let (status, _) = chat(&s.warden, &s.token).await;
    assert_eq!(status, 200);
    assert_eq!(s.fake.requests().len(), 2);
    s.warden.signal(libc::SIGTERM).unwrap();
    s.warden.wait_exit(Duration::from_secs(15)).await.unwrap();

    let records = s.warden.audit_records();
    let recovered: Vec<&Value> = records
        .iter()
        .filter(|r| r["detail"]["event"] == "audit_recovered")
        .collect();
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let outcomes = records.iter().filter(|r| r["kind"] == "outcome").count();
    assert_eq!(outcomes, 2, "the two forwarded requests' outcomes");
    let detail = &recovered[0]["detail"];
    assert!(
        detail["failed_records"].as_u64() >= Some(1),
        "the refused request's decision record: {detail}"
    );
    let mut verify = s.warden.setup.command();
    verify.args(["audit", "verify"]).arg(&dir);
    let out = run_bounded(verify, Duration::from_secs(30)).await.unwrap();
    assert!(
        out.status.success(),
        "the log verifies after the outage: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
