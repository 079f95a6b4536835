//! Credentials from Vault end to end: the real warden binary reading from a real OpenBao dev
//! server (`tests/src/openbao.rs`). KV v2 secrets (latest and a pinned version) injected on an
//! LLM route and on routes to an upstream that echoes what it receives (`tests/src/echo.rs`),
//! as a header and as a query parameter, and redacted from what the echo sends back; the secret
//! never in the audit log, Warden's output or its metrics; per-agent paths judged by
//! `secret:use`; OpenBao stopped and started again (cached serve, fail closed, recovery).

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::echo::Echo;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::openbao::{OpenBao, ROOT_TOKEN};
use warden_e2e::warden::{OPENAI_KEY, Warden, WardenBuilder};

const AGENT: &str = "vault-agent";

/// Warden with a `vault:` section for `bao`, changed by `more`.
async fn warden(
    bao: &OpenBao,
    upstream: &FakeLlm,
    more: impl FnOnce(WardenBuilder) -> WardenBuilder,
) -> Warden {
    let builder = WardenBuilder::new(upstream)
        .set("/vault", bao.vault_section("E2E_BAO_TOKEN"))
        .env("E2E_BAO_TOKEN", ROOT_TOKEN)
        // Warden never gets the provider key itself: only Vault has it.
        .env("FAKE_OPENAI_KEY", "not-the-key")
        .set(
            "/routes/0/credential",
            json!({"vault": {"kv": "secret/e2e/openai", "field": "api_key"}}),
        );
    more(builder).start().await.expect("warden starts")
}

/// An `/echo` route (the OpenAI connector, so `GET /echo/models` is `llm:models`) to `echo`
/// with `credential` and `inject`.
fn echo_route(prefix: &str, echo: &Echo, credential: Value, inject: Option<Value>) -> Value {
    let mut route = json!({"name": &prefix[1..], "prefix": prefix, "connector": "openai",
                           "upstream": echo.url(), "credential": credential});
    if let Some(inject) = inject {
        route["inject"] = inject;
    }
    route
}

async fn get(warden: &Warden, token: &str, path: &str) -> (u16, Value) {
    let response = warden
        .http()
        .get(warden.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every file under `dir`, as text.
fn all_text(dir: &std::path::Path) -> String {
    let mut out = String::new();
    for entry in walk(dir) {
        out.push_str(&String::from_utf8_lossy(
            &std::fs::read(&entry).unwrap_or_default(),
        ));
    }
    out
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn kv_secrets_reach_the_upstream_and_nowhere_else() {
    let bao = OpenBao::start().await.expect("openbao");
    bao.kv_put("e2e/openai", &[("api_key", OPENAI_KEY)]);
    bao.kv_put("e2e/echo", &[("token", "sk-echo-version-one-1111")]);
    bao.kv_put("e2e/echo", &[("token", "sk-echo-version-two-2222")]);
    let fake = FakeLlm::start().await.expect("fake llm");
    let echo = Echo::start().await.expect("echo");
    let routes = [
        echo_route(
            "/echo-latest",
            &echo,
            json!({"vault": {"kv": "secret/e2e/echo"}}),
            None,
        ),
        echo_route(
            "/echo-v1",
            &echo,
            json!({"vault": {"kv": "secret/e2e/echo", "version": 1}}),
            None,
        ),
        echo_route(
            "/echo-query",
            &echo,
            json!({"vault": {"kv": "secret/e2e/echo"}}),
            Some(json!({"query": "api_key"})),
        ),
        echo_route(
            "/echo-plain",
            &echo,
            json!({"vault": {"kv": "secret/e2e/echo"}}),
            Some(json!({"header": "x-api-key", "redact": false})),
        ),
    ];
    let mut warden = warden(&bao, &fake, |mut b| {
        for (i, r) in routes.into_iter().enumerate() {
            b = b.set(&format!("/routes/{}", 3 + i), r);
        }
        b
    })
    .await;
    let token = warden.token(AGENT).await.expect("token");

    // An LLM route: the fake provider accepts only the key, which only Vault holds.
    let response = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(
        fake.last_request()
            .unwrap()
            .header("authorization")
            .map(str::to_owned),
        Some(format!("Bearer {OPENAI_KEY}"))
    );

    // The latest version as a header, echoed back redacted; the agent's token never upstream.
    let (status, body) = get(&warden, &token, "/echo-latest/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["authorization"], "Bearer [REDACTED]",
        "{body}"
    );
    let seen = echo.seen();
    assert_eq!(
        seen[0]["headers"]["authorization"],
        "Bearer sk-echo-version-two-2222"
    );
    assert!(!seen[0].to_string().contains(&token));

    // A pinned version.
    let (status, body) = get(&warden, &token, "/echo-v1/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        echo.seen()[1]["headers"]["authorization"],
        "Bearer sk-echo-version-one-1111"
    );

    // A query parameter (the agent's own of that name replaced), redacted in the echo.
    let (status, body) = get(&warden, &token, "/echo-query/models?api_key=agent&x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/models?x=1&api_key=[REDACTED]", "{body}");
    assert_eq!(
        echo.seen()[2]["path"],
        "/models?x=1&api_key=sk-echo-version-two-2222"
    );

    // `redact: false` lets the echo through as it is.
    let (status, body) = get(&warden, &token, "/echo-plain/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["headers"]["x-api-key"], "sk-echo-version-two-2222");

    // Audit records name the secret's path and version, never its value.
    let record = warden
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["route"] == "echo-v1"
        })
        .await
        .unwrap();
    assert_eq!(record["secret"]["path"], "secret/e2e/echo", "{record}");
    assert_eq!(record["secret"]["version"], 1, "{record}");
    let record = warden
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["route"] == "echo-latest"
        })
        .await
        .unwrap();
    assert_eq!(record["secret"]["version"], 2, "{record}");

    let metrics = warden.metrics().await.unwrap();
    assert!(metrics.contains("warden_vault_up 1"), "{metrics}");
    assert!(
        metrics.contains("warden_vault_reads_total{kind=\"kv\",result=\"ok\"}"),
        "{metrics}"
    );
    warden.signal(libc::SIGTERM).unwrap();
    warden.wait_exit(Duration::from_secs(15)).await.unwrap();
    let audit = all_text(&warden.audit_dir());
    let output = warden.output();
    for secret in [
        OPENAI_KEY,
        "sk-echo-version-one-1111",
        "sk-echo-version-two-2222",
    ] {
        assert!(!audit.contains(secret), "{secret} in the audit log");
        assert!(!output.contains(secret), "{secret} in Warden's output");
        assert!(!metrics.contains(secret), "{secret} in the metrics");
    }
}

#[tokio::test]
async fn per_agent_paths_are_judged_by_secret_use() {
    let bao = OpenBao::start().await.expect("openbao");
    bao.kv_put("e2e/openai", &[("api_key", OPENAI_KEY)]);
    bao.kv_put("agents/team-a/github", &[("token", "ghp-team-a-secret")]);
    bao.kv_put("agents/team-b/github", &[("token", "ghp-team-b-secret")]);
    let fake = FakeLlm::start().await.expect("fake llm");
    let echo = Echo::start().await.expect("echo");
    let route = echo_route(
        "/gh",
        &echo,
        json!({"vault": {"kv": "secret/agents/{principal.owner}/github"}}),
        None,
    );
    let warden = warden(&bao, &fake, |b| {
        b.set("/routes/3", route)
            .without_policy("e2e-permit-all.cedar")
            .policy(
                "e2e.cedar",
                r#"@id("all-but-secrets")
permit (principal, action, resource) unless { action == Action::"secret:use" };

@id("team-a-secrets")
permit (principal, action == Action::"secret:use", resource)
when { resource.path like "secret/agents/team-a/*" };
"#,
            )
    })
    .await;
    let team_a = warden
        .token_with("a-bot", "1h", &[("owner", "team-a")])
        .await
        .unwrap();
    let (status, body) = get(&warden, &team_a, "/gh/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        echo.seen()[0]["headers"]["authorization"],
        "Bearer ghp-team-a-secret"
    );

    // Another owner's path: refused by policy, in the route's protocol shape.
    let team_b = warden
        .token_with("b-bot", "1h", &[("owner", "team-b")])
        .await
        .unwrap();
    let (status, body) = get(&warden, &team_b, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "secret_denied", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("secret/agents/team-b/github"), "{message}");

    // No owner, or one that would climb out of its folder: refused before Vault is asked.
    let nobody = warden.token("no-owner-bot").await.unwrap();
    let (status, body) = get(&warden, &nobody, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "secret_unresolved", "{body}");
    let climber = warden
        .token_with("c-bot", "1h", &[("owner", "../team-a")])
        .await
        .unwrap();
    let (status, body) = get(&warden, &climber, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "secret_unresolved", "{body}");
    assert_eq!(
        echo.seen().len(),
        1,
        "refused requests never reach upstream"
    );
    let record = warden
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["principal"]["id"] == "b-bot"
        })
        .await
        .unwrap();
    assert_eq!(record["outcome"]["status"], 403, "{record}");
    assert!(!warden.output().contains("ghp-team-b-secret"));
}

#[tokio::test]
async fn an_outage_serves_the_cache_then_fails_closed_then_recovers() {
    let mut bao = OpenBao::start().await.expect("openbao");
    bao.kv_put("e2e/openai", &[("api_key", OPENAI_KEY)]);
    bao.kv_put("e2e/echo", &[("token", "sk-outage-0123456")]);
    let fake = FakeLlm::start().await.expect("fake llm");
    let echo = Echo::start().await.expect("echo");
    let route = echo_route(
        "/echo",
        &echo,
        json!({"vault": {"kv": "secret/e2e/echo"}}),
        None,
    );
    let warden = warden(&bao, &fake, |b| {
        b.set("/routes/3", route)
            .set("/vault/kv_ttl", json!("4s"))
            .set("/vault/renew_margin", json!("1s"))
    })
    .await;
    let token = warden.token(AGENT).await.unwrap();
    let (status, body) = get(&warden, &token, "/echo/models").await;
    assert_eq!(status, 200, "{body}");

    bao.stop();
    // Within its TTL the cached secret serves.
    let (status, body) = get(&warden, &token, "/echo/models").await;
    assert_eq!(status, 200, "{body}");
    // Then requests fail closed with a reason, in the protocol's shape.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (status, body) = get(&warden, &token, "/echo/models").await;
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still served after the TTL"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["error"]["code"], "vault_unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("vault is unreachable"),
        "{body}"
    );
    let metrics = warden.metrics().await.unwrap();
    assert!(metrics.contains("warden_vault_up 0"), "{metrics}");
    assert!(
        warden.output().contains("vault is not answering"),
        "the log says so"
    );

    // Vault comes back (a dev server starts empty: the secret is written again); Warden
    // recovers on its own.
    bao.restart().await.expect("openbao again");
    bao.kv_put("e2e/echo", &[("token", "sk-outage-0123456")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&warden, &token, "/echo/models").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        echo.seen().last().unwrap()["headers"]["authorization"],
        "Bearer sk-outage-0123456"
    );
}
