//! `warden policy schema --from-mcp`: the fragment written from the tools/list of the real
//! `@modelcontextprotocol/server-filesystem` (saved in
//! `gateway/tests/fixtures/server-filesystem.tools-list.json`) types `context.arguments`, so a
//! policy on `write_file`'s path validates and a misspelt argument is a load error with file
//! and line; and the tools of the real `@modelcontextprotocol/server-everything`, listed over
//! MCP Streamable HTTP (installed in `tests/mcp` by `tests/run`).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tokio::process::Command;
use warden_e2e::paths::{repo_root, tests_dir, warden_bin};
use warden_e2e::warden::{free_port, run_bounded};

fn fixture() -> PathBuf {
    repo_root().join("gateway/tests/fixtures/server-filesystem.tools-list.json")
}

async fn warden(args: &[&str]) -> Output {
    let mut cmd = Command::new(warden_bin());
    cmd.args(args).env_remove("RUST_LOG");
    run_bounded(cmd, Duration::from_secs(30)).await.unwrap()
}

/// `warden` run with proxy variables pointing at a port nothing listens on: a client that
/// honoured them would dial the proxy (and the proxy, not the address guard, would resolve
/// the server's name), so the listing would fail.
async fn warden_with_a_proxy_env(args: &[&str]) -> Output {
    let closed = format!("http://127.0.0.1:{}", free_port().unwrap());
    let mut cmd = Command::new(warden_bin());
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("HTTP_PROXY", &closed)
        .env("http_proxy", &closed)
        .env("HTTPS_PROXY", &closed)
        .env("ALL_PROXY", &closed);
    run_bounded(cmd, Duration::from_secs(30)).await.unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A policy directory with Warden's schema and the filesystem server's fragment, written by
/// the command under test.
async fn policy_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("policies/schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    let fragment = dir.path().join("mcp-filesystem.cedarschema");
    let fixture = fixture();
    let out = warden(&[
        "policy",
        "schema",
        "--from-mcp",
        fixture.to_str().unwrap(),
        "--server",
        "filesystem",
        "-o",
        fragment.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    dir
}

async fn validate(dir: &Path) -> Output {
    warden(&["policy", "validate", dir.to_str().unwrap()]).await
}

#[tokio::test]
async fn a_policy_on_write_file_path_validates_against_the_generated_fragment() {
    let dir = policy_dir().await;
    let fragment = std::fs::read_to_string(dir.path().join("mcp-filesystem.cedarschema")).unwrap();
    assert!(
        fragment.contains("@mcp_server(\"filesystem\")"),
        "{fragment}"
    );
    assert!(fragment.contains("@mcp_tool(\"write_file\")"), "{fragment}");
    std::fs::write(
        dir.path().join("writes.cedar"),
        "@id(\"shared-writes\")\n\
         permit(principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/write_file\")\n\
         when { context.arguments.path like \"/srv/shared/*\" };\n",
    )
    .unwrap();
    let out = validate(dir.path()).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 policies valid"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn a_policy_naming_an_argument_write_file_lacks_fails_with_file_and_line() {
    let dir = policy_dir().await;
    std::fs::write(
        dir.path().join("writes.cedar"),
        "// only the shared folder\n\
         @id(\"shared-writes\")\n\
         permit(principal, action == Action::\"mcp:call_tool\", resource == Tool::\"filesystem/write_file\")\n\
         when { context.arguments.pathh like \"/srv/shared/*\" };\n",
    )
    .unwrap();
    let out = validate(dir.path()).await;
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = format!("{}:4:", dir.path().join("writes.cedar").display());
    assert!(stderr.contains(&at), "expected {at} in\n{}", text(&out));
    assert!(stderr.contains("pathh"), "{}", text(&out));
}

#[tokio::test]
async fn a_file_that_is_not_a_tools_list_is_refused_with_what_to_give() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nope.json");
    std::fs::write(&file, "{\"hello\": 1}").unwrap();
    let out = warden(&["policy", "schema", "--from-mcp", file.to_str().unwrap()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a tools list"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn lists_the_tools_of_a_server_over_streamable_http() {
    let server = tests_dir().join("mcp/node_modules/.bin/mcp-server-everything");
    assert!(
        server.is_file(),
        "{} is missing: run tests/run (it installs tests/mcp)",
        server.display()
    );
    let port = free_port().unwrap();
    let mut child = Command::new("node")
        .arg(&server)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "server-everything did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("policies/schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    let fragment = dir.path().join("mcp-everything.cedarschema");
    let url = format!("http://127.0.0.1:{port}/mcp");
    // A loopback address is dialled only when the operator allows it, and the error says how.
    let listing = [
        "policy",
        "schema",
        "--from-mcp",
        &url,
        "--server",
        "everything",
    ];
    let refused = warden_with_a_proxy_env(&listing).await;
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--allow-private 127.0.0.1"),
        "{}",
        text(&refused)
    );
    // Proxy variables in the environment are ignored: the guard judged the address dialled.
    let out = warden_with_a_proxy_env(
        &[
            &listing[..],
            &["--allow-private", "127.0.0.1", "-o"],
            &[fragment.to_str().unwrap()],
        ]
        .concat(),
    )
    .await;
    child.kill().await.ok();
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&fragment).unwrap();
    assert!(written.contains("@mcp_tool(\"echo\")"), "{written}");
    assert!(written.contains("\"message\": String"), "{written}");
    std::fs::write(
        dir.path().join("echo.cedar"),
        "@id(\"polite-echo\")\n\
         permit(principal, action == Action::\"mcp:call_tool\", resource == Tool::\"everything/echo\")\n\
         when { context.arguments.message like \"please*\" };\n",
    )
    .unwrap();
    let out = validate(dir.path()).await;
    assert!(out.status.success(), "{}", text(&out));
}
