//! The process's own hardening: Warden holds secrets in memory (provider keys, Vault leases,
//! its signing key), so it never writes a core dump and other processes of its user cannot
//! attach to it or read its memory through `/proc`; and a write past its file size limit
//! fails as a write, without killing it.

/// Switches off core dumps (the limit to zero, and the process not dumpable). Failures are
/// logged, never fatal: a system that forbids the call forbids what it guards against too.
pub fn no_core_dumps() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let zero = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = setrlimit(Resource::Core, zero) {
        tracing::warn!(error = %e, "cannot switch off core dumps (RLIMIT_CORE)");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "cannot mark the process not dumpable (PR_SET_DUMPABLE)");
    }
}

/// Ignores `SIGXFSZ`, so that a write past the file size limit (`RLIMIT_FSIZE`, systemd's
/// `LimitFSIZE=`, a container's `ulimit -f`) fails with `EFBIG` as a full disk fails it: the
/// audit log then fails closed and recovers once writes fit again, where the signal's default
/// action would end the process in the middle of its requests.
pub fn failed_writes_do_not_kill() {
    // SAFETY: sets one signal's disposition to SIG_IGN; no handler, no memory is touched.
    let previous = unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot ignore SIGXFSZ: a write past RLIMIT_FSIZE ends the process");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_write_past_the_file_size_limit_does_not_signal_the_process() {
        super::failed_writes_do_not_kill();
        // SAFETY: reads the disposition into a zeroed sigaction; sets nothing.
        let disposition = unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            assert_eq!(
                libc::sigaction(libc::SIGXFSZ, std::ptr::null(), &mut current),
                0
            );
            current.sa_sigaction
        };
        assert_eq!(disposition, libc::SIG_IGN);
    }

    #[test]
    fn core_dumps_are_off_afterwards() {
        super::no_core_dumps();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((limit.current, limit.maximum), (Some(0), Some(0)));
        #[cfg(target_os = "linux")]
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }
}
