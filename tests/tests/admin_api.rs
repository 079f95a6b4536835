//! The admin API (`admin.api`): an operator of the identity provider `admin.identity` trusts
//! (a person's token from the real OIDC provider, for the admin API's audience), allowed by
//! policy (`admin:*` on a `User` of that issuer in its groups), quarantines an agent over HTTP,
//! lists and releases it; another person is refused 403 with the policy's reason; an agent's
//! token (Warden's own, even with the operator's name and group, or the IdP's for agents) and a
//! caller without a valid token get 401; every call is in the audit log with who (and which
//! issuer), what and the decision.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::idp::{ALPHA, Idp};
use warden_e2e::operator::text;
use warden_e2e::postgres::Postgres;
use warden_e2e::stack::chat;
use warden_e2e::warden::{AUDIENCE, Warden, WardenBuilder};

/// The audience of operators' tokens: the admin API's own, not the agents' (`warden`).
const ADMIN_AUDIENCE: &str = "warden-admin";

/// Lets the IdP's `sre` group (people of `issuer`) administer quarantines, nobody else; lets
/// agents chat.
fn operators(issuer: &str) -> String {
    administer("operators-administer", issuer)
        + "@id(\"agents-chat\")\npermit (principal is Agent, action == Action::\"llm:chat\", resource);\n"
}

/// Policy `id`: the `sre` group of `issuer` administers quarantines.
fn administer(id: &str, issuer: &str) -> String {
    format!(
        "@id(\"{id}\")\n\
         permit (principal in Group::\"sre\", action in [Action::\"admin:quarantine\", \
         Action::\"admin:release\", Action::\"admin:list\"], resource)\n\
         when {{ principal.issuer == \"{issuer}\" }};\n"
    )
}

/// A gateway whose agents are Warden's and the IdP's (audience `warden`), and whose operators
/// are the IdP's people (audience `warden-admin`).
async fn gateway(upstream: &FakeLlm, idp: &Idp) -> Warden {
    WardenBuilder::new(upstream)
        .without_policy("e2e-permit-all.cedar")
        .trust(idp)
        .set("/admin/api", json!(true))
        .set(
            "/admin/identity",
            json!({"issuers": [{"issuer": idp.issuer(), "audiences": [ADMIN_AUDIENCE]}]}),
        )
        .policy("admin.cedar", &operators(idp.issuer()))
        .start()
        .await
        .unwrap()
}

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
    let idp = Idp::shared().await.unwrap();
    let w = gateway(&upstream, &idp).await;
    let rogue = w.token("rogue-agent").await.unwrap();
    // alice is in `sre`, carol in `finance`, at the IdP.
    let alice = idp.person_token("alice", ADMIN_AUDIENCE).await.unwrap();
    let carol = idp.person_token("carol", ADMIN_AUDIENCE).await.unwrap();
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
    assert!(message(&body).contains("admin.identity.issuers"), "{body}");
    let (status, body) = quarantine(&w, Some("not-a-token"), &request).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "malformed_token", "{body}");

    // An agent is no operator: a Warden agent token with the operator's very name and group
    // is refused as an agent's token...
    let impostor = w
        .token_with("alice", "1h", &[("groups", "sre")])
        .await
        .unwrap();
    for token in [&impostor, &rogue] {
        let (status, body) = quarantine(&w, Some(token), &request).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "agent_token", "{body}");
        assert!(message(&body).contains("never an operator"), "{body}");
    }
    // ...and so is a token of the operators' own IdP minted for agents (their audience), be it
    // an agent's or the operator's own.
    let agent_of_idp = idp.token(ALPHA).await.unwrap();
    let alice_for_agents = idp.person_token("alice", AUDIENCE).await.unwrap();
    for token in [&agent_of_idp, &alice_for_agents] {
        let (status, body) = list(&w, token).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["code"], "wrong_audience", "{body}");
        assert!(message(&body).contains(ADMIN_AUDIENCE), "{body}");
    }
    assert_eq!(chat(&w, &rogue).await.0, 200, "nothing happened");

    // Someone the policy does not permit: 403 naming the action and why.
    let (status, body) = quarantine(&w, Some(&carol), &request).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    for says in ["User::\"carol\"", "admin:quarantine", "no policy permits"] {
        assert!(message(&body).contains(says), "{body}");
    }
    assert_eq!(chat(&w, &rogue).await.0, 200, "nothing happened");

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
    let alice_of_idp = json!({"id": "alice", "issuer": idp.issuer()});
    assert_eq!(body["quarantine"]["by"], alice_of_idp, "{body}");
    assert_eq!(body["operator"], alice_of_idp, "{body}");
    assert!(body["quarantine"]["until"].is_string(), "{body}");
    let (status, refused) = chat(&w, &rogue).await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "agent_quarantined", "{refused}");
    assert!(message(&refused).contains("incident 4712"), "{refused}");

    // Listed for the operator, not for carol.
    let (status, body) = list(&w, &alice).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["quarantines"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["target"]["kind"], "agent");
    assert_eq!(listed[0]["reason"], "incident 4712: prompt injection");
    assert_eq!(listed[0]["by"], alice_of_idp, "{body}");
    assert_eq!(list(&w, &carol).await.0, 403);

    // Released by the operator only; a second release finds nothing.
    assert_eq!(release(&w, &carol, "rogue-agent").await.0, 403);
    assert_eq!(release(&w, &impostor, "rogue-agent").await.0, 401);
    assert_eq!(chat(&w, &rogue).await.0, 403);
    let (status, body) = release(&w, &alice, "rogue-agent").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"]["target"]["name"], "rogue-agent", "{body}");
    assert_eq!(chat(&w, &rogue).await.0, 200);
    let (status, body) = release(&w, &alice, "rogue-agent").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_quarantined", "{body}");

    // Every call in the audit log: who (of which issuer), what, on what, the decision.
    let issuer = idp.issuer().to_owned();
    let decided = |who: &'static str, action: &'static str, decision: &'static str| {
        let issuer = issuer.clone();
        move |r: &Value| {
            r["kind"] == "decision"
                && r["route"] == "admin"
                && r["principal"]["kind"] == "user"
                && r["principal"]["id"] == who
                && r["principal"]["issuer"] == issuer.as_str()
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
    assert!(
        allowed["source_ip"].as_str().unwrap().starts_with("127."),
        "{allowed}"
    );
    let denied = w
        .wait_for_audit(
            Duration::from_secs(5),
            decided("carol", "admin:quarantine", "deny"),
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
        ("carol", "admin:release", "deny"),
        ("carol", "admin:list", "deny"),
    ] {
        w.wait_for_audit(Duration::from_secs(5), decided(who, action, decision))
            .await
            .unwrap();
    }
    // The refused agents' tokens were decided nothing: rejected, saying why.
    for (action, says) in [
        ("admin:quarantine", "no credential"),
        ("admin:quarantine", "Warden agent token"),
        ("admin:list", "audience"),
    ] {
        w.wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "rejected"
                && r["route"] == "admin"
                && r["action"] == action
                && r["reasons"][0].as_str().is_some_and(|m| m.contains(says))
        })
        .await
        .unwrap();
    }
    assert!(
        !w.audit_records().iter().any(|r| r["route"] == "admin"
            && r["kind"] == "decision"
            && r["principal"]["issuer"] != issuer.as_str()),
        "only the IdP's operators were ever decided on"
    );
    let record = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "system"
                && r["detail"]["event"] == "quarantine"
                && r["detail"]["target"]["name"] == "rogue-agent"
        })
        .await
        .unwrap();
    assert_eq!(record["detail"]["by"], alice_of_idp);
    w.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "system"
            && r["detail"]["event"] == "release"
            && r["detail"]["released_by"] == alice_of_idp
    })
    .await
    .unwrap();
    // No token in any record.
    let log = serde_json::to_string(&w.audit_records()).unwrap();
    for token in [&alice, &carol, &impostor, &agent_of_idp] {
        assert!(!log.contains(token.as_str()));
    }
}

#[tokio::test]
async fn two_operators_named_alike_at_two_identity_providers_are_told_apart() {
    let upstream = FakeLlm::start().await.unwrap();
    let (first, second) = (Idp::shared().await.unwrap(), Idp::start().await.unwrap());
    assert_ne!(first.issuer(), second.issuer());
    let both = json!(
        [first.issuer(), second.issuer()]
            .map(|issuer| json!({"issuer": issuer, "audiences": [ADMIN_AUDIENCE]}))
    );
    let w = WardenBuilder::new(&upstream)
        .without_policy("e2e-permit-all.cedar")
        .set("/admin/api", json!(true))
        .set("/admin/identity", json!({ "issuers": both }))
        .policy("admin-first.cedar", &administer("first", first.issuer()))
        .policy("admin-second.cedar", &administer("second", second.issuer()))
        .start()
        .await
        .unwrap();
    // `alice` at each provider: the same subject, two people.
    let alices = [
        first.person_token("alice", ADMIN_AUDIENCE).await.unwrap(),
        second.person_token("alice", ADMIN_AUDIENCE).await.unwrap(),
    ];
    let by = [first.issuer(), second.issuer()].map(|i| json!({"id": "alice", "issuer": i}));
    for ((token, agent), by) in alices.iter().zip(["agent-one", "agent-two"]).zip(&by) {
        let request = json!({"agent": agent, "reason": "incident 4713"});
        let (status, body) = quarantine(&w, Some(token), &request).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(&body["quarantine"]["by"], by, "{body}");
    }

    // The list, the audit log and the command line name each one with its issuer.
    let (status, body) = list(&w, &alices[0]).await;
    assert_eq!(status, 200, "{body}");
    let listed: Vec<(&Value, &Value)> = body["quarantines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| (&q["target"]["name"], &q["by"]))
        .collect();
    assert_eq!(
        listed,
        [(&json!("agent-one"), &by[0]), (&json!("agent-two"), &by[1])],
        "{body}"
    );
    for (agent, by) in ["agent-one", "agent-two"].into_iter().zip(&by) {
        w.wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "system"
                && r["detail"]["event"] == "quarantine"
                && r["detail"]["target"]["name"] == agent
                && &r["detail"]["by"] == by
        })
        .await
        .unwrap();
    }
    let out = w.cli(&["agents", "list"]).await.unwrap();
    let listed = text(&out);
    assert!(out.status.success(), "{listed}");
    for (agent, issuer) in [
        ("agent-one", first.issuer()),
        ("agent-two", second.issuer()),
    ] {
        assert!(
            listed
                .lines()
                .any(|l| l.contains(agent) && l.contains(&format!("by alice [{issuer}]"))),
            "{listed}"
        );
    }

    // A release names its operator with its issuer too.
    let (status, body) = release(&w, &alices[0], "agent-two").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["released"]["by"], by[1], "{body}");
    assert_eq!(body["operator"], by[0], "{body}");
    w.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "system"
            && r["detail"]["event"] == "release"
            && r["detail"]["target"]["name"] == "agent-two"
            && r["detail"]["released_by"] == by[0]
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_release_through_one_replica_is_recorded_with_its_operator_on_every_replica() {
    let pg = Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_admin_api_replicas");
    let upstream = FakeLlm::start().await.unwrap();
    let idp = Idp::shared().await.unwrap();
    let replica = || {
        WardenBuilder::new(&upstream)
            .without_policy("e2e-permit-all.cedar")
            .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
            .env("STATE_URL", &state_url)
            .set("/admin/api", json!(true))
            .set(
                "/admin/identity",
                json!({"issuers": [{"issuer": idp.issuer(), "audiences": [ADMIN_AUDIENCE]}]}),
            )
            .policy("admin.cedar", &operators(idp.issuer()))
    };
    let (a, b) = (
        replica().start().await.unwrap(),
        replica().start().await.unwrap(),
    );
    let alice = idp.person_token("alice", ADMIN_AUDIENCE).await.unwrap();
    let alice_of_idp = json!({"id": "alice", "issuer": idp.issuer()});
    let request = json!({"agent": "rogue-agent", "reason": "incident 4714"});
    let (status, body) = quarantine(&a, Some(&alice), &request).await;
    assert_eq!(status, 201, "{body}");
    b.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "system"
            && r["detail"]["event"] == "quarantine"
            && r["detail"]["target"]["name"] == "rogue-agent"
    })
    .await
    .unwrap();

    let (status, body) = release(&a, &alice, "rogue-agent").await;
    assert_eq!(status, 200, "{body}");
    for replica in [&a, &b] {
        let record = replica
            .wait_for_audit(Duration::from_secs(5), |r| {
                r["kind"] == "system"
                    && r["detail"]["event"] == "release"
                    && r["detail"]["target"]["name"] == "rogue-agent"
            })
            .await
            .unwrap();
        assert_eq!(record["detail"]["released_by"], alice_of_idp, "{record}");
    }
}

#[tokio::test]
async fn the_admin_api_is_off_unless_configured() {
    let upstream = FakeLlm::start().await.unwrap();
    let idp = Idp::shared().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .policy("admin.cedar", &operators(idp.issuer()))
        .start()
        .await
        .unwrap();
    let alice = idp.person_token("alice", ADMIN_AUDIENCE).await.unwrap();
    let (status, body) = list(&w, &alice).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "admin_api_off", "{body}");
    assert!(message(&body).contains("admin.api"), "{body}");
}

#[tokio::test]
async fn the_admin_api_without_its_operators_identity_provider_refuses_to_start() {
    let upstream = FakeLlm::start().await.unwrap();
    let mut warden = WardenBuilder::new(&upstream)
        .set("/admin/api", json!(true))
        .write()
        .unwrap()
        .spawn()
        .unwrap();
    let status = warden.wait_exit(Duration::from_secs(20)).await.unwrap();
    let output = warden.output();
    assert!(!status.success(), "must refuse to start:\n{output}");
    assert!(
        output.contains("admin.identity") && output.contains("agents' tokens never"),
        "the error names the missing key:\n{output}"
    );
}
