//! The sandbox against the running kernel: a shell started in it tries what a hostile server
//! would.

use super::*;

/// Runs `script` with `sh` in `sandbox`; its stdout, or why it could not start.
async fn run_in(sandbox: &Sandbox, script: &str) -> Result<String, SandboxError> {
    let prepared = sandbox.prepare("sh")?;
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
        protected: Arc::from(Vec::new()),
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
    match run_in(&s, &script).await {
        Ok(out) => {
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
        // A kernel without Landlock ABI 6 refuses the start, saying how to opt out.
        Err(e) => {
            assert!(kernel_abi() < NEEDED_ABI, "{e}");
            assert!(e.to_string().contains("mcp.sandbox.mode: off"), "{e}");
        }
    }
}

#[tokio::test]
async fn tcp_connections_are_limited_to_the_listed_ports() {
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
    let listed = run_in(&sandbox(root.path(), Network::Ports(vec![open])), &script).await;
    let Ok(listed) = listed else {
        assert!(kernel_abi() < NEEDED_ABI);
        return;
    };
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
}

#[test]
fn a_listed_path_that_does_not_exist_is_named() {
    let root = layout();
    let mut s = sandbox(root.path(), Network::Any);
    s.read.push(root.path().join("missing"));
    match s.prepare("sh") {
        Err(SandboxError::Path { path, .. }) => assert!(path.ends_with("missing")),
        Err(SandboxError::Unsupported { .. }) => assert!(kernel_abi() < NEEDED_ABI),
        other => panic!("{other:?}"),
    }
}
