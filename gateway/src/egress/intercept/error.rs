//! Why interception could not be set up, or a certificate not be had.

use std::path::PathBuf;

/// Why the interception CA or a leaf certificate could not be had.
#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    /// Reading, creating or writing a CA file failed.
    #[error("egress.intercept: {action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CA file does not hold what it should.
    #[error("egress.intercept: {path} is not {what} in PEM ({reason})")]
    Format {
        path: PathBuf,
        /// `a CA certificate`, `a private key (PKCS#8)`.
        what: &'static str,
        reason: String,
    },
    /// Making a certificate or key failed.
    #[error("egress.intercept: cannot create {what}: {reason}")]
    Mint { what: String, reason: String },
    /// The upstream trust roots could not be loaded.
    #[error("egress.intercept.upstream_ca_file: {0}")]
    Roots(#[from] crate::upstream::CaFileError),
    /// The TLS configuration could not be built.
    #[error("egress.intercept: cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}
