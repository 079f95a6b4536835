//! What a local server's process does between fork and exec. Only system calls, no
//! allocation, no lock: the child of a multithreaded parent may run nothing else.

use std::io;

use landlock::RulesetCreated;
use seccompiler::BpfProgram;

/// The last capability number Warden drops from the bounding set (more than Linux has).
const LAST_CAP: libc::c_ulong = 63;
/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `CLOSE_RANGE_CLOEXEC`.
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// What a sandboxed child enters, built before the fork.
#[derive(Debug)]
pub struct Confinement {
    /// Its Landlock domain; `None` only under `best_effort` on a kernel without Landlock.
    pub ruleset: Option<RulesetCreated>,
    /// The seccomp filter refusing it Unix sockets (and IPv4 and IPv6 ones for `network:
    /// egress` without its namespace); `None` when it refuses nothing.
    pub filter: Option<BpfProgram>,
    /// With `network: egress`: the child's end of the socket pair over which it hands Warden
    /// the listener of its own network namespace (`netns.rs`), open until the spawn returns.
    pub netns: Option<std::os::fd::RawFd>,
}

/// Sets `command`'s child up: it leads a session and process group of its own (so that
/// Warden ends it with every descendant that stayed in its group, `mcp/process_group.rs`, and
/// it has no controlling terminal), dies with Warden, writes no core dump and inherits no
/// descriptor but its stdio; with `confinement`, it also enters a network namespace of its
/// own and hands Warden its listener there (`network: egress`: before the rest, which then
/// holds in that namespace's user namespace too, and while a Unix socket may still be
/// used), drops every capability, sets `no_new_privs`, enters the Landlock domain (no TCP
/// bind, connect to the proxy's port only) and installs the seccomp filter.
pub fn confine(command: &mut tokio::process::Command, confinement: Option<Confinement>) {
    let parent = std::process::id();
    let mut confinement = confinement;
    // SAFETY: the closure makes only async-signal-safe system calls (setsid, prctl, getppid,
    // setrlimit, close_range, unshare, open, write, socket, ioctl, bind, listen, sendmsg,
    // close, capset, landlock_restrict_self, seccomp) and allocates nothing: the ruleset,
    // the filter and the socket pair were made before the fork.
    unsafe {
        command.pre_exec(move || {
            new_session()?;
            die_with_parent(parent)?;
            no_core_dump()?;
            descriptors_close_on_exec();
            if let Some(confinement) = &mut confinement {
                if let Some(channel) = confinement.netns {
                    super::netns::enter(channel)?;
                }
                drop_capabilities()?;
                no_new_privs()?;
                if let Some(ruleset) = confinement.ruleset.take() {
                    ruleset
                        .restrict_self()
                        .map_err(|_| io::Error::from_raw_os_error(libc::EPERM))?;
                }
                if let Some(filter) = &confinement.filter {
                    install(filter)?;
                }
            }
            Ok(())
        });
    }
}

/// A session and process group of its own, whose id is the process's pid: signalling the
/// group reaches its descendants too, unless one left it (`setsid`, `setpgid`).
fn new_session() -> io::Result<()> {
    // SAFETY: a plain system call; a freshly forked child leads no group, so it cannot fail
    // for that reason.
    if unsafe { libc::setsid() } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `no_new_privs`: no setuid or file capability gives the process more at exec; what a
/// seccomp filter installed without `CAP_SYS_ADMIN` needs.
fn no_new_privs() -> io::Result<()> {
    // SAFETY: a plain system call.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Installs `filter` on this process (its only thread, in the child), kept across exec; a
/// kernel that refuses it fails the start.
fn install(filter: &BpfProgram) -> io::Result<()> {
    seccompiler::apply_filter(filter).map_err(|e| match e {
        seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
        _ => io::Error::from_raw_os_error(libc::EINVAL),
    })
}

/// `SIGKILL` when the parent dies; the parent already gone (the child reparented) fails.
fn die_with_parent(parent: u32) -> io::Result<()> {
    // SAFETY: plain system calls.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if u32::try_from(unsafe { libc::getppid() }).ok() != Some(parent) {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// `RLIMIT_CORE` 0: a crash dumps none of the process's memory (its secret_env values).
fn no_core_dump() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a plain system call on a local value.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every descriptor past stdio closed at exec (Rust and tokio open theirs so already; this
/// covers those a C library opened otherwise). A kernel without `close_range` keeps them as
/// they are.
fn descriptors_close_on_exec() {
    // SAFETY: marks descriptors close-on-exec; closes none before the exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// No capability, now or after exec: the bounding set and the ambient set emptied (a program
/// run as root gets its capabilities from the bounding set), then the process's own sets.
/// Without `CAP_SETPCAP` (Warden not root) the bounding set cannot be changed, and holds
/// nothing a program gains anyway.
fn drop_capabilities() -> io::Result<()> {
    for cap in 0..=LAST_CAP {
        // SAFETY: plain system calls.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                // Past the last capability this kernel knows.
                Some(libc::EINVAL) => break,
                Some(libc::EPERM) => break,
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
    // SAFETY: plain system calls on local values.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        let mut header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let none = [CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        if libc::syscall(libc::SYS_capset, &mut header, none.as_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
