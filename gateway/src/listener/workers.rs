//! Worker threads: one single-threaded tokio runtime per thread, as nginx and Envoy run one
//! event loop per worker.
//!
//! Each worker accepts on its own socket bound to the listener's address (`SO_REUSEPORT`: the
//! kernel spreads new connections across the workers) and serves them with its own handler,
//! made for that worker alone (the proxy's holds the worker's upstream connection pool), so a
//! request lives on one thread from accept to the last byte of its response: no hand-off
//! between threads, no work-stealing bookkeeping. Measured on the load harness, this serves the
//! same requests with about a third less CPU than one tokio multi-thread runtime
//! (docs/performance.md).
//!
//! Workers serve whatever handler they are given: the proxy today, and any other listener that
//! wants the same model. Everything else (admin listener, reloads, signal handling, TLS and
//! JWKS refreshes) runs on the main thread's runtime, so none of it competes with the
//! workers' event loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::oneshot;

use super::conn::ConnInfo;
use super::connection_cap::ConnectionCap;
use super::serve::HttpOptions;
use super::shutdown::Shutdown;
use super::tls::ServerTls;

/// Pending connections the kernel queues per worker socket.
const BACKLOG: i32 = 1024;

/// Why the workers could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot listen on {addr}: {source}; is another process using it? Change {listener}")]
    Bind {
        /// The key that sets the listener's address (`listen.proxy`, `egress.listen`).
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot set up worker {worker}: {source}")]
    Handler {
        worker: usize,
        source: Box<dyn std::error::Error + Send + Sync>,
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

/// Binds `count` listening sockets to `addr` for the listener named `listener` (in errors),
/// sharing the port with `SO_REUSEPORT` when there are several. All are bound before any
/// worker starts, so a port in use fails the start: a port shared this way is first bound
/// alone, without `SO_REUSEPORT`, since the kernel would otherwise let these sockets join
/// those of another Warden on the same port (as the same user) and split its traffic.
pub fn bind(
    listener: &'static str,
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<std::net::TcpListener>, WorkerError> {
    let failed = |addr, source| WorkerError::Bind {
        listener,
        addr,
        source,
    };
    let shared = count > 1;
    let addr = if shared {
        // `addr` may ask for port 0: the shared sockets take the port the lone one got.
        let alone = bind_socket(addr, false).map_err(|e| failed(addr, e))?;
        alone.local_addr().map_err(|e| failed(addr, e))?
    } else {
        addr
    };
    let first = bind_socket(addr, shared).map_err(|e| failed(addr, e))?;
    // `addr` may ask for port 0: the others share the port the first one got.
    let addr = first.local_addr().map_err(|e| failed(addr, e))?;
    let mut listeners = Vec::with_capacity(count);
    listeners.push(first);
    for _ in 1..count {
        listeners.push(bind_socket(addr, shared).map_err(|e| failed(addr, e))?);
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

/// Starts one worker per listener. `make_handler` is called once per worker, on the calling
/// thread (so a bad setting fails the start, not a worker), and gives the handler that worker
/// serves every request with. Each worker serves until `shutdown` is requested, then lets
/// in-flight requests (and `options.detached` work) finish within `grace`. The workers share
/// `cap`: the listener's connections, all workers together, stay within it.
#[allow(clippy::too_many_arguments)]
pub fn spawn<M, H, E, F, B>(
    name: &str,
    listeners: Vec<std::net::TcpListener>,
    tls: Option<Arc<ServerTls>>,
    options: HttpOptions,
    cap: &ConnectionCap,
    mut make_handler: M,
    shutdown: &Shutdown,
    grace: Duration,
) -> Result<Workers, WorkerError>
where
    M: FnMut(usize) -> Result<H, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut ended = Vec::with_capacity(listeners.len());
    for (worker, std_listener) in listeners.into_iter().enumerate() {
        let handler = make_handler(worker).map_err(|e| WorkerError::Handler {
            worker,
            source: e.into(),
        })?;
        let (done, end) = oneshot::channel();
        let tls = tls.clone();
        let options = options.clone();
        let cap = cap.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name(format!("{name}-{worker}"))
            .spawn(move || {
                let served = Served {
                    tls,
                    options,
                    cap,
                    shutdown,
                    grace,
                };
                run(worker, std_listener, served, handler);
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

/// What every worker of one listener serves with.
struct Served {
    tls: Option<Arc<ServerTls>>,
    options: HttpOptions,
    cap: ConnectionCap,
    shutdown: Shutdown,
    grace: Duration,
}

/// One worker: its own runtime, its own accept loop, its own handler.
fn run<H, F, B>(worker: usize, std_listener: std::net::TcpListener, served: Served, handler: H)
where
    H: Fn(http::Request<Incoming>, ConnInfo) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let runtime = match worker_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(worker, %error, "cannot start the worker's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(worker, %error, "cannot register the worker's listener");
                return;
            }
        };
        let Served {
            tls,
            options,
            cap,
            shutdown,
            grace,
        } = served;
        let detached = options.detached.clone();
        let served = super::serve::serve_with(
            listener,
            tls,
            options,
            cap,
            handler,
            shutdown.clone().requested(),
            grace,
        );
        match detached {
            Some(detached) => {
                tokio::join!(served, detached.drain(shutdown.requested(), grace));
            }
            None => served.await,
        }
    });
}

/// A worker's event loop: one thread, nothing shared with other workers. Public for the
/// bench's durability floor, which serves as a worker does.
pub fn worker_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
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
        let listeners = bind("listen.proxy", "127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0), "{ports:?}");
    }

    #[test]
    fn workers_do_not_join_the_shared_port_of_another_listener() {
        // Another Warden's workers, sharing their port with SO_REUSEPORT.
        let running = bind("listen.proxy", "127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = running[0].local_addr().unwrap();
        for count in [1, 2] {
            let error = bind("listen.proxy", addr, count).unwrap_err();
            assert!(error.to_string().contains(&addr.to_string()), "{error}");
        }
    }

    #[test]
    fn a_port_in_use_fails_the_bind_and_names_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let error = bind("listen.proxy", addr, 2).unwrap_err();
        assert!(error.to_string().contains(&addr.to_string()), "{error}");
        assert!(error.to_string().contains("listen.proxy"), "{error}");
    }
}
