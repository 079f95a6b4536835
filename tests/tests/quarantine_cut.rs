//! A quarantine cuts what its agent has open: its MCP sessions (the Streamable HTTP event
//! stream and the legacy HTTP+SSE stream end with a last notification that says why, and the
//! servers Warden started for them stop) and its egress tunnels (both connections closed).
//! The audit log says why each ended.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_e2e::egress::{Dns, Origin, Pki, open_tunnel, tls_trusting};
use warden_e2e::mcp;
use warden_e2e::operator::quarantine;
use warden_e2e::sse::{Event, EventReader};
use warden_e2e::warden::{Warden, WardenBuilder, free_port};

const WAIT: Duration = Duration::from_secs(10);

/// The events left on `stream` until it ends (failing if it does not end within [`WAIT`]).
async fn until_the_end(stream: &mut EventReader) -> Vec<Event> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match stream.next(left).await {
            Ok(Some(event)) => events.push(event),
            Ok(None) => return events,
            Err(e) => panic!("the stream did not end within {WAIT:?}: {e}; saw {events:?}"),
        }
    }
}

/// Whether `event` is Warden's notice that the agent was quarantined, naming `reason`.
fn is_cut_notice(event: &Event, reason: &str) -> bool {
    let message = event.json();
    message["method"] == "notifications/message"
        && message["params"]["level"] == "error"
        && message["params"]["data"]["code"] == "agent_quarantined"
        && message["params"]["data"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(reason))
}

/// Warden's child processes whose command line contains `pattern`.
fn children_running(warden: &Warden, pattern: &str) -> usize {
    let root = warden.pid().unwrap_or_default();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|entry| {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                return false;
            };
            let parent: u32 = stat
                .rfind(')')
                .and_then(|i| stat[i + 2..].split(' ').nth(1)?.parse().ok())
                .unwrap_or(0);
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            parent == root && String::from_utf8_lossy(&cmdline).contains(pattern)
        })
        .count()
}

/// An MCP `initialize` request asking for `version`.
fn initialize(version: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": version, "capabilities": {},
                   "clientInfo": {"name": "t", "version": "1"}}})
}

/// POSTs `body` to the MCP endpoint as `token`, in `session` if any.
async fn post(w: &Warden, token: &str, session: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = w
        .http()
        .post(w.url("/mcp/tools"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(body);
    if let Some(s) = session {
        request = request.header("mcp-session-id", s);
    }
    request.send().await.unwrap()
}

/// A Streamable HTTP session of `token`'s agent with its event stream open: its id and
/// the stream.
async fn open_session(w: &Warden, token: &str) -> (String, EventReader) {
    let response = post(w, token, None, &initialize("2025-11-25")).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let stream = w
        .http()
        .get(w.url("/mcp/tools"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    (session, EventReader::new(stream))
}

#[tokio::test]
async fn a_quarantine_ends_the_agents_mcp_streams_and_stops_their_servers() {
    let w = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything")],
                   "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
        .set("/fleet/quarantine/refresh_interval", json!("50ms"))
        .start()
        .await
        .unwrap();
    let agent = w.token("mcp-agent").await.unwrap();
    let bystander = w.token("bystander").await.unwrap();

    // A Streamable HTTP session with its event stream open.
    let (session, mut streamable) = open_session(&w, &agent).await;
    let (_, mut untouched) = open_session(&w, &bystander).await;

    // A legacy HTTP+SSE session, initialised.
    let opened = w
        .http()
        .get(w.url("/mcp/tools/sse"))
        .bearer_auth(&agent)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let mut legacy = EventReader::new(opened);
    let endpoint = legacy
        .next(WAIT)
        .await
        .unwrap()
        .expect("the endpoint event");
    assert_eq!(endpoint.name.as_deref(), Some("endpoint"));
    let accepted = w
        .http()
        .post(w.url(&endpoint.data))
        .bearer_auth(&agent)
        .json(&initialize("2024-11-05"))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let answered = legacy
        .next(WAIT)
        .await
        .unwrap()
        .expect("the initialize answer");
    assert_eq!(answered.json()["id"], 1, "{answered:?}");
    assert_eq!(children_running(&w, "server-everything"), 3);

    quarantine(&w, "mcp-agent", "incident 5150: tool abuse").await;

    // Both of its streams end, each with a last notification that says why.
    for stream in [&mut streamable, &mut legacy] {
        let events = until_the_end(stream).await;
        assert!(
            events
                .last()
                .is_some_and(|e| is_cut_notice(e, "incident 5150: tool abuse")),
            "{events:?}"
        );
    }
    // Its servers stop; the bystander's session goes on.
    let deadline = tokio::time::Instant::now() + WAIT;
    while children_running(&w, "server-everything") > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the quarantined agent's servers still run"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        matches!(
            untouched.next(Duration::from_millis(300)).await,
            Err(_) | Ok(Some(_))
        ),
        "the bystander's stream stays open"
    );
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    let refused = post(&w, &agent, Some(&session), &ping).await;
    assert_eq!(refused.status(), 403);

    // Audited: the session and the legacy stream cut, and why (the legacy stream's session
    // ends with its stream).
    for what in ["mcp_session", "mcp_stream"] {
        let record = w
            .wait_for_audit(WAIT, |r| {
                r["kind"] == "system"
                    && r["detail"]["event"] == "cut"
                    && r["detail"]["cut"] == what
                    && r["detail"]["target"]["name"] == "mcp-agent"
            })
            .await
            .unwrap();
        assert_eq!(record["detail"]["reason"], "incident 5150: tool abuse");
        assert_eq!(record["detail"]["endpoint"], "tools");
    }
}

/// Lets `build-bot` reach `allowed.test` (a name on loopback).
const ALLOWLIST: &str = r#"
@id("egress-allowed-test")
@egress("internal")
permit (
  principal is Agent,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource == Host::"allowed.test"
);
"#;

#[tokio::test]
async fn a_quarantine_closes_the_agents_egress_tunnel() {
    let pki = Pki::new();
    let https = Origin::start(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        0,
        Some(pki.server(&["allowed.test"])),
    )
    .await
    .unwrap();
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let w = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .without_policy("e2e-permit-all.cedar")
        .policy("egress.cedar", ALLOWLIST)
        .set("/egress/listen", json!(proxy.to_string()))
        .set("/egress/nameservers", json!([dns.addr.to_string()]))
        .set("/fleet/quarantine/refresh_interval", json!("50ms"))
        .start()
        .await
        .unwrap();
    let token = w.token("build-bot").await.unwrap();

    // A tunnel to allowed.test, TLS through it, one request answered.
    let target = format!("allowed.test:{}", https.addr.port());
    let (stream, head) = open_tunnel(proxy, &target, &token).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let connector = tls_trusting(&pki.write_ca(w.setup.dir.path())).unwrap();
    let name = rustls::pki_types::ServerName::try_from("allowed.test").unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, stream))
        .await
        .expect("the handshake ends")
        .expect("TLS through the tunnel");
    tls.write_all(b"GET /before HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, tls.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    quarantine(&w, "build-bot", "incident 6060: exfiltration").await;

    // The tunnel closes: the agent's side reads its end.
    let closed = tokio::time::timeout(WAIT, async {
        let mut rest = vec![0u8; 4096];
        loop {
            match tls.read(&mut rest).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the tunnel stays open after the quarantine");

    let record = w
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "outcome"
                && r["principal"]["id"] == "build-bot"
                && r["outcome"]["error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("cut: the agent was quarantined"))
        })
        .await
        .unwrap();
    assert!(
        record["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("incident 6060"),
        "{record}"
    );
    assert!(
        record["outcome"]["bytes_down"].as_u64().unwrap() > 0,
        "{record}"
    );
    let metrics = w.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_egress_tunnels_total{result="agent_quarantined"} 1"#),
        "{metrics}"
    );
}
