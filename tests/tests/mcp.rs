//! MCP through Warden, with the official MCP Python SDK as the agent and real MCP servers from
//! npm behind it: sessions, federated names, lists filtered per agent by Cedar, tool calls
//! judged (a denied call is a tool result with `isError` that gives the policy's reason and the
//! decision id), progress streamed, cancellations passed on, an upstream restart survived, the
//! agent's credential kept from the upstream, 401 with the protected resource metadata, and the
//! audit records. Agents speak Streamable HTTP or the legacy HTTP+SSE transport (MCP
//! 2024-11-05), and remote servers are reached over either.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::mcp::{self, Double, EverythingHttp, EverythingSse, Transport};
use warden_e2e::sse::{self, EventReader};
use warden_e2e::warden::{Warden, WardenBuilder};

/// The reason of the policy that keeps `restricted` from `echo`.
const ECHO_REASON: &str = "echo is not for restricted agents";

const POLICIES: &str = r#"
@id("mcp-echo-restricted")
@reason("echo is not for restricted agents")
forbid (principal == Agent::"restricted", action == Action::"mcp:call_tool", resource == Tool::"everything/echo");

@id("mcp-research-restricted")
@reason("research is not for restricted agents")
forbid (principal == Agent::"restricted", action == Action::"mcp:call_tool", resource == Tool::"everything/simulate-research-query");

@id("mcp-no-env")
@reason("the server's environment stays private")
forbid (principal, action == Action::"mcp:call_tool", resource == Tool::"everything/get-env");
"#;

/// Warden with the endpoint `/mcp/tools` combining `servers` (`mcp.servers` entries).
async fn warden(
    servers: Vec<Value>,
    customize: impl FnOnce(WardenBuilder) -> WardenBuilder,
) -> Warden {
    let names: Vec<Value> = servers.iter().map(|s| s["name"].clone()).collect();
    let builder = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": servers, "endpoints": [{"name": "tools", "servers": names}]}),
        )
        .policy("mcp.cedar", POLICIES);
    customize(builder).start().await.expect("warden starts")
}

/// A session of `token`'s agent with `/mcp/tools` over `transport` running `steps`; a failure
/// shows Warden's output.
async fn session_at_tools(transport: Transport, w: &Warden, token: &str, steps: Value) -> Value {
    mcp::session_over(transport, w, &w.url("/mcp/tools"), token, steps)
        .await
        .unwrap_or_else(|e| panic!("{transport:?}: {e:#}\n{}", w.output()))
}

/// A call of server-everything's long-running operation: `duration` seconds in `steps` steps,
/// its progress counted when `progress`.
fn long_running_call(duration: u64, steps: u64, progress: bool) -> Value {
    json!({"op": "call", "name": "everything_trigger-long-running-operation",
           "arguments": {"duration": duration, "steps": steps}, "progress": progress})
}

fn step(r: &Value, i: usize) -> &Value {
    &r["steps"][i]
}

fn names(v: &Value) -> Vec<String> {
    v["names"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect()
}

/// Over either transport (Streamable HTTP, or the legacy HTTP+SSE transport with the SDK's
/// `sse_client`), the same judging: lists filtered per agent, each call decided by Cedar.
#[tokio::test]
async fn tools_are_listed_per_agent_and_each_call_is_judged_by_cedar() {
    for transport in Transport::ALL {
        tools_are_judged_over(transport).await;
    }
}

async fn tools_are_judged_over(transport: Transport) {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let restricted = w.token("restricted").await.unwrap();

    let steps = json!([
        {"op": "list_tools"},
        {"op": "call", "name": "everything_echo", "arguments": {"message": "hello"}},
        {"op": "call", "name": "everything_get-env", "arguments": {}},
    ]);
    let r = session_at_tools(transport, &w, &agent, steps.clone()).await;
    assert_eq!(r["initialize"]["server"], "warden", "{transport:?}: {r}");
    assert!(
        ["2025-11-25", "2025-06-18", "2025-03-26"]
            .contains(&r["initialize"]["protocolVersion"].as_str().unwrap_or("")),
        "{r}"
    );
    let listed = names(step(&r, 0));
    assert!(listed.contains(&"everything_echo".to_owned()), "{listed:?}");
    assert!(
        !listed.contains(&"everything_get-env".to_owned()),
        "a tool no agent may call is not listed: {listed:?}"
    );
    assert_eq!(step(&r, 1)["isError"], false, "{r}");
    assert!(
        step(&r, 1)["text"].as_str().unwrap().contains("hello"),
        "{r}"
    );
    // Called anyway: a tool result with isError that tells the model why.
    let denied = step(&r, 2);
    assert_eq!(denied["isError"], true, "{r}");
    assert!(
        denied["text"]
            .as_str()
            .unwrap()
            .contains("the server's environment stays private"),
        "{denied}"
    );

    let r = session_at_tools(transport, &w, &restricted, steps).await;
    let listed = names(step(&r, 0));
    assert!(
        !listed.contains(&"everything_echo".to_owned()),
        "{listed:?}"
    );
    assert!(
        !listed.is_empty(),
        "the other tools stay listed: {listed:?}"
    );
    let denied = step(&r, 1);
    assert_eq!(denied["isError"], true, "{r}");
    let text = denied["text"].as_str().unwrap();
    assert!(text.contains(ECHO_REASON), "{text}");

    // Audit: the denied call's decision names the tool, the agent and the policy, with a
    // digest of the arguments (not the arguments: audit.record_content is off); its outcome
    // says isError. The allowed call's decision and outcome are there too.
    let decision = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "decision"
                && e["principal"]["id"] == "restricted"
                && e["decision"] == "deny"
        })
        .await
        .unwrap();
    assert_eq!(decision["action"], "mcp:call_tool", "{decision}");
    assert_eq!(
        decision["resource"], r#"Tool::"everything/echo""#,
        "{decision}"
    );
    assert_eq!(
        decision["policies"],
        json!(["mcp-echo-restricted"]),
        "{decision}"
    );
    assert!(
        decision["content_digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{decision}"
    );
    assert!(decision.get("content").is_none(), "{decision}");
    let decision_id = decision["decision_id"].as_str().unwrap();
    assert!(
        text.contains(decision_id),
        "the refusal names the decision: {text}"
    );
    let allowed = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "outcome"
                && e["principal"]["id"] == "e2e-agent"
                && e["action"] == "mcp:call_tool"
                && e["outcome"]["is_error"] == false
        })
        .await
        .unwrap();
    assert_eq!(
        allowed["resource"], r#"Tool::"everything/echo""#,
        "{allowed}"
    );
}

/// Progress notifications reach the agent before the result: in the POST's event stream, or
/// on the session's stream of the legacy transport.
#[tokio::test]
async fn progress_notifications_stream_to_the_agent() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let agent = w.token("e2e-agent").await.unwrap();
    for transport in Transport::ALL {
        let call = long_running_call(1, 3, true);
        let r = session_at_tools(transport, &w, &agent, json!([call])).await;
        let call = step(&r, 0);
        assert_eq!(call["isError"], false, "{transport:?}: {r}");
        assert!(
            call["progress"].as_u64().unwrap() >= 2,
            "{transport:?}: progress reached the agent: {r}"
        );
    }
}

#[tokio::test]
async fn the_agent_session_survives_a_restart_of_its_local_server() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let r = mcp::tools_session(
        &w,
        json!([
            {"op": "call", "name": "everything_echo", "arguments": {"message": "before"}},
            {"op": "kill_upstream", "pattern": "server-everything"},
            {"op": "sleep", "seconds": 1.5},
            {"op": "call", "name": "everything_echo", "arguments": {"message": "after"}},
        ]),
    )
    .await
    .unwrap();
    assert!(
        step(&r, 0)["text"].as_str().unwrap().contains("before"),
        "{r}"
    );
    assert!(step(&r, 1)["killed"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(step(&r, 3)["isError"], false, "{r}");
    assert!(
        step(&r, 3)["text"].as_str().unwrap().contains("after"),
        "{r}"
    );
}

#[tokio::test]
async fn a_servers_request_reaches_the_agent_and_its_answer_returns_to_that_server() {
    let remote = EverythingHttp::start().await.unwrap();
    let w = warden(
        vec![
            mcp::everything_stdio("everything"),
            json!({"name": "remote", "url": remote.url()}),
        ],
        |b| b,
    )
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    let call = |server: &str| {
        json!({"op": "call", "name": format!("{server}_trigger-sampling-request"),
               "arguments": {"prompt": "say hi", "maxTokens": 10}})
    };
    let r = mcp::session_with(
        &w,
        &w.url("/mcp/tools"),
        &agent,
        json!([call("everything"), call("remote")]),
        Some("sampled by the agent"),
    )
    .await
    .unwrap();
    // The servers offer the tool only because Warden passed on the agent's sampling capability.
    for i in 0..2 {
        assert_eq!(step(&r, i)["isError"], false, "{r}");
        assert!(
            step(&r, i)["text"]
                .as_str()
                .unwrap()
                .contains("sampled by the agent"),
            "{r}"
        );
    }
    assert_eq!(r["sampled"], 2, "{r}");
}

#[tokio::test]
async fn two_servers_with_the_same_tool_name_never_shadow_each_other() {
    let remote = EverythingHttp::start().await.unwrap();
    let double = Double::start().await.unwrap();
    let w = warden(
        vec![
            mcp::everything_stdio("everything"),
            json!({"name": "remote", "url": remote.url()}),
            json!({"name": "double", "url": double.url()}),
        ],
        |b| b,
    )
    .await;
    let r = mcp::tools_session(
        &w,
        json!([
            {"op": "list_tools"},
            {"op": "call", "name": "double_echo", "arguments": {"message": "one"}},
            {"op": "call", "name": "remote_echo", "arguments": {"message": "two"}},
            {"op": "call", "name": "everything_echo", "arguments": {"message": "three"}},
        ]),
    )
    .await
    .unwrap();
    let listed = names(step(&r, 0));
    for name in ["everything_echo", "remote_echo", "double_echo"] {
        assert!(listed.contains(&name.to_owned()), "{name} in {listed:?}");
    }
    assert_eq!(step(&r, 1)["text"], "double: one", "{r}");
    let two = step(&r, 2)["text"].as_str().unwrap();
    assert!(two.contains("two") && !two.starts_with("double"), "{r}");
    let three = step(&r, 3)["text"].as_str().unwrap();
    assert!(
        three.contains("three") && !three.starts_with("double"),
        "{r}"
    );
}

/// The remote double, over the legacy HTTP+SSE transport or Streamable HTTP, behind a Warden
/// that sends it the credential `upstream-secret-for-double` (with `inject` settings, if
/// any), and a session of `e2e-agent` calling its `whoami`: the Warden, the agent's token
/// and the session's result.
async fn whoami_through_double(legacy: bool, inject: Option<Value>) -> (Warden, String, Value) {
    let (double, transport) = if legacy {
        (Double::start_sse().await.unwrap(), "sse")
    } else {
        (Double::start().await.unwrap(), "streamable_http")
    };
    let mut server = json!({"name": "double", "url": double.url(), "transport": transport,
                            "credential": {"env": "DOUBLE_KEY"}});
    if let Some(inject) = inject {
        server["inject"] = inject;
    }
    let w = warden(vec![server], |b| {
        b.env("DOUBLE_KEY", "upstream-secret-for-double")
    })
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    let r = mcp::session(
        &w,
        &w.url("/mcp/tools"),
        &agent,
        json!([{"op": "call", "name": "double_whoami", "arguments": {}}]),
    )
    .await
    .unwrap();
    (w, agent, r)
}

/// Over Streamable HTTP and over the legacy transport (its event stream and every POST).
#[tokio::test]
async fn the_agents_credential_never_reaches_the_upstream_and_the_servers_does() {
    for legacy in [false, true] {
        // The double's `whoami` quotes the credential back: shown as it is here.
        let (_w, agent, r) = whoami_through_double(legacy, Some(json!({"redact": false}))).await;
        let text = step(&r, 0)["text"].as_str().unwrap();
        let seen: Vec<Value> = serde_json::from_str(text).unwrap();
        assert!(!seen.is_empty(), "{r}");
        for request in &seen {
            assert_eq!(
                request["authorization"], "Bearer upstream-secret-for-double",
                "every request carries the server's credential: {seen:?}"
            );
        }
        assert!(
            !text.contains(&agent),
            "the agent's token reached the upstream: {text}"
        );
        let requests: Vec<&str> = seen.iter().filter_map(|s| s["request"].as_str()).collect();
        if legacy {
            assert_eq!(requests.first(), Some(&"GET /sse"), "{seen:?}");
            assert!(
                requests.iter().filter(|r| **r == "POST /messages").count() >= 3,
                "{seen:?}"
            );
        } else {
            // The session id the double issued goes back to it on later requests.
            assert!(
                seen.iter()
                    .any(|r| r["mcp-session-id"] == "double-session-1"),
                "{seen:?}"
            );
        }
    }
}

/// A server that echoes its own credential (the double's `whoami`, an error quoting a header)
/// shows the agent `[REDACTED]` instead, over both transports.
#[tokio::test]
async fn a_server_echoing_its_credential_shows_the_agent_redacted() {
    for legacy in [false, true] {
        let (w, _, r) = whoami_through_double(legacy, None).await;
        let text = step(&r, 0)["text"].as_str().unwrap();
        assert!(text.contains("Bearer [REDACTED]"), "{text}");
        assert!(!r.to_string().contains("upstream-secret-for-double"), "{r}");
        assert!(!w.output().contains("upstream-secret-for-double"));
    }
}

#[tokio::test]
async fn a_request_without_a_credential_gets_401_naming_the_protected_resource_metadata() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| {
        b.trust_issuer("https://idp.example.test", &["warden"])
    })
    .await;
    let response = w
        .http()
        .post(w.url("/mcp/tools"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let expected = w.url("/.well-known/oauth-protected-resource/mcp/tools");
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{expected}\"")
    );
    let metadata: Value = w
        .http()
        .get(&expected)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], w.url("/mcp/tools"), "{metadata}");
    assert_eq!(
        metadata["authorization_servers"],
        json!(["https://idp.example.test"]),
        "{metadata}"
    );
    let root: Value = w
        .http()
        .get(w.url("/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        root["authorization_servers"],
        json!(["https://idp.example.test"]),
        "{root}"
    );
}

#[tokio::test]
async fn a_session_is_bound_to_the_agent_that_opened_it() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let other = w.token("other-agent").await.unwrap();
    let post = |token: &str, session: Option<&str>, body: Value| {
        let mut request = w
            .http()
            .post(w.url("/mcp/tools"))
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            request = request.header("mcp-session-id", s);
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = post(&agent, None, init).await.unwrap();
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(session.len(), 64, "{session}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["protocolVersion"], "2025-06-18", "{body}");
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    assert_eq!(
        post(&agent, Some(&session), ping.clone())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        post(&other, Some(&session), ping.clone())
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        post(&agent, None, ping.clone()).await.unwrap().status(),
        400
    );
    // Batches, duplicate keys and odd ids are refused, never forwarded.
    for body in [
        r#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"everything_echo","name":"everything_get-env"}}"#,
        // A Go server would take `Name` for `name`, the last one winning.
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"everything_echo","arguments":{},"Name":"get-env"}}"#,
        r#"{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}"#,
    ] {
        let response = w
            .http()
            .post(w.url("/mcp/tools"))
            .bearer_auth(&agent)
            .header("mcp-session-id", &session)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error"]["code"].as_i64().is_some(), "{answer}");
    }
    let foreign = w
        .http()
        .post(w.url("/mcp/tools"))
        .bearer_auth(&agent)
        .header("mcp-session-id", &session)
        .header("origin", "http://evil.example")
        .json(&json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403, "a page of another site is refused");
    let delete = w
        .http()
        .delete(w.url("/mcp/tools"))
        .bearer_auth(&agent)
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 200);
    assert_eq!(
        post(&agent, Some(&session), ping).await.unwrap().status(),
        404
    );
}

/// An `initialize` (revision 2025-11-25) posted to `/mcp/tools`, to add a credential or
/// headers to.
fn initialize(w: &Warden) -> reqwest::RequestBuilder {
    w.http()
        .post(w.url("/mcp/tools"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}))
}

/// One agent holds at most `mcp.max_sessions_per_agent` sessions, and as many legacy event
/// streams: past them it is refused (429) while another agent still opens its own, and an
/// ended session gives its place back.
#[tokio::test]
async fn one_agent_cannot_take_every_session() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| {
        b.set("/mcp/max_sessions_per_agent", json!(2))
    })
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    let other = w.token("other-agent").await.unwrap();
    let init = |token: &str| initialize(&w).bearer_auth(token).send();
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let response = init(&agent).await.unwrap();
        assert_eq!(response.status(), 200);
        sessions.push(
            response.headers()["mcp-session-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    let refused = init(&agent).await.unwrap();
    assert_eq!(refused.status(), 429);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["data"]["code"], "mcp_agent_sessions_exhausted",
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("mcp.max_sessions_per_agent"),
        "{body}"
    );
    assert_eq!(
        children_running(&w, "server-everything"),
        2,
        "no third server started"
    );
    assert_eq!(
        init(&other).await.unwrap().status(),
        200,
        "another agent opens its own"
    );
    let delete = w
        .http()
        .delete(w.url("/mcp/tools"))
        .bearer_auth(&agent)
        .header("mcp-session-id", &sessions[0])
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 200);
    assert_eq!(
        init(&agent).await.unwrap().status(),
        200,
        "the ended session's place"
    );

    // Legacy event streams, counted apart.
    let open = |token: &str| {
        w.http()
            .get(w.url("/mcp/tools/sse"))
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .send()
    };
    let _first = open(&agent).await.unwrap();
    let _second = open(&agent).await.unwrap();
    assert_eq!(_second.status(), 200);
    assert_eq!(open(&agent).await.unwrap().status(), 429);
    assert_eq!(open(&other).await.unwrap().status(), 200);
}

/// `initialize` counts against the agent's rate limits, as any request does.
#[tokio::test]
async fn initialize_is_rate_limited_like_any_request() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| {
        b.set(
            "/rate_limits",
            json!({"rules": [{"scope": "agent", "match": "e2e-agent", "rate": 0.001, "burst": 1}]}),
        )
    })
    .await;
    let init = |token: String| initialize(&w).bearer_auth(token).send();
    let agent = w.token("e2e-agent").await.unwrap();
    assert_eq!(init(agent.clone()).await.unwrap().status(), 200);
    let limited = init(agent).await.unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    let other = w.token("other-agent").await.unwrap();
    assert_eq!(init(other).await.unwrap().status(), 200);
}

/// DNS rebinding without authentication: a page at `evil.example` that rebinds its name to
/// Warden's loopback address sends `Host: evil.example:<port>` and a matching `Origin`; it is
/// refused, while a client that names this machine is served, and an authenticated agent is
/// judged by its credential.
#[tokio::test]
async fn without_a_credential_only_requests_naming_this_machine_are_served() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| {
        b.set("/identity/required", json!(false))
    })
    .await;
    let port = reqwest::Url::parse(&w.url("/")).unwrap().port().unwrap();
    let init = |host: String, origin: Option<String>| {
        let mut request = initialize(&w).header("host", host);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let rebound = format!("evil.example:{port}");
    let refused = init(rebound.clone(), Some(format!("http://{rebound}")))
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["x-warden-error"], "mcp_origin_refused");
    assert_eq!(init(rebound, None).await.unwrap().status(), 403);
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let origin = Some(format!("http://{host}"));
        assert_eq!(init(host, origin).await.unwrap().status(), 200);
    }
}

/// Writes allowed only under one folder, decided by Cedar on `context.arguments.path`; `..`
/// refused by policy, a symlink out of the folder refused by the server Warden confines to it.
#[tokio::test]
async fn filesystem_writes_are_allowed_only_under_one_folder() {
    let root = tempfile::tempdir().unwrap();
    let allowed = root.path().join("allowed");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&allowed).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
    let allowed_dir = allowed.canonicalize().unwrap();
    let policy = format!(
        r#"
@id("fs-writes-in-allowed")
@reason("writes are allowed only under the allowed folder")
forbid (principal, action == Action::"mcp:call_tool", resource == Tool::"files/write_file")
unless {{ context.arguments.path like "{dir}/*" && !(context.arguments.path like "*..*") }};
"#,
        dir = allowed_dir.display()
    );
    // The server itself is confined to the folder: a symlink out of it is its to refuse
    // (Warden judges the path as written; only the server sees where a link leads).
    // The argument types of server-filesystem's tools (the fragment `warden policy schema
    // --from-mcp` wrote from its tools/list), for this test's server name.
    let fragment = std::fs::read_to_string(
        warden_e2e::paths::repo_root().join("policies/examples/mcp-filesystem.cedarschema"),
    )
    .unwrap()
    .replace(r#"@mcp_server("filesystem")"#, r#"@mcp_server("files")"#)
    .replace("namespace Mcp_filesystem", "namespace Mcp_files");
    let w = warden(vec![mcp::filesystem_stdio("files", &allowed_dir)], |b| {
        b.policy("fs.cedar", &policy)
            .policy("files.cedarschema", &fragment)
    })
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    let inside = allowed_dir.join("note.txt");
    let dotdot = format!("{}/../outside/dotdot.txt", allowed_dir.display());
    let via_link = allowed_dir.join("link/linked.txt");
    let elsewhere = outside.canonicalize().unwrap().join("direct.txt");
    let r = mcp::session(
        &w,
        &w.url("/mcp/tools"),
        &agent,
        json!([
            {"op": "call", "name": "files_write_file", "arguments": {"path": inside, "content": "ok"}},
            {"op": "call", "name": "files_write_file", "arguments": {"path": elsewhere, "content": "no"}},
            {"op": "call", "name": "files_write_file", "arguments": {"path": dotdot, "content": "no"}},
            {"op": "call", "name": "files_write_file", "arguments": {"path": via_link, "content": "no"}},
        ]),
    )
    .await
    .unwrap();
    assert_eq!(step(&r, 0)["isError"], false, "{r}");
    assert_eq!(std::fs::read_to_string(&inside).unwrap(), "ok");
    for i in 1..=2 {
        assert_eq!(step(&r, i)["isError"], true, "{r}");
        assert!(
            step(&r, i)["text"]
                .as_str()
                .unwrap()
                .contains("only under the allowed folder"),
            "{r}"
        );
    }
    assert_eq!(
        step(&r, 3)["isError"],
        true,
        "the server refuses the link: {r}"
    );
    assert!(
        std::fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing was written outside"
    );
}

/// Warden's child processes whose command line contains `pattern`.
fn children_running(warden: &Warden, pattern: &str) -> usize {
    let root = warden.pid().unwrap_or_default();
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let parent: u32 = after
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if parent == root && String::from_utf8_lossy(&cmdline).contains(pattern) {
            count += 1;
        }
    }
    count
}

/// Over Streamable HTTP, and over the legacy transport (whose stream Warden then closes).
#[tokio::test]
async fn an_unused_session_ends_after_its_idle_timeout_and_its_server_with_it() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| {
        b.set("/mcp/session_idle_timeout", json!("1s"))
    })
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    let post = |session: Option<&str>, body: Value| {
        let mut request = w
            .http()
            .post(w.url("/mcp/tools"))
            .bearer_auth(&agent)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(s) = session {
            request = request.header("mcp-session-id", s);
        }
        request.send()
    };
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = post(None, init).await.unwrap();
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        children_running(&w, "server-everything"),
        1,
        "one server per session"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ping = json!({"jsonrpc": "2.0", "id": 2, "method": "ping"});
    assert_eq!(post(Some(&session), ping).await.unwrap().status(), 404);
    let no_server_left = || async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while children_running(&w, "server-everything") > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the session's server still runs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    no_server_left().await;

    // A legacy session rests past its idle timeout: Warden closes its stream and ends it.
    let (mut stream, endpoint) = open_legacy(&w, &agent).await;
    let messages = w.url(&endpoint);
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let post_legacy = |body: &str| {
        w.http()
            .post(&messages)
            .bearer_auth(&agent)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };
    assert_eq!(post_legacy(init).await.unwrap().status(), 202);
    answer(&mut stream, json!(1)).await;
    assert_eq!(children_running(&w, "server-everything"), 1);
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = stream.next(Duration::from_secs(10)).await.unwrap() {
            assert!(event.json().get("id").is_none(), "{event:?}");
        }
    })
    .await;
    assert!(ended.is_ok(), "the stream of an idle session stays open");
    let ping = r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    assert_eq!(post_legacy(ping).await.unwrap().status(), 404);
    no_server_left().await;
}

/// A remote server over the legacy HTTP+SSE transport (`transport: sse`): server-everything in
/// its `sse` mode, driven through Warden by the official SDK over Streamable HTTP. Its tools
/// are listed and called, progress comes through, and when the server restarts, Warden
/// connects to it again and the agent's session goes on.
#[tokio::test]
async fn a_remote_server_over_the_legacy_sse_transport_is_reached_and_reconnected() {
    let mut remote = EverythingSse::start().await.unwrap();
    let w = warden(
        vec![json!({"name": "everything", "url": remote.url(), "transport": "sse"})],
        |b| b,
    )
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    let signals = tempfile::tempdir().unwrap();
    let before = signals.path().join("before-restart");
    let after = signals.path().join("after-restart");
    let url = w.url("/mcp/tools");
    let client = mcp::session(
        &w,
        &url,
        &agent,
        json!([
            {"op": "list_tools"},
            {"op": "call", "name": "everything_echo", "arguments": {"message": "over sse"}},
            long_running_call(1, 3, true),
            {"op": "touch", "path": before},
            {"op": "wait_for", "path": after},
            {"op": "call", "name": "everything_echo", "arguments": {"message": "after restart"}},
        ]),
    );
    let restart = async {
        let deadline = tokio::time::Instant::now() + mcp::CLIENT_TIMEOUT;
        while !before.exists() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the session did not get there"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        remote.restart().await.unwrap();
        std::fs::write(&after, "").unwrap();
    };
    let (r, ()) = tokio::join!(client, restart);
    let r = r.unwrap();
    assert!(
        names(step(&r, 0)).contains(&"everything_echo".to_owned()),
        "{r}"
    );
    assert_eq!(step(&r, 1)["isError"], false, "{r}");
    assert!(
        step(&r, 1)["text"].as_str().unwrap().contains("over sse"),
        "{r}"
    );
    assert!(step(&r, 2)["progress"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(step(&r, 5)["isError"], false, "{r}");
    assert!(
        step(&r, 5)["text"]
            .as_str()
            .unwrap()
            .contains("after restart"),
        "the session goes on with the restarted server: {r}"
    );
}

/// A request under way keeps its session: a tool call that outlasts the idle timeout is
/// answered (the legacy transport's stream is not closed under it) and the session goes on
/// after it, its idle clock started again when the call ended.
#[tokio::test]
async fn a_call_longer_than_the_idle_timeout_is_answered_and_its_session_goes_on() {
    // Idle 6 s, the call 10 s: the agent's own pauses between its messages (over 2 s on a
    // loaded machine) stay within the idle timeout, the call outlasts it.
    let w = warden(vec![mcp::everything_stdio("everything")], |b| {
        b.set("/mcp/session_idle_timeout", json!("6s"))
    })
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    for transport in Transport::ALL {
        let echo =
            json!({"op": "call", "name": "everything_echo", "arguments": {"message": "after"}});
        let r = session_at_tools(
            transport,
            &w,
            &agent,
            json!([long_running_call(10, 2, false), echo]),
        )
        .await;
        assert_eq!(step(&r, 0)["isError"], false, "{transport:?}: {r}");
        assert!(
            step(&r, 1)["text"].as_str().unwrap().contains("after"),
            "{transport:?}: the session goes on after the long call: {r}"
        );
    }
}

/// The answer to request `id` on a legacy session's stream (the servers' own notifications
/// come too).
async fn answer(stream: &mut EventReader, id: Value) -> Value {
    loop {
        let event = stream.next(Duration::from_secs(20)).await.unwrap().unwrap();
        assert_eq!(event.name.as_deref(), Some("message"), "{event:?}");
        let message = event.json();
        if message.get("id") == Some(&id) {
            return message;
        }
        assert!(
            message.get("id").is_none(),
            "an answer to another request: {message}"
        );
    }
}

/// Opens a legacy session's stream as `token`'s agent: the stream and where to post.
async fn open_legacy(w: &Warden, token: &str) -> (EventReader, String) {
    let opened = w
        .http()
        .get(w.url("/mcp/tools/sse"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    assert!(
        opened.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = EventReader::new(opened);
    let endpoint = stream
        .next(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the endpoint event");
    assert_eq!(endpoint.name.as_deref(), Some("endpoint"));
    (stream, endpoint.data)
}

/// A legacy session is its stream's and its principal's: the endpoint event names where to
/// post, answers come on the stream, another agent posting to the session gets 404 (and
/// nothing reaches the stream), an unknown session 404, a POST without one or with a body that
/// is not one JSON-RPC message 400, and when the agent closes the stream the session ends.
#[tokio::test]
async fn a_legacy_session_is_bound_to_its_stream_and_its_agent() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let other = w.token("other-agent").await.unwrap();
    let unauthenticated = w.http().get(w.url("/mcp/tools/sse")).send().await.unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let (mut stream, endpoint) = open_legacy(&w, &agent).await;
    let session = endpoint
        .strip_prefix("/mcp/tools/messages?session_id=")
        .unwrap_or_else(|| panic!("{endpoint}"))
        .to_owned();
    assert_eq!(session.len(), 64, "{session}");
    let messages = w.url(&endpoint);
    let post = |token: &str, url: &str, body: &str| {
        w.http()
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
    };

    // Before initialize, a request is answered on the stream with an error naming its id.
    let early = post(
        &agent,
        &messages,
        r#"{"jsonrpc":"2.0","id":"e","method":"tools/list"}"#,
    );
    assert_eq!(early.await.unwrap().status(), 202);
    let refused = answer(&mut stream, json!("e")).await;
    assert_eq!(
        refused["error"]["data"]["code"], "mcp_session_not_initialised",
        "{refused}"
    );

    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    assert_eq!(post(&agent, &messages, init).await.unwrap().status(), 202);
    let initialized = answer(&mut stream, json!(1)).await;
    assert_eq!(
        initialized["result"]["serverInfo"]["name"], "warden",
        "{initialized}"
    );
    assert_eq!(
        initialized["result"]["protocolVersion"], "2024-11-05",
        "{initialized}"
    );

    // Another agent's POST to this session: 404, as for a session that never was.
    let ping = r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#;
    let foreign = post(&other, &messages, ping).await.unwrap();
    assert_eq!(foreign.status(), 404);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(
        body["error"]["data"]["code"], "mcp_session_unknown",
        "{body}"
    );
    let unknown = w.url(&format!(
        "/mcp/tools/messages?session_id={}",
        "0".repeat(64)
    ));
    let response = post(&agent, &unknown, ping).await.unwrap();
    assert_eq!(response.status(), 404);
    assert_error_says(response, "no such MCP session").await;
    let missing = post(&agent, &w.url("/mcp/tools/messages"), ping)
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    for bad in [
        r#"[{"jsonrpc":"2.0","id":3,"method":"ping"}]"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"everything_echo","name":"everything_get-env"}}"#,
        "not json",
    ] {
        let response = post(&agent, &messages, bad).await.unwrap();
        assert_eq!(response.status(), 400, "{bad}");
    }
    // The agent's own ping is answered on the stream, and nothing of the others' reached it.
    assert_eq!(post(&agent, &messages, ping).await.unwrap().status(), 202);
    let pong = answer(&mut stream, json!("p")).await;
    assert_eq!(pong, json!({"jsonrpc": "2.0", "id": "p", "result": {}}));

    // The agent closes the stream: the session ends.
    drop(stream);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = post(&agent, &messages, ping).await.unwrap().status();
        if status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session outlived its stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Neither transport answers other methods or paths.
    for (method, path, status) in [
        (reqwest::Method::DELETE, "/mcp/tools/sse", 405),
        (reqwest::Method::GET, "/mcp/tools/messages", 405),
        (reqwest::Method::GET, "/mcp/tools/elsewhere", 404),
    ] {
        let response = w
            .http()
            .request(method, w.url(path))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
}

/// An agent that cancels a call (the SDK abandons it and sends `notifications/cancelled`),
/// over either transport: the cancellation reaches the server the call went to, under the id
/// Warden gave the call there, while the server still works on it (it answers only when done),
/// and the call's outcome says it was cancelled.
#[tokio::test]
async fn a_cancelled_call_is_cancelled_at_its_server() {
    for transport in Transport::ALL {
        let double = Double::start().await.unwrap();
        let w = warden(vec![json!({"name": "double", "url": double.url()})], |b| b).await;
        let agent = w.token("e2e-agent").await.unwrap();
        // The call is cancelled once it has reached the server (which says so with a file);
        // the session stays open until the test has seen what came of it (the SDK posts the
        // cancellation in the background: ending the session at once would race it).
        let signals = tempfile::tempdir().unwrap();
        let reached = signals.path().join("waiting");
        let reached = reached.to_str().unwrap();
        let seen_all = signals.path().join("seen");
        let steps = json!([
            {"op": "cancel_call", "name": "double_wait",
             "arguments": {"seconds": 30, "touch": reached}, "when": reached},
            {"op": "wait_for", "path": seen_all},
        ]);
        let url = w.url("/mcp/tools");
        let session = mcp::session_over(transport, &w, &url, &agent, steps);
        let observed = async {
            // The cancellation reaches the server a moment after the agent sent it: asked
            // until it has (at most 100 times, 100 ms apart).
            let mut seen = double.reached().await.unwrap();
            for _ in 0..100 {
                if !cancellations(&seen).is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                seen = double.reached().await.unwrap();
            }
            let outcome = w
                .wait_for_audit(Duration::from_secs(10), |e| {
                    e["kind"] == "outcome" && e["resource"] == r#"Tool::"double/wait""#
                })
                .await;
            std::fs::write(&seen_all, "").unwrap();
            (seen, outcome.unwrap())
        };
        let (r, (seen, outcome)) = tokio::join!(session, observed);
        let r = r.unwrap();
        assert_eq!(step(&r, 0)["cancelled"], true, "{transport:?}: {r}");
        let waits = seen["waits"].as_array().unwrap();
        assert_eq!(waits.len(), 1, "{transport:?}: {seen}");
        let cancelled = cancellations(&seen);
        assert_eq!(cancelled.len(), 1, "{transport:?}: {seen}");
        assert_eq!(
            cancelled[0]["params"]["requestId"], waits[0],
            "{transport:?}: the cancellation names the call as the server knows it: {seen}"
        );
        assert_eq!(
            outcome["outcome"]["error"], "cancelled by the agent",
            "{transport:?}: {outcome}"
        );
    }
}

/// The `notifications/cancelled` among what reached the double ([`Double::reached`]).
fn cancellations(seen: &Value) -> Vec<&Value> {
    seen["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["method"] == "notifications/cancelled")
        .collect()
}

/// An agent session over Streamable HTTP opened with raw requests: its `Mcp-Session-Id`.
async fn raw_session(w: &Warden, token: &str) -> String {
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let response = raw_post(w, token, None, &init).await;
    assert_eq!(response.status(), 200);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(
        raw_post(w, token, Some(&session), &initialized)
            .await
            .status(),
        202
    );
    session
}

async fn raw_post(
    w: &Warden,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = w
        .http()
        .post(w.url("/mcp/tools"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18")
        .json(body);
    if let Some(s) = session {
        request = request.header("mcp-session-id", s);
    }
    request.send().await.unwrap()
}

/// `GET` of the session's event stream, resuming after `last` when given.
async fn raw_get(w: &Warden, token: &str, session: &str, last: Option<&str>) -> reqwest::Response {
    let mut request = w
        .http()
        .get(w.url("/mcp/tools"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session);
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    request.send().await.unwrap()
}

/// A slow tool call of server-everything that reports progress every 0.5 s, answered as an
/// event stream: the stream, and its first event (a progress notification with an id).
async fn long_call(w: &Warden, token: &str, session: &str, id: i64) -> (EventReader, sse::Event) {
    let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
        "name": "everything_trigger-long-running-operation",
        "arguments": {"duration": 3, "steps": 6},
        "_meta": {"progressToken": format!("p{id}")}}});
    let response = raw_post(w, token, Some(session), &call).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = EventReader::new(response);
    let first = stream
        .next(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("a first event");
    assert_eq!(
        first.json()["method"],
        "notifications/progress",
        "{first:?}"
    );
    assert!(first.id.is_some(), "every event carries an id: {first:?}");
    (stream, first)
}

/// The number of the event in its stream (the last part of `<tag>-<stream>-<n>`).
fn event_number(e: &sse::Event) -> u64 {
    e.id.as_deref()
        .and_then(|id| id.rsplit('-').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event id: {e:?}"))
}

/// Asserts that `response`'s JSON-RPC error message contains `text`.
async fn assert_error_says(response: reqwest::Response, text: &str) {
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(text), "{body}");
}

/// The events of `stream` until it ends.
async fn rest_of(mut stream: EventReader) -> Vec<sse::Event> {
    let mut events = Vec::new();
    while let Some(e) = stream.next(Duration::from_secs(15)).await.unwrap() {
        events.push(e);
    }
    events
}

/// The events of a resumed long call after `first`: each once, in order, the remaining
/// progress then the result of request `id`.
fn assert_rest_of_long_call(first: &sse::Event, events: &[sse::Event], id: i64) {
    let numbers: Vec<u64> = events.iter().map(event_number).collect();
    let expected: Vec<u64> = (event_number(first) + 1..).take(events.len()).collect();
    assert_eq!(
        numbers, expected,
        "each event after the last one received, once: {events:?}"
    );
    let (result, progress) = events.split_last().expect("events after the drop");
    assert_eq!(
        progress.len(),
        5,
        "the progress missed and the rest: {events:?}"
    );
    assert!(
        progress
            .iter()
            .all(|e| e.json()["method"] == "notifications/progress"),
        "{events:?}"
    );
    assert_eq!(result.json()["id"], id, "{result:?}");
    assert!(
        result.json()["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("completed"),
        "{result:?}"
    );
}

/// An agent whose connection drops in the middle of a tool call's answer stream GETs it again
/// with `Last-Event-ID`: the events it missed (held while the call went on), then the rest
/// live and the final result, each once and in order; after the call ended, the events held
/// and the result. Both outcome records say the result reached the agent. An id that is not
/// Warden's or is another session's is refused with 400, and another agent presenting the
/// session gets 404.
#[tokio::test]
async fn a_dropped_answer_stream_resumes_after_its_last_event_id() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let other = w.token("other-agent").await.unwrap();
    let session = raw_session(&w, &agent).await;

    // Resumed while the call goes on.
    let (stream, first) = long_call(&w, &agent, &session, 2).await;
    let last = first.id.clone().unwrap();
    drop(stream);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        raw_get(&w, &other, &session, Some(&last)).await.status(),
        404,
        "another agent's session does not exist"
    );
    let resumed = raw_get(&w, &agent, &session, Some(&last)).await;
    assert_eq!(resumed.status(), 200);
    assert_rest_of_long_call(&first, &rest_of(EventReader::new(resumed)).await, 2);

    // Resumed after the call ended.
    let (stream, first) = long_call(&w, &agent, &session, 3).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let resumed = raw_get(&w, &agent, &session, first.id.as_deref()).await;
    assert_eq!(resumed.status(), 200);
    assert_rest_of_long_call(&first, &rest_of(EventReader::new(resumed)).await, 3);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let outcomes = loop {
        let outcomes: Vec<Value> = w
            .audit_records()
            .into_iter()
            .filter(|e| {
                e["kind"] == "outcome"
                    && e["resource"] == r#"Tool::"everything/trigger-long-running-operation""#
            })
            .collect();
        if outcomes.len() == 2 || tokio::time::Instant::now() > deadline {
            break outcomes;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    for outcome in &outcomes {
        assert_eq!(outcome["outcome"]["is_error"], false, "{outcome}");
        assert!(
            outcome["outcome"]["error"].is_null(),
            "the result reached the agent on the resumed stream: {outcome}"
        );
    }

    let malformed = raw_get(&w, &agent, &session, Some("not-an-id")).await;
    assert_eq!(malformed.status(), 400);
    assert_error_says(malformed, "Last-Event-ID").await;
    let elsewhere = raw_session(&w, &agent).await;
    let foreign = raw_get(&w, &agent, &elsewhere, Some(&last)).await;
    assert_eq!(
        foreign.status(),
        400,
        "an id of another session names nothing here"
    );
    assert_error_says(foreign, "names no event this session sent").await;
}

/// A response the agent never collected is recorded as such once its stream is dropped
/// (`mcp.resume_window` after the call ended), and resuming it then gets 410 with what to do.
#[tokio::test]
async fn an_answer_never_collected_is_recorded_once_its_stream_is_dropped() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| {
        b.set("/mcp/resume_window", json!("1s"))
    })
    .await;
    let agent = w.token("e2e-agent").await.unwrap();
    let session = raw_session(&w, &agent).await;
    let (stream, first) = long_call(&w, &agent, &session, 2).await;
    drop(stream);
    let outcome = w
        .wait_for_audit(Duration::from_secs(15), |e| {
            e["kind"] == "outcome"
                && e["resource"] == r#"Tool::"everything/trigger-long-running-operation""#
        })
        .await
        .unwrap();
    assert_eq!(
        outcome["outcome"]["error"], "the agent disconnected before the response",
        "{outcome}"
    );
    let gone = raw_get(&w, &agent, &session, first.id.as_deref()).await;
    assert_eq!(gone.status(), 410);
    assert_eq!(gone.headers()["x-warden-error"], "mcp_resume_gone");
    assert_error_says(gone, "send the request again").await;
}

/// The official TypeScript SDK's client, whose answer stream of a slow tool call drops after
/// its first event, resumes it by itself with `Last-Event-ID` through Warden and gets every
/// progress notification and the result; the outcome record says the result reached it.
#[tokio::test]
async fn the_typescript_sdk_client_survives_a_cut_answer_stream() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let r = mcp::call_through_cut_connection(
        &w.url("/mcp/tools"),
        &agent,
        "everything_trigger-long-running-operation",
        &json!({"duration": 3, "steps": 6}),
    )
    .await
    .unwrap();
    assert_eq!(r["cut"], true, "{r}");
    assert_eq!(r["isError"], false, "{r}");
    assert!(
        r["text"].as_str().unwrap_or_default().contains("completed"),
        "{r}"
    );
    assert_eq!(
        r["progress"],
        json!([1, 2, 3, 4, 5, 6]),
        "each progress once: {r}"
    );
    let resumed = r["resumedWith"].as_array().unwrap();
    assert_eq!(resumed.len(), 1, "one GET with Last-Event-ID: {r}");
    let outcome = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "outcome"
                && e["resource"] == r#"Tool::"everything/trigger-long-running-operation""#
        })
        .await
        .unwrap();
    assert!(outcome["outcome"]["error"].is_null(), "{outcome}");
}

/// `message` posted raw to `/mcp/tools` in `session`, its body `body` sent with
/// `Content-Encoding: encoding`: the status and the body as text.
async fn post_encoded(
    w: &Warden,
    token: &str,
    session: &str,
    encoding: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let r = w
        .http()
        .post(w.url("/mcp/tools"))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .header("content-encoding", encoding)
        .header("mcp-session-id", session)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn a_compressed_message_is_decoded_judged_and_sent_on_decoded() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let token = w.token("e2e-agent").await.unwrap();
    let session = mcp::initialize_raw(&w, "/mcp/tools", &token).await.unwrap();
    let call = |id: u64, tool: &str, arguments: Value| {
        gzip(mcp::tool_call(id, tool, arguments).to_string().as_bytes())
    };
    // Judged on what it says once decoded, and the server gets it decoded.
    let (status, body) = post_encoded(
        &w,
        &token,
        &session,
        "gzip",
        call(2, "everything_echo", json!({"message": "squeezed through"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Echo: squeezed through"), "{body}");
    let (status, body) = post_encoded(
        &w,
        &token,
        &session,
        "gzip",
        call(3, "everything_get-env", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("the server's environment stays private"),
        "denied as sent plain: {body}"
    );
    // A body that is not what its header says, and a coding Warden cannot undo: refused.
    let (status, body) = post_encoded(
        &w,
        &token,
        &session,
        "gzip",
        b"{\"jsonrpc\":\"2.0\"}".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("bad_content_encoding"), "{body}");
    let (status, body) = post_encoded(
        &w,
        &token,
        &session,
        "compress",
        mcp::tool_call(4, "everything_echo", json!({"message": "x"}))
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("unsupported_content_encoding"), "{body}");
}

/// An agent that declared no tasks capability is offered none: a call with `params.task`
/// runs as a plain call, and `tasks/*` are refused.
#[tokio::test]
async fn a_task_augmented_call_runs_as_a_plain_call_when_the_agent_takes_no_tasks() {
    let w = warden(vec![mcp::everything_stdio("everything")], |b| b).await;
    let token = w.token("e2e-agent").await.unwrap();
    let session = mcp::initialize_raw(&w, "/mcp/tools", &token).await.unwrap();
    let with_task = |id: u64, tool: &str, arguments: Value| {
        let mut call = mcp::tool_call(id, tool, arguments);
        call["params"]["task"] = json!({"ttl": 60000});
        call
    };
    // A tool that may run either way answers at once, as to a plain call.
    let echo = with_task(2, "everything_echo", json!({"message": "no task"}));
    let r = mcp::post_raw(&w, "/mcp/tools", &token, Some(&session), &echo)
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("Echo: no task"), "{body}");
    assert!(!body.contains("taskId"), "{body}");
    // One that runs only as a task is refused by its server.
    let research = with_task(
        3,
        "everything_simulate-research-query",
        json!({"topic": "gateways"}),
    );
    let r = mcp::post_raw(&w, "/mcp/tools", &token, Some(&session), &research)
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(body.contains("requires task augmentation"), "{body}");
    assert!(!body.contains("taskId"), "{body}");
    let get = json!({"jsonrpc": "2.0", "id": 4, "method": "tasks/get",
                     "params": {"taskId": "anything"}});
    let r = mcp::post_raw(&w, "/mcp/tools", &token, Some(&session), &get)
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32601, "{body}");
}

/// A tool run as a task through Warden, by the official TypeScript SDK's client: the
/// task-augmented call is judged as a plain one (a restricted agent's is denied and creates
/// no task), the task is created, polled and its result fetched with the server's credential
/// redacted from it; another agent, and another session of the same agent, are refused
/// `tasks/get`, `tasks/result` and `tasks/cancel` and list none of it; the records tie the
/// result to the creating decision.
#[tokio::test]
async fn a_tool_runs_as_a_task_only_its_creator_may_follow() {
    const SECRET: &str = "upstream-secret-for-research";
    let mut everything = mcp::everything_stdio("everything");
    everything["secret_env"] = json!({"RESEARCH_KEY": {"env": "RESEARCH_KEY_SOURCE"}});
    let w = warden(vec![everything], |b| b.env("RESEARCH_KEY_SOURCE", SECRET)).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let other = w.token("other-agent").await.unwrap();

    // Judged as a plain call: the restricted agent's task-augmented call is denied.
    let restricted = w.token("restricted").await.unwrap();
    let session = mcp::initialize_raw_with(&w, "/mcp/tools", &restricted, json!({"tasks": {}}))
        .await
        .unwrap();
    let mut call = mcp::tool_call(
        2,
        "everything_simulate-research-query",
        json!({"topic": "gateways"}),
    );
    call["params"]["task"] = json!({"ttl": 60000});
    let r = mcp::post_raw(&w, "/mcp/tools", &restricted, Some(&session), &call)
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        body.contains("research is not for restricted agents"),
        "{body}"
    );
    assert!(!body.contains("taskId"), "{body}");

    // The topic carries the server's own secret, which the report quotes back.
    let r = mcp::run_as_task(
        &w.url("/mcp/tools"),
        &agent,
        &other,
        "everything_simulate-research-query",
        &json!({"topic": format!("gateways {SECRET}")}),
    )
    .await
    .unwrap();
    assert_eq!(
        r["offered"],
        json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
        "{r}"
    );
    assert!(r["offeredWithout"].is_null(), "{r}");
    let task_id = r["taskId"].as_str().expect("a task was created").to_owned();
    let messages = r["messages"].as_array().unwrap();
    assert_eq!(messages[0]["type"], "taskCreated", "{r}");
    assert!(
        messages[0]["ttl"].as_u64().is_some_and(|ttl| ttl > 0),
        "{r}"
    );
    assert_eq!(messages[0]["pollInterval"], 1000, "{r}");
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "taskStatus" && m["status"] == "completed"),
        "{r}"
    );
    let result = messages.last().unwrap();
    assert_eq!(result["type"], "result", "{r}");
    assert_eq!(result["isError"], false, "{r}");
    let text = result["text"].as_str().unwrap();
    assert!(
        text.contains("Research Report: gateways [REDACTED]"),
        "{text}"
    );
    assert!(!r.to_string().contains(SECRET), "{r}");
    assert!(r["again"].as_str().unwrap().contains("[REDACTED]"), "{r}");
    assert_eq!(r["listed"], json!([task_id]), "{r}");

    for (who, refused) in [
        ("other agent", &r["otherAgent"]),
        ("other session", &r["otherSession"]),
    ] {
        for method in ["get", "result"] {
            let e = &refused[method];
            assert_eq!(e["code"], -32602, "{who} {method}: {r}");
            assert!(
                e["message"]
                    .as_str()
                    .unwrap()
                    .contains("is not one this agent created in this session"),
                "{who} {method}: {r}"
            );
        }
        assert_eq!(refused["listed"], json!([]), "{who}: {r}");
    }
    assert_eq!(r["otherAgent"]["cancel"]["code"], -32602, "{r}");

    // Records: the creating call's decision, the result's outcome under its id, and the
    // refusals.
    let decision = w
        .wait_for_audit(Duration::from_secs(10), |e| {
            e["kind"] == "decision"
                && e["principal"]["id"] == "e2e-agent"
                && e["resource"] == r#"Tool::"everything/simulate-research-query""#
        })
        .await
        .unwrap();
    assert_eq!(decision["decision"], "allow", "{decision}");
    let decision_id = decision["decision_id"].as_str().unwrap().to_owned();
    let outcomes: Vec<Value> = w
        .audit_records()
        .into_iter()
        .filter(|e| e["kind"] == "outcome" && e["decision_id"] == decision_id.as_str())
        .collect();
    // The call, its polls and the two results: every one under the creating decision.
    assert!(outcomes.len() >= 4, "{outcomes:?}");
    assert!(
        outcomes.iter().all(
            |e| e["resource"] == r#"Tool::"everything/simulate-research-query""#
                && e["principal"]["id"] == "e2e-agent"
        ),
        "{outcomes:?}"
    );
    assert!(
        outcomes.iter().any(|e| e["outcome"]["is_error"] == false),
        "{outcomes:?}"
    );
    w.wait_for_audit(Duration::from_secs(10), |e| {
        e["kind"] == "rejected"
            && e["principal"]["id"] == "other-agent"
            && e["code"] == "mcp_request_refused"
            && e["reasons"][0]
                .as_str()
                .is_some_and(|m| m.contains(&task_id))
    })
    .await
    .unwrap();
    assert!(!w.output().contains(SECRET));
}
