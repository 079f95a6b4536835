//! The admin API (`admin.api`): an operator whose token the policy allows (`admin:*` on a
//! `User` in its groups) quarantines an agent over HTTP, lists and releases it; another
//! principal is refused 403 with the policy's reason, a caller without a valid token 401;
//! every call is in the audit log with who, what and the decision.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::stack::chat;
use warden_e2e::warden::{Warden, WardenBuilder};

/// Lets the operators' group administer quarantines, nobody else; lets agents chat.
const OPERATORS: &str = "@id(\"operators-administer\")\n\
    permit (principal in Group::\"operators\", action in [Action::\"admin:quarantine\", \
    Action::\"admin:release\", Action::\"admin:list\"], resource);\n\
    @id(\"agents-chat\")\npermit (principal is Agent, action == Action::\"llm:chat\", resource);\n";

/// The admin API's collection of quarantines.
const QUARANTINES: &str = "/v1/admin/quarantines";

/// `method path` on the admin listener as `token` (none: no credential) with `body`: the
/// status and the JSON answer.
async fn admin(
    warden: &Warden,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut request = warden.http().request(method, warden.admin_url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("the admin API answers JSON ({status}): {text}"));
    (status, body)
}

/// `POST /v1/admin/quarantines` with `body`.
async fn quarantine(warden: &Warden, token: Option<&str>, body: &Value) -> (u16, Value) {
    admin(
        warden,
        reqwest::Method::POST,
        QUARANTINES,
        token,
        Some(body),
    )
    .await
}

/// `GET /v1/admin/quarantines`.
async fn list(warden: &Warden, token: &str) -> (u16, Value) {
    admin(warden, reqwest::Method::GET, QUARANTINES, Some(token), None).await
}

/// `DELETE /v1/admin/quarantines/{agent}`.
async fn release(warden: &Warden, token: &str, agent: &str) -> (u16, Value) {
    let path = format!("{QUARANTINES}/{agent}");
    admin(warden, reqwest::Method::DELETE, &path, Some(token), None).await
}

/// The error message of an answer.
fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn an_operator_allowed_by_policy_quarantines_lists_and_releases_an_agent_and_others_are_refused()
 {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .without_policy("e2e-permit-all.cedar")
        .set("/admin/api", json!(true))
        .policy("admin.cedar", OPERATORS)
        .start()
        .await
        .unwrap();
    let rogue = w.token("rogue-agent").await.unwrap();
    let alice = w
        .token_with("alice", "1h", &[("groups", "operators")])
        .await
        .unwrap();
    let mallory = w
        .token_with("mallory", "1h", &[("groups", "engineering")])
        .await
        .unwrap();
    assert_eq!(chat(&w, &rogue).await.0, 200);
    let request = json!({
        "agent": "rogue-agent",
        "reason": "incident 4712: prompt injection",
        "until": "1h",
    });

    // No token, a token that is no token: 401 with what to send.
    let (status, body) = quarantine(&w, None, &request).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "missing_credential", "{body}");
    assert!(message(&body).contains("Authorization: Bearer"), "{body}");
    let (status, body) = quarantine(&w, Some("not-a-token"), &request).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "malformed_token", "{body}");

    // Someone the policy does not permit: 403 naming the action and why.
    let (status, body) = quarantine(&w, Some(&mallory), &request).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    for says in ["User::\"mallory\"", "admin:quarantine", "no policy permits"] {
        assert!(message(&body).contains(says), "{body}");
    }
    assert_eq!(chat(&w, &rogue).await.0, 200, "nothing happened");
    // An agent's own token is no operator's either.
    assert_eq!(list(&w, &rogue).await.0, 403);

    // A malformed request: 400 that says what to send.
    for (bad, says) in [
        (json!({"agent": "a", "group": "g"}), "not both"),
        (json!({"agent": "a", "until": "yesterday"}), "\"until\""),
        (json!({"agent": "a", "why": "x"}), "unknown field"),
    ] {
        let (status, body) = quarantine(&w, Some(&alice), &bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(message(&body).contains(says), "{body}");
    }

    // The operator: quarantined at once, the agent's next request refused with the reason.
    let (status, body) = quarantine(&w, Some(&alice), &request).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["quarantine"]["target"]["name"], "rogue-agent",
        "{body}"
    );
    assert_eq!(body["quarantine"]["by"], "admin:alice", "{body}");
    assert!(body["quarantine"]["until"].is_string(), "{body}");
    let (status, refused) = chat(&w, &rogue).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "agent_quarantined", "{refused}");
    assert!(message(&refused).contains("incident 4712"), "{refused}");

    // Listed for the operator, not for mallory.
    let (status, body) = list(&w, &alice).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["quarantines"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["target"]["kind"], "agent");
    assert_eq!(listed[0]["reason"], "incident 4712: prompt injection");
    assert_eq!(list(&w, &mallory).await.0, 403);

    // Released by the operator only; a second release finds nothing.
    assert_eq!(release(&w, &mallory, "rogue-agent").await.0, 403);
    assert_eq!(chat(&w, &rogue).await.0, 403);
    let (status, body) = release(&w, &alice, "rogue-agent").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"]["target"]["name"], "rogue-agent", "{body}");
    assert_eq!(chat(&w, &rogue).await.0, 200);
    let (status, body) = release(&w, &alice, "rogue-agent").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_quarantined", "{body}");

    // Every call in the audit log: who, what, on what, the decision.
    let decided = |who: &'static str, action: &'static str, decision: &'static str| {
        move |r: &Value| {
            r["kind"] == "decision"
                && r["route"] == "admin"
                && r["principal"]["kind"] == "user"
                && r["principal"]["id"] == who
                && r["action"] == action
                && r["decision"] == decision
        }
    };
    let allowed = w
        .wait_for_audit(
            Duration::from_secs(5),
            decided("alice", "admin:quarantine", "allow"),
        )
        .await
        .unwrap();
    assert_eq!(allowed["resource"], "Quarantine::\"agent/rogue-agent\"");
    assert_eq!(allowed["policies"], json!(["operators-administer"]));
    let denied = w
        .wait_for_audit(
            Duration::from_secs(5),
            decided("mallory", "admin:quarantine", "deny"),
        )
        .await
        .unwrap();
    assert!(
        denied["reasons"][0]
            .as_str()
            .unwrap()
            .contains("no policy permits"),
        "{denied}"
    );
    for (who, action, decision) in [
        ("alice", "admin:list", "allow"),
        ("alice", "admin:release", "allow"),
        ("mallory", "admin:release", "deny"),
        ("mallory", "admin:list", "deny"),
        ("rogue-agent", "admin:list", "deny"),
    ] {
        w.wait_for_audit(Duration::from_secs(5), decided(who, action, decision))
            .await
            .unwrap();
    }
    w.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "rejected"
            && r["route"] == "admin"
            && r["action"] == "admin:quarantine"
            && r["reasons"][0]
                .as_str()
                .is_some_and(|m| m.contains("no credential"))
    })
    .await
    .unwrap();
    let record = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "system"
                && r["detail"]["event"] == "quarantine"
                && r["detail"]["target"]["name"] == "rogue-agent"
        })
        .await
        .unwrap();
    assert_eq!(record["detail"]["by"], "admin:alice");
    w.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "system"
            && r["detail"]["event"] == "release"
            && r["detail"]["released_by"] == "admin:alice"
    })
    .await
    .unwrap();
    // No token in any record.
    let log = serde_json::to_string(&w.audit_records()).unwrap();
    assert!(!log.contains(&alice) && !log.contains(&mallory));
}

#[tokio::test]
async fn the_admin_api_is_off_unless_configured() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .policy("admin.cedar", OPERATORS)
        .start()
        .await
        .unwrap();
    let alice = w
        .token_with("alice", "1h", &[("groups", "operators")])
        .await
        .unwrap();
    let (status, body) = list(&w, &alice).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "admin_api_off", "{body}");
    assert!(message(&body).contains("admin.api"), "{body}");
}
