//! Clients that try to exhaust Warden without ever being identified: a listener at its
//! connection cap (`listen.max_connections`) makes new connections wait while agents on the
//! proxy are served; a body trickled into the admin API or the approval console gets 408 within
//! `limits.body_timeout`, and the admin API verifies its caller before it reads a body; a
//! flood of unauthenticated requests leaves a bounded record (`audit.unauthenticated`) that
//! still verifies.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::stack::chat;
use warden_e2e::warden::{ConsoleIdp, WardenBuilder, run_bounded};

/// A connection to `addr` that has sent `head`.
async fn open(addr: SocketAddr, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// What `stream` answers, if it starts to within `within`: read until it closes or pauses.
async fn answer(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let mut answered = Vec::new();
    let mut wait = within;
    while let Ok(Ok(n)) = tokio::time::timeout(wait, stream.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answered.extend_from_slice(&buf[..n]);
        wait = Duration::from_millis(300);
    }
    (!answered.is_empty()).then(|| String::from_utf8_lossy(&answered).into_owned())
}

#[tokio::test]
async fn at_its_cap_the_admin_listener_makes_new_connections_wait_while_agents_are_served() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .set("/listen/max_connections/admin", json!(8))
        .start()
        .await
        .unwrap();
    let token = w.token("alpha").await.unwrap();
    let admin = w.setup.admin;
    // Eight connections in the middle of their headers hold the admin listener's slots.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(open(admin, "GET /healthz HTTP/1.1\r\nHost: warden\r\n").await);
    }
    // A ninth connects (the kernel's backlog takes it) but is not served.
    let mut ninth = open(
        admin,
        "GET /healthz HTTP/1.1\r\nHost: warden\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        answer(&mut ninth, Duration::from_millis(1500)).await,
        None,
        "served beyond listen.max_connections.admin"
    );
    // The proxy listener has its own cap: agents are served meanwhile.
    let (status, body) = chat(&w, &token).await;
    assert_eq!(status, 200, "{body}");
    // Once the held connections close, the ninth is accepted and answered.
    drop(held);
    let answered = answer(&mut ninth, Duration::from_secs(10))
        .await
        .expect("answered once a slot is free");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let metrics = w.metrics().await.unwrap();
    let reached = metrics
        .lines()
        .find(|l| {
            l.starts_with(r#"warden_listener_connection_cap_reached_total{listener="admin"}"#)
        })
        .unwrap_or_else(|| panic!("no cap metric for the admin listener:\n{metrics}"));
    assert!(!reached.ends_with(" 0"), "{reached}");
}

/// The audience of operators' tokens.
const ADMIN_AUDIENCE: &str = "warden-admin";

#[tokio::test]
async fn bodies_trickled_into_the_admin_api_and_the_console_get_408_and_operators_are_verified_first()
 {
    let upstream = FakeLlm::start().await.unwrap();
    let console = ConsoleIdp::start().await.unwrap();
    let (idp, port) = (&console.idp, console.port);
    let w = WardenBuilder::new(&upstream)
        .trust(idp)
        .set("/limits/body_timeout", json!("1s"))
        .set("/admin/api", json!(true))
        .set(
            "/admin/identity",
            json!({"issuers": [{"issuer": idp.issuer(), "audiences": [ADMIN_AUDIENCE]}]}),
        )
        .console(&console)
        .start()
        .await
        .unwrap();
    let admin = w.setup.admin;
    // Within the admin API's 64 KiB bound: a larger declared body is refused at once.
    let declared = "Content-Type: application/json\r\nContent-Length: 60000\r\n";

    // No operator token: refused at once, before the body (which never comes) is read.
    let mut anonymous = open(
        admin,
        &format!("POST /v1/admin/quarantines HTTP/1.1\r\nHost: warden\r\n{declared}\r\n{{"),
    )
    .await;
    let refused = answer(&mut anonymous, Duration::from_millis(800))
        .await
        .expect("refused before the body is read");
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");

    // An operator's body that trickles in: 408 once limits.body_timeout (1 s) is up.
    let alice = idp.person_token("alice", ADMIN_AUDIENCE).await.unwrap();
    let mut operator = open(
        admin,
        &format!(
            "POST /v1/admin/quarantines HTTP/1.1\r\nHost: warden\r\nAuthorization: Bearer \
             {alice}\r\n{declared}\r\n{{"
        ),
    )
    .await;
    let mut console_form = open(
        format!("127.0.0.1:{port}").parse().unwrap(),
        // Within the console's 64 KiB bound (a larger declared body is refused at once, 413).
        "POST /logout HTTP/1.1\r\nHost: localhost\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\na",
    )
    .await;
    for (name, stream) in [("admin", &mut operator), ("console", &mut console_form)] {
        let timed_out = answer(stream, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("{name}: no answer to a trickled body"));
        assert!(timed_out.starts_with("HTTP/1.1 408"), "{name}: {timed_out}");
        assert!(
            timed_out.contains("request_body_timeout"),
            "{name}: {timed_out}"
        );
    }
}

#[tokio::test]
async fn a_flood_of_unauthenticated_requests_leaves_a_bounded_record_that_verifies() {
    let upstream = FakeLlm::start().await.unwrap();
    let mut w = WardenBuilder::new(&upstream)
        .set(
            "/audit/unauthenticated",
            json!({"per_source": 5, "interval": "1s"}),
        )
        .start()
        .await
        .unwrap();
    let sent = 200;
    for _ in 0..sent {
        let response = w
            .http()
            .post(w.url("/openai/chat/completions"))
            .json(&json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let refusals = |records: &[Value]| -> (u64, u64, u64) {
        let mine: Vec<&Value> = records
            .iter()
            .filter(|r| r["kind"] == "rejected" && r["code"] == "missing_credential")
            .collect();
        let summaries: Vec<&&Value> = mine
            .iter()
            .filter(|r| r["detail"]["event"] == "unauthenticated_folded")
            .collect();
        let folded = summaries
            .iter()
            .map(|r| r["detail"]["folded"].as_u64().unwrap())
            .sum();
        let one_by_one = (mine.len() - summaries.len()) as u64;
        (one_by_one, folded, summaries.len() as u64)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (one_by_one, folded, summaries) = loop {
        let counted = refusals(&w.audit_records());
        if counted.0 + counted.1 == sent || tokio::time::Instant::now() > deadline {
            break counted;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        one_by_one + folded,
        sent,
        "every refusal is recorded or counted"
    );
    // Five a second are recorded one by one; the sending took a few seconds at most.
    assert!(
        one_by_one <= 5 * (summaries + 1),
        "{one_by_one} recorded one by one, {summaries} summaries"
    );
    assert!(one_by_one < 50, "{one_by_one} recorded one by one");
    assert!(folded > 100, "{folded} folded");
    let metrics = w.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_auth_failures_total{reason="missing_credential"} 200"#),
        "metrics count every refusal:\n{metrics}"
    );

    w.signal(15).unwrap();
    assert!(
        w.wait_exit(Duration::from_secs(30))
            .await
            .unwrap()
            .success()
    );
    let mut verify = w.setup.command();
    verify.args(["audit", "verify"]).arg(w.audit_dir());
    let verified = run_bounded(verify, Duration::from_secs(30)).await.unwrap();
    assert!(
        verified.status.success(),
        "the log verifies: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
}
