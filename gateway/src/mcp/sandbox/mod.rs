//! The sandbox of a local MCP server: the process Warden starts runs under a Landlock domain
//! (ABI 6, Linux 6.12 or later) that lets it read and execute the system
//! (`system_paths.rs`), read and write a directory of its own, fresh at every start and
//! removed when the process ends (`<data_dir>/mcp-servers/<server>/run-<instance>-<id>/`, its
//! `HOME`, with its `TMPDIR` beneath: no two processes, hence no two sessions, share one),
//! reach what the operator lists (`sandbox.read`, `sandbox.write`)
//! and, with `sandbox.network`, connect over TCP only to the ports listed; it cannot signal
//! processes outside its domain (Warden among them) nor reach their abstract Unix sockets, and
//! Landlock keeps it from tracing them or reading their `/proc/<pid>/mem` and `environ`. It
//! keeps no capability (a root Warden's server runs as uid 0 without any), creates no Unix
//! socket unless allowed (`seccomp.rs`: Landlock does not control `connect` to one with a
//! path), writes no core dump, and dies with Warden. What it must not reach (`protected.rs`,
//! compared in `reach.rs`) is checked at load, and again at every start against the paths
//! then opened, as the kernel resolves them. Directories left by the processes of a Warden
//! that did not stop cleanly are swept (`run_dir.rs`).
//!
//! The ruleset is built before the fork (`Sandbox::prepare`: paths opened, rules added, which
//! allocate); between fork and exec the child makes only system calls (`child.rs`). Whether
//! the kernel can confine a server is checked at load (`kernel.rs`); `best_effort` applies
//! what it can.

mod child;
pub mod config;
pub mod kernel;
pub mod local_egress;
pub mod netns;
pub mod protected;
mod reach;
pub mod run_dir;
mod seccomp;
pub mod system_paths;

use std::ffi::OsString;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};

pub use config::{Guard, Protected};
pub use config::{Network, SandboxConfig, SandboxMode, ServerSandbox};
use kernel::Coverage;
pub use kernel::{NEEDED_ABI, abi as kernel_abi};
pub use local_egress::{EgressGuard, ServeEgress};
pub use run_dir::RunDir;

use super::config::McpConfig;

/// Where a server's own directory is, under `data_dir`.
pub const SERVERS_DIR: &str = "mcp-servers";

/// `warden_mcp_sandboxed{server}`: 1 for each local server that runs with the whole sandbox, 0
/// for each that runs without (`off`) or with part of it (`best_effort` on an older kernel).
pub static SANDBOXED: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "warden_mcp_sandboxed",
            "Local MCP servers by whether they run with the whole sandbox (1) or not (0)",
        ),
        &["server"],
    )
    .expect("static metric definition")
});

/// `warden_mcp_sandbox_partial{server}`: 1 for each local server that runs with part of the
/// sandbox (`best_effort` on a kernel without Landlock ABI 6), 0 for the others.
pub static PARTIAL: LazyLock<prometheus::IntGaugeVec> = LazyLock::new(|| {
    prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "warden_mcp_sandbox_partial",
            "Local MCP servers by whether they run with part of the sandbox (1: best_effort on an older kernel) or not (0)",
        ),
        &["server"],
    )
    .expect("static metric definition")
});

/// Says, at start and after each reload, which local servers of `config` run sandboxed: in
/// `warden_mcp_sandboxed` and `warden_mcp_sandbox_partial`, and as a warning for each that
/// runs without the whole sandbox, naming what it lacks.
pub fn report(config: &McpConfig) {
    report_on(config, kernel::abi());
}

/// [`report`] on a kernel of Landlock ABI `abi`.
fn report_on(config: &McpConfig, abi: i32) {
    SANDBOXED.reset();
    PARTIAL.reset();
    for s in config.servers.iter().filter(|s| s.command.is_some()) {
        let coverage = kernel::coverage(s.sandbox.mode(config.sandbox.mode), abi);
        let name = s.name.as_str();
        SANDBOXED
            .with_label_values(&[name])
            .set(i64::from(coverage == Coverage::Full));
        PARTIAL
            .with_label_values(&[name])
            .set(i64::from(matches!(coverage, Coverage::Partial(_))));
        match &coverage {
            Coverage::None => {
                tracing::warn!(server = %name, "a local MCP server runs unsandboxed (sandbox.mode: off): it can read and write everything Warden's user can, Warden's keys included");
            }
            Coverage::Partial(missing) => {
                let found = kernel::found(abi);
                tracing::warn!(server = %name, missing = %missing.join("; "), "a local MCP server runs with part of its sandbox (sandbox.mode: best_effort): this kernel {found}, not {NEEDED_ABI} (Linux 6.12 or later), and the sandbox lacks what the field `missing` lists");
            }
            // A kernel that cannot confine an enforced server was refused at load.
            Coverage::Full | Coverage::Refused => {}
        }
        // Without the namespace `network: egress` needs, an enforced server was refused at
        // load; one under best_effort runs with no network (its IPv4 and IPv6 sockets refused
        // by seccomp; Unix sockets it may not have with `network: egress`).
        if s.sandbox.network == Network::Egress
            && coverage != Coverage::None
            && let Err(why) = netns::available()
        {
            PARTIAL.with_label_values(&[name]).set(1);
            SANDBOXED.with_label_values(&[name]).set(0);
            tracing::warn!(server = %name, reason = %why, "a local MCP server with sandbox.network: egress runs with no network at all (sandbox.mode: best_effort): this system does not let Warden's user make the network namespace it needs, so its IPv4 and IPv6 sockets are refused (seccomp) and it has no way out, not even through Warden's egress proxy");
        }
    }
}

/// Why a sandboxed server cannot be started.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "this kernel {found}, not Landlock ABI {NEEDED_ABI} (Linux 6.12 or later), which the \
         sandbox of local MCP servers needs to confine them; run Warden on such a kernel, or \
         set mcp.sandbox.mode (or a server's sandbox.mode) to best_effort, to apply what this \
         kernel supports, or to off, knowing that such a server can read everything Warden can"
    )]
    Unsupported { found: String },
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
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
    #[error("cannot tell where {path}, which the server's sandbox allows, leads: {source}")]
    Opened {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}, which the server's sandbox allows, is now {real} and reaches Warden's own \
         files; the server is not started: {message}"
    )]
    Reaches {
        path: PathBuf,
        real: PathBuf,
        message: String,
    },
    #[error("cannot build the server's Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    #[error(
        "the server's sandbox has network: egress, which needs a network namespace of its \
         own, and this system does not let Warden's user make one ({why}); allow unprivileged \
         user namespaces (kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0, \
         no AppArmor restriction on them for Warden), or set the server's sandbox.mode to \
         best_effort (it then runs without any network), or its sandbox.network to none"
    )]
    Namespaces { why: String },
    #[error("cannot hand the server's egress listener to Warden: {0}")]
    Handoff(std::io::Error),
}

/// One local server's sandbox, as configured.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Paths it may read and execute, beyond the system's.
    pub read: Vec<PathBuf>,
    /// Paths it may write in.
    pub write: Vec<PathBuf>,
    pub network: Network,
    /// The server's directory, Warden's: each process gets a fresh one of its own beneath.
    pub home: PathBuf,
    /// `enforce` or `best_effort`.
    pub mode: SandboxMode,
    /// Whether it may create Unix sockets (else a seccomp filter refuses them).
    pub unix_sockets: bool,
    /// What of Warden's it must not reach, checked at every start against what is opened.
    pub protected: Arc<[Protected]>,
    /// With `network: egress`: the most connections one process holds on its listener.
    pub egress_max_connections: usize,
}

/// What the child will run, found as `exec` will find it: from the child's working directory
/// and `PATH`.
#[derive(Debug, Clone)]
pub struct Exec<'a> {
    /// `command`: a path, or a name looked up on `path`.
    pub program: &'a str,
    /// The child's working directory (`cwd`); `None`: Warden's.
    pub cwd: Option<&'a Path>,
    /// The child's `PATH`.
    pub path: Option<OsString>,
}

/// A sandbox ready to be entered by a child process: its ruleset and filter built, its
/// directory made.
#[derive(Debug)]
pub struct Prepared {
    confinement: child::Confinement,
    run: RunDir,
    /// With `network: egress`: the socket pair of the listener's hand-off.
    channel: Option<netns::Channel>,
}

/// A sandbox a child was set up to enter: the process's directory and, with
/// `network: egress`, the listener it hands over; kept until the process has ended.
#[derive(Debug)]
pub struct Entered {
    run: RunDir,
    channel: Option<netns::Channel>,
}

impl Entered {
    /// The process's directory.
    pub fn run(&self) -> &RunDir {
        &self.run
    }

    /// Whether the process goes out through Warden's egress proxy (`network: egress` with
    /// its namespace): its proxy variables are then set, last ([`proxy_env`]).
    pub fn proxied(&self) -> bool {
        self.channel.is_some()
    }

    /// Once the child is spawned: the listener of its network namespace (`network: egress`),
    /// which Warden must serve as its egress proxy; `None` without one. Taken once.
    pub fn listener(&mut self) -> Result<Option<std::net::TcpListener>, SandboxError> {
        self.channel
            .take()
            .map(|c| c.receive().map_err(SandboxError::Handoff))
            .transpose()
    }
}

impl Sandbox {
    /// The sandbox of server `name` as `config` says, run in `mode`, its directory under
    /// `data_dir`, never to reach `protected` (nor `data_dir`).
    pub fn new(
        name: &str,
        config: &ServerSandbox,
        mode: SandboxMode,
        data_dir: &Path,
        protected: &[Protected],
    ) -> Sandbox {
        let data = Protected {
            what: "Warden's data directory (signing keys, audit log, state database)".into(),
            path: data_dir.to_path_buf(),
            guard: Guard::Read,
        };
        Sandbox {
            read: config.read.clone(),
            write: config.write.clone(),
            network: config.network.clone(),
            home: data_dir.join(SERVERS_DIR).join(name),
            mode,
            unix_sockets: config.unix_sockets,
            protected: protected.iter().cloned().chain([data]).collect(),
            egress_max_connections: config.egress_max_connections(),
        }
    }

    /// Makes the server's directory and builds the ruleset and filter for a process running
    /// `exec`'s program (allowed to be read and executed wherever it is).
    pub fn prepare(&self, exec: &Exec<'_>) -> Result<Prepared, SandboxError> {
        self.prepare_on(exec, kernel_abi(), netns::available())
    }

    /// [`Sandbox::prepare`] on a kernel of Landlock ABI `abi`, where the network namespace
    /// `network: egress` needs can be made or not (`namespaces`): refused below ABI 6 unless
    /// `best_effort`, which then applies what that ABI has.
    fn prepare_on(
        &self,
        exec: &Exec<'_>,
        abi: i32,
        namespaces: Result<(), String>,
    ) -> Result<Prepared, SandboxError> {
        if kernel::coverage(self.mode, abi) == Coverage::Refused {
            let found = kernel::found(abi);
            return Err(SandboxError::Unsupported { found });
        }
        // `network: egress` without its namespace (best_effort): no IPv4 nor IPv6 socket.
        let no_inet = self.network == Network::Egress && namespaces.is_err();
        // Built first: a filter that cannot be built leaves nothing made.
        let filter = seccomp::filter(self.unix_sockets, no_inet)?;
        let channel = self.channel(namespaces)?;
        let run = self.run_dir()?;
        let ruleset = if abi >= 1 {
            Some(self.ruleset(exec, run.path(), abi, channel.is_some())?)
        } else {
            None
        };
        Ok(Prepared {
            confinement: child::Confinement {
                ruleset,
                filter,
                netns: channel.as_ref().map(netns::Channel::child_fd),
            },
            run,
            channel,
        })
    }

    /// With `network: egress`, the socket pair of the hand-off, when `namespaces` (whether
    /// the system lets Warden's user make them) allows; `best_effort` without them runs the
    /// server with no network at all (a port rule alone would let it reach every host on that
    /// port; the seccomp filter refuses its IPv4 and IPv6 sockets), `enforce` refuses.
    fn channel(
        &self,
        namespaces: Result<(), String>,
    ) -> Result<Option<netns::Channel>, SandboxError> {
        if self.network != Network::Egress {
            return Ok(None);
        }
        match namespaces {
            Ok(()) => netns::Channel::new()
                .map(Some)
                .map_err(SandboxError::Handoff),
            Err(why) if self.mode == SandboxMode::BestEffort => {
                tracing::warn!(reason = %why, "a local MCP server with sandbox.network: egress runs without any network (sandbox.mode: best_effort): this system does not let Warden make the network namespace it needs, so its IPv4 and IPv6 sockets are refused (seccomp)");
                Ok(None)
            }
            Err(why) => Err(SandboxError::Namespaces { why }),
        }
    }

    /// A fresh directory for one process (`run_dir.rs`), made beneath the server's without
    /// following a link: one planted there is neither followed nor reused.
    fn run_dir(&self) -> Result<RunDir, SandboxError> {
        run_dir::make(&self.home)
            .map_err(|run_dir::MakeError { path, source }| SandboxError::Home { path, source })
    }

    /// The ruleset: the system, the program, the listed paths, the process's directory `run`,
    /// the network it may use; every right Landlock ABI 6 knows handled (those of ABI `abi`,
    /// when older), all of them required. Each path opened is checked, as the kernel resolved
    /// it, against what the server must not reach: a link swapped in since the configuration
    /// was loaded widens nothing.
    fn ruleset(
        &self,
        exec: &Exec<'_>,
        run: &Path,
        abi: i32,
        egress: bool,
    ) -> Result<RulesetCreated, SandboxError> {
        let abi = ABI::from(abi.min(NEEDED_ABI));
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))?;
        if abi >= ABI::V6 {
            ruleset = ruleset.scope(Scope::from_all(abi))?;
        }
        let network = self.network != Network::Any && abi >= ABI::V4;
        if network {
            ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
        }
        let mut created = ruleset.create()?;
        let read = AccessFs::from_read(abi);
        let all = AccessFs::from_all(abi);
        let protected = reach::resolve_all(&self.protected);
        let system = system_paths::ALL.iter().map(PathBuf::from);
        for path in system.chain(resolve_program(exec)) {
            created = Grant::new(&path, read, false, &protected).add(created, abi)?;
        }
        for path in system_paths::DEVICES.iter().map(PathBuf::from) {
            let access = read | AccessFs::WriteFile;
            created = Grant::new(&path, access, false, &protected).add(created, abi)?;
        }
        for path in &self.read {
            created = Grant::new(path, read, true, &protected).add(created, abi)?;
        }
        for path in &self.write {
            created = Grant::new(path, all, true, &protected).add(created, abi)?;
        }
        // Made by Warden just now, inside its data directory: not checked against it.
        let own = Grant::new(run, all, true, &[]);
        created = own.add(created, abi)?;
        let ports = match &self.network {
            Network::Ports(ports) => ports.as_slice(),
            // Only the proxy's port, on the one address of the process's namespace (without
            // the namespace, under best_effort, nothing: connect is refused on every port).
            Network::Egress if egress => &[netns::PROXY_PORT],
            _ => &[],
        };
        if network {
            for port in ports {
                created = created.add_rule(NetPort::new(*port, AccessNet::ConnectTcp))?;
            }
        }
        Ok(created)
    }
}

/// One path to allow: `access` beneath it (only a file's rights when it is a file); one that
/// does not exist is skipped unless `required`. What is opened must not reach `protected`.
struct Grant<'a> {
    path: &'a Path,
    access: BitFlags<AccessFs>,
    required: bool,
    protected: &'a [(Protected, PathBuf)],
}

impl<'a> Grant<'a> {
    fn new(
        path: &'a Path,
        access: BitFlags<AccessFs>,
        required: bool,
        protected: &'a [(Protected, PathBuf)],
    ) -> Grant<'a> {
        Grant {
            path,
            access,
            required,
            protected,
        }
    }

    /// `created` with this path allowed; `abi` is the ruleset's.
    fn add(self, created: RulesetCreated, abi: ABI) -> Result<RulesetCreated, SandboxError> {
        let Some((fd, dir)) = self.open()? else {
            return Ok(created);
        };
        let access = if dir {
            self.access
        } else {
            self.access & AccessFs::from_file(abi)
        };
        Ok(created.add_rule(PathBeneath::new(fd, access))?)
    }

    /// The path opened, and whether it is a directory; `None` when it may be skipped. What
    /// was opened (not what the path names now) is checked against what the server must not
    /// reach.
    fn open(&self) -> Result<Option<(PathFd, bool)>, SandboxError> {
        let fd = match PathFd::new(self.path) {
            Ok(fd) => fd,
            Err(_) if !self.required && !self.path.exists() => return Ok(None),
            Err(source) => {
                return Err(SandboxError::Path {
                    path: self.path.to_path_buf(),
                    source,
                });
            }
        };
        let opened = opened(&fd).map_err(|source| SandboxError::Opened {
            path: self.path.to_path_buf(),
            source,
        })?;
        let writes = self
            .access
            .contains(AccessFs::WriteFile | AccessFs::RemoveFile);
        let shown = self.path.display().to_string();
        let reached = reach::reached(&shown, &opened.real, writes, self.protected);
        if let Some(message) = reached.into_iter().next() {
            return Err(SandboxError::Reaches {
                path: self.path.to_path_buf(),
                real: opened.real,
                message,
            });
        }
        Ok(Some((fd, opened.dir)))
    }
}

/// What an open descriptor names, as the kernel resolved it.
struct Opened {
    real: PathBuf,
    dir: bool,
}

/// Where `fd` really is (`/proc/self/fd/N`) and whether it is a directory (`fstat`).
fn opened(fd: &PathFd) -> std::io::Result<Opened> {
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))?;
    let file = std::fs::File::from(fd.as_fd().try_clone_to_owned()?);
    let dir = file.metadata()?.is_dir();
    Ok(Opened { real, dir })
}

/// The file `exec` runs, found as the child's `execvp` will (after its `chdir`): the program
/// itself when it names a path (a relative one from the child's working directory), else the
/// first executable of that name in the child's `PATH` (relative entries, an empty one being
/// `.`, from the child's working directory).
fn resolve_program(exec: &Exec<'_>) -> Option<PathBuf> {
    let from_cwd = |p: PathBuf| match exec.cwd {
        Some(cwd) => cwd.join(p),
        None => p,
    };
    if exec.program.contains('/') {
        return Some(from_cwd(PathBuf::from(exec.program)));
    }
    std::env::split_paths(exec.path.as_ref()?)
        .map(|dir| match dir.as_os_str().is_empty() {
            true => from_cwd(PathBuf::from(".")),
            false => from_cwd(dir),
        })
        .map(|dir| dir.join(exec.program))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

impl Prepared {
    /// Has `command`'s child enter the sandbox between fork and exec, with its `HOME` and
    /// `TMPDIR` in its own directory and, with `network: egress`, the proxy variables naming
    /// the listener of its namespace (the caller sets them again after its own variables,
    /// which may not override them: [`Entered::proxied`]).
    /// Returns what is to be kept until the process has ended: its directory, removed when
    /// dropped, and the listener's hand-off.
    #[must_use = "the process's directory is removed when this is dropped"]
    pub fn apply(self, command: &mut tokio::process::Command) -> Entered {
        command
            .env("HOME", self.run.path())
            .env("TMPDIR", self.run.path().join("tmp"));
        if self.channel.is_some() {
            command.envs(proxy_env());
        }
        child::confine(command, Some(self.confinement));
        Entered {
            run: self.run,
            channel: self.channel,
        }
    }
}

/// The environment of a server with `network: egress`: every proxy variable common clients
/// read (both cases) naming the proxy in its namespace, no exception (`NO_PROXY` empty), and
/// Node's switch to honour them (Node 22.21 / 24 and later).
pub fn proxy_env() -> Vec<(&'static str, String)> {
    let url = format!("http://127.0.0.1:{}", netns::PROXY_PORT);
    config::PROXY_VARIABLES
        .iter()
        .map(|&k| match k {
            "NO_PROXY" | "no_proxy" => (k, String::new()),
            "NODE_USE_ENV_PROXY" => (k, "1".to_owned()),
            _ => (k, url.clone()),
        })
        .collect()
}

/// Has `command`'s child, unsandboxed, still die with Warden and write no core dump.
pub fn harden(command: &mut tokio::process::Command) {
    child::confine(command, None);
}

#[cfg(test)]
mod grant_tests;
#[cfg(test)]
mod protected_keys;
#[cfg(test)]
mod tests;
