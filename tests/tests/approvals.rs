//! Approvals end to end: a request a policy holds for approval is answered "pending" (or waits),
//! an operator enrolled with TOTP (codes from the real `oathtool`) approves it from the command
//! line, and the same request then goes through once; the negative cases are refused before
//! anything changes. A streamed request that waits is answered at once and kept alive until
//! its completion (or the "pending" answer) follows in the same stream; approvers see what
//! inspection found; a held action is posted to a signed JSON webhook and a Slack webhook; an
//! MCP tool call that waits is a tool result naming its approval (the official MCP SDK against
//! a real MCP server), and goes through when called again once approved; an agent past
//! `approvals.max_pending_per_agent` is refused 429 before an approval is opened or approvers
//! told; a request whose wait ends undecided gives its place in flight
//! (`limits.max_in_flight_per_agent`) back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use warden_e2e::fake_llm::{self, FakeLlm};
use warden_e2e::operator::{
    NEEDS_SRE, approve, decide, enrol, enrol_with_code, first_pending, held_chat, oathtool, text,
};
use warden_e2e::sdk;
use warden_e2e::sse::{chat_text, parse_events};
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{Warden, WardenBuilder};
use warden_e2e::webhook::Webhook;

/// How long a request waits in `wait` mode here: long enough for a loaded machine to run the
/// commands that approve it meanwhile (each a process of its own, seconds apart under load).
const WAIT_TIMEOUT: &str = "3m";
/// How long a test waits for a held request's answer: beyond [`WAIT_TIMEOUT`], so that
/// Warden's answer ends the wait whatever it is.
const HELD_WITHIN: Duration = Duration::from_secs(200);

fn approvals(mode: &str) -> Value {
    json!({
        "mode": mode,
        "wait_timeout": WAIT_TIMEOUT,
        "console_url": "https://warden.example.com",
        "operators": [
            {"subject": "alice", "groups": ["sre"]},
            {"subject": "bob", "groups": ["dev"]},
            {"subject": "carol", "groups": ["sre"]},
        ],
    })
}

async fn start(upstream: &FakeLlm, mode: &str) -> Warden {
    WardenBuilder::new(upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set("/approvals", approvals(mode))
        .start()
        .await
        .unwrap()
}

async fn chat(w: &Warden, token: &str, content: &str) -> reqwest::Response {
    let mut body = openai_chat("gpt-4o", false);
    body["messages"][0]["content"] = json!(content);
    w.http()
        .post(w.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn pending_id(w: &Warden, token: &str, content: &str) -> String {
    let r = chat(w, token, content).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-warden-decision"], "approval_required");
    let id = r.headers()["x-warden-approval-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    let said = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        said.contains("holding this request for a human's approval"),
        "{said}"
    );
    assert!(
        said.contains(&id) && said.contains("https://warden.example.com/approvals/"),
        "{said}"
    );
    id
}

/// The TOTP time step (30 s) of the clock now.
fn step_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 30
}

/// `out` refused a code that was accepted before, of step `used` or later: as a replay while
/// Warden's window (one step either side of its clock) still holds that step, as it must when
/// the clock is at most one step past `used` now; past that, refused as expired (a loaded
/// machine may take that long), which is no less a refusal.
fn assert_used_up(out: &std::process::Output, used: u64) {
    let told = text(out);
    assert!(!out.status.success(), "{told}");
    if step_now() <= used + 1 {
        assert!(told.contains("already used"), "{told}");
    } else {
        assert!(told.contains("code was refused"), "{told}");
    }
}

#[tokio::test]
async fn a_held_request_goes_through_once_after_an_sre_approves_it_with_totp() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = start(&upstream, "pending").await;
    let token = w.token("billing-bot").await.unwrap();
    let id = pending_id(&w, &token, "summarise the invoices").await;
    // Sent again unchanged: the same approval. Other arguments: another one.
    assert_eq!(pending_id(&w, &token, "summarise the invoices").await, id);
    let other = pending_id(&w, &token, "delete the invoices").await;
    assert_ne!(other, id);

    let out = w.cli(&["approvals", "list"]).await.unwrap();
    assert!(
        text(&out).contains(&id) && text(&out).contains(&other),
        "{}",
        text(&out)
    );
    let out = w.cli(&["approvals", "show", &id]).await.unwrap();
    assert!(text(&out).contains("gpt4o-needs-sre"), "{}", text(&out));

    let enrolled_at = step_now();
    let (alice, enrolled_with) = enrol_with_code(&w, "alice").await;
    // The code used to confirm the enrolment is used up.
    let out = decide(&w, "approve", &id, "alice", &enrolled_with).await;
    assert_used_up(&out, enrolled_at);
    let bob = enrol(&w, "bob").await;
    // Outside the group the policy names: refused, whatever the code.
    let out = approve(&w, &id, "bob", &bob).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("must be approved by a member of Group::\"sre\""),
        "{}",
        text(&out)
    );
    // Not an operator at all.
    let out = decide(&w, "approve", &id, "mallory", "123456").await;
    assert!(text(&out).contains("is not an approver"), "{}", text(&out));
    // A wrong code.
    let out = decide(&w, "approve", &id, "alice", "000000").await;
    assert!(!out.status.success());
    assert!(text(&out).contains("code was refused"), "{}", text(&out));

    // A code of the step after the clock's (the enrolment used the clock's up).
    let next_at = step_now() + 1;
    let next = oathtool(&alice, 1);
    let out = decide(&w, "approve", &id, "alice", &next).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("it is now approved"), "{}", text(&out));
    // The same code again, on the other approval: a replay.
    let out = decide(&w, "deny", &other, "alice", &next).await;
    assert_used_up(&out, next_at);

    // The approved request goes through, once.
    let r = chat(&w, &token, "summarise the invoices").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-warden-approval-id").is_none());
    let body: Value = r.json().await.unwrap();
    assert!(
        !body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("holding")
    );
    let used = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["detail"]["event"] == "approval_used"
        })
        .await
        .unwrap();
    assert_eq!(used["detail"]["approval_id"], json!(id));
    assert_eq!(used["detail"]["approvers"][0]["approver"], "alice");
    assert_eq!(used["detail"]["approvers"][0]["factor"], "totp");
    let again = pending_id(&w, &token, "summarise the invoices").await;
    assert_ne!(again, id, "an approval is used once");
}

#[tokio::test]
async fn a_waiting_request_goes_on_when_approved_and_no_one_approves_their_own_agent() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = start(&upstream, "wait").await;
    // carol owns this agent: she may not approve its actions.
    let token = w
        .token_with("carol-bot", "1h", &[("owner", "carol")])
        .await
        .unwrap();
    let carol = enrol(&w, "carol").await;
    let alice = enrol(&w, "alice").await;
    let held = held_chat(&w, &token, HELD_WITHIN);
    // The request waits; its approval shows up pending.
    let id = first_pending(&w)
        .await
        .expect("the waiting request's approval is listed");
    assert!(!held.is_finished(), "the request waits");
    let out = approve(&w, &id, "carol", &carol).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("own agent"), "{}", text(&out));
    let out = approve(&w, &id, "alice", &alice).await;
    assert!(out.status.success(), "{}", text(&out));
    let r = held.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-warden-approval-id").is_none());

    // An approver who lost their phone: an administrator resets their factors.
    let out = w.cli(&["approvers", "reset", "carol"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("carol has an authenticator app and 0 passkeys"),
        "{}",
        text(&out)
    );
    let out = w
        .cli(&["approvers", "reset", "carol", "--yes"])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("removed an authenticator app"),
        "{}",
        text(&out)
    );
    let out = w
        .cli(&[
            "approvers",
            "enroll",
            "carol",
            "--confirm",
            &oathtool(&carol, 2),
        ])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("no confirmed TOTP enrolment")
            || text(&out).contains("run `warden approvers enroll carol` first"),
        "{}",
        text(&out)
    );
    let out = w.cli(&["approvers", "reset", "carol"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("carol has no second factor"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn only_an_operator_confirms_an_authenticator_app_on_the_command_line() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = start(&upstream, "pending").await;
    // mallory is not in approvals.operators: her confirmation is refused for that, before any
    // code of hers is looked at (it used to be checked against whatever enrolment she had).
    let out = w
        .cli(&["approvers", "enroll", "mallory", "--confirm", "123456"])
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "\"mallory\" is not an approver on the command line: add it to approvals.operators"
        ),
        "{}",
        text(&out)
    );
    // A listed operator enrols and confirms as before.
    enrol(&w, "alice").await;
}

/// Two replicas on a new PostgreSQL database `database` in approvals mode `mode`, and the
/// upstream they share.
async fn replicas(database: &str, mode: &str) -> (FakeLlm, Warden, Warden) {
    let url = warden_e2e::postgres::Postgres::from_env().fresh_database(database);
    let upstream = FakeLlm::start().await.unwrap();
    let a = replica(&upstream, &url, mode).await;
    let b = replica(&upstream, &url, mode).await;
    (upstream, a, b)
}

/// A replica on the PostgreSQL database at `url` in approvals mode `mode`, sharing the key that
/// seals second factors with every other.
async fn replica(upstream: &FakeLlm, url: &str, mode: &str) -> Warden {
    let mut approvals = approvals(mode);
    approvals["factor_key"] = json!({"env": "FACTOR_KEY"});
    WardenBuilder::new(upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set("/approvals", approvals)
        .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
        .env("STATE_URL", url)
        .env("FACTOR_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=")
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_approval_given_through_one_replica_releases_the_request_held_by_another() {
    let (_upstream, a, b) = replicas("warden_e2e_replicas", "wait").await;
    let alice = enrol(&b, "alice").await;
    let token = a.token("billing-bot").await.unwrap();
    let held = held_chat(&a, &token, HELD_WITHIN);
    let id = first_pending(&b)
        .await
        .expect("replica B sees the approval replica A holds a request for");
    let out = approve(&b, &id, "alice", &alice).await;
    assert!(out.status.success(), "{}", text(&out));
    let r = held.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-warden-approval-id").is_none(),
        "released, not pending"
    );
}

/// Codes of `secret` that no clock within a step of now would accept.
fn wrong_codes(secret: &str, n: usize) -> Vec<String> {
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "-w", "3", "-N", "now - 30 seconds", secret])
        .output()
        .expect("oathtool (tests/run installs it)");
    let good = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..1_000_000u32)
        .map(|i| format!("{:06}", (i * 7919 + 123_457) % 1_000_000))
        .filter(|c| !good.contains(c.as_str()))
        .take(n)
        .collect()
}

#[tokio::test]
async fn wrong_codes_spread_over_two_replicas_share_one_brake() {
    let (_upstream, a, b) = replicas("warden_e2e_replicas_brake", "pending").await;
    let alice = enrol(&a, "alice").await;
    let token = a.token("billing-bot").await.unwrap();
    let id = pending_id(&a, &token, "summarise the invoices").await;

    // Five wrong codes, each at one replica or the other (each command a process of its own,
    // as a restarted one would be): each refused for its code.
    for (i, code) in wrong_codes(&alice, 5).iter().enumerate() {
        let at = if i % 2 == 0 { &a } else { &b };
        let out = decide(at, "approve", &id, "alice", code).await;
        assert!(!out.status.success());
        assert!(
            text(&out).contains("the TOTP code was refused"),
            "{}",
            text(&out)
        );
    }
    // The sixth attempt, at either replica, is refused before its code is looked at: even
    // the right one.
    for at in [&b, &a] {
        let out = approve(at, &id, "alice", &alice).await;
        assert!(!out.status.success());
        assert!(
            text(&out).contains("too many wrong codes for alice"),
            "{}",
            text(&out)
        );
    }
    let out = b.cli(&["approvals", "show", &id]).await.unwrap();
    assert!(text(&out).contains("status:    pending"), "{}", text(&out));
    assert!(!text(&out).contains("vote:"), "{}", text(&out));
}

/// Chat on Anthropic's claude-sonnet-4-5 waits for a member of `sre` too.
const CLAUDE_NEEDS_SRE: &str = "@id(\"claude-needs-sre\")\n@approval(\"required\")\n\
    @approvers(\"Group::\\\"sre\\\"\")\n\
    permit (principal, action == Action::\"llm:chat\", resource == Model::\"anthropic/claude-sonnet-4-5\");\n";

/// Warden in `wait` mode with `approvals` changes (`wait_timeout`, `keepalive_interval`).
async fn start_waiting(upstream: &FakeLlm, changes: Value) -> Warden {
    let mut config = approvals("wait");
    for (key, value) in changes.as_object().unwrap() {
        config[key] = value.clone();
    }
    WardenBuilder::new(upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .policy("claude-needs-sre.cedar", CLAUDE_NEEDS_SRE)
        .set("/approvals", config)
        .start()
        .await
        .unwrap()
}

/// A streamed chat on gpt-4o as `token`, once its response has begun.
async fn stream_chat(w: &Warden, token: &str) -> reqwest::Response {
    w.http()
        .post(w.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&openai_chat("gpt-4o", true))
        .timeout(Duration::from_secs(40))
        .send()
        .await
        .unwrap()
}

/// Reads `response`'s body until `done` holds for what was read, within `timeout`.
async fn read_until(
    response: &mut reqwest::Response,
    read: &mut String,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(read) {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => read.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => panic!("the stream ended early; read:\n{read}"),
            Ok(Err(e)) => panic!("{e}; read:\n{read}"),
            Err(_) => panic!("not within {timeout:?}; read:\n{read}"),
        }
    }
}

#[tokio::test]
async fn a_waiting_stream_is_kept_alive_then_carries_the_completion_once_approved() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = start_waiting(
        &upstream,
        json!({"wait_timeout": "30s", "keepalive_interval": "300ms"}),
    )
    .await;
    let alice = enrol(&w, "alice").await;
    let token = w.token("billing-bot").await.unwrap();
    let mut r = stream_chat(&w, &token).await;
    // Answered at once: the stream has begun while the request waits.
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-warden-decision"], "approval_required");
    let id = r.headers()["x-warden-approval-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("apr_"), "{id}");
    let comment = format!(": waiting for approval {id}\n\n");
    let mut read = String::new();
    read_until(&mut r, &mut read, Duration::from_secs(10), |s| {
        s.matches(&comment).count() >= 3
    })
    .await;
    assert_eq!(
        read,
        comment.repeat(read.matches(&comment).count()),
        "only keep-alive comments before the approval"
    );
    assert!(
        upstream.requests().is_empty(),
        "nothing goes upstream before the approval"
    );

    let out = approve(&w, &id, "alice", &alice).await;
    assert!(out.status.success(), "{}", text(&out));
    read_until(&mut r, &mut read, Duration::from_secs(20), |s| {
        s.contains("data: [DONE]")
    })
    .await;
    assert!(r.chunk().await.unwrap().is_none(), "the stream ends");
    assert_eq!(
        chat_text(&parse_events(&read)),
        fake_llm::full_text(),
        "the upstream's stream, spliced in"
    );
    assert_eq!(upstream.requests().len(), 1);

    // Recorded as any approved request: the approval used, then the outcome with its usage.
    let used = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["detail"]["event"] == "approval_used"
        })
        .await
        .unwrap();
    assert_eq!(used["detail"]["approval_id"], json!(id));
    assert_eq!(used["detail"]["approvers"][0]["approver"], "alice");
    let outcome = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["decision_id"] == used["decision_id"]
        })
        .await
        .unwrap();
    assert_eq!(outcome["outcome"]["status"], 200, "{outcome}");
    assert_eq!(
        outcome["outcome"]["output_tokens"],
        fake_llm::COMPLETION_TOKENS,
        "{outcome}"
    );
}

#[tokio::test]
async fn a_stream_whose_wait_ends_undecided_carries_the_pending_answer_to_the_sdks() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = start_waiting(
        &upstream,
        json!({"wait_timeout": "2s", "keepalive_interval": "200ms"}),
    )
    .await;
    let token = w.token("billing-bot").await.unwrap();
    // The official SDKs skip the keep-alive comments and read the answer as a streamed
    // completion that ends its turn normally.
    let (openai_base, anthropic_base) = (w.url("/openai"), w.url("/anthropic"));
    let (out, claude) = tokio::join!(
        sdk::run(
            "openai_chat.py",
            &openai_base,
            &token,
            &["stream", "--model", "gpt-4o"],
        ),
        sdk::run(
            "anthropic_messages.py",
            &anthropic_base,
            &token,
            &["stream", "--model", "claude-sonnet-4-5"],
        ),
    );
    let (out, claude) = (out.unwrap(), claude.unwrap());
    let stream = &out["stream"];
    let said = stream["content"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        said.contains("holding this request for a human's approval")
            && said.contains("Approval apr_")
            && said.contains(
                "is pending: an approver decides at https://warden.example.com/approvals/"
            ),
        "{said}"
    );
    assert_eq!(stream["finish_reason"], "stop", "{out}");
    let said = claude["stream"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{claude}"));
    assert!(
        said.contains("holding this request for a human's approval")
            && said.contains("is pending: an approver decides at"),
        "{said}"
    );
    assert_eq!(claude["stream"]["stop_reason"], "end_turn", "{claude}");
    assert!(upstream.requests().is_empty());

    // A raw reader sees the comments, then the same answer.
    let mut r = stream_chat(&w, &token).await;
    let id = r.headers()["x-warden-approval-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let mut read = String::new();
    read_until(&mut r, &mut read, Duration::from_secs(10), |s| {
        s.contains("data: [DONE]")
    })
    .await;
    let comments = read
        .matches(&format!(": waiting for approval {id}\n\n"))
        .count();
    assert!(
        comments >= 5,
        "{comments} keep-alive comments in 2 s:\n{read}"
    );
    let answer = read.find("data: ").unwrap();
    assert!(
        read[answer..].contains(&format!("Approval {id} is pending")),
        "{read}"
    );
    assert!(
        !read[answer..].contains(": waiting"),
        "no comment after the answer:\n{read}"
    );
}

#[tokio::test]
async fn approvers_see_what_inspection_found_in_the_request() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = start(&upstream, "pending").await;
    let token = w.token("billing-bot").await.unwrap();
    let id = pending_id(
        &w,
        &token,
        "deploy with -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
    )
    .await;
    let out = w.cli(&["approvals", "show", &id]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(r#""findings":[{"detector":"private_key","location":"body, byte "#),
        "{shown}"
    );
    assert!(!shown.contains("b3Blbn"), "never the content: {shown}");
    // audit.record_content is off: what the agent asks is not shown either.
    assert!(!shown.contains("last_user_message"), "{shown}");
    assert!(!shown.contains("deploy with"), "{shown}");
}

#[tokio::test]
async fn approvers_are_shown_what_an_llm_call_asks_masked_when_content_may_be_kept() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set("/approvals", approvals("pending"))
        .set("/audit/record_content", json!(true))
        .start()
        .await
        .unwrap();
    let token = w.token("billing-bot").await.unwrap();
    let id = pending_id(&w, &token, "rotate the key AKIAIOSFODNN7EXAMPLE tonight").await;
    let out = w.cli(&["approvals", "show", &id]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(
        shown.contains(
            r#""prompt":{"last_user_message":"rotate the key [REDACTED:aws_access_key] tonight","truncated":false}"#
        ),
        "{shown}"
    );
    assert!(
        !shown.contains("AKIAIOSFODNN7EXAMPLE"),
        "never the secret: {shown}"
    );
}

#[tokio::test]
async fn a_held_action_is_posted_to_a_signed_json_webhook_and_to_slack() {
    const SECRET: &str = "e2e-webhook-signing-secret";
    let hooks = Webhook::start().await.unwrap();
    let upstream = FakeLlm::start().await.unwrap();
    let mut config = approvals("pending");
    config["notify"] = json!([
        {"name": "automation", "kind": "json", "url": hooks.url("/json"),
         "secret": {"env": "HOOK_SECRET"}},
        {"kind": "slack", "url": hooks.url("/slack")},
    ]);
    let w = WardenBuilder::new(&upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set("/approvals", config)
        .env("HOOK_SECRET", SECRET)
        .start()
        .await
        .unwrap();
    let token = w.token("billing-bot").await.unwrap();
    let id = pending_id(&w, &token, "summarise the invoices").await;
    let link = format!("https://warden.example.com/approvals/{id}");

    let posted = hooks
        .delivery("/json", Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(posted.headers["content-type"], "application/json");
    let body = posted.json();
    assert_eq!(body["type"], "approval.pending", "{body}");
    assert_eq!(body["approval_id"], json!(id), "{body}");
    assert_eq!(body["console_url"], json!(link), "{body}");
    assert_eq!(body["agent"], "billing-bot", "{body}");
    assert_eq!(body["policy"], "gpt4o-needs-sre", "{body}");
    assert_eq!(body["approvers"], json!(["Group::\"sre\""]), "{body}");
    // The signature, checked as docs/approvals.md tells a receiver to.
    let header = posted.headers["warden-signature"].to_str().unwrap();
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("{header}"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t.parse().unwrap()) <= 300, "{header}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&posted.body);
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies with the webhook's secret");
    let mut forged = Hmac::<sha2::Sha256>::new_from_slice(b"another secret").unwrap();
    forged.update(format!("{t}.").as_bytes());
    forged.update(&posted.body);
    assert!(forged.verify_slice(&hex::decode(v1).unwrap()).is_err());

    let posted = hooks
        .delivery("/slack", Duration::from_secs(15))
        .await
        .unwrap();
    assert!(posted.headers.get("warden-signature").is_none());
    let body = posted.json();
    assert!(body["text"].as_str().unwrap().contains(&link), "{body}");
    let button = body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|b| {
            b["elements"]
                .as_array()?
                .iter()
                .find(|e| e["type"] == "button")
        })
        .unwrap_or_else(|| panic!("no button: {body}"));
    assert_eq!(button["url"], json!(link), "{body}");
    assert!(body.to_string().contains(&id), "{body}");

    // Sent again, the same approval: nobody is told twice.
    assert_eq!(pending_id(&w, &token, "summarise the invoices").await, id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hooks.deliveries("/json").len(), 1);
    assert_eq!(hooks.deliveries("/slack").len(), 1);
}

#[tokio::test]
async fn an_agent_past_its_pending_cap_is_refused_before_approvers_are_told() {
    let hooks = Webhook::start().await.unwrap();
    let upstream = FakeLlm::start().await.unwrap();
    let mut config = approvals("pending");
    config["max_pending_per_agent"] = json!(3);
    config["notify"] = json!([{"kind": "slack", "url": hooks.url("/slack")}]);
    let w = WardenBuilder::new(&upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set("/approvals", config)
        .start()
        .await
        .unwrap();
    let token = w.token("billing-bot").await.unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(pending_id(&w, &token, &format!("summarise invoice {n}")).await);
    }
    let refused = chat(&w, &token, "summarise invoice 3").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-warden-error"], "too_many_pending");
    assert!(refused.headers().get("x-warden-approval-id").is_none());
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("has 3 approvals pending")
            && message.contains("approvals.max_pending_per_agent"),
        "{body}"
    );
    // Retrying what it asked finds its approval; another agent has room of its own.
    assert_eq!(pending_id(&w, &token, "summarise invoice 0").await, ids[0]);
    let other = w.token("support-bot").await.unwrap();
    pending_id(&w, &other, "summarise invoice 3").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while hooks.deliveries("/slack").len() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hooks.deliveries("/slack").len(),
        4,
        "one message per approval opened, none for the refused one"
    );
}

/// Calls of `everything/echo` wait for a member of `sre`.
const ECHO_NEEDS_SRE: &str = "@id(\"echo-needs-sre\")\n@reason(\"echo speaks for us\")\n\
    @approval(\"required\")\n@approvers(\"Group::\\\"sre\\\"\")\n\
    permit (principal, action == Action::\"mcp:call_tool\", resource == Tool::\"everything/echo\");\n";

/// The approval id a "pending" text names.
fn approval_in(text: &str) -> String {
    let at = text
        .find("Approval apr_")
        .unwrap_or_else(|| panic!("no approval id in {text:?}"))
        + "Approval ".len();
    text[at..at + "apr_".len() + 32].to_owned()
}

#[tokio::test]
async fn an_mcp_call_pending_approval_is_a_tool_result_and_goes_through_when_sent_again() {
    // Answered "pending" at once, or after a wait that ends undecided: the same tool result,
    // also where denials are JSON-RPC errors (a call that waits is not refused).
    for (mode, on_deny) in [("pending", "jsonrpc_error"), ("wait", "tool_result")] {
        let mut config = approvals(mode);
        config["wait_timeout"] = json!("1s");
        let w = WardenBuilder::with_upstream_url("http://127.0.0.1:9")
            .set(
                "/mcp",
                json!({"servers": [warden_e2e::mcp::everything_stdio("everything")],
                       "endpoints": [{"name": "tools", "servers": ["everything"],
                                      "on_deny": on_deny}]}),
            )
            .policy("echo-needs-sre.cedar", ECHO_NEEDS_SRE)
            .set("/approvals", config)
            .start()
            .await
            .unwrap();
        let alice = enrol(&w, "alice").await;
        let token = w.token("ci-bot").await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (asked, approved) = (dir.path().join("asked"), dir.path().join("approved"));
        let call = |message: &str| json!({"op": "call", "name": "everything_echo", "arguments": {"message": message}});
        // One session of the official MCP SDK: the call, the same call again once an approver
        // approved it, then one with other arguments.
        let steps = json!([
            call("deploy v42"),
            {"op": "touch", "path": asked},
            {"op": "wait_for", "path": approved},
            call("deploy v42"),
            call("deploy v43"),
        ]);
        let session = {
            let (w_url, token) = (w.url("/mcp/tools"), token.clone());
            let w = &w;
            async move { warden_e2e::mcp::session(w, &w_url, &token, steps).await }
        };
        let approver = async {
            // The first call is answered once Python has started, the session opened (the
            // MCP server started) and the call judged: a minute or more on a loaded machine.
            let deadline = tokio::time::Instant::now() + warden_e2e::mcp::CLIENT_TIMEOUT;
            while !asked.exists() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(asked.exists(), "{mode}: the first call was answered");
            let out = w.cli(&["approvals", "list"]).await.unwrap();
            let listed: Vec<String> = text(&out)
                .lines()
                .filter(|l| l.starts_with("apr_"))
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect();
            assert_eq!(listed.len(), 1, "{mode}: {}", text(&out));
            let out = approve(&w, &listed[0], "alice", &alice).await;
            assert!(out.status.success(), "{mode}: {}", text(&out));
            std::fs::write(&approved, b"").unwrap();
            listed[0].clone()
        };
        let (r, id) = tokio::join!(session, approver);
        let r = r.unwrap();
        let pending = &r["steps"][0];
        assert_eq!(pending["isError"], true, "{mode}: {r}");
        let said = pending["text"].as_str().unwrap();
        assert!(said.contains("approval"), "{mode}: {said}");
        assert_eq!(approval_in(said), id, "{mode}: {said}");
        let link = format!("https://warden.example.com/approvals/{id}");
        assert_eq!(
            pending["meta"]["warden/approval"],
            json!({"id": id, "status": "pending", "url": link}),
            "{mode}: {r}"
        );
        assert!(said.contains(&link), "{mode}: {said}");
        let done = &r["steps"][3];
        assert_eq!(done["isError"], false, "{mode}: approved, it runs: {r}");
        assert!(
            done["text"].as_str().unwrap().contains("deploy v42"),
            "{mode}: {r}"
        );
        let other = &r["steps"][4];
        assert_eq!(other["isError"], true, "{mode}: {r}");
        assert_ne!(
            approval_in(other["text"].as_str().unwrap()),
            id,
            "{mode}: other arguments, another approval: {r}"
        );
        let used = w
            .wait_for_audit(Duration::from_secs(5), |r| {
                r["detail"]["event"] == "approval_used"
            })
            .await
            .unwrap();
        assert_eq!(used["detail"]["approval_id"], json!(id), "{mode}");
    }
}

/// Whether `response` is a refusal for the agent's requests in flight.
async fn concurrency_limited(response: reqwest::Response) -> bool {
    let status = response.status().as_u16();
    status == 429
        && response
            .text()
            .await
            .unwrap_or_default()
            .contains("concurrency_limited")
}

#[tokio::test]
async fn a_request_whose_wait_ends_gives_its_place_in_flight_back() {
    let upstream = FakeLlm::start().await.unwrap();
    let mut config = approvals("wait");
    config["wait_timeout"] = json!("10s");
    let w = WardenBuilder::new(&upstream)
        .policy("needs-sre.cedar", NEEDS_SRE)
        .set("/approvals", config)
        .set("/limits/max_in_flight_per_agent", json!(1))
        .start()
        .await
        .unwrap();
    let token = w.token("billing-bot").await.unwrap();
    let cheap = || {
        w.http()
            .post(w.url("/openai/chat/completions"))
            .bearer_auth(&token)
            .json(&openai_chat("gpt-4o-mini", false))
            .timeout(Duration::from_secs(30))
            .send()
    };
    // While the held request waits it holds the agent's one place: a cheap chat is refused.
    // (Sent once the held one is decided, so that it cannot take the place first.)
    let held = chat(&w, &token, "summarise the invoices");
    let meanwhile = async {
        w.wait_for_audit(Duration::from_secs(30), |r| {
            r["kind"] == "decision" && r["decision"] == "approval_required"
        })
        .await
        .expect("the held request's decision record");
        concurrency_limited(cheap().await.unwrap()).await
    };
    let (held, refused_meanwhile) = tokio::join!(held, meanwhile);
    assert!(refused_meanwhile, "the waiting request held no place");
    assert_eq!(held.status(), 200);
    assert_eq!(held.headers()["x-warden-decision"], "approval_required");
    // The wait ended undecided: the place comes back (bounded poll).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = cheap().await.unwrap();
        let status = response.status().as_u16();
        if !concurrency_limited(response).await {
            assert_eq!(status, 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the held request's place in flight never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
