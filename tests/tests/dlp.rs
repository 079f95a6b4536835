//! Data loss prevention on what leaves: canary tokens issued with `warden canary issue` while
//! Warden runs are found in every channel (an LLM prompt, an MCP tool argument, a REST call's
//! body, a plain-HTTP
//! egress request's line, headers and body, and the host a `CONNECT` names), denied whatever
//! policy says, recorded without their values, counted and alerted; a revoked canary is no
//! longer looked for. With the default fleet trigger, a canary hit also quarantines the agent
//! that leaked it. Content detectors name what they find in the record.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Value, json};
use warden_e2e::egress::{Dns, Origin, curl};
use warden_e2e::fake_llm::{self, FakeLlm};
use warden_e2e::fake_rest::FakeRest;
use warden_e2e::mcp::{self, Transport};
use warden_e2e::sdk;
use warden_e2e::warden::{Warden, WardenBuilder, free_port};
use warden_e2e::webhook::Webhook;

const WAIT: Duration = Duration::from_secs(15);

/// Everything is permitted (the harness's permit-all policy), egress to internal addresses
/// too: only canary tokens are refused.
const EGRESS: &str = r#"
@id("egress-anywhere")
@egress("internal")
permit (principal, action in [Action::"egress:connect", Action::"egress:request"], resource);
"#;

struct Setup {
    warden: Warden,
    proxy: SocketAddr,
    origin: Origin,
    hook: Webhook,
    rest: FakeRest,
    _dns: Dns,
    _llm: FakeLlm,
    token: String,
}

/// `quarantine_on_canary`: the default fleet trigger (a canary finding quarantines the agent);
/// off, every channel can be tried with one agent.
/// `policies`: more policy files, by name.
async fn setup(quarantine_on_canary: bool, policies: &[(&str, &str)]) -> Setup {
    setup_with(quarantine_on_canary, policies, |b| b).await
}

/// As [`setup`], the builder changed by `customize` before Warden starts.
async fn setup_with(
    quarantine_on_canary: bool,
    policies: &[(&str, &str)],
    customize: impl FnOnce(WardenBuilder) -> WardenBuilder,
) -> Setup {
    let llm = FakeLlm::start().await.unwrap();
    let hook = Webhook::start().await.unwrap();
    let origin = Origin::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, None)
        .await
        .unwrap();
    let dns = Dns::start(json!({"allowed.test": [["127.0.0.1"]]}))
        .await
        .unwrap();
    let rest = FakeRest::start(Vec::new(), Vec::new()).await.unwrap();
    let proxy = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let warden = WardenBuilder::new(&llm)
        .set(
            "/routes",
            json!([
                {"name": "openai", "prefix": "/openai", "connector": "openai",
                 "upstream": format!("{}/v1", llm.url()), "credential": {"env": "FAKE_OPENAI_KEY"}},
                {"name": "github", "prefix": "/github", "connector": "github",
                 "upstream": format!("{}/github", rest.url()), "credential": {"env": "E2E_GITHUB_TOKEN"}}
            ]),
        )
        .env("E2E_GITHUB_TOKEN", "ghp-e2e-github")
        .set("/egress/listen", json!(proxy.to_string()))
        .set("/egress/nameservers", json!([dns.addr.to_string()]))
        .set(
            "/canaries",
            json!({"refresh_interval": "200ms", "url_host": "assets.acme-corp.com",
                   "alert": {"url": hook.url("/canary"), "attempts": 3}}),
        )
        .set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything")],
                   "endpoints": [{"name": "tools", "servers": ["everything"]}]}),
        )
        .set(
            "/fleet",
            if quarantine_on_canary {
                json!({})
            } else {
                json!({"quarantine": {"triggers": {"detectors": []}}})
            },
        )
        .policy("egress.cedar", EGRESS);
    let warden = customize(
        policies
            .iter()
            .fold(warden, |w, (name, text)| w.policy(name, text)),
    )
    .start()
    .await
    .expect("warden starts");
    let token = warden.token("build-bot").await.unwrap();
    Setup {
        warden,
        proxy,
        origin,
        hook,
        rest,
        _dns: dns,
        _llm: llm,
        token,
    }
}

/// `warden canary issue --kind <kind> [extra]`: stdout.
async fn issue(warden: &Warden, kind: &str, extra: &[&str]) -> String {
    warden.issue_canary(kind, extra).await.unwrap()
}

/// A chat completion whose prompt says `text`: the status and body.
async fn chat(s: &Setup, text: &str) -> (u16, Value) {
    let response = s
        .warden
        .http()
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .json(&json!({"model": "gpt-4o-mini",
                      "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The decision records that carry the canary `id`.
fn canary_records(warden: &Warden, id: &str) -> Vec<Value> {
    warden
        .audit_records()
        .into_iter()
        .filter(|r| {
            r["findings"].as_array().is_some_and(|f| {
                f.iter().any(|f| {
                    f["detector"] == "canary"
                        && f["location"].as_str().is_some_and(|l| l.ends_with(id))
                })
            })
        })
        .collect()
}

/// The canary's id from `warden canary list` (the newest of `kind`).
async fn listed_id(warden: &Warden, kind: &str) -> String {
    let out = warden.cli(&["canary", "list"]).await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .rev()
        .find(|l| l.split_whitespace().nth(1) == Some(kind))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no {kind} canary listed:\n{text}"))
        .to_owned()
}

/// Where the record's canary finding is.
fn canary_location(record: &Value) -> String {
    record["findings"]
        .as_array()
        .and_then(|all| all.iter().find(|f| f["detector"] == "canary"))
        .and_then(|f| f["location"].as_str())
        .unwrap_or_else(|| panic!("a canary finding in {record}"))
        .to_owned()
}

fn assert_denied_as_canary(record: &Value) {
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(
        record["policies"],
        json!(["warden/canary-token"]),
        "{record}"
    );
}

#[tokio::test]
async fn a_canary_leaked_through_each_channel_is_denied_recorded_counted_and_alerted() {
    let s = setup(false, &[]).await;
    // Issued while Warden runs: it picks them up from the state store on its own.
    let aws = issue(&s.warden, "aws-key", &[]).await;
    let aws_secret = aws
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .expect("an AWS secret")
        .to_owned();
    let aws_id = aws
        .lines()
        .find_map(|l| l.strip_prefix("aws_access_key_id = "))
        .expect("an AWS key id")
        .to_owned();
    let api_token = issue(&s.warden, "api-token", &[]).await.trim().to_owned();
    let url = issue(&s.warden, "url", &[]).await.trim().to_owned();
    let doc_path = s.warden.setup.dir.path().join("break-glass.md");
    issue(
        &s.warden,
        "document",
        &["--out", doc_path.to_str().unwrap()],
    )
    .await;
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let doc_token = doc
        .lines()
        .find_map(|l| l.strip_prefix("VAULT_TOKEN="))
        .expect("the document's token")
        .to_owned();
    let (aws_cn, token_cn, url_cn, doc_cn) = (
        listed_id(&s.warden, "aws-key").await,
        listed_id(&s.warden, "api-token").await,
        listed_id(&s.warden, "url").await,
        listed_id(&s.warden, "document").await,
    );

    // LLM prompt: the secret half of the AWS pair, once the replica has the canaries.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = chat(&s, &format!("use this: {aws_secret} to deploy")).await;
        if canary_records(&s.warden, &aws_cn).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the canary was not picked up within {WAIT:?}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert!(
            body.to_string().contains("canary token"),
            "the refusal explains itself: {status} {body}"
        );
        break;
    }
    let record = &canary_records(&s.warden, &aws_cn)[0];
    assert_denied_as_canary(record);
    assert_eq!(record["action"], "llm:chat");
    let (status, body) = chat(&s, "an ordinary prompt").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("canary"), "{body}");

    // MCP tool argument.
    let r = mcp::session_over(
        Transport::StreamableHttp,
        &s.warden,
        &s.warden.url("/mcp/tools"),
        &s.token,
        json!([{"op": "call", "name": "everything_echo",
                "arguments": {"message": format!("token {api_token}")}}]),
    )
    .await
    .unwrap();
    assert!(
        !r.to_string().contains(&format!("Echo: token {api_token}")),
        "the call was not forwarded: {r}"
    );
    let record = &canary_records(&s.warden, &token_cn)[0];
    assert_denied_as_canary(record);
    assert_eq!(record["action"], "mcp:call_tool");

    // REST call body: the AWS key id in an issue's text.
    let response = s
        .warden
        .http()
        .post(s.warden.url("/github/repos/acme/app/issues"))
        .bearer_auth(&s.token)
        .json(&json!({"title": "deploy", "body": format!("keys: {aws_id}")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(s.rest.requests().is_empty(), "nothing reached the API");
    let rest: Vec<Value> = canary_records(&s.warden, &aws_cn)
        .into_iter()
        .filter(|r| r["route"] == "github")
        .collect();
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_denied_as_canary(&rest[0]);

    // Egress: a plain-HTTP body, a header, the request line; the control request passes.
    let base = format!("http://allowed.test:{}", s.origin.addr.port());
    let ok = curl(s.proxy, Some(&s.token), &[&format!("{base}/ok")])
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.stderr);
    for args in [
        vec![
            "-d".to_owned(),
            format!("key={aws_id}"),
            format!("{base}/body"),
        ],
        vec![
            "-H".to_owned(),
            format!("x-note: {doc_token}"),
            format!("{base}/header"),
        ],
        vec![format!("{base}/line?t={api_token}")],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let denied = curl(s.proxy, Some(&s.token), &args).await.unwrap();
        assert_eq!(denied.status, 403, "{args:?}: {}", denied.body);
    }
    assert_eq!(
        s.origin.seen().len(),
        1,
        "only the control request reached the origin: {:?}",
        s.origin.seen()
    );
    let egress: Vec<Value> = [&aws_cn, &doc_cn, &token_cn]
        .iter()
        .flat_map(|id| canary_records(&s.warden, id))
        .filter(|r| r["action"] == "egress:request")
        .collect();
    assert_eq!(egress.len(), 3, "{egress:?}");
    egress.iter().for_each(assert_denied_as_canary);

    // CONNECT to the URL canary's own host name: refused before any DNS query for it.
    let connect = curl(s.proxy, Some(&s.token), &[&url]).await.unwrap();
    assert_ne!(connect.status, 200, "{}", connect.stderr);
    let record = &canary_records(&s.warden, &url_cn)[0];
    assert_denied_as_canary(record);
    assert_eq!(record["action"], "egress:connect");
    assert!(
        record["findings"][0]["location"]
            .as_str()
            .unwrap()
            .starts_with("CONNECT request"),
        "{record}"
    );

    // Counted per channel, alerted with the canary's id and never its value.
    let metrics = s.warden.metrics().await.unwrap();
    for (channel, least) in [("llm", 1), ("mcp", 1), ("rest", 1), ("egress", 4)] {
        let count: u64 = metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "warden_canary_hits_total{{channel=\"{channel}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {channel} hits in:\n{metrics}"));
        assert!(count >= least, "{channel}: {count}");
    }
    let alert = s.hook.delivery("/canary", WAIT).await.unwrap().json();
    assert_eq!(alert["event"], "canary_hit", "{alert}");
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.hook.deliveries("/canary").len() < 6 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alerts: Vec<Value> = s
        .hook
        .deliveries("/canary")
        .iter()
        .map(|d| d.json())
        .collect();
    for id in [&aws_cn, &token_cn, &url_cn, &doc_cn] {
        assert!(
            alerts
                .iter()
                .any(|a| a["canary"]["id"] == **id && a["agent"] == "build-bot"),
            "an alert for {id}: {alerts:?}"
        );
    }
    let everything = format!(
        "{}\n{}\n{alerts:?}",
        std::fs::read_dir(s.warden.audit_dir())
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
            .collect::<String>(),
        String::from_utf8(s.warden.cli(&["canary", "list"]).await.unwrap().stdout).unwrap()
    );
    for value in [&aws_secret, &aws_id, &api_token, &doc_token] {
        assert!(
            !everything.contains(value.as_str()),
            "a canary's value leaked into records"
        );
    }

    // Revoked: no longer looked for, on this replica within the refresh interval.
    let out = s
        .warden
        .cli(&["canary", "revoke", &token_cn])
        .await
        .unwrap();
    assert!(out.status.success());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = chat(&s, &format!("token {api_token}")).await;
        if status == 200 && !body.to_string().contains("canary token") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still denied: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = s
        .warden
        .cli(&["canary", "revoke", &token_cn])
        .await
        .unwrap();
    assert!(!again.status.success(), "revoking twice says so");
}

/// `text` as a JSON string's content that hides it from a search of the raw bytes: every other
/// character a `\u` escape, `/` as `\/` (what PHP's `json_encode` writes).
fn json_escaped(text: &str) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| match (i % 2, c) {
            (0, c) => format!("\\u{:04x}", u32::from(c)),
            (_, '/') => "\\/".to_owned(),
            (_, c) => c.to_string(),
        })
        .collect()
}

/// `text` with every byte percent-encoded.
fn percent_encoded(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[tokio::test]
async fn a_canary_hidden_by_json_escapes_or_percent_encoding_is_found_once_decoded() {
    let s = setup(false, &[]).await;
    let aws = issue(&s.warden, "aws-key", &[]).await;
    let field = |name: &str| {
        aws.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} in {aws}"))
            .to_owned()
    };
    let (aws_id, aws_secret) = (
        field("aws_access_key_id = "),
        field("aws_secret_access_key = "),
    );
    let aws_cn = listed_id(&s.warden, "aws-key").await;
    let records = |action: &str| -> Vec<Value> {
        canary_records(&s.warden, &aws_cn)
            .into_iter()
            .filter(|r| r["action"] == action)
            .collect()
    };
    let post = |path: &str, body: String| {
        s.warden
            .http()
            .post(s.warden.url(path))
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(body)
    };

    // LLM prompt: the secret, escaped, once the replica has the canary.
    let prompt = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"use {} now"}}]}}"#,
        json_escaped(&aws_secret)
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while records("llm:chat").is_empty() {
        let response = post("/openai/chat/completions", prompt.clone())
            .send()
            .await
            .unwrap();
        let status = response.status();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the escaped canary was not found within {WAIT:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let record = &records("llm:chat")[0];
    assert_denied_as_canary(record);
    let location = canary_location(record);
    assert!(
        location.starts_with("body, byte ") && location.contains("JSON string with escapes"),
        "{location}"
    );

    // An LLM route's query and headers are inspected as REST's are; the agent's own account
    // headers do not go with Warden's key.
    let hi = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}"#;
    let reached = s._llm.requests().len();
    let leak = format!("/openai/chat/completions?leak={}", percent_encoded(&aws_id));
    post(&leak, hi.to_owned()).send().await.unwrap();
    post("/openai/chat/completions", hi.to_owned())
        .header("cookie", format!("session={aws_secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        s._llm.requests().len(),
        reached,
        "neither reached the model"
    );
    assert_eq!(records("llm:chat").len(), 3);
    let answered = post("/openai/chat/completions", hi.to_owned())
        .header("OpenAI-Organization", "org-agent")
        .header("OpenAI-Project", "proj-agent")
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let sent = s._llm.last_request().unwrap();
    assert_eq!(
        (
            sent.header("openai-organization"),
            sent.header("openai-project")
        ),
        (None, None),
        "{:?}",
        sent.headers
    );

    // MCP tool argument, escaped: the server (which would read it decoded) never sees it.
    let session = mcp::initialize_raw(&s.warden, "/mcp/tools", &s.token)
        .await
        .unwrap();
    let call = format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"everything_echo","arguments":{{"message":"key {}"}}}}}}"#,
        json_escaped(&aws_id)
    );
    let answer = post("/mcp/tools", call)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !answer.contains(&aws_id),
        "the call was not forwarded: {answer}"
    );
    assert_denied_as_canary(&records("mcp:call_tool")[0]);

    // REST call body, escaped.
    let response = post(
        "/github/repos/acme/app/issues",
        format!(
            r#"{{"title":"deploy","body":"keys: {}"}}"#,
            json_escaped(&aws_id)
        ),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 403);
    assert!(s.rest.requests().is_empty(), "nothing reached the API");

    // Egress: a form body and a JSON body, and the request line, percent-encoded or escaped.
    let base = format!("http://allowed.test:{}", s.origin.addr.port());
    let form = format!("key={}", percent_encoded(&aws_id));
    let json = format!(r#"{{"key":"{}"}}"#, json_escaped(&aws_secret));
    let (form_url, json_url) = (format!("{base}/form"), format!("{base}/json"));
    let line = format!("{base}/line?t={}", percent_encoded(&aws_id));
    for args in [
        vec!["-d", form.as_str(), form_url.as_str()],
        vec![
            "-H",
            "content-type: application/json",
            "-d",
            json.as_str(),
            json_url.as_str(),
        ],
        vec![line.as_str()],
    ] {
        let denied = curl(s.proxy, Some(&s.token), &args).await.unwrap();
        assert_eq!(denied.status, 403, "{args:?}: {}", denied.body);
    }
    assert!(s.origin.seen().is_empty(), "{:?}", s.origin.seen());
    assert_eq!(records("egress:request").len(), 3);

    // A long path is kept bounded in the request's records, as a REST path is.
    let long = format!("{base}/{}", "a".repeat(60_000));
    curl(s.proxy, Some(&s.token), &[&long]).await.unwrap();
    let kept: Vec<usize> = s
        .warden
        .audit_records()
        .iter()
        .filter_map(|r| r["detail"]["egress"]["path"].as_str())
        .filter(|p| p.starts_with("/aaaa"))
        .map(|p| p.chars().count())
        .collect();
    assert!(
        !kept.is_empty() && kept.iter().all(|&n| n <= 201),
        "{kept:?}"
    );

    // A refused request's record does not repeat a canary it said (here, unauthenticated, in
    // a path no route matches): the hit is raised, the reason withheld.
    let before = canary_hits(&s.warden, "rejected").await;
    for path in [
        format!("/nosuch/{aws_id}"),
        format!("/nosuch/{}", percent_encoded(&aws_id)),
    ] {
        let refused = s
            .warden
            .http()
            .get(s.warden.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 404, "{path}");
    }
    // Rejected records are written in the background: wait for both.
    let withheld = format!("(withheld: canary {aws_cn} was found");
    let deadline = tokio::time::Instant::now() + WAIT;
    while audit_text(&s.warden).matches(&withheld).count() < 2
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = audit_text(&s.warden);
    assert!(!audit.contains(&aws_id), "a canary's value in the records");
    let rejected: Vec<&str> = audit.lines().filter(|l| l.contains("no_route")).collect();
    assert_eq!(
        audit.matches(&withheld).count(),
        2,
        "the rejected records say why their reason is withheld: {rejected:?}"
    );
    assert_eq!(canary_hits(&s.warden, "rejected").await, before + 2);
}

#[tokio::test]
async fn a_canary_in_a_base64_text_document_or_inline_text_part_is_found_once_decoded() {
    use base64::Engine;
    // The harness's LLM routes (OpenAI, Anthropic, Gemini), canaries looked for.
    let llm = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&llm)
        .set("/canaries", json!({"refresh_interval": "200ms"}))
        .set(
            "/fleet",
            json!({"quarantine": {"triggers": {"detectors": []}}}),
        )
        .start()
        .await
        .expect("warden starts");
    let token = warden.token("build-bot").await.unwrap();
    let aws = issue(&warden, "aws-key", &[]).await;
    let secret = aws
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .unwrap_or_else(|| panic!("a secret in {aws}"))
        .to_owned();
    let cn = listed_id(&warden, "aws-key").await;
    let file = base64::engine::general_purpose::STANDARD
        .encode(format!("region,key\neu-west-1,{secret}\n"));
    let anthropic = json!({"model": "claude-sonnet-4-5", "max_tokens": 100,
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "base64", "media_type": "text/csv", "data": file}},
            {"type": "text", "text": "Summarise this file"}]}]});
    let gemini = json!({"contents": [{"role": "user", "parts": [
        {"text": "Summarise this file"},
        {"inline_data": {"mime_type": "text/plain", "data": file}}]}]});
    let sent = [
        ("anthropic", "/anthropic/v1/messages", anthropic),
        (
            "gemini",
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            gemini,
        ),
    ];
    let found = |route: &str| -> Vec<Value> {
        canary_records(&warden, &cn)
            .into_iter()
            .filter(|r| r["route"] == route)
            .collect()
    };
    let send = |path: &str, body: &Value| {
        warden
            .http()
            .post(warden.url(path))
            .bearer_auth(&token)
            .json(body)
            .send()
    };
    for (route, path, body) in &sent {
        // Sent until the replica has the canary (a send before may reach the model).
        let deadline = tokio::time::Instant::now() + WAIT;
        while found(route).is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the canary in {path} was not found within {WAIT:?}"
            );
            send(path, body).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Known, it never reaches the model.
        let reached = llm.requests().len();
        send(path, body).await.unwrap();
        assert_eq!(llm.requests().len(), reached, "{path} reached the model");
        let record = &found(route)[0];
        assert_denied_as_canary(record);
        let location = canary_location(record);
        assert!(
            location.starts_with("body, byte ")
                && location.contains("a base64 file of a text type, decoded"),
            "{path}: {location}"
        );
    }
    assert!(
        !audit_text(&warden).contains(&secret),
        "a canary's value in the records"
    );
}

/// `warden_canary_hits_total{channel}`.
async fn canary_hits(warden: &Warden, channel: &str) -> u64 {
    let metrics = warden.metrics().await.unwrap();
    metrics
        .lines()
        .find(|l| {
            l.starts_with(&format!(
                "warden_canary_hits_total{{channel=\"{channel}\"}}"
            ))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn content_findings_are_recorded_by_detector_and_location_without_the_content() {
    let llm = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&llm)
        .set("/inspect", json!({"disabled": ["phone"]}))
        .start()
        .await
        .expect("warden starts");
    let token = warden.token("support-bot").await.unwrap();
    let text =
        "mail jane.doe@acme-corp.com or call +44 20 7946 0958; api_key=q8Vd3kLz0PwX7mRt2YbN5sHc";
    let response = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = warden
        .wait_for_audit(WAIT, |r| {
            r["action"] == "llm:chat" && r["kind"] == "decision"
        })
        .await
        .unwrap();
    let detectors: Vec<&str> = record["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["detector"].as_str())
        .collect();
    assert_eq!(detectors, ["email", "high_entropy_secret"], "{record}");
    assert!(!record.to_string().contains("jane.doe"), "{record}");
    assert!(
        !record.to_string().contains("q8Vd3kLz0PwX7mRt2YbN5sHc"),
        "{record}"
    );
}

/// The configured response to a canary hit: the agent that leaked it is quarantined (the
/// default trigger), so its next ordinary request is refused too, until an operator releases
/// it.
#[tokio::test]
async fn a_leaked_canary_quarantines_the_agent_that_leaked_it() {
    let s = setup(true, &[]).await;
    let api_token = issue(&s.warden, "api-token", &[]).await;
    let api_token = api_token.trim();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = chat(&s, &format!("token {api_token}")).await;
        if status == 200 {
            // Not picked up yet: the replica reads the canaries every 200 ms.
            assert!(
                tokio::time::Instant::now() < deadline,
                "the canary was not picked up within {WAIT:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 403, "{body}");
        break;
    }
    let (status, body) = chat(&s, "an ordinary prompt").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "agent_quarantined", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("canary"),
        "the refusal says why: {body}"
    );
    assert!(
        !body.to_string().contains(api_token),
        "never the canary's value: {body}"
    );
    let out = s
        .warden
        .cli(&["agents", "release", "build-bot"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = chat(&s, "an ordinary prompt").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after release: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// AWS keys and e-mail addresses are redacted in place; an IBAN is refused outright.
const REDACT: &str = r#"
@id("redact-keys-and-mail")
@reason("AWS keys and e-mail addresses are redacted before they leave")
@on_match("redact")
forbid (principal, action, resource)
when { context.findings.contains("aws_access_key") || context.findings.contains("email") };

@id("no-iban")
@reason("IBANs never leave")
forbid (principal, action, resource)
when { context.findings.contains("iban") };
"#;

const AWS_KEY: &str = "AKIAQ3EGRT5KWZ7XJ2MD";
const MAIL: &str = "jane.doe@acme-corp.com";
/// A valid IBAN (its checksum holds).
const IBAN: &str = "DE89370400440532013000";

/// `text` as the upstream must receive it: the key and the address replaced.
fn redacted(text: &str) -> String {
    text.replace(AWS_KEY, "[REDACTED:aws_access_key]")
        .replace(MAIL, "[REDACTED:email]")
}

/// Everything Warden's audit log holds, as text.
fn audit_text(warden: &Warden) -> String {
    std::fs::read_dir(warden.audit_dir())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .collect()
}

/// The value of `warden_dlp_findings_total` with these labels (0 when absent).
fn dlp_count(metrics: &str, detector: &str, channel: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("warden_dlp_findings_total{")
                && l.contains(&format!("detector=\"{detector}\""))
                && l.contains(&format!("channel=\"{channel}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_redact_policy_replaces_findings_in_prompts_of_every_protocol_and_the_call_goes_on() {
    let llm = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&llm)
        .policy("dlp.cedar", REDACT)
        .start()
        .await
        .expect("warden starts");
    let token = warden.token("support-bot").await.unwrap();
    // As JSON writes it: a newline, accents and quotes escaped.
    let text = format!(r#"deploy with {AWS_KEY}, then mail {MAIL}\nand \u00e9t\u00e9 \"done\""#);
    // Whitespace, key order and escapes the way the agent wrote them: only the values change.
    for (path, body) in [
        (
            "/openai/chat/completions",
            format!(
                r#"{{ "model": "gpt-4o-mini",  "messages": [{{"role": "user", "content": "{text}"}}]}}"#
            ),
        ),
        (
            "/openai/responses",
            format!(r#"{{"input": "{text}", "model": "gpt-4o-mini", "store": false}}"#),
        ),
        (
            "/anthropic/v1/messages",
            format!(
                r#"{{"model": "claude-sonnet-4-5", "max_tokens": 100,
  "messages": [{{"role": "user", "content": [{{"type": "text", "text": "{text}"}}]}}]}}"#
            ),
        ),
        (
            "/gemini/v1beta/models/gemini-2.0-flash:generateContent",
            format!(r#"{{"contents": [{{"role": "user", "parts": [{{"text": "{text}"}}]}}]}}"#),
        ),
    ] {
        let before = llm.requests().len();
        let mut request = warden
            .http()
            .post(warden.url(path))
            .bearer_auth(&token)
            .header("content-type", "application/json");
        if path.starts_with("/anthropic") {
            request = request.header("anthropic-version", "2023-06-01");
        }
        let response = request.body(body.clone()).send().await.unwrap();
        let status = response.status();
        assert_eq!(status, 200, "{path}: {}", response.text().await.unwrap());
        let seen = llm.requests();
        assert_eq!(seen.len(), before + 1, "{path}: forwarded once");
        let got = &seen[before];
        assert_eq!(
            String::from_utf8_lossy(&got.body),
            redacted(&body),
            "{path}: the prompt reaches the model redacted, byte for byte otherwise"
        );
        assert_eq!(
            got.header("content-length"),
            Some(got.body.len().to_string().as_str()),
            "{path}: Content-Length is the redacted body's"
        );
    }

    // The official SDK gets its normal answer.
    let out = sdk::run(
        "openai_chat.py",
        &warden.url("/openai"),
        &token,
        &[
            "chat",
            "--prompt",
            &format!("my key is {AWS_KEY}; reply to {MAIL}"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        out["chat"]["content"],
        json!(fake_llm::full_text()),
        "{out}"
    );
    assert_eq!(out["chat"]["finish_reason"], "stop", "{out}");
    let sent = llm.last_request().unwrap().json();
    assert_eq!(
        sent["messages"][1]["content"],
        "my key is [REDACTED:aws_access_key]; reply to [REDACTED:email]"
    );

    // Recorded as allowed, with what was redacted where, never the values.
    let records: Vec<Value> = warden
        .audit_records()
        .into_iter()
        .filter(|r| r["kind"] == "decision")
        .collect();
    assert_eq!(records.len(), 5, "{records:?}");
    for record in &records {
        assert_eq!(record["decision"], "allow", "{record}");
        let redacted: Vec<&str> = record["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                f["location"]
                    .as_str()
                    .is_some_and(|l| l.ends_with("redacted"))
            })
            .filter_map(|f| f["detector"].as_str())
            .collect();
        assert_eq!(redacted, ["aws_access_key", "email"], "{record}");
    }
    let audit = audit_text(&warden);
    assert!(
        !audit.contains(AWS_KEY) && !audit.contains(MAIL),
        "a value reached the audit log"
    );

    // A plain forbid that matches too wins: denied, nothing forwarded.
    let before = llm.requests().len();
    let response = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .bearer_auth(&token)
        .json(&json!({"model": "gpt-4o-mini",
                      "messages": [{"role": "user", "content": format!("{AWS_KEY} pays {IBAN}")}]}))
        .send()
        .await
        .unwrap();
    let answer = response.text().await.unwrap();
    assert!(answer.contains("IBANs never leave"), "{answer}");
    assert_eq!(llm.requests().len(), before, "nothing reached the model");
    let record = warden
        .wait_for_audit(WAIT, |r| r["kind"] == "decision" && r["decision"] == "deny")
        .await
        .unwrap();
    assert!(
        record["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("no-iban")),
        "{record}"
    );

    let metrics = warden.metrics().await.unwrap();
    assert_eq!(
        dlp_count(&metrics, "aws_access_key", "llm", "redacted"),
        5,
        "{metrics}"
    );
    assert_eq!(
        dlp_count(&metrics, "email", "llm", "redacted"),
        5,
        "{metrics}"
    );
    assert_eq!(dlp_count(&metrics, "iban", "llm", "denied"), 1, "{metrics}");
}

#[tokio::test]
async fn tool_arguments_rest_bodies_and_egress_bodies_are_redacted_and_a_canary_still_denies() {
    // A second server records the `_meta` of each call that reaches it.
    let recorded = tempfile::tempdir().unwrap();
    let meta_file = recorded.path().join("meta.jsonl");
    let s = setup_with(false, &[("dlp.cedar", REDACT)], |b| {
        b.set(
            "/mcp",
            json!({"servers": [mcp::everything_stdio("everything"), mcp::recording_stdio("recorder", &meta_file)],
                   "endpoints": [{"name": "tools", "servers": ["everything", "recorder"]}]}),
        )
    })
    .await;
    let secret = format!("key {AWS_KEY} for {MAIL}");

    // MCP: the tool gets the redacted argument.
    let r = mcp::session_over(
        Transport::StreamableHttp,
        &s.warden,
        &s.warden.url("/mcp/tools"),
        &s.token,
        json!([{"op": "call", "name": "everything_echo", "arguments": {"message": secret}}]),
    )
    .await
    .unwrap();
    assert!(
        r.to_string()
            .contains(&format!("Echo: {}", redacted(&secret))),
        "the server echoes the redacted argument: {r}"
    );
    assert!(!r.to_string().contains(AWS_KEY), "{r}");
    let record = s
        .warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "decision" && r["action"] == "mcp:call_tool"
        })
        .await
        .unwrap();
    assert_eq!(record["decision"], "allow", "{record}");

    // MCP: a redacted detector that also matches outside the arguments (in `_meta`) is
    // redacted there too, and the call goes on: the server never sees the key in any field.
    let r = mcp::session_over(
        Transport::StreamableHttp,
        &s.warden,
        &s.warden.url("/mcp/tools"),
        &s.token,
        json!([{"op": "call", "name": "recorder_add", "arguments": {"a": 1, "b": 2, "note": secret},
                "meta": {"note": format!("also {AWS_KEY}")}}]),
    )
    .await
    .unwrap();
    assert_eq!(
        r["steps"][0]["isError"], false,
        "redacted and forwarded: {r}"
    );
    assert!(!r.to_string().contains(AWS_KEY), "{r}");
    let meta = std::fs::read_to_string(&meta_file).expect("the call reached the server");
    assert!(
        meta.contains("also [REDACTED:aws_access_key]") && !meta.contains(AWS_KEY),
        "the server got the redacted _meta: {meta}"
    );

    // REST: the API gets the redacted body with its own length.
    let body = format!(r#"{{"title": "deploy", "body": "{secret}"}}"#);
    let response = s
        .warden
        .http()
        .post(s.warden.url("/github/repos/acme/app/issues"))
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_ne!(response.status(), 403, "not refused by Warden");
    let got = s.rest.requests().pop().expect("the API was called");
    assert_eq!(String::from_utf8_lossy(&got.body), redacted(&body));
    assert_eq!(
        got.headers["content-length"].to_str().unwrap(),
        got.body.len().to_string()
    );

    // Plain-HTTP egress: the origin gets the redacted form body.
    let base = format!("http://allowed.test:{}", s.origin.addr.port());
    let form = format!("note={AWS_KEY}&mail={MAIL}");
    let sent = curl(
        s.proxy,
        Some(&s.token),
        &["-d", &form, &format!("{base}/form")],
    )
    .await
    .unwrap();
    assert_eq!(sent.status, 200, "{} {}", sent.body, sent.stderr);
    let seen = s.origin.seen().pop().expect("the origin was reached");
    assert_eq!(seen["body"], json!(redacted(&form)), "{seen}");
    assert_eq!(seen["body_len"], json!(redacted(&form).len()), "{seen}");
    // The same key in the url or a header, which are never redacted: the redaction of the
    // body does not let it out; denied, and the origin sees nothing more. So too in a
    // multipart part in quoted-printable, which its receiver reads decoded and a redaction
    // cannot rewrite: alone, or beside a plain key that is redacted.
    let reached = s.origin.seen().len();
    let quoted = format!("=41=4b{}", AWS_KEY[2..].replace('I', "=49"));
    for plain in ["", AWS_KEY] {
        let multipart = format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnote {plain}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"b\"\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{quoted}\r\n--XyZ--\r\n"
        );
        let sent = curl(
            s.proxy,
            Some(&s.token),
            &[
                "--data-binary",
                &multipart,
                "-H",
                "Content-Type: multipart/form-data; boundary=XyZ",
                &format!("{base}/form"),
            ],
        )
        .await
        .unwrap();
        assert_eq!(sent.status, 403, "{plain:?}: {} {}", sent.body, sent.stderr);
    }
    for extra in [
        vec![format!("{base}/form?k={AWS_KEY}")],
        vec![
            format!("{base}/form"),
            "-H".into(),
            format!("X-T: {AWS_KEY}"),
        ],
    ] {
        let mut args = vec!["-d".to_owned(), form.clone()];
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let sent = curl(s.proxy, Some(&s.token), &args).await.unwrap();
        assert_eq!(sent.status, 403, "{args:?}: {} {}", sent.body, sent.stderr);
    }
    assert_eq!(
        s.origin.seen().len(),
        reached,
        "nothing more reached the origin"
    );

    // A canary in the same prompt as a redactable key: denied, never redacted and sent.
    let api_token = issue(&s.warden, "api-token", &[]).await.trim().to_owned();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = chat(&s, &format!("{AWS_KEY} and {api_token}")).await;
        if body.to_string().contains("canary token") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the canary was not picked up within {WAIT:?}: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let audit = audit_text(&s.warden);
    for value in [AWS_KEY, MAIL, api_token.as_str()] {
        assert!(!audit.contains(value), "a value reached the audit log");
    }
    let metrics = s.warden.metrics().await.unwrap();
    // MCP's two calls were both redacted (the second in its arguments and its `_meta`).
    for (channel, count) in [("mcp", 2), ("rest", 1), ("egress", 1)] {
        assert_eq!(
            dlp_count(&metrics, "aws_access_key", channel, "redacted"),
            count,
            "{channel}: {metrics}"
        );
    }
}

/// AWS keys never leave (a plain forbid).
const NO_AWS_KEYS: &str = r#"
@id("no-aws-keys")
@reason("AWS keys never leave")
forbid (principal, action, resource)
when { context.findings.contains("aws_access_key") };
"#;

/// E-mail addresses are redacted in place.
const REDACT_MAIL: &str = r#"
@id("redact-mail")
@on_match("redact")
forbid (principal, action, resource)
when { context.findings.contains("email") };
"#;

/// A 5 MB body of ordinary text lines.
fn large_body() -> Vec<u8> {
    let line = b"2026-12-04T10:00:00Z INFO worker processed batch 1829 of the nightly export\n";
    line.iter().copied().cycle().take(5 * 1000 * 1000).collect()
}

/// POSTs `body` (written to `file` first) to `url` through the egress proxy with curl.
async fn upload(
    s: &Setup,
    file: &std::path::Path,
    body: &[u8],
    url: &str,
) -> warden_e2e::egress::Curled {
    std::fs::write(file, body).unwrap();
    let data = format!("@{}", file.display());
    curl(s.proxy, Some(&s.token), &["--data-binary", &data, url])
        .await
        .unwrap()
}

/// Bodies past 64 KiB stream, none over 1 MiB is read whole; AWS keys are denied, e-mail
/// addresses redacted.
async fn setup_streaming() -> Setup {
    setup_with(
        true,
        &[("dlp.cedar", NO_AWS_KEYS), ("redact.cedar", REDACT_MAIL)],
        |b| {
            b.set("/limits/max_request_bytes", json!(1024 * 1024))
                .set("/inspect/stream_above", json!(64 * 1024))
        },
    )
    .await
}

#[tokio::test]
async fn a_large_egress_body_is_inspected_as_it_streams_and_stopped_mid_body_on_a_deny() {
    // Buffered: at most 64 KiB of any body (and no whole body over 1 MiB is ever read).
    let s = setup_streaming().await;
    let base = format!("http://allowed.test:{}", s.origin.addr.port());
    let dir = s.warden.setup.dir.path().to_owned();

    // A clean 5 MB body reaches the origin whole.
    let clean = large_body();
    let sent = upload(
        &s,
        &dir.join("clean.txt"),
        &clean,
        &format!("{base}/upload"),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.stderr);
    let seen = s.origin.seen().pop().expect("the origin was reached");
    assert_eq!(seen["body_len"], json!(clean.len()), "whole");
    assert!(
        seen["body"].as_str().unwrap().as_bytes() == clean.as_slice(),
        "unchanged"
    );

    // An address in the first bytes is redacted; the rest streams on, its length fixed up.
    let mut mailed = large_body();
    let words = format!(" {MAIL} ");
    mailed[100..100 + words.len()].copy_from_slice(words.as_bytes());
    let sent = upload(
        &s,
        &dir.join("mailed.txt"),
        &mailed,
        &format!("{base}/upload"),
    )
    .await;
    assert_eq!(sent.status, 200, "{}", sent.stderr);
    let seen = s.origin.seen().pop().expect("the origin was reached");
    let expected = redacted(&String::from_utf8(mailed).unwrap());
    assert_eq!(seen["body_len"], json!(expected.len()), "whole, redacted");
    assert!(
        seen["body"].as_str() == Some(expected.as_str()),
        "redacted in place"
    );

    // A key near the end, across a 64 KiB boundary: the origin never gets the whole body.
    let at = 4 * 1024 * 1024 + 64 * 1024 - 7;
    let mut dirty = large_body();
    dirty[at..at + AWS_KEY.len()].copy_from_slice(AWS_KEY.as_bytes());
    let before = s.origin.seen().len();
    let denied = upload(
        &s,
        &dir.join("dirty.txt"),
        &dirty,
        &format!("{base}/upload"),
    )
    .await;
    assert_eq!(denied.status, 403, "{} {}", denied.body, denied.stderr);
    assert!(
        denied.body.contains("AWS keys never leave"),
        "{}",
        denied.body
    );
    assert!(
        s.origin.seen()[before..]
            .iter()
            .all(|r| r["body_len"].as_u64() != Some(dirty.len() as u64)),
        "the origin never got the body whole"
    );
    assert_denied_mid_body(&s, "egress:request", at).await;
}

/// The deny of `action` mid-body is recorded: the AWS key found at byte `at`, never its value.
async fn assert_denied_mid_body(s: &Setup, action: &str, at: usize) {
    let record = s
        .warden
        .wait_for_audit(WAIT, |r| r["kind"] == "decision" && r["decision"] == "deny")
        .await
        .unwrap();
    assert_eq!(record["action"], action, "{record}");
    assert_eq!(record["policies"], json!(["no-aws-keys"]), "{record}");
    assert_eq!(
        record["findings"],
        json!([{"detector": "aws_access_key", "location": format!("body, byte {at}")}]),
        "{record}"
    );
    assert!(!audit_text(&s.warden).contains(AWS_KEY));
}

/// A JSON document of about 5 MB for GitHub's contents API: the lines of [`large_body`] in one
/// string, `words` (between spaces) starting at byte `at` of the document when given.
fn large_document(words: Option<(usize, &str)>) -> Vec<u8> {
    let mut document = br#"{"message":"nightly export","content":""#.to_vec();
    document.extend(
        large_body()
            .into_iter()
            .map(|b| if b == b'\n' { b' ' } else { b }),
    );
    document.extend_from_slice(br#""}"#);
    if let Some((at, words)) = words {
        let words = format!(" {words} ");
        document[at - 1..at - 1 + words.len()].copy_from_slice(words.as_bytes());
    }
    document
}

/// `warden_inspect_stream_held_bytes`: how many streamed bodies held at most `le` bytes at
/// once, and how many there were.
fn held_at_most(metrics: &str, le: &str) -> (u64, u64) {
    let value = |prefix: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (
        value(&format!(
            "warden_inspect_stream_held_bytes_bucket{{le=\"{le}\"}} "
        )),
        value("warden_inspect_stream_held_bytes_count "),
    )
}

#[tokio::test]
async fn a_large_rest_body_streams_inspected_redacted_in_flight_and_stopped_mid_body_on_a_deny() {
    // Bodies past 64 KiB stream; none over 1 MiB is ever buffered (the uploads are 5 MB).
    let s = setup_streaming().await;
    let url = s.warden.url("/github/repos/acme/app/contents/export.json");
    let put = |body: Vec<u8>| {
        s.warden
            .http()
            .put(&url)
            .bearer_auth(&s.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // A clean document arrives whole and byte for byte, past limits.max_request_bytes.
    let clean = large_document(None);
    let response = put(clean.clone()).await.unwrap();
    assert_ne!(response.status(), 403, "{:?}", response.text().await);
    let got = s.rest.requests().pop().expect("the API was called");
    assert!(got.complete, "{:?}", got.headers);
    assert_eq!(got.body.len(), clean.len());
    assert!(got.body == clean, "byte for byte");

    // An address near the end, across a 64 KiB boundary: redacted as it streams by.
    let at = 4 * 1024 * 1024 + 64 * 1024 - 9;
    let mailed = large_document(Some((at, MAIL)));
    let response = put(mailed.clone()).await.unwrap();
    assert_ne!(response.status(), 403, "{:?}", response.text().await);
    let got = s.rest.requests().pop().expect("the API was called");
    let expected = redacted(&String::from_utf8(mailed).unwrap());
    assert!(got.complete);
    assert_eq!(got.body.len(), expected.len());
    assert!(got.body == expected.as_bytes(), "redacted in place");
    let location = format!("body, byte {at}: redacted");
    let record = s
        .warden
        .wait_for_audit(WAIT, |r| {
            r["kind"] == "outcome"
                && r["findings"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|f| f["location"] == location.as_str()))
        })
        .await
        .unwrap();
    assert_eq!(
        record["findings"],
        json!([{"detector": "email", "location": location}]),
        "the outcome names what was redacted in flight: {record}"
    );

    // A key near the end: refused, and the API never gets the body whole.
    let dirty = large_document(Some((at, AWS_KEY)));
    let before = s.rest.requests().len();
    let response = put(dirty).await.unwrap();
    assert_eq!(response.status(), 403);
    let text = response.text().await.unwrap();
    assert!(text.contains("AWS keys never leave"), "{text}");
    let after = s.rest.requests();
    assert!(
        after[before..].iter().all(|r| !r.complete),
        "the API never got the body whole"
    );
    assert_denied_mid_body(&s, "github:repos.create-or-update-file-contents", at).await;
    assert!(!audit_text(&s.warden).contains(MAIL));

    // What each streamed body held at once stayed far below its size.
    let metrics = s.warden.metrics().await.unwrap();
    let (bounded, count) = held_at_most(&metrics, "524288");
    assert!(count >= 3, "{metrics}");
    assert_eq!(bounded, count, "every streamed body held at most 512 KiB");
    assert_eq!(
        dlp_count(&metrics, "email", "rest", "redacted"),
        1,
        "{metrics}"
    );
}
