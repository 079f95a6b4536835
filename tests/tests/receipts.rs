//! Tamper evidence end to end: every decided response carries a receipt (its batch's signed
//! head, its claims, their inclusion proof) that a third party verifies with only the key
//! Warden publishes and docs/audit.md (`tests/sdk/verify_receipt.py`: hashlib and
//! cryptography, nothing of Warden's), concurrent requests share a signed head, `warden
//! receipt verify` checks each against the log, and `warden audit verify --require-signed`
//! accepts the log Warden wrote and refuses one with a record added behind its last
//! checkpoint.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use warden_e2e::stack::{FORBID_GPT41, Stack, openai_chat};
use warden_e2e::warden::run_bounded;

const CHAT: &str = "/openai/chat/completions";

async fn warden_cli(s: &Stack, args: &[&str]) -> std::process::Output {
    let mut cmd = s.warden.setup.command();
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(30)).await.unwrap()
}

#[tokio::test]
async fn receipts_verify_independently_and_match_the_signed_log() {
    let mut s = Stack::start_with(|b| b.policy("e2e-forbid.cedar", FORBID_GPT41))
        .await
        .unwrap();
    let mut receipts = Vec::new();
    for (model, status) in [("gpt-4o-mini", 200), ("gpt-4.1", 200)] {
        let response = s
            .post("/openai/chat/completions", &openai_chat(model, false))
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let receipt = response
            .headers()
            .get("x-warden-receipt")
            .unwrap_or_else(|| panic!("{model}: no x-warden-receipt"))
            .to_str()
            .unwrap()
            .to_owned();
        let decision_id = response.headers()["x-warden-decision-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let _ = response.text().await.unwrap();
        receipts.push((receipt, decision_id));
    }
    // A request refused before any decision has no receipt.
    let unauthenticated = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert!(unauthenticated.headers().get("x-warden-receipt").is_none());

    // A third party, with the JWK Set the admin listener publishes and the documented steps.
    let jwks_url = s.warden.admin_url("/.well-known/warden-audit-keys.json");
    let args: Vec<&str> = receipts.iter().map(|(r, _)| r.as_str()).collect();
    let checked = verify_elsewhere(&jwks_url, &args).await;
    for (i, (decision, (_, decision_id))) in ["allow", "deny"].iter().zip(&receipts).enumerate() {
        let claims = &checked[i]["claims"];
        assert_eq!(claims["decision"], *decision, "{checked:?}");
        assert_eq!(claims["decision_id"], decision_id.as_str());
        assert_eq!(checked[i]["header"]["typ"], "warden-receipt-batch+jwt");
        assert!(
            claims["action_digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            "{claims}"
        );
    }
    assert_eq!(checked[1]["claims"]["policies"][0], "e2e-forbid-gpt41");

    // Altered claims, or an altered head, fail for the third party as in Warden, each saying
    // what is wrong.
    let (good, _) = &receipts[0];
    let parts: Vec<&str> = good.split('~').collect();
    let mut claims: Value = checked[0]["claims"].clone();
    claims["decision"] = "deny".into();
    let altered = format!(
        "{}~{}~{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        parts[2]
    );
    let head: Vec<&str> = parts[0].split('.').collect();
    let mut batch = checked[0]["head"].clone();
    batch["size"] = 2.into();
    let forged_head = format!(
        "{}.{}.{}~{}~{}",
        head[0],
        URL_SAFE_NO_PAD.encode(batch.to_string()),
        head[2],
        parts[1],
        parts[2]
    );
    let refused = verify_elsewhere(&jwks_url, &[altered.as_str(), forged_head.as_str()]).await;
    assert!(
        refused[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("not in the signed batch")),
        "{refused:?}"
    );
    assert!(
        refused[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("InvalidSignature")),
        "{refused:?}"
    );
    for (bad, says) in [
        (&altered, "claims or the proof's path were altered"),
        (&forged_head, "the head was altered or forged"),
    ] {
        let out = warden_cli(&s, &["receipt", "verify", bad, "--jwks", &jwks_url]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("INVALID") && stderr.contains(says),
            "{stderr}"
        );
    }

    verify_against_log(&s, good, &jwks_url).await;
    let audit = s.warden.audit_dir();
    let audit = audit.to_str().unwrap();
    // The log Warden signed verifies with the published key once it stopped (its last
    // checkpoint is written at shutdown).
    let jwks = s
        .warden
        .http()
        .get(&jwks_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    s.warden.signal(libc::SIGTERM).unwrap();
    s.warden.wait_exit(Duration::from_secs(15)).await.unwrap();
    let jwks_file = s.warden.setup.data_dir.join("audit-keys.json");
    std::fs::write(&jwks_file, jwks).unwrap();
    let jwks_file = jwks_file.to_str().unwrap();
    let signed = warden_cli(
        &s,
        &[
            "audit",
            "verify",
            audit,
            "--jwks",
            jwks_file,
            "--require-signed",
        ],
    )
    .await;
    let report = String::from_utf8_lossy(&signed.stdout);
    assert!(
        signed.status.success() && report.contains("every record covered"),
        "{report}\n{}",
        String::from_utf8_lossy(&signed.stderr)
    );

    // A record added at the end with a correct hash: the chain holds, the signature does not
    // cover it.
    let file = s.warden.audit_dir().join("audit-000001.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let last = text.lines().last().unwrap();
    let last_value: Value = serde_json::from_str(last).unwrap();
    let seq = last_value["seq"].as_u64().unwrap() + 1;
    let prev = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(last.as_bytes()))
    };
    let forged = serde_json::json!({"seq": seq, "prev": prev, "time": last_value["time"],
        "kind": "decision", "principal": {"id": "nobody"}, "decision": "allow"});
    std::fs::write(&file, format!("{text}{forged}\n")).unwrap();
    let unsigned = warden_cli(
        &s,
        &[
            "audit",
            "verify",
            audit,
            "--jwks",
            jwks_file,
            "--require-signed",
        ],
    )
    .await;
    assert_eq!(unsigned.status.code(), Some(1));
    let report = String::from_utf8_lossy(&unsigned.stderr);
    assert!(
        report.contains(&format!("seq {seq}")) && report.contains("not covered"),
        "{report}"
    );
}

/// Concurrent requests share signed heads, and every receipt verifies (with Warden's CLI and
/// for a third party) and names its own decision record.
#[tokio::test]
async fn concurrent_receipts_share_a_signed_head_and_each_matches_its_record() {
    let s = Stack::start().await.unwrap();
    let jwks_url = s.warden.admin_url("/.well-known/warden-audit-keys.json");
    let mut receipts: Vec<(String, String)> = Vec::new();
    let mut shared = false;
    let body = openai_chat("gpt-4o-mini", false);
    // Bounded: batching shows in the first round on any machine seen so far.
    for _ in 0..5 {
        let round = futures_util::future::join_all((0..32).map(|_| async {
            let response = s.post(CHAT, &body).await.unwrap();
            assert_eq!(response.status(), 200);
            let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
            (header("x-warden-receipt"), header("x-warden-decision-id"))
        }))
        .await;
        receipts.extend(round);
        let heads: BTreeSet<&str> = receipts
            .iter()
            .map(|(r, _)| r.split('~').next().unwrap())
            .collect();
        if heads.len() < receipts.len() {
            shared = true;
            break;
        }
    }
    assert!(
        shared,
        "no two of {} concurrent receipts share a signed head",
        receipts.len()
    );

    let records: BTreeMap<u64, Value> = s
        .warden
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "decision")
        .map(|r| (r["seq"].as_u64().unwrap(), r))
        .collect();
    let args: Vec<&str> = receipts.iter().map(|(r, _)| r.as_str()).collect();
    let checked = verify_elsewhere(&jwks_url, &args).await;
    let mut roots: BTreeMap<String, u64> = BTreeMap::new();
    for (verified, (_, decision_id)) in checked.iter().zip(&receipts) {
        let claims = &verified["claims"];
        assert_eq!(claims["decision_id"], decision_id.as_str(), "{verified}");
        let record = &records[&claims["seq"].as_u64().unwrap()];
        assert_eq!(record["decision_id"], claims["decision_id"]);
        assert_eq!(record["action_digest"], claims["action_digest"]);
        *roots
            .entry(verified["head"]["root"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(roots.values().any(|&n| n >= 2), "{roots:?}");

    for (receipt, _) in &receipts {
        verify_against_log(&s, receipt, &jwks_url).await;
    }
}

/// `warden receipt verify` accepts `receipt` with the keys at `jwks_url`, and finds its
/// decision record in the stack's audit log the same.
async fn verify_against_log(s: &Stack, receipt: &str, jwks_url: &str) {
    let audit = s.warden.audit_dir();
    let args = [
        "receipt",
        "verify",
        receipt,
        "--jwks",
        jwks_url,
        "--audit",
        audit.to_str().unwrap(),
    ];
    let out = warden_cli(s, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("the decision record at seq"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `receipts` checked by `tests/sdk/verify_receipt.py` (hashlib and cryptography, following
/// docs/audit.md#receipts) with the JWK Set at `jwks_url`: one result each.
async fn verify_elsewhere(jwks_url: &str, receipts: &[&str]) -> Vec<Value> {
    let out = warden_e2e::sdk::run("verify_receipt.py", jwks_url, "-", receipts)
        .await
        .unwrap();
    let results = out["receipts"].as_array().unwrap().clone();
    assert_eq!(results.len(), receipts.len(), "{out}");
    results
}

/// In `process` durability a decision record is committed by the request's own thread
/// (docs/audit.md#durability), not by the writer thread that signs receipts after its
/// commits: every response still carries a receipt that verifies against the log.
#[tokio::test]
async fn receipts_of_records_committed_inline_verify_against_the_log() {
    let s = Stack::start_with(|b| b.set("/audit/durability", serde_json::json!("process")))
        .await
        .unwrap();
    let body = openai_chat("gpt-4o-mini", false);
    let responses = futures_util::future::join_all((0..8).map(|_| s.post(CHAT, &body))).await;
    let mut receipts = Vec::new();
    for response in responses {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        let receipt = response
            .headers()
            .get("x-warden-receipt")
            .expect("x-warden-receipt on a response decided in process durability")
            .to_str()
            .unwrap()
            .to_owned();
        let _ = response.text().await.unwrap();
        receipts.push(receipt);
    }
    let metrics = s.warden.metrics().await.unwrap();
    let inline = metrics
        .lines()
        .find_map(|l| l.strip_prefix("warden_audit_inline_commits_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no inline commit counter in /metrics:\n{metrics}"));
    assert!(
        inline >= 1.0,
        "the decisions were committed inline: {inline}"
    );
    let jwks_url = s.warden.admin_url("/.well-known/warden-audit-keys.json");
    for receipt in &receipts {
        verify_against_log(&s, receipt, &jwks_url).await;
    }
}
