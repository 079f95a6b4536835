//! What the request path knows about the connection a request arrived on.

use std::net::SocketAddr;
use std::sync::Arc;

use super::connection_cap::{ConnectionCap, Slot};
use super::idle::{Activity, Busy};

/// What is known about the connection a request arrived on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Identity from a verified client certificate: its first DNS SAN, else its first URI
    /// SAN, else its subject CN. `None` without a client certificate.
    pub client_identity: Option<Arc<str>>,
    /// The connection's requests in flight (`listen.idle_timeout`).
    pub(super) activity: Activity,
    /// The listener's cap (`listen.max_connections`).
    pub(super) cap: ConnectionCap,
}

impl ConnInfo {
    /// Keeps the connection from counting as idle (`listen.idle_timeout`) until the guard is
    /// dropped: for a stream that carries on past its response (an HTTP/2 tunnel).
    pub fn busy(&self) -> Busy {
        self.activity.busy()
    }

    /// A slot of the listener's cap (`listen.max_connections`) for work that holds a
    /// connection of its own beside this one (an HTTP/2 tunnel dials one per stream); `None`
    /// at the cap, which is counted and logged as the accept loop's is.
    pub fn extra_slot(&self) -> Option<Slot> {
        self.cap.try_slot()
    }
}
