//! A credential ready to send upstream, and why a route may have none.

use http::{HeaderName, HeaderValue};
use std::path::PathBuf;

/// Why a route has no usable upstream credential. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "route {route:?} has no upstream credential configured (set credential: {{ env: NAME }} or {{ file: PATH }})"
    )]
    NotConfigured { route: String },
    #[error("environment variable {0} is not set or empty")]
    EnvMissing(String),
    #[error("cannot read credential file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the credential from {0} contains characters not allowed in an HTTP header")]
    InvalidValue(String),
    #[error("connector header name {0:?} is not a valid HTTP header name")]
    InvalidHeader(String),
    #[error("no credential is available yet: {0}")]
    Unavailable(String),
}

/// A ready-to-send upstream credential header. The value is marked sensitive so that it is
/// never printed by `Debug` nor indexed by HPACK.
#[derive(Clone)]
pub struct Credential {
    pub header: HeaderName,
    pub value: HeaderValue,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("header", &self.header)
            .field("value", &"<redacted>")
            .finish()
    }
}
