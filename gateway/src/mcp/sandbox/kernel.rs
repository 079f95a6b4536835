//! What the running kernel lets the sandbox do: the Landlock ABI it offers, what each sandbox
//! mode makes of it, and the refusal at load (`warden check`, start, reload) of a local server
//! that must run sandboxed on a kernel that cannot confine it.

use super::config::{Network, SandboxMode};
use crate::mcp::config::McpConfig;

/// The Landlock ABI the sandbox needs: filesystem rights up to `ioctl` on devices (5), TCP
/// ports (4), signal and abstract socket scopes (6).
pub const NEEDED_ABI: i32 = 6;

/// What Landlock brings, by the ABI that brought it: what a kernel of an older ABI leaves out.
const FEATURES: [(i32, &str); 4] = [
    (
        1,
        "every file rule (Landlock ABI 1, Linux 5.13): the server reads and writes what Warden's user can",
    ),
    (
        3,
        "the truncation right (ABI 3, Linux 6.2): the server can truncate any file Warden's user may write",
    ),
    (
        4,
        "the TCP port rules (ABI 4, Linux 6.7): sandbox.network is not applied",
    ),
    (
        6,
        "the signal and abstract Unix socket scopes (ABI 6, Linux 6.12): the server can signal Warden and connect to other processes' abstract sockets",
    ),
];

/// What a server's sandbox is, on a kernel of Landlock ABI `abi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// Every rule applies.
    Full,
    /// `best_effort` on an older kernel: what is left out.
    Partial(Vec<&'static str>),
    /// `enforce` on an older kernel: the server may not start.
    Refused,
    /// `off`.
    None,
}

/// What `mode` makes of a kernel of Landlock ABI `abi` (0 or less: no Landlock).
pub fn coverage(mode: SandboxMode, abi: i32) -> Coverage {
    match mode {
        SandboxMode::Off => Coverage::None,
        _ if abi >= NEEDED_ABI => Coverage::Full,
        SandboxMode::Enforce => Coverage::Refused,
        SandboxMode::BestEffort => Coverage::Partial(
            FEATURES
                .iter()
                .filter(|(since, _)| abi < *since)
                .map(|(_, what)| *what)
                .collect(),
        ),
    }
}

/// What the kernel offers, said in a sentence: "offers Landlock ABI 4" or "has no Landlock".
pub fn found(abi: i32) -> String {
    if abi <= 0 {
        "has no Landlock enabled (see /sys/kernel/security/lsm)".to_owned()
    } else {
        format!("offers Landlock ABI {abi}")
    }
}

/// `(key, message)` for each local server of `config` that must run sandboxed
/// (`enforce`) on a kernel of Landlock ABI `abi` that cannot confine it.
pub fn check(config: &McpConfig, abi: i32) -> Vec<(String, String)> {
    config
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.command.is_some())
        .filter(|(_, s)| coverage(s.sandbox.mode(config.sandbox.mode), abi) == Coverage::Refused)
        .map(|(i, s)| {
            let (key, setting) = match s.sandbox.mode {
                Some(_) => (
                    format!("mcp.servers[{i}].sandbox.mode"),
                    "its sandbox.mode: enforce",
                ),
                None => (
                    format!("mcp.servers[{i}]"),
                    "mcp.sandbox.mode: enforce, the default",
                ),
            };
            let message = format!(
                "the local server {:?} must run sandboxed ({setting}), but this kernel {}, \
                 and the sandbox needs Landlock ABI {NEEDED_ABI} (Linux 6.12 or later): run \
                 Warden on such a kernel, or set mcp.sandbox.mode (or the server's \
                 sandbox.mode) to best_effort, to apply what this kernel supports, or to off, \
                 to run it with everything Warden's user can reach",
                s.name,
                found(abi)
            );
            (key, message)
        })
        .collect()
}

/// `(key, message)` for each local server of `config` with `sandbox.network: egress` that
/// must run sandboxed (`enforce`) when the system does not let Warden's user make the
/// network namespace it needs (`namespaces`, from [`super::netns::available`], asked only
/// when such a server is configured).
pub fn check_namespaces(
    config: &McpConfig,
    namespaces: impl FnOnce() -> Result<(), String>,
) -> Vec<(String, String)> {
    let enforced: Vec<_> = config
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.command.is_some() && s.sandbox.network == Network::Egress)
        .filter(|(_, s)| s.sandbox.mode(config.sandbox.mode) == SandboxMode::Enforce)
        .collect();
    if enforced.is_empty() {
        return Vec::new();
    }
    let Err(why) = namespaces() else {
        return Vec::new();
    };
    enforced
        .into_iter()
        .map(|(i, s)| {
            (
                format!("mcp.servers[{i}].sandbox.network"),
                format!(
                    "the local server {:?} has network: egress and must run sandboxed \
                     (enforce), which needs a network namespace of its own, and this system \
                     does not let Warden's user make one ({why}); allow unprivileged user \
                     namespaces (sysctl kernel.unprivileged_userns_clone=1, \
                     user.max_user_namespaces above 0, kernel.apparmor_restrict_unprivileged_userns=0 \
                     or an AppArmor profile allowing Warden userns), or set the server's \
                     sandbox.mode to best_effort (it then runs with no network at all), or its \
                     sandbox.network to none",
                    s.name
                ),
            )
        })
        .collect()
}

/// The Landlock ABI of the running kernel; 0 or less when it has none.
pub fn abi() -> i32 {
    // LANDLOCK_CREATE_RULESET_VERSION: no ruleset, the ABI version.
    const VERSION: libc::c_uint = 1;
    // SAFETY: with this flag the call reads no argument and creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            VERSION,
        )
    };
    i32::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> McpConfig {
        let parsed = crate::config::load::parse_partial(yaml, None);
        // On a kernel without Landlock ABI 6, loading refuses what this test checks itself.
        let errors: Vec<_> = parsed
            .errors
            .iter()
            .filter(|e| !e.to_string().contains("must run sandboxed"))
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        parsed.config.mcp
    }

    #[test]
    fn enforce_needs_abi_6_and_best_effort_says_what_it_leaves_out() {
        use SandboxMode::*;
        for abi in [6, 7, 9] {
            assert_eq!(coverage(Enforce, abi), Coverage::Full);
            assert_eq!(coverage(BestEffort, abi), Coverage::Full);
        }
        for abi in [-1, 0, 1, 4, 5] {
            assert_eq!(coverage(Enforce, abi), Coverage::Refused);
            assert_eq!(coverage(Off, abi), Coverage::None);
        }
        let missing = |abi| match coverage(BestEffort, abi) {
            Coverage::Partial(m) => m.iter().map(|w| w.split(' ').nth(1).unwrap()).collect(),
            other => panic!("{other:?}"),
        };
        let m: Vec<&str> = missing(5);
        assert_eq!(m, ["signal"]);
        let m: Vec<&str> = missing(3);
        assert_eq!(m, ["TCP", "signal"]);
        let m: Vec<&str> = missing(1);
        assert_eq!(m, ["truncation", "TCP", "signal"]);
        let m: Vec<&str> = missing(0);
        assert_eq!(m, ["file", "truncation", "TCP", "signal"]);
    }

    #[test]
    fn a_kernel_that_cannot_confine_an_enforced_server_is_refused_at_load() {
        let c = config(
            "mcp:\n  servers:\n    - {name: a, command: x}\n    - {name: b, command: srv, sandbox: {mode: enforce}}\n    - {name: c, command: zz, sandbox: {mode: best_effort}}\n    - {name: d, command: ww, sandbox: {mode: 'off'}}\n    - {name: r, url: 'https://mcp.example.com/'}\n  endpoints: [{name: e, servers: [a, b, c, d, r]}]\n",
        );
        assert!(check(&c, 6).is_empty());
        let errors = check(&c, 4);
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["mcp.servers[0]", "mcp.servers[1].sandbox.mode"]);
        let m = &errors[0].1;
        for part in [
            "\"a\"",
            "offers Landlock ABI 4",
            "needs Landlock ABI 6",
            "best_effort",
            "off",
        ] {
            assert!(m.contains(part), "{part} missing: {m}");
        }
        assert!(check(&c, 0)[1].1.contains("has no Landlock"));
        // best_effort as the default lets every server start.
        let c = config(
            "mcp:\n  sandbox: {mode: best_effort}\n  servers:\n    - {name: a, command: x}\n  endpoints: [{name: e, servers: [a]}]\n",
        );
        assert!(check(&c, 0).is_empty());
    }

    #[test]
    fn network_egress_without_namespaces_is_refused_when_enforced() {
        let c = config(
            "mcp:\n  servers:\n    - {name: a, command: srv1, sandbox: {network: egress}}\n    - {name: b, command: srv2, sandbox: {network: egress, mode: best_effort}}\n    - {name: c, command: z, sandbox: {network: none}}\n  endpoints: [{name: e, servers: [a, b, c]}]\n",
        );
        let none = || Err("Operation not permitted".to_owned());
        let errors = check_namespaces(&c, none);
        let keys: Vec<&str> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["mcp.servers[0].sandbox.network"]);
        for part in [
            "\"a\"",
            "Operation not permitted",
            "best_effort",
            "unprivileged_userns_clone",
        ] {
            assert!(
                errors[0].1.contains(part),
                "{part} missing: {}",
                errors[0].1
            );
        }
        assert!(check_namespaces(&c, || Ok(())).is_empty());
        // Not probed when no enforced server needs it.
        let c = config(
            "mcp:\n  servers:\n    - {name: c, command: z, sandbox: {network: none}}\n  endpoints: [{name: e, servers: [c]}]\n",
        );
        assert!(check_namespaces(&c, || panic!("probed")).is_empty());
    }
}
