//! The seccomp filter of a sandboxed server (`filter`). Without `sandbox.unix_sockets`: no Unix socket of
//! its own making, so no `connect` to one with a path (the Docker socket, D-Bus at
//! `/run/user/<uid>/bus`, systemd's private socket, through which a root Warden's server could
//! have systemd run anything as root), which Landlock up to ABI 8 does not control.
//!
//! Refused with `EACCES`: `socket(AF_UNIX, …)`; `socketpair` of datagrams (a datagram socket
//! can `sendto` or `connect` to any socket path); `io_uring_setup` (io_uring's operations,
//! socket creation among them, pass no seccomp filter). A connected pair of stream sockets
//! (`socketpair(AF_UNIX, SOCK_STREAM)`, Node's and Python's IPC with their children) stays
//! allowed: it reaches nothing but itself. A system call of another architecture (32-bit x86
//! or Arm, x32) kills the process: its numbers are not these.
//!
//! With `network: egress` under `best_effort` where the network namespace cannot be made,
//! `socket(AF_INET | AF_INET6, …)` is refused too: the server has no network at all (Landlock
//! filters TCP only, and not at all below ABI 4).
//!
//! Built before the fork (it allocates); the child only installs it (`child.rs`).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};

/// Why the filter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error(
        "this architecture has no seccomp filter for local MCP servers (x86_64 and aarch64 have)"
    )]
    Architecture,
    #[error("cannot build the seccomp filter of local MCP servers: {0}")]
    Build(#[from] seccompiler::BackendError),
}

/// The filter, compiled for the running architecture: refusing Unix sockets unless
/// `unix_sockets`, and IPv4 and IPv6 sockets (`socket(AF_INET | AF_INET6, …)`) when `no_inet`
/// (`network: egress` under `best_effort` where the network namespace cannot be made: no
/// network at all, UDP included, which Landlock does not filter). `None` when it refuses
/// nothing.
pub fn filter(unix_sockets: bool, no_inet: bool) -> Result<Option<BpfProgram>, SeccompError> {
    if unix_sockets && !no_inet {
        return Ok(None);
    }
    let arch = if cfg!(target_arch = "x86_64") {
        TargetArch::x86_64
    } else if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        return Err(SeccompError::Architecture);
    };
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    // A socket's type with SOCK_NONBLOCK and SOCK_CLOEXEC masked off.
    let type_is = |t: libc::c_int| arg(1, SeccompCmpOp::MaskedEq(0xf), t as u64);
    let family_is = |f: libc::c_int| -> Result<SeccompRule, seccompiler::BackendError> {
        SeccompRule::new(vec![arg(0, SeccompCmpOp::Eq, f as u64)?])
    };
    let mut families = Vec::new();
    if !unix_sockets {
        families.push(family_is(libc::AF_UNIX)?);
    }
    if no_inet {
        families.push(family_is(libc::AF_INET)?);
        families.push(family_is(libc::AF_INET6)?);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = [
        (libc::SYS_socket, families),
        // io_uring makes sockets without passing the filter.
        (libc::SYS_io_uring_setup, vec![]),
    ]
    .into_iter()
    .collect();
    if !unix_sockets {
        rules.insert(
            libc::SYS_socketpair,
            vec![
                SeccompRule::new(vec![type_is(libc::SOCK_DGRAM)?])?,
                SeccompRule::new(vec![type_is(libc::SOCK_RAW)?])?,
            ],
        );
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )?;
    let mut program: BpfProgram = filter.try_into()?;
    if arch == TargetArch::x86_64 {
        refuse_x32(&mut program);
    }
    Ok(Some(program))
}

/// x32 system calls carry x86_64's architecture and their own numbers (bit 30 set): after the
/// architecture check (the program's first 3 instructions, whose jumps stay within them), such
/// a call kills the process.
fn refuse_x32(program: &mut BpfProgram) {
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    // `struct seccomp_data`: `nr` first.
    const NR_OFFSET: u32 = 0;
    let guard = [
        sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: NR_OFFSET,
        },
        sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_KILL_PROCESS,
        },
    ];
    program.splice(3..3, guard);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_builds_for_this_architecture_and_checks_it_first() {
        assert!(filter(true, false).unwrap().is_none(), "refusing nothing");
        let program = filter(false, false).unwrap().unwrap();
        // Load the architecture, compare, kill on a mismatch.
        assert_eq!(program[2].k, libc::SECCOMP_RET_KILL_PROCESS);
        if cfg!(target_arch = "x86_64") {
            assert_eq!(program[4].k, 0x4000_0000);
            assert_eq!(program[5].k, libc::SECCOMP_RET_KILL_PROCESS);
        }
    }
}
