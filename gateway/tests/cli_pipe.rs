//! The command line's output into a pipe whose reader has gone (`warden policy test DIR | head`):
//! the command ends by SIGPIPE, as Unix tools do, without a panic or an error message. Any
//! other peer gone (a PostgreSQL state store over its Unix socket) is an error that says so.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Runs `warden ARGS` with its stdout a pipe whose read end is already closed, so that its
/// first write fails however fast it is, and checks that it ended by SIGPIPE, saying nothing.
fn ends_quietly_into_a_closed_pipe(args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "{stderr}");
}

fn policies() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    dir.to_str().unwrap().to_owned()
}

#[test]
fn policy_test_into_a_closed_pipe_ends_by_sigpipe_without_a_panic() {
    ends_quietly_into_a_closed_pipe(&["policy", "test", &policies()]);
}

#[test]
fn policy_validate_into_a_closed_pipe_ends_by_sigpipe_without_an_error() {
    ends_quietly_into_a_closed_pipe(&["policy", "validate", &policies()]);
}

/// A PostgreSQL server on a Unix socket that reads a client's startup message, stops reading
/// (`shutdown(SHUT_RD)`: the client's next write fails with EPIPE) and only then asks for a
/// password, which the client writes: every connection attempt writes into a closed socket.
fn server_that_stops_reading(socket: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            stream.set_nonblocking(false).unwrap();
            let mut len = [0u8; 4];
            if stream.read_exact(&mut len).is_err() {
                continue;
            }
            let mut startup = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
            if stream.read_exact(&mut startup).is_err() {
                continue;
            }
            stream.shutdown(std::net::Shutdown::Read).unwrap();
            // AuthenticationCleartextPassword: 'R', length 8, code 3.
            let _ = stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]);
            held.push(stream);
        }
    })
}

/// A behaviour pin, not a test of Warden's SIGPIPE handling: a state store on a Unix socket
/// that stops reading mid-login. The PostgreSQL client writes with `MSG_NOSIGNAL`, so this
/// passes whatever SIGPIPE's disposition is (with or without Warden's code for it); it keeps
/// the case an error that names the store and does not show the URL's password.
#[test]
fn a_state_store_that_stops_reading_mid_login_is_an_error_naming_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let server = server_that_stops_reading(&dir.path().join(".s.PGSQL.5432"), stop.clone());
    let config = dir.path().join("warden.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {}\nstate:\n  postgres:\n    url: {{ env: WARDEN_TEST_STATE_URL }}\n    connect_timeout: 2s\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let url = format!(
        "postgres://warden:secret@localhost/warden?host={}&sslmode=disable",
        dir.path().display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["state", "migrate", "--config"])
        .arg(&config)
        .env("WARDEN_TEST_STATE_URL", url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), None, "{:?}: {stderr}", out.status);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("warden: ") && stderr.contains("PostgreSQL state store"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret"), "{stderr}");
}

/// A file the command writes (`--output`) that is a pipe whose reader has gone (a process
/// substitution, `--output >(gzip > f)`, whose consumer died): an error naming the file, not a
/// silent death by SIGPIPE, which only the command's own stdout and stderr end with.
#[test]
fn an_output_file_that_is_a_closed_pipe_is_an_error_naming_it() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let tools = dir.path().join("tools.json");
    std::fs::write(
        &tools,
        r#"[{"name": "lookup", "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}}}]"#,
    )
    .unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let fd = writer.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.args(["policy", "schema", "--server", "search", "--from-mcp"])
        .arg(&tools)
        .args(["--output", "/dev/fd/3"])
        .stdin(Stdio::null());
    // SAFETY: dup2 only, between fork and exec: the pipe's write end becomes the child's fd 3.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop(writer);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), None, "{:?}: {stderr}", out.status);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write /dev/fd/3") && stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
