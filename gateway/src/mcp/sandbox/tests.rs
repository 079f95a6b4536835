//! The sandbox against the running kernel: a shell started in it tries what a hostile server
//! would. These tests need Landlock ABI 6 (Linux 6.12 or later, as CI has): on an older kernel
//! they fail, unless `WARDEN_TEST_ALLOW_NO_LANDLOCK=1` has them say they skipped.

use super::*;
use std::time::Duration;

/// Whether this kernel has Landlock ABI 6; without, a test fails unless told to skip.
fn landlock() -> bool {
    let abi = kernel_abi();
    if abi >= NEEDED_ABI {
        return true;
    }
    if std::env::var("WARDEN_TEST_ALLOW_NO_LANDLOCK").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: this kernel {}, the sandbox needs ABI {NEEDED_ABI}; nothing was tested",
            kernel::found(abi)
        );
        return false;
    }
    panic!(
        "this kernel {}, and the sandbox tests need Landlock ABI {NEEDED_ABI} (Linux 6.12 or \
         later): run them on such a kernel, or set WARDEN_TEST_ALLOW_NO_LANDLOCK=1 to skip them",
        kernel::found(abi)
    );
}

/// `program` run from Warden's working directory and `PATH`.
fn exec(program: &str) -> Exec<'_> {
    Exec {
        program,
        cwd: None,
        path: std::env::var_os("PATH"),
    }
}

/// Runs `script` with `sh` in `sandbox`; its stdout, or why it could not start.
async fn run_in(sandbox: &Sandbox, script: &str) -> Result<String, SandboxError> {
    run_on(sandbox, script, kernel_abi()).await
}

/// [`run_in`] as on a kernel of Landlock ABI `abi`.
async fn run_on(sandbox: &Sandbox, script: &str, abi: i32) -> Result<String, SandboxError> {
    let prepared = sandbox.prepare_on(&exec("sh"), abi, netns::available())?;
    let mut command = tokio::process::Command::new("sh");
    command.arg("-c").arg(script).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    // The process's own directory lives until it has ended.
    let _run = prepared.apply(&mut command);
    let out = command.output().await.expect("sh runs");
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn sandbox(root: &Path, network: Network) -> Sandbox {
    Sandbox {
        read: vec![root.join("shared")],
        write: Vec::new(),
        network,
        home: root.join("data").join(SERVERS_DIR).join("s"),
        mode: SandboxMode::Enforce,
        unix_sockets: false,
        protected: Arc::from(Vec::new()),
        egress_max_connections: super::config::DEFAULT_EGRESS_MAX_CONNECTIONS,
    }
}

/// The directories of a test: `shared` (listed) with a file, `data` with a secret.
fn layout() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(root.path().join("shared")).unwrap();
    std::fs::write(root.path().join("shared/doc"), "shared-doc").unwrap();
    std::fs::create_dir_all(root.path().join("data")).unwrap();
    std::fs::write(root.path().join("data/key"), "secret-key").unwrap();
    root
}

#[tokio::test]
async fn a_sandboxed_process_reads_what_it_is_allowed_and_nothing_of_warden_s() {
    if !landlock() {
        return;
    }
    let root = layout();
    let s = sandbox(root.path(), Network::Any);
    let script = format!(
        "cat {r}/shared/doc; echo; cat {r}/data/key || echo key-denied; \
         cat /proc/$PPID/environ >/dev/null 2>&1 || echo environ-denied; \
         cat /etc/shadow >/dev/null 2>&1 || echo shadow-denied; \
         echo mine > $HOME/f && cat $HOME/f; echo t > $TMPDIR/t && echo tmp-ok; \
         kill -0 $PPID 2>/dev/null || echo signal-denied",
        r = root.path().display()
    );
    let out = run_in(&s, &script).await.unwrap();
    for expected in [
        "shared-doc",
        "key-denied",
        "environ-denied",
        "shadow-denied",
        "mine",
        "tmp-ok",
        "signal-denied",
    ] {
        assert!(out.contains(expected), "{expected} missing in {out:?}");
    }
    assert!(!out.contains("secret-key"), "{out}");
    let mode = std::fs::metadata(&s.home).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn enforce_on_an_older_kernel_refuses_the_start_saying_how_to_opt_out() {
    let root = layout();
    let s = sandbox(root.path(), Network::Any);
    for abi in [0, 5] {
        match s.prepare_on(&exec("sh"), abi, netns::available()) {
            Err(e @ SandboxError::Unsupported { .. }) => {
                let e = e.to_string();
                assert!(e.contains("best_effort") && e.contains("off"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A node script in `dir` that connects to the Unix socket at its argument, then talks to a
/// child over the IPC channel Node makes with `socketpair`; it prints what worked.
fn unix_probe(dir: &Path) -> PathBuf {
    let script = dir.join("unix.js");
    std::fs::write(
        &script,
        r#"const net = require("net");
const { spawn } = require("child_process");
const s = net.connect(process.argv[2]);
s.on("connect", () => { console.log("unix-connected"); s.destroy(); pair(); });
s.on("error", (e) => { console.log("unix-" + e.code); pair(); });
function pair() {
  const c = spawn(process.execPath, ["-e", "process.send('pair-ok', () => process.exit(0))"],
    { stdio: ["pipe", "pipe", "pipe", "ipc"] });
  c.on("message", (m) => console.log(m));
  c.on("error", (e) => { console.log("spawn-" + e.code); process.exit(0); });
  c.on("exit", () => process.exit(0));
}
"#,
    )
    .unwrap();
    script
}

#[tokio::test]
async fn a_sandboxed_process_cannot_reach_a_unix_socket_unless_allowed() {
    if !landlock() {
        return;
    }
    let root = layout();
    let script = unix_probe(&root.path().join("shared"));
    let listening = tempfile::tempdir().unwrap();
    let socket = listening.path().join("daemon.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let run = format!("node {} {}", script.display(), socket.display());
    let mut s = sandbox(root.path(), Network::Any);
    let out = run_in(&s, &run).await.unwrap();
    assert!(out.contains("unix-EACCES"), "{out}");
    // A connected pair of its own (Node's IPC with its children) still works.
    assert!(out.contains("pair-ok"), "{out}");
    s.unix_sockets = true;
    let out = run_in(&s, &run).await.unwrap();
    assert!(out.contains("unix-connected"), "{out}");
    assert!(out.contains("pair-ok"), "{out}");
    drop(listener);
}

#[tokio::test]
async fn tcp_connections_are_limited_to_the_listed_ports() {
    if !landlock() {
        return;
    }
    let root = layout();
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (open, other) = (
        open.local_addr().unwrap().port(),
        other.local_addr().unwrap().port(),
    );
    // bash's /dev/tcp would need bash; python or node may be absent: `nc`-free probes
    // through the shell are not portable, so use node, which the MCP tests need anyway.
    let script = format!(
        "for p in {open} {other}; do node -e \"require('net').connect({{port: $p, host: '127.0.0.1'}}).on('connect', () => {{ console.log('connected-' + $p); process.exit(0) }}).on('error', e => {{ console.log('refused-' + $p + '-' + e.code); process.exit(0) }})\"; done"
    );
    let listed = run_in(&sandbox(root.path(), Network::Ports(vec![open])), &script)
        .await
        .unwrap();
    assert!(listed.contains(&format!("connected-{open}")), "{listed}");
    assert!(
        listed.contains(&format!("refused-{other}-EACCES")),
        "{listed}"
    );
    let none = run_in(&sandbox(root.path(), Network::None), &script)
        .await
        .unwrap();
    assert!(none.contains(&format!("refused-{open}-EACCES")), "{none}");
    let any = run_in(&sandbox(root.path(), Network::Any), &script)
        .await
        .unwrap();
    assert!(any.contains(&format!("connected-{other}")), "{any}");
    // best_effort on a kernel of ABI 3 keeps its file rules but has no TCP rules nor scopes.
    let mut s = sandbox(root.path(), Network::None);
    s.mode = SandboxMode::BestEffort;
    let older = format!(
        "{script}; cat {r}/data/key || echo key-denied; kill -0 $PPID && echo signal-sent",
        r = root.path().display()
    );
    let out = run_on(&s, &older, 3).await.unwrap();
    assert!(out.contains(&format!("connected-{open}")), "{out}");
    assert!(
        out.contains("key-denied") && !out.contains("secret-key"),
        "{out}"
    );
    assert!(out.contains("signal-sent"), "{out}");
    // On the kernel itself, best_effort is the whole sandbox.
    let out = run_in(&s, &older).await.unwrap();
    assert!(out.contains(&format!("refused-{open}-EACCES")), "{out}");
    assert!(!out.contains("signal-sent"), "{out}");
}

#[test]
fn a_listed_path_that_does_not_exist_is_named() {
    if !landlock() {
        return;
    }
    let root = layout();
    let mut s = sandbox(root.path(), Network::Any);
    s.read.push(root.path().join("missing"));
    match s.prepare(&exec("sh")) {
        Err(SandboxError::Path { path, .. }) => assert!(path.ends_with("missing")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_program_is_found_from_the_child_s_cwd_and_path() {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let server = bin.join("server");
    std::fs::write(&server, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&server, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cwd = Some(root.path());
    // A relative path, from the child's working directory, not Warden's.
    let relative = Exec {
        program: "bin/server",
        cwd,
        path: None,
    };
    assert_eq!(resolve_program(&relative), Some(server.clone()));
    // A name, on the child's PATH (a relative entry from its working directory).
    for path in [
        "/nonexistent:bin",
        &format!("/nonexistent:{}", bin.display()),
    ] {
        let named = Exec {
            program: "server",
            cwd,
            path: Some(path.into()),
        };
        assert_eq!(resolve_program(&named), Some(server.clone()), "{path}");
    }
    let elsewhere = Exec {
        program: "server",
        cwd: None,
        path: Some("/nonexistent".into()),
    };
    assert_eq!(resolve_program(&elsewhere), None);
}

/// Whether this system lets Warden's user make the namespaces of `network: egress`; without,
/// a test fails unless told to skip, as without Landlock.
fn namespaces() -> bool {
    match netns::available() {
        Ok(()) => true,
        Err(_) if std::env::var("WARDEN_TEST_ALLOW_NO_LANDLOCK").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: no unprivileged user namespaces here; nothing was tested");
            false
        }
        Err(why) => panic!("network: egress needs user namespaces, refused here: {why}"),
    }
}

#[tokio::test]
async fn network_egress_reaches_nothing_but_the_listener_it_hands_warden() {
    use tokio::io::AsyncReadExt as _;
    if !landlock() || !namespaces() {
        return;
    }
    let root = layout();
    let s = sandbox(root.path(), Network::Egress);
    // A listener of the test's own, on Warden's loopback: not the process's.
    let outside = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = outside.local_addr().unwrap().port();
    // UDP sockets of the test's own on both loopbacks: Landlock filters no UDP, so only the
    // namespace keeps the process's datagrams from them.
    let udp4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp6 = std::net::UdpSocket::bind("[::1]:0").ok();
    let u4 = udp4.local_addr().unwrap().port();
    let u6 = udp6.as_ref().map_or(0, |s| s.local_addr().unwrap().port());
    let script = format!(
        "read go; echo \"env=$HTTPS_PROXY $https_proxy $HTTP_PROXY $http_proxy $ALL_PROXY $all_proxy \
         node=$NODE_USE_ENV_PROXY no=[$NO_PROXY$no_proxy]\"; \
         (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null && echo outside-reached || echo outside-refused; \
         (echo from-the-process >/dev/udp/127.0.0.1/{u4}) 2>/dev/null; \
         (echo from-the-process >/dev/udp/::1/{u6}) 2>/dev/null; \
         (exec 3<>/dev/tcp/93.184.215.14/{p}) 2>/dev/null && echo public-reached || echo public-refused; \
         getent ahosts example.com >/dev/null 2>&1 && echo dns-resolved || echo dns-failed; \
         (exec 3<>/dev/tcp/127.0.0.1/{p}; echo through-the-proxy >&3) && echo proxy-reached",
        p = netns::PROXY_PORT
    );
    let prepared = s.prepare(&exec("bash")).unwrap();
    let mut command = tokio::process::Command::new("bash");
    command.arg("-c").arg(script).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::piped());
    let mut entered = prepared.apply(&mut command);
    let mut child = command.spawn().expect("bash runs");
    let listener = entered
        .listener()
        .unwrap()
        .expect("the listener is handed over");
    // The program (waiting for its go) holds no copy of it: the listener is Warden's alone.
    use std::os::fd::AsRawFd as _;
    let socket = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
    let pid = child.id().unwrap();
    let held: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .collect();
    assert!(!held.is_empty() && !held.contains(&socket), "{held:?}");
    {
        use tokio::io::AsyncWriteExt as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
    }
    assert_eq!(
        listener.local_addr().unwrap(),
        std::net::SocketAddr::from(([127, 0, 0, 1], netns::PROXY_PORT))
    );
    // Taken once.
    assert!(entered.listener().unwrap().is_none());
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let accepted = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).await.unwrap();
        got
    });
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the script ends")
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    // The script has ended: had a datagram of its reached a socket, it would be queued there
    // before the test's own marker, sent now from outside.
    nothing_but_a_marker(&udp4);
    if let Some(udp6) = &udp6 {
        nothing_but_a_marker(udp6);
    }
    let url = format!("http://127.0.0.1:{}", netns::PROXY_PORT);
    assert!(
        out.contains(&format!(
            "env={url} {url} {url} {url} {url} {url} node=1 no=[]"
        )),
        "{out}"
    );
    for expected in [
        "outside-refused",
        "public-refused",
        "dns-failed",
        "proxy-reached",
    ] {
        assert!(out.contains(expected), "{expected} missing in {out:?}");
    }
    let got = tokio::time::timeout(Duration::from_secs(10), accepted)
        .await
        .expect("the process's connection reaches Warden's listener")
        .unwrap();
    assert_eq!(got, "through-the-proxy\n");
    drop(outside);
}

/// `socket` received nothing before a marker the test sends it now.
fn nothing_but_a_marker(socket: &std::net::UdpSocket) {
    let to = socket.local_addr().unwrap();
    let from = std::net::UdpSocket::bind((to.ip(), 0)).unwrap();
    from.send_to(b"marker", to).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("the marker arrives");
    assert_eq!(
        String::from_utf8_lossy(&buf[..n]),
        "marker",
        "a datagram of the process's reached {to}"
    );
    socket.set_nonblocking(true).unwrap();
    assert_eq!(
        socket.recv(&mut buf).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
}

#[test]
fn network_egress_without_namespaces_runs_without_network_under_best_effort_only() {
    let root = layout();
    let mut s = sandbox(root.path(), Network::Egress);
    match s.channel(Err("Operation not permitted".into())) {
        Err(e @ SandboxError::Namespaces { .. }) => {
            let e = e.to_string();
            assert!(
                e.contains("Operation not permitted") && e.contains("best_effort"),
                "{e}"
            );
        }
        other => panic!("{other:?}"),
    }
    s.mode = SandboxMode::BestEffort;
    assert!(s.channel(Err("no".into())).unwrap().is_none());
    assert!(s.channel(Ok(())).unwrap().is_some());
    s.network = Network::None;
    assert!(s.channel(Ok(())).unwrap().is_none());
}

#[tokio::test]
async fn network_egress_without_namespaces_under_best_effort_has_no_network_at_all() {
    let root = layout();
    let mut s = sandbox(root.path(), Network::Egress);
    s.mode = SandboxMode::BestEffort;
    // Listeners of the test's own: TCP (which Landlock from ABI 4 would refuse anyway) and
    // UDP (which nothing but the seccomp filter keeps the process from).
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp6 = std::net::UdpSocket::bind("[::1]:0").ok();
    let script = format!(
        "(exec 3<>/dev/tcp/127.0.0.1/{t}) 2>/dev/null && echo tcp-reached || echo tcp-refused; \
         (echo from-the-process >/dev/udp/127.0.0.1/{u4}) 2>/dev/null && echo udp-sent; \
         (echo from-the-process >/dev/udp/::1/{u6}) 2>/dev/null && echo udp6-sent; \
         echo done",
        t = tcp.local_addr().unwrap().port(),
        u4 = udp4.local_addr().unwrap().port(),
        u6 = udp6.as_ref().map_or(0, |s| s.local_addr().unwrap().port()),
    );
    let prepared = s
        .prepare_on(
            &exec("bash"),
            kernel_abi(),
            Err("not on this system".into()),
        )
        .unwrap();
    let mut command = tokio::process::Command::new("bash");
    command.arg("-c").arg(script).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let _run = prepared.apply(&mut command);
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("bash ends")
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out, "tcp-refused\ndone\n");
    nothing_but_a_marker(&udp4);
    if let Some(udp6) = &udp6 {
        nothing_but_a_marker(udp6);
    }
}

#[tokio::test]
async fn a_sandboxed_process_cannot_remove_nor_replace_its_directory_s_lock() {
    if !landlock() {
        return;
    }
    let root = layout();
    let s = sandbox(root.path(), Network::Any);
    let prepared = s.prepare(&exec("sh")).unwrap();
    let mut command = tokio::process::Command::new("sh");
    let script = "rm -f \"$HOME.lock\" 2>/dev/null; echo x > \"$HOME.lock\" 2>/dev/null; \
                  mv \"$HOME\" \"$HOME.moved\" 2>/dev/null; echo done";
    command.arg("-c").arg(script).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let entered = prepared.apply(&mut command);
    let lock = {
        let mut p = entered.run().path().as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    };
    let before = std::fs::metadata(&lock).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("sh ends")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    let after = std::fs::metadata(&lock).expect("the lock is still there");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!((before.ino(), after.len()), (after.ino(), 0));
    assert!(entered.run().path().exists());
}
