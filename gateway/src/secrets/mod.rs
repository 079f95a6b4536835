//! Credential: the agent's credential never leaves Warden; the upstream's is injected.

pub mod config;
pub mod inject;

use http::{HeaderName, HeaderValue};
use std::path::PathBuf;

pub use config::CredentialSource;

use crate::route::connector::CredentialInjection;

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

impl Credential {
    /// Reads the secret from `source` and formats it as `injection` says.
    pub fn resolve(
        source: &CredentialSource,
        injection: &CredentialInjection,
    ) -> Result<Credential, CredentialError> {
        let (secret, origin) = match source {
            CredentialSource::Env(name) => match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => (v, format!("env {name}")),
                _ => return Err(CredentialError::EnvMissing(name.clone())),
            },
            CredentialSource::File(path) => match std::fs::read_to_string(path) {
                Ok(v) if !v.trim().is_empty() => (v, format!("file {}", path.display())),
                Ok(_) => {
                    return Err(CredentialError::File {
                        path: path.clone(),
                        reason: "file is empty".into(),
                    });
                }
                Err(e) => {
                    return Err(CredentialError::File {
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                }
            },
        };
        let header = HeaderName::try_from(injection.header.as_str())
            .map_err(|_| CredentialError::InvalidHeader(injection.header.clone()))?;
        let mut value = HeaderValue::try_from(injection.format.replace("{secret}", secret.trim()))
            .map_err(|_| CredentialError::InvalidValue(origin))?;
        value.set_sensitive(true);
        Ok(Credential { header, value })
    }
}
