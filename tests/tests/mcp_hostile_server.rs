//! What a hostile MCP server cannot do to the agents behind Warden: its own requests to the
//! agent that policy denies are counted against the server, never as the agent's denies (a
//! server could otherwise get an honest agent quarantined by asking what it may not).

use std::time::Duration;

use serde_json::json;
use warden_e2e::mcp;
use warden_e2e::operator::text;
use warden_e2e::warden::WardenBuilder;

#[tokio::test]
async fn a_servers_denied_requests_never_quarantine_the_agent() {
    let w = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything")],
                   "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
        .set(
            "/fleet/quarantine/triggers",
            json!({ "denies": { "count": 5, "window": "5m" } }),
        )
        .policy(
            "no-sampling.cedar",
            r#"
@id("no-sampling-by-everything")
@reason("this server may not use the agent's model")
forbid (principal, action == Action::"mcp:sample", resource == McpServer::"everything");
"#,
        )
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("honest-agent").await.unwrap();
    // Ten tool calls, each making the server send one sampling request policy denies.
    let mut steps: Vec<_> = (0..10)
        .map(|_| {
            json!({"op": "call", "name": "everything_trigger-sampling-request",
                   "arguments": {"prompt": "what do you know?", "maxTokens": 50}})
        })
        .collect();
    steps.push(
        json!({"op": "call", "name": "everything_echo", "arguments": {"message": "still here"}}),
    );
    let r = mcp::session_with(
        &w,
        &w.url("/mcp/tools"),
        &agent,
        json!(steps),
        Some("sampled"),
    )
    .await
    .unwrap();
    assert_eq!(r["sampled"], 0, "the agent was never asked: {r}");
    let last = r["steps"][10]["text"].as_str().unwrap_or_default();
    assert!(
        last.contains("Echo: still here"),
        "the agent's own call goes on: {r}"
    );
    // Ten denies were recorded in the agent's session, all of the server's asking.
    let mut denies = 0;
    for _ in 0..100 {
        denies = w
            .audit_records()
            .iter()
            .filter(|e| {
                e["kind"] == "decision" && e["action"] == "mcp:sample" && e["decision"] == "deny"
            })
            .count();
        if denies >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(denies, 10, "each of the server's requests was judged");
    let listed = w.cli(&["agents", "list"]).await.unwrap();
    assert!(
        !text(&listed).contains("honest-agent"),
        "the agent is not quarantined: {}",
        text(&listed)
    );
    // A new session of the agent's works, and the denies are the server's in the metrics.
    let again = mcp::session(
        &w,
        &w.url("/mcp/tools"),
        &agent,
        json!([{"op": "call", "name": "everything_echo", "arguments": {"message": "again"}}]),
    )
    .await
    .unwrap();
    assert!(
        again["steps"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("Echo: again"),
        "{again}"
    );
    let metrics = w.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_mcp_server_requests_denied_total{server=\"everything\"} 10"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("warden_quarantines_total{trigger=\"denies\"}"),
        "{metrics}"
    );
}
