//! A local server's process and its descendants, ended together: the process Warden starts
//! leads a session and process group of its own (`setsid` before exec, `sandbox/child.rs`),
//! which its children join unless they leave it. Warden ends the process by signalling the
//! whole group: `SIGTERM`, at most [`STOP_GRACE`] for the process to exit, then `SIGKILL`,
//! and only then reaps the process; a group whose process exited on its own (its stdout
//! closed) gets the `SIGKILL`. Dropped before that (its session's task aborted, a worker's
//! runtime stopping), it kills the group at once.
//!
//! The group's id is the process's pid, which cannot be given to another process while the
//! process is unreaped: every signal to the group is sent before the reaping. A descendant
//! that left the group (`setsid`, `setpgid`) is not reached; `docs/tools.md` says what still
//! confines it.

use std::time::{Duration, Instant};

use tokio::process::Child;

/// How long a process has to exit after `SIGTERM` before its group is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often Warden looks whether the process has exited, while it waits for it.
const POLL: Duration = Duration::from_millis(10);

/// A local server's process, leading its own process group, which is ended with it.
#[derive(Debug)]
pub struct ProcessGroup {
    child: Child,
    /// Whether the process leads its group (it should: `setsid` before exec). When it does
    /// not, signals go to the process alone: a signal to a group it does not lead would find
    /// none (ESRCH) and leave it running, and its reaping waiting for ever.
    leads: bool,
}

impl ProcessGroup {
    /// `child`, started as the leader of a process group of its own.
    pub fn new(child: Child) -> ProcessGroup {
        let leads = child.id().is_some_and(leads_its_group);
        ProcessGroup { child, leads }
    }

    /// The process (its stdio to take).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Ends the process and its group: `SIGTERM` to the group, at most `grace` for the
    /// process to exit, `SIGKILL` to what is left of the group; then reaps the process. How
    /// it ended.
    pub async fn stop(&mut self, grace: Duration) -> String {
        if let Some(pid) = self.child.id() {
            signal(pid, self.leads, libc::SIGTERM);
            exited_within(pid, grace).await;
        }
        self.reap().await
    }

    /// The process ended on its own (its stdout closed): waits at most `grace` for it to
    /// exit, kills what is left of its group, reaps it. How it ended.
    pub async fn ended(&mut self, grace: Duration) -> String {
        if let Some(pid) = self.child.id() {
            exited_within(pid, grace).await;
        }
        self.reap().await
    }

    /// Kills the group (the process, if it still runs, and every descendant in the group)
    /// and the process itself (whichever group it is in), then reaps the process.
    async fn reap(&mut self) -> String {
        if let Some(pid) = self.child.id() {
            signal(pid, self.leads, libc::SIGKILL);
            signal(pid, false, libc::SIGKILL);
        }
        self.child
            .wait()
            .await
            .map_or_else(|e| e.to_string(), |s| s.to_string())
    }
}

impl Drop for ProcessGroup {
    /// Unreaped: the group killed at once (the process is then killed and reaped by the
    /// runtime, `kill_on_drop`).
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            signal(pid, self.leads, libc::SIGKILL);
        }
    }
}

/// Whether the process `pid` (a child, unreaped) leads its process group.
fn leads_its_group(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: a plain system call.
    unsafe { libc::getpgid(pid) == pid }
}

/// Sends `sig` to the process group `pid` leads (`group`), or to the process `pid` alone.
/// Called only while the process `pid` is unreaped, so the pid (and the group) is its.
fn signal(pid: u32, group: bool, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    // Never 0 nor 1: `kill(0)` would signal Warden's own group, `kill(-1)` every process.
    if pid <= 1 {
        return;
    }
    let target = if group { -pid } else { pid };
    // SAFETY: a plain system call; a process or group already gone (ESRCH) is no error.
    unsafe { libc::kill(target, sig) };
}

/// Waits at most `within` for the process `pid` to have exited, without reaping it.
async fn exited_within(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if exited(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the child `pid` has exited (a zombie), leaving it to be reaped.
fn exited(pid: u32) -> bool {
    // SAFETY: an all-zero `siginfo_t` is valid; `waitid` fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid buffer; WNOWAIT leaves the child unreaped, WNOHANG does not
    // wait.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // Not a child of Warden's any more (reaped): it has exited.
    if r != 0 {
        return true;
    }
    // SAFETY: `waitid` succeeded, so `si_pid` is set (0 when the child still runs).
    unsafe { info.si_pid() != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell leading its own group that starts `sleep` in the background (in its group,
    /// not waited for) and writes the sleeper's pid on stdout, `trap`ping `SIGTERM` or not.
    async fn shell_with_a_child(ignore_term: bool) -> (ProcessGroup, libc::pid_t) {
        use tokio::io::AsyncBufReadExt as _;
        let trap = if ignore_term { "trap '' TERM; " } else { "" };
        let script = format!("{trap}sleep 300 & echo $!; wait");
        let mut command = tokio::process::Command::new("sh");
        command
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        crate::mcp::sandbox::harden(&mut command);
        let mut group = ProcessGroup::new(command.spawn().unwrap());
        let stdout = group.child().stdout.take().unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .unwrap();
        (group, line.trim().parse().unwrap())
    }

    /// Whether `pid` is gone (or a zombie), waiting at most 10 s.
    fn gone(pid: libc::pid_t) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state follows the command's closing parenthesis.
            let zombie = state
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            if state.is_empty() || zombie {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[tokio::test]
    async fn stopping_a_process_ends_the_children_it_left_in_its_group() {
        let (mut group, sleeper) = shell_with_a_child(false).await;
        let status = group.stop(STOP_GRACE).await;
        assert!(status.contains("signal: 15"), "{status}");
        assert!(gone(sleeper), "the shell's child outlived it");
    }

    #[tokio::test]
    async fn a_group_that_ignores_sigterm_is_killed_after_the_grace() {
        let (mut group, sleeper) = shell_with_a_child(true).await;
        let started = Instant::now();
        let status = group.stop(Duration::from_millis(300)).await;
        assert!(status.contains("signal: 9"), "{status}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(gone(sleeper), "the shell's child outlived it");
    }

    /// A process that does not lead a group of its own (started without `setsid`, in the
    /// test's group) is still ended and reaped: signalled itself, not through a group it
    /// does not lead.
    #[tokio::test]
    async fn a_process_that_does_not_lead_its_group_is_still_stopped_and_reaped() {
        let child = tokio::process::Command::new("sleep")
            .arg("300")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = libc::pid_t::try_from(child.id().unwrap()).unwrap();
        let mut group = ProcessGroup::new(child);
        assert!(!group.leads);
        let status = tokio::time::timeout(
            Duration::from_secs(10),
            group.stop(Duration::from_millis(300)),
        )
        .await
        .expect("stopping a process outside a group of its own hung");
        assert!(status.contains("signal: 15"), "{status}");
        assert!(gone(pid));
        // Led or not, the reaping kills the process itself.
        let child = tokio::process::Command::new("sleep")
            .arg("300")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut group = ProcessGroup::new(child);
        group.leads = true;
        let status = tokio::time::timeout(Duration::from_secs(10), group.reap())
            .await
            .expect("reaping a process outside a group of its own hung");
        assert!(status.contains("signal: 9"), "{status}");
    }

    #[tokio::test]
    async fn dropping_an_unreaped_process_kills_its_group() {
        let (group, sleeper) = shell_with_a_child(true).await;
        drop(group);
        assert!(gone(sleeper), "the shell's child outlived it");
    }
}
