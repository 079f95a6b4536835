//! Tamper evidence end to end: every decided response carries a signed receipt that an
//! independent JWS library (PyJWT) verifies with the key Warden publishes, `warden receipt
//! verify` checks it against the log, and `warden audit verify --require-signed` accepts the
//! log Warden wrote and refuses one with a record added behind its last checkpoint.

use serde_json::Value;
use std::time::Duration;
use warden_e2e::stack::{FORBID_GPT41, Stack, openai_chat};
use warden_e2e::warden::run_bounded;

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

    // PyJWT, with the JWK Set the admin listener publishes.
    let jwks_url = s.warden.admin_url("/.well-known/warden-audit-keys.json");
    let args: Vec<&str> = receipts.iter().map(|(r, _)| r.as_str()).collect();
    let checked = warden_e2e::sdk::run("verify_receipt.py", &jwks_url, "-", &args)
        .await
        .unwrap();
    let checked = checked["receipts"].as_array().unwrap();
    for (i, (decision, (_, decision_id))) in ["allow", "deny"].iter().zip(&receipts).enumerate() {
        let claims = &checked[i]["claims"];
        assert_eq!(claims["decision"], *decision, "{checked:?}");
        assert_eq!(claims["decision_id"], decision_id.as_str());
        assert_eq!(checked[i]["header"]["typ"], "warden-receipt+jwt");
        assert!(
            claims["action_digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            "{claims}"
        );
    }
    assert_eq!(checked[1]["claims"]["policies"][0], "e2e-forbid-gpt41");

    // An altered receipt fails in PyJWT as in Warden.
    let (good, _) = &receipts[0];
    let parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value = checked[0]["claims"].clone();
    claims["decision"] = "deny".into();
    use base64::Engine;
    let payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes());
    let altered = format!("{}.{payload}.{}", parts[0], parts[2]);
    let refused = warden_e2e::sdk::run("verify_receipt.py", &jwks_url, "-", &[altered.as_str()])
        .await
        .unwrap();
    assert!(
        refused["receipts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Signature")),
        "{refused}"
    );

    let audit = s.warden.audit_dir();
    let audit = audit.to_str().unwrap();
    let ok = warden_cli(
        &s,
        &[
            "receipt", "verify", good, "--jwks", &jwks_url, "--audit", audit,
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && stdout.contains("decision record at seq"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = warden_cli(&s, &["receipt", "verify", &altered, "--jwks", &jwks_url]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID"));

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
