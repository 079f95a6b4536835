//! Tool-definition pinning through Warden: a real stdio MCP server that changes a tool's
//! description between sessions (a rug pull, `tests/mcp/rugpull_server.mjs`) is caught: the
//! changed tool is hidden and its calls refused, the change is in the audit log with a diff,
//! and once an operator approves it with `warden tools approve` the agent sees it again.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::mcp;
use warden_e2e::warden::WardenBuilder;

fn names(v: &Value) -> Vec<String> {
    v["names"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

/// Warden with the endpoint `/mcp/tools` on `calc`, the rug-pulling server: honest in its
/// first session (process), poisoned from the second on (it counts sessions in `state`).
async fn rugpull_warden(state: &tempfile::TempDir) -> warden_e2e::warden::Warden {
    let counter = state.path().join("sessions");
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let server = json!({
        "name": "calc",
        "command": node,
        "args": [mcp::mcp_dir().join("rugpull_server.mjs"), "--state", counter],
    });
    WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [server], "endpoints": [{"name": "tools", "servers": ["calc"]}]}),
        )
        .set("/pins", json!({"refresh_interval": "200ms"}))
        .start()
        .await
        .expect("warden starts")
}

#[tokio::test]
async fn a_rug_pull_is_hidden_refused_audited_and_usable_again_once_approved() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_warden(&state).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let url = w.url("/mcp/tools");
    let add = json!({"op": "call", "name": "calc_add", "arguments": {"a": 2, "b": 3}});

    // Session 1: the honest definition is pinned on first use.
    let r = mcp::session(&w, &url, &agent, json!([{"op": "list_tools"}, add]))
        .await
        .unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][1]["isError"], false, "{r}");
    assert!(r["steps"][1]["text"].as_str().unwrap().contains('5'), "{r}");
    assert_eq!(
        r["initialize"]["instructions"], "Server calc: Use add for sums.",
        "the server's instructions are pinned on first use too: {r}"
    );

    // Session 2: the server now hides instructions in `add`. The tool is not listed and a
    // call is refused before it reaches the server.
    let r = mcp::session(&w, &url, &agent, json!([{"op": "list_tools"}, add]))
        .await
        .unwrap();
    assert!(
        !names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    let refused = r["steps"][1].to_string();
    assert!(
        refused.contains("held") && refused.contains("warden tools approve"),
        "{r}"
    );
    // Its changed instructions are withheld from the agent too.
    assert!(
        r["initialize"]["instructions"].is_null(),
        "changed instructions reach no agent before they are approved: {r}"
    );

    // The audit log has the change, with the diff and what the detectors found.
    let change = w
        .audit_records()
        .into_iter()
        .find(|r| r["kind"] == "tool_change" && r["detail"]["tool"] == "add")
        .expect("a tool_change record");
    let detail = &change["detail"];
    assert_eq!(detail["server"], "calc");
    assert_eq!(detail["tool"], "add");
    assert!(
        detail["diff"].as_str().unwrap().contains("id_rsa"),
        "{change}"
    );
    assert!(
        detail["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{change}"
    );

    // The operator reviews and approves the new definition; the running Warden picks it up.
    let diff = w.cli(&["tools", "diff", "calc", "add"]).await.unwrap();
    assert!(diff.status.success(), "{diff:?}");
    assert!(String::from_utf8_lossy(&diff.stdout).contains("id_rsa"));
    let approve = w.cli(&["tools", "approve", "calc", "add"]).await.unwrap();
    assert!(approve.status.success(), "{approve:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let r = mcp::session(&w, &url, &agent, json!([{"op": "list_tools"}, add]))
        .await
        .unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_add".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][1]["isError"], false, "{r}");
    assert!(
        r["initialize"]["instructions"].is_null(),
        "approving a tool approves not the instructions: {r}"
    );
}

#[tokio::test]
async fn changed_server_instructions_are_withheld_audited_and_shown_once_approved() {
    let state = tempfile::tempdir().unwrap();
    let w = rugpull_warden(&state).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let url = w.url("/mcp/tools");
    let honest = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
    assert_eq!(
        honest["initialize"]["instructions"], "Server calc: Use add for sums.",
        "{honest}"
    );
    let turned = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
    assert!(turned["initialize"]["instructions"].is_null(), "{turned}");
    let change = w
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "tool_change" && r["detail"]["tool"] == "(instructions)"
        })
        .await
        .unwrap();
    assert_eq!(change["detail"]["server"], "calc", "{change}");
    assert!(
        change["detail"]["diff"]
            .as_str()
            .unwrap()
            .contains("id_rsa"),
        "{change}"
    );
    let approve = w
        .cli(&["tools", "approve", "calc", "(instructions)"])
        .await
        .unwrap();
    assert!(approve.status.success(), "{approve:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let approved = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
    assert!(
        approved["initialize"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("id_rsa")),
        "{approved}"
    );
}
