//! Requests an MCP server sends the agent, through Warden: the `everything` server from npm
//! asks the agent's model to generate (`sampling/createMessage`), and the official MCP Python
//! SDK is the agent that answers. Each request is judged by Cedar (`mcp:sample` on the
//! server) before it reaches the agent, the agent's answer is inspected before it reaches the
//! server, and both are recorded. One a policy holds for approval waits for an approver (who
//! sees what it asks) and reaches the agent once approved, or answers the server with the
//! denial. Policies see the agent's session context (`context.session`) in them as in the
//! agent's own requests. Also: the legacy transport's GET `/sse` counts against the rate
//! limits.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::mcp;
use warden_e2e::operator::{enrol, first_pending, oathtool, text};
use warden_e2e::warden::{Warden, WardenBuilder};

/// What the agent's model answers every sampling request with.
const SAMPLED: &str = "sampled by the agent";

/// Warden with the endpoint `/mcp/tools` on the `everything` server, everything permitted but
/// what `policies` forbid.
async fn warden(policies: &str) -> Warden {
    WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything")],
                   "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
        .policy("server-requests.cedar", policies)
        .start()
        .await
        .expect("warden starts")
}

/// One session whose only step makes the server ask the agent's model for `prompt`; the agent
/// answers `reply`.
async fn sample(w: &Warden, reply: &str) -> Value {
    sample_then(w, reply, &[]).await
}

/// As [`sample`], with the session's `then` steps after that one.
async fn sample_then(w: &Warden, reply: &str, then: &[Value]) -> Value {
    let agent = w.token("e2e-agent").await.unwrap();
    let mut steps = vec![
        json!({"op": "call", "name": "everything_trigger-sampling-request",
                                "arguments": {"prompt": "what do you know?", "maxTokens": 50}}),
    ];
    steps.extend_from_slice(then);
    mcp::session_with(w, &w.url("/mcp/tools"), &agent, json!(steps), Some(reply))
        .await
        .unwrap()
}

/// The text of the session's tool call: what the server made of the agent's answer.
fn tool_text(r: &Value) -> String {
    r["steps"][0]["text"]
        .as_str()
        .or_else(|| r["steps"][0]["error"]["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_denied_sampling_request_never_reaches_the_agent_and_the_server_gets_the_error() {
    let w = warden(
        r#"
@id("no-sampling-by-everything")
@reason("this server may not use the agent's model")
forbid (principal, action == Action::"mcp:sample", resource == McpServer::"everything");
"#,
    )
    .await;
    let r = sample(&w, SAMPLED).await;
    assert_eq!(r["sampled"], 0, "the agent was never asked: {r}");
    let text = tool_text(&r);
    assert!(
        text.contains("this server may not use the agent's model") && !text.contains(SAMPLED),
        "the server got Warden's error, not an answer: {r}"
    );
    let decision = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "decision" && e["action"] == "mcp:sample"
        })
        .await
        .unwrap();
    assert_eq!(decision["decision"], "deny", "{decision}");
    assert_eq!(
        decision["resource"], r#"McpServer::"everything""#,
        "{decision}"
    );
    assert_eq!(decision["principal"]["id"], "e2e-agent", "{decision}");
    assert_eq!(
        decision["policies"],
        json!(["no-sampling-by-everything"]),
        "{decision}"
    );
    assert!(
        decision["content_digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{decision}"
    );
    assert!(
        decision.get("content").is_none(),
        "the server's prompt is not recorded without audit.record_content: {decision}"
    );
    assert!(
        text.contains(decision["decision_id"].as_str().unwrap()),
        "the error names the decision: {text}"
    );
}

#[tokio::test]
async fn a_permitted_sampling_request_reaches_the_agent_and_is_recorded_with_its_answer() {
    let w = warden("").await;
    let r = sample(&w, SAMPLED).await;
    assert_eq!(r["sampled"], 1, "{r}");
    assert!(tool_text(&r).contains(SAMPLED), "{r}");
    let decision = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "decision" && e["action"] == "mcp:sample"
        })
        .await
        .unwrap();
    assert_eq!(decision["decision"], "allow", "{decision}");
    assert_eq!(
        decision["resource"], r#"McpServer::"everything""#,
        "{decision}"
    );
    let outcome = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "outcome" && e["action"] == "mcp:sample"
        })
        .await
        .unwrap();
    assert_eq!(outcome["decision_id"], decision["decision_id"], "{outcome}");
    assert!(outcome["outcome"].get("error").is_none(), "{outcome}");
}

#[tokio::test]
async fn an_answer_carrying_a_secret_is_withheld_from_the_server() {
    let w = warden(
        r#"
@id("no-keys-to-servers")
@reason("an AWS key does not leave for an MCP server")
forbid (principal, action == Action::"mcp:sample", resource)
when { context.findings.contains("aws_access_key") };
"#,
    )
    .await;
    let r = sample(&w, "the key is AKIAIOSFODNN7EXAMPLE").await;
    assert_eq!(r["sampled"], 1, "the request itself was permitted: {r}");
    let text = tool_text(&r);
    assert!(
        !text.contains("AKIA") && text.contains("withheld"),
        "the server got an error instead of the key: {r}"
    );
    // The request's decision allows; the answer's, with its finding, denies.
    let denied = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "decision" && e["action"] == "mcp:sample" && e["decision"] == "deny"
        })
        .await
        .unwrap();
    assert_eq!(
        denied["policies"],
        json!(["no-keys-to-servers"]),
        "{denied}"
    );
    assert!(
        denied["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["detector"] == "aws_access_key"),
        "{denied}"
    );
    assert!(!denied.to_string().contains("AKIA"), "{denied}");
    let outcome = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "outcome" && e["action"] == "mcp:sample"
        })
        .await
        .unwrap();
    assert!(
        outcome["outcome"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("withheld")),
        "{outcome}"
    );
}

/// Sampling by `everything` waits for one approval of `sre` (alice); `approvals.mode: pending`
/// (a server's request waits whatever the mode) and request content shown to approvers.
async fn warden_holding_sampling() -> Warden {
    WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything")],
                   "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
        .policy(
            "sampling-needs-sre.cedar",
            "@id(\"sampling-needs-sre\")\n@approval(\"required\")\n\
             @approvers(\"Group::\\\"sre\\\"\")\n\
             permit (principal, action == Action::\"mcp:sample\", resource == McpServer::\"everything\");\n",
        )
        .set(
            "/approvals",
            json!({"mode": "pending", "operators": [{"subject": "alice", "groups": ["sre"]}]}),
        )
        .set("/audit/record_content", json!(true))
        .start()
        .await
        .expect("warden starts")
}

/// Samples through `w` while alice decides (`verb`: `approve` or `deny`) the approval the
/// server's request waits for, once approvers see what it asks; the session's result.
async fn sample_decided(w: &Warden, verb: &str) -> Value {
    let alice = enrol(w, "alice").await;
    let decide = async {
        let id = first_pending(w).await.expect("the server's request waits");
        let out = w.cli(&["approvals", "show", &id]).await.unwrap();
        let shown = text(&out);
        assert!(
            shown.contains("mcp:sample") && shown.contains("\"max_tokens\":50"),
            "approvers see what the server asks: {shown}"
        );
        let code = oathtool(&alice, 1);
        let out = w
            .cli(&["approvals", verb, &id, "--as", "alice", "--code", &code])
            .await
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        id
    };
    let (r, id) = tokio::join!(sample(w, SAMPLED), decide);
    let decision = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "decision" && e["action"] == "mcp:sample"
        })
        .await
        .unwrap();
    assert_eq!(decision["decision"], "approval_required", "{decision}");
    assert!(!id.is_empty());
    r
}

#[tokio::test]
async fn a_sampling_request_held_for_approval_reaches_the_agent_once_approved() {
    let w = warden_holding_sampling().await;
    let r = sample_decided(&w, "approve").await;
    assert_eq!(r["sampled"], 1, "delivered once approved: {r}");
    assert!(tool_text(&r).contains(SAMPLED), "{r}");
    let used = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["detail"]["event"] == "approval_used"
        })
        .await
        .unwrap();
    assert_eq!(
        used["detail"]["approvers"][0]["approver"], "alice",
        "{used}"
    );
    let outcome = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "outcome" && e["action"] == "mcp:sample"
        })
        .await
        .unwrap();
    assert!(outcome["outcome"].get("error").is_none(), "{outcome}");
}

#[tokio::test]
async fn a_sampling_request_whose_approval_is_denied_never_reaches_the_agent() {
    let w = warden_holding_sampling().await;
    let r = sample_decided(&w, "deny").await;
    assert_eq!(r["sampled"], 0, "the agent was never asked: {r}");
    let said = tool_text(&r);
    assert!(
        said.contains("an approver denied this request") && !said.contains(SAMPLED),
        "the server got the denial: {r}"
    );
    // Who denied it is the record's, not the (third-party) server's.
    assert!(!said.contains("alice"), "{r}");
}

#[tokio::test]
async fn a_server_request_is_judged_with_the_agents_session_context() {
    // The tool call that makes the server ask is the session's first action: a policy on
    // what the session did before sees it.
    let w = warden(
        r#"
@id("no-sampling-after-tool-calls")
@reason("no sampling once the session has called tools")
forbid (principal, action == Action::"mcp:sample", resource)
when { context has session && context.session.actions >= 1 };
"#,
    )
    .await;
    let r = sample(&w, SAMPLED).await;
    assert_eq!(r["sampled"], 0, "the agent was never asked: {r}");
    assert!(
        tool_text(&r).contains("no sampling once the session has called tools"),
        "{r}"
    );
}

#[tokio::test]
async fn a_server_request_is_not_counted_as_the_agents_own_action() {
    // The session's policies read what the agent did: a server asking the agent does not add
    // to it, or a server could spend an agent's session allowance.
    let w = warden(
        r#"
@id("two-calls-at-most")
@reason("this session has acted twice already")
forbid (principal, action == Action::"mcp:call_tool", resource)
when { context has session && context.session.actions >= 2 };
"#,
    )
    .await;
    let echo = json!({"op": "call", "name": "everything_echo", "arguments": {"message": "second"}});
    let r = sample_then(&w, SAMPLED, &[echo]).await;
    assert_eq!(r["sampled"], 1, "{r}");
    let second = r["steps"][1]["text"].as_str().unwrap_or_default();
    assert!(second.contains("Echo: second"), "{r}");
}

#[tokio::test]
async fn the_legacy_event_stream_counts_against_the_rate_limits() {
    let w = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything")],
                   "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
        .set(
            "/rate_limits",
            json!({"rules": [{"scope": "agent", "rate": 0.001, "burst": 2}]}),
        )
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let open = || {
        client
            .get(w.url("/mcp/tools/sse"))
            .bearer_auth(&agent)
            .send()
    };
    // Two streams within the burst (held open), the third refused.
    let first = open().await.unwrap();
    let second = open().await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let refused = open().await.unwrap();
    assert_eq!(refused.status(), 429, "{:?}", refused.headers());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["data"]["code"], "rate_limited", "{body}");
}

/// Opens a session raw on `/mcp/tools` as `token`'s agent, which declares that it samples,
/// and makes the `everything` server ask it to sample (the call waits in a task of its own
/// while the server's request is held): the session's id and the call.
async fn held_sampling(
    w: &Warden,
    token: &str,
) -> (
    String,
    tokio::task::JoinHandle<anyhow::Result<reqwest::Response>>,
) {
    let session = mcp::initialize_raw_with(w, "/mcp/tools", token, json!({"sampling": {}}))
        .await
        .unwrap();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    mcp::post_raw(w, "/mcp/tools", token, Some(&session), &initialized)
        .await
        .unwrap();
    let call = mcp::tool_call(
        2,
        "everything_trigger-sampling-request",
        json!({"prompt": "what do you know?", "maxTokens": 50}),
    );
    let call = w
        .http()
        .post(w.url("/mcp/tools"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .json(&call)
        .send();
    (session, tokio::spawn(async move { Ok(call.await?) }))
}

/// The ids of the approvals `warden approvals list` shows pending, once there are `count`
/// (polling up to 10 s).
async fn pending(w: &Warden, count: usize) -> Vec<String> {
    for _ in 0..100 {
        let out = w.cli(&["approvals", "list"]).await.unwrap();
        let ids: Vec<String> = text(&out)
            .lines()
            .filter(|l| l.starts_with("apr_"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        if ids.len() >= count {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{count} approvals never were pending");
}

#[tokio::test]
async fn a_held_server_requests_approval_is_withdrawn_when_its_session_ends() {
    let w = warden_holding_sampling().await;
    let alice = enrol(&w, "alice").await;
    let agent = w.token("e2e-agent").await.unwrap();
    let (session, call) = held_sampling(&w, &agent).await;
    let id = pending(&w, 1).await.remove(0);
    // The same request of the server's in another session waits for an approval of its own.
    let (_other, other_call) = held_sampling(&w, &agent).await;
    let other = pending(&w, 2)
        .await
        .into_iter()
        .find(|o| *o != id)
        .expect("another approval");
    // The agent ends the first session while the server's request waits for an approver.
    let deleted = mcp::end_session(&w, "/mcp/tools", &agent, &session)
        .await
        .unwrap();
    assert_eq!(deleted, 200);
    let withdrawn = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["detail"]["event"] == "approval_withdrawn"
        })
        .await
        .unwrap();
    assert_eq!(
        withdrawn["detail"]["approval_id"],
        id.as_str(),
        "{withdrawn}"
    );
    assert_eq!(
        withdrawn["detail"]["why"], "its MCP session ended",
        "{withdrawn}"
    );
    // Approvers no longer see it (the other session's still waits), and a vote on it is told
    // why.
    assert_eq!(pending(&w, 1).await, vec![other]);
    let shown = text(&w.cli(&["approvals", "show", &id]).await.unwrap());
    assert!(shown.contains("status:    withdrawn"), "{shown}");
    let code = oathtool(&alice, 1);
    let out = w
        .cli(&[
            "approvals",
            "approve",
            &id,
            "--as",
            "alice",
            "--code",
            &code,
        ])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("this request was withdrawn: its MCP session ended"),
        "{}",
        text(&out)
    );
    call.abort();
    other_call.abort();
}

#[tokio::test]
async fn a_held_server_requests_approval_is_withdrawn_when_warden_stops() {
    let mut w = warden_holding_sampling().await;
    let agent = w.token("e2e-agent").await.unwrap();
    let (_session, call) = held_sampling(&w, &agent).await;
    let id = pending(&w, 1).await.remove(0);
    w.signal(libc::SIGTERM).unwrap();
    // The server, still connected, hears that its request was withdrawn: the agent's call
    // that made it ask ends with that, before Warden stops.
    let answer = call
        .await
        .unwrap()
        .expect("the agent's call is answered")
        .text()
        .await
        .unwrap();
    assert!(answer.contains("Warden stopped"), "{answer}");
    let status = w.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{status}\n{}", w.output());

    // Recorded before the stop record, in a log that verifies.
    let records = w.audit_records();
    let at = |event: &str| {
        records
            .iter()
            .position(|r| r["detail"]["event"] == event)
            .unwrap_or_else(|| panic!("no {event} record"))
    };
    let withdrawn = &records[at("approval_withdrawn")];
    assert_eq!(
        withdrawn["detail"]["approval_id"],
        id.as_str(),
        "{withdrawn}"
    );
    assert_eq!(withdrawn["detail"]["why"], "Warden stopped", "{withdrawn}");
    assert!(at("approval_withdrawn") < at("stop"), "{records:?}");
    let dir = w.audit_dir();
    let verified = w
        .cli(&["audit", "verify", dir.to_str().unwrap()])
        .await
        .unwrap();
    assert!(verified.status.success(), "{}", text(&verified));

    // Approvers no longer see it: the store says it was withdrawn, and why.
    let listed = text(&w.cli(&["approvals", "list"]).await.unwrap());
    assert!(!listed.contains(&id), "{listed}");
    let shown = text(&w.cli(&["approvals", "show", &id]).await.unwrap());
    assert!(shown.contains("status:    withdrawn"), "{shown}");
    assert!(shown.contains("Warden stopped"), "{shown}");
}
