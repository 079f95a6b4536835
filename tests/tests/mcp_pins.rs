//! Tool-definition pinning through Warden: a real stdio MCP server that changes a tool's
//! description between sessions (a rug pull, `tests/mcp/rugpull_server.mjs`) is caught: the
//! changed tool is hidden and its calls refused, the change is in the audit log with a diff,
//! and once an operator approves it with `warden tools approve` the agent sees it again. Its
//! prompt and resource descriptions turn with it and are pinned the same way.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::mcp;
use warden_e2e::warden::WardenBuilder;

/// The strings under `key` of a client step's result (`names` of a list, `uris`).
fn listed(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    listed(v, "names")
}

/// Warden with the endpoint `/mcp/tools` on `calc`, the rug-pulling server: honest in its
/// first session (process), poisoned from the second on (it counts sessions in `state`).
async fn rugpull_warden(state: &tempfile::TempDir) -> warden_e2e::warden::Warden {
    rugpull_builder(state).start().await.expect("warden starts")
}

fn rugpull_builder(state: &tempfile::TempDir) -> WardenBuilder {
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
}

/// `warden tools approve calc ITEM`, then a wait for the running Warden to pick it up
/// (`pins.refresh_interval` is 200 ms).
async fn approve(w: &warden_e2e::warden::Warden, item: &str) {
    let approve = w.cli(&["tools", "approve", "calc", item]).await.unwrap();
    assert!(approve.status.success(), "{approve:?}");
    tokio::time::sleep(Duration::from_millis(800)).await;
}

fn uris(v: &Value) -> Vec<String> {
    listed(v, "uris")
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
    approve(&w, "add").await;
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
    approve(&w, "(instructions)").await;
    let approved = mcp::session(&w, &url, &agent, json!([])).await.unwrap();
    assert!(
        approved["initialize"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("id_rsa")),
        "{approved}"
    );
}

#[tokio::test]
async fn a_changed_prompt_or_resource_is_withheld_refused_audited_and_restored_once_approved() {
    let state = tempfile::tempdir().unwrap();
    // What the detectors find in an approved prompt is in the policy's context.findings.
    let w = rugpull_builder(&state)
        .policy(
            "no-concealing-prompts.cedar",
            "@id(\"no-concealing-prompts\")\n\
             forbid(principal, action == Action::\"mcp:get_prompt\", resource)\n\
             when { context.findings.contains(\"tool_concealment\") };\n",
        )
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let url = w.url("/mcp/tools");
    let steps = json!([
        {"op": "list_prompts"},
        {"op": "get_prompt", "name": "calc_summarize", "arguments": {"text": "hi"}},
        {"op": "list_resources"},
        {"op": "read_resource", "uri": "calc+notes://today"},
        {"op": "get_prompt", "name": "calc_greet"},
    ]);

    // Session 1: the honest prompt and resource are pinned on first use.
    let r = mcp::session(&w, &url, &agent, steps.clone()).await.unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_summarize".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][1]["messages"], 1, "{r}");
    assert!(
        uris(&r["steps"][2]).contains(&"calc+notes://today".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][3]["texts"][0], "notes of notes://today", "{r}");

    // Session 2: their descriptions now hide instructions. They are withheld from the lists
    // and refused; the unchanged prompt is not.
    let r = mcp::session(&w, &url, &agent, steps.clone()).await.unwrap();
    assert!(
        !names(&r["steps"][0]).contains(&"calc_summarize".to_owned()),
        "{r}"
    );
    assert!(
        names(&r["steps"][0]).contains(&"calc_greet".to_owned()),
        "{r}"
    );
    let refused = r["steps"][1]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refused.contains("held")
            && refused.contains("warden tools approve calc 'prompt:summarize'"),
        "{r}"
    );
    assert!(
        !uris(&r["steps"][2]).contains(&"calc+notes://today".to_owned()),
        "{r}"
    );
    let refused = r["steps"][3]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refused.contains("held") && refused.contains("'resource:notes://today'"),
        "{r}"
    );
    assert_eq!(r["steps"][4]["messages"], 1, "{r}");

    // Both changes are audited with their diff and findings.
    for (tool, kind) in [
        ("prompt:summarize", "prompt"),
        ("resource:notes://today", "resource"),
    ] {
        let change = w
            .wait_for_audit(Duration::from_secs(10), |r| {
                r["kind"] == "tool_change" && r["detail"]["tool"] == tool
            })
            .await
            .unwrap();
        assert_eq!(change["detail"]["kind"], kind, "{change}");
        assert_eq!(change["detail"]["server"], "calc", "{change}");
        assert!(
            change["detail"]["diff"]
                .as_str()
                .unwrap()
                .contains("id_rsa"),
            "{change}"
        );
        assert!(
            change["detail"]["findings"]
                .as_array()
                .is_some_and(|f| !f.is_empty()),
            "{change}"
        );
    }

    // The operator sees them among the pins, reviews the prompt's diff, and approves it.
    let list = w.cli(&["tools", "list", "--server", "calc"]).await.unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("calc/prompt:summarize  changed"),
        "{listed}"
    );
    assert!(
        listed.contains("calc/resource:notes://today  changed"),
        "{listed}"
    );
    let diff = w
        .cli(&["tools", "diff", "calc", "prompt:summarize"])
        .await
        .unwrap();
    assert!(diff.status.success(), "{diff:?}");
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert!(
        shown.contains("id_rsa") && shown.contains("tool_concealment"),
        "{shown}"
    );
    approve(&w, "prompt:summarize").await;

    // Session 3: the approved prompt is listed again; getting it is judged with its findings
    // (here a policy forbids it). The resource, not approved, is still withheld.
    let r = mcp::session(&w, &url, &agent, steps).await.unwrap();
    assert!(
        names(&r["steps"][0]).contains(&"calc_summarize".to_owned()),
        "{r}"
    );
    let denied = r["steps"][1]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(!denied.contains("held"), "{r}");
    assert!(
        r["steps"][1]["error"].is_object(),
        "the forbid on findings applies: {r}"
    );
    let decision = w
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["action"] == "mcp:get_prompt" && r["decision"] == "deny"
        })
        .await
        .unwrap();
    assert!(
        decision.to_string().contains("no-concealing-prompts"),
        "{decision}"
    );
    assert!(
        decision["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["detector"] == "tool_concealment")),
        "{decision}"
    );
    assert!(
        !uris(&r["steps"][2]).contains(&"calc+notes://today".to_owned()),
        "{r}"
    );
    assert_eq!(r["steps"][4]["messages"], 1, "{r}");
}
