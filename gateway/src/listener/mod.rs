//! Where agents and admins connect: TCP accept, TLS (with optional client certificates and
//! hot reload), HTTP/1.1 and HTTP/2 serving, and graceful shutdown.
//!
//! [`serve`] is the one entry point; [`ServerTls`] holds the reloadable TLS configuration.

mod client_identity;
pub mod config;
mod conn;
pub mod connection_cap;
pub(crate) mod crypto;
mod detached;
mod idle;
pub mod open_files;
mod preface_deadline;
mod serve;
mod shutdown;
mod tls;
pub mod workers;

#[cfg(test)]
pub(crate) mod test_pki;
#[cfg(test)]
mod tests;

pub use conn::ConnInfo;
pub use connection_cap::{CapMetrics, ConnectionCap};
pub(crate) use crypto::crypto_provider;
pub use crypto::install_crypto_provider;
pub use detached::{Detached, Held};
pub use idle::{Busy, Guarded};
pub use serve::{HANDSHAKE_TIMEOUT, HEADER_READ_TIMEOUT, HttpOptions, serve, serve_with};
pub use shutdown::{Shutdown, ShutdownTrigger, shutdown_signal};
pub use tls::{ServerTls, TlsError};

pub(crate) use tls::read_certificates;
