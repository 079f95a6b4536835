//! The command line's output into a pipe whose reader has gone (`warden policy test DIR | head`):
//! the command ends by SIGPIPE, as Unix tools do, without a panic or an error message.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};

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
