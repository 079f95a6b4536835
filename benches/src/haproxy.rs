//! The load balancer in front of several Warden replicas (`replicas-1`, `replicas-3`):
//! haproxy with one thread (as nginx's one worker), round robin, HTTP/1.1 keep-alive to each
//! replica, no health checks, no logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;
use crate::process::Proc;

/// The configuration: `listen` balanced over `backends`.
pub fn config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("  server r{i} {addr}\n"))
        .collect();
    format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  \
         timeout server 60s\n\
         frontend agents\n  bind {listen}\n  default_backend wardens\n\
         backend wardens\n  balance roundrobin\n{servers}"
    )
}

/// Writes the configuration into `dir` and starts haproxy; returns once it accepts
/// connections.
pub fn start(
    haproxy: &Path,
    dir: &Path,
    listen: SocketAddr,
    backends: &[SocketAddr],
) -> Result<Proc, HarnessError> {
    let conf = dir.join("haproxy.cfg");
    std::fs::write(&conf, config(listen, backends))
        .map_err(HarnessError::io(format!("writing {}", conf.display())))?;
    let mut command = Command::new(haproxy);
    command.arg("-db").arg("-f").arg(&conf);
    let mut proc = Proc::spawn("haproxy", command, &dir.join("haproxy.out"))?;
    proc.wait_for_port(listen)?;
    Ok(proc)
}

/// The haproxy binary: `$HAPROXY`, else the first `haproxy` on `PATH` or in `/usr/sbin`.
pub fn locate() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("HAPROXY") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("haproxy"))
        .find(|candidate| candidate.is_file())
        .ok_or(HarnessError::MissingBinary {
            what: "haproxy",
            path: PathBuf::from("haproxy"),
            hint: "install it (`apt-get install -y haproxy`; tests/run does), set $HAPROXY, or leave replicas-1 and replicas-3 out of --targets",
        })
}
