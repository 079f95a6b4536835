//! What the request path knows about the connection a request arrived on.

use std::net::SocketAddr;
use std::sync::Arc;

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
}
