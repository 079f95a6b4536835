//! The sandbox of a local MCP server: the process Warden starts runs under a Landlock domain
//! (ABI 6, Linux 6.12 or later) that lets it read and execute the system
//! (`system_paths.rs`), read and write its own directory (`<data_dir>/mcp-servers/<server>/`,
//! its `HOME` and `TMPDIR`), reach what the operator lists (`sandbox.read`, `sandbox.write`)
//! and, with `sandbox.network`, connect over TCP only to the ports listed; it cannot signal
//! processes outside its domain (Warden among them) nor reach their abstract Unix sockets, and
//! Landlock keeps it from tracing them or reading their `/proc/<pid>/mem` and `environ`. It
//! keeps no capability (a root Warden's server runs as uid 0 without any), writes no core
//! dump, and dies with Warden. What it must not reach is checked at load (`protected.rs`).
//!
//! The ruleset is built before the fork (`Sandbox::prepare`: paths opened, rules added, which
//! allocate); between fork and exec the child makes only system calls (`child.rs`).

mod child;
pub mod config;
pub mod protected;
pub mod system_paths;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};

pub use config::{Network, SandboxConfig, SandboxMode, ServerSandbox};

use super::config::McpConfig;

/// The Landlock ABI the sandbox needs: filesystem rights up to `ioctl` on devices (5), TCP
/// ports (4), signal and abstract socket scopes (6).
pub const NEEDED_ABI: i32 = 6;

/// Where a server's own directory is, under `data_dir`.
pub const SERVERS_DIR: &str = "mcp-servers";

/// `warden_mcp_sandboxed{server}`: 1 for each local server that runs sandboxed, 0 for each that
/// runs with everything Warden's user can reach.
pub static SANDBOXED: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "warden_mcp_sandboxed",
            "Local MCP servers by whether they run sandboxed (1) or not (0)",
        ),
        &["server"],
    )
    .expect("static metric definition")
});

/// Says, at start and after each reload, which local servers of `config` run sandboxed: in
/// `warden_mcp_sandboxed`, and as a warning for each that does not.
pub fn report(config: &McpConfig) {
    SANDBOXED.reset();
    for s in config.servers.iter().filter(|s| s.command.is_some()) {
        let sandboxed = s.sandbox.mode(config.sandbox.mode) == SandboxMode::Enforce;
        SANDBOXED
            .with_label_values(&[s.name.as_str()])
            .set(i64::from(sandboxed));
        if !sandboxed {
            tracing::warn!(server = %s.name, "a local MCP server runs unsandboxed (sandbox.mode: off): it can read and write everything Warden's user can, Warden's keys included");
        }
    }
}

/// Why a sandboxed server cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "this kernel {found} Landlock ABI {NEEDED_ABI} (Linux 6.12 or later), which the \
         sandbox of local MCP servers needs to confine them; run Warden on such a kernel, or \
         start local servers unsandboxed with mcp.sandbox.mode: off (or a server's \
         sandbox.mode: off), knowing that such a server can read everything Warden can"
    )]
    Unsupported { found: String },
    #[error("cannot open {path}, which the server's sandbox allows: {source}")]
    Path {
        path: PathBuf,
        source: landlock::PathFdError,
    },
    #[error("cannot create the server's own directory {path}: {source}")]
    Home {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build the server's Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
}

/// One local server's sandbox, as configured.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Paths it may read and execute, beyond the system's.
    pub read: Vec<PathBuf>,
    /// Paths it may write in.
    pub write: Vec<PathBuf>,
    pub network: Network,
    /// Its own directory: its `HOME`, with its `TMPDIR` (`tmp/`) beneath.
    pub home: PathBuf,
}

/// A sandbox ready to be entered by a child process: its ruleset built, its directory made.
#[derive(Debug)]
pub struct Prepared {
    ruleset: RulesetCreated,
    home: PathBuf,
}

impl Sandbox {
    /// The sandbox of server `name` as `config` says, its directory under `data_dir`.
    pub fn new(name: &str, config: &ServerSandbox, data_dir: &Path) -> Sandbox {
        Sandbox {
            read: config.read.clone(),
            write: config.write.clone(),
            network: config.network.clone(),
            home: data_dir.join(SERVERS_DIR).join(name),
        }
    }

    /// Makes the server's directory and builds the ruleset for a process running `program`
    /// (allowed to be read and executed wherever it is).
    pub fn prepare(&self, program: &str) -> Result<Prepared, SandboxError> {
        let abi = kernel_abi();
        if abi < NEEDED_ABI {
            let found = if abi <= 0 {
                "has no Landlock enabled, not".to_owned()
            } else {
                format!("offers Landlock ABI {abi}, not")
            };
            return Err(SandboxError::Unsupported { found });
        }
        let tmp = self.home.join("tmp");
        for dir in [&self.home, &tmp] {
            crate::private_files::create_dir_all(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|source| SandboxError::Home {
                    path: dir.clone(),
                    source,
                })?;
        }
        let ruleset = self.ruleset(program)?;
        Ok(Prepared {
            ruleset,
            home: self.home.clone(),
        })
    }

    /// The ruleset: the system, the program, the listed paths, the server's directory, the
    /// network it may use; every right Landlock ABI 6 knows handled, all of them required.
    fn ruleset(&self, program: &str) -> Result<RulesetCreated, SandboxError> {
        let abi = ABI::V6;
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))?
            .scope(Scope::from_all(abi))?;
        if self.network != Network::Any {
            ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
        }
        let mut created = ruleset.create()?;
        let read = AccessFs::from_read(abi);
        let all = AccessFs::from_all(abi);
        let system = system_paths::ALL.iter().map(PathBuf::from);
        for path in system.chain(resolve_program(program)) {
            created = allow(created, &path, read, false)?;
        }
        for path in system_paths::DEVICES.iter().map(PathBuf::from) {
            created = allow(created, &path, read | AccessFs::WriteFile, false)?;
        }
        for path in &self.read {
            created = allow(created, path, read, true)?;
        }
        for path in self.write.iter().chain([&self.home]) {
            created = allow(created, path, all, true)?;
        }
        if let Network::Ports(ports) = &self.network {
            for port in ports {
                created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
            }
        }
        Ok(created)
    }
}

/// `created` with `access` allowed beneath `path` (only a file's rights when it is a file); a
/// path that does not exist is skipped unless `required`.
fn allow(
    created: RulesetCreated,
    path: &Path,
    access: BitFlags<AccessFs>,
    required: bool,
) -> Result<RulesetCreated, SandboxError> {
    let fd = match PathFd::new(path) {
        Ok(fd) => fd,
        Err(_) if !required && !path.exists() => return Ok(created),
        Err(source) => {
            return Err(SandboxError::Path {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let access = if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(ABI::V6)
    };
    Ok(created.add_rule(PathBeneath::new(fd, access))?)
}

/// The file `program` runs: itself when it names a path, else the first executable of that
/// name on Warden's `PATH` (which the child inherits).
fn resolve_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The Landlock ABI of the running kernel; 0 or less when it has none.
pub fn kernel_abi() -> i32 {
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

impl Prepared {
    /// Has `command`'s child enter the sandbox between fork and exec, with its `HOME` and
    /// `TMPDIR` in its own directory.
    pub fn apply(self, command: &mut tokio::process::Command) {
        command
            .env("HOME", &self.home)
            .env("TMPDIR", self.home.join("tmp"));
        child::confine(command, Some(self.ruleset));
    }
}

/// Has `command`'s child, unsandboxed, still die with Warden and write no core dump.
pub fn harden(command: &mut tokio::process::Command) {
    child::confine(command, None);
}

#[cfg(test)]
mod tests;
