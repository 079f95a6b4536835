//! The proxy's worker threads: one single-threaded tokio runtime per thread, as nginx and
//! Envoy run one event loop per worker.
//!
//! Each worker accepts on its own socket bound to the proxy address (`SO_REUSEPORT`: the
//! kernel spreads new connections across the workers) and forwards over its own upstream
//! connection pool, so a request lives on one thread from accept to the last byte of its
//! response: no hand-off between threads, no work-stealing bookkeeping. Measured on the load
//! harness, this serves the same requests with about a third less CPU than one tokio
//! multi-thread runtime (docs/performance.md).
//!
//! Everything else (admin listener, reloads, signal handling, TLS and JWKS refreshes) runs on
//! the main thread's runtime, so none of it competes with the proxy's event loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{oneshot, watch};

use crate::config::UpstreamConfig;
use crate::gateway::Gateway;
use crate::listener::{self, ServerTls};
use crate::upstream::{UpstreamClient, UpstreamError};

/// Pending connections the kernel queues per worker socket.
const BACKLOG: i32 = 1024;

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot listen on {addr}: {source}; is another process using it? Change listen.proxy")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up worker {worker}'s upstream client: {source}")]
    Upstream {
        worker: usize,
        source: UpstreamError,
    },
    #[error("cannot start worker {worker}: {source}")]
    Start {
        worker: usize,
        source: std::io::Error,
    },
}

/// How many workers `worker_threads` asks for: `0` means one per CPU core.
pub fn count(worker_threads: usize) -> usize {
    if worker_threads > 0 {
        return worker_threads;
    }
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Binds `count` listening sockets to `addr`, sharing the port with `SO_REUSEPORT` when there
/// are several. All are bound before any worker starts, so a port in use fails the start.
pub fn bind(addr: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, WorkerError> {
    let shared = count > 1;
    let first = bind_socket(addr, shared).map_err(|source| WorkerError::Bind { addr, source })?;
    // `addr` may ask for port 0: the others share the port the first one got.
    let addr = first
        .local_addr()
        .map_err(|source| WorkerError::Bind { addr, source })?;
    let mut listeners = Vec::with_capacity(count);
    listeners.push(first);
    for _ in 1..count {
        listeners
            .push(bind_socket(addr, shared).map_err(|source| WorkerError::Bind { addr, source })?);
    }
    Ok(listeners)
}

/// One non-blocking listening socket on `addr`.
fn bind_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// The running workers.
#[derive(Debug)]
pub struct Workers {
    /// Each worker's end: resolves when its listener and connections are done.
    ended: Vec<oneshot::Receiver<()>>,
}

/// Starts one worker per listener: each serves the proxy on its listener until `shutdown`
/// is raised, then lets in-flight requests finish within `grace`.
pub fn spawn(
    gw: &Arc<Gateway>,
    listeners: Vec<std::net::TcpListener>,
    tls: Option<Arc<ServerTls>>,
    upstream: &UpstreamConfig,
    shutdown: &watch::Receiver<bool>,
    grace: Duration,
) -> Result<Workers, WorkerError> {
    let mut ended = Vec::with_capacity(listeners.len());
    for (worker, std_listener) in listeners.into_iter().enumerate() {
        // Built here so that a bad upstream setting fails the start, not a worker.
        let client = UpstreamClient::new(upstream)
            .map_err(|source| WorkerError::Upstream { worker, source })?;
        let (done, end) = oneshot::channel();
        let gw = Arc::clone(gw);
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name(format!("warden-worker-{worker}"))
            .spawn(move || {
                run(worker, gw, std_listener, tls, client, shutdown, grace);
                let _ = done.send(());
            })
            .map_err(|source| WorkerError::Start { worker, source })?;
        ended.push(end);
    }
    Ok(Workers { ended })
}

impl Workers {
    /// Waits until every worker has finished.
    pub async fn join(self) {
        for end in self.ended {
            // An error means the worker thread ended without saying so (a panic, logged).
            let _ = end.await;
        }
    }
}

/// One worker: its own runtime, its own accept loop, its own upstream pool.
fn run(
    worker: usize,
    gw: Arc<Gateway>,
    std_listener: std::net::TcpListener,
    tls: Option<Arc<ServerTls>>,
    client: UpstreamClient,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(worker, %error, "cannot start the worker's runtime");
            return;
        }
    };
    // Shared by reference count: a request holds a pointer, not a copy of the client.
    let client = Arc::new(client);
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(worker, %error, "cannot register the worker's listener");
                return;
            }
        };
        listener::serve(
            listener,
            tls,
            move |req, conn| crate::proxy::handle(Arc::clone(&gw), Arc::clone(&client), req, conn),
            crate::server::shutdown_signal(shutdown),
            grace,
        )
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_means_one_worker_per_core() {
        assert!(count(0) >= 1);
        assert_eq!(count(3), 3);
    }

    #[test]
    fn several_workers_share_one_port() {
        let listeners = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0), "{ports:?}");
    }

    #[test]
    fn a_port_in_use_fails_the_bind_and_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind(addr, 2).unwrap_err();
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
        assert!(error.to_string().contains("listen.proxy"), "{error}");
    }
}
