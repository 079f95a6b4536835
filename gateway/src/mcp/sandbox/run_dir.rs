//! The directory of one sandboxed process: its `HOME`, with its `TMPDIR` beneath, made fresh
//! beneath the server's directory (`<data_dir>/mcp-servers/<server>/run-<warden pid>-<id>/`)
//! at every start, without following a link, and removed when the process ends. What a Warden
//! that stopped uncleanly left there (no process of a live Warden owns it) is swept at start.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};

/// What each process's directory is named after: `run-<pid of Warden>-<random id>`.
const PREFIX: &str = "run-";

/// The most entries one sweep looks at in one server's directory, and the most server
/// directories a sweep at start looks into: a directory filled by something else is not
/// walked for ever.
pub const SWEEP_MAX: usize = 4096;

/// The names of the directories this Warden's processes own (registered before the directory
/// is made, unregistered once it is removed): a sweep leaves them.
static LIVE: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

fn live() -> std::sync::MutexGuard<'static, HashSet<String>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The directory of one process, removed when dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    name: String,
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
        let name = std::mem::take(&mut self.name);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a local MCP server's directory after its process ended");
            }
            // Only now may a sweep take what is left of it.
            live().remove(&name);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Why a process's directory cannot be made: where, and the error.
#[derive(Debug)]
pub struct MakeError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A fresh directory for one process beneath `home` (the server's directory, made `0700` if
/// missing, refused if it is a link), `0700`, with `tmp/` beneath. It sweeps nothing: that
/// is done once, at start ([`sweep_all`]), and the removal of a process's directory when it
/// ends runs off the runtime's workers.
pub fn make(home: &Path) -> Result<RunDir, MakeError> {
    let failed = |source| MakeError {
        path: home.to_path_buf(),
        source,
    };
    crate::private_files::create_dir_all(home).map_err(failed)?;
    let dir = open_dir(home).map_err(failed)?;
    // SAFETY: `dir` is an open descriptor; the call changes the mode of what it names.
    if unsafe { libc::fchmod(dir.as_raw_fd(), 0o700) } != 0 {
        return Err(failed(std::io::Error::last_os_error()));
    }
    let name = format!(
        "{PREFIX}{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    let cname = CString::new(name.as_str()).expect("no NUL in a pid and a uuid");
    // Registered before it exists, so that no sweep ever sees it unowned.
    live().insert(name.clone());
    // SAFETY: `dir` is open and `cname` a NUL-terminated name; mkdirat follows no link at its
    // last component and fails if anything is there.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o700) } != 0 {
        let e = std::io::Error::last_os_error();
        live().remove(&name);
        return Err(failed(e));
    }
    let run = RunDir {
        path: home.join(&name),
        name,
    };
    let tmp = run.path.join("tmp");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|source| MakeError { path: tmp, source })?;
    Ok(run)
}

/// At start: sweeps the directory of every server under `servers` (`<data_dir>/mcp-servers`),
/// configured or not; how many directories it removed.
pub fn sweep_all(servers: &Path) -> usize {
    let dir = match open_dir(servers) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!(path = %servers.display(), error = %e, "cannot look for directories left by local MCP server processes");
            return 0;
        }
    };
    let Ok(entries) = std::fs::read_dir(through(&dir)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.take(SWEEP_MAX).flatten() {
        // Only what really is a directory there: a link is not followed.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if let Ok(server) = open_dir(&entry.path()) {
            removed += sweep(&server);
        }
    }
    if removed > 0 {
        tracing::info!(path = %servers.display(), removed, "removed directories left by local MCP server processes of a Warden that did not stop cleanly");
    }
    removed
}

/// Removes from the server directory `dir` every process directory no process of a live
/// Warden owns (one of this Warden's that is not registered, one of a Warden no longer
/// running), looking at no more than [`SWEEP_MAX`] entries; how many it removed. Nothing is
/// followed: the directory is reached through its descriptor, a link among its entries is
/// removed itself, and `remove_dir_all` follows none.
fn sweep(dir: &OwnedFd) -> usize {
    let base = through(dir);
    let Ok(entries) = std::fs::read_dir(&base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.take(SWEEP_MAX).flatten() {
        let name = entry.file_name();
        let Some(pid) = owner(&name) else {
            continue;
        };
        let owned = if pid == std::process::id() {
            name.to_str().is_some_and(|n| live().contains(n))
        } else {
            alive(pid)
        };
        if owned {
            continue;
        }
        let path = base.join(&name);
        let result = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(entry = %name.to_string_lossy(), error = %e, "cannot remove a directory left by a local MCP server process");
            }
        }
    }
    removed
}

/// The pid of the Warden whose process the entry `name` was made for, if it is one's.
fn owner(name: &OsStr) -> Option<u32> {
    let rest = name.to_str()?.strip_prefix(PREFIX)?;
    let (pid, id) = rest.split_once('-')?;
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process `pid` exists (it may be a Warden sharing the data directory).
fn alive(pid: u32) -> bool {
    // Not 0 nor negative: kill(2) would then name a process group.
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 sends nothing; the call only says whether the process exists.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The path that reaches the directory open as `dir`, whatever its name now leads to.
fn through(dir: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
}

/// `dir` opened as a directory, unless it is a symbolic link.
pub fn open_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(dir.as_os_str().as_bytes())
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A pid no process has: above the kernel's maximum.
    fn dead_pid() -> u32 {
        let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        max + 1
    }

    fn stale(home: &Path, pid: u32) -> PathBuf {
        let path = home.join(format!("run-{pid}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(path.join("tmp/.npm")).unwrap();
        std::fs::write(path.join("tmp/.npm/pkg"), "x").unwrap();
        path
    }

    #[test]
    fn directories_of_processes_no_live_warden_owns_are_swept_at_start() {
        let root = tempfile::tempdir().unwrap();
        let servers = root.path().join("mcp-servers");
        let home = servers.join("s");
        std::fs::create_dir_all(&home).unwrap();
        // Left by a Warden no longer running, and by this one's process that never ended
        // cleanly (its directory was not registered: this Warden was restarted as the same
        // pid, as in a container).
        let gone = stale(&home, dead_pid());
        let mine = stale(&home, std::process::id());
        // A live Warden's (pid 1 always exists), and what is no process directory.
        let other = stale(&home, 1);
        std::fs::create_dir_all(home.join("kept")).unwrap();
        // This Warden's live process directory.
        let live = make(&home).unwrap();
        // Making a process's directory sweeps nothing: that is done at start.
        assert!(gone.exists() && mine.exists());
        assert_eq!(sweep_all(&servers), 2);
        assert!(!gone.exists());
        assert!(!mine.exists());
        assert!(other.exists());
        assert!(home.join("kept").exists());
        assert!(live.path().join("tmp").exists());
    }

    #[test]
    fn the_sweep_at_start_looks_in_every_server_s_directory_and_follows_no_link() {
        let root = tempfile::tempdir().unwrap();
        let servers = root.path().join("mcp-servers");
        let a = stale(&servers.join("a"), dead_pid());
        let b = stale(&servers.join("b"), dead_pid());
        // A link among the servers' directories leads elsewhere: nothing there is touched.
        let elsewhere = root.path().join("elsewhere");
        let victim = stale(&elsewhere, dead_pid());
        symlink(&elsewhere, servers.join("c")).unwrap();
        // A link named as a process directory is removed itself, not what it leads to.
        let target = root.path().join("target");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("f"), "x").unwrap();
        let link = servers.join(format!("a/run-{}-{}", dead_pid(), "0".repeat(32)));
        symlink(&target, &link).unwrap();
        assert_eq!(sweep_all(&servers), 3);
        assert!(!a.exists() && !b.exists());
        assert!(std::fs::symlink_metadata(&link).is_err());
        assert!(victim.exists());
        assert!(target.join("f").exists());
        // No directory at all: nothing to do.
        assert_eq!(sweep_all(&root.path().join("none")), 0);
    }

    #[test]
    fn only_names_of_process_directories_name_an_owner() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(owner(OsStr::new(&format!("run-42-{id}"))), Some(42));
        for name in [
            "run-42",
            "run-x-y",
            "tmp",
            "run-42-short",
            &format!("home-42-{id}"),
        ] {
            assert_eq!(owner(OsStr::new(name)), None, "{name}");
        }
    }
}
