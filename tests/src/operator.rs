//! An approver at the command line: enrolled with TOTP (codes from the real `oathtool`),
//! approving with `warden approvals approve`.

use std::process::Output;
use std::time::Duration;

use crate::fake_llm::FakeLlm;
use crate::warden::{Warden, WardenBuilder};

/// A command's stdout and stderr, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Enrols `subject` and confirms it with a code of the current step; its secret.
pub async fn enrol(w: &Warden, subject: &str) -> String {
    enrol_with_code(w, subject).await.0
}

/// Enrols `subject` and confirms it with a code of the current step; its secret and the code
/// the enrolment used up (a replay of it is refused whichever step the clock is in by then).
pub async fn enrol_with_code(w: &Warden, subject: &str) -> (String, String) {
    let out = w.cli(&["approvers", "enroll", subject]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let uri = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(uri.starts_with("otpauth://totp/Warden:"), "{uri}");
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap()
        .to_owned();
    let code = oathtool(&secret, 0);
    let out = w
        .cli(&["approvers", "enroll", subject, "--confirm", &code])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    (secret, code)
}

/// The code of `secret` `ahead` 30-second steps from now (negative: past), from the real
/// `oathtool`.
pub fn oathtool(secret: &str, ahead: i32) -> String {
    let now = format!(
        "now {} {} seconds",
        if ahead < 0 { "-" } else { "+" },
        ahead.unsigned_abs() * 30
    );
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", "-N", &now, secret])
        .output()
        .expect("oathtool (apt-get install oathtool; tests/run installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `warden approvals approve <id>` as `subject`, with the code of `secret` one step ahead (the
/// code of the current step confirmed the enrolment).
pub async fn approve(w: &Warden, id: &str, subject: &str, secret: &str) -> Output {
    decide(w, "approve", id, subject, &oathtool(secret, 1)).await
}

/// `warden approvals <verb> <id> --as <subject> --code <code>` (`verb`: `approve` or `deny`).
pub async fn decide(w: &Warden, verb: &str, id: &str, subject: &str, code: &str) -> Output {
    w.cli(&["approvals", verb, id, "--as", subject, "--code", code])
        .await
        .unwrap()
}

/// The id of the first pending approval `warden approvals list` shows, polling up to 10 s
/// (a request that waits opens its approval a moment after it is sent).
pub async fn first_pending(w: &Warden) -> Option<String> {
    for _ in 0..100 {
        let out = w.cli(&["approvals", "list"]).await.unwrap();
        if let Some(line) = text(&out).lines().find(|l| l.starts_with("apr_")) {
            return line.split_whitespace().next().map(str::to_owned);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// A permit under which a gpt-4o chat needs one approval of the `sre` group
/// (`gpt4o-needs-sre`, in `needs-sre.cedar`).
pub const NEEDS_SRE: &str = "@id(\"gpt4o-needs-sre\")\n@approval(\"required\")\n\
    @approvers(\"Group::\\\"sre\\\"\")\n\
    permit (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\");\n";

/// `builder` with gpt-4o chats waiting (`approvals.mode: wait`, at most `wait_timeout`) for
/// one approval of the `sre` group ([`NEEDS_SRE`]), whose one operator is `alice`.
pub fn gpt4o_waits_for_sre(builder: WardenBuilder, wait_timeout: &str) -> WardenBuilder {
    builder.policy("needs-sre.cedar", NEEDS_SRE).set(
        "/approvals",
        serde_json::json!({"mode": "wait", "wait_timeout": wait_timeout,
               "operators": [{"subject": "alice", "groups": ["sre"]}]}),
    )
}

/// A Warden before `upstream` whose gpt-4o chats wait (30 s) for one approval of the `sre`
/// group ([`gpt4o_waits_for_sre`]): the setting of a test that changes something while a
/// request is held, then approves it.
pub async fn gpt4o_held_for_sre(upstream: &FakeLlm) -> Warden {
    gpt4o_waits_for_sre(WardenBuilder::new(upstream), "30s")
        .start()
        .await
        .unwrap()
}

/// A gpt-4o chat of `token` to `w`, sent in a task of its own that waits for it at most
/// `within`: a request a test approves (or refuses) while it is held.
pub fn held_chat(
    w: &Warden,
    token: &str,
    within: Duration,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = w
        .http()
        .post(w.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&crate::stack::openai_chat("gpt-4o", false))
        .timeout(within);
    tokio::spawn(request.send())
}

/// Quarantines `agent` at `w`'s command line, with `reason` (asserted to succeed).
pub async fn quarantine(w: &Warden, agent: &str, reason: &str) {
    let out = w
        .cli(&["agents", "quarantine", agent, "--reason", reason])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
