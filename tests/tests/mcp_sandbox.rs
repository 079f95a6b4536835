//! Local MCP servers run sandboxed: a probe server (`tests/mcp/sandbox_probe.mjs`) started by
//! the real `warden serve` tries to read Warden's keys, configuration and environment, to
//! signal Warden, and to connect where it is not allowed, and reports what worked; the official
//! `@modelcontextprotocol/server-filesystem` still serves its folder in the sandbox; a listed
//! path that holds Warden's data directory is refused by `warden check`.

use std::path::Path;

use serde_json::{Value, json};
use warden_e2e::mcp;
use warden_e2e::warden::{Warden, WardenBuilder, run_bounded};

/// Warden with `/mcp/tools` on `server`.
fn builder(server: Value) -> WardenBuilder {
    let name = server["name"].clone();
    WardenBuilder::with_upstream_url("http://127.0.0.1:9").set(
        "/mcp",
        json!({"servers": [server], "endpoints": [{"name": "tools", "servers": [name]}]}),
    )
}

/// The probe, named `probe`, with `sandbox` (its `read` gets `tests/mcp` added).
fn probe(mut sandbox: Value) -> Value {
    let node = std::env::var("NODE").unwrap_or_else(|_| "node".into());
    let mut read = sandbox["read"].as_array().cloned().unwrap_or_default();
    read.push(json!(mcp::mcp_dir()));
    sandbox["read"] = json!(read);
    json!({"name": "probe", "command": node,
           "args": [mcp::mcp_dir().join("sandbox_probe.mjs")], "sandbox": sandbox})
}

/// Calls the probe's tools `calls` (`[name, arguments]`) in one session; what each reported.
async fn ask(w: &Warden, calls: &[(&str, Value)]) -> Vec<Value> {
    let agent = w.token("e2e-agent").await.unwrap();
    let steps: Vec<Value> = calls
        .iter()
        .map(|(name, arguments)| {
            json!({"op": "call", "name": format!("probe_{name}"), "arguments": arguments})
        })
        .collect();
    let r = mcp::session(w, &w.url("/mcp/tools"), &agent, json!(steps))
        .await
        .unwrap();
    (0..calls.len())
        .map(|i| {
            let step = &r["steps"][i];
            assert_eq!(step["isError"], false, "{r}");
            serde_json::from_str(step["text"].as_str().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}: {r}"))
        })
        .collect()
}

fn read(path: &Path) -> (&'static str, Value) {
    ("read_file", json!({"path": path}))
}

#[tokio::test]
async fn a_local_server_reads_its_own_and_listed_paths_and_nothing_of_warden_s() {
    let listed = tempfile::tempdir().unwrap();
    std::fs::write(listed.path().join("doc.txt"), "listed-doc").unwrap();
    let w = builder(probe(json!({"read": [listed.path()]})))
        .start()
        .await
        .expect("warden starts");
    let data = &w.setup.data_dir;
    // Whatever Warden keeps in its data directory: its token signing key among them.
    let mut kept: Vec<_> = walk(data);
    assert!(!kept.is_empty(), "Warden keeps files in {}", data.display());
    kept.truncate(8);
    let pid = w.pid().unwrap();
    let environ = Path::new("/proc").join(pid.to_string()).join("environ");
    let mem = Path::new("/proc").join(pid.to_string()).join("mem");
    let mut calls = vec![
        ("env", json!({})),
        read(&listed.path().join("doc.txt")),
        read(&w.setup.config_path),
        read(&w.setup.policy_dir.join("e2e-permit-all.cedar")),
        read(&environ),
        read(&mem),
        read(Path::new("/etc/shadow")),
        ("signal_parent", json!({})),
        (
            "write_file",
            json!({"path": listed.path().join("written"), "content": "x"}),
        ),
    ];
    calls.extend(kept.iter().map(|p| read(p)));
    calls.push((
        "write_file",
        json!({"path": "~/tmp/left", "content": "first"}),
    ));
    let found = ask(&w, &calls).await;
    // A directory of its process's own, under the data directory, is its HOME and TMPDIR;
    // Warden is its parent.
    let servers = data.join("mcp-servers/probe");
    let home = own_home(&found[0], &servers);
    assert_eq!(found[0]["tmpdir"], json!(home.join("tmp")), "{found:?}");
    assert_eq!(found[0]["ppid"], json!(pid), "{found:?}");
    assert_eq!(found[calls.len() - 1], json!({"ok": true}), "{found:?}");
    assert_eq!(found[1], json!({"ok": true, "text": "listed-doc"}));
    for (i, what) in [
        (2, "the configuration"),
        (3, "the policies"),
        (4, "Warden's environment"),
        (5, "Warden's memory"),
        (6, "/etc/shadow"),
    ] {
        assert_eq!(found[i]["ok"], false, "{what} was read: {found:?}");
        assert_eq!(found[i]["code"], "EACCES", "{what}: {found:?}");
    }
    assert_eq!(
        found[7],
        json!({"ok": false, "code": "EPERM"}),
        "Warden was signalled"
    );
    assert_eq!(found[8]["code"], "EACCES", "a read-only path was written");
    for (p, f) in kept.iter().zip(&found[9..calls.len() - 1]) {
        assert_eq!(f["code"], "EACCES", "{} was read: {f}", p.display());
    }
    // The next session's process gets a fresh directory, its own to write and read again,
    // and nothing of the first one's, which is removed once that process has ended.
    let left = home.join("tmp/left");
    let found = ask(
        &w,
        &[
            ("env", json!({})),
            (
                "write_file",
                json!({"path": "~/tmp/mine", "content": "own"}),
            ),
            read(Path::new("~/tmp/mine")),
            read(&left),
        ],
    )
    .await;
    let second = own_home(&found[0], &servers);
    assert_ne!(second, home, "{found:?}");
    // Both named after the same Warden process.
    let instance = |p: &Path| p.file_name().unwrap().to_string_lossy()[..4 + 32].to_owned();
    assert_eq!(instance(&second), instance(&home), "{found:?}");
    assert_eq!(found[2], json!({"ok": true, "text": "own"}), "{found:?}");
    assert_eq!(found[3]["ok"], false, "{found:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while home.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(!home.exists(), "the first process's directory is left");
    let metrics = w.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_mcp_sandboxed{server=\"probe\"} 1"),
        "{metrics}"
    );
}

/// The HOME `env` reported, checked to be a directory of its own beneath `servers` made by
/// a Warden process (`run-<its random id>-<id>`).
fn own_home(env: &Value, servers: &Path) -> std::path::PathBuf {
    let home = std::path::PathBuf::from(env["home"].as_str().unwrap_or_default());
    assert_eq!(home.parent(), Some(servers), "{env}");
    let name = home.file_name().unwrap().to_string_lossy().into_owned();
    let hex = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let ids = name.strip_prefix("run-").and_then(|r| r.split_once('-'));
    assert!(ids.is_some_and(|(a, b)| hex(a) && hex(b)), "{env}");
    home
}

/// Every file beneath `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if !path.ends_with("mcp-servers") {
                out.extend(walk(&path));
            }
        } else if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn tcp_connections_are_limited_to_the_ports_listed() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (open_port, closed_port) = (
        open.local_addr().unwrap().port(),
        closed.local_addr().unwrap().port(),
    );
    let w = builder(probe(json!({"network": [open_port]})))
        .start()
        .await
        .expect("warden starts");
    let proxy = w.setup.proxy.port();
    let found = ask(
        &w,
        &[
            ("connect", json!({"port": open_port})),
            ("connect", json!({"port": closed_port})),
            // Warden's own listener is no exception.
            ("connect", json!({"port": proxy})),
        ],
    )
    .await;
    assert_eq!(found[0], json!({"ok": true}), "{found:?}");
    assert_eq!(
        found[1],
        json!({"ok": false, "code": "EACCES"}),
        "{found:?}"
    );
    assert_eq!(
        found[2],
        json!({"ok": false, "code": "EACCES"}),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_unix_socket_with_a_path_is_out_of_reach_unless_allowed() {
    // A daemon's socket (Docker's, D-Bus's) outside every path the server may read or write.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let w = builder(probe(json!({})))
        .start()
        .await
        .expect("warden starts");
    let found = ask(&w, &[("unix_connect", json!({"path": path}))]).await;
    assert_eq!(
        found[0],
        json!({"ok": false, "code": "EACCES"}),
        "{found:?}"
    );
    drop(w);
    let w = builder(probe(json!({"unix_sockets": true})))
        .start()
        .await
        .expect("warden starts");
    let found = ask(&w, &[("unix_connect", json!({"path": path}))]).await;
    assert_eq!(found[0], json!({"ok": true}), "{found:?}");
}

#[tokio::test]
async fn a_server_run_unsandboxed_says_so() {
    let w = builder(probe(json!({"mode": "off"})))
        .start()
        .await
        .expect("warden starts");
    let found = ask(&w, &[read(&w.setup.config_path)]).await;
    assert_eq!(
        found[0]["ok"], true,
        "unsandboxed, it reads what Warden can"
    );
    let metrics = w.metrics().await.unwrap();
    assert!(
        metrics.contains("warden_mcp_sandboxed{server=\"probe\"} 0"),
        "{metrics}"
    );
    assert!(
        w.output().contains("a local MCP server runs unsandboxed"),
        "{}",
        w.output()
    );
}

#[tokio::test]
async fn the_official_filesystem_server_serves_its_folder_in_the_sandbox() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().canonicalize().unwrap();
    std::fs::write(folder.join("hello.txt"), "hello from the folder").unwrap();
    let w = builder(mcp::filesystem_stdio("files", &folder))
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let written = folder.join("new.txt");
    let r = mcp::session(
        &w,
        &w.url("/mcp/tools"),
        &agent,
        json!([
            {"op": "call", "name": "files_read_text_file", "arguments": {"path": folder.join("hello.txt")}},
            {"op": "call", "name": "files_write_file", "arguments": {"path": written, "content": "written in the sandbox"}},
            {"op": "call", "name": "files_list_directory", "arguments": {"path": folder}},
        ]),
    )
    .await
    .unwrap();
    for i in 0..3 {
        assert_eq!(r["steps"][i]["isError"], false, "{r}");
    }
    assert!(
        r["steps"][0]["text"]
            .as_str()
            .unwrap()
            .contains("hello from the folder"),
        "{r}"
    );
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "written in the sandbox"
    );
    assert!(
        r["steps"][2]["text"].as_str().unwrap().contains("new.txt"),
        "{r}"
    );
}

#[tokio::test]
async fn warden_check_refuses_a_listed_parent_of_the_data_directory() {
    // The temporary directory holds this setup's data directory and configuration file.
    let parent = std::env::temp_dir().canonicalize().unwrap();
    let setup = builder(probe(json!({"read": [parent]}))).write().unwrap();
    let mut cmd = setup.command();
    cmd.arg("check").arg("--config").arg(&setup.config_path);
    let out = run_bounded(cmd, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("mcp.servers[0].sandbox.read[0]")
            && text.contains("holds Warden's data directory")
            && text.contains(&setup.data_dir.display().to_string()),
        "{text}"
    );
}

/// The upstream a sandboxed server may reach through the proxy (on loopback, so its permit
/// says `@egress("internal")`), only when the connection comes from the local server
/// `probe`; `127.0.0.2` is forbidden.
const LOCAL_EGRESS: &str = r#"
@id("probe-reaches-its-upstream")
@egress("internal")
permit (
  principal is Agent,
  action in [Action::"egress:connect", Action::"egress:request"],
  resource == Host::"127.0.0.1"
) when { context has server && context.server == "probe" };

@id("no-second-loopback")
@reason("127.0.0.2 is not for local servers")
forbid (principal, action, resource == Host::"127.0.0.2");
"#;

/// A plain-HTTP upstream on `ip` answering `hello` to every request: its port, and how many
/// requests it saw.
async fn upstream(ip: [u8; 4]) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let _ = conn
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
                    )
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn network_egress_goes_out_only_through_warden_s_egress_judge() {
    use std::sync::atomic::Ordering;
    let (port, seen) = upstream([127, 0, 0, 1]).await;
    let (forbidden_port, forbidden_seen) = upstream([127, 0, 0, 2]).await;
    // No egress.listen: the process's proxy needs none.
    // UDP sockets of the test's own on both loopbacks: Landlock filters no UDP, so only the
    // namespace keeps the probe's datagrams from them.
    let udp4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp6 = std::net::UdpSocket::bind("[::1]:0").ok();
    let w = builder(probe(json!({"network": "egress"})))
        .policy("local-egress.cedar", LOCAL_EGRESS)
        .start()
        .await
        .expect("warden starts");
    let found = ask(
        &w,
        &[
            ("env", json!({})),
            (
                "proxy_get",
                json!({"url": format!("http://127.0.0.1:{port}/data")}),
            ),
            (
                "proxy_get",
                json!({"url": format!("http://127.0.0.2:{forbidden_port}/data")}),
            ),
            // Straight to the upstream, or to Warden's own proxy listener: no way.
            ("connect", json!({"port": port})),
            ("connect", json!({"port": w.setup.proxy.port()})),
            (
                "udp_send",
                json!({"port": udp4.local_addr().unwrap().port()}),
            ),
            (
                "udp_send",
                json!({"port": udp6.as_ref().map_or(9, |s| s.local_addr().unwrap().port()), "host": "::1"}),
            ),
        ],
    )
    .await;
    // The probe has sent them: had one reached its socket, it would be queued before the
    // test's own marker, sent now.
    nothing_but_a_marker(&udp4);
    if let Some(udp6) = &udp6 {
        nothing_but_a_marker(udp6);
    }
    assert_eq!(found[0]["http_proxy"], "http://127.0.0.1:3128", "{found:?}");
    assert_eq!(
        found[0]["https_proxy"], "http://127.0.0.1:3128",
        "{found:?}"
    );
    assert_eq!(found[0]["node_use_env_proxy"], "1", "{found:?}");
    assert_eq!(found[1]["status"], 200, "{found:?}");
    assert_eq!(found[1]["body"], "hello", "{found:?}");
    assert_eq!(found[2]["status"], 403, "{found:?}");
    assert_eq!(found[3]["ok"], false, "{found:?}");
    assert_eq!(found[4]["ok"], false, "{found:?}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "only the proxied request reached it"
    );
    assert_eq!(forbidden_seen.load(Ordering::SeqCst), 0);
    // Recorded as the agent's egress, naming the server.
    let records = w.audit_records();
    let decision = |host: &str| {
        records
            .iter()
            .find(|r| {
                r["kind"] == "decision"
                    && r["action"] == "egress:request"
                    && r["detail"]["egress"]["host"] == host
            })
            .cloned()
            .unwrap_or_else(|| panic!("no decision on {host}: {records:?}"))
    };
    let allowed = decision("127.0.0.1");
    assert_eq!(allowed["decision"], "allow", "{allowed}");
    assert_eq!(allowed["principal"]["id"], "e2e-agent", "{allowed}");
    assert_eq!(allowed["detail"]["egress"]["server"], "probe", "{allowed}");
    let denied = decision("127.0.0.2");
    assert_eq!(denied["decision"], "deny", "{denied}");
    assert_eq!(denied["principal"]["id"], "e2e-agent", "{denied}");
    assert_eq!(denied["detail"]["egress"]["server"], "probe", "{denied}");
    assert!(
        denied.to_string().contains("not for local servers"),
        "{denied}"
    );
}

#[tokio::test]
async fn network_egress_carries_https_through_a_tunnel_warden_s_egress_judge_allowed() {
    use warden_e2e::egress::{Origin, Pki};
    let pki = Pki::new();
    let origin = Origin::start([127, 0, 0, 1].into(), 0, Some(pki.server(&["127.0.0.1"])))
        .await
        .unwrap();
    let w = builder(probe(json!({"network": "egress"})))
        .policy("local-egress.cedar", LOCAL_EGRESS)
        .start()
        .await
        .expect("warden starts");
    let url = format!("https://127.0.0.1:{}/secure", origin.addr.port());
    let found = ask(
        &w,
        &[("https_connect", json!({"url": url, "ca": pki.ca_pem}))],
    )
    .await;
    // The CONNECT answered 200, and the tunnel carried TLS end to end: the origin's own
    // certificate, which only the test's CA signs, was verified by the process.
    assert_eq!(found[0]["connect_status"], 200, "{found:?}");
    assert_eq!(found[0]["status"], 200, "{found:?}");
    let body = found[0]["body"].as_str().unwrap_or_default();
    assert!(body.contains("/secure"), "{found:?}");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["path"], "/secure");
    // Recorded as the agent's egress connect, naming the server.
    let records = w.audit_records();
    let connect = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["action"] == "egress:connect")
        .cloned()
        .unwrap_or_else(|| panic!("no egress:connect decision: {records:?}"));
    assert_eq!(connect["decision"], "allow", "{connect}");
    assert_eq!(connect["principal"]["id"], "e2e-agent", "{connect}");
    assert_eq!(
        connect["detail"]["egress"]["host"], "127.0.0.1",
        "{connect}"
    );
    assert_eq!(connect["detail"]["egress"]["server"], "probe", "{connect}");
}

/// The tool call `tool` with `arguments` in the raw session `session`: what the probe
/// reported.
async fn call_raw(
    w: &Warden,
    agent: &str,
    session: &str,
    id: u64,
    tool: &str,
    arguments: Value,
) -> Value {
    let response = mcp::post_raw(
        w,
        "/mcp/tools",
        agent,
        Some(session),
        &mcp::tool_call(id, tool, arguments),
    )
    .await
    .unwrap();
    let answer = mcp::answered(response).await;
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

#[tokio::test]
async fn stopping_leaves_a_slow_removal_of_a_local_server_s_directory_to_the_next_start() {
    use std::time::Duration;
    let w = builder(probe(json!({})))
        .set("/listen/shutdown_grace", json!("2s"))
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    // A session left open, whose process's directory holds a tree slow to remove (as the
    // package an `npx` downloads): 600 000 files (300 000 were removed within the 2 s bound on
    // a quiet machine).
    let session = mcp::initialize_raw(&w, "/mcp/tools", &agent).await.unwrap();
    let env = call_raw(&w, &agent, &session, 2, "probe_env", json!({})).await;
    let home = std::path::PathBuf::from(env["home"].as_str().unwrap());
    // In calls short enough for the client's 30 s timeout on a loaded machine.
    for (i, from) in (0..600).step_by(10).enumerate() {
        let filled = call_raw(
            &w,
            &agent,
            &session,
            3 + i as u64,
            "probe_fill",
            json!({"from": from, "dirs": 10, "files": 1000}),
        )
        .await;
        assert_eq!(filled["ok"], true, "{filled}");
    }
    assert!(home.join("fill/d599/f999").exists());
    let mut w = w;
    w.signal(libc::SIGTERM).unwrap();
    let signalled = std::time::Instant::now();
    // A bound on failure only.
    let status = w.wait_exit(Duration::from_secs(120)).await.unwrap();
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(status.success(), "{}", w.output());
    let output = w.output();
    // Warden exited before the removal could finish (it waits for it at most 2 s): the
    // directory is still there, and the log says so.
    assert!(
        home.exists(),
        "Warden waited for the removal of its local server's directory:\n{output}"
    );
    assert!(
        output.contains("stopping local MCP server processes and removing their directories"),
        "{output}"
    );
    assert!(
        output.contains("left for the next start to remove"),
        "{output}"
    );
    // Its audit log closed, its lock released: a new Warden on the same data directory
    // starts, and its sweep removes what was left (in the background: bounded on failure
    // only).
    let setup = w.stop_and_take_setup().await;
    let mut again = setup.spawn().unwrap();
    again
        .wait_ready(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", again.output()));
    assert!(
        gone_within(&home, Duration::from_secs(120)).await,
        "{}",
        again.output()
    );
    let mut lock = home.clone().into_os_string();
    lock.push(".lock");
    assert!(!std::path::Path::new(&lock).exists());
}

/// Whether `path` is gone within `within` (a bound on failure only).
async fn gone_within(path: &Path, within: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    while path.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    !path.exists()
}

#[tokio::test]
async fn a_start_is_ready_without_waiting_for_the_sweep_of_what_an_unclean_stop_left() {
    use std::time::Duration;
    let setup = builder(probe(json!({}))).write().unwrap();
    // A process's directory left by a Warden that was killed (its lock free), holding what an
    // `npx` downloads: 200 000 files.
    let home = setup.data_dir.join("mcp-servers/probe");
    let stale = home.join(format!("run-{}-{}", "a".repeat(32), "b".repeat(32)));
    for d in 0..200 {
        let dir = stale.join(format!("tmp/.npm/d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::File::create(dir.join(format!("f{f}"))).unwrap();
        }
    }
    let lock = home.join(format!("run-{}-{}.lock", "a".repeat(32), "b".repeat(32)));
    std::fs::write(&lock, "").unwrap();
    let mut w = setup.spawn().unwrap();
    w.wait_ready(Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", w.output()));
    // Ready while the sweep still removes it (removing 200 000 files takes seconds; the
    // directory itself goes last).
    assert!(
        stale.exists(),
        "Warden was ready only once the sweep had removed the directory:\n{}",
        w.output()
    );
    assert!(
        gone_within(&stale, Duration::from_secs(120)).await,
        "{}",
        w.output()
    );
    assert!(!lock.exists());
    let swept = "removed directories left by local MCP server processes";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !w.output().contains(swept) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.output().contains(swept), "{}", w.output());
}

/// Whether the heartbeat in `path` changes within 30 s (a bound on failure only).
async fn beating(path: &Path) -> bool {
    let first = std::fs::read_to_string(path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if !now.is_empty() && now != first {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// Whether the heartbeat in `path` (every 100 ms) stops within 30 s: it did not change for
/// 2 s.
async fn stopped(path: &Path) -> bool {
    use std::time::{Duration, Instant};
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = std::fs::read_to_string(path).unwrap_or_default();
    let mut since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = std::fs::read_to_string(path).unwrap_or_default();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_secs(2) {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn ending_a_session_ends_the_processes_its_server_left_behind() {
    let beats = tempfile::tempdir().unwrap();
    let w = builder(probe(json!({"write": [beats.path()]})))
        .start()
        .await
        .expect("warden starts");
    let agent = w.token("e2e-agent").await.unwrap();
    let session = mcp::initialize_raw(&w, "/mcp/tools", &agent).await.unwrap();
    let path = beats.path().join("beat");
    // A child the server does not wait for, as `npx` leaves node running: its stdio its own
    // (no end of stdin tells it to stop), SIGTERM ignored.
    let started = call_raw(
        &w,
        &agent,
        &session,
        2,
        "probe_heartbeat",
        json!({"path": path, "ignore_term": true}),
    )
    .await;
    assert_eq!(started["ok"], true, "{started}");
    assert!(beating(&path).await, "the server's child never beat");
    let status = mcp::end_session(&w, "/mcp/tools", &agent, &session)
        .await
        .unwrap();
    assert!((200..300).contains(&status), "DELETE answered {status}");
    assert!(
        stopped(&path).await,
        "the server's child outlived its session:\n{}",
        w.output()
    );
}

/// Warden with the probe under `network: egress`, writing in `dir`, allowed to reach
/// 127.0.0.1 through its proxy; a revocation seen within 50 ms.
async fn egress_probe(dir: &Path) -> Warden {
    builder(probe(json!({"network": "egress", "write": [dir]})))
        .policy("local-egress.cedar", LOCAL_EGRESS)
        .set("/identity/warden_issuer/refresh_interval", json!("50ms"))
        .start()
        .await
        .expect("warden starts")
}

/// In a session of `agent`'s, has the probe start a process of its own session (`setsid`,
/// so that it outlives the server's process group) holding a tunnel to `origin` open
/// through the proxy, after one TLS request in it; the session and the file where that
/// process says `closed` once the tunnel is closed.
async fn hold_tunnel(
    w: &Warden,
    agent: &str,
    dir: &Path,
    origin: &warden_e2e::egress::Origin,
    pki: &warden_e2e::egress::Pki,
) -> (String, std::path::PathBuf) {
    let session = mcp::initialize_raw(w, "/mcp/tools", agent).await.unwrap();
    let status = dir.join("tunnel");
    let url = format!("https://127.0.0.1:{}/held", origin.addr.port());
    let held = call_raw(
        w,
        agent,
        &session,
        2,
        "probe_hold_tunnel",
        json!({"url": url, "ca": pki.ca_pem, "status": status}),
    )
    .await;
    assert_eq!(held["status"], "open 200", "{held}");
    (session, status)
}

/// Whether the tunnel-holding process wrote `closed` in `status` within 30 s (a bound on
/// failure only).
async fn tunnel_closed(status: &Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if std::fs::read_to_string(status).is_ok_and(|s| s.starts_with("closed")) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// The outcome record of the probe's tunnel, whose error starts with `cut`.
async fn tunnel_outcome(w: &Warden, cut: &str) -> Value {
    w.wait_for_audit(std::time::Duration::from_secs(10), |r| {
        r["kind"] == "outcome"
            && r["action"] == "egress:connect"
            && r["outcome"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with(cut))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", w.output()))
}

#[tokio::test]
async fn a_local_server_s_tunnel_is_cut_once_its_session_s_token_is_revoked() {
    use warden_e2e::egress::{Origin, Pki};
    let pki = Pki::new();
    let origin = Origin::start([127, 0, 0, 1].into(), 0, Some(pki.server(&["127.0.0.1"])))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = egress_probe(dir.path()).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let (_session, status) = hold_tunnel(&w, &agent, dir.path(), &origin, &pki).await;
    let out = w
        .cli(&[
            "token",
            "revoke",
            "--token",
            &agent,
            "--reason",
            "leaked in a CI log",
            "--as",
            "bob",
        ])
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        tunnel_closed(&status).await,
        "the tunnel stays open after the token of its session was revoked:\n{}",
        w.output()
    );
    // Cut for the revocation (before its process, the session's too, ended), the reason
    // recorded.
    let record = tunnel_outcome(&w, "cut: its token was revoked").await;
    assert_eq!(record["principal"]["id"], "e2e-agent", "{record}");
    assert!(
        record.to_string().contains("leaked in a CI log"),
        "{record}"
    );
    assert!(!record.to_string().contains(&agent), "no token is recorded");
}

#[tokio::test]
async fn a_local_server_s_tunnel_is_cut_once_its_process_ends() {
    use warden_e2e::egress::{Origin, Pki};
    let pki = Pki::new();
    let origin = Origin::start([127, 0, 0, 1].into(), 0, Some(pki.server(&["127.0.0.1"])))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let w = egress_probe(dir.path()).await;
    let agent = w.token("e2e-agent").await.unwrap();
    let (session, status) = hold_tunnel(&w, &agent, dir.path(), &origin, &pki).await;
    // The session ends: its process ends, and the tunnel held by a process that left its
    // group is closed with the process's listener.
    let ended = mcp::end_session(&w, "/mcp/tools", &agent, &session)
        .await
        .unwrap();
    assert!((200..300).contains(&ended), "DELETE answered {ended}");
    assert!(
        tunnel_closed(&status).await,
        "the tunnel stays open after the process it served ended:\n{}",
        w.output()
    );
    let record = tunnel_outcome(&w, "closed: the MCP server's process it served ended").await;
    assert_eq!(record["principal"]["id"], "e2e-agent", "{record}");
    let metrics = w.metrics().await.unwrap();
    assert!(
        metrics.contains(r#"warden_egress_tunnels_total{result="egress_process_ended"} 1"#),
        "{metrics}"
    );
}

/// `socket` received nothing before a marker the test sends it now.
fn nothing_but_a_marker(socket: &std::net::UdpSocket) {
    let to = socket.local_addr().unwrap();
    let from = std::net::UdpSocket::bind((to.ip(), 0)).unwrap();
    from.send_to(b"marker", to).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("the marker arrives");
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "marker",
        "a datagram of the probe's reached {to}"
    );
    socket.set_nonblocking(true).unwrap();
    assert_eq!(
        socket.recv(&mut buf).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}
