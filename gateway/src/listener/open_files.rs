//! The process's open-file limit: raised at start to what the system allows (`RLIMIT_NOFILE`'s
//! soft limit to its hard limit), and checked against the listeners' connection caps
//! (`listen.max_connections`), so that a listener at its cap never leaves the others, the
//! audit log or the upstream connections without file descriptors.

use super::config::MaxConnections;

/// Descriptors kept for everything besides the listeners' connections: audit segments, the
/// state store, the upstream connection pools, MCP servers' pipes, TLS and JWKS refreshes.
pub const RESERVED: u64 = 1024;

/// Raises the soft open-file limit to the hard limit (logged at debug); returns the soft limit
/// in force afterwards (`None`: unlimited).
pub fn raise() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => tracing::debug!(
                from = ?limit.current,
                to = ?limit.maximum,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            ),
            Err(e) => tracing::debug!(
                error = %e,
                soft = ?limit.current,
                hard = ?limit.maximum,
                "cannot raise the open-file limit (RLIMIT_NOFILE)"
            ),
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The descriptors the listeners may need at their caps: each connection one, an egress
/// tunnel two (it dials its destination), plus [`RESERVED`]. Listeners that are off
/// (`egress` or `console` `false`) need none.
pub fn needed(caps: &MaxConnections, egress: bool, console: bool) -> u64 {
    let caps = caps.proxy as u64
        + if egress { 2 * caps.egress as u64 } else { 0 }
        + caps.admin as u64
        + if console { caps.console as u64 } else { 0 };
    caps + RESERVED
}

/// Why `limit` open files is too few for `needed`, if it is: what to change.
pub fn shortfall(needed: u64, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    (needed > limit).then(|| {
        format!(
            "the open-file limit ({limit}) is lower than the listeners' connection caps need \
             ({needed}, listen.max_connections plus {RESERVED} kept for the rest): raise the \
             limit (ulimit -n, LimitNOFILE=, the container's nofile ulimit) or lower \
             listen.max_connections, else a flood of connections can exhaust the descriptors \
             every listener and the audit log need"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let in_force = raise();
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(in_force, limit.current);
        assert_eq!(limit.current, limit.maximum);
    }

    #[test]
    fn caps_that_do_not_fit_the_limit_are_named() {
        let caps = MaxConnections {
            proxy: 1000,
            egress: 500,
            admin: 10,
            console: 10,
        };
        assert_eq!(needed(&caps, true, true), 1000 + 1000 + 20 + RESERVED);
        assert_eq!(needed(&caps, false, false), 1000 + 10 + RESERVED);
        let need = needed(&caps, true, true);
        assert!(shortfall(need, Some(need)).is_none());
        assert!(shortfall(need, None).is_none(), "unlimited fits");
        let warning = shortfall(need, Some(need - 1)).unwrap();
        assert!(warning.contains("listen.max_connections"), "{warning}");
        assert!(warning.contains(&need.to_string()), "{warning}");
    }
}
