//! Credentials from Vault end to end: the real warden binary reading from a real OpenBao dev
//! server (`tests/src/openbao.rs`). KV v2 secrets (latest and a pinned version) injected on an
//! LLM route and on routes to an upstream that echoes what it receives (`tests/src/echo.rs`),
//! as a header and as a query parameter, and redacted from what the echo sends back; the secret
//! never in the audit log, Warden's output or its metrics; per-agent paths judged by
//! `secret:use`; OpenBao stopped and started again (cached serve, fail closed, recovery); a
//! leased PostgreSQL login from OpenBao's database engine (on the cluster tests/run starts)
//! injected as HTTP Basic, renewed while in use and revoked when idle and at shutdown, as
//! PostgreSQL sees it; concurrent misses make one Vault read.

use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::echo::Echo;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::idp::{ALPHA, Idp};
use warden_e2e::openbao::OpenBao;
use warden_e2e::postgres::Postgres;
use warden_e2e::warden::{OPENAI_KEY, Warden, WardenBuilder};

const AGENT: &str = "vault-agent";

/// An OpenBao holding the fake provider's key (the one Warden's `/openai` route reads), the
/// fake provider, and an echoing upstream.
async fn stage() -> (OpenBao, FakeLlm, Echo) {
    let bao = OpenBao::start().await.expect("openbao");
    bao.kv_put("e2e/openai", &[("api_key", OPENAI_KEY)]);
    let fake = FakeLlm::start().await.expect("fake llm");
    let echo = Echo::start().await.expect("echo");
    (bao, fake, echo)
}

/// Warden with a `vault:` section for `bao`, changed by `more`.
async fn warden(
    bao: &OpenBao,
    upstream: &FakeLlm,
    more: impl FnOnce(WardenBuilder) -> WardenBuilder,
) -> Warden {
    let builder = bao
        .login(WardenBuilder::new(upstream))
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
    let (bao, fake, echo) = stage().await;
    bao.kv_put("e2e/echo", &[("token", "sk-echo-version-one-1111")]);
    bao.kv_put("e2e/echo", &[("token", "sk-echo-version-two-2222")]);
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

    // Response headers quoting the credential are redacted as the body is.
    let response = warden
        .http()
        .get(warden.url("/echo-query/models?x=2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-location"],
        "/models?x=2&api_key=[REDACTED]"
    );
    let response = warden
        .http()
        .get(warden.url("/echo-latest/models"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-echo-authorization"],
        "Bearer [REDACTED]"
    );
    let before = echo.seen().len();

    // The latest version as a header, echoed back redacted; the agent's token never upstream.
    let (status, body) = get(&warden, &token, "/echo-latest/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["authorization"], "Bearer [REDACTED]",
        "{body}"
    );
    let seen = echo.seen();
    assert_eq!(
        seen[before]["headers"]["authorization"],
        "Bearer sk-echo-version-two-2222"
    );
    assert!(!seen[before].to_string().contains(&token));

    // A pinned version.
    let (status, body) = get(&warden, &token, "/echo-v1/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        echo.seen()[before + 1]["headers"]["authorization"],
        "Bearer sk-echo-version-one-1111"
    );

    // A query parameter (the agent's own of that name replaced), redacted in the echo.
    let (status, body) = get(&warden, &token, "/echo-query/models?api_key=agent&x=1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/models?x=1&api_key=[REDACTED]", "{body}");
    assert_eq!(
        echo.seen()[before + 2]["path"],
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

    // Memory holding secrets never lands in a core dump.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", warden.pid().unwrap()))
        .unwrap_or_default();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(core.get(4..6), Some(&["0", "0"][..]), "{limits}");

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
    let (bao, fake, echo) = stage().await;
    bao.kv_put_tokens(&[
        ("agents/team-a/github", "ghp-team-a-secret"),
        ("agents/team-b/github", "ghp-team-b-secret"),
    ]);
    let warden = warden(&bao, &fake, |b| {
        bao.per_principal(
            b,
            &echo.url(),
            "secret/agents/{principal.owner}/github",
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

/// An issuer as `{principal.issuer}` puts it in a path (docs/secrets.md): ASCII letters,
/// digits, `-` and `.` as they are, every other byte as `_` and two upper-case hex digits.
fn issuer_segment(issuer: &str) -> String {
    issuer
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' => char::from(b).to_string(),
            _ => format!("_{b:02X}"),
        })
        .collect()
}

/// Two issuers vouch for an agent of the same name: with `{principal.issuer}` in the path,
/// the IdP's `agent-alpha` and a Warden token's `agent-alpha` each get their own secret (and
/// their own cached copy); an issuer that spells the other's folder, a separator, a dot
/// segment or a percent escape reaches no other's.
#[tokio::test]
async fn per_issuer_paths_keep_two_issuers_agents_of_one_name_apart() {
    let idp = Idp::shared().await.expect("idp");
    let (bao, fake, echo) = stage().await;
    let corp = issuer_segment(idp.issuer());
    assert!(corp.starts_with("http_3A_2F_2F"), "{corp}");
    let corp_path = format!("agents/{corp}/agent-alpha/github");
    bao.kv_put_tokens(&[
        ("agents/warden/agent-alpha/github", "ghp-warden-alpha-1111"),
        (&corp_path, "ghp-idp-alpha-2222"),
    ]);
    let warden = warden(&bao, &fake, |b| {
        bao.per_principal(
            b.trust(&idp),
            &echo.url(),
            "secret/agents/{principal.issuer}/{principal.id}/github",
            r#"@id("all-but-secrets")
permit (principal, action, resource) unless { action == Action::"secret:use" };

@id("agents-folders")
permit (principal, action == Action::"secret:use", resource)
when { resource.path like "secret/agents/*" };
"#,
        )
    })
    .await;
    let local = warden.token("agent-alpha").await.unwrap();
    let corporate = idp.token(ALPHA).await.unwrap();
    for (token, secret) in [
        (&local, "ghp-warden-alpha-1111"),
        (&corporate, "ghp-idp-alpha-2222"),
        (&local, "ghp-warden-alpha-1111"),
        (&corporate, "ghp-idp-alpha-2222"),
    ] {
        let (status, body) = get(&warden, token, "/gh/models").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            echo.seen().last().unwrap()["headers"]["authorization"],
            format!("Bearer {secret}")
        );
    }
    let record = warden
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["principal"]["issuer"] == idp.issuer()
        })
        .await
        .unwrap();
    assert_eq!(
        record["secret"]["path"],
        format!("secret/{corp_path}"),
        "{record}"
    );

    // Warden's own issuer renamed to what reaches the IdP agent's folder when an issuer goes
    // into the path as written, or once Vault's HTTP server decodes percent escapes: each
    // resolves to a folder of its own, which holds nothing (fail closed, nothing upstream).
    for hostile in [
        corp.clone(),
        format!("x/../{corp}"),
        format!("x%2F..%2F{corp}"),
        format!("..%2F{corp}"),
    ] {
        let issuer = hostile.clone();
        warden
            .reload(move |c| c["identity"]["warden_issuer"]["issuer"] = json!(issuer))
            .await
            .unwrap();
        let token = warden.token("agent-alpha").await.unwrap();
        let (status, body) = get(&warden, &token, "/gh/models").await;
        assert_eq!(status, 503, "{hostile}: {body}");
        assert_eq!(body["error"]["code"], "credential_unavailable", "{body}");
    }
    // One that is a dot segment gives no path at all.
    warden
        .reload(|c| c["identity"]["warden_issuer"]["issuer"] = json!(".."))
        .await
        .unwrap();
    let token = warden.token("agent-alpha").await.unwrap();
    let (status, body) = get(&warden, &token, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "secret_unresolved", "{body}");
    assert_eq!(
        echo.seen().len(),
        4,
        "no hostile issuer's request went upstream"
    );
    let output = warden.output();
    assert!(!output.contains("ghp-idp-alpha-2222") && !output.contains("ghp-warden-alpha-1111"));
}

#[tokio::test]
async fn an_outage_serves_the_cache_then_fails_closed_then_recovers() {
    let (mut bao, fake, echo) = stage().await;
    bao.kv_put("e2e/echo", &[("token", "sk-outage-0123456")]);
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
    // The agent gets the code and the decision id; Vault's address and the secret's path stay
    // in the operator's log and the audit record.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("(decision "), "{body}");
    assert!(
        !message.contains("secret/e2e/echo") && !message.contains("127.0.0.1"),
        "{body}"
    );
    let record = warden
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["outcome"]["status"] == 503
        })
        .await
        .unwrap();
    assert!(
        record["outcome"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("vault is unreachable")),
        "{record}"
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

/// The value of metric `name` (with its labels, as printed) in `metrics`, 0 when absent.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// OpenBao's database engine on `bao`, connected to `pg`, with role `role` making login roles
/// whose leases last `ttl`.
fn database_role(bao: &OpenBao, pg: &Postgres, role: &str, ttl: &str) {
    bao.run(&["secrets", "enable", "database"]);
    bao.run(&[
        "write",
        "database/config/e2e",
        "plugin_name=postgresql-database-plugin",
        &format!(
            "connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@{}/postgres?sslmode=disable",
            pg.host_port()
        ),
        &format!("username={}", pg.superuser()),
        &format!("password={}", pg.password()),
        &format!("allowed_roles={role}"),
    ]);
    bao.run(&[
        "write",
        &format!("database/roles/{role}"),
        "db_name=e2e",
        "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' \
         VALID UNTIL '{{expiration}}';",
        &format!("default_ttl={ttl}"),
        "max_ttl=10m",
    ]);
}

/// The user and password of a Basic `authorization` header.
fn basic(header: &Value) -> (String, String) {
    use base64::Engine as _;
    let encoded = header
        .as_str()
        .and_then(|h| h.strip_prefix("Basic "))
        .unwrap_or_else(|| panic!("not Basic: {header}"));
    let pair = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let pair = String::from_utf8(pair).unwrap();
    let (user, password) = pair.split_once(':').unwrap();
    (user.to_owned(), password.to_owned())
}

async fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_leased_database_login_is_injected_renewed_and_revoked() {
    let pg = Postgres::from_env();
    let (bao, fake, echo) = stage().await;
    let role = format!("e2e-lease-{}", std::process::id());
    database_role(&bao, &pg, &role, "9s");
    let route = echo_route(
        "/db",
        &echo,
        json!({"vault": {"lease": format!("database/creds/{role}")}}),
        Some(json!({"basic": {"username": "{secret.username}", "password": "{secret.password}"}})),
    );
    let mut warden = warden(&bao, &fake, |b| {
        b.set("/routes/3", route).set("/vault/idle", json!("3s"))
    })
    .await;
    let token = warden.token(AGENT).await.unwrap();

    // The lease's login goes upstream as Basic, works in PostgreSQL, and is redacted from
    // the echo.
    let (status, body) = get(&warden, &token, "/db/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["authorization"], "Basic [REDACTED]",
        "{body}"
    );
    let (user, password) = basic(&echo.seen()[0]["headers"]["authorization"]);
    assert!(pg.role_exists(&user), "no role {user}");
    assert_eq!(
        pg.query_as(&user, &password, "select current_user")
            .unwrap(),
        user
    );
    let record = warden
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["route"] == "db"
        })
        .await
        .unwrap();
    let lease = record["secret"]["lease_id"].as_str().unwrap().to_owned();
    assert!(
        lease.starts_with(&format!("database/creds/{role}/")),
        "{record}"
    );

    // In use past its first 9 s: renewed, the same login all along.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(11) {
        let (status, body) = get(&warden, &token, "/db/models").await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        echo.seen()
            .iter()
            .all(|r| basic(&r["headers"]["authorization"]).0 == user),
        "one lease, renewed"
    );
    assert!(
        pg.role_exists(&user),
        "the renewed login lives past its first TTL"
    );
    let renewed = bao.run(&["lease", "lookup", "-format=json", &lease]);
    assert!(
        !renewed.contains("\"last_renewal\": null"),
        "OpenBao saw a renewal: {renewed}"
    );
    let metrics = warden.metrics().await.unwrap();
    assert!(
        metric(&metrics, "warden_vault_lease_renewals_total{result=\"ok\"}") >= 1.0,
        "{metrics}"
    );

    // Left unused: revoked, and PostgreSQL drops the login.
    wait_until("the idle lease revoked", Duration::from_secs(10), || {
        !pg.role_exists(&user)
    })
    .await;

    // A new lease; at shutdown it is revoked at once, long before it would expire.
    let (status, body) = get(&warden, &token, "/db/models").await;
    assert_eq!(status, 200, "{body}");
    let (second, _) = basic(&echo.seen().last().unwrap()["headers"]["authorization"]);
    assert_ne!(second, user);
    assert!(pg.role_exists(&second));
    warden.signal(libc::SIGTERM).unwrap();
    warden.wait_exit(Duration::from_secs(15)).await.unwrap();
    wait_until(
        "the lease revoked at shutdown",
        Duration::from_secs(3),
        || !pg.role_exists(&second),
    )
    .await;
    let output = warden.output();
    let audit = all_text(&warden.audit_dir());
    assert!(!output.contains(&password) && !audit.contains(&password));
}

#[tokio::test]
async fn concurrent_misses_make_one_vault_read() {
    let (bao, fake, echo) = stage().await;
    bao.kv_put("e2e/echo", &[("token", "sk-single-flight-01")]);
    let route = echo_route(
        "/echo",
        &echo,
        json!({"vault": {"kv": "secret/e2e/echo"}}),
        None,
    );
    let warden = warden(&bao, &fake, |b| b.set("/routes/3", route)).await;
    let token = warden.token(AGENT).await.unwrap();
    let requests = (0..24).map(|_| get(&warden, &token, "/echo/models"));
    for (status, body) in futures_util::future::join_all(requests).await {
        assert_eq!(status, 200, "{body}");
    }
    let metrics = warden.metrics().await.unwrap();
    assert_eq!(
        metric(
            &metrics,
            "warden_vault_reads_total{kind=\"kv\",result=\"ok\"}"
        ),
        1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn the_token_signing_key_comes_from_vault_and_is_shared_by_replicas() {
    let (bao, fake, _echo) = stage().await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    bao.kv_put("warden/signing", &[("pem", &key.serialize_pem())]);
    let signing = json!({"vault": {"kv": "secret/warden/signing", "field": "pem"}});
    let first = warden(&bao, &fake, |b| {
        b.set("/identity/warden_issuer/key", signing.clone())
    })
    .await;
    let second = warden(&bao, &fake, |b| {
        b.set("/identity/warden_issuer/key", signing.clone())
    })
    .await;
    // `warden token issue` reads the key from Vault too; either replica accepts the token.
    let token = first.token(AGENT).await.unwrap();
    for replica in [&first, &second] {
        let response = replica
            .http()
            .get(replica.url("/openai/models"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let jwks = |w: &Warden| {
        let url = w.admin_url("/.well-known/jwks.json");
        let http = w.http().clone();
        async move {
            let keys: Value = http.get(url).send().await.unwrap().json().await.unwrap();
            keys["keys"][0]["kid"].clone()
        }
    };
    assert_eq!(jwks(&first).await, jwks(&second).await);
    assert!(
        !first
            .audit_dir()
            .with_file_name("keys")
            .join("agent-signing.pem")
            .exists(),
        "no token key file is created when the key comes from Vault"
    );
    assert!(!first.output().contains("PRIVATE KEY"));
}

#[tokio::test]
async fn a_stdio_mcp_servers_secret_env_comes_from_vault_and_is_redacted() {
    let (bao, fake, _echo) = stage().await;
    bao.kv_put("mcp/everything", &[("token", "ghp-mcp-stdio-secret")]);
    let mut server = warden_e2e::mcp::everything_stdio("everything");
    server["secret_env"] = json!({"EVERYTHING_TOKEN":
        {"vault": {"kv": "secret/mcp/everything", "field": "token"}}});
    let warden = warden(&bao, &fake, |b| {
        b.set(
            "/mcp",
            json!({"servers": [server], "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
    })
    .await;
    let token = warden.token(AGENT).await.unwrap();
    let r = warden_e2e::mcp::session(
        &warden,
        &warden.url("/mcp/tools"),
        &token,
        json!([{"op": "call", "name": "everything_get-env", "arguments": {}}]),
    )
    .await
    .unwrap();
    let text = r["steps"][0]["text"].as_str().unwrap_or_default();
    // The process had the secret (only its exact value is replaced), and the agent never sees it.
    assert!(text.contains("\"EVERYTHING_TOKEN\": \"[REDACTED]\""), "{r}");
    assert!(!r.to_string().contains("ghp-mcp-stdio-secret"), "{r}");
    assert!(!warden.output().contains("ghp-mcp-stdio-secret"));
}

#[tokio::test]
async fn a_secret_issued_by_a_write_is_leased_and_revoked_at_shutdown() {
    let (bao, fake, echo) = stage().await;
    bao.run(&["secrets", "enable", "pki"]);
    bao.run(&["secrets", "tune", "-max-lease-ttl=1h", "pki"]);
    bao.run(&[
        "write",
        "pki/root/generate/internal",
        "common_name=e2e-root",
        "ttl=1h",
    ]);
    bao.run(&[
        "write",
        "pki/roles/agents",
        "allowed_domains=example.com",
        "allow_subdomains=true",
        "max_ttl=10m",
        "generate_lease=true",
    ]);
    let route = echo_route(
        "/pki",
        &echo,
        json!({"vault": {"lease": "pki/issue/agents",
                         "params": {"common_name": "agent.example.com", "ttl": "5m"}}}),
        Some(json!({"header": "x-client-cert-serial", "format": "{secret.serial_number}"})),
    );
    let mut warden = warden(&bao, &fake, |b| b.set("/routes/3", route)).await;
    let token = warden.token(AGENT).await.unwrap();
    for _ in 0..3 {
        let (status, body) = get(&warden, &token, "/pki/models").await;
        assert_eq!(status, 200, "{body}");
    }
    // One certificate issued (the write made once), with its lease.
    let serials: Vec<String> = echo
        .seen()
        .iter()
        .map(|r| {
            r["headers"]["x-client-cert-serial"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(serials.iter().all(|s| *s == serials[0]), "{serials:?}");
    let record = warden
        .wait_for_audit(Duration::from_secs(5), |r| {
            r["kind"] == "outcome" && r["route"] == "pki"
        })
        .await
        .unwrap();
    assert!(
        record["secret"]["lease_id"]
            .as_str()
            .unwrap()
            .starts_with("pki/issue/agents/"),
        "{record}"
    );
    // At shutdown the lease is revoked, and with it the certificate.
    warden.signal(libc::SIGTERM).unwrap();
    warden.wait_exit(Duration::from_secs(15)).await.unwrap();
    let revoked = bao.run(&["list", "-format=json", "pki/certs/revoked"]);
    let serial = serials[0].replace(':', "-");
    assert!(
        revoked.replace(':', "-").contains(&serial),
        "{serial} not in {revoked}"
    );
}

#[tokio::test]
async fn a_reload_that_changes_the_vault_section_keeps_serving() {
    let (bao, fake, echo) = stage().await;
    bao.kv_put("e2e/echo", &[("token", "sk-reload-000001")]);
    let route = echo_route(
        "/echo",
        &echo,
        json!({"vault": {"kv": "secret/e2e/echo"}}),
        None,
    );
    let warden = warden(&bao, &fake, |b| b.set("/routes/3", route)).await;
    let token = warden.token(AGENT).await.unwrap();
    let (status, body) = get(&warden, &token, "/echo/models").await;
    assert_eq!(status, 200, "{body}");

    // A new vault: section (another kv_ttl): a new store, and the secret read again.
    bao.kv_put("e2e/echo", &[("token", "sk-reload-000002")]);
    let path = &warden.setup.config_path;
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    config["vault"]["kv_ttl"] = json!("2m");
    std::fs::write(path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    warden.signal(libc::SIGHUP).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(&warden, &token, "/echo/models").await;
        assert_eq!(status, 200, "{body}");
        if echo.seen().last().unwrap()["headers"]["authorization"] == "Bearer sk-reload-000002" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new store never read the secret"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = warden.metrics().await.unwrap();
    assert!(
        metric(&metrics, "warden_reloads_total{result=\"ok\"}") >= 1.0,
        "{metrics}"
    );
}

/// A secret rotated in Vault (a new KV version) is used at once after a reload (SIGHUP, the
/// configuration unchanged), not only once `kv_ttl` (5 minutes) has passed.
#[tokio::test]
async fn a_reload_reads_a_rotated_kv_secret_at_once() {
    let (bao, fake, echo) = stage().await;
    bao.kv_put("e2e/rotated", &[("token", "sk-rotate-000001")]);
    let route = echo_route(
        "/echo",
        &echo,
        json!({"vault": {"kv": "secret/e2e/rotated"}}),
        None,
    );
    let warden = warden(&bao, &fake, |b| b.set("/routes/3", route)).await;
    let token = warden.token(AGENT).await.unwrap();
    let authorization = || echo.seen().last().unwrap()["headers"]["authorization"].clone();
    let (status, body) = get(&warden, &token, "/echo/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(authorization(), "Bearer sk-rotate-000001");
    // Vault was never down: its first login is not logged as a recovery.
    assert!(
        !warden.output().contains("vault answers again"),
        "{}",
        warden.output()
    );

    // Rotated in Vault: the cached version serves until kv_ttl...
    bao.kv_put("e2e/rotated", &[("token", "sk-rotate-000002")]);
    let (status, body) = get(&warden, &token, "/echo/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(authorization(), "Bearer sk-rotate-000001");

    // ...or until a reload, which reads it again.
    warden.signal(libc::SIGHUP).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(&warden, &token, "/echo/models").await;
        assert_eq!(status, 200, "{body}");
        if authorization() == "Bearer sk-rotate-000002" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated secret was not read after the reload: {}",
            warden.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A route whose KV secret does not exist is refused, and the operator is told what to do:
/// where to look, how to write it (Vault's own answer is a bare 404).
#[tokio::test]
async fn a_missing_kv_secret_says_how_to_check_and_write_it() {
    let (bao, fake, echo) = stage().await;
    let route = echo_route(
        "/echo",
        &echo,
        json!({"vault": {"kv": "secret/e2e/never-written"}}),
        None,
    );
    let warden = warden(&bao, &fake, |b| b.set("/routes/3", route)).await;
    let token = warden.token(AGENT).await.unwrap();
    let (status, body) = get(&warden, &token, "/echo/models").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "credential_unavailable", "{body}");
    let outcome = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "outcome" && r["route"] == "echo" && r["outcome"]["error"].is_string()
        })
        .await
        .expect("the refusal's outcome record");
    let error = outcome["outcome"]["error"].as_str().unwrap().to_owned();
    for says in [
        "no secret at secret/e2e/never-written",
        "`bao kv get secret/e2e/never-written`",
        "`bao kv put secret/e2e/never-written FIELD=VALUE`",
    ] {
        assert!(error.contains(says), "{says:?} not in {error}");
    }
    assert!(
        warden
            .output()
            .contains("no secret at secret/e2e/never-written"),
        "{}",
        warden.output()
    );
}

/// A request on `prefix` (route `prefix[1..]`) refused 503 `credential_unavailable`: the
/// error its audit record gives.
async fn credential_refusal(warden: &Warden, token: &str, prefix: &str) -> String {
    let (status, body) = get(warden, token, &format!("{prefix}/models")).await;
    assert_eq!(status, 503, "{prefix}: {body}");
    assert_eq!(
        body["error"]["code"], "credential_unavailable",
        "{prefix}: {body}"
    );
    let route = &prefix[1..];
    let outcome = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "outcome" && r["route"] == route && r["outcome"]["error"].is_string()
        })
        .await
        .unwrap_or_else(|e| panic!("{prefix}: no outcome record of the refusal: {e}"));
    outcome["outcome"]["error"].as_str().unwrap().to_owned()
}

/// Real OpenBao's answers to a KV version that holds no data (404 with the version's
/// metadata when it was deleted or destroyed, a bare 404 when it was never written) reach
/// the operator as what they are and what to do: the latest version deleted (`bao kv
/// delete`), a pinned version destroyed (`bao kv destroy`), a pinned version never written.
/// The agent's request is refused 503 `credential_unavailable`; its audit record and
/// Warden's log say which. The advice works: `bao kv undelete` as told brings the route back.
#[tokio::test]
async fn kv_versions_deleted_destroyed_or_never_written_say_which_and_what_to_do() {
    let (bao, fake, echo) = stage().await;
    bao.kv_put("e2e/deleted", &[("token", "sk-deleted-000000001")]);
    bao.run(&["kv", "delete", "-mount=secret", "e2e/deleted"]);
    bao.kv_put("e2e/destroyed", &[("token", "sk-destroyed-00000001")]);
    bao.kv_put("e2e/destroyed", &[("token", "sk-destroyed-00000002")]);
    bao.run(&[
        "kv",
        "destroy",
        "-mount=secret",
        "-versions=1",
        "e2e/destroyed",
    ]);
    bao.kv_put("e2e/versions", &[("token", "sk-versions-000000001")]);
    let routes = [
        echo_route(
            "/deleted",
            &echo,
            json!({"vault": {"kv": "secret/e2e/deleted"}}),
            None,
        ),
        echo_route(
            "/destroyed",
            &echo,
            json!({"vault": {"kv": "secret/e2e/destroyed", "version": 1}}),
            None,
        ),
        echo_route(
            "/unwritten",
            &echo,
            json!({"vault": {"kv": "secret/e2e/versions", "version": 9}}),
            None,
        ),
    ];
    let warden = warden(&bao, &fake, |mut b| {
        for (i, r) in routes.into_iter().enumerate() {
            b = b.set(&format!("/routes/{}", 3 + i), r);
        }
        b
    })
    .await;
    let token = warden.token(AGENT).await.expect("token");
    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "/deleted",
            &[
                "version 1 of secret/e2e/deleted was deleted at 20",
                "undelete it with `bao kv undelete -versions=1 secret/e2e/deleted`",
                "`bao kv put secret/e2e/deleted FIELD=VALUE`",
            ],
            &["no secret at", "destroyed", "pins it"],
        ),
        (
            "/destroyed",
            &[
                "version 1 of secret/e2e/destroyed is destroyed (its data cannot be recovered)",
                "pin another (`bao kv metadata get secret/e2e/destroyed` lists them)",
            ],
            &["undelete", "no secret at"],
        ),
        (
            "/unwritten",
            &[
                "version 9 of secret/e2e/versions does not exist",
                "`bao kv metadata get secret/e2e/versions`",
                "pin one of them, or drop `version` to follow the latest",
            ],
            &["deleted at", "destroyed", "undelete"],
        ),
    ];
    for (prefix, says, not) in cases {
        let error = credential_refusal(&warden, &token, prefix).await;
        for said in says {
            assert!(error.contains(said), "{prefix}: {said:?} not in {error}");
        }
        for unsaid in not {
            assert!(!error.contains(unsaid), "{prefix}: {unsaid:?} in {error}");
        }
        // Warden's log line for the refusal says it as well.
        let output = warden.output();
        assert!(
            output.contains(says[0]),
            "{prefix}: not in the log:\n{output}"
        );
    }
    assert!(echo.seen().is_empty(), "no refused request went upstream");

    // Done as told, the deleted version serves again (once the refusal's back-off ends).
    bao.run(&["kv", "undelete", "-versions=1", "secret/e2e/deleted"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = get(&warden, &token, "/deleted/models").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "undeleted, the secret is still refused: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        echo.seen().last().unwrap()["headers"]["authorization"],
        "Bearer sk-deleted-000000001"
    );
}

/// `warden_vault_reload_rereads_total{result}` on `warden`'s /metrics.
async fn rereads(warden: &Warden, result: &str) -> f64 {
    let metrics = warden.metrics().await.expect("metrics");
    metric(
        &metrics,
        &format!("warden_vault_reload_rereads_total{{result=\"{result}\"}}"),
    )
}

/// Waits until `warden` counts `at_least` re-reads of `result`, within 15 s.
async fn wait_rereads(warden: &Warden, result: &str, at_least: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while rereads(warden, result).await < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no re-read counted {result}: {}",
            warden.metrics().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Each KV secret a reload reads again is counted on /metrics by what came of it: `ok` (a
/// rotated version is read), `failed` (its latest version deleted in OpenBao: dropped, and
/// the route refuses, saying so), `kept_stale` (OpenBao down: the held version serves).
#[tokio::test]
async fn a_reloads_rereads_are_counted_ok_failed_or_kept_stale() {
    let (mut bao, fake, echo) = stage().await;
    bao.kv_put("e2e/reread", &[("token", "sk-reread-0000000001")]);
    let route = echo_route(
        "/reread",
        &echo,
        json!({"vault": {"kv": "secret/e2e/reread"}}),
        None,
    );
    let warden = warden(&bao, &fake, |b| b.set("/routes/3", route)).await;
    let token = warden.token(AGENT).await.unwrap();
    let authorization = || echo.seen().last().unwrap()["headers"]["authorization"].clone();
    let (status, body) = get(&warden, &token, "/reread/models").await;
    assert_eq!(status, 200, "{body}");
    for result in ["ok", "failed", "kept_stale"] {
        assert_eq!(
            rereads(&warden, result).await,
            0.0,
            "{result} before any reload"
        );
    }

    // Rotated, then a reload: read again.
    bao.kv_put("e2e/reread", &[("token", "sk-reread-0000000002")]);
    warden.signal(libc::SIGHUP).unwrap();
    wait_rereads(&warden, "ok", 1.0).await;
    let (status, body) = get(&warden, &token, "/reread/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(authorization(), "Bearer sk-reread-0000000002");

    // Its latest version deleted, then a reload: Vault refuses it, and so does Warden.
    bao.run(&["kv", "delete", "-mount=secret", "e2e/reread"]);
    warden.signal(libc::SIGHUP).unwrap();
    wait_rereads(&warden, "failed", 1.0).await;
    let error = credential_refusal(&warden, &token, "/reread").await;
    assert!(
        error.contains("version 2 of secret/e2e/reread was deleted at"),
        "{error}"
    );
    let output = warden.output();
    assert!(
        output.contains("vault no longer gives a secret; it is dropped")
            && output.contains("version 2 of secret/e2e/reread was deleted at"),
        "{output}"
    );

    // A new version is read by the next request after the back-off; then OpenBao goes down
    // and a reload cannot read it again: the held version serves on.
    bao.kv_put("e2e/reread", &[("token", "sk-reread-0000000003")]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while get(&warden, &token, "/reread/models").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bao.stop();
    warden.signal(libc::SIGHUP).unwrap();
    wait_rereads(&warden, "kept_stale", 1.0).await;
    let (status, body) = get(&warden, &token, "/reread/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(authorization(), "Bearer sk-reread-0000000003");
    assert_eq!(rereads(&warden, "ok").await, 1.0);
    assert_eq!(rereads(&warden, "failed").await, 1.0);
}

/// The token of Warden's AppRole login, as OpenBao's `lookup-accessor` shows it (`None` until
/// Warden has logged in).
fn approle_token(bao: &OpenBao) -> Option<Value> {
    let accessors: Value = serde_json::from_str(
        &bao.cli(&["list", "-format=json", "auth/token/accessors"])
            .ok()?,
    )
    .ok()?;
    accessors.as_array()?.iter().find_map(|accessor| {
        let looked = bao
            .cli(&[
                "write",
                "-format=json",
                "auth/token/lookup-accessor",
                &format!("accessor={}", accessor.as_str()?),
            ])
            .ok()?;
        let looked: Value = serde_json::from_str(&looked).ok()?;
        (looked["data"]["path"] == "auth/approle/login").then(|| looked["data"].clone())
    })
}

/// Warden logs in with AppRole (its own bounded calls: `vault/client.rs`), reads a KV secret
/// with the token it got, and keeps that token alive by renewing it, not by logging in again.
#[tokio::test]
async fn an_approle_login_reads_secrets_and_renews_its_token() {
    let (bao, fake, _echo) = stage().await;
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        policy.path(),
        "path \"secret/data/e2e/*\" { capabilities = [\"read\"] }\n",
    )
    .unwrap();
    bao.run(&[
        "policy",
        "write",
        "e2e-read",
        &policy.path().display().to_string(),
    ]);
    bao.run(&["auth", "enable", "approle"]);
    bao.run(&[
        "write",
        "auth/approle/role/warden",
        "token_policies=e2e-read",
        "token_ttl=6s",
        "token_max_ttl=1h",
    ]);
    let role_id = bao.run(&["read", "-field=role_id", "auth/approle/role/warden/role-id"]);
    let secret_id = bao.run(&[
        "write",
        "-f",
        "-field=secret_id",
        "auth/approle/role/warden/secret-id",
    ]);
    let warden = warden(&bao, &fake, |b| {
        b.set(
            "/vault/auth",
            json!({"method": "approle", "role_id": role_id,
                   "secret_id": {"env": "E2E_BAO_SECRET_ID"}}),
        )
        .env("E2E_BAO_SECRET_ID", &secret_id)
        .set("/vault/kv_ttl", json!("1s"))
    })
    .await;
    let token = warden.token(AGENT).await.unwrap();
    let (status, body) = get(&warden, &token, "/openai/models").await;
    assert_eq!(status, 200, "{body}");

    // The token (6 s) is renewed before it runs out: OpenBao records the renewal.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if approle_token(&bao).is_some_and(|t| t["last_renewal_time"].as_i64().unwrap_or(0) > 0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not renewed: {:?}\n{}",
            approle_token(&bao),
            warden.output()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, body) = get(&warden, &token, "/openai/models").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        warden.output().matches("logged in to vault").count(),
        1,
        "renewed, not logged in again: {}",
        warden.output()
    );
    assert!(
        !warden.output().contains(&secret_id),
        "the secret id is never logged"
    );
}
