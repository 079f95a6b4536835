//! The HTTP client of the HTTP sinks (reqwest over rustls, certificates verified against the
//! system roots and the sink's `ca_file`, no redirects: a token is never sent anywhere the
//! configuration does not name) and the secrets they send, read the way Warden reads its own
//! secrets (`secrets::own`), again after the destination refuses them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::secrets::config::CredentialSource;
use crate::vault::SecretStore;

/// Why a sink cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{key}: cannot read the CA file: {reason}")]
    CaFile { key: String, reason: String },
    #[error("{key}: cannot build the HTTP client: {reason}")]
    Client { key: String, reason: String },
    #[error("{key}: {reason}")]
    Secret { key: String, reason: String },
    #[error("{key}: {reason}")]
    Tls { key: String, reason: String },
    #[error("{key}: {reason}")]
    Template { key: String, reason: String },
}

/// A client for one sink: `timeout` per request, trusting `ca_file` besides the system roots.
pub fn client(
    key: &str,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::Client, SetupError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(30));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| SetupError::CaFile {
            key: key.to_owned(),
            reason: format!("{}: {e}", path.display()),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| SetupError::CaFile {
                key: key.to_owned(),
                reason: format!("{} is not a PEM bundle: {e}", path.display()),
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| SetupError::Client {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A secret a sink sends, with what it takes to read it again.
pub struct Secret {
    source: CredentialSource,
    key: String,
    vault: Option<Arc<SecretStore>>,
    /// The runtime Warden's secrets are read on (the main one: Vault's client lives there).
    runtime: tokio::runtime::Handle,
    value: Zeroizing<String>,
}

impl Secret {
    /// Reads the secret of configuration key `key` from `source` now.
    pub async fn read(
        source: &CredentialSource,
        key: &str,
        vault: Option<Arc<SecretStore>>,
    ) -> Result<Secret, SetupError> {
        let value = crate::secrets::own::read(source, vault.as_ref(), key)
            .await
            .map_err(|e| SetupError::Secret {
                key: key.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Secret {
            source: source.clone(),
            key: key.to_owned(),
            vault,
            runtime: tokio::runtime::Handle::current(),
            value: Zeroizing::new(value.trim().to_owned()),
        })
    }

    /// The value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Reads the secret again (a rotated file, a new Vault version) after the destination
    /// refused it; keeps the old value when it cannot be read.
    pub async fn refresh(&mut self) {
        let (source, key, vault) = (self.source.clone(), self.key.clone(), self.vault.clone());
        let read = self.runtime.spawn(async move {
            crate::secrets::own::read(&source, vault.as_ref(), &key)
                .await
                .map(|v| Zeroizing::new(v.trim().to_owned()))
        });
        match read.await {
            Ok(Ok(value)) => self.value = value,
            Ok(Err(e)) => {
                tracing::warn!(key = %self.key, error = %e, "cannot read the SIEM secret again")
            }
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "cannot read the SIEM secret again")
            }
        }
    }
}

/// `bytes` compressed with gzip.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// What an HTTP destination's error text says, bounded for logs and dead letters (bodies of
/// error responses name no event content beyond ids).
pub fn short(text: &str) -> String {
    let text = text.trim();
    if text.len() <= 300 {
        return text.to_owned();
    }
    let mut end = 300;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A reqwest error with its causes (never the URL, which may carry a query).
pub fn error_text(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".into();
    }
    let what = if err.is_connect() {
        "cannot connect"
    } else if err.is_body() || err.is_decode() {
        "cannot read the response"
    } else {
        "request failed"
    };
    let mut causes = vec![what.to_owned()];
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    causes.dedup();
    causes.join(": ")
}
