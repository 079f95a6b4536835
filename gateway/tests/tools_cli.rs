//! `warden tools list|diff|approve` on a rug pull: the real `warden` binary against a state
//! store in which the real rug-pull test server (`tests/mcp/rugpull_server.mjs`, over stdio)
//! had its tools pinned in one session and changed in the next.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use warden::pins::{ItemKind, PinVerdict, Pins, PinsConfig};
use warden::state::{StateConfig, Store};

fn rugpull_server() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp/rugpull_server.mjs")
}

/// One MCP session with the rug-pull server: initialize, then `tools/list`.
async fn list_tools(sessions: &Path) -> Vec<Value> {
    let mut child = tokio::process::Command::new("node")
        .arg(rugpull_server())
        .arg("--state")
        .arg(sessions)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs tests/mcp/rugpull_server.mjs (tests/run installs node)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut call = async |message: Value| -> Option<Value> {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
        message.get("id")?;
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the server answers")
            .unwrap()
            .unwrap();
        Some(serde_json::from_str(&line).unwrap())
    };
    let init = call(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "warden-test", "version": "0"}}}),
    )
    .await
    .unwrap();
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    call(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    let list = call(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}))
        .await
        .unwrap();
    list["result"]["tools"].as_array().unwrap().clone()
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("warden.yaml");
        std::fs::write(
            &config,
            format!("data_dir: {}\n", dir.path().join("data").display()),
        )
        .unwrap();
        Setup { dir, config }
    }

    async fn pins(&self) -> Arc<Pins> {
        let store = Store::open(&StateConfig::default(), &self.dir.path().join("data"), None)
            .await
            .unwrap();
        Arc::new(
            Pins::load(&PinsConfig::default(), store.pins(), self.uri_key().await)
                .await
                .unwrap(),
        )
    }

    /// The key a Warden with this configuration keys masked resource URIs with (from the
    /// factor key file under its data dir, as `warden serve` and `warden tools` read it).
    async fn uri_key(&self) -> warden::pins::uri::UriKey {
        let sealer = warden::approval::sealed::sealer(
            &Default::default(),
            &self.dir.path().join("data"),
            None,
        )
        .await
        .unwrap();
        warden::pins::uri::UriKey::new(sealer.derive_key(warden::pins::uri::KEY_PURPOSE))
    }

    async fn warden(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_warden"));
        cmd.args(args).arg("--config").arg(&self.config);
        tokio::time::timeout(Duration::from_secs(30), cmd.output())
            .await
            .expect("warden tools ends")
            .unwrap()
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_rug_pull_is_listed_diffed_and_approved_from_the_command_line() {
    let setup = Setup::new();
    let sessions = setup.dir.path().join("sessions");
    let pins = setup.pins().await;

    // Session 1: the honest tools are pinned on first use.
    for tool in list_tools(&sessions).await {
        let check = pins.check("rugpull", &tool).await.unwrap();
        assert_eq!(check.verdict, PinVerdict::FirstSeen, "{tool}");
    }
    let out = setup.warden(&["tools", "list"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("rugpull/add  trusted\n"), "{stdout}");
    assert!(stdout.contains("by first use"), "{stdout}");
    assert!(!stdout.contains("findings"), "{stdout}");

    // Session 2: the server pulls the rug; the change is caught and held.
    let mut changed_digest = None;
    for tool in list_tools(&sessions).await {
        let check = pins.check("rugpull", &tool).await.unwrap();
        if tool["name"] == "add" {
            let PinVerdict::Changed(change) = &check.verdict else {
                panic!("{:?}", check.verdict)
            };
            assert!(check.first_report);
            assert!(change.diff.contains("sidenote"), "{}", change.diff);
            changed_digest = Some(check.digest.to_string());
        } else {
            assert_eq!(check.verdict, PinVerdict::Trusted);
        }
    }
    let changed_digest = changed_digest.unwrap();

    let out = setup
        .warden(&["tools", "list", "--server", "rugpull"])
        .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("rugpull/add  changed\n"), "{stdout}");
    assert!(
        stdout.contains(&format!("  offered   {changed_digest}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("tool_credential_access in description"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rugpull/get_fact_of_the_day  trusted"),
        "{stdout}"
    );

    let out = setup.warden(&["tools", "diff", "rugpull", "add"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("--- approved\n+++ offered\n"),
        "{stdout}"
    );
    assert!(stdout.contains("\n+  <IMPORTANT>\n"), "{stdout}");
    assert!(stdout.contains("\n+      \"sidenote\": {\n"), "{stdout}");
    assert!(
        stdout.contains("findings: tool_credential_access in description"),
        "{stdout}"
    );

    // A digest that is not the waiting one approves nothing.
    pins.refresh().await.unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let out = setup
        .warden(&["tools", "approve", "rugpull", "add", "--digest", &wrong])
        .await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not approved"), "{stderr}");
    assert!(stderr.contains(&changed_digest), "{stderr}");
    assert!(
        !pins.refresh().await.unwrap(),
        "nothing changed in the store"
    );

    let out = setup
        .warden(&[
            "tools",
            "approve",
            "rugpull",
            "add",
            "--digest",
            &changed_digest,
        ])
        .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout, format!("approved rugpull/add {changed_digest}\n"));

    // The running pins learn the approval at their next refresh.
    assert!(pins.refresh().await.unwrap());
    for tool in list_tools(&sessions).await {
        let check = pins.check("rugpull", &tool).await.unwrap();
        assert_eq!(check.verdict, PinVerdict::Trusted, "{tool}");
    }
}

/// `approve` and `diff` read the factor key the gateway made (masked resource URIs are keyed
/// with it); where there is none they say so and make none, as no operator command makes a
/// key the gateway does not use.
#[tokio::test]
async fn tools_commands_make_no_factor_key() {
    let setup = Setup::new();
    let data = setup.dir.path().join("data");
    Store::open(&StateConfig::default(), &data, None)
        .await
        .unwrap();
    let key_file = warden::approval::sealed::default_key_file(&data);
    assert!(!key_file.exists());
    for args in [
        &["tools", "diff", "fs", "read_file"][..],
        &["tools", "approve", "fs", "--all"][..],
    ] {
        let out = setup.warden(args).await;
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("no approvals factor key at")
                && stderr.contains(&key_file.display().to_string()),
            "{args:?}: {stderr}"
        );
        assert!(!key_file.exists(), "{args:?} made a factor key");
    }
}

#[tokio::test]
async fn tools_commands_say_what_is_missing() {
    let setup = Setup::new();
    let out = setup.warden(&["tools", "list"]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no state store at"), "{stderr}");
    assert!(stderr.contains("state.db"), "{stderr}");

    let pins = setup.pins().await;
    pins.check(
        "fs",
        &json!({"name": "read_file", "description": "Read a file."}),
    )
    .await
    .unwrap();
    let out = setup
        .warden(&["tools", "diff", "github", "create_issue"])
        .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no tool of MCP server github has been seen yet; servers with pins: fs"),
        "{stderr}"
    );
    let out = setup
        .warden(&["tools", "approve", "fs", "write_file"])
        .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("MCP server fs has no tool write_file pinned; its tools: read_file"),
        "{stderr}"
    );
    let out = setup.warden(&["tools", "approve", "fs", "--all"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // A first-use pin waits for an operator's word: --all confirms it.
    assert!(
        stdout.starts_with("approved fs/read_file sha256:"),
        "{stdout}"
    );
    let out = setup.warden(&["tools", "approve", "fs", "--all"]).await;
    let (stdout, _) = text(&out);
    assert_eq!(stdout, "nothing waits for approval on MCP server fs\n");
}

#[tokio::test]
async fn a_resource_is_approved_by_any_spelling_of_its_uri_and_listed_whole() {
    let setup = Setup::new();
    let pins = setup.pins().await;
    let signed = format!(
        "https://files.example/{}/report.pdf?X-Amz-Signature=s3cr3tsig",
        "quarterly".repeat(8)
    );
    for uri in ["https://host/~user", signed.as_str()] {
        let item = json!({"uri": uri, "name": "r"});
        let check = pins
            .check_item("docs", ItemKind::Resource, &item)
            .await
            .unwrap();
        assert_eq!(check.verdict, PinVerdict::FirstSeen, "{uri}");
    }
    let out = setup.warden(&["tools", "list", "--server", "docs"]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The masked name whole, with its keyed digest; never the signature.
    let masked = pins.pinned_name(ItemKind::Resource, &signed);
    assert!(
        masked.len() > 64 && masked.contains(" (uri hmac "),
        "{masked}"
    );
    assert!(
        stdout.contains(&format!("docs/{masked}  trusted")),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3tsig"), "{stdout}");

    // Typed as the server spells it, or otherwise: the same pin.
    let out = setup
        .warden(&[
            "tools",
            "approve",
            "docs",
            "resource:HTTPS://Host:443/%7Euser",
        ])
        .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(
        stdout.contains("approved docs/resource:https://host/~user sha256:"),
        "{stdout}"
    );
    let typed = format!(
        "resource:{}",
        signed.replace("files.example", "FILES.example")
    );
    let out = setup.warden(&["tools", "approve", "docs", &typed]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(
        stdout.contains(&format!("approved docs/{masked} sha256:")),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cr3tsig"), "{stdout}");
}
