//! REST connectors end to end: the real warden binary in front of a SaaS API double
//! (`fake_rest.rs`) that accepts a request only with the connector's credential and without
//! the agent's. Representative operations of every shipped connector, an operation allowed and
//! denied on a path parameter, a field, an unknown operation, a path that would reach another
//! operation, and the GitHub connector imported from the real `@octokit/openapi` description.
//! And what the security review found: compressed bodies judged decoded, secrets in the url and
//! headers, names spelled in another case or with look-alikes, nested form fields, and the body
//! approvers are shown.

use base64::Engine as _;
use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::fake_rest::{Credential, FakeRest};
use warden_e2e::paths;
use warden_e2e::warden::{Warden, WardenBuilder, run_bounded};

const AGENT: &str = "rest-agent";

/// The GitHub path parameters the committed connector folds to lower case (its `fold_case:`).
const GITHUB_FOLD_CASE: &str = "owner,repo,org,username,enterprise,team_slug";

/// Each shipped connector: (connector, route prefix, base path on the double, env var, secret,
/// header, header value the API requires).
fn connectors() -> Vec<(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    String,
    String,
)> {
    let bearer = |t: &str| format!("Bearer {t}");
    let basic = base64::engine::general_purpose::STANDARD.encode("me@acme.test:jira-e2e-token");
    vec![
        (
            "github",
            "/github",
            "/github",
            "E2E_GITHUB_TOKEN",
            "ghp-e2e-github".into(),
            bearer("ghp-e2e-github"),
        ),
        (
            "slack",
            "/slack",
            "/slack/api",
            "E2E_SLACK_TOKEN",
            "xoxb-e2e-slack".into(),
            bearer("xoxb-e2e-slack"),
        ),
        (
            "google-workspace",
            "/google",
            "/google",
            "E2E_GOOGLE_TOKEN",
            "ya29.e2e-google".into(),
            bearer("ya29.e2e-google"),
        ),
        (
            "microsoft-graph",
            "/graph",
            "/graph/v1.0",
            "E2E_GRAPH_TOKEN",
            "eyJ.e2e-graph".into(),
            bearer("eyJ.e2e-graph"),
        ),
        (
            "jira",
            "/jira",
            "/jira",
            "E2E_JIRA_CREDENTIAL",
            "me@acme.test:jira-e2e-token".into(),
            format!("Basic {basic}"),
        ),
        (
            "salesforce",
            "/salesforce",
            "/salesforce",
            "E2E_SALESFORCE_TOKEN",
            "00D.e2e-salesforce".into(),
            bearer("00D.e2e-salesforce"),
        ),
    ]
}

/// The double and Warden with one route per shipped connector, `policies` instead of the
/// permit-all, and an agent token the double refuses to see.
async fn start(policies: &[(&str, &str)], permit_all: bool) -> (FakeRest, Warden, String) {
    let required = connectors()
        .into_iter()
        .map(|(_, _, base, _, _, value)| Credential {
            base: base.into(),
            header: "authorization".into(),
            value,
        })
        .collect();
    let fake = FakeRest::start(required, Vec::new()).await.expect("double");
    let routes: Vec<Value> = connectors()
        .into_iter()
        .map(|(connector, prefix, base, env, _, _)| {
            json!({"prefix": prefix, "connector": connector,
                   "upstream": format!("{}{base}", fake.url()), "credential": {"env": env}})
        })
        .collect();
    let mut builder = WardenBuilder::with_upstream_url(&fake.url()).set("/routes", json!(routes));
    for (_, _, _, env, secret, _) in connectors() {
        builder = builder.env(env, &secret);
    }
    if !permit_all {
        builder = builder.without_policy("e2e-permit-all.cedar");
    }
    for (name, text) in policies {
        builder = builder.policy(name, text);
    }
    let warden = builder.start().await.expect("warden starts");
    let token = warden.token(AGENT).await.expect("token");
    fake.forbid(&token);
    (fake, warden, token)
}

async fn send(
    warden: &Warden,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = warden
        .http()
        .request(method, warden.url(path))
        .bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Sends `method path` exactly as written (no client-side path resolution) with an empty JSON
/// body and `extra` header lines; the status and the JSON answer.
async fn raw(warden: &Warden, token: &str, method: &str, path: &str, extra: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let base = warden.url("");
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n{extra}\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn decision(warden: &Warden, action: &str) -> Value {
    warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["action"] == action
        })
        .await
        .expect("decision record")
}

#[tokio::test]
async fn representative_operations_of_every_connector_reach_the_api_with_its_credential_only() {
    let (fake, warden, token) = start(&[], true).await;
    // (method, path through Warden, body, action, path the API must see)
    let cases: Vec<(&str, &str, Option<Value>, &str, &str)> = vec![
        (
            "POST",
            "/github/repos/acme/app/issues",
            Some(json!({"title": "bug"})),
            "github:issues.create",
            "/github/repos/acme/app/issues",
        ),
        (
            "GET",
            "/github/repos/acme/app",
            None,
            "github:repos.get",
            "/github/repos/acme/app",
        ),
        // Literals in any case and a trailing slash reach the operation as the connector
        // spells it.
        (
            "GET",
            "/github/REPOS/acme/app/",
            None,
            "github:repos.get",
            "/github/repos/acme/app",
        ),
        (
            "GET",
            "/github/repos/acme/app/git/ref/heads/feature/x",
            None,
            "github:git.get-ref",
            "/github/repos/acme/app/git/ref/heads/feature/x",
        ),
        (
            "POST",
            "/slack/chat.postMessage",
            Some(json!({"channel": "C1", "text": "hi"})),
            "slack:chat.postMessage",
            "/slack/api/chat.postMessage",
        ),
        (
            "GET",
            "/slack/conversations.history?channel=C1",
            None,
            "slack:conversations.history",
            "/slack/api/conversations.history?channel=C1",
        ),
        (
            "GET",
            "/google/gmail/v1/users/me/messages?q=is:unread",
            None,
            "google-workspace:gmail.users.messages.list",
            "/google/gmail/v1/users/me/messages?q=is:unread",
        ),
        (
            "POST",
            "/google/calendar/v3/calendars/primary/events",
            Some(json!({"attendees": [{"email": "a@acme.test"}]})),
            "google-workspace:calendar.events.insert",
            "/google/calendar/v3/calendars/primary/events",
        ),
        (
            "GET",
            "/google/drive/v3/files/f1",
            None,
            "google-workspace:drive.files.get",
            "/google/drive/v3/files/f1",
        ),
        (
            "POST",
            "/graph/me/sendMail",
            Some(
                json!({"message": {"toRecipients": [{"emailAddress": {"address": "b@acme.test"}}]}}),
            ),
            "microsoft-graph:me.sendMail",
            "/graph/v1.0/me/sendMail",
        ),
        (
            "GET",
            "/graph/me/events",
            None,
            "microsoft-graph:me.events.list",
            "/graph/v1.0/me/events",
        ),
        (
            "GET",
            "/graph/me/drive/root/children",
            None,
            "microsoft-graph:me.drive.root.children",
            "/graph/v1.0/me/drive/root/children",
        ),
        (
            "GET",
            "/jira/rest/api/3/issue/ABC-1",
            None,
            "jira:issue.get",
            "/jira/rest/api/3/issue/ABC-1",
        ),
        (
            "POST",
            "/jira/rest/api/3/issue",
            Some(json!({"fields": {"project": {"key": "ABC"}, "issuetype": {"name": "Bug"}}})),
            "jira:issue.create",
            "/jira/rest/api/3/issue",
        ),
        (
            "GET",
            "/salesforce/services/data/v62.0/query?q=SELECT+Id+FROM+Account",
            None,
            "salesforce:query",
            "/salesforce/services/data/v62.0/query?q=SELECT+Id+FROM+Account",
        ),
        (
            "PATCH",
            "/salesforce/services/data/v62.0/sobjects/Account/001xx",
            Some(json!({"Name": "Acme"})),
            "salesforce:record.update",
            "/salesforce/services/data/v62.0/sobjects/Account/001xx",
        ),
    ];
    for (i, (method, path, body, action, seen)) in cases.into_iter().enumerate() {
        let with_body = body.is_some();
        let (status, answer) = send(&warden, &token, method, path, body).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
        let requests = fake.requests();
        assert_eq!(requests.len(), i + 1, "{method} {path}");
        let last = &requests[i];
        assert!(
            last.accepted,
            "{method} {path}: the API refused it: {answer}"
        );
        assert_eq!((last.method.as_str(), last.path.as_str()), (method, seen));
        let record = decision(&warden, action).await;
        assert_eq!(record["decision"], "allow", "{record}");
        assert_eq!(
            record["content_digest"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:")),
            with_body,
            "a body is recorded as its digest: {record}"
        );
    }
}

const REPO_POLICY: &str = r#"
@id("github-issues-in-app-only")
@reason("agents may open issues only in acme/app")
permit (principal, action == Action::"github:issues.create", resource in Api::"github")
when { resource.hasTag("repo") && resource.getTag("repo") == "app" };

@id("slack-post")
permit (principal, action == Action::"slack:chat.postMessage", resource in Api::"slack");

@id("slack-not-in-the-secret-channel")
@reason("agents may not post in the secret channel")
forbid (principal, action == Action::"slack:chat.postMessage", resource)
when { context.fields has channel && context.fields.channel == "C-SECRET" };
"#;

#[tokio::test]
async fn an_operation_is_allowed_on_one_repository_and_denied_on_another() {
    let (fake, warden, token) = start(&[("rest.cedar", REPO_POLICY)], false).await;
    let issue = Some(json!({"title": "bug"}));
    let (status, _) = send(
        &warden,
        &token,
        "POST",
        "/github/repos/acme/app/issues",
        issue.clone(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = send(
        &warden,
        &token,
        "POST",
        "/github/repos/acme/payroll/issues",
        issue,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "request_denied", "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    let id = answer["error"]["decision_id"].as_str().unwrap_or_default();
    assert!(
        message.contains("no policy permits github:issues.create")
            && message.contains(id)
            && !id.is_empty(),
        "the refusal says why and names its decision: {answer}"
    );
    assert_eq!(
        fake.requests().len(),
        1,
        "the denied request never reached the API"
    );
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["decision"] == "deny"
        })
        .await
        .expect("deny record");
    assert_eq!(
        record["resource"], r#"Operation::"github/issues.create""#,
        "{record}"
    );
    assert_eq!(record["decision_id"], id);

    // A field decides too: the same operation, another channel.
    let post = |channel: &str| Some(json!({"channel": channel, "text": "hello"}));
    let (status, _) = send(
        &warden,
        &token,
        "POST",
        "/slack/chat.postMessage",
        post("C1"),
    )
    .await;
    assert_eq!(status, 200);
    let (status, answer) = send(
        &warden,
        &token,
        "POST",
        "/slack/chat.postMessage",
        post("C-SECRET"),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("agents may not post in the secret channel")),
        "{answer}"
    );
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn an_unknown_operation_is_denied_and_a_disguised_path_refused() {
    let (fake, warden, token) = start(&[("rest.cedar", REPO_POLICY)], false).await;
    let (status, answer) = send(&warden, &token, "GET", "/github/internal/admin/keys", None).await;
    assert_eq!(status, 403, "{answer}");
    let record = decision(&warden, "http:request").await;
    assert_eq!(record["resource"], r#"Api::"github""#, "{record}");
    assert_eq!(record["decision"], "deny", "{record}");
    // A path that walks from an allowed operation to another one is refused before policy.
    // (Sent as written: an HTTP client library would resolve the dot segments itself.)
    for path in [
        "/github/repos/acme/app/issues/..%2f..%2fpayroll/issues",
        "/github/repos/acme/app/%2e%2E/payroll/issues",
        "/github/repos/acme//payroll/issues",
    ] {
        let (status, answer) = raw(&warden, &token, "POST", path, "").await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_path", "{path}: {answer}");
    }
    // A method override would make the API run another operation than the one judged.
    let (status, answer) = raw(
        &warden,
        &token,
        "POST",
        "/github/repos/acme/app/issues",
        "x-http-method-override: DELETE\r\n",
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "method_override", "{answer}");
    assert!(fake.requests().is_empty(), "nothing reached the API");
}

#[tokio::test]
async fn the_github_connector_is_what_import_makes_of_the_published_description() {
    let spec = paths::tests_dir()
        .join("connectors/node_modules/@octokit/openapi/generated/api.github.com.json");
    assert!(
        spec.is_file(),
        "{} is missing: run tests/run (it installs tests/connectors)",
        spec.display()
    );
    let mut cmd = tokio::process::Command::new(paths::warden_bin());
    cmd.args(["connector", "import-openapi", "--name", "github"])
        .args(["--fold-case", GITHUB_FOLD_CASE])
        .arg(&spec);
    let out = run_bounded(cmd, Duration::from_secs(60))
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(paths::repo_root().join("connectors/github.yaml"))
        .expect("committed connector");
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "connectors/github.yaml is not what import makes of {}: regenerate it (docs/tools.md)",
        spec.display()
    );
    let operations = committed.lines().filter(|l| l.starts_with("  - {")).count();
    assert!(
        operations > 900,
        "every GitHub operation, found {operations}"
    );
}

#[tokio::test]
async fn check_reports_a_bad_connector_with_file_line_and_key() {
    let fake = FakeRest::start(Vec::new(), Vec::new())
        .await
        .expect("double");
    let setup = WardenBuilder::with_upstream_url(&fake.url())
        .set("/routes", json!([]))
        .set("/connectors_dir", json!("CONNECTORS"))
        .write()
        .expect("setup");
    let dir = setup.dir.path().join("connectors");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("acme.yaml"),
        "name: acme\nprotocol: rest\nprovider: acme\nbase_url: https://api.acme.test\n\
         operations:\n  - { action: items.list, method: GET, path: /items }\n\
         \x20 - { action: items.get, method: GET, path: \"/items/{id}/../x\" }\n",
    )
    .expect("write");
    let config = std::fs::read_to_string(&setup.config_path)
        .expect("config")
        .replace(
            "\"CONNECTORS\"",
            &serde_json::to_string(&dir).expect("path"),
        );
    std::fs::write(&setup.config_path, config).expect("config");
    let mut cmd = setup.command();
    cmd.args(["check", "--config"]).arg(&setup.config_path);
    let out = run_bounded(cmd, Duration::from_secs(30))
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("acme.yaml:7: operations[1].path:"),
        "file, line and key: {stderr}"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// `POST path` with `body` as sent (`content_type`, and `Content-Encoding: encoding` if any).
async fn post_raw(
    warden: &Warden,
    token: &str,
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = warden
        .http()
        .post(warden.url(path))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body);
    if let Some(encoding) = encoding {
        req = req.header("content-encoding", encoding);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_compressed_body_is_judged_and_sent_decoded_and_a_bomb_or_unknown_coding_refused() {
    let (fake, warden, token) = start(&[("rest.cedar", REPO_POLICY)], false).await;
    let json_type = "application/json";
    let secret = gzip(br#"{"channel":"C-SECRET","text":"hello"}"#);
    let (status, answer) = post_raw(
        &warden,
        &token,
        "/slack/chat.postMessage",
        json_type,
        Some("gzip"),
        secret,
    )
    .await;
    assert_eq!(
        status, 403,
        "the field is read in the decoded body: {answer}"
    );
    let (status, answer) = post_raw(
        &warden,
        &token,
        "/slack/chat.postMessage",
        json_type,
        Some("gzip"),
        gzip(br#"{"channel":"C1","text":"hello"}"#),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "only the allowed call reached the API");
    assert_eq!(
        &requests[0].body[..],
        br#"{"channel":"C1","text":"hello"}"#,
        "sent as judged: decoded"
    );
    assert!(!requests[0].headers.contains_key("content-encoding"));

    let (status, answer) = post_raw(
        &warden,
        &token,
        "/slack/chat.postMessage",
        json_type,
        Some("compress"),
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["error"]["code"], "unsupported_content_encoding");
    // 64 MiB of spaces in a JSON body: far past limits.max_request_bytes once decoded.
    let mut bomb = b"{\"channel\":\"C1\",\"text\":\"".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 64 << 20));
    bomb.extend_from_slice(b"\"}");
    let (status, answer) = post_raw(
        &warden,
        &token,
        "/slack/chat.postMessage",
        json_type,
        Some("gzip"),
        gzip(&bomb),
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.max_request_bytes")),
        "{answer}"
    );
    assert_eq!(fake.requests().len(), 1, "nothing refused reached the API");
}

const NO_SECRETS: &str = r#"
@id("no-credentials-out")
@reason("a credential may not leave in a request")
forbid (principal, action, resource)
when { context.findings.contains("aws_access_key") };
"#;

#[tokio::test]
async fn a_secret_in_a_rest_url_or_header_is_found_and_the_path_kept_out_of_the_record() {
    let (fake, warden, token) = start(&[("dlp.cedar", NO_SECRETS)], true).await;
    let key = "AKIAIOSFODNN7EXAMPLE";
    for (path, header) in [
        // In a parameter kept as sent, and in ones the connector lower-cases (`owner`,
        // `repo`): read as the agent sent them, the key is found before folding hides it.
        (format!("/github/repos/acme/app/contents/{key}"), None),
        (format!("/github/repos/acme/{key}"), None),
        (format!("/github/repos/{key}/app/issues"), None),
        (format!("/github/repos/acme/app?note=k%3D{key}"), None),
        ("/github/repos/acme/app".to_owned(), Some(("x-note", key))),
        (
            "/github/repos/acme/app".to_owned(),
            Some(("cookie", &*format!("session={key}"))),
        ),
    ] {
        let mut req = warden.http().get(warden.url(&path)).bearer_auth(&token);
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), 403, "{path} {header:?}");
    }
    assert!(fake.requests().is_empty(), "no secret reached the API");
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision"
                && r["decision"] == "deny"
                && r.to_string().contains("\"url, byte")
        })
        .await
        .expect("a deny found in the url");
    let text = record.to_string();
    assert!(!text.contains(key), "never the secret: {record}");
    assert!(text.contains("withheld"), "the path is withheld: {record}");
    // The agent's own Warden credential is no finding, and the call goes on.
    let (status, answer) = send(&warden, &token, "GET", "/github/repos/acme/app", None).await;
    assert_eq!(status, 200, "{answer}");
}

const NO_PAYROLL: &str = r#"
@id("github-no-payroll")
@reason("the payroll repository is off limits to agents")
forbid (principal, action, resource in Api::"github")
when { resource.hasTag("repo") && resource.getTag("repo") == "payroll" };
"#;

#[tokio::test]
async fn github_names_are_judged_and_sent_in_lower_case_and_look_alikes_as_judged() {
    let (fake, warden, token) = start(&[("payroll.cedar", NO_PAYROLL)], true).await;
    for path in [
        "/github/repos/acme/payroll",
        "/github/repos/acme/PAYROLL",
        "/github/repos/Acme/PayRoll/issues",
        "/github/repos/acme/pa%D1%83roll",
    ] {
        let (status, answer) = raw(&warden, &token, "GET", path, "").await;
        assert_eq!(status, 403, "{path}: {answer}");
    }
    assert!(fake.requests().is_empty(), "no spelling reached payroll");
    // What was judged is what the API receives: folded, look-alikes as what they imitate.
    for (path, seen) in [
        ("/github/repos/Acme/App", "/github/repos/acme/app"),
        ("/github/repos/acme/%D0%B0pp", "/github/repos/acme/app"),
    ] {
        let (status, answer) = raw(&warden, &token, "GET", path, "").await;
        assert_eq!(status, 200, "{path}: {answer}");
        let requests = fake.requests();
        assert_eq!(
            requests.last().map(|r| r.path.as_str()),
            Some(seen),
            "{path}"
        );
    }
    // A look-alike of `/` would reach another path as judged: refused.
    let (status, answer) = raw(&warden, &token, "GET", "/github/repos/acme/a%EF%BC%8Fb", "").await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_identifier", "{answer}");
}

#[tokio::test]
async fn a_nested_form_field_is_read_as_the_api_reads_it() {
    let (fake, warden, token) = start(&[("rest.cedar", REPO_POLICY)], false).await;
    let form = "application/x-www-form-urlencoded";
    // Read as absent before: the forbid on the secret channel did not see it.
    for body in ["channel[]=C-SECRET&text=hi", "channel[x]=C-SECRET&text=hi"] {
        let (status, answer) = post_raw(
            &warden,
            &token,
            "/slack/chat.postMessage",
            form,
            None,
            body.into(),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_field", "{body}: {answer}");
    }
    let (status, answer) = post_raw(
        &warden,
        &token,
        "/slack/chat.postMessage",
        form,
        None,
        b"channel=C-SECRET&text=hi".to_vec(),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_method_key_in_a_read_body_is_refused() {
    let (fake, warden, token) = start(&[("rest.cedar", REPO_POLICY)], false).await;
    let form = "application/x-www-form-urlencoded";
    // Rails, Laravel and Symfony take a body's `_method` for the method: a permitted post
    // could run as a DELETE the policy never judged.
    for (content_type, body) in [
        (form, "channel=C1&text=hi&_method=DELETE"),
        (form, "channel=C1&text=hi&.method=DELETE"),
        (
            "application/json",
            r#"{"channel":"C1","text":"hi","_method":"DELETE"}"#,
        ),
    ] {
        let (status, answer) = post_raw(
            &warden,
            &token,
            "/slack/chat.postMessage",
            content_type,
            None,
            body.into(),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(
            answer["error"]["code"], "method_override",
            "{body}: {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("_method") || m.contains(".method")),
            "the refusal names the key: {answer}"
        );
    }
    assert!(fake.requests().is_empty(), "nothing reached the API");
    let (status, answer) = post_raw(
        &warden,
        &token,
        "/slack/chat.postMessage",
        form,
        None,
        b"channel=C1&text=hi".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(fake.requests().len(), 1);
}

const ISSUES_NEED_APPROVAL: &str = r#"
@id("issues-need-sre")
@reason("opening an issue needs an SRE")
@approval("required")
@approvers("Group::\"sre\"")
permit (principal, action == Action::"github:issues.create", resource in Api::"github");
"#;

/// The id of the approval `body` (a REST call that needs one) opens on `warden`.
async fn held_issue(warden: &Warden, token: &str, body: Value) -> String {
    let (status, answer) = send(
        warden,
        token,
        "POST",
        "/github/repos/acme/app/issues",
        Some(body),
    )
    .await;
    assert_ne!(status, 200, "held: {answer}");
    warden_e2e::operator::first_pending(warden)
        .await
        .expect("a pending approval")
}

#[tokio::test]
async fn approvers_see_a_held_rest_calls_body_masked_only_when_content_is_kept() {
    let body = json!({"title": "rotate", "body": "the key is AKIAIOSFODNN7EXAMPLE"});
    for record_content in [true, false] {
        let fake = FakeRest::start(Vec::new(), Vec::new())
            .await
            .expect("double");
        let route = json!([{"prefix": "/github", "connector": "github",
            "upstream": format!("{}/github", fake.url()), "credential": {"env": "E2E_GITHUB_TOKEN"}}]);
        let warden = WardenBuilder::with_upstream_url(&fake.url())
            .set("/routes", route)
            .env("E2E_GITHUB_TOKEN", "ghp-e2e")
            .without_policy("e2e-permit-all.cedar")
            .policy("approval.cedar", ISSUES_NEED_APPROVAL)
            .set("/audit/record_content", json!(record_content))
            .set(
                "/approvals",
                json!({"mode": "pending", "console_url": "https://warden.example.com",
                       "operators": [{"subject": "alice", "groups": ["sre"]}]}),
            )
            .start()
            .await
            .expect("warden starts");
        let token = warden.token(AGENT).await.expect("token");
        let id = held_issue(&warden, &token, body.clone()).await;
        let out = warden.cli(&["approvals", "show", &id]).await.expect("show");
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{shown}");
        assert!(
            !shown.contains("AKIAIOSFODNN7EXAMPLE"),
            "never the secret: {shown}"
        );
        assert_eq!(
            shown.contains("rotate"),
            record_content,
            "the body is shown only with audit.record_content: {shown}"
        );
        if record_content {
            assert!(shown.contains("[REDACTED:aws_access_key]"), "{shown}");
        }
    }
}

/// A chat API whose channel names are case-insensitive: the connector folds `channel` (a body
/// field of one operation, a query field of another) and the `{team}` path parameter.
const CHAT_CONNECTOR: &str = r#"name: chat
protocol: rest
provider: chat
base_url: https://chat.acme.test/api
credential: { header: authorization, format: "Bearer {secret}" }
fold_case: [team, channel]
operations:
  - { action: messages.post, method: POST, path: "/teams/{team}/messages", fields: { channel: body.channel, text: body.text } }
  - { action: history.get, method: GET, path: "/teams/{team}/history", fields: { channel: query.channel } }
"#;

/// Agents may post and read in `general` only.
const GENERAL_ONLY: &str = r#"
@id("chat-general-only")
permit (principal, action in [Action::"chat:messages.post", Action::"chat:history.get"], resource)
when { context.fields has channel && context.fields.channel == "general" };
"#;

/// The double under `/chat` and Warden with a route of [`CHAT_CONNECTOR`] (from a connectors
/// directory of its own), `policies` only; an agent token.
async fn start_chat(policies: &[(&str, &str)]) -> (FakeRest, Warden, String, tempfile::TempDir) {
    let fake = FakeRest::start(
        vec![Credential {
            base: "/chat".into(),
            header: "authorization".into(),
            value: "Bearer chat-e2e-token".into(),
        }],
        Vec::new(),
    )
    .await
    .expect("double");
    let dir = tempfile::tempdir().expect("connectors dir");
    std::fs::write(dir.path().join("chat.yaml"), CHAT_CONNECTOR).expect("connector");
    let route = json!({"prefix": "/chat", "connector": "chat",
                       "upstream": format!("{}/chat", fake.url()),
                       "credential": {"env": "E2E_CHAT_TOKEN"}});
    let mut builder = WardenBuilder::with_upstream_url(&fake.url())
        .set("/routes", json!([route]))
        .set("/connectors_dir", json!(dir.path()))
        .env("E2E_CHAT_TOKEN", "chat-e2e-token")
        .without_policy("e2e-permit-all.cedar");
    for (name, text) in policies {
        builder = builder.policy(name, text);
    }
    let warden = builder.start().await.expect("warden starts");
    let token = warden.token(AGENT).await.expect("token");
    fake.forbid(&token);
    (fake, warden, token, dir)
}

#[tokio::test]
async fn fold_case_fields_in_a_body_or_query_are_judged_and_sent_in_lower_case() {
    let (fake, warden, token, _dir) = start_chat(&[("chat.cedar", GENERAL_ONLY)]).await;
    let json_type = "application/json";
    let form = "application/x-www-form-urlencoded";
    // `GENERAL`, `General`, and `gеneral` with a Cyrillic е are `general` to the API, so to
    // policy; they are sent as judged, whatever else the body holds kept as it came.
    for (content_type, body, sent) in [
        (
            json_type,
            r#"{"channel":"GENERAL","text":"Deploy DONE"}"#,
            r#"{"channel":"general","text":"Deploy DONE"}"#,
        ),
        (
            form,
            "channel=General&text=Deploy+DONE",
            "channel=general&text=Deploy+DONE",
        ),
        (
            json_type,
            "{\"text\":\"Hi\",\"channel\":\"g\u{0435}neral\"}",
            r#"{"text":"Hi","channel":"general"}"#,
        ),
    ] {
        let (status, answer) = post_raw(
            &warden,
            &token,
            "/chat/teams/Acme/messages",
            content_type,
            None,
            body.as_bytes().to_vec(),
        )
        .await;
        assert_eq!(status, 200, "{body}: {answer}");
        let seen = fake.requests().pop().expect("reached the API");
        assert_eq!(seen.path, "/chat/teams/acme/messages", "{body}");
        assert_eq!(String::from_utf8_lossy(&seen.body), sent, "{body}");
    }
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r.to_string().contains("field channel")
        })
        .await
        .expect("the look-alike reported");
    assert!(
        record["findings"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["detector"] == "lookalike_identifier")),
        "{record}"
    );
    // In the query: judged and sent folded, the rest of the query as it came.
    let (status, answer) = raw(
        &warden,
        &token,
        "GET",
        "/chat/teams/ACME/history?channel=GENERAL&cursor=AbC",
        "",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let seen = fake.requests().pop().expect("reached the API");
    assert_eq!(
        seen.path,
        "/chat/teams/acme/history?channel=general&cursor=AbC"
    );
    // Another channel in any spelling is denied; a channel hidden with invisible characters
    // is refused before policy, as a path parameter would be.
    let before = fake.requests().len();
    for (body, refused, code) in [
        (r#"{"channel":"RANDOM"}"#, 403, "request_denied"),
        (r#"{"channel":"gen\u200beral"}"#, 400, "invalid_identifier"),
    ] {
        let body = body.as_bytes().to_vec();
        let path = "/chat/teams/acme/messages";
        let (status, answer) = post_raw(&warden, &token, path, json_type, None, body).await;
        assert_eq!(status, refused, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
    }
    assert_eq!(
        fake.requests().len(),
        before,
        "nothing refused reached the API"
    );
}

#[tokio::test]
async fn a_field_key_in_another_case_is_refused_not_read_as_absent() {
    let graph = include_str!("../../policies/examples/rest-microsoft-graph.cedar");
    let (fake, warden, token) = start(&[("graph.cedar", graph)], false).await;
    let oncall = json!({"emailAddress": {"address": "oncall@acme.test"}});
    // Read as absent before: graph-no-cc saw no cc, graph-send-to-oncall no outside address;
    // Graph (and any case-insensitive reader) mails the attacker.
    for (message, key) in [
        (
            json!({"toRecipients": [oncall],
                   "CcRecipients": [{"emailAddress": {"address": "attacker@evil.example"}}]}),
            "CcRecipients",
        ),
        (
            json!({"toRecipients": [oncall,
                   {"emailAddress": {"Address": "attacker@evil.example"}}]}),
            "Address",
        ),
    ] {
        let (status, answer) = send(
            &warden,
            &token,
            "POST",
            "/graph/me/sendMail",
            Some(json!({ "message": message })),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "folded_key", "{answer}");
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(key), "{answer}");
    }
    assert!(fake.requests().is_empty());
    // Spelled as declared, the same mail is judged: allowed to on-call only.
    let (status, answer) = send(
        &warden,
        &token,
        "POST",
        "/graph/me/sendMail",
        Some(json!({"message": {"toRecipients": [oncall]}})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(fake.requests().len(), 1);
}
