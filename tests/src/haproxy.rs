//! A real load balancer in front of several Warden replicas: Debian's `haproxy` (tests/run
//! installs it), on 127.0.0.1, round robin over the replicas' proxy listeners, each checked
//! on its admin listener's `/readyz`, a connection refused retried on another replica, an MCP
//! session kept on the replica that opened it (its `mcp-session-id`, learnt from the answer to
//! `initialize`). Its statistics page tells which replicas it sends to.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;
use tokio::process::Command;

use crate::process::Proc;
use crate::warden::free_port;

/// One replica as the load balancer sees it.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Its name in haproxy's configuration and statistics.
    pub name: String,
    /// Its proxy listener.
    pub proxy: SocketAddr,
    /// Its admin listener (`/readyz`).
    pub admin: SocketAddr,
}

/// A running `haproxy`.
#[derive(Debug)]
pub struct Haproxy {
    proc: Proc,
    port: u16,
    stats: u16,
    _dir: TempDir,
    http: reqwest::Client,
}

impl Haproxy {
    /// Starts haproxy in front of `backends` and waits until it answers its statistics page.
    pub async fn start(backends: &[Backend]) -> anyhow::Result<Haproxy> {
        let dir = tempfile::Builder::new()
            .prefix("warden-e2e-lb-")
            .tempdir()?;
        let port = free_port()?;
        let stats = free_port()?;
        let servers: String = backends
            .iter()
            .map(|b| {
                format!(
                    "  server {} {} check port {}\n",
                    b.name,
                    b.proxy,
                    b.admin.port()
                )
            })
            .collect();
        let config = format!(
            "global\n  maxconn 2000\n\
             defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  \
             timeout server 60s\n  timeout check 1s\n  retries 3\n  option redispatch 1\n  \
             http-reuse never\n\
             frontend agents\n  bind 127.0.0.1:{port}\n  default_backend wardens\n\
             backend wardens\n  balance roundrobin\n  option httpchk GET /readyz\n  \
             stick-table type string len 128 size 10k expire 30m\n  \
             stick on req.hdr(mcp-session-id)\n  \
             stick store-response res.hdr(mcp-session-id)\n  \
             default-server inter 200ms fall 2 rise 1\n{servers}\
             frontend stats\n  bind 127.0.0.1:{stats}\n  stats enable\n  stats uri /stats\n"
        );
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config)?;
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&path).kill_on_drop(true);
        let proc = Proc::spawn("haproxy", cmd)
            .context("haproxy (apt-get install haproxy; tests/run installs it)")?;
        let mut lb = Haproxy {
            proc,
            port,
            stats,
            _dir: dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while lb.states().await.is_err() {
            if let Some(status) = lb.proc.try_exit_status() {
                bail!("haproxy exited with {status}:\n{}", lb.proc.output());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("haproxy did not answer within 20 s:\n{}", lb.proc.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(lb)
    }

    /// `http://127.0.0.1:<port><path>`: through the load balancer.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Each backend server's name and status (`UP`, `DOWN`, ...), from the statistics page.
    pub async fn states(&self) -> anyhow::Result<Vec<(String, String)>> {
        let csv = self
            .http
            .get(format!("http://127.0.0.1:{}/stats;csv", self.stats))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .context("empty statistics")?
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = |name: &str| header.iter().position(|h| *h == name);
        let (px, sv, status) = (
            column("pxname").context("no pxname")?,
            column("svname").context("no svname")?,
            column("status").context("no status")?,
        );
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| {
                f.get(px) == Some(&"wardens")
                    && !matches!(f.get(sv), Some(&"BACKEND" | &"FRONTEND"))
            })
            .map(|f| (f[sv].to_owned(), f[status].to_owned()))
            .collect())
    }

    /// Waits up to `timeout` until `name`'s status starts with `status` (`UP`, `DOWN`).
    pub async fn wait_for(
        &self,
        name: &str,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let states = self.states().await.unwrap_or_default();
            if states
                .iter()
                .any(|(n, s)| n == name && s.starts_with(status))
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("haproxy: {name} not {status} after {timeout:?}: {states:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything haproxy printed so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }
}
