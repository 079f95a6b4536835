//! The process's own hardening: Warden holds secrets in memory (provider keys, Vault leases,
//! its signing key), so it never writes a core dump and other processes of its user cannot
//! attach to it or read its memory through `/proc`.

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

#[cfg(test)]
mod tests {
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
