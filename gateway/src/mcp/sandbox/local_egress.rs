//! Who serves the egress of a local server's process with `sandbox.network: egress`: the
//! proxy's egress path, bound to the agent whose session started the process. The MCP side
//! hands it the listener of the process's namespace; it serves it until the guard returned is
//! dropped, which closes the listener (the process has ended).

use std::sync::Arc;

/// Serves the egress of local servers' processes for one agent session.
pub trait ServeEgress: Send + Sync {
    /// Serves `listener` (the process's, in its namespace) as `server`'s egress proxy, for
    /// the agent whose session started it, holding at most `max_connections` of its
    /// connections open at once, until the guard is dropped; `Err` says why it cannot (the
    /// process is then stopped: it would have no way out).
    fn serve(
        &self,
        server: &Arc<str>,
        listener: std::net::TcpListener,
        max_connections: usize,
    ) -> Result<EgressGuard, String>;
}

/// Serving one process's listener: stopped, the listener closed, and the tunnels it opened
/// told to close (`ended`'s receivers see its sender dropped), when dropped.
#[derive(Debug)]
pub struct EgressGuard {
    task: tokio::task::AbortHandle,
    _ended: tokio::sync::watch::Sender<()>,
}

impl EgressGuard {
    /// Guards the task serving the listener, and what its tunnels watch.
    pub fn new(
        task: tokio::task::AbortHandle,
        ended: tokio::sync::watch::Sender<()>,
    ) -> EgressGuard {
        EgressGuard {
            task,
            _ended: ended,
        }
    }
}

impl Drop for EgressGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether this process holds the socket whose `/proc/self/fd` link reads `link`.
    fn holds(link: &std::path::Path) -> bool {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == link))
    }

    #[tokio::test]
    async fn dropping_the_guard_closes_the_listener() {
        use std::os::fd::AsRawFd as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", listener.as_raw_fd())).unwrap();
        assert!(holds(&link));
        let task = tokio::spawn(async move {
            loop {
                let _ = listener.accept().await;
            }
        });
        let (ended_tx, mut ended) = tokio::sync::watch::channel(());
        let guard = EgressGuard::new(task.abort_handle(), ended_tx);
        drop(guard);
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(ended.changed().await.is_err(), "the tunnels are told");
        assert!(
            !holds(&link),
            "the listener {} is still open",
            link.display()
        );
    }
}
