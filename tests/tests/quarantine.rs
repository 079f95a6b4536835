//! Quarantine (fleet controls): an agent quarantined at the command line is refused at once
//! on every replica sharing the state store (two processes on one PostgreSQL, by `NOTIFY`
//! without waiting for the periodic read), its stream in flight is cut with an error event that says why, and a release
//! lets it through again; triggers quarantine an agent by themselves (a detector's finding, a
//! forbid annotated `@on_match("quarantine")`, denies within a window); a request that waited
//! for approval while its agent was quarantined is refused though a human approved it.
//! Everything audited.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::operator::{
    approve, enrol, first_pending, gpt4o_held_for_sre, held_chat, quarantine, text,
};
use warden_e2e::postgres::Postgres;
use warden_e2e::sse;
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{Warden, WardenBuilder, replicas_on_one_store};

/// A chat on `warden` as `token`: its status and body.
async fn chat(warden: &Warden, token: &str, prompt: &str) -> (u16, Value) {
    chat_on(warden, token, "gpt-4o-mini", prompt).await
}

/// A chat with `model`.
async fn chat_on(warden: &Warden, token: &str, model: &str, prompt: &str) -> (u16, Value) {
    let mut body = openai_chat(model, false);
    body["messages"][0]["content"] = json!(prompt);
    let response = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// How long a quarantine or a release may take to reach a gateway: on PostgreSQL it arrives at
/// once by `NOTIFY`, else within `fleet.quarantine.refresh_interval` (500 ms); the bound is
/// generous for a loaded machine, where one debug-build request can take a second (the time
/// taken is printed where it matters). That `NOTIFY` alone delivers within it is shown with a
/// refresh interval far longer than the bound ([`NOTIFY_ONLY_REFRESH`]).
const PROPAGATION: Duration = Duration::from_secs(15);

/// A `fleet.quarantine.refresh_interval` four times [`PROPAGATION`]: a change that arrives
/// within the bound arrived by `NOTIFY`, not by the periodic read.
const NOTIFY_ONLY_REFRESH: &str = "60s";

/// How long the group quarantine (`--until`) lasts: its refusal is seen before it ends.
const GROUP_LASTS: Duration = Duration::from_secs(5);

/// Asks `warden` as `token` every 20 ms until it answers `status`; how long that took (at
/// most `within`, else the test fails).
async fn until_status(warden: &Warden, token: &str, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (got, body) = chat(warden, token, "hello").await;
        if got == status {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {got} after {within:?} (waiting for {status}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two gateways on a fresh PostgreSQL database `database`, B trusting A's agent tokens, with
/// `fleet.quarantine.refresh_interval` `refresh` (else the default).
async fn two_replicas(
    upstream: &FakeLlm,
    database: &str,
    refresh: Option<&str>,
) -> (Warden, Warden) {
    let state_url = Postgres::from_env().fresh_database(database);
    let [a, b] = replicas_on_one_store(&state_url, |_| match refresh {
        Some(refresh) => {
            WardenBuilder::new(upstream).set("/fleet/quarantine/refresh_interval", json!(refresh))
        }
        None => WardenBuilder::new(upstream),
    })
    .await
    .unwrap();
    (a, b)
}

/// The system records of quarantine `what` (`quarantine`, `release`) of agent `agent`.
fn quarantine_record(record: &Value, what: &str, agent: &str) -> bool {
    record["kind"] == "system"
        && record["detail"]["event"] == what
        && record["detail"]["target"]["name"] == agent
}

/// Waits for the system record of `agent`'s quarantine on `w`, asserted to be Warden's own (a
/// trigger's) with `trigger` and a reason that names `why`.
async fn triggered_quarantine(w: &Warden, agent: &str, trigger: &str, why: &str) {
    let record = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            quarantine_record(r, "quarantine", agent)
        })
        .await
        .unwrap();
    assert_eq!(record["detail"]["trigger"], trigger, "{record}");
    assert_eq!(
        record["detail"]["by"],
        json!({"id": "warden", "issuer": "warden"}),
        "{record}"
    );
    assert!(
        record["detail"]["reason"].as_str().unwrap().contains(why),
        "{record}"
    );
}

/// Asserts that `w` refuses `token`'s next chat as quarantined; the refusal.
async fn assert_quarantined(w: &Warden, token: &str) -> Value {
    let (status, refused) = chat(w, token, "hello").await;
    assert_eq!(status, 403, "{refused}");
    assert_eq!(refused["error"]["code"], "agent_quarantined", "{refused}");
    refused
}

/// Asks `w` as `token` for a gpt-4o chat, asserted denied by the forbids below.
async fn denied_gpt_4o(w: &Warden, token: &str) {
    let (_, denied) = chat_on(w, token, "gpt-4o", "hello").await;
    assert!(
        denied.to_string().contains("gpt-4o is off limits"),
        "{denied}"
    );
}

#[tokio::test]
async fn quarantine_on_one_replica_is_enforced_on_another_cuts_its_stream_and_release_undoes_it() {
    let upstream = FakeLlm::start().await.unwrap();
    let (a, b) = two_replicas(&upstream, "warden_e2e_quarantine", None).await;
    let rogue = a.token("rogue-agent").await.unwrap();
    let honest = a.token("honest-agent").await.unwrap();
    assert_eq!(chat(&b, &rogue, "hello").await.0, 200);

    // A stream of the rogue agent in flight on replica B, held after its first chunks.
    let gate = upstream.hold_streams();
    let mut stream = b
        .http()
        .post(b.url("/openai/chat/completions"))
        .bearer_auth(&rogue)
        .json(&openai_chat("gpt-4o-mini", true))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .expect("the first chunk within 5 s")
        .unwrap()
        .expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("chat.completion.chunk"));

    // Quarantined at the command line of replica A's configuration.
    let out = a
        .cli(&[
            "agents",
            "quarantine",
            "rogue-agent",
            "--reason",
            "incident 4711: exfiltration suspected",
            "--as",
            "alice",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let took = until_status(&b, &rogue, 403, PROPAGATION).await;
    eprintln!("replica B refused the quarantined agent {took:?} after the command");
    let (status, refused) = chat(&b, &rogue, "hello").await;
    assert_eq!(status, 403);
    assert_eq!(refused["error"]["code"], "agent_quarantined", "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("incident 4711: exfiltration suspected"),
        "the agent is told why: {message}"
    );
    // Replica A too (its own announcement may come a moment after B's), and nobody else.
    until_status(&a, &rogue, 403, PROPAGATION).await;
    assert_eq!(chat(&b, &honest, "hello").await.0, 200);

    // The held stream was cut with an error event that says why; the upstream never finished.
    let rest = sse::read_chunks(stream, Duration::from_secs(5))
        .await
        .unwrap();
    let events = sse::parse_events(&sse::text_of(&rest));
    let last = events.last().expect("an event after the cut");
    assert_eq!(last.name.as_deref(), Some("error"), "{events:?}");
    assert!(last.data.contains("agent_quarantined"), "{}", last.data);
    assert!(last.data.contains("incident 4711"), "{}", last.data);
    assert_eq!(upstream.streams_completed(), 0);
    drop(gate);

    // Audited on the replica where it took effect: the quarantine and the cut stream.
    let record = b
        .wait_for_audit(Duration::from_secs(5), |r| {
            quarantine_record(r, "quarantine", "rogue-agent")
        })
        .await
        .unwrap();
    assert_eq!(
        record["detail"]["by"],
        json!({"id": "alice", "issuer": "warden-cli"})
    );
    assert_eq!(record["detail"]["trigger"], "manual");
    b.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "outcome"
            && r["principal"]["id"] == "rogue-agent"
            && r["outcome"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("cut: the agent was quarantined"))
    })
    .await
    .unwrap();
    let metrics = b.metrics().await.unwrap();
    assert!(metrics.contains("warden_quarantined_agents 1"), "{metrics}");
    assert!(
        metrics.contains("warden_quarantines_total{trigger=\"manual\"} 1"),
        "{metrics}"
    );

    // Listed, then released: both replicas let it through again.
    let out = a.cli(&["agents", "list"]).await.unwrap();
    assert!(
        text(&out).contains("rogue-agent") && text(&out).contains("by alice [warden-cli]"),
        "{}",
        text(&out)
    );
    let out = a
        .cli(&["agents", "release", "rogue-agent", "--as", "carol"])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    until_status(&b, &rogue, 200, PROPAGATION).await;
    until_status(&a, &rogue, 200, PROPAGATION).await;
    // Both replicas record who released it, from the store.
    for replica in [&a, &b] {
        let record = replica
            .wait_for_audit(Duration::from_secs(5), |r| {
                quarantine_record(r, "release", "rogue-agent")
            })
            .await
            .unwrap();
        assert_eq!(
            record["detail"]["released_by"],
            json!({"id": "carol", "issuer": "warden-cli"}),
            "{record}"
        );
    }
    let out = a.cli(&["agents", "release", "rogue-agent"]).await.unwrap();
    assert!(
        !out.status.success(),
        "releasing twice says it was not quarantined"
    );
}

#[tokio::test]
async fn on_postgresql_a_quarantine_and_its_release_arrive_by_notify_without_waiting_for_a_poll() {
    let upstream = FakeLlm::start().await.unwrap();
    let (a, b) = two_replicas(
        &upstream,
        "warden_e2e_quarantine_notify",
        Some(NOTIFY_ONLY_REFRESH),
    )
    .await;
    let rogue = a.token("rogue-agent").await.unwrap();
    assert_eq!(chat(&b, &rogue, "hello").await.0, 200);

    // Neither replica reads the revision again for a minute: only the notification can make
    // B refuse within the bound, and then let the agent through again.
    quarantine(&a, "rogue-agent", "incident 4713").await;
    let took = until_status(&b, &rogue, 403, PROPAGATION).await;
    eprintln!("replica B refused the quarantined agent {took:?} after the command (NOTIFY)");
    assert_quarantined(&b, &rogue).await;
    let out = a.cli(&["agents", "release", "rogue-agent"]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let took = until_status(&b, &rogue, 200, PROPAGATION).await;
    eprintln!("replica B let the released agent through {took:?} after the command (NOTIFY)");
}

#[tokio::test]
async fn a_release_at_the_command_line_is_recorded_by_the_running_gateway_with_its_operator() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .set("/fleet/quarantine/refresh_interval", json!("50ms"))
        .start()
        .await
        .unwrap();
    let rogue = w.token("rogue-agent").await.unwrap();
    let out = w
        .cli(&[
            "agents",
            "quarantine",
            "rogue-agent",
            "--reason",
            "incident 4712",
            "--as",
            "bob",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    until_status(&w, &rogue, 403, PROPAGATION).await;

    // An empty operator is refused, and nothing is released.
    let out = w
        .cli(&["agents", "release", "rogue-agent", "--as", " "])
        .await
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--as is empty"), "{}", text(&out));
    assert_quarantined(&w, &rogue).await;

    let out = w
        .cli(&["agents", "release", "rogue-agent", "--as", "alice"])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("released by alice [warden-cli]: agent  rogue-agent"),
        "{}",
        text(&out)
    );
    until_status(&w, &rogue, 200, PROPAGATION).await;
    let record = w
        .wait_for_audit(Duration::from_secs(5), |r| {
            quarantine_record(r, "release", "rogue-agent")
        })
        .await
        .unwrap();
    assert_eq!(
        record["detail"]["released_by"],
        json!({"id": "alice", "issuer": "warden-cli"}),
        "{record}"
    );
    assert_eq!(
        record["detail"]["by"],
        json!({"id": "bob", "issuer": "warden-cli"}),
        "{record}"
    );
}

#[tokio::test]
async fn a_group_quarantine_stops_every_agent_of_the_group_until_its_expiry() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .set("/fleet/quarantine/refresh_interval", json!("50ms"))
        .start()
        .await
        .unwrap();
    let red = w
        .token_with("red-1", "1h", &[("groups", "red-team")])
        .await
        .unwrap();
    let blue = w.token("blue-1").await.unwrap();
    let out = w
        .cli(&[
            "agents",
            "quarantine",
            "--group",
            "red-team",
            "--reason",
            "exercise",
            "--until",
            "5s",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    until_status(&w, &red, 403, GROUP_LASTS).await;
    assert_eq!(chat(&w, &blue, "hello").await.0, 200);
    let (_, refused) = chat(&w, &red, "hello").await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("agent group \"red-team\""), "{message}");
    assert!(
        message.contains("until 20"),
        "the expiry is named: {message}"
    );
    // It ends by itself.
    until_status(&w, &red, 200, PROPAGATION + GROUP_LASTS).await;
    w.wait_for_audit(Duration::from_secs(5), |r| {
        r["kind"] == "system"
            && r["detail"]["event"] == "release"
            && r["detail"]["released_by"] == json!({"id": "expiry", "issuer": "warden"})
    })
    .await
    .unwrap();
}

/// Forbids chats with gpt-4o and quarantines the agent it denies.
const QUARANTINING_FORBID: &str = "@id(\"no-gpt-4o\")\n\
    @reason(\"gpt-4o is off limits\")\n@on_match(\"quarantine\")\n\
    forbid (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\");\n";

#[tokio::test]
async fn triggers_quarantine_an_agent_by_themselves() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .set(
            "/fleet/quarantine/triggers",
            json!({
                "detectors": ["private_key"],
            }),
        )
        .policy("quarantining.cedar", QUARANTINING_FORBID)
        .start()
        .await
        .unwrap();

    // A detector's finding (private_key standing in for a canary token).
    let leaker = w.token("leaker").await.unwrap();
    let (status, answer) = chat(
        &w,
        &leaker,
        "deploy with -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
    )
    .await;
    assert!(
        answer.to_string().contains("quarantined"),
        "the request that fired the trigger is refused with the quarantine ({status}): {answer}"
    );
    assert_quarantined(&w, &leaker).await;
    triggered_quarantine(&w, "leaker", "detector", "private_key").await;
    // Stored for every replica: the command line lists it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = w.cli(&["agents", "list"]).await.unwrap();
        if text(&out).contains("leaker") {
            break;
        }
        assert!(Instant::now() < deadline, "{}", text(&out));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        chat(&w, &w.token("bystander").await.unwrap(), "hello")
            .await
            .0,
        200
    );

    // A forbid annotated @on_match("quarantine") that determines a deny.
    let prober = w.token("prober").await.unwrap();
    assert_eq!(chat(&w, &prober, "hello").await.0, 200);
    denied_gpt_4o(&w, &prober).await;
    assert_quarantined(&w, &prober).await;
    triggered_quarantine(&w, "prober", "policy", "no-gpt-4o").await;
}

/// Forbids chats with gpt-4o, with no `@on_match`: only the denies trigger can quarantine.
const PLAIN_FORBID: &str = "@id(\"no-gpt-4o\")\n@reason(\"gpt-4o is off limits\")\n\
    forbid (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\");\n";

#[tokio::test]
async fn denies_within_the_window_quarantine_the_agent_by_themselves() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&upstream)
        .set(
            "/fleet/quarantine/triggers",
            json!({ "denies": { "count": 3, "window": "1m" } }),
        )
        .policy("forbid.cedar", PLAIN_FORBID)
        .start()
        .await
        .unwrap();
    let prober = w.token("prober").await.unwrap();
    let careful = w.token("careful").await.unwrap();

    // Two denies: not yet (and another agent's denies count for that agent only).
    for agent in [&prober, &careful, &prober, &careful] {
        denied_gpt_4o(&w, agent).await;
    }
    assert_eq!(chat(&w, &prober, "hello").await.0, 200);
    assert_eq!(chat(&w, &careful, "hello").await.0, 200);

    // The third within the window quarantines the prober; its next request is refused.
    denied_gpt_4o(&w, &prober).await;
    let refused = assert_quarantined(&w, &prober).await;
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("3 requests were denied within 1m"),
        "{message}"
    );
    assert_eq!(chat(&w, &careful, "hello").await.0, 200);

    triggered_quarantine(&w, "prober", "denies", "3 requests were denied").await;
    let metrics = w.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_quarantines_total{trigger=\"denies\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_request_approved_after_its_agent_was_quarantined_is_refused_and_never_sent() {
    let upstream = FakeLlm::start().await.unwrap();
    let w = gpt4o_held_for_sre(&upstream).await;
    let token = w.token("rogue-agent").await.unwrap();
    let alice = enrol(&w, "alice").await;
    let held = held_chat(&w, &token, Duration::from_secs(40));
    let id = first_pending(&w)
        .await
        .expect("the waiting request's approval");

    // Quarantined while it waits; once this replica enforces it, alice (who does not know)
    // approves.
    quarantine(&w, "rogue-agent", "leaked a key").await;
    until_status(&w, &token, 403, Duration::from_secs(5)).await;
    assert!(!held.is_finished(), "the held request still waits");
    let out = approve(&w, &id, "alice", &alice).await;
    assert!(out.status.success(), "{}", text(&out));

    let refused = held.await.unwrap().unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "agent_quarantined", "{body}");
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("gpt-4o\"")),
        "the approved request of a quarantined agent reached the upstream"
    );
}
