//! The TLS crypto provider every Warden TLS configuration is built with.

use std::sync::Arc;

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
