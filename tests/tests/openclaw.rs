//! A real OpenClaw agent behind Warden, run as a user runs it: one non-interactive turn
//! (`openclaw agent exec`, see `warden_e2e::openclaw`) with Warden declared as its
//! OpenAI-compatible provider and a Warden token as the key (README, "Point an agent at
//! Warden").
//!
//! - An allowed turn reaches the upstream with OpenClaw's real request (streaming, usage asked
//!   for, a dozen tools, a system prompt of tens of KB) and OpenClaw shows the answer.
//! - A turn Cedar forbids ends normally by default (`refusal_finish: stop`): OpenClaw shows
//!   its user the policy's `@reason` and the decision id, and exits 0.
//! - With `refusal_finish: content_filter` on the route, OpenClaw fails the turn with its
//!   generic "Provider finish_reason: content_filter" and never shows the reason: why `stop` is
//!   the default.
//!
//! Needs `tests/openclaw/node_modules` (`tests/run` installs it); without it each test fails
//! saying what to run. Each turn takes about 10–15 s here.

use serde_json::{Value, json};
use warden_e2e::fake_llm::{self, COMPLETION_TOKENS, PROMPT_TOKENS};
use warden_e2e::openclaw::{OpenClaw, Turn};
use warden_e2e::stack::{AGENT, Stack};
use warden_e2e::warden::OPENAI_KEY;

/// The model OpenClaw's turns are allowed on.
const ALLOWED_MODEL: &str = "gpt-4o-mini";

/// The model the policy forbids.
const DENIED_MODEL: &str = "gpt-4.1";

const REASON: &str = "gpt-4.1 is reserved for the release team; ask #ai-platform for access";

const FORBID: &str = r#"
@id("openclaw-e2e-forbid-gpt41")
@reason("gpt-4.1 is reserved for the release team; ask #ai-platform for access")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");
"#;

const MESSAGE: &str = "Say hello to the Warden team in one sentence.";

/// Runs one OpenClaw turn against `s`'s Warden with `model` as the primary model.
async fn turn(s: &Stack, model: &str) -> (OpenClaw, Turn) {
    let openclaw = OpenClaw::new(&s.openai_base(), &s.token, model).unwrap();
    let turn = openclaw.turn(MESSAGE).await.unwrap();
    eprintln!(
        "openclaw {} turn on {model}: {} in {:.1?}",
        openclaw.version(),
        turn.status,
        turn.elapsed
    );
    (openclaw, turn)
}

/// The audit's decision record of the one `llm:chat` request for `model`.
async fn decision_for(s: &Stack, model: &str) -> Value {
    let resource = format!("Model::\"openai/{model}\"");
    s.audit("decision", |r| {
        r["action"] == "llm:chat" && r["resource"] == resource.as_str()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn allowed_openclaw_turn_reaches_the_upstream_and_openclaw_shows_the_answer() {
    let s = Stack::start().await.unwrap();
    // A model asked to say hello answers in text; the fake would otherwise propose the first
    // of OpenClaw's tools.
    s.fake.propose_tools(false);
    let (_openclaw, turn) = turn(&s, ALLOWED_MODEL).await;

    assert!(turn.status.success(), "{}", turn.describe());
    assert_eq!(
        turn.stdout.trim(),
        fake_llm::full_text(),
        "OpenClaw shows the upstream's answer\n{}",
        turn.describe()
    );

    // What OpenClaw sent, as the upstream received it through Warden.
    let requests = s.upstream_requests(1).await;
    let calls: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        calls,
        ["/v1/chat/completions"],
        "one model call for the turn"
    );
    let request = &requests[0];
    assert_eq!(
        request.header("authorization"),
        Some(format!("Bearer {OPENAI_KEY}").as_str()),
        "Warden swapped the agent's token for the provider key"
    );
    assert!(
        !request.contains(&s.token),
        "the agent token never leaves Warden"
    );
    assert!(
        request
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("OpenAI/JS")),
        "{:?}",
        request.headers
    );
    let body = request.json();
    assert_eq!(body["model"], ALLOWED_MODEL);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    let tools = body["tools"].as_array().map_or(0, Vec::len);
    assert!(tools >= 10, "OpenClaw declares its tools: {tools}");
    assert!(
        request.body.len() > 20_000,
        "OpenClaw's system prompt alone is tens of KB: {} bytes",
        request.body.len()
    );

    let decision = decision_for(&s, ALLOWED_MODEL).await;
    assert_eq!(decision["decision"], "allow", "{decision}");
    assert_eq!(decision["principal"]["id"], AGENT, "{decision}");
    let outcome = s
        .audit("outcome", |r| r["decision_id"] == decision["decision_id"])
        .await
        .unwrap();
    assert_eq!(outcome["outcome"]["status"], 200, "{outcome}");
    assert_eq!(
        outcome["outcome"]["input_tokens"],
        json!(PROMPT_TOKENS),
        "{outcome}"
    );
    assert_eq!(
        outcome["outcome"]["output_tokens"],
        json!(COMPLETION_TOKENS),
        "{outcome}"
    );
}

#[tokio::test]
async fn denied_openclaw_turn_ends_normally_and_openclaw_shows_the_reason_and_decision_id() {
    let s = Stack::start_with(|b| b.policy("openclaw-forbid.cedar", FORBID))
        .await
        .unwrap();
    let (_openclaw, turn) = turn(&s, DENIED_MODEL).await;

    let decision = decision_for(&s, DENIED_MODEL).await;
    assert_eq!(decision["decision"], "deny", "{decision}");
    assert_eq!(decision["principal"]["id"], AGENT, "{decision}");
    assert_eq!(decision["reasons"], json!([REASON]), "{decision}");
    assert_eq!(
        decision["policies"],
        json!(["openclaw-e2e-forbid-gpt41"]),
        "{decision}"
    );
    let decision_id = decision["decision_id"].as_str().unwrap();

    assert!(
        turn.status.success(),
        "a refusal ends the turn normally\n{}",
        turn.describe()
    );
    assert!(
        turn.stdout.contains(REASON),
        "OpenClaw shows the policy's reason\n{}",
        turn.describe()
    );
    assert!(
        turn.stdout.contains(decision_id),
        "OpenClaw shows the decision id {decision_id}\n{}",
        turn.describe()
    );
    let everything = format!("{}{}", turn.stdout, turn.stderr);
    for generic in [
        "content_filter",
        "The provider refused this request",
        "Agent run failed",
    ] {
        assert!(
            !everything.contains(generic),
            "no generic failure ({generic:?})\n{}",
            turn.describe()
        );
    }

    let outcome = s
        .audit("outcome", |r| r["decision_id"] == decision_id)
        .await
        .unwrap();
    assert_eq!(outcome["outcome"]["status"], 200, "{outcome}");
    assert_eq!(
        s.fake.requests().len(),
        0,
        "a denied call never reaches the provider"
    );
}

#[tokio::test]
async fn with_refusal_finish_content_filter_openclaw_fails_the_turn_and_drops_the_reason() {
    let s = Stack::start_with(|b| {
        b.policy("openclaw-forbid.cedar", FORBID)
            .set("/routes/0/refusal_finish", json!("content_filter"))
    })
    .await
    .unwrap();
    let (_openclaw, turn) = turn(&s, DENIED_MODEL).await;

    let decision = decision_for(&s, DENIED_MODEL).await;
    assert_eq!(decision["decision"], "deny", "{decision}");
    assert_eq!(decision["reasons"], json!([REASON]), "{decision}");
    let decision_id = decision["decision_id"].as_str().unwrap();

    // The point of `refusal_finish: stop`: with the content-filter marking, OpenClaw reports a
    // failed run with a generic message, and its user never learns why.
    assert_eq!(
        turn.status.code(),
        Some(1),
        "OpenClaw fails the turn\n{}",
        turn.describe()
    );
    assert!(
        turn.stderr.contains("content_filter"),
        "OpenClaw's generic failure names the finish reason\n{}",
        turn.describe()
    );
    let everything = format!("{}{}", turn.stdout, turn.stderr);
    assert!(
        !everything.contains(REASON) && !everything.contains(decision_id),
        "OpenClaw drops the refusal's text\n{}",
        turn.describe()
    );
    assert_eq!(
        s.fake.requests().len(),
        0,
        "a denied call never reaches the provider"
    );
}
