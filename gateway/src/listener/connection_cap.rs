//! `listen.max_connections`: the most connections one listener holds open at once.
//!
//! The accept loop takes a [`Slot`] before each `accept`; when none is free it stops
//! accepting, so new connections wait in the kernel's backlog (and beyond it are refused by
//! the kernel) until one of the listener's connections closes, as nginx does at
//! `worker_connections`. A listener flooded with idle or trickling connections then holds at
//! most its cap of file descriptors, and the other listeners keep theirs. Reaching the cap is
//! counted (`warden_listener_connection_cap_reached_total`) and logged at most once per
//! [`LOG_EVERY`] per listener.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// At most one log line per listener this often while its cap is reached.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The listeners' connection gauges and cap counters, for `/metrics`.
#[derive(Clone)]
pub struct CapMetrics {
    open: IntGaugeVec,
    reached: IntCounterVec,
}

impl CapMetrics {
    /// Creates the metrics (register them with [`CapMetrics::collectors`]).
    pub fn new() -> CapMetrics {
        CapMetrics {
            open: IntGaugeVec::new(
                Opts::new(
                    "warden_listener_connections",
                    "Connections a listener holds open (listen.max_connections caps them)",
                ),
                &["listener"],
            )
            .expect("static metric definition"),
            reached: IntCounterVec::new(
                Opts::new(
                    "warden_listener_connection_cap_reached_total",
                    "Times a listener stopped accepting because it held listen.max_connections connections",
                ),
                &["listener"],
            )
            .expect("static metric definition"),
        }
    }

    /// The collectors to register.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.open.clone()), Box::new(self.reached.clone())]
    }
}

impl Default for CapMetrics {
    fn default() -> Self {
        CapMetrics::new()
    }
}

/// One listener's cap, shared by all its accept loops (the proxy's workers).
#[derive(Clone)]
pub struct ConnectionCap {
    inner: Arc<Inner>,
}

struct Inner {
    listener: &'static str,
    max: usize,
    /// The cap this one lies within ([`ConnectionCap::within`]): a slot takes one of each.
    parent: Option<ConnectionCap>,
    slots: Arc<Semaphore>,
    open: IntGauge,
    reached: IntCounter,
    last_logged: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ConnectionCap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionCap")
            .field("listener", &self.inner.listener)
            .field("max", &self.inner.max)
            .finish()
    }
}

impl ConnectionCap {
    /// At most `max` (at least 1) connections open at once on the listener named `listener`
    /// (its metric label and log field: `proxy`, `egress`, `admin`, `console`).
    pub fn new(listener: &'static str, max: usize, metrics: &CapMetrics) -> ConnectionCap {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionCap {
            inner: Arc::new(Inner {
                listener,
                max,
                parent: None,
                slots: Arc::new(Semaphore::new(max)),
                open: metrics.open.with_label_values(&[listener]),
                reached: metrics.reached.with_label_values(&[listener]),
                last_logged: Mutex::new(None),
            }),
        }
    }

    /// A cap of at most `max` (at least 1) connections within this one: each of its slots
    /// holds one of this cap's too. Its own counts are not exported (this cap's are).
    pub fn within(&self, max: usize) -> ConnectionCap {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        let metrics = CapMetrics::new();
        ConnectionCap {
            inner: Arc::new(Inner {
                listener: self.inner.listener,
                max,
                parent: Some(self.clone()),
                slots: Arc::new(Semaphore::new(max)),
                open: metrics.open.with_label_values(&[self.inner.listener]),
                reached: metrics.reached.with_label_values(&[self.inner.listener]),
                last_logged: Mutex::new(None),
            }),
        }
    }

    /// A cap of `max` for tests, with metrics of its own.
    #[cfg(test)]
    pub(crate) fn for_tests(max: usize) -> ConnectionCap {
        ConnectionCap::new("test", max, &CapMetrics::new())
    }

    /// A slot for one more connection: at once when one is free, else once a connection
    /// closes (the cap is counted as reached, and logged, first).
    pub async fn slot(&self) -> Slot {
        if let Some(slot) = self.try_slot() {
            return slot;
        }
        let permit = Arc::clone(&self.inner.slots)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let parent = match &self.inner.parent {
            Some(parent) => Some(Box::pin(parent.slot()).await),
            None => None,
        };
        self.taken(permit, parent)
    }

    /// A slot at once when one is free; `None` at the cap (counted as reached, and logged).
    pub fn try_slot(&self) -> Option<Slot> {
        match Arc::clone(&self.inner.slots).try_acquire_owned() {
            Ok(permit) => match &self.inner.parent {
                // The permit taken here is given back when the parent has none.
                Some(parent) => Some(self.taken(permit, Some(parent.try_slot()?))),
                None => Some(self.taken(permit, None)),
            },
            Err(_) => {
                self.inner.reached.inc();
                self.log_reached();
                None
            }
        }
    }

    fn taken(&self, permit: OwnedSemaphorePermit, parent: Option<Slot>) -> Slot {
        self.inner.open.inc();
        Slot {
            _permit: permit,
            open: self.inner.open.clone(),
            _parent: parent.map(Box::new),
        }
    }

    fn log_reached(&self) {
        let inner = &self.inner;
        let mut last = inner.last_logged.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            listener = inner.listener,
            max = inner.max,
            "the listener holds its most connections (listen.max_connections); new connections wait in the kernel's backlog until one closes"
        );
    }
}

/// One connection's place under its listener's cap, given back when dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
    /// The slot of the cap this one lies within, if any.
    _parent: Option<Box<Slot>>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slot")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A connection's socket with its [`Slot`]: the slot is given back when the socket is
/// dropped, whoever holds it last (the HTTP connection, or the tunnel it was upgraded to).
pub struct Held<I> {
    io: I,
    _slot: Slot,
}

impl<I> Held<I> {
    /// `io`, holding `slot` for as long as it lives.
    pub fn new(io: I, slot: Slot) -> Held<I> {
        Held { io, _slot: slot }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Held<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Held<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
