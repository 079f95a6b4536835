//! Child processes under test: start, wait until ready, read their peak memory and CPU time
//! from `/proc`, stop.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::HarnessError;

/// How long a child may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A free loopback address (the port is released again, so another process can bind it).
pub fn free_loopback_addr() -> Result<SocketAddr, HarnessError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .map_err(HarnessError::io("binding a free loopback port"))?;
    listener
        .local_addr()
        .map_err(HarnessError::io("reading a bound port"))
}

/// A running child whose output goes to a log file; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Proc {
    what: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with stdout and stderr written to `log`.
    pub fn spawn(
        what: &'static str,
        mut command: Command,
        log: &Path,
    ) -> Result<Proc, HarnessError> {
        let out =
            File::create(log).map_err(HarnessError::io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(HarnessError::io("duplicating a log file handle"))?;
        let program = PathBuf::from(command.get_program());
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                what,
                path: program,
                source,
            })?;
        Ok(Proc {
            what,
            child,
            log: log.to_path_buf(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the child wrote so far (last 2000 characters).
    pub fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let skip = text.chars().count().saturating_sub(2000);
        text.chars().skip(skip).collect()
    }

    /// Fails if the child has exited.
    pub fn check_running(&mut self) -> Result<(), HarnessError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(HarnessError::ExitedEarly {
                what: self.what,
                status: status.to_string(),
                output: self.output(),
            }),
            Err(e) => Err(HarnessError::io(format!("checking on {}", self.what))(e)),
        }
    }

    /// Waits until `addr` accepts TCP connections.
    pub fn wait_for_port(&mut self, addr: SocketAddr) -> Result<(), HarnessError> {
        self.wait_until(addr, |a| {
            TcpStream::connect_timeout(&a, Duration::from_millis(200)).is_ok()
        })
    }

    /// Waits until `GET http://addr{path}` answers 200.
    pub fn wait_for_http_ok(&mut self, addr: SocketAddr, path: &str) -> Result<(), HarnessError> {
        self.wait_until(addr, |a| http_get_status(a, path) == Some(200))
    }

    fn wait_until(
        &mut self,
        addr: SocketAddr,
        ready: impl Fn(SocketAddr) -> bool,
    ) -> Result<(), HarnessError> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            if ready(addr) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(HarnessError::NotReady {
                    what: self.what,
                    addr: addr.to_string(),
                    waited: READY_TIMEOUT,
                    output: self.output(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Sends SIGTERM and waits up to 5 s, then SIGKILL.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Status code of a plain `GET` on a fresh connection, or `None` if there was no answer.
fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut head = [0u8; 64];
    let n = http_get(addr, path)?.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

/// `GET path` on `addr` (HTTP/1.1, `Connection: close`); the response's body, when the status
/// is 200.
pub fn http_get_body(addr: SocketAddr, path: &str) -> Option<String> {
    let mut response = String::new();
    http_get(addr, path)?.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1)? == "200").then(|| body.to_owned())
}

/// Sends `GET path` to `addr` and returns the stream to read the response from.
fn http_get(addr: SocketAddr, path: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    Some(stream)
}

/// `pid` and its direct children (nginx: master and workers).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in entries.flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if stat_fields(child).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
            == Some(pid)
        {
            pids.push(child);
        }
    }
    pids
}

/// Peak resident set size (`VmHWM`) of `pid`, KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU time used so far by `pids`, seconds.
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = pids
        .iter()
        .filter_map(|&pid| {
            let fields = stat_fields(pid)?;
            // After the command name: state(0) ppid(1) ... utime(11) stime(12).
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            Some(utime + stime)
        })
        .sum();
    ticks as f64 / ticks_per_sec
}

/// The machine's CPU time so far, in clock ticks: all of it, and what the hypervisor took
/// for other guests (`steal`), from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    pub total: u64,
    pub steal: u64,
}

impl MachineTicks {
    /// Reads `/proc/stat`; `None` where it cannot be read.
    pub fn now() -> Option<MachineTicks> {
        MachineTicks::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// Parses the `cpu` line: user nice system idle iowait irq softirq steal (guest time is
    /// already inside user and nice, so it is not added again).
    pub fn parse(stat: &str) -> Option<MachineTicks> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let fields: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        (fields.len() == 8).then(|| MachineTicks {
            total: fields.iter().sum(),
            steal: fields[7],
        })
    }

    /// Share of the machine's time between `self` and `later` that was stolen, in percent.
    pub fn steal_percent_until(self, later: MachineTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| 100.0 * steal as f64 / total as f64)
    }
}

/// The fields of `/proc/<pid>/stat` after the parenthesised command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}
