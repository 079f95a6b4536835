//! The `warden` command line on files: `check` points at file, line and key; `policy validate`
//! names the bad policy file; a correct setup checks clean.

use std::time::Duration;
use warden_e2e::fake_llm::FakeLlm;
use warden_e2e::warden::{WardenBuilder, run_bounded};

async fn warden(
    args: &[&str],
    config: &std::path::Path,
    builder_env: &warden_e2e::warden::Prepared,
) -> std::process::Output {
    let mut cmd = builder_env.command();
    cmd.args(args).arg(config);
    run_bounded(cmd, Duration::from_secs(30)).await.unwrap()
}

#[tokio::test]
async fn check_accepts_a_correct_configuration() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let out = warden(&["check", "--config"], &setup.config_path, &setup).await;
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn check_reports_each_bad_config_with_file_line_and_key() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let head = format!(
        "data_dir: {}\nlisten:\n  proxy: 127.0.0.1:18080\n  admin: 127.0.0.1:19090\npolicy:\n  dir: {}\n",
        setup.data_dir.display(),
        setup.policy_dir.display()
    );
    // (text after the 6 head lines, expected line, expected key)
    let cases = [
        (
            "limits:\n  max_request_bytes: lots\n",
            8,
            "limits.max_request_bytes",
        ),
        ("listne:\n  proxy: 127.0.0.1:1\n", 7, "listne"),
        (
            "routes:\n  - prefix: /openai\n    connector: opneai\n    upstream: http://127.0.0.1:9/v1\n    credential: { env: FAKE_OPENAI_KEY }\n",
            9,
            "routes[0].connector",
        ),
    ];
    for (tail, line, key) in cases {
        let path = setup.dir.path().join("bad.yaml");
        std::fs::write(&path, format!("{head}{tail}")).unwrap();
        let out = warden(&["check", "--config"], &path, &setup).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a bad config must fail the check: {key}"
        );
        let expected = format!("{}:{line}: {key}:", path.display());
        assert!(
            stderr.contains(&expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
}

/// A misspelt key is named at its file, line and key with the known key it most likely
/// meant: a section, a key inside one, a key inside a route.
#[tokio::test]
async fn check_says_which_known_key_a_misspelt_one_meant() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let path = setup.dir.path().join("misspelt.yaml");
    std::fs::write(
        &path,
        format!(
            "data_dir: {}\nlistne:\n  proxy: 127.0.0.1:18080\nlimits:\n  max_request_byte: 1024\n\
             routes:\n  - prefix: /openai\n    connector: openai\n    upstream: http://127.0.0.1:9/v1\n\
             \x20   Credential: {{ env: FAKE_OPENAI_KEY }}\n",
            setup.data_dir.display()
        ),
    )
    .unwrap();
    let out = warden(&["check", "--config"], &path, &setup).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let file = path.display();
    for said in [
        format!("{file}:2: listne: unknown section (did you mean `listen`?)"),
        format!(
            "{file}:5: limits.max_request_byte: unknown field `max_request_byte` (did you mean \
             `max_request_bytes`?)"
        ),
        format!(
            "{file}:10: routes[0].Credential: unknown field `Credential` (did you mean \
             `credential`?)"
        ),
    ] {
        assert!(stderr.contains(&said), "{said:?} not in:\n{stderr}");
    }
}

/// A misspelt secret source (`enf:` for `env:`) is named at its file, line and key, with
/// what a source is and the key it most likely meant, and never the key as written (it may be
/// the secret itself): the same by `warden check` and by `warden serve`, which does not start.
/// A misspelt connector is told the nearest one alike.
#[tokio::test]
async fn check_and_serve_say_which_secret_source_a_misspelt_one_meant() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let path = setup.dir.path().join("misspelt-source.yaml");
    std::fs::write(
        &path,
        format!(
            "data_dir: {}\npolicy:\n  dir: {}\nroutes:\n  - prefix: /openai\n    connector: openai\n\
             \x20   upstream: http://127.0.0.1:9/v1\n    credential: {{ enf: FAKE_OPENAI_KEY }}\n\
             \x20 - prefix: /anthropic\n    connector: antropic\n    credential: {{ env: K }}\n",
            setup.data_dir.display(),
            setup.policy_dir.display()
        ),
    )
    .unwrap();
    let file = path.display();
    let source = format!(
        "{file}:8: routes[0].credential: expected a secret source: {{ env: NAME }}, {{ file: PATH }} \
         or {{ vault: {{ kv: ... }} }}, found a mapping whose key is none of env, file, vault (did \
         you mean `env`?) (the key is not shown: it may be the secret itself; keep secrets out of \
         the configuration and name where Warden reads them)\n"
    );
    let connector = format!(
        "{file}:10: routes[1].connector: unknown connector \"antropic\" (did you mean \
         `anthropic`?); known: "
    );
    let out = warden(&["check", "--config"], &path, &setup).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for said in [&source, &connector] {
        assert!(stderr.contains(said.as_str()), "{said:?} not in:\n{stderr}");
    }
    assert!(
        !stderr.contains("`enf`") && !stderr.contains("enf:"),
        "{stderr}"
    );

    let mut serve = setup.command();
    serve.arg("serve").arg("--config").arg(&path);
    let out = run_bounded(serve, Duration::from_secs(30)).await.unwrap();
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{output}");
    assert!(output.contains(&source), "{source:?} not in:\n{output}");
    assert!(
        !output.contains("`enf`") && !output.contains("enf:"),
        "{output}"
    );
}

#[tokio::test]
async fn policy_validate_names_the_invalid_policy_file() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake)
        .policy(
            "e2e-broken.cedar",
            "forbid (principal, action, resource) when { context.nope > };\n",
        )
        .write()
        .unwrap();
    let mut cmd = setup.command();
    cmd.args(["policy", "validate"]).arg(&setup.policy_dir);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("e2e-broken.cedar"), "{report}");

    std::fs::remove_file(setup.policy_dir.join("e2e-broken.cedar")).unwrap();
    let mut cmd = setup.command();
    cmd.args(["policy", "validate"]).arg(&setup.policy_dir);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn serve_refuses_to_start_on_an_invalid_policy_set() {
    let fake = FakeLlm::start().await.unwrap();
    let mut warden = WardenBuilder::new(&fake)
        .policy(
            "e2e-broken.cedar",
            "permit (principal, action, resource) when {",
        )
        .write()
        .unwrap()
        .spawn()
        .unwrap();
    let status = warden.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(!status.success());
    assert!(
        warden.output().contains("e2e-broken.cedar"),
        "{}",
        warden.output()
    );
}

/// A route whose connector sends a credential and that names none stops `serve` as it fails
/// `warden check`, with the same message.
#[tokio::test]
async fn serve_refuses_to_start_with_a_route_that_names_no_credential() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake)
        .set(
            "/routes",
            serde_json::json!([{"name": "keyless", "prefix": "/keyless", "connector": "openai",
                                "upstream": format!("{}/v1", fake.url())}]),
        )
        .write()
        .unwrap();
    let said = "route \"keyless\" has no upstream credential configured";
    let out = warden(&["check", "--config"], &setup.config_path, &setup).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(said));
    let mut warden = setup.spawn().unwrap();
    let status = warden.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(!status.success());
    let output = warden.output();
    assert!(
        output.contains("routes[0]") && output.contains(said),
        "{output}"
    );
}

/// `sslmode=verify-ca` checks no host name, so it trusts `state.postgres.tls.ca_file` alone:
/// without one, `warden check` and `warden serve` refuse it at that key, before connecting.
#[tokio::test]
async fn verify_ca_without_a_ca_file_is_refused_by_check_and_at_start() {
    let fake = FakeLlm::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("state-url");
    std::fs::write(
        &url,
        "postgres://warden:hunter2@127.0.0.1:1/warden?sslmode=verify-ca\n",
    )
    .unwrap();
    let setup = WardenBuilder::new(&fake)
        .set(
            "/state",
            serde_json::json!({"postgres": {"url": {"file": url}}}),
        )
        .write()
        .unwrap();
    let said = "state.postgres.tls.ca_file: state.postgres.url asks for sslmode=verify-ca";
    let out = warden(&["check", "--config"], &setup.config_path, &setup).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(said), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    let mut warden = setup.spawn().unwrap();
    let status = warden.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(!status.success());
    let output = warden.output();
    assert!(output.contains(said), "{output}");
    assert!(!output.contains("hunter2"), "{output}");
}

const CASES_OK: &str = r#"
cases:
  - name: mini is allowed
    principal: { id: ci-bot }
    action: llm:chat
    resource: { provider: openai, model: gpt-4o-mini }
    expect: allow
"#;

const CASES_WRONG: &str = r#"
cases:
  - name: e2e-expects-the-wrong-verdict
    principal: { id: ci-bot }
    action: llm:chat
    resource: { provider: openai, model: gpt-4o-mini }
    expect: deny
"#;

#[tokio::test]
async fn policy_test_exits_non_zero_and_names_the_case_on_a_mismatch() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let tests_dir = setup.policy_dir.join("tests");
    std::fs::create_dir_all(&tests_dir).unwrap();
    std::fs::write(tests_dir.join("cases.yaml"), CASES_OK).unwrap();
    let policy_test = || {
        let mut cmd = setup.command();
        cmd.args(["policy", "test"]).arg(&setup.policy_dir);
        run_bounded(cmd, Duration::from_secs(30))
    };
    let out = policy_test().await.unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("mini is allowed"), "{report}");

    std::fs::write(tests_dir.join("wrong.yaml"), CASES_WRONG).unwrap();
    let out = policy_test().await.unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("e2e-expects-the-wrong-verdict"),
        "names the failing case: {report}"
    );
}

#[tokio::test]
async fn repository_policy_pack_passes_its_own_tests() {
    let mut cmd = tokio::process::Command::new(warden_e2e::paths::warden_bin());
    cmd.args(["policy", "test"])
        .arg(warden_e2e::paths::repo_root().join("policies"));
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn issued_token_claims_reach_policies_as_principal_attributes() {
    let fake = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&fake)
        .policy(
            "e2e-billing.cedar",
            r#"
@id("e2e-billing-no-gpt41")
@reason("the billing fleet may not use gpt-4.1")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1")
when { principal has fleet && principal.fleet == "billing" };
"#,
        )
        .start()
        .await
        .unwrap();
    let billing = warden
        .token_with("billing-bot", "10m", &[("fleet", "billing")])
        .await
        .unwrap();
    let search = warden
        .token_with("search-bot", "10m", &[("fleet", "search")])
        .await
        .unwrap();
    let chat = |token: String| {
        let w = &warden;
        async move {
            let r = w
                .http()
                .post(w.url("/openai/chat/completions"))
                .bearer_auth(token)
                .json(&serde_json::json!({"model": "gpt-4.1",
                    "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            r.headers()
                .get("x-warden-decision")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(chat(billing).await.as_deref(), Some("deny"));
    assert_eq!(chat(search).await, None, "other fleets are allowed");
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["kind"] == "decision" && r["decision"] == "deny"
        })
        .await
        .unwrap();
    assert_eq!(record["principal"]["id"], "billing-bot");
    assert_eq!(record["policies"][0], "e2e-billing-no-gpt41");
}

#[tokio::test]
async fn token_issue_refuses_a_malformed_claim_and_says_which() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let mut cmd = setup.command();
    cmd.args(["token", "issue", "--agent", "a", "--claim", "fleet"])
        .arg("--config")
        .arg(&setup.config_path);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--claim \"fleet\""), "{stderr}");
}

/// `warden serve` with no configuration, in a directory holding only `policies/`: the
/// embedded defaults (loopback 8080 and 9090, state under ./warden-data).
#[tokio::test]
async fn serve_without_a_config_runs_on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let repo = warden_e2e::paths::repo_root().join("policies");
    for entry in std::fs::read_dir(&repo).unwrap().flatten() {
        if entry.path().is_file() {
            std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
        }
    }
    let mut cmd = tokio::process::Command::new(warden_e2e::paths::warden_bin());
    cmd.arg("serve")
        .current_dir(dir.path())
        .env_remove("WARDEN_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get("http://127.0.0.1:9090/readyz").send().await
            && r.status().is_success()
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            use tokio::io::AsyncReadExt;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .await
                .unwrap();
            panic!("warden serve exited with {status}:\n{err}");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready on 127.0.0.1:9090"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Identity is required by default: an anonymous call on 8080 is refused in OpenAI's shape.
    let response = http
        .post("http://127.0.0.1:8080/openai/chat/completions")
        .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    assert!(
        dir.path().join("warden-data/audit").is_dir(),
        "the audit log lives under ./warden-data"
    );
    let mut records = Vec::new();
    for _ in 0..100 {
        records = warden_e2e::warden::read_audit(&dir.path().join("warden-data/audit"));
        if records.iter().any(|r| r["kind"] == "rejected") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        records.iter().any(|r| r["kind"] == "rejected"),
        "the refusal is audited: {records:?}"
    );
    let _ = sigterm(&child);
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "graceful exit on SIGTERM: {status}");
}

fn sigterm(child: &tokio::process::Child) -> std::io::Result<()> {
    let pid = child.id().ok_or_else(|| std::io::Error::other("exited"))?;
    // SAFETY: kill(2) with a pid we own and a valid signal number.
    if unsafe { libc::kill(pid as i32, libc::SIGTERM) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Commands that act on a gateway's state store, pointed at a configuration no gateway has run
/// with, refuse and make nothing: a quarantine written to a new store would look done while the
/// gateway, reading its own, goes on serving the agent.
#[tokio::test]
async fn operator_commands_refuse_a_state_store_no_gateway_made() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let store = setup.data_dir.join("state.db");
    for args in [
        &["agents", "quarantine", "alice", "--reason", "incident"][..],
        &[
            "token", "revoke", "--agent", "alice", "--reason", "incident",
        ][..],
    ] {
        let mut cmd = setup.command();
        cmd.args(args).arg("--config").arg(&setup.config_path);
        let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("there is no state store at {}", store.display()))
                && stderr.contains("--config"),
            "{args:?}: {stderr}"
        );
        assert!(!store.exists(), "{args:?} made a store");
    }
}

/// `warden token issue` where no gateway has made its signing key (another directory, a
/// wrong --config) refuses to make one, saying what to do, unless told to with --create-key.
#[tokio::test]
async fn token_issue_makes_no_signing_key_unless_asked() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let key = setup.data_dir.join("keys").join("agent-signing.pem");
    let mut cmd = setup.command();
    cmd.args(["token", "issue", "--agent", "a"])
        .arg("--config")
        .arg(&setup.config_path);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "no token is printed");
    assert!(
        stderr.contains("there is no agent signing key at")
            && stderr.contains("--config")
            && stderr.contains("--create-key"),
        "{stderr}"
    );
    assert!(!key.exists(), "no key was made");

    let mut cmd = setup.command();
    cmd.args(["token", "issue", "--agent", "a", "--create-key"])
        .arg("--config")
        .arg(&setup.config_path);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(key.exists(), "the key was made on request");
    assert!(stderr.contains("created the agent signing key"), "{stderr}");
}

/// A restore that forgot `keys/`: the gateway would start with new keys (every token issued
/// before refused, the log going on under an unknown key). It refuses, naming the key the log
/// expects and what to do, and starts with new keys only when told to, which its start record
/// says.
#[tokio::test]
async fn serve_refuses_a_restore_without_its_keys_unless_told_to_accept_new_ones() {
    let fake = FakeLlm::start().await.unwrap();
    let w = WardenBuilder::new(&fake).start().await.unwrap();
    let old_kid = w.audit_records().iter().rev().find_map(|r| {
        (r["kind"] == "checkpoint").then(|| r["detail"]["key_id"].as_str().unwrap().to_owned())
    });
    let setup = w.stop_and_take_setup().await;
    let old_kid = old_kid.expect("the first run signed a checkpoint");
    let keys = setup.data_dir.join("keys");
    std::fs::remove_dir_all(&keys).unwrap();
    let data_before = files_under(&setup.data_dir);

    let mut cmd = setup.command();
    cmd.arg("serve").arg("--config").arg(&setup.config_path);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the audit key changed")
            && stderr.contains(&old_kid)
            && stderr.contains("--accept-new-keys"),
        "{stderr}"
    );
    // The refused start changed nothing on disk: no new key files to restore over, the log
    // as it was.
    assert!(!keys.exists(), "{:?}", files_under(&keys));
    assert_eq!(files_under(&setup.data_dir), data_before);

    let mut w = setup.spawn_with(&["--accept-new-keys"]).unwrap();
    w.wait_ready(Duration::from_secs(30)).await.unwrap();
    let start = w
        .wait_for_audit(Duration::from_secs(10), |r| {
            r["detail"]["event"] == "start" && r["detail"]["new_keys_accepted"].is_string()
        })
        .await
        .unwrap();
    assert!(
        start["detail"]["new_keys_accepted"]
            .as_str()
            .unwrap()
            .contains(&old_kid),
        "{start}"
    );
    assert!(start["detail"]["token_key_id"].is_string(), "{start}");
}

/// Every file and directory under `dir` (recursively), a file with its content, a directory
/// with `None` (an empty one left behind counts).
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Option<Vec<u8>>)> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.push((path.clone(), None));
                dirs.push(path);
            } else {
                files.push((path.clone(), Some(std::fs::read(&path).unwrap_or_default())));
            }
        }
    }
    files.sort();
    files
}

/// Runs `sql` on the SQLite file `db` with the `sqlite3` shell (asserted to succeed).
async fn sqlite3(db: &std::path::Path, sql: &str) {
    let mut cmd = tokio::process::Command::new("sqlite3");
    cmd.arg(db).arg(sql);
    let out = run_bounded(cmd, Duration::from_secs(30)).await.unwrap();
    assert!(out.status.success(), "sqlite3 {sql}: {out:?}");
}

/// `warden <args> --config <config>` of `setup`: the output.
async fn command(setup: &warden_e2e::warden::Prepared, args: &[&str]) -> std::process::Output {
    warden(&[args, &["--config"]].concat(), &setup.config_path, setup).await
}

/// A state store a newer Warden migrated refuses the start, and the refused start leaves the
/// data directory as it found it: no audit log begun, no key files made (nor their empty
/// directory), the store byte for byte as it was; it exits 2 naming the store, the version
/// found and what to do.
#[tokio::test]
async fn serve_refused_by_a_newer_state_store_leaves_the_data_dir_as_it_was() {
    let fake = FakeLlm::start().await.unwrap();
    // A gateway made the store; a newer Warden then migrated it past this one's schema, and
    // the data directory holds that store alone (restored without the rest).
    let w = WardenBuilder::new(&fake).start().await.unwrap();
    let setup = w.stop_and_take_setup().await;
    let store = setup.data_dir.join("state.db");
    sqlite3(&store, "PRAGMA user_version = 999").await;
    for entry in std::fs::read_dir(&setup.data_dir).unwrap().flatten() {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with("state.db") {
            match path.is_dir() {
                true => std::fs::remove_dir_all(&path).unwrap(),
                false => std::fs::remove_file(&path).unwrap(),
            }
        }
    }
    let before = files_under(&setup.data_dir);
    assert_eq!(before.len(), 1, "the store alone: {before:?}");

    let out = command(&setup, &["serve"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "the state store {} has schema version 999, newer than the",
            store.display()
        )) && stderr.contains(
            "run the Warden version that wrote it, or restore a backup taken before the upgrade"
        ),
        "{stderr}"
    );
    let after = files_under(&setup.data_dir);
    assert!(
        after == before,
        "the refused start changed the data directory: {:?}",
        after.iter().map(|(path, _)| path).collect::<Vec<_>>()
    );
}

/// `warden state migrate` on a SQLite store says each step it applied once (one line each, the
/// store named once, on standard error), and on a store already up to date says so in one line.
#[tokio::test]
async fn state_migrate_says_each_step_once_and_that_an_up_to_date_store_needs_none() {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    // An empty SQLite file: a store at schema version 0.
    let store = setup.data_dir.join("state.db");
    std::fs::write(&store, b"").unwrap();
    let named = format!("{}", store.display());

    let out = command(&setup, &["state", "migrate"]).await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let steps = lines.len();
    assert!(steps > 1, "{stdout}");
    let expected: Vec<String> = (0..steps)
        .map(|v| format!("state schema migrated from version {v} to {}", v + 1))
        .collect();
    assert_eq!(lines, expected, "each step once, in order");
    assert_eq!(
        stdout.matches(&named).count() + stderr.matches(&named).count(),
        1,
        "the store is named once:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(stderr.trim(), format!("warden: state store {named}"));

    let out = command(&setup, &["state", "migrate"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        stdout,
        format!("state schema at version {steps}, nothing to apply\n")
    );
}
