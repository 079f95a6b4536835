//! Revoking Warden agent tokens, across two replicas on one PostgreSQL: a token revoked at the
//! command line of one replica (by the token itself) and every token of an agent revoked
//! through the other's admin API are refused `401 token_revoked` by both, though each had
//! verified and cached them; the agent's other and newer tokens keep working; both replicas
//! record each revocation with who made it. And: a token longer than the maximum lifetime is
//! not issued; an agent whose id holds control characters and a `/` is quarantined and
//! released through the admin API; a request whose token is revoked while it waits for an
//! approval is refused once approved, and never sent. A revocation cuts what the token opened:
//! an egress tunnel whose bytes are copied as they are, and, on another replica, an LLM
//! response stream in flight, MCP event streams (Streamable HTTP and legacy) and an MCP
//! call's answer stream, each told why; what another token of the same agent opened goes on.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_e2e::egress::{AllowedTls, assert_tunnel_cut, closes_within};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::idp::Idp;
use warden_e2e::mcp;
use warden_e2e::operator::{approve, enrol, first_pending, gpt4o_held_for_sre, held_chat, text};
use warden_e2e::postgres::Postgres;
use warden_e2e::sse;
use warden_e2e::stack::{chat, openai_chat};
use warden_e2e::warden::{Warden, WardenBuilder};

/// How long a cut may take to show.
const WAIT: Duration = Duration::from_secs(10);

/// The audience of operators' tokens.
const ADMIN_AUDIENCE: &str = "warden-admin";

/// The IdP's `sre` group may administer; agents may chat.
fn policy(issuer: &str) -> String {
    format!(
        "@id(\"operators\")\n\
         permit (principal in Group::\"sre\", action in [Action::\"admin:quarantine\", \
         Action::\"admin:release\", Action::\"admin:list\", Action::\"admin:revoke\"], resource)\n\
         when {{ principal.issuer == \"{issuer}\" }};\n\
         @id(\"agents-chat\")\npermit (principal is Agent, action == Action::\"llm:chat\", resource);\n"
    )
}

fn gateway(upstream: &FakeLlm, idp: &Idp) -> WardenBuilder {
    WardenBuilder::new(upstream)
        .without_policy("e2e-permit-all.cedar")
        .set("/admin/api", json!(true))
        .set(
            "/admin/identity",
            json!({"issuers": [{"issuer": idp.issuer(), "audiences": [ADMIN_AUDIENCE]}]}),
        )
        .policy("admin.cedar", &policy(idp.issuer()))
}

/// `method path` on `warden`'s admin listener as `token` with `body`: status and answer.
async fn admin(
    warden: &Warden,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = warden
        .http()
        .request(method, warden.admin_url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits (at most 5 s) until `token`'s chat through `warden` is refused; the refusal.
async fn refused_soon(warden: &Warden, token: &str) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = chat(warden, token).await;
        if status != 200 {
            return (status, body);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation did not reach the replica within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn revocations_made_at_either_replica_refuse_cached_tokens_on_both() {
    let pg = Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_token_revocation");
    let upstream = FakeLlm::start().await.unwrap();
    let idp = Idp::shared().await.unwrap();
    let replica = |key: Option<&str>| {
        let mut builder = gateway(&upstream, &idp)
            .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
            .env("STATE_URL", &state_url);
        if let Some(key) = key {
            builder = builder.set("/identity/warden_issuer/key_file", json!(key));
        }
        builder
    };
    let a = replica(None).start().await.unwrap();
    let key = a.setup.data_dir.join("keys/agent-signing.pem");
    let b = replica(Some(key.to_str().unwrap())).start().await.unwrap();

    let leaked = a.token("bot-1").await.unwrap();
    let sibling = a.token("bot-1").await.unwrap();
    let stolen = a.token("bot-2").await.unwrap();
    for w in [&a, &b] {
        for token in [&leaked, &sibling, &stolen] {
            assert_eq!(chat(w, token).await.0, 200, "verified and cached");
        }
    }

    // At A's command line, by the token itself (read from its jti).
    let out = a
        .cli(&[
            "token",
            "revoke",
            "--token",
            &leaked,
            "--reason",
            "leaked in a CI log",
            "--as",
            "bob",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for w in [&b, &a] {
        let (status, body) = refused_soon(w, &leaked).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "token_revoked", "{body}");
        assert!(body.to_string().contains("leaked in a CI log"), "{body}");
        assert_eq!(
            chat(w, &sibling).await.0,
            200,
            "another token of the agent works"
        );
    }

    // Through B's admin API: every token of bot-2 issued until now.
    let alice = idp.person_token("alice", ADMIN_AUDIENCE).await.unwrap();
    let (status, body) = admin(
        &b,
        reqwest::Method::POST,
        "/v1/admin/revocations",
        &alice,
        Some(&json!({"agent": "bot-2", "reason": "runner compromised"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["revocation"]["target"],
        json!({"kind": "agent", "name": "bot-2"})
    );
    for w in [&a, &b] {
        let (status, body) = refused_soon(w, &stolen).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "token_revoked", "{body}");
    }
    // A token issued after the revocation's second works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = a.token("bot-2").await.unwrap();
    for w in [&a, &b] {
        assert_eq!(chat(w, &fresh).await.0, 200);
    }
    let (status, body) = admin(
        &a,
        reqwest::Method::GET,
        "/v1/admin/revocations",
        &alice,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revocations"].as_array().unwrap().len(), 2, "{body}");

    // Each replica records both, with who made them; the refusals are `rejected` records.
    let alice_of_idp = json!({"id": "alice", "issuer": idp.issuer()});
    for w in [&a, &b] {
        let by_agent = w
            .wait_for_audit(Duration::from_secs(5), |r| {
                r["detail"]["event"] == "token_revocation"
                    && r["detail"]["target"]["kind"] == "agent"
            })
            .await
            .unwrap();
        assert_eq!(by_agent["detail"]["by"], alice_of_idp, "{by_agent}");
        let by_token = w
            .wait_for_audit(Duration::from_secs(5), |r| {
                r["detail"]["event"] == "token_revocation"
                    && r["detail"]["target"]["kind"] == "token"
            })
            .await
            .unwrap();
        assert_eq!(
            by_token["detail"]["by"],
            json!({"id": "bob", "issuer": "warden-cli"})
        );
        let rejected = w
            .wait_for_audit(Duration::from_secs(5), |r| {
                r["kind"] == "rejected" && r["code"] == "token_revoked"
            })
            .await;
        assert!(rejected.is_ok(), "the refusal is recorded");
        let records = serde_json::to_string(&w.audit_records()).unwrap();
        assert!(!records.contains(&leaked), "no token is recorded");
    }
    let out = a.cli(&["token", "revocations"]).await.unwrap();
    assert!(
        text(&out).contains("every token of agent \"bot-2\""),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_token_longer_than_the_maximum_lifetime_is_not_issued() {
    let upstream = FakeLlm::start().await.unwrap();
    let idp = Idp::shared().await.unwrap();
    let w = gateway(&upstream, &idp)
        .set("/identity/warden_issuer/max_ttl", json!("2h"))
        .start()
        .await
        .unwrap();
    let out = w
        .cli(&["token", "issue", "--agent", "bot", "--ttl", "3h"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("identity.warden_issuer.max_ttl (2h)"),
        "{}",
        text(&out)
    );
    assert!(w.token_with("bot", "2h", &[]).await.is_ok());
}

#[tokio::test]
async fn an_agent_named_with_odd_characters_is_quarantined_and_released_through_the_api() {
    let upstream = FakeLlm::start().await.unwrap();
    let idp = Idp::shared().await.unwrap();
    let w = gateway(&upstream, &idp).start().await.unwrap();
    let alice = idp.person_token("alice", ADMIN_AUDIENCE).await.unwrap();
    // A name that would not read as it is (a control character, whitespace at an end) names no
    // agent: no token is issued for it (and none with it is accepted: identity's tests).
    for unreadable in ["ci\u{1}bot", "ci-bot/x ", "ci-bot\n"] {
        let refused = w.token(unreadable).await.expect_err(unreadable).to_string();
        assert!(refused.contains("does not read as it is"), "{refused}");
    }
    // Readable names with the characters a path or a query must escape still go through.
    let long = format!("ci bot/%?#{}", "x".repeat(300));
    for agent in ["ci bot/ü %2F x", long.as_str()] {
        let token = w.token(agent).await.unwrap();
        assert_eq!(chat(&w, &token).await.0, 200);
        let (status, body) = admin(
            &w,
            reqwest::Method::POST,
            "/v1/admin/quarantines",
            &alice,
            Some(&json!({"agent": agent, "reason": "incident 4720"})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["quarantine"]["target"]["name"], agent);
        let (status, body) = chat(&w, &token).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "agent_quarantined", "{body}");
        // Released by its id as one percent-encoded path segment.
        let encoded: String = agent
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
                other => format!("%{other:02X}"),
            })
            .collect();
        let path = format!("/v1/admin/quarantines/{encoded}");
        let (status, body) = admin(&w, reqwest::Method::DELETE, &path, &alice, None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["released"]["target"]["name"], agent);
        assert_eq!(chat(&w, &token).await.0, 200);
    }
}

#[tokio::test]
async fn a_request_whose_token_was_revoked_while_it_waited_for_approval_is_refused_and_never_sent()
{
    let upstream = FakeLlm::start().await.unwrap();
    let w = gpt4o_held_for_sre(&upstream).await;
    let token = w.token("ci-bot").await.unwrap();
    let alice = enrol(&w, "alice").await;
    let held = held_chat(&w, &token, Duration::from_secs(40));
    let id = first_pending(&w)
        .await
        .expect("the waiting request's approval");

    // The token leaks and is revoked while its request waits; once this process enforces
    // the revocation, alice (who does not know) approves.
    let out = w
        .cli(&[
            "token", "revoke", "--token", &token, "--reason", "leaked", "--as", "bob",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (status, body) = refused_soon(&w, &token).await;
    assert_eq!(status, 401, "{body}");
    assert!(!held.is_finished(), "the held request still waits");
    let out = approve(&w, &id, "alice", &alice).await;
    assert!(out.status.success(), "{}", text(&out));

    let refused = held.await.unwrap().unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_revoked", "{body}");
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("gpt-4o\"")),
        "the approved request of a revoked token reached the upstream"
    );
}

/// Revokes `token` by its id at `warden`'s command line, as `bob`, for `reason`.
async fn revoke_at_cli(warden: &Warden, token: &str, reason: &str) {
    let out = warden
        .cli(&[
            "token", "revoke", "--token", token, "--reason", reason, "--as", "bob",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn a_tunnel_whose_bytes_are_copied_is_closed_once_the_token_it_was_opened_with_is_revoked() {
    let allowed = AllowedTls::start().await.unwrap();
    let w = allowed
        .egress(WardenBuilder::with_upstream_url("http://127.0.0.1:9"))
        .set("/identity/warden_issuer/refresh_interval", json!("50ms"))
        .start()
        .await
        .unwrap();
    let leaked = w.token("build-bot").await.unwrap();
    let sibling = w.token("build-bot").await.unwrap();
    let mut revoked = allowed.tunnel(&w, &leaked).await.unwrap();
    let mut other = allowed.tunnel(&w, &sibling).await.unwrap();

    // Another process (the command line) writes the revocation to the state store.
    revoke_at_cli(&w, &leaked, "leaked in a CI log").await;
    assert!(
        closes_within(&mut revoked, WAIT).await,
        "the tunnel stays open after its token was revoked"
    );
    // The tunnel of the agent's other token still carries bytes.
    other
        .write_all(b"GET /after HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, other.read(&mut answer))
        .await
        .expect("an answer through the other tunnel")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    assert_tunnel_cut(
        &w,
        "build-bot",
        "cut: its token was revoked",
        "leaked in a CI log",
        "token_revoked",
    )
    .await;
    let records = serde_json::to_string(&w.audit_records()).unwrap();
    assert!(!records.contains(&leaked), "no token is recorded");
}

#[tokio::test]
async fn a_revocation_made_on_one_replica_cuts_the_streams_its_token_opened_on_another() {
    let pg = Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_revocation_cut");
    let upstream = FakeLlm::start().await.unwrap();
    let replica = |signer: Option<&Warden>| {
        WardenBuilder::new(&upstream)
            .replica_of(&state_url, signer)
            .set(
                "/mcp",
                json!({"servers": [mcp::everything_stdio("everything")],
                       "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
            )
    };
    let a = replica(None).start().await.unwrap();
    let b = replica(Some(&a)).start().await.unwrap();
    let leaked = a.token("bot-1").await.unwrap();
    let sibling = a.token("bot-1").await.unwrap();

    // On replica B, with the leaked token: an MCP session's event stream, a legacy event
    // stream, and an LLM response stream held after its first chunk.
    let (_, mut streamable) = mcp::open_event_stream(&b, "/mcp/tools", &leaked)
        .await
        .unwrap();
    let (mut legacy, _) = mcp::open_legacy_stream(&b, "/mcp/tools", &leaked)
        .await
        .unwrap();
    let gate = upstream.hold_streams();
    let mut llm = b
        .http()
        .post(b.url("/openai/chat/completions"))
        .bearer_auth(&leaked)
        .json(&openai_chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(llm.status(), 200);
    let first = tokio::time::timeout(WAIT, llm.chunk())
        .await
        .expect("the first chunk")
        .unwrap()
        .expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));
    // And one with the agent's other token, which the revocation does not name.
    let (_, mut untouched) = mcp::open_event_stream(&b, "/mcp/tools", &sibling)
        .await
        .unwrap();

    // Revoked at replica A's command line: B hears it from the state store.
    revoke_at_cli(&a, &leaked, "leaked in a CI log").await;

    for stream in [&mut streamable, &mut legacy] {
        let events = stream.until_the_end(WAIT).await.unwrap();
        assert!(
            events.last().is_some_and(|e| mcp::is_cut_notice(
                e,
                "token_revoked",
                "leaked in a CI log"
            )),
            "{events:?}"
        );
    }
    let rest = sse::read_chunks(llm, WAIT).await.unwrap();
    let events = sse::parse_events(&sse::text_of(&rest));
    let last = events.last().expect("an event after the cut");
    assert_eq!(last.name.as_deref(), Some("error"), "{events:?}");
    assert!(last.data.contains("token_revoked"), "{}", last.data);
    assert!(last.data.contains("leaked in a CI log"), "{}", last.data);
    assert_eq!(upstream.streams_completed(), 0);
    drop(gate);
    assert!(
        matches!(
            untouched.next(Duration::from_millis(300)).await,
            Err(_) | Ok(Some(_))
        ),
        "the other token's stream stays open"
    );

    // B records each cut with the revocation (the token's id, never the token).
    for what in ["mcp_session", "mcp_stream"] {
        let record = b
            .wait_for_audit(WAIT, |r| {
                r["kind"] == "system" && r["detail"]["event"] == "cut" && r["detail"]["cut"] == what
            })
            .await
            .unwrap();
        assert_eq!(record["principal"]["id"], "bot-1", "{record}");
        assert_eq!(record["detail"]["target"]["kind"], "token", "{record}");
        assert_eq!(record["detail"]["reason"], "leaked in a CI log", "{record}");
        assert_eq!(
            record["detail"]["by"],
            json!({"id": "bob", "issuer": "warden-cli"})
        );
        assert_eq!(record["detail"]["endpoint"], "tools");
    }
    b.wait_for_audit(WAIT, |r| {
        r["kind"] == "outcome"
            && r["principal"]["id"] == "bot-1"
            && r["outcome"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("cut: its token was revoked"))
    })
    .await
    .unwrap();
    let records = serde_json::to_string(&b.audit_records()).unwrap();
    assert!(!records.contains(&leaked), "no token is recorded");
}

/// Warden with `/mcp/tools` on the `everything` server (revocations read every 50 ms), a
/// session there opened with one token of `bot-1`, and another token of `bot-1`.
struct AnotherToken {
    w: Warden,
    opener: String,
    leaked: String,
    session: String,
}

async fn another_token() -> AnotherToken {
    let w = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
        .set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything")],
                   "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
        .set("/identity/warden_issuer/refresh_interval", json!("50ms"))
        .start()
        .await
        .unwrap();
    let opener = w.token("bot-1").await.unwrap();
    let leaked = w.token("bot-1").await.unwrap();
    let session = mcp::initialize_raw(&w, "/mcp/tools", &opener)
        .await
        .unwrap();
    AnotherToken {
        w,
        opener,
        leaked,
        session,
    }
}

impl AnotherToken {
    /// Revokes the other token: `stream`, opened with it, ends with the notice that says why,
    /// the cut is recorded, and the session, whose token is not revoked, goes on.
    async fn revoke_and_see_only(&self, mut stream: sse::EventReader) {
        let w = &self.w;
        revoke_at_cli(w, &self.leaked, "leaked in a CI log").await;
        let events = stream.until_the_end(WAIT).await.unwrap();
        assert!(
            events.last().is_some_and(|e| mcp::is_cut_notice(
                e,
                "token_revoked",
                "leaked in a CI log"
            )),
            "the stream of the revoked token is cut: {events:?}"
        );
        let record = w
            .wait_for_audit(WAIT, |r| {
                r["kind"] == "system"
                    && r["detail"]["event"] == "cut"
                    && r["detail"]["cut"] == "mcp_stream"
            })
            .await
            .unwrap();
        assert_eq!(record["detail"]["target"]["kind"], "token", "{record}");
        let listed = mcp::post_raw(
            w,
            "/mcp/tools",
            &self.opener,
            Some(&self.session),
            &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}),
        )
        .await
        .unwrap();
        assert_eq!(listed.status(), 200);
        assert!(listed.text().await.unwrap().contains("everything_"));
    }
}

#[tokio::test]
async fn an_mcp_event_stream_opened_with_another_token_is_cut_when_that_one_is_revoked() {
    let t = another_token().await;
    let stream = mcp::session_stream(&t.w, "/mcp/tools", &t.leaked, &t.session)
        .await
        .unwrap();
    t.revoke_and_see_only(stream).await;
}

#[tokio::test]
async fn an_mcp_answer_stream_opened_with_another_token_is_cut_when_that_one_is_revoked() {
    let t = another_token().await;
    // A long call, answered as an event stream of its progress, posted with the other token.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "everything_trigger-long-running-operation",
        "arguments": {"duration": 60, "steps": 120},
        "_meta": {"progressToken": "p2"}}});
    let answer = mcp::post_raw(&t.w, "/mcp/tools", &t.leaked, Some(&t.session), &call)
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let mut stream = sse::EventReader::new(answer);
    let first = stream.next(WAIT).await.unwrap().expect("a first event");
    assert_eq!(
        first.json()["method"],
        "notifications/progress",
        "{first:?}"
    );
    t.revoke_and_see_only(stream).await;
    let outcome =
        t.w.wait_for_audit(WAIT, |r| {
            r["kind"] == "outcome" && r["resource"].as_str().is_some_and(|r| r.contains("long"))
        })
        .await
        .unwrap();
    assert!(
        outcome.to_string().contains("its token was revoked"),
        "the call's outcome says why it ended: {outcome}"
    );
}
