//! A quarantine cuts what its agent has open: its MCP sessions (the Streamable HTTP event
//! stream and the legacy HTTP+SSE stream end with a last notification that says why, and the
//! servers Warden started for them stop) and its egress tunnels (both connections closed).
//! The audit log says why each ended.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::egress::{AllowedTls, assert_tunnel_cut, closes_within};
use warden_e2e::mcp;
use warden_e2e::operator::quarantine;
use warden_e2e::warden::{Warden, WardenBuilder};

const WAIT: Duration = Duration::from_secs(10);

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
    let (session, mut streamable) = mcp::open_event_stream(&w, "/mcp/tools", &agent)
        .await
        .unwrap();
    let (_, mut untouched) = mcp::open_event_stream(&w, "/mcp/tools", &bystander)
        .await
        .unwrap();

    // A legacy HTTP+SSE session, initialised.
    let (mut legacy, endpoint) = mcp::open_legacy_stream(&w, "/mcp/tools", &agent)
        .await
        .unwrap();
    let accepted = w
        .http()
        .post(w.url(&endpoint))
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
        let events = stream.until_the_end(WAIT).await.unwrap();
        assert!(
            events.last().is_some_and(|e| mcp::is_cut_notice(
                e,
                "agent_quarantined",
                "incident 5150"
            )),
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
    let refused = mcp::post_raw(&w, "/mcp/tools", &agent, Some(&session), &ping)
        .await
        .unwrap();
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

#[tokio::test]
async fn a_quarantine_closes_the_agents_egress_tunnel() {
    let allowed = AllowedTls::start().await.unwrap();
    let w = allowed
        .egress(WardenBuilder::with_upstream_url("http://127.0.0.1:9"))
        .set("/fleet/quarantine/refresh_interval", json!("50ms"))
        .start()
        .await
        .unwrap();
    let token = w.token("build-bot").await.unwrap();
    let mut tls = allowed.tunnel(&w, &token).await.unwrap();

    quarantine(&w, "build-bot", "incident 6060: exfiltration").await;

    // The tunnel closes: the agent's side reads its end.
    assert!(
        closes_within(&mut tls, WAIT).await,
        "the tunnel stays open after the quarantine"
    );

    assert_tunnel_cut(
        &w,
        "build-bot",
        "cut: the agent was quarantined",
        "incident 6060",
        "agent_quarantined",
    )
    .await;
}
