//! The request path's stages as an agent meets them: each refusal names its stage's stable
//! code, a held decision explains itself, bodies arrive in bounded time, what a request says is
//! never repeated unbounded, a rotated key file takes effect without a reload.

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_e2e::stack::{Stack, openai_chat};
use warden_e2e::warden::OPENAI_KEY;

/// The stable code a refusal carries (`x-warden-error`).
fn code(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-warden-error")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn each_refusal_carries_its_stages_code_in_the_protocols_shape() {
    let s = Stack::start().await.unwrap();
    let http = s.warden.http();
    let no_route = http
        .post(s.warden.url("/nowhere/v1/chat/completions"))
        .bearer_auth(&s.token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (no_route.status().as_u16(), code(&no_route)),
        (404, "no_route".into())
    );
    let anonymous = http
        .post(s.warden.url("/anthropic/v1/messages"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (anonymous.status().as_u16(), code(&anonymous)),
        (401, "missing_credential".into())
    );
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    let wrong_method = http
        .get(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (wrong_method.status().as_u16(), code(&wrong_method)),
        (405, "method_not_allowed".into())
    );
    let broken = http
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (broken.status().as_u16(), code(&broken)),
        (400, "malformed_body".into())
    );
    assert!(s.fake.requests().is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rejected = s
            .warden
            .audit_records()
            .into_iter()
            .filter(|r| r["kind"] == "rejected")
            .count();
        if rejected == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "every refusal before a decision is recorded: {rejected} of 4"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_decision_that_needs_approval_is_held_with_an_explanation() {
    let needs = "@id(\"prod-needs-approval\")\n@approval(\"required\")\n@approvers(\"Group::\\\"sre\\\"\")\n@reason(\"production model\")\npermit (principal, action == Action::\"llm:chat\", resource);\n";
    let s = Stack::start_with(|b| {
        b.without_policy("e2e-permit-all.cedar")
            .policy("approval.cedar", needs)
            .set("/approvals", json!({"mode": "pending"}))
    })
    .await
    .unwrap();
    let response = s
        .post("/openai/chat/completions", &openai_chat("gpt-4o", false))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "a completion that explains itself");
    assert_eq!(response.headers()["x-warden-decision"], "approval_required");
    let id = response.headers()["x-warden-approval-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    let text = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.contains("production model: requires approval by Group::\"sre\"")
            && text.contains(&format!("Approval {id} is pending")),
        "{text}"
    );
    let decision = s.audit("decision", |_| true).await.unwrap();
    assert_eq!(decision["decision"], "approval_required");
    assert_eq!(decision["policies"], json!(["prod-needs-approval"]));
    assert_eq!(
        decision["reasons"],
        json!([
            "production model: requires approval by Group::\"sre\" (policy prod-needs-approval)"
        ]),
        "the record says who must approve"
    );
    assert!(s.fake.requests().is_empty(), "nothing went upstream");
}

#[tokio::test]
async fn a_body_trickled_in_is_cut_off_at_the_body_timeout() {
    let s = Stack::start_with(|b| b.set("/limits/body_timeout", json!("1s")))
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(s.warden.setup.proxy)
        .await
        .unwrap();
    let head = format!(
        "POST /openai/chat/completions HTTP/1.1\r\nhost: warden\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{",
        s.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // One byte a second would hold the connection for over 16 minutes.
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let mut buf = [0u8; 4096];
            let _ = stream.write_all(b" ").await;
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the connection was held past the body timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("x-warden-error: request_body_timeout"),
        "{answer}"
    );
    let record = s.audit("rejected", |_| true).await.unwrap();
    assert!(
        record["reasons"]
            .to_string()
            .contains("limits.body_timeout"),
        "{record}"
    );
}

#[tokio::test]
async fn a_huge_model_name_grows_neither_the_audit_log_nor_the_logs_nor_the_metrics() {
    let s = Stack::start_with(|b| b.set("/log/access", json!(true)))
        .await
        .unwrap();
    let before: u64 = audit_bytes(&s);
    let huge = "m".repeat(8 * 1024 * 1024);
    let response = s
        .post("/openai/chat/completions", &openai_chat(&huge, false))
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "an over-long identifier is refused");
    let body = response.text().await.unwrap();
    assert!(
        body.len() < 4096,
        "the error does not echo it: {} bytes",
        body.len()
    );
    s.audit("rejected", |_| true).await.unwrap();
    assert!(
        audit_bytes(&s) - before < 16 * 1024,
        "the audit log grew by {} bytes",
        audit_bytes(&s) - before
    );
    let output = s.warden.output();
    assert!(
        !output.contains("mmmmmmmmmmmmmmmm"),
        "no log line carries it"
    );
    assert!(s.fake.requests().is_empty());
}

#[tokio::test]
async fn token_counters_name_a_long_model_other() {
    let s = Stack::start().await.unwrap();
    let long = format!("model-{}", "x".repeat(100));
    let response = s
        .post("/openai/chat/completions", &openai_chat(&long, false))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "a 106-character name is a valid model name"
    );
    let _ = response.bytes().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = s.warden.metrics().await.unwrap();
        if metrics.contains("warden_tokens_total{") {
            assert!(metrics.contains(r#"model="other""#), "{metrics}");
            assert!(!metrics.contains(&long), "a long name is not a label");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no tokens were counted: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bytes of audit data on disk (the segments' content before their zero-filled tail).
fn audit_bytes(s: &Stack) -> u64 {
    std::fs::read_dir(s.warden.audit_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .map(|e| {
            let data = std::fs::read(e.path()).unwrap_or_default();
            data.iter().position(|&b| b == 0).unwrap_or(data.len()) as u64
        })
        .sum()
}

#[tokio::test]
async fn text_logs_carry_no_colour_codes_when_not_on_a_terminal() {
    let s = Stack::start_with(|b| {
        b.set("/log/format", json!("text"))
            .set("/log/access", json!(true))
    })
    .await
    .unwrap();
    let response = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !s.warden.output().contains("request_id") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = s.warden.output();
    assert!(output.contains("warden listening"), "{output}");
    assert!(
        !output.contains('\u{1b}'),
        "escape codes in piped logs: {output:?}"
    );
}

#[tokio::test]
async fn a_rotated_key_file_takes_effect_without_a_reload() {
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("openai-key");
    std::fs::write(&key_file, format!("{OPENAI_KEY}\n")).unwrap();
    let s = Stack::start_with(|b| {
        b.set(
            "/routes/0/credential",
            json!({ "file": key_file.to_str().unwrap() }),
        )
        .env("FAKE_OPENAI_KEY", "")
    })
    .await
    .unwrap();
    let body = openai_chat("gpt-4o-mini", false);
    assert_eq!(
        s.post("/openai/chat/completions", &body)
            .await
            .unwrap()
            .status(),
        200
    );
    let rotated = "sk-fake-openai-rotated-without-reload";
    std::fs::write(&key_file, rotated).unwrap();
    let expected = format!("Bearer {rotated}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = s.post("/openai/chat/completions", &body).await.unwrap();
        let sent = s.fake.last_request().unwrap();
        if sent.header("authorization") == Some(expected.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated key was never sent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !s.warden
            .audit_records()
            .iter()
            .any(|r| r["kind"] == "system" && r["detail"]["event"] == "reload"),
        "no reload happened"
    );
}

#[tokio::test]
async fn cloud_keys_and_card_numbers_in_a_prompt_are_findings_policy_can_refuse() {
    let no_secrets = "@id(\"no-credentials\")\n@reason(\"credentials stay in the vault\")\nforbid (principal, action, resource) when { context.findings.contains(\"aws_access_key\") || context.findings.contains(\"github_token\") };\n";
    let s = Stack::start_with(|b| b.policy("no-secrets.cedar", no_secrets))
        .await
        .unwrap();
    let github = format!("ghp_{}", "A1b2C3d4E5f6".repeat(3));
    for secret in ["AKIAIOSFODNN7EXAMPLE", github.as_str()] {
        let mut body = openai_chat("gpt-4o-mini", false);
        body["messages"][0]["content"] = json!(format!("use {secret} to upload the report"));
        let response = s.post("/openai/chat/completions", &body).await.unwrap();
        assert_eq!(response.headers()["x-warden-decision"], "deny", "{secret}");
    }
    // A card number is found and recorded; this policy lets it through.
    let mut body = openai_chat("gpt-4o-mini", false);
    body["messages"][0]["content"] = json!("charge 4111 1111 1111 1111 for the order");
    let response = s.post("/openai/chat/completions", &body).await.unwrap();
    assert!(response.headers().get("x-warden-decision").is_none());
    let decision = s
        .audit("decision", |d| d["decision"] == "allow")
        .await
        .unwrap();
    assert_eq!(
        decision["findings"][0]["detector"], "payment_card",
        "{decision}"
    );
    let records = serde_json::to_string(&s.warden.audit_records()).unwrap();
    for secret in [
        "AKIAIOSFODNN7EXAMPLE",
        github.as_str(),
        "4111 1111 1111 1111",
    ] {
        assert!(!records.contains(secret), "never the value: {secret}");
    }
    assert_eq!(s.fake.requests().len(), 1, "only the allowed one went out");
}

#[tokio::test]
async fn a_private_key_in_a_prompt_is_a_finding_policy_can_refuse() {
    let no_keys = "@id(\"no-private-keys\")\n@reason(\"never send a private key to a model\")\nforbid (principal, action, resource) when { context.findings.contains(\"private_key\") };\n";
    let s = Stack::start_with(|b| b.policy("no-keys.cedar", no_keys))
        .await
        .unwrap();
    let mut body = openai_chat("gpt-4o-mini", false);
    body["messages"][0]["content"] = json!(
        "deploy with this: -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
    );
    let response = s.post("/openai/chat/completions", &body).await.unwrap();
    assert_eq!(response.headers()["x-warden-decision"], "deny");
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("never send a private key to a model"),
        "{answer}"
    );
    let decision = s.audit("decision", |_| true).await.unwrap();
    assert_eq!(decision["decision"], "deny");
    assert_eq!(
        decision["findings"][0]["detector"], "private_key",
        "{decision}"
    );
    assert!(
        !decision.to_string().contains("b3BlbnNzaC1rZXktdjEAAAAA"),
        "the record names the finding, never the key: {decision}"
    );
    assert!(s.fake.requests().is_empty());
    let allowed = s
        .post(
            "/openai/chat/completions",
            &openai_chat("gpt-4o-mini", false),
        )
        .await
        .unwrap();
    assert!(allowed.headers().get("x-warden-decision").is_none());
}

/// An upstream that answers every request in HTTP/1.0 with a models list, and closes.
async fn http10_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let body = r#"{"object":"list","data":[]}"#;
                let answer = format!(
                    "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_http10_upstream_answer_reaches_the_agent_in_its_own_version_on_a_kept_connection() {
    use http_body_util::{BodyExt, Empty};
    let upstream = http10_upstream().await;
    let w = warden_e2e::warden::WardenBuilder::with_upstream_url(&format!("http://{upstream}"))
        .start()
        .await
        .unwrap();
    let token = w.token("ci-bot").await.unwrap();
    let stream = tokio::net::TcpStream::connect(w.setup.proxy).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for n in 1..=2 {
        let request = hyper::Request::get("/openai/v1/models")
            .header("host", w.setup.proxy.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        sender
            .ready()
            .await
            .unwrap_or_else(|e| panic!("request {n}: the agent's connection was not kept: {e}"));
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("an answer")
            .unwrap_or_else(|e| panic!("request {n} on the same connection: {e}"));
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(response.version(), hyper::Version::HTTP_11, "request {n}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"object":"list","data":[]}"#, "request {n}");
    }
}
