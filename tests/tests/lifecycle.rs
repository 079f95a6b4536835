//! The process under signals: SIGHUP reloads policies without dropping streams, an invalid
//! policy set never replaces a valid one, SIGTERM lets in-flight streams finish (after
//! `listen.drain_delay`, serving while not ready); and the startup guard against an open
//! listener without authentication.

use serde_json::{Value, json};
use std::time::Duration;
use warden_e2e::fake_llm::{self, FakeLlm};
use warden_e2e::sse;
use warden_e2e::stack::{Stack, openai_chat};
use warden_e2e::warden::{WardenBuilder, free_port};

const FORBID_GPT41: &str = r#"
@id("e2e-forbid-gpt41")
@reason("gpt-4.1 was withdrawn by the reload")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4.1");
"#;

const FORBID_MINI: &str = r#"
@id("e2e-forbid-mini")
@reason("gpt-4o-mini was withdrawn")
forbid (principal, action == Action::"llm:chat", resource == Model::"openai/gpt-4o-mini");
"#;

/// Whether a non-streamed chat with `model` is refused (`x-warden-decision: deny`); `None`
/// when it got no answer.
async fn refused(s: &Stack, model: &str) -> Option<bool> {
    let response = s
        .post("/openai/chat/completions", &openai_chat(model, false))
        .await
        .ok()?;
    Some(
        response
            .headers()
            .get("x-warden-decision")
            .is_some_and(|v| v == "deny"),
    )
}

/// Polls until a chat with `model` is refused, up to 10 s.
async fn wait_until_refused(s: &Stack, model: &str) -> bool {
    wait_for_refusal(s, model, true).await
}

/// Polls until a chat with `model` is allowed again, up to 10 s.
async fn wait_until_allowed(s: &Stack, model: &str) -> bool {
    wait_for_refusal(s, model, false).await
}

/// Polls until whether a chat with `model` is refused is `want`, up to 10 s.
async fn wait_for_refusal(s: &Stack, model: &str, want: bool) -> bool {
    for _ in 0..100 {
        if refused(s, model).await == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Starts a held stream and returns it after its first chunk arrived.
async fn start_held_stream(s: &Stack, model: &str) -> (reqwest::Response, String) {
    let mut response = s
        .post("/openai/chat/completions", &openai_chat(model, true))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    (response, String::from_utf8_lossy(&first).into_owned())
}

fn streamed_text(body: &str) -> String {
    sse::chat_text(&sse::parse_events(body))
}

#[tokio::test]
async fn sighup_reload_changes_a_decision_without_dropping_an_in_flight_stream() {
    let s = Stack::start().await.unwrap();
    assert_eq!(refused(&s, "gpt-4.1").await, Some(false));
    let gate = s.fake.hold_streams();
    let (stream, first) = start_held_stream(&s, "gpt-4.1").await;

    s.warden
        .write_policy("e2e-reload.cedar", FORBID_GPT41)
        .unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();
    assert!(
        wait_until_refused(&s, "gpt-4.1").await,
        "the reloaded forbid applies:\n{}",
        s.warden.output()
    );

    gate.release();
    let rest = sse::read_chunks(stream, Duration::from_secs(20))
        .await
        .unwrap();
    let body = first + &sse::text_of(&rest);
    assert_eq!(
        streamed_text(&body),
        fake_llm::full_text(),
        "the stream allowed before the reload completes"
    );
    assert!(body.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn invalid_policy_change_is_refused_and_the_old_set_keeps_working() {
    let s = Stack::start().await.unwrap();
    s.warden
        .write_policy("e2e-mini.cedar", FORBID_MINI)
        .unwrap();
    s.warden
        .write_policy(
            "e2e-broken.cedar",
            "permit (principal, action, resource) when { principal.nope ==",
        )
        .unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !s.warden.output().contains("e2e-broken.cedar") && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        s.warden.output().contains("e2e-broken.cedar"),
        "the refused reload names the bad file:\n{}",
        s.warden.output()
    );
    assert_eq!(
        refused(&s, "gpt-4o-mini").await,
        Some(false),
        "nothing of the invalid set applies"
    );

    std::fs::remove_file(s.warden.setup.policy_dir.join("e2e-broken.cedar")).unwrap();
    s.warden.signal(libc::SIGHUP).unwrap();
    assert!(
        wait_until_refused(&s, "gpt-4o-mini").await,
        "a valid set loads on the next reload"
    );
}

#[tokio::test]
async fn a_reload_warns_of_a_route_it_adds_whose_credential_is_unavailable() {
    let s = Stack::start().await.unwrap();
    s.warden
        .reload(|config| {
            config["routes"].as_array_mut().unwrap().push(json!({
                "name": "e2e-unset-key",
                "prefix": "/e2e-unset-key",
                "connector": "openai",
                "upstream": "http://127.0.0.1:9/v1",
                "credential": { "env": "WARDEN_E2E_NEVER_SET" },
            }))
        })
        .await
        .unwrap();
    let output = s.warden.output();
    let warned = output.lines().any(|line| {
        line.contains("route has no upstream credential")
            && line.contains("e2e-unset-key")
            && line.contains("WARDEN_E2E_NEVER_SET")
    });
    assert!(
        warned,
        "the reload names the route and its unset variable:\n{output}"
    );
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_stream_finish_then_exits() {
    let mut s = Stack::start().await.unwrap();
    let gate = s.fake.hold_streams();
    let (stream, first) = start_held_stream(&s, "gpt-4o-mini").await;

    s.warden.signal(libc::SIGTERM).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    gate.release();
    let rest = sse::read_chunks(stream, Duration::from_secs(20))
        .await
        .unwrap();
    let body = first + &sse::text_of(&rest);
    assert_eq!(
        streamed_text(&body),
        fake_llm::full_text(),
        "the in-flight stream runs to its end"
    );
    assert!(body.ends_with("data: [DONE]\n\n"));

    let status = s.warden.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(
        status.success(),
        "graceful exit after SIGTERM: {status}\n{}",
        s.warden.output()
    );
    let refused = reqwest::Client::new()
        .get(s.warden.url("/openai/models"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(refused.is_err(), "no longer listening after exit");
}

/// `GET /readyz`'s status, or `None` when nothing answers.
async fn readyz(s: &Stack) -> Option<u16> {
    reqwest::Client::new()
        .get(s.warden.admin_url("/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test]
async fn drain_delay_keeps_serving_while_readyz_says_not_ready() {
    let mut s = Stack::start_with(|b| b.set("/listen/drain_delay", json!("5m")))
        .await
        .unwrap();
    assert_eq!(readyz(&s).await, Some(200));
    s.warden.signal(libc::SIGTERM).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while readyz(&s).await != Some(503) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz turns 503 on SIGTERM:\n{}",
            s.warden.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Not ready, and still serving: a new connection's request is answered.
    let response = reqwest::Client::new()
        .post(s.warden.url("/openai/chat/completions"))
        .bearer_auth(&s.token)
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .expect("served during the drain delay");
    assert_eq!(response.status(), 200);
    assert_eq!(readyz(&s).await, Some(503), "still draining");

    // A second signal ends the delay (of five minutes) and the graceful stop follows.
    s.warden.signal(libc::SIGTERM).unwrap();
    let status = s.warden.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{status}\n{}", s.warden.output());
    let stop = s
        .warden
        .audit_records()
        .into_iter()
        .rfind(|r| r["kind"] == "system")
        .unwrap();
    assert_eq!(stop["detail"]["event"], "stop");
}

#[tokio::test]
async fn after_the_drain_delay_warden_stops_on_its_own() {
    let mut s = Stack::start_with(|b| b.set("/listen/drain_delay", json!("1s")))
        .await
        .unwrap();
    s.warden.signal(libc::SIGTERM).unwrap();
    let status = s.warden.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "{status}\n{}", s.warden.output());
    assert!(
        s.warden.output().contains("listen.drain_delay"),
        "the drain is logged:\n{}",
        s.warden.output()
    );
}

#[tokio::test]
async fn refuses_to_listen_on_a_non_loopback_address_without_required_identity() {
    let fake = FakeLlm::start().await.unwrap();
    let port = free_port().unwrap();
    let mut warden = WardenBuilder::new(&fake)
        .set("/identity/required", json!(false))
        .set("/listen/proxy", json!(format!("0.0.0.0:{port}")))
        .write()
        .unwrap()
        .spawn()
        .unwrap();
    let status = warden.wait_exit(Duration::from_secs(20)).await.unwrap();
    assert!(
        !status.success(),
        "must refuse to start:\n{}",
        warden.output()
    );
    let output = warden.output();
    assert!(
        output.contains("identity.required") || output.contains("loopback"),
        "the error says why:\n{output}"
    );
}

#[tokio::test]
async fn serves_anonymous_agents_on_loopback_when_identity_is_not_required() {
    let fake = FakeLlm::start().await.unwrap();
    let warden = WardenBuilder::new(&fake)
        .set("/identity/required", json!(false))
        .start()
        .await
        .unwrap();
    let response = warden
        .http()
        .post(warden.url("/openai/chat/completions"))
        .json(&openai_chat("gpt-4o-mini", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let record = warden
        .wait_for_audit(Duration::from_secs(10), |r| r["kind"] == "decision")
        .await
        .unwrap();
    assert_eq!(record["principal"]["id"], "anonymous");
}

#[tokio::test]
async fn policy_file_change_applies_without_a_signal() {
    let s = Stack::start().await.unwrap();
    assert_eq!(refused(&s, "gpt-4o-mini").await, Some(false));
    s.warden
        .write_policy("e2e-mini.cedar", FORBID_MINI)
        .unwrap();
    assert!(
        wait_until_refused(&s, "gpt-4o-mini").await,
        "the new policy file applies on its own:\n{}",
        s.warden.output()
    );
    let record = s
        .audit("system", |r| r["detail"]["event"] == "reload")
        .await
        .unwrap();
    assert_eq!(record["detail"]["result"], "applied");
}

/// The config file as JSON (which is YAML), edited by `edit`, written back in place.
fn edit_config(s: &Stack, edit: impl FnOnce(&mut Value)) {
    let path = &s.warden.setup.config_path;
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// Status of a chat with `model` that a forbid refuses.
async fn denied_status(s: &Stack) -> u16 {
    s.post(
        "/openai/chat/completions",
        &openai_chat("gpt-4o-mini", false),
    )
    .await
    .unwrap()
    .status()
    .as_u16()
}

#[tokio::test]
async fn config_file_change_applies_and_an_invalid_one_is_refused() {
    let s = Stack::start_with(|b| b.policy("e2e-mini.cedar", FORBID_MINI))
        .await
        .unwrap();
    assert_eq!(denied_status(&s).await, 200, "a refusal as a completion");

    edit_config(&s, |c| c["routes"][0]["on_deny"] = json!("http_error"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while denied_status(&s).await != 403 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edited route applies:\n{}",
            s.warden.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    edit_config(&s, |c| c["routes"][0]["on_deny"] = json!("shrug"));
    let refused = s
        .audit("system", |r| r["detail"]["result"] == "refused")
        .await
        .unwrap();
    assert!(
        refused["reasons"].to_string().contains("on_deny"),
        "the refusal names the key: {refused}"
    );
    // The log line may come a moment after the record.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !s.warden.output().contains("reload refused") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            s.warden.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(denied_status(&s).await, 403, "the running set stays");
}

/// A Kubernetes ConfigMap volume: `warden.yaml` → `..data/warden.yaml`, `..data` → a
/// timestamped directory; an update writes a new directory and renames a new `..data` link
/// over the old one. The config file itself never changes.
#[tokio::test]
async fn configmap_style_symlink_swap_reloads_the_config() {
    let s = Stack::start_with(|b| b.policy("e2e-mini.cedar", FORBID_MINI))
        .await
        .unwrap();
    let original = std::fs::read_to_string(&s.warden.setup.config_path).unwrap();
    let mount = s.warden.setup.dir.path().join("configmap");
    let version = |n: u32, text: &str| {
        let dir = mount.join(format!("..2026_12_01_0{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("warden.yaml"), text).unwrap();
        dir
    };
    let v1 = version(1, &original);
    std::os::unix::fs::symlink(&v1, mount.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/warden.yaml", mount.join("warden.yaml")).unwrap();

    // Restart Warden on the symlinked path.
    let s = {
        let Stack { fake, warden, .. } = s;
        let mut setup = warden.stop_and_take_setup().await;
        setup.config_path = mount.join("warden.yaml");
        Stack::spawn(fake, setup).await.unwrap()
    };
    assert_eq!(denied_status(&s).await, 200);

    let mut config: Value = serde_json::from_str(&original).unwrap();
    config["routes"][0]["on_deny"] = json!("http_error");
    let v2 = version(2, &serde_json::to_string_pretty(&config).unwrap());
    let tmp_link = mount.join("..data_tmp");
    std::os::unix::fs::symlink(&v2, &tmp_link).unwrap();
    std::fs::rename(&tmp_link, mount.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while denied_status(&s).await != 403 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the swapped ConfigMap applies:\n{}",
            s.warden.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A policy that forbids nothing (a ConfigMap key's content before and after a change).
const NOTHING: &str = "// nothing forbidden\n";

/// Starts Warden (a stack with its fake upstream) on the files `prepare` lays out in its
/// setup's directory, with `policy.dir` set to the path `prepare` returns.
async fn stack_with_policy_dir(
    prepare: impl FnOnce(&std::path::Path) -> std::path::PathBuf,
) -> Stack {
    let fake = FakeLlm::start().await.unwrap();
    let setup = WardenBuilder::new(&fake).write().unwrap();
    let policy_dir = prepare(setup.dir.path());
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&setup.config_path).unwrap()).unwrap();
    config["policy"]["dir"] = json!(policy_dir);
    std::fs::write(
        &setup.config_path,
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();
    Stack::spawn(fake, setup).await.unwrap()
}

/// The policy files every version holds: the schema and permit-all from the default setup.
fn base_policies() -> Vec<(&'static str, String)> {
    let schema = warden_e2e::paths::repo_root().join("policies/schema.cedarschema");
    vec![
        (
            "schema.cedarschema",
            std::fs::read_to_string(schema).unwrap(),
        ),
        (
            "e2e-permit-all.cedar",
            warden_e2e::warden::PERMIT_ALL.to_owned(),
        ),
    ]
}

/// The policy directory as Kubernetes mounts a ConfigMap: each key a symlink
/// `name -> ..data/name`, `..data` a symlink to a timestamped directory holding the files;
/// an update writes a new directory, renames a new `..data` link over the old one and removes
/// the old directory. Two updates in a row both apply.
#[tokio::test]
async fn a_policy_configmap_swapped_twice_reloads_twice() {
    let version = |mount: &std::path::Path, n: u32, switch: &str| {
        let dir = mount.join(format!("..2026_12_04_10_0{n}_00.12345{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in base_policies() {
            std::fs::write(dir.join(name), text).unwrap();
        }
        std::fs::write(dir.join("switch.cedar"), switch).unwrap();
        dir
    };
    let swap = |mount: &std::path::Path, to: &std::path::Path, old: &std::path::Path| {
        let tmp = mount.join("..data_tmp");
        std::os::unix::fs::symlink(to.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, mount.join("..data")).unwrap();
        std::fs::remove_dir_all(old).unwrap();
    };
    let mut mount = std::path::PathBuf::new();
    let s = stack_with_policy_dir(|root| {
        mount = root.join("policies-configmap");
        let v1 = version(&mount, 1, NOTHING);
        std::os::unix::fs::symlink(v1.file_name().unwrap(), mount.join("..data")).unwrap();
        for name in ["schema.cedarschema", "e2e-permit-all.cedar", "switch.cedar"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), mount.join(name)).unwrap();
        }
        mount.clone()
    })
    .await;
    assert_eq!(refused(&s, "gpt-4o-mini").await, Some(false));

    let v1 = std::fs::canonicalize(mount.join("..data")).unwrap();
    let v2 = version(&mount, 2, FORBID_MINI);
    swap(&mount, &v2, &v1);
    assert!(
        wait_until_refused(&s, "gpt-4o-mini").await,
        "the first swap applies:\n{}",
        s.warden.output()
    );
    let v3 = version(&mount, 3, NOTHING);
    swap(&mount, &v3, &v2);
    assert!(
        wait_until_allowed(&s, "gpt-4o-mini").await,
        "the second swap applies:\n{}",
        s.warden.output()
    );
}

/// `policies.source: gitSync`: `policy.dir` is git-sync's `current` link, which git-sync
/// points at a new worktree on each change (the old worktree may stay a while). Each swap
/// applies, the second one too (Warden watches the worktree the link now leads to).
#[tokio::test]
async fn a_swapped_git_sync_link_to_the_policy_directory_reloads_each_time() {
    let worktree = |root: &std::path::Path, n: u32, switch: &str| {
        let dir = root.join(".worktrees").join(format!("{n:040}"));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in base_policies() {
            std::fs::write(dir.join(name), text).unwrap();
        }
        std::fs::write(dir.join("switch.cedar"), switch).unwrap();
        dir
    };
    let point = |root: &std::path::Path, to: &std::path::Path| {
        let tmp = root.join("tmp-link");
        std::os::unix::fs::symlink(to, &tmp).unwrap();
        std::fs::rename(&tmp, root.join("current")).unwrap();
    };
    let mut root = std::path::PathBuf::new();
    let s = stack_with_policy_dir(|dir| {
        root = dir.join("git");
        let v1 = worktree(&root, 1, NOTHING);
        point(&root, &v1);
        root.join("current")
    })
    .await;
    assert_eq!(refused(&s, "gpt-4o-mini").await, Some(false));

    let v2 = worktree(&root, 2, FORBID_MINI);
    point(&root, &v2);
    assert!(
        wait_until_refused(&s, "gpt-4o-mini").await,
        "the first link swap applies:\n{}",
        s.warden.output()
    );
    let v3 = worktree(&root, 3, NOTHING);
    point(&root, &v3);
    assert!(
        wait_until_allowed(&s, "gpt-4o-mini").await,
        "the second link swap applies:\n{}",
        s.warden.output()
    );
}
