//! `warden tools forget`: an operator drops pins from the state store (one by name, or every
//! pin of a server), after a dry run that lists them; the running Warden records each pin that
//! leaves the store (`tool_change`, `change: removed`, naming who dropped it and why) and pins
//! the tool again when next listed.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::mcp;
use warden_e2e::warden::Warden;

/// Warden with the endpoint `/mcp/tools` on `calc` (the rug-pull test server, honest in its
/// first session), pins refreshed every 200 ms.
async fn calc_warden(state: &tempfile::TempDir) -> Warden {
    mcp::rugpull_warden(state.path(), &[])
        .start()
        .await
        .expect("warden starts")
}

/// `warden tools ARGS…`: its exit status and standard output.
async fn tools(w: &Warden, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["tools"];
    all.extend_from_slice(args);
    let out = w.cli(&all).await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn removed(record: &Value, tool: &str) -> bool {
    record["kind"] == "tool_change"
        && record["detail"]["change"] == "removed"
        && record["detail"]["server"] == "calc"
        && record["detail"]["tool"] == tool
}

#[tokio::test]
async fn forget_drops_pins_after_a_dry_run_and_the_running_warden_records_each() {
    let state = tempfile::tempdir().unwrap();
    let w = calc_warden(&state).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let url = w.url("/mcp/tools");
    mcp::session(&w, &url, &agent, json!([{"op": "list_tools"}]))
        .await
        .unwrap();
    let (ok, list, _) = tools(&w, &["list", "--server", "calc"]).await;
    assert!(ok && list.contains("calc/add  trusted"), "{list}");

    // A dry run lists what would go and drops nothing.
    let (ok, out, err) = tools(&w, &["forget", "calc", "add", "--dry-run"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("would forget calc/add  (approved "), "{out}");
    let (_, list, _) = tools(&w, &["list", "--server", "calc"]).await;
    assert!(list.contains("calc/add  trusted"), "{list}");

    // A name the store does not hold is refused, naming what it holds.
    let (ok, _, err) = tools(&w, &["forget", "calc", "subtract"]).await;
    assert!(!ok && err.contains("has no tool subtract pinned"), "{err}");

    let (ok, out, err) = tools(
        &w,
        &[
            "forget",
            "calc",
            "add",
            "--as",
            "alice",
            "--reason",
            "calc retired",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("forgot calc/add  (approved "), "{out}");
    let (_, list, _) = tools(&w, &["list", "--server", "calc"]).await;
    assert!(!list.contains("calc/add "), "{list}");
    assert!(
        list.contains("calc/(instructions)"),
        "only the pin named: {list}"
    );
    let record = w
        .wait_for_audit(Duration::from_secs(10), |r| removed(r, "add"))
        .await
        .unwrap();
    assert!(
        record["detail"]["approved_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{record}"
    );
    // The record names who dropped the pin and why, as the command left them in the store.
    assert_eq!(record["detail"]["removed_by"], "alice", "{record}");
    assert_eq!(record["detail"]["reason"], "calc retired", "{record}");

    // Every pin of the server.
    let (ok, out, err) = tools(&w, &["forget", "calc", "--all"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("forgot calc/(instructions)"), "{out}");
    let record = w
        .wait_for_audit(Duration::from_secs(10), |r| removed(r, "(instructions)"))
        .await
        .unwrap();
    // Without --as, the operator is the login that ran the command; without --reason, none.
    assert!(
        record["detail"]["removed_by"]
            .as_str()
            .is_some_and(|by| !by.is_empty()),
        "{record}"
    );
    assert_eq!(record["detail"]["reason"], Value::Null, "{record}");
    let (ok, _, err) = tools(&w, &["forget", "calc", "--all"]).await;
    assert!(!ok && err.contains("no tool of MCP server calc"), "{err}");
}
