//! Fleet controls hold for the fleet, not for each replica: two Warden replicas on one
//! PostgreSQL share budget spend (spent through replica A, enforced by replica B within the
//! sync interval, and printed by `warden budgets show`), rate counts (a burst split across
//! the replicas is the fleet's, within the documented bound), session labels (a private
//! read through A makes an external send through B, in the same session, wait for approval)
//! and session counts (chats of one session split over A and B are counted together); and when
//! the database goes away, budget decisions fail closed past `budgets.stale_after`. The denies
//! quarantine trigger counts an agent's denies on both replicas together.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::fake_llm::{COMPLETION_TOKENS, FakeLlm, PROMPT_TOKENS};
use warden_e2e::postgres::Postgres;
use warden_e2e::stack::openai_chat;
use warden_e2e::warden::{Warden, WardenBuilder};

/// Every sync interval in these tests: the bounds below are multiples of it.
const SYNC: &str = "200ms";

/// How long a replica decides budgets on totals it last read: far more than a sync on a
/// machine busy enough to delay one by seconds, so the calls before the outage never meet it.
const STALE_AFTER: &str = "4s";

/// Long enough for a replica to publish and the other to read, twice over (2 × 200 ms, with
/// room for a loaded machine).
const SETTLE: Duration = Duration::from_millis(1500);

/// Chat on gpt-4o-mini is allowed (as is every chat, by the test stack's own policies); a spent
/// budget denies it; after a private read, a send to an external destination (here: gpt-4o)
/// waits for a human.
fn policies(builder: WardenBuilder) -> WardenBuilder {
    let pack = |file: &str, id: &str| {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../policies")
                .join(file),
        )
        .unwrap();
        let start = text.find(&format!("@id(\"{id}\")")).unwrap();
        let end = start + text[start..].find("};").unwrap() + 2;
        text[start..end].to_owned()
    };
    builder
        .policy(
            "mini.cedar",
            "permit (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o-mini\");\n",
        )
        .policy(
            "budgets.cedar",
            &pack("examples/budgets.cedar", "budget-exceeded-deny"),
        )
        .policy(
            "session.cedar",
            &pack("baseline.cedar", "baseline-private-then-external-approval"),
        )
        .policy("counts.cedar", SESSION_COUNT)
}

/// The agent `counter` may chat three times in a session: the fourth is denied.
const SESSION_COUNT: &str = r#"@id("session-count-deny")
@reason("three chats in this session already")
forbid (principal == Agent::"counter", action == Action::"llm:chat", resource)
when { context has session && context.session.action_count >= 3 };
"#;

/// One replica on `state_url`, sharing the agent-token key `key` when given.
fn replica(upstream: &FakeLlm, state_url: &str, key: Option<&str>) -> WardenBuilder {
    let per_call = PROMPT_TOKENS + COMPLETION_TOKENS;
    let mut builder = policies(WardenBuilder::new(upstream))
        .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
        .env("STATE_URL", state_url)
        .set(
            "/budgets",
            json!({"sync_interval": SYNC, "stale_after": STALE_AFTER, "limits": [
                {"scope": "agent", "name": "spender", "period": "day", "tokens": 2 * per_call},
                {"scope": "agent", "name": "saver", "period": "day", "tokens": 100 * per_call}
            ]}),
        )
        .set(
            "/rate_limits",
            json!({"sync_interval": SYNC, "rules": [
                {"scope": "agent", "match": "burster", "rate": 0.001, "burst": 4}
            ]}),
        )
        .set(
            "/sessions",
            json!({"sync_interval": SYNC, "tags": {
                "Model::\"openai/gpt-4o-mini\"": ["private"],
                "Model::\"openai/gpt-4o\"": ["external"]
            }}),
        )
        .set(
            "/approvals",
            json!({"mode": "pending", "console_url": "https://warden.example.com",
                   "operators": [{"subject": "alice", "groups": ["sre"]}]}),
        );
    if let Some(key) = key {
        builder = builder.set("/identity/warden_issuer/key_file", json!(key));
    }
    builder
}

/// A chat on `model` through `warden` as `token`, in session `session` when given; its status
/// and request id.
async fn chat(warden: &Warden, token: &str, model: &str, session: Option<&str>) -> (u16, String) {
    let mut request = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(30))
        .json(&openai_chat(model, false));
    if let Some(session) = session {
        request = request.header("x-warden-session", session);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    response.bytes().await.unwrap();
    (status, id)
}

/// The decision record of request `id` on `warden`.
async fn decision(warden: &Warden, id: &str) -> Value {
    warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["request_id"] == id
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn two_replicas_enforce_one_budget_one_rate_and_one_session() {
    let pg = Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_fleet_replicas");
    let upstream = FakeLlm::start().await.unwrap();
    let a = replica(&upstream, &state_url, None).start().await.unwrap();
    let key = a.setup.data_dir.join("keys/agent-signing.pem");
    let key = key.to_str().unwrap().to_owned();
    let b = replica(&upstream, &state_url, Some(&key))
        .start()
        .await
        .unwrap();
    // Both have read the store once: what they count from.
    tokio::time::sleep(SETTLE).await;

    // Budget: two calls through A spend the agent's day; B refuses the third.
    let spender = a.token("spender").await.unwrap();
    assert_eq!(chat(&b, &spender, "gpt-4o-mini", None).await.0, 200);
    let (status, id) = chat(&a, &spender, "gpt-4o-mini", None).await;
    assert_eq!(status, 200, "the second call is within the budget");
    a.wait_for_audit(Duration::from_secs(10), |r| {
        r["kind"] == "outcome" && r["request_id"] == id.as_str()
    })
    .await
    .unwrap();
    tokio::time::sleep(SETTLE).await;
    let (_, id) = chat(&b, &spender, "gpt-4o-mini", None).await;
    let denied = decision(&b, &id).await;
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(
        denied["policies"],
        json!(["budget-exceeded-deny"]),
        "{denied}"
    );
    let (_, id) = chat(&a, &spender, "gpt-4o-mini", None).await;
    assert_eq!(decision(&a, &id).await["decision"], "deny", "A too");

    // `warden budgets show` prints what both replicas spent, from the store.
    let out = b
        .cli(&[
            "budgets", "show", "--scope", "agent", "--name", "spender", "--json",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let day = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["period"] == "day")
        .unwrap_or_else(|| panic!("{shown}"));
    assert_eq!(day["input_tokens"], json!(2 * PROMPT_TOKENS), "{shown}");
    assert_eq!(
        day["output_tokens"],
        json!(2 * COMPLETION_TOKENS),
        "{shown}"
    );
    assert_eq!(day["remaining"]["tokens"], json!(0), "{shown}");
    assert_eq!(day["exceeded"], json!(true), "{shown}");
    let table = b.cli(&["budgets", "show"]).await.unwrap();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agent") && l.contains("spender")),
        "{table}"
    );

    // Rate: a burst of four, three spent through A; B admits the fourth and refuses the fifth.
    let burster = a.token("burster").await.unwrap();
    for n in 1..=3 {
        assert_eq!(
            chat(&a, &burster, "gpt-4o-mini", None).await.0,
            200,
            "call {n}"
        );
    }
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        chat(&b, &burster, "gpt-4o-mini", None).await.0,
        200,
        "the fourth"
    );
    assert_eq!(
        chat(&b, &burster, "gpt-4o-mini", None).await.0,
        429,
        "the burst is spent across the fleet"
    );
    tokio::time::sleep(SETTLE).await;
    assert_eq!(
        chat(&a, &burster, "gpt-4o-mini", None).await.0,
        429,
        "A knows too"
    );

    // Session: a private read through A, then an external send through B in the same session
    // waits for a human; so does one in another session of that agent (labels follow the
    // agent), while another agent's same send is allowed (the test stack's policies permit
    // chats).
    let reader = a.token("reader").await.unwrap();
    assert_eq!(chat(&a, &reader, "gpt-4o-mini", Some("t-1")).await.0, 200);
    tokio::time::sleep(SETTLE).await;
    let (_, id) = chat(&b, &reader, "gpt-4o", Some("t-1")).await;
    let held = decision(&b, &id).await;
    assert_eq!(held["decision"], "approval_required", "{held}");
    assert_eq!(
        held["policies"],
        json!(["baseline-private-then-external-approval"]),
        "{held}"
    );
    let (_, id) = chat(&b, &reader, "gpt-4o", Some("t-2")).await;
    assert_eq!(
        decision(&b, &id).await["decision"],
        "approval_required",
        "a new session name does not wash off what the agent read"
    );
    let bystander = b.token("bystander").await.unwrap();
    let (_, id) = chat(&b, &bystander, "gpt-4o", Some("t-1")).await;
    assert_eq!(
        decision(&b, &id).await["decision"],
        "allow",
        "another agent never read private data"
    );

    // Session counts: three chats of one session, two through A and one through B; the fourth,
    // through B, is denied once A's have reached it (B alone counted one); so is one through A.
    let counter = a.token("counter").await.unwrap();
    for (n, replica) in [(1, &a), (2, &b), (3, &a)] {
        let (status, id) = chat(replica, &counter, "gpt-4o-mini", Some("c-1")).await;
        assert_eq!(status, 200, "chat {n}");
        replica
            .wait_for_audit(Duration::from_secs(10), |r| {
                r["kind"] == "outcome" && r["request_id"] == id.as_str()
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(SETTLE).await;
    for (name, replica) in [("B", &b), ("A", &a)] {
        let (_, id) = chat(replica, &counter, "gpt-4o-mini", Some("c-1")).await;
        let denied = decision(replica, &id).await;
        assert_eq!(denied["decision"], "deny", "{name}: {denied}");
        assert_eq!(
            denied["policies"],
            json!(["session-count-deny"]),
            "{name}: {denied}"
        );
    }
    let (_, id) = chat(&b, &counter, "gpt-4o-mini", Some("c-2")).await;
    assert_eq!(
        decision(&b, &id).await["decision"],
        "allow",
        "another session has its own counts"
    );

    // Outage: the replicas' database refuses connections. Past `budgets.stale_after` B refuses what a budget bounds, and only that; when the database
    // is back, it decides on the fleet's totals again.
    let saver = a.token("saver").await.unwrap();
    let free = a.token("free").await.unwrap();
    assert_eq!(chat(&b, &saver, "gpt-4o-mini", None).await.0, 200);
    let database = "warden_e2e_fleet_replicas";
    pg.query(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false; \
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}'"
    ));
    // Within `stale_after` B still decides on the totals it read; past it (bounded) it refuses.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let response = loop {
        let response = b
            .http()
            .post(b.url("/openai/chat/completions"))
            .bearer_auth(&saver)
            .timeout(Duration::from_secs(30))
            .json(&openai_chat("gpt-4o-mini", false))
            .send()
            .await
            .unwrap();
        if response.status().as_u16() != 200 || tokio::time::Instant::now() > deadline {
            break response;
        }
        response.bytes().await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["x-warden-error"], "budget_unavailable");
    let body = response.text().await.unwrap();
    assert!(body.contains("budgets.stale_after"), "{body}");
    assert_eq!(
        chat(&b, &free, "gpt-4o-mini", None).await.0,
        200,
        "no budget bounds this agent"
    );
    pg.query(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"));
    // The store answers again: once the replica's pool reconnects and a sync reads the
    // fleet's spend (within a few sync intervals; bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(SETTLE).await;
        let status = chat(&b, &saver, "gpt-4o-mini", None).await.0;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store answers again: still {status}"
        );
    }
}

/// Forbids chats with gpt-4o (no `@on_match`: only the denies trigger can quarantine).
const NO_GPT4O: &str = "@id(\"no-gpt-4o\")\n@reason(\"gpt-4o is off limits\")\n\
    forbid (principal == Agent::\"prober\", action == Action::\"llm:chat\", \
    resource == Model::\"openai/gpt-4o\");\n";

/// A replica whose denies trigger quarantines an agent denied four times within a minute.
fn denying_replica(upstream: &FakeLlm, state_url: &str, key: Option<&str>) -> WardenBuilder {
    let mut builder = WardenBuilder::new(upstream)
        .policy("no-gpt-4o.cedar", NO_GPT4O)
        .set("/state", json!({"postgres": {"url": {"env": "STATE_URL"}}}))
        .env("STATE_URL", state_url)
        .set(
            "/fleet/quarantine",
            json!({"refresh_interval": SYNC,
                   "triggers": {"denies": {"count": 4, "window": "1m"}}}),
        );
    if let Some(key) = key {
        builder = builder.set("/identity/warden_issuer/key_file", json!(key));
    }
    builder
}

#[tokio::test]
async fn denies_spread_over_two_replicas_quarantine_the_agent_as_on_one() {
    let pg = Postgres::from_env();
    let state_url = pg.fresh_database("warden_e2e_fleet_replica_denies");
    let upstream = FakeLlm::start().await.unwrap();
    let a = denying_replica(&upstream, &state_url, None)
        .start()
        .await
        .unwrap();
    let key = a.setup.data_dir.join("keys/agent-signing.pem");
    let key = key.to_str().unwrap().to_owned();
    let b = denying_replica(&upstream, &state_url, Some(&key))
        .start()
        .await
        .unwrap();
    let prober = a.token("prober").await.unwrap();

    // A load balancer spreads the prober's denied requests: three, over both replicas, each
    // shared before the next (neither replica alone counts more than two).
    for (n, replica) in [(1, &a), (2, &b), (3, &a)] {
        let (_, id) = chat(replica, &prober, "gpt-4o", None).await;
        assert_eq!(
            decision(replica, &id).await["decision"],
            "deny",
            "request {n}"
        );
        tokio::time::sleep(SETTLE).await;
    }
    assert_eq!(
        chat(&b, &prober, "gpt-4o-mini", None).await.0,
        200,
        "three denies are not yet four"
    );
    // The fourth within the window, through B (which alone saw one), quarantines it: on both
    // replicas.
    chat(&b, &prober, "gpt-4o", None).await;
    for (name, replica) in [("B", &b), ("A", &a)] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let response = replica
                .http()
                .post(replica.url("/openai/chat/completions"))
                .bearer_auth(&prober)
                .timeout(Duration::from_secs(30))
                .json(&openai_chat("gpt-4o-mini", false))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            if status == 403 {
                assert!(body.contains("agent_quarantined"), "{name}: {body}");
                assert!(
                    body.contains("4 requests were denied within 1m"),
                    "{name}: {body}"
                );
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}: four denies over two replicas did not quarantine the agent ({status}): \
                 {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
