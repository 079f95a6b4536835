//! Attack run 14: the credentials Warden holds, tried by an agent with a valid token and by a
//! hostile upstream. A local MCP server's `secret_env` value printed on its stderr stays out
//! of Warden's log; a secret written where its source goes is refused without being quoted; a
//! hostile upstream's transfer coding does not carry an echoed credential past redaction, nor
//! does an echo upper-cased (a hex credential) or percent-encoded twice; a redirect to `#x`
//! does not make Warden write a query-parameter credential into the `Location` it rewrites,
//! even with `inject.redact: false`;
//! per-agent Vault paths hold against attributes that try to climb, glob or spell a separator
//! (refused before Vault is asked), one agent's cached secret is never another's, a policy
//! reload stops a cached secret at once, and a request denied by policy reads nothing from
//! Vault.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warden_e2e::echo::Echo;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::hostile::{self, Hostile};
use warden_e2e::openbao::OpenBao;
use warden_e2e::warden::{Warden, WardenBuilder};

/// Polls `ok` every 100 ms until it holds or `within` passes.
async fn wait_until(within: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ok()
}

#[tokio::test]
async fn a_local_servers_secret_on_its_stderr_stays_out_of_wardens_log() {
    const SECRET: &str = "ghp_e2eStderrSecret-7731-qq";
    let fake = FakeLlm::start().await.unwrap();
    // server-everything, started by a shell that first complains on stderr, quoting its token
    // as many tools do when a login fails (and once more in base64, as a dumped header would).
    let everything = warden_e2e::mcp::everything_stdio("noisy");
    let mut args = vec![
        json!("-c"),
        json!(
            "printf 'login failed for token %s\\n' \"$NOISY_TOKEN\" >&2; \
         printf 'authorization: Basic %s\\n' \"$(printf 'x:%s' \"$NOISY_TOKEN\" | base64 -w0)\" >&2; \
         printf 'login failed (marker-done)\\n' >&2; exec \"$0\" \"$@\""
        ),
    ];
    args.push(everything["command"].clone());
    args.extend(everything["args"].as_array().unwrap().iter().cloned());
    let mut server = everything.clone();
    server["command"] = json!("/bin/sh");
    server["args"] = Value::Array(args);
    server["secret_env"] = json!({"NOISY_TOKEN": {"env": "E2E_NOISY_TOKEN"}});
    let warden = WardenBuilder::new(&fake)
        .env("E2E_NOISY_TOKEN", SECRET)
        .set(
            "/mcp",
            json!({"servers": [server], "endpoints": [{"name": "tools", "servers": ["noisy"]}]}),
        )
        .start()
        .await
        .unwrap();
    let token = warden.token("noisy-agent").await.unwrap();
    // The session starts the process; what the session answers does not matter here.
    let _ = warden_e2e::mcp::session(
        &warden,
        &warden.url("/mcp/tools"),
        &token,
        json!([{"op": "list_tools"}]),
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(20), || warden
            .output()
            .contains("marker-done"))
        .await,
        "the server's stderr reaches Warden's log: {}",
        warden.output()
    );
    let output = warden.output();
    assert!(
        output.contains("login failed for token [REDACTED]"),
        "the line is logged, the secret replaced: {output}"
    );
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x:{SECRET}"));
    assert!(!output.contains(SECRET), "{output}");
    assert!(
        !output.contains(&basic[4..basic.len() - 4]),
        "nor its base64: {output}"
    );
}

#[tokio::test]
async fn a_secret_written_where_its_source_goes_is_never_quoted() {
    const SECRET: &str = "sk-live-e2eWrittenInPlace-55aa";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("warden.yaml");
    std::fs::write(
        &config,
        format!(
            "routes:\n  - {{ prefix: /openai, connector: openai, credential: {SECRET} }}\n\
             vault:\n  address: http://127.0.0.1:8200\n  auth: {{ method: token, token: {SECRET} }}\n"
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = warden_e2e::warden::cli(
        &["check", "--config", config.to_str().unwrap()],
        Duration::from_secs(30),
    )
    .await;
    assert!(!ok, "refused: {stdout}{stderr}");
    let all = format!("{stdout}{stderr}");
    assert!(all.contains("routes[0].credential"), "{all}");
    assert!(all.contains("{ env: NAME }"), "says what to write: {all}");
    assert!(!all.contains(SECRET), "the secret is not repeated: {all}");
}

/// A hostile upstream that answers with the request's bearer credential in a JSON body
/// compressed as a *transfer* coding (`Transfer-Encoding: gzip, chunked`), which hyper's client
/// does not undo: read as it arrives, the body is gzip, and the secret passes any byte matcher.
async fn gzip_transfer_upstream() -> Hostile {
    Hostile::start(Arc::new(|head: &str, _: &[u8]| {
        let body =
            json!({"error": {"message": format!("bad credential: Bearer {}", bearer(head))}});
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.to_string().as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let mut out = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
             transfer-encoding: gzip, chunked\r\nconnection: close\r\n\r\n{:x}\r\n",
            gz.len()
        )
        .into_bytes();
        out.extend_from_slice(&gz);
        out.extend_from_slice(b"\r\n0\r\n\r\n");
        out
    }))
    .await
    .unwrap()
}

#[tokio::test]
async fn a_transfer_coding_does_not_carry_an_echoed_credential_past_redaction() {
    const SECRET: &str = "sk-e2e-transfer-coded-echo-9090";
    let fake = FakeLlm::start().await.unwrap();
    let upstream = gzip_transfer_upstream().await;
    let warden = WardenBuilder::new(&fake)
        .set(
            "/routes/3",
            json!({"name": "te", "prefix": "/te", "connector": "openai",
                   "upstream": format!("{}/v1", upstream.url()), "credential": {"env": "E2E_TE_KEY"}}),
        )
        .env("E2E_TE_KEY", SECRET)
        .start()
        .await
        .unwrap();
    let token = warden.token("te-agent").await.unwrap();
    let response = warden
        .http()
        .get(warden.url("/te/models"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    // Whatever the agent got, decoded as the agent could decode it, holds no secret.
    let mut decoded = Vec::new();
    let mut reader = flate2::read::GzDecoder::new(&bytes[..]);
    let plain = match std::io::Read::read_to_end(&mut reader, &mut decoded) {
        Ok(_) => String::from_utf8_lossy(&decoded).into_owned(),
        Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    assert!(!plain.contains(SECRET), "{status}: {plain}");
    assert!(
        plain.contains("Bearer [REDACTED]"),
        "decoded and redacted like a content coding: {status}: {plain}"
    );
}

/// The credential a request's head carries in `authorization: Bearer <it>`.
fn bearer(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| v.trim())
        })
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

/// `text` with every byte but ASCII letters and digits percent-encoded, its hex in lower
/// case, and then (`twice`) percent-encoded again (`+` as `%252b`), as a URL built from an
/// encoded one has it.
fn percent_encoded(text: &str, twice: bool) -> String {
    text.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() => char::from(b).to_string(),
            b if twice => format!("%25{b:02x}"),
            b => format!("%{b:02x}"),
        })
        .collect()
}

#[tokio::test]
async fn an_echo_upper_cased_or_percent_encoded_twice_is_redacted() {
    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015";
    const SPECIAL: &str = "sk-e2e+twice/encoded=key";
    // Quotes the credential upper-cased when its case carries nothing (hex), and in a URL
    // encoded twice and once with lower-case hex, in the body and in a header.
    let upstream = Hostile::start(Arc::new(|head: &str, _: &[u8]| {
        let key = bearer(head);
        let upper = match key.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => key.to_ascii_uppercase(),
            false => String::new(),
        };
        let twice = percent_encoded(&key, true);
        let body = json!({"error": {
            "message": format!("bad key {upper}"),
            "retry": format!("/cb?k={twice}&once={}", percent_encoded(&key, false)),
        }});
        hostile::whole(
            "401 Unauthorized",
            &[
                ("content-type", "application/json"),
                ("x-debug-next", &format!("/cb?k={twice}")),
            ],
            &body.to_string(),
        )
    }))
    .await
    .unwrap();
    let fake = FakeLlm::start().await.unwrap();
    let route = |name: &str, env: &str| {
        json!({"name": name, "prefix": format!("/{name}"), "connector": "openai",
               "upstream": format!("{}/v1", upstream.url()), "credential": {"env": env}})
    };
    let warden = WardenBuilder::new(&fake)
        .set("/routes/3", route("hx", "E2E_HX_KEY"))
        .set("/routes/4", route("sp", "E2E_SP_KEY"))
        .env("E2E_HX_KEY", HEX)
        .env("E2E_SP_KEY", SPECIAL)
        .start()
        .await
        .unwrap();
    let token = warden.token("echo-agent").await.unwrap();
    for (prefix, secret, forms) in [
        ("/hx", HEX, vec![HEX.to_ascii_uppercase()]),
        (
            "/sp",
            SPECIAL,
            vec![
                percent_encoded(SPECIAL, true),
                percent_encoded(SPECIAL, false),
            ],
        ),
    ] {
        let response = warden
            .http()
            .get(warden.url(&format!("{prefix}/models")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{prefix}");
        let debug = response.headers()["x-debug-next"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = response.text().await.unwrap();
        for form in &forms {
            assert!(
                !body.contains(form.as_str()) && !debug.contains(form.as_str()),
                "{prefix}: {form} reached the agent: {debug} {body}"
            );
        }
        assert!(!body.to_ascii_lowercase().contains(secret), "{body}");
        assert_eq!(debug, "/cb?k=[REDACTED]", "{prefix}");
        assert!(
            body.contains("/cb?k=[REDACTED]&once=[REDACTED]"),
            "{prefix}: {body}"
        );
    }
    assert!(
        upstream
            .requests()
            .iter()
            .any(|(head, _)| bearer(head) == HEX),
        "the credential went upstream"
    );
}

#[tokio::test]
async fn a_redirect_to_a_fragment_never_hands_the_agent_a_query_credential() {
    const SECRET: &str = "e2e-query-key-in-redirect-4242";
    // Answers every request with a redirect to `#x`: the same URL, query and all.
    let upstream = Hostile::start(Arc::new(|_: &str, _: &[u8]| {
        hostile::whole("302 Found", &[("location", "#x")], "")
    }))
    .await
    .unwrap();
    let fake = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&fake)
        .set(
            "/routes/3",
            json!({"name": "gq", "prefix": "/gq", "connector": "github",
                   "upstream": format!("{}/api/v3", upstream.url()),
                   "credential": {"env": "E2E_GQ_KEY"},
                   "inject": {"query": "api_key", "redact": false}}),
        )
        .env("E2E_GQ_KEY", SECRET)
        .start()
        .await
        .unwrap();
    let token = warden.token("redirected-agent").await.unwrap();
    let agent = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = agent
        .get(warden.url("/gq/repos/a/b?page=2"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(!location.contains(SECRET), "{location}");
    // The agent's own query is kept; only the credential Warden put in is not.
    assert_eq!(location, "/gq/repos/a/b?page=2#x");
    let sent = upstream.requests();
    assert!(
        sent.iter()
            .any(|(head, _)| head.contains(&format!("api_key={SECRET}"))),
        "the credential went upstream in the query: {sent:?}"
    );
}

/// An OpenBao with two teams' GitHub tokens, an echoing upstream, and Warden routing `/gh` to
/// it with `secret/agents/{principal.owner}/github`, where the policy lets every agent use
/// team-a's and team-b's folders (not team-c's) and denies `llm:models` on `/gh` to agents of
/// the `blocked` fleet.
async fn per_agent_stage() -> (OpenBao, FakeLlm, Echo, Warden) {
    let bao = OpenBao::start().await.expect("openbao");
    bao.kv_put_tokens(&[
        ("agents/team-a/github", "ghp-team-a-secret-1111"),
        ("agents/team-b/github", "ghp-team-b-secret-2222"),
        ("agents/team-c/github", "ghp-team-c-secret-3333"),
    ]);
    let fake = FakeLlm::start().await.unwrap();
    let echo = Echo::start().await.unwrap();
    let warden = bao
        .per_principal(
            WardenBuilder::new(&fake),
            &echo.url(),
            "secret/agents/{principal.owner}/github",
            TEAM_POLICY,
        )
        .start()
        .await
        .expect("warden starts");
    (bao, fake, echo, warden)
}

const TEAM_POLICY: &str = r#"@id("all-but-secrets")
permit (principal, action, resource) unless { action == Action::"secret:use" };

@id("blocked-fleet")
forbid (principal, action, resource)
when { principal has fleet && principal.fleet == "blocked" && action != Action::"secret:use" };

@id("team-a-secrets")
permit (principal, action == Action::"secret:use", resource)
when { resource.path like "secret/agents/team-a/*" };

@id("team-b-secrets")
permit (principal, action == Action::"secret:use", resource)
when { resource.path like "secret/agents/team-b/*" };
"#;

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

/// The sum of `name`'s samples whose labels include every one of `labels`.
fn metric(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn kv_reads(warden: &Warden) -> f64 {
    metric(
        &warden.metrics().await.unwrap(),
        "warden_vault_reads_total",
        &["kind=\"kv\""],
    )
}

#[tokio::test]
async fn per_agent_paths_hold_against_spelled_separators_globs_and_other_agents() {
    let (_bao, _fake, echo, warden) = per_agent_stage().await;
    let before = kv_reads(&warden).await;

    // Attributes that try to leave their folder, glob, or spell a separator: refused before
    // Vault is asked (no read), never reaching upstream.
    for owner in [
        "team-a/../team-c",
        "..",
        ".",
        "team-c%2F..%2Fteam-a",
        "team-a%2f..%2fteam-c",
        "*",
        "team-*",
        "{principal.id}",
        "team-c\\github",
        "team-a\u{2215}..\u{2215}team-c",
        "team-a github",
        "team-a\ngithub",
        "",
    ] {
        let token = match warden
            .token_with("climber", "1h", &[("owner", owner)])
            .await
        {
            Ok(token) => token,
            // The token issuer may refuse the claim itself: nothing to try then.
            Err(_) => continue,
        };
        let (status, body) = get(&warden, &token, "/gh/models").await;
        assert_eq!(status, 403, "{owner:?}: {body}");
        assert_eq!(
            body["error"]["code"], "secret_unresolved",
            "{owner:?}: {body}"
        );
    }
    assert_eq!(kv_reads(&warden).await, before, "no attempt read Vault");
    assert!(echo.seen().is_empty(), "none went upstream");

    // A folder the policy does not give: denied by Cedar, before Vault is asked.
    let c = warden
        .token_with("c-bot", "1h", &[("owner", "team-c")])
        .await
        .unwrap();
    let (status, body) = get(&warden, &c, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "secret_denied", "{body}");
    assert_eq!(kv_reads(&warden).await, before, "a denied path is not read");

    // A request the policy denies (its action, not its secret): no Vault read either, so a
    // denied agent can neither probe Vault nor make Warden fetch on its behalf.
    let blocked = warden
        .token_with(
            "blocked-bot",
            "1h",
            &[("owner", "team-a"), ("fleet", "blocked")],
        )
        .await
        .unwrap();
    let (status, body) = get(&warden, &blocked, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        kv_reads(&warden).await,
        before,
        "a denied request is not read"
    );

    // Team A's secret, read and cached; then team B's agent gets its own, never A's cache.
    let a = warden
        .token_with("a-bot", "1h", &[("owner", "team-a")])
        .await
        .unwrap();
    let b = warden
        .token_with("b-bot", "1h", &[("owner", "team-b")])
        .await
        .unwrap();
    for (token, secret) in [
        (&a, "ghp-team-a-secret-1111"),
        (&b, "ghp-team-b-secret-2222"),
        (&a, "ghp-team-a-secret-1111"),
        (&b, "ghp-team-b-secret-2222"),
    ] {
        let (status, body) = get(&warden, token, "/gh/models").await;
        assert_eq!(status, 200, "{body}");
        let seen = echo.seen();
        assert_eq!(
            seen.last().unwrap()["headers"]["authorization"],
            format!("Bearer {secret}")
        );
    }
    assert_eq!(
        kv_reads(&warden).await,
        before + 2.0,
        "one read per path, then memory"
    );
    // The case of an attribute is its own folder (Vault paths are case-sensitive), not A's.
    let upper = warden
        .token_with("upper-bot", "1h", &[("owner", "TEAM-A")])
        .await
        .unwrap();
    let (status, body) = get(&warden, &upper, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "secret_denied", "{body}");

    // The policy no longer gives team B its folder: B's cached secret stops at once.
    warden
        .write_policy(
            "e2e.cedar",
            &TEAM_POLICY.replace("secret/agents/team-b/*", "secret/agents/nobody/*"),
        )
        .unwrap();
    warden.reload(|_| {}).await.unwrap();
    let (status, body) = get(&warden, &b, "/gh/models").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "secret_denied", "{body}");
    let (status, _) = get(&warden, &a, "/gh/models").await;
    assert_eq!(status, 200);
    let output = warden.output();
    for secret in [
        "ghp-team-a-secret-1111",
        "ghp-team-b-secret-2222",
        "ghp-team-c-secret-3333",
    ] {
        assert!(!output.contains(secret), "{secret} in Warden's output");
    }
}
