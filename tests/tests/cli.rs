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
