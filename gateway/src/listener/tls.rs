//! Server TLS: certificate chain and key from PEM files, optional client-certificate
//! verification, and reload when the files change.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::crypto::crypto_provider;
use crate::listener::config::TlsConfig;

/// How often the reloader looks at the certificate, key and CA files.
const RELOAD_POLL: Duration = Duration::from_secs(2);

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}; check that the file exists and Warden may read it")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{path} is not valid PEM: {source}")]
    Pem {
        path: PathBuf,
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("no certificate found in {path}; expected PEM `CERTIFICATE` blocks, leaf first")]
    NoCertificate { path: PathBuf },
    /// The key file holds no private key.
    #[error(
        "no private key found in {path}; expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block"
    )]
    NoPrivateKey { path: PathBuf },
    /// The key is unusable or does not belong to the certificate.
    #[error("key {key} cannot serve certificate {cert}: {source}")]
    Key {
        cert: PathBuf,
        key: PathBuf,
        source: rustls::Error,
    },
    /// The crypto provider refused the protocol versions (a build defect, not a file problem).
    #[error("the TLS crypto provider cannot serve TLS 1.2/1.3: {0}")]
    Provider(rustls::Error),
    /// The client CA bundle holds nothing usable as a trust anchor.
    #[error("client CA bundle {path} is unusable: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

impl TlsError {
    /// The key of `cfg` this error is about: `cert`, `key` or `client_ca`; `None` when it is
    /// about no one file (the crypto provider).
    pub fn field(&self, cfg: &TlsConfig) -> Option<&'static str> {
        let of_path = |path: &Path| {
            if path == cfg.cert {
                "cert"
            } else if path == cfg.key {
                "key"
            } else {
                "client_ca"
            }
        };
        match self {
            TlsError::Read { path, .. } | TlsError::Pem { path, .. } => Some(of_path(path)),
            TlsError::NoCertificate { .. } => Some("cert"),
            TlsError::NoPrivateKey { .. } | TlsError::Key { .. } => Some("key"),
            TlsError::ClientCa { .. } => Some("client_ca"),
            TlsError::Provider(_) => None,
        }
    }
}

/// Reloadable server TLS: each new handshake uses the configuration loaded last.
pub struct ServerTls {
    files: TlsConfig,
    current: ArcSwap<ServerConfig>,
    /// The files' stamps taken just before `load` read them: the reloader's starting point.
    loaded: Stamps,
}

/// Modification time, length and inode of each watched file (`None` where unreadable).
type Stamps = Vec<Option<(SystemTime, u64, u64)>>;

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the certificate chain, key and optional client CA named by `cfg`.
    pub fn load(cfg: &TlsConfig) -> Result<Arc<ServerTls>, TlsError> {
        let loaded = stamps(cfg);
        let config = build_server_config(cfg)?;
        Ok(Arc::new(ServerTls {
            files: cfg.clone(),
            current: ArcSwap::from_pointee(config),
            loaded,
        }))
    }

    /// Every reason [`load`](Self::load) would refuse `cfg`, without serving anything: each
    /// file is checked on its own (so a bad certificate does not hide a bad key), then, when
    /// they all are usable, whether the key serves the certificate. Each error comes with the
    /// key of `cfg` it is about (`cert`, `key`, `client_ca`; `None` for none in particular).
    pub fn check(cfg: &TlsConfig) -> Vec<(Option<&'static str>, TlsError)> {
        let mut errors = Vec::new();
        match read_certificates(&cfg.cert) {
            Ok(chain) if chain.is_empty() => errors.push((
                Some("cert"),
                TlsError::NoCertificate {
                    path: cfg.cert.clone(),
                },
            )),
            Ok(_) => {}
            Err(e) => errors.push((Some("cert"), e)),
        }
        if let Err(e) = read_private_key(&cfg.key) {
            errors.push((Some("key"), e));
        }
        if let Some(ca) = &cfg.client_ca
            && let Err(e) = client_verifier(ca, cfg.require_client_cert, crypto_provider())
        {
            errors.push((Some("client_ca"), e));
        }
        if errors.is_empty()
            && let Err(e) = build_server_config(cfg)
        {
            errors.push((e.field(cfg), e));
        }
        errors
    }

    /// Reads the files again; on success new handshakes use them, on error nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build_server_config(&self.files)?;
        self.current.store(Arc::new(config));
        Ok(())
    }

    /// Watches the files (polled every 2 s) and reloads when one changes, until `shutdown`.
    ///
    /// A change that fails to load is logged and the previous configuration stays in use;
    /// it is tried again at the next change. Established connections are never touched.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.spawn_reloader_every(RELOAD_POLL, shutdown)
    }

    pub(super) fn spawn_reloader_every(
        self: &Arc<Self>,
        every: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let tls = Arc::clone(self);
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            let mut seen = tls.loaded.clone();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    _ = tick.tick() => {}
                }
                let now = stamps(&tls.files);
                if now == seen {
                    continue;
                }
                seen = now;
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.files.cert.display(), "TLS configuration reloaded")
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "TLS files changed but could not be loaded; keeping the previous configuration"
                    ),
                }
            }
        })
    }

    /// The acceptor for one handshake, bound to the configuration current now.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }
}

/// The current stamps of the files `cfg` names (following symlinks).
fn stamps(cfg: &TlsConfig) -> Stamps {
    let mut stamps = vec![stamp(&cfg.cert), stamp(&cfg.key)];
    if let Some(ca) = &cfg.client_ca {
        stamps.push(stamp(ca));
    }
    stamps
}

/// One file's modification time, length and inode; a rename into place changes the inode.
fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some((meta.modified().ok()?, meta.len(), inode))
}

/// Builds a rustls server configuration from the files: ALPN `h2` then `http/1.1`.
fn build_server_config(cfg: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let chain = read_certificates(&cfg.cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cfg.cert.clone(),
        });
    }
    let key = read_private_key(&cfg.key)?;
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?;
    let builder = match &cfg.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_path) => {
            let verifier = client_verifier(ca_path, cfg.require_client_cert, provider)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Key {
            cert: cfg.cert.clone(),
            key: cfg.key.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A verifier that accepts client certificates issued by the CAs in `ca_path`.
fn client_verifier(
    ca_path: &Path,
    required: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let unusable = |reason: String| TlsError::ClientCa {
        path: ca_path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(ca_path)? {
        roots
            .add(cert)
            .map_err(|e| unusable(format!("a certificate is not a valid CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(unusable("it holds no PEM `CERTIFICATE` block".into()));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    builder.build().map_err(|e| unusable(e.to_string()))
}

/// Every certificate in a PEM file, in file order.
pub(crate) fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.to_path_buf(),
            source,
        })
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(TlsError::Pem {
            path: path.to_path_buf(),
            source,
        }),
    }
}
