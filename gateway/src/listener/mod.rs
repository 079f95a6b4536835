//! Where agents and admins connect: TCP accept, TLS (with optional client certificates and
//! hot reload), HTTP/1.1 and HTTP/2 serving, and graceful shutdown.
//!
//! [`serve`] is the one entry point; [`ServerTls`] holds the reloadable TLS configuration.

mod client_identity;
pub mod config;
mod preface_deadline;
mod serve;
mod shutdown;
mod tls;
pub mod workers;

#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

pub use serve::{HANDSHAKE_TIMEOUT, HEADER_READ_TIMEOUT, serve};
pub use shutdown::{Shutdown, ShutdownTrigger, shutdown_signal};
pub use tls::{ServerTls, TlsError};

pub(crate) use tls::read_certificates;

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

/// Installs `ring` as the process-wide default rustls crypto provider; later calls do nothing.
///
/// Warden's own TLS configurations name `ring` explicitly; this default serves libraries
/// (reqwest, jsonwebtoken fetchers) that ask rustls for the process default.
pub fn install_crypto_provider() {
    // Err means a provider is already installed, which is what was asked for.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The crypto provider every Warden TLS configuration is built with.
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}
