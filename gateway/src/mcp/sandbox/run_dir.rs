//! The directory of one sandboxed process: its `HOME`, with its `TMPDIR` beneath, made fresh
//! beneath the server's directory (`<data_dir>/mcp-servers/<server>/run-<instance>-<id>/`,
//! `<instance>` random once per Warden process) at every start, without following a link,
//! and removed when the process ends, off every runtime: by one thread of its own (the reaper),
//! so that no runtime (a worker's, stopping) waits for a removal, which can take seconds for a
//! tree an `npx` downloaded. Warden stopping waits for the reaper at most [`FINISH_WITHIN`];
//! what is left then keeps its lock until Warden exits, and the next start's sweep removes
//! it (on a thread of its own: Warden is ready without waiting for it). Its lock, `run-<instance>-<id>.lock` beside it in the
//! server's directory (which the process cannot write: it can neither remove nor replace the
//! lock), is held locked (`flock`) by Warden for the
//! process's life, through a descriptor the process does not inherit: a sweep, at start,
//! removes only the directories whose lock it takes without waiting, so that Wardens sharing
//! a data directory (even as the same pid in different pid namespaces) leave each other's
//! alone. Directories named after a Warden's pid (`run-<pid>-<id>`, made by earlier versions)
//! are swept when no process has that pid.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What each process's directory is named after: `run-<instance>-<random id>`.
const PREFIX: &str = "run-";

/// What the file beside each process's directory whose lock says a Warden still owns it adds
/// to the directory's name.
const LOCK_SUFFIX: &str = ".lock";

/// The file an earlier version kept inside each process's directory, with the same meaning.
const LOCK: &str = ".lock";

/// How many times a directory is made afresh when a sweep took the one just made.
const MAKE_ATTEMPTS: usize = 3;

/// The most entries one sweep looks at in one server's directory, and the most server
/// directories a sweep at start looks into: a directory filled by something else is not
/// walked for ever.
pub const SWEEP_MAX: usize = 4096;

/// The most directories waiting for the reaper at once: beyond, a directory is left (its
/// lock released) for the next start's sweep.
const QUEUE: usize = 1024;

/// How long Warden stopping waits for the reaper to remove the directories waiting for it.
pub const FINISH_WITHIN: Duration = Duration::from_secs(2);

/// This Warden process's id in the names of its processes' directories: random, since pids
/// repeat across pid namespaces (two containers' Wardens are both pid 1).
static INSTANCE: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());

/// The directory of one process, handed to the reaper when dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// Its lock (beside it), locked, held until the directory and the lock's file are
    /// removed (close-on-exec: no process inherits it, none can release it).
    lock: Option<OwnedFd>,
    /// Who removes it.
    reaper: &'static Reaper,
}

/// A directory to remove, with its lock, released once it is gone (or given up on).
#[derive(Debug)]
struct Removal {
    path: PathBuf,
    lock: Option<OwnedFd>,
}

/// How the reaper removes a directory (`remove_dir_all`, which follows no link the process
/// may have left there; another in tests).
type Remove = Box<dyn Fn(&Path) -> std::io::Result<()> + Send>;

/// Removes the directories of ended processes, one at a time, on a thread of its own.
#[derive(Debug)]
pub struct Reaper {
    queue: Option<SyncSender<Removal>>,
    counts: Arc<(Mutex<Counts>, Condvar)>,
}

/// What the reaper has to do.
#[derive(Debug, Default)]
struct Counts {
    /// Directories made whose process has not ended.
    live: usize,
    /// Directories handed over, not yet removed.
    queued: usize,
}

/// What Warden stopping found of the directories of local MCP server processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Still there once the wait ended: removed by the next start's sweep.
    pub left: usize,
}

/// The reaper of this Warden's process directories (its thread started at the first use).
static REAPER: LazyLock<Reaper> =
    LazyLock::new(|| Reaper::start(Box::new(|path: &Path| std::fs::remove_dir_all(path))));

/// The reaper of this Warden's process directories.
pub fn reaper() -> &'static Reaper {
    &REAPER
}

impl Reaper {
    /// A reaper removing with `remove` on a thread of its own; without one (the thread cannot
    /// start), directories are removed where they are dropped.
    fn start(remove: Remove) -> Reaper {
        let counts = Arc::new((Mutex::new(Counts::default()), Condvar::new()));
        let (queue, removals) = std::sync::mpsc::sync_channel(QUEUE);
        let reaped = Arc::clone(&counts);
        let started = std::thread::Builder::new()
            .name("warden-run-dirs".into())
            .spawn(move || reap(&removals, &remove, &reaped));
        let queue = match started {
            Ok(_) => Some(queue),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the thread that removes local MCP server processes' directories; they are removed as their processes end");
                None
            }
        };
        Reaper { queue, counts }
    }

    /// Runs `f` on the counts, and wakes who waits for them.
    fn count<T>(&self, f: impl FnOnce(&mut Counts) -> T) -> T {
        let (counts, changed) = &*self.counts;
        let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut counts);
        changed.notify_all();
        out
    }

    /// Directories made whose process has not ended, and directories waiting to be removed.
    pub fn pending(&self) -> (usize, usize) {
        self.count(|c| (c.live, c.queued))
    }

    /// Hands `removal` over: removed by the reaper's thread, never on the caller's.
    fn hand_over(&self, removal: Removal) {
        let Some(queue) = &self.queue else {
            self.count(|c| c.live = c.live.saturating_sub(1));
            remove_now(removal);
            return;
        };
        self.count(|c| {
            c.live = c.live.saturating_sub(1);
            c.queued += 1;
        });
        match queue.try_send(removal) {
            Ok(()) => {}
            Err(TrySendError::Full(removal)) => {
                self.count(|c| c.queued = c.queued.saturating_sub(1));
                tracing::warn!(path = %removal.path.display(), "too many local MCP server processes' directories wait for their removal; this one is left for the next start to remove");
                // Its lock released: the next start's sweep takes it.
                drop(removal);
            }
            Err(TrySendError::Disconnected(removal)) => {
                self.count(|c| c.queued = c.queued.saturating_sub(1));
                remove_now(removal);
            }
        }
    }

    /// Warden stops: waits at most `within` until every directory handed over is removed.
    /// What is left keeps its lock until Warden exits, then the next start's sweep removes
    /// it.
    pub fn finish(&self, within: Duration) -> Finished {
        let (counts, changed) = &*self.counts;
        let deadline = Instant::now() + within;
        let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
        while counts.queued > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            counts = changed
                .wait_timeout(counts, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Finished {
            left: counts.queued,
        }
    }
}

/// The reaper's thread: removes each directory handed over, in turn, until the reaper is
/// gone.
fn reap(removals: &Receiver<Removal>, remove: &Remove, counts: &(Mutex<Counts>, Condvar)) {
    for removal in removals {
        remove_with(removal, remove);
        let (counts, changed) = counts;
        let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.queued = counts.queued.saturating_sub(1);
        changed.notify_all();
    }
}

/// Removes `removal` here, with `remove_dir_all`.
fn remove_now(removal: Removal) {
    remove_with(removal, &|path: &Path| std::fs::remove_dir_all(path));
}

/// Removes the directory of `removal` with `remove`, then its lock's file, then lets go of
/// its lock. A directory that cannot be removed keeps its lock's file, for a sweep.
fn remove_with(removal: Removal, remove: &dyn Fn(&Path) -> std::io::Result<()>) {
    let Removal { path, lock } = removal;
    if let Err(e) = remove(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a local MCP server's directory after its process ended");
    } else {
        // Gone: its lock's file goes too (a directory left keeps its lock for a sweep).
        let _ = std::fs::remove_file(lock_path(&path));
    }
    // Only now may a sweep take what is left of it.
    drop(lock);
}

/// The lock file of the process directory at `path`: `<path>.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(LOCK_SUFFIX);
    PathBuf::from(name)
}

impl RunDir {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let removal = Removal {
            path: std::mem::take(&mut self.path),
            lock: self.lock.take(),
        };
        self.reaper.hand_over(removal);
    }
}

/// Why a process's directory cannot be made: where, and the error.
#[derive(Debug)]
pub struct MakeError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A fresh directory for one process beneath `home` (the server's directory, made `0700` if
/// missing, refused if it is a link), `0700`, its `.lock` locked, with `tmp/` beneath. It
/// sweeps nothing: that is done once, at start ([`sweep_all`]).
pub fn make(home: &Path) -> Result<RunDir, MakeError> {
    make_with(home, reaper())
}

/// [`make`], the directory removed by `reaper` once dropped.
fn make_with(home: &Path, reaper: &'static Reaper) -> Result<RunDir, MakeError> {
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
    let mut attempt = 0;
    let (name, lock) = loop {
        attempt += 1;
        let name = format!("{PREFIX}{}-{}", *INSTANCE, uuid::Uuid::new_v4().simple());
        match make_locked(&dir, &name) {
            Ok(lock) => break (name, lock),
            // Another Warden's sweep took it between its making and its locking.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && attempt < MAKE_ATTEMPTS => {}
            Err(e) => return Err(failed(e)),
        }
    };
    reaper.count(|c| c.live += 1);
    let run = RunDir {
        path: home.join(&name),
        lock: Some(lock),
        reaper,
    };
    let tmp = run.path.join("tmp");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|source| MakeError { path: tmp, source })?;
    Ok(run)
}

/// Makes the directory `name` in `dir` (following no link, failing if anything is there)
/// and its `.lock`, locked; the lock's descriptor. `WouldBlock` when a sweep took it first.
fn make_locked(dir: &OwnedFd, name: &str) -> std::io::Result<OwnedFd> {
    let cname = CString::new(name).expect("no NUL in two uuids");
    // SAFETY: `dir` is open and `cname` a NUL-terminated name; mkdirat follows no link at its
    // last component and fails if anything is there.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), cname.as_ptr(), 0o700) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    lock_new(dir, &cname).inspect_err(|e| {
        // Not left without a lock (no sweep would take it), unless a sweep is taking it.
        if e.kind() != std::io::ErrorKind::WouldBlock {
            let path = through(dir).join(name);
            let _ = std::fs::remove_dir_all(&path);
            let _ = std::fs::remove_file(lock_path(&path));
        }
    })
}

/// Makes the lock (`<name>.lock`, beside it in `dir`) of the directory `name` just made in
/// `dir`, locked; its descriptor.
fn lock_new(dir: &OwnedFd, name: &CString) -> std::io::Result<OwnedFd> {
    let mut lock_name = name.as_bytes().to_vec();
    lock_name.extend_from_slice(LOCK_SUFFIX.as_bytes());
    let lock_name = CString::new(lock_name).expect("no NUL in a uuid nor a constant");
    let lock = open_at(
        dir,
        &lock_name,
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
        0o600,
    )?;
    try_lock(&lock)?;
    // A sweep that locked it first removed it before letting go: locked, it must still be
    // there.
    // SAFETY: an all-zero `stat` is valid; fstat fills it from the open descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `lock` is open and `stat` a valid buffer.
    if unsafe { libc::fstat(lock.as_raw_fd(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if stat.st_nlink == 0 {
        return Err(std::io::ErrorKind::WouldBlock.into());
    }
    Ok(lock)
}

/// `name` opened beneath `dir` with `flags`, not following a link at it, close-on-exec,
/// never blocking on what it is (a FIFO).
fn open_at(
    dir: &OwnedFd,
    name: &CString,
    flags: libc::c_int,
    mode: libc::c_uint,
) -> std::io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY;
    // SAFETY: `dir` is open and `name` NUL-terminated; the descriptor returned, if any, is
    // ours alone.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Locks `lock` exclusively, without waiting: `WouldBlock` if another holds it.
fn try_lock(lock: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: `lock` is an open descriptor.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// At start, without waiting for it: [`sweep_all`] of `servers` on a thread of its own, so
/// that a huge tree left behind does not hold up Warden's readiness. Running beside this
/// Warden's own processes is safe: their directories are named after this Warden process
/// (no stale one has that name) and locked before the sweep could take them (a lock taken
/// between a directory's making and its locking makes the maker try another name). Without
/// a thread, the sweep runs here.
pub fn sweep_all_in_background(servers: PathBuf) {
    let swept = servers.clone();
    let started = std::thread::Builder::new()
        .name("warden-sweep".into())
        .spawn(move || sweep_all(&swept));
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start a thread to remove what local MCP server processes left behind; removing it before starting");
        sweep_all(&servers);
    }
}

/// Sweeps the directory of every server under `servers` (`<data_dir>/mcp-servers`),
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
        tracing::info!(path = %servers.display(), removed, "removed directories left by local MCP server processes of an earlier run (not removed within its stop's 2 s, or that run did not stop cleanly)");
    }
    removed
}

/// Removes from the server directory `dir` every process directory no live Warden owns:
/// one whose `.lock` it locks without waiting (kept while it is being made, before it has
/// one, or if it has none), one named after the pid of a Warden no longer running or of this
/// one (which makes none such), looking at no more than [`SWEEP_MAX`] entries; how many it
/// removed. Nothing is followed: the directory is reached through its descriptor, a link
/// among its entries is removed itself, the `.lock` is opened without following a link, and
/// `remove_dir_all` follows none.
fn sweep(dir: &OwnedFd) -> usize {
    let base = through(dir);
    let Ok(entries) = std::fs::read_dir(&base) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.take(SWEEP_MAX).flatten() {
        let name = entry.file_name();
        if let Some(run) = lock_of(&name) {
            // A lock whose directory is gone (removed, its lock's file not yet): removed
            // once no one holds it.
            let run = base.join(run);
            if std::fs::symlink_metadata(&run).is_err()
                && let Some(_lock) = take_lock(&run)
                && std::fs::symlink_metadata(&run).is_err()
            {
                let _ = std::fs::remove_file(lock_path(&run));
            }
            continue;
        }
        let Some(owner) = owner(&name) else {
            continue;
        };
        let path = base.join(&name);
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        let result = match owner {
            Owner::Pid(pid) if pid != std::process::id() && alive(pid) => continue,
            Owner::Pid(_) => remove(&path, is_dir),
            Owner::Instance if !is_dir => remove(&path, false),
            Owner::Instance => {
                // Held until the directory is gone: a Warden making it then finds its lock
                // taken, or its `.lock` removed, and makes another.
                let Some(_lock) = take_lock(&path) else {
                    continue;
                };
                remove(&path, true).inspect(|()| {
                    let _ = std::fs::remove_file(lock_path(&path));
                })
            }
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

/// Removes the entry at `path`: the directory with what it holds, or anything else itself.
fn remove(path: &Path, is_dir: bool) -> std::io::Result<()> {
    if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

/// The lock of the process directory at `path`, if no one holds it: `<path>.lock` beside it
/// (or, for a directory of an earlier version without one, its `.lock` inside), opened
/// without following a link, locked without waiting. Neither there: `None` (the directory
/// may be being made).
fn take_lock(path: &Path) -> Option<OwnedFd> {
    // Its parent reached as given (`/proc/self/fd/N`, a link the kernel resolves itself).
    let parent = std::fs::File::open(path.parent()?).ok()?;
    let parent = OwnedFd::from(parent);
    let mut beside = path.file_name()?.as_bytes().to_vec();
    beside.extend_from_slice(LOCK_SUFFIX.as_bytes());
    let beside = CString::new(beside).ok()?;
    let lock = match open_at(&parent, &beside, libc::O_RDWR, 0) {
        Ok(lock) => lock,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let run = open_dir(path).ok()?;
            let inside = CString::new(LOCK).expect("no NUL in a constant");
            open_at(&run, &inside, libc::O_RDWR, 0).ok()?
        }
        Err(_) => return None,
    };
    try_lock(&lock).ok()?;
    Some(lock)
}

/// The process directory's name a lock's file `name` is named after, if it is one's.
fn lock_of(name: &OsStr) -> Option<&OsStr> {
    let run = name.to_str()?.strip_suffix(LOCK_SUFFIX)?;
    (owner(OsStr::new(run)) == Some(Owner::Instance)).then_some(OsStr::new(run))
}

/// Whose a process directory is, after its name.
#[derive(Debug, PartialEq, Eq)]
enum Owner {
    /// A Warden process's, named after its random id: its lock says whether it still is.
    Instance,
    /// A Warden's of an earlier version, named after its pid.
    Pid(u32),
}

/// Whose process the entry `name` was made for, if it is one's.
fn owner(name: &OsStr) -> Option<Owner> {
    let rest = name.to_str()?.strip_prefix(PREFIX)?;
    let (first, id) = rest.split_once('-')?;
    let hex = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(id) {
        return None;
    }
    if hex(first) {
        return Some(Owner::Instance);
    }
    first.parse().ok().map(Owner::Pid)
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

    /// Waits (bounded) for the reaper to have removed what was handed over: `path` is gone.
    fn removed(path: &Path) {
        assert_eq!(reaper().finish(Duration::from_secs(60)).left, 0);
        assert!(!path.exists(), "{}", path.display());
    }

    fn stale(home: &Path, pid: u32) -> PathBuf {
        let path = home.join(format!("run-{pid}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(path.join("tmp/.npm")).unwrap();
        std::fs::write(path.join("tmp/.npm/pkg"), "x").unwrap();
        path
    }

    /// A process directory of another Warden process, its `.lock` made, not held.
    fn other_instance(home: &Path) -> PathBuf {
        let path = home.join(format!(
            "run-{}-{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(path.join("tmp")).unwrap();
        std::fs::write(lock_path(&path), "").unwrap();
        path
    }

    /// `path`'s `.lock` locked through a descriptor of its own, as another Warden holds it.
    fn hold(path: &Path) -> std::fs::File {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(lock_path(path))
            .unwrap();
        // SAFETY: `file` is open.
        assert_eq!(
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        file
    }

    #[test]
    fn directories_of_processes_no_live_warden_owns_are_swept_at_start() {
        let root = tempfile::tempdir().unwrap();
        let servers = root.path().join("mcp-servers");
        let home = servers.join("s");
        std::fs::create_dir_all(&home).unwrap();
        // Named after pids: left by a Warden no longer running, and by one that ran as this
        // one's pid (this Warden was restarted as the same pid, as in a container).
        let gone = stale(&home, dead_pid());
        let mine = stale(&home, std::process::id());
        // A live Warden's of an earlier version (pid 1 always exists), and what is no
        // process directory.
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
    fn a_process_directory_is_swept_only_once_no_one_holds_its_lock() {
        let root = tempfile::tempdir().unwrap();
        let servers = root.path().join("mcp-servers");
        let home = servers.join("s");
        // Another Warden's (a pid namespace of its own: the same pid tells nothing), live.
        let theirs = other_instance(&home);
        let held = hold(&theirs);
        // One with no `.lock` (being made, or its process removed it) is kept too.
        let unlocked = other_instance(&home);
        std::fs::remove_file(lock_path(&unlocked)).unwrap();
        assert_eq!(sweep_all(&servers), 0);
        assert!(theirs.join("tmp").exists());
        assert!(unlocked.exists());
        // That Warden stopped: its lock is released.
        drop(held);
        assert_eq!(sweep_all(&servers), 1);
        assert!(!theirs.exists());
        // A `.lock` that is a link is not followed, nor what it leads to locked.
        let linked = other_instance(&home);
        std::fs::remove_file(lock_path(&linked)).unwrap();
        let target = root.path().join("target");
        std::fs::write(&target, "").unwrap();
        symlink(&target, lock_path(&linked)).unwrap();
        assert_eq!(sweep_all(&servers), 0);
        assert!(linked.exists() && target.exists());
    }

    #[test]
    fn the_lock_lives_beside_the_process_directory_and_goes_with_it() {
        let root = tempfile::tempdir().unwrap();
        let servers = root.path().join("mcp-servers");
        let home = servers.join("s");
        let run = make(&home).unwrap();
        let path = run.path().to_path_buf();
        // Not inside, where the process may write: beside it, in the server's directory.
        assert!(!path.join(LOCK).exists());
        assert!(lock_path(&path).is_file());
        // The process makes a `.lock` of its own inside: it changes nothing.
        std::fs::write(path.join(LOCK), "").unwrap();
        assert_eq!(sweep_all(&servers), 0);
        assert!(path.exists());
        drop(run);
        removed(&path);
        assert!(!lock_path(&path).exists());
        // A lock whose directory is gone is swept once no one holds it; one held is kept.
        let orphan = other_instance(&home);
        let held_orphan = other_instance(&home);
        let held = hold(&held_orphan);
        std::fs::remove_dir_all(&orphan).unwrap();
        std::fs::remove_dir_all(&held_orphan).unwrap();
        assert_eq!(sweep_all(&servers), 0);
        assert!(!lock_path(&orphan).exists());
        assert!(lock_path(&held_orphan).exists());
        drop(held);
        // A directory of an earlier version, its lock inside, not held: swept.
        let older = other_instance(&home);
        std::fs::rename(lock_path(&older), older.join(LOCK)).unwrap();
        let file = std::fs::File::open(older.join(LOCK)).unwrap();
        // SAFETY: `file` is open.
        assert_eq!(
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
            0
        );
        assert_eq!(sweep_all(&servers), 0, "held inside: kept");
        drop(file);
        assert_eq!(sweep_all(&servers), 1);
        assert!(!older.exists());
    }

    #[test]
    fn this_warden_s_process_directories_are_locked_through_a_descriptor_no_child_inherits() {
        let root = tempfile::tempdir().unwrap();
        let servers = root.path().join("mcp-servers");
        let home = servers.join("s");
        let first = make(&home).unwrap();
        let second = make(&home).unwrap();
        let name = first.path().file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with(&format!("run-{}-", *INSTANCE)), "{name}");
        assert_eq!(sweep_all(&servers), 0);
        assert!(first.path().exists() && second.path().exists());
        let lock = first.lock.as_ref().unwrap();
        // SAFETY: `lock` is open.
        let flags = unsafe { libc::fcntl(lock.as_raw_fd(), libc::F_GETFD) };
        assert!(flags >= 0 && flags & libc::FD_CLOEXEC != 0);
        // Dropped: removed by the reaper, and its lock released with it.
        let path = first.path().to_path_buf();
        drop(first);
        removed(&path);
        assert_eq!(sweep_all(&servers), 0);
        assert!(second.path().exists());
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

    /// A reaper whose removals each wait for a word on the channel it returns.
    fn gated_reaper() -> (&'static Reaper, std::sync::mpsc::Sender<()>) {
        let (open, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let reaper = Reaper::start(Box::new(move |path: &Path| {
            // Bounded: a test that fails does not hang.
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(120));
            std::fs::remove_dir_all(path)
        }));
        (Box::leak(Box::new(reaper)), open)
    }

    /// A process directory under `root`'s `mcp-servers/s`, removed by a [`gated_reaper`]:
    /// the servers' directory, the reaper, its gate, the directory.
    fn gated_run(
        root: &Path,
    ) -> (
        PathBuf,
        &'static Reaper,
        std::sync::mpsc::Sender<()>,
        RunDir,
    ) {
        let servers = root.join("mcp-servers");
        let (reaper, gate) = gated_reaper();
        let run = make_with(&servers.join("s"), reaper).unwrap();
        (servers, reaper, gate, run)
    }

    #[test]
    fn a_runtime_stops_without_waiting_for_the_removal_of_a_process_directory() {
        let root = tempfile::tempdir().unwrap();
        let (servers, reaper, open, run) = gated_run(root.path());
        let path = run.path().to_path_buf();
        assert_eq!(reaper.pending(), (1, 0));
        // A worker's runtime stops with a session's process (and its directory) in a task.
        let (stopped, runtime_gone) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                tokio::spawn(async move {
                    let _run = run;
                    std::future::pending::<()>().await;
                });
                tokio::task::yield_now().await;
            });
            drop(runtime);
            let _ = stopped.send(());
        });
        // A bound on failure only: a runtime that waited for the removal would wait until
        // the gate opens, which it does not before this.
        runtime_gone
            .recv_timeout(Duration::from_secs(60))
            .expect("the runtime stopped while the removal waits");
        assert!(path.exists());
        assert_eq!(reaper.pending(), (0, 1));
        // Warden stopping gives the reaper a bound: the directory is left, its lock held
        // (no sweep takes it while this Warden runs).
        assert_eq!(
            reaper.finish(Duration::from_millis(10)),
            Finished { left: 1 }
        );
        assert_eq!(sweep_all(&servers), 0);
        assert!(path.exists());
        open.send(()).unwrap();
        assert_eq!(reaper.finish(Duration::from_secs(60)), Finished { left: 0 });
        assert!(!path.exists() && !lock_path(&path).exists());
    }

    #[test]
    fn a_directory_whose_removal_was_given_up_on_is_swept_at_the_next_start() {
        let root = tempfile::tempdir().unwrap();
        let (servers, reaper, _gate, run) = gated_run(root.path());
        let path = run.path().to_path_buf();
        std::fs::write(path.join("tmp/f"), "x").unwrap();
        // The Warden exits while the removal waits: its lock is released with it (here, its
        // descriptor closed as an exit closes it).
        let copy = run.lock.as_ref().unwrap().try_clone().unwrap();
        drop(run);
        assert_eq!(reaper.finish(Duration::from_millis(10)).left, 1);
        assert_eq!(sweep_all(&servers), 0, "held while the Warden runs");
        // A lock belongs to the open file its descriptors share: let go through the copy, as
        // an exit lets go of it.
        // SAFETY: `copy` is open.
        assert_eq!(unsafe { libc::flock(copy.as_raw_fd(), libc::LOCK_UN) }, 0);
        drop(copy);
        assert_eq!(sweep_all(&servers), 1);
        assert!(!path.exists() && !lock_path(&path).exists());
    }

    #[test]
    fn only_names_of_process_directories_name_an_owner() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            owner(OsStr::new(&format!("run-42-{id}"))),
            Some(Owner::Pid(42))
        );
        assert_eq!(
            owner(OsStr::new(&format!("run-{id}-{id}"))),
            Some(Owner::Instance)
        );
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
