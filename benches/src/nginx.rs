//! The nginx baseline: one worker by default (`--nginx-workers`), keep-alive to the upstream,
//! no access log.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;
use crate::process::Proc;

/// The nginx configuration for a reverse-proxy hop from `listen` to `upstream` with `workers`
/// worker processes (0: `auto`, one per core), with its state (pid, temp files, error log)
/// under `prefix`.
pub fn config(prefix: &Path, listen: SocketAddr, upstream: SocketAddr, workers: usize) -> String {
    let p = prefix.display();
    let workers = match workers {
        0 => "auto".to_owned(),
        n => n.to_string(),
    };
    format!(
        r#"daemon off;
worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 1000000;
    upstream bench_upstream {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}

/// Writes the configuration into `dir` and starts nginx with `workers` worker processes (0:
/// one per core); returns once it accepts connections.
pub fn start(
    nginx: &Path,
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    workers: usize,
) -> Result<Proc, HarnessError> {
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, config(dir, listen, upstream, workers))
        .map_err(HarnessError::io(format!("writing {}", conf.display())))?;
    let mut command = Command::new(nginx);
    command.arg("-p").arg(dir).arg("-c").arg(&conf);
    let mut proc = Proc::spawn("nginx", command, &dir.join("nginx.out"))?;
    proc.wait_for_port(listen)?;
    Ok(proc)
}

/// The nginx binary: `$NGINX`, else the first `nginx` on `PATH` or in `/usr/sbin`.
pub fn locate() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("NGINX") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .ok_or(HarnessError::MissingBinary {
            what: "nginx",
            path: PathBuf::from("nginx"),
            hint: "install it (`apt-get install -y nginx`), set $NGINX, or leave nginx out of --targets",
        })
}

/// `nginx -v` output, e.g. `nginx/1.26.3`.
pub fn version(nginx: &Path) -> Option<String> {
    let out = Command::new(nginx).arg("-v").output().ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    text.trim().rsplit(' ').next().map(str::to_owned)
}
