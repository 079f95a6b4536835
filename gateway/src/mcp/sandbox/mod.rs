//! The sandbox of a local MCP server: the process Warden starts runs under a Landlock domain
//! (ABI 6, Linux 6.12 or later) that lets it read and execute the system
//! (`system_paths.rs`), read and write a directory of its own, fresh at every start and
//! removed when the process ends (`<data_dir>/mcp-servers/<server>/run-<id>/`, its `HOME`, with
//! its `TMPDIR` beneath: no two processes, hence no two sessions, share one), reach what the
//! operator lists (`sandbox.read`, `sandbox.write`)
//! and, with `sandbox.network`, connect over TCP only to the ports listed; it cannot signal
//! processes outside its domain (Warden among them) nor reach their abstract Unix sockets, and
//! Landlock keeps it from tracing them or reading their `/proc/<pid>/mem` and `environ`. It
//! keeps no capability (a root Warden's server runs as uid 0 without any), writes no core
//! dump, and dies with Warden. What it must not reach (`protected.rs`) is checked at load, and
//! again at every start against the paths then opened, as the kernel resolves them.
//!
//! The ruleset is built before the fork (`Sandbox::prepare`: paths opened, rules added, which
//! allocate); between fork and exec the child makes only system calls (`child.rs`).

mod child;
pub mod config;
pub mod protected;
pub mod system_paths;

use std::os::fd::{AsFd, AsRawFd, FromRawFd as _, OwnedFd};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, NetPort, PathBeneath,
    PathFd, Ruleset, RulesetAttr, RulesetCreated, RulesetCreatedAttr, Scope,
};

pub use config::{Network, SandboxConfig, SandboxMode, ServerSandbox};
use protected::{Guard, Protected};

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
    /// What of Warden's it must not reach, checked at every start against what is opened.
    pub protected: Arc<[Protected]>,
}

/// A sandbox ready to be entered by a child process: its ruleset built, its directory made.
#[derive(Debug)]
pub struct Prepared {
    ruleset: RulesetCreated,
    run: RunDir,
}

/// The directory of one process (its `HOME`, with its `TMPDIR` beneath), removed when dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // `remove_dir_all` follows no link the process may have left there.
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a local MCP server's directory after its process ended");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

impl Sandbox {
    /// The sandbox of server `name` as `config` says, its directory under `data_dir`, never to
    /// reach `protected` (nor `data_dir`).
    pub fn new(
        name: &str,
        config: &ServerSandbox,
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
            protected: protected.iter().cloned().chain([data]).collect(),
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
        let run = self.run_dir()?;
        let ruleset = self.ruleset(program, run.path())?;
        Ok(Prepared { ruleset, run })
    }

    /// A fresh directory for one process, `0700`, made beneath the server's without following
    /// a link: one a server of an earlier version planted there is neither followed nor
    /// reused.
    fn run_dir(&self) -> Result<RunDir, SandboxError> {
        let home = |source| SandboxError::Home {
            path: self.home.clone(),
            source,
        };
        crate::private_files::create_dir_all(&self.home).map_err(home)?;
        let dir = open_dir(&self.home).map_err(home)?;
        // SAFETY: `dir` is an open descriptor; the call changes the mode of what it names.
        if unsafe { libc::fchmod(dir.as_raw_fd(), 0o700) } != 0 {
            return Err(home(std::io::Error::last_os_error()));
        }
        let name = format!("run-{}", uuid::Uuid::new_v4().simple());
        let cname = std::ffi::CString::new(name.as_str()).expect("no NUL in a uuid");
        // SAFETY: `dir` is open and `cname` a NUL-terminated name; mkdirat follows no link
        // at its last component and fails if anything is there.
        if unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o700) } != 0 {
            return Err(home(std::io::Error::last_os_error()));
        }
        let run = RunDir {
            path: self.home.join(name),
        };
        let tmp = run.path.join("tmp");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|source| SandboxError::Home { path: tmp, source })?;
        Ok(run)
    }

    /// The ruleset: the system, the program, the listed paths, the process's directory `run`,
    /// the network it may use; every right Landlock ABI 6 knows handled, all of them required.
    /// Each path opened is checked, as the kernel resolved it, against what the server must
    /// not reach: a link swapped in since the configuration was loaded widens nothing.
    fn ruleset(&self, program: &str, run: &Path) -> Result<RulesetCreated, SandboxError> {
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
        let protected = protected::resolve_all(&self.protected);
        let system = system_paths::ALL.iter().map(PathBuf::from);
        for path in system.chain(resolve_program(program)) {
            created = Grant::new(&path, read, false, &protected).add(created)?;
        }
        for path in system_paths::DEVICES.iter().map(PathBuf::from) {
            let access = read | AccessFs::WriteFile;
            created = Grant::new(&path, access, false, &protected).add(created)?;
        }
        for path in &self.read {
            created = Grant::new(path, read, true, &protected).add(created)?;
        }
        for path in &self.write {
            created = Grant::new(path, all, true, &protected).add(created)?;
        }
        // Made by Warden just now, inside its data directory: not checked against it.
        let own = Grant::new(run, all, true, &[]);
        created = own.add(created)?;
        if let Network::Ports(ports) = &self.network {
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

    /// `created` with this path allowed.
    fn add(self, created: RulesetCreated) -> Result<RulesetCreated, SandboxError> {
        let Some((fd, dir)) = self.open()? else {
            return Ok(created);
        };
        let access = if dir {
            self.access
        } else {
            self.access & AccessFs::from_file(ABI::V6)
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
        let reached = protected::reached(&shown, &opened.real, writes, self.protected);
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

/// `dir` opened as a directory, unless it is a symbolic link.
fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is NUL-terminated; the descriptor returned, if any, is ours alone.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
    /// Returns the process's directory, to be kept until the process has ended.
    #[must_use = "the process's directory is removed when this is dropped"]
    pub fn apply(self, command: &mut tokio::process::Command) -> RunDir {
        command
            .env("HOME", &self.run.path)
            .env("TMPDIR", self.run.path.join("tmp"));
        child::confine(command, Some(self.ruleset));
        self.run
    }
}

/// Has `command`'s child, unsandboxed, still die with Warden and write no core dump.
pub fn harden(command: &mut tokio::process::Command) {
    child::confine(command, None);
}

#[cfg(test)]
mod grant_tests;
#[cfg(test)]
mod tests;
