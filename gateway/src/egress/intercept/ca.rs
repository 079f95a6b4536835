//! The interception CA: the certificate and key leaf certificates are signed with, read from
//! `egress.intercept.ca_cert`/`ca_key` or Warden's own, created on first use in
//! `<data_dir>/keys/` (key mode 0600); and the leaf certificates it mints for one host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

use super::config::InterceptConfig;
use super::error::InterceptError;

/// The common name of the CA Warden creates.
const OWN_CA_NAME: &str = "Warden egress interception CA";
/// How long the CA Warden creates is valid.
const OWN_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How far back a new certificate's validity starts, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(300);

/// The CA that signs the leaf certificates agents see for intercepted hosts.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// A leaf certificate for one host, and its key.
pub struct Leaf {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Ca {
    /// The configured CA, or Warden's own from `data_dir` (created when neither file exists).
    pub fn load_or_create(config: &InterceptConfig, data_dir: &Path) -> Result<Ca, InterceptError> {
        if let (Some(cert), Some(key)) = (&config.ca_cert, &config.ca_key) {
            return Ca::load(cert, key);
        }
        let (cert, key) = own_paths(data_dir);
        if cert.exists() || key.exists() {
            Ca::load(&cert, &key)
        } else {
            Ca::create(&cert, &key)
        }
    }

    /// Checks the CA files that exist (the configured pair, or Warden's own once created)
    /// the way start-up reads them; nothing is created.
    pub fn check_files(config: &InterceptConfig, data_dir: &Path) -> Result<(), InterceptError> {
        let (cert, key) = match (&config.ca_cert, &config.ca_key) {
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => own_paths(data_dir),
        };
        if config.ca_cert.is_none() && !cert.exists() && !key.exists() {
            return Ok(());
        }
        Ca::load(&cert, &key).map(drop)
    }

    /// The CA certificate (PEM), for agents' trust stores.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `name`, valid from a few minutes ago for `validity`, signed by the
    /// CA, with a key of its own.
    pub fn mint(&self, name: &str, validity: Duration) -> Result<Leaf, InterceptError> {
        let mint_err = |reason: rcgen::Error| InterceptError::Mint {
            what: format!("a certificate for {name}"),
            reason: reason.to_string(),
        };
        let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(mint_err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(mint_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(mint_err)?;
        Ok(Leaf {
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }

    /// The CA in the PEM files `cert` and `key`, checked by verifying a certificate it signs.
    fn load(cert: &Path, key: &Path) -> Result<Ca, InterceptError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        warn_if_readable(key);
        let format = |path: &Path, what, reason: String| InterceptError::Format {
            path: path.to_owned(),
            what,
            reason,
        };
        let der = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .next()
            .ok_or_else(|| format(cert, "a CA certificate", "no CERTIFICATE block".into()))?
            .map_err(|e| format(cert, "a CA certificate", e.to_string()))?;
        let signing = KeyPair::from_pem(&key_pem)
            .map_err(|e| format(key, "a private key (PKCS#8)", e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&der, signing)
            .map_err(|e| format(cert, "a CA certificate", e.to_string()))?;
        let ca = Ca {
            issuer,
            cert: der,
            cert_pem,
        };
        ca.check().map_err(|reason| {
            format(
                cert,
                "a CA certificate that signs with this key",
                format!(
                    "a certificate signed with {} does not verify against it: {reason}",
                    key.display()
                ),
            )
        })?;
        Ok(ca)
    }

    /// A new CA, written to `cert` and `key`.
    fn create(cert: &Path, key: &Path) -> Result<Ca, InterceptError> {
        let mint_err = |reason: rcgen::Error| InterceptError::Mint {
            what: "the interception CA".to_owned(),
            reason: reason.to_string(),
        };
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, OWN_CA_NAME);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Warden");
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + OWN_CA_VALIDITY;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let signing = KeyPair::generate().map_err(mint_err)?;
        let ca_cert = params.self_signed(&signing).map_err(mint_err)?;
        if !write_new(key, signing.serialize_pem().as_bytes(), 0o600)? {
            // Another replica sharing the data directory created it first: use theirs.
            return Ca::load(cert, key);
        }
        let cert_pem = ca_cert.pem();
        write_new(cert, cert_pem.as_bytes(), 0o644)?;
        tracing::info!(cert = %cert.display(), key = %key.display(), "created the egress interception CA");
        Ok(Ca {
            issuer: Issuer::new(params, signing),
            cert: ca_cert.der().clone(),
            cert_pem,
        })
    }

    /// Whether a certificate this CA mints verifies against its certificate.
    fn check(&self) -> Result<(), String> {
        const PROBE: &str = "probe.warden.invalid";
        let leaf = self
            .mint(PROBE, Duration::from_secs(3600))
            .map_err(|e| e.to_string())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).map_err(|e| e.to_string())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::listener::crypto_provider(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(PROBE).map_err(|e| e.to_string())?;
        verifier
            .verify_server_cert(&leaf.cert, &[], &name, &[], UnixTime::now())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Where Warden keeps its own CA: `<data_dir>/keys/egress-ca.pem` and `egress-ca-key.pem`.
pub fn own_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("keys");
    (dir.join("egress-ca.pem"), dir.join("egress-ca-key.pem"))
}

fn read(path: &Path) -> Result<String, InterceptError> {
    std::fs::read_to_string(path).map_err(|source| InterceptError::File {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })
}

fn warn_if_readable(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "the egress interception CA key is readable by other users; run chmod 600 on it");
    }
}

/// [`crate::keys::write_new`], its failure as this module's error.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<bool, InterceptError> {
    crate::keys::write_new(path, contents, mode).map_err(|(action, source)| InterceptError::File {
        action,
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_its_own_ca_once_and_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = InterceptConfig::default();
        let ca = Ca::load_or_create(&config, dir.path()).unwrap();
        let (cert, key) = own_paths(dir.path());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(ca.cert_pem().contains("BEGIN CERTIFICATE"));
        let again = Ca::load_or_create(&config, dir.path()).unwrap();
        assert_eq!(again.cert_pem(), ca.cert_pem());
        again.check().unwrap();
        // A configured pair is used instead.
        let configured = InterceptConfig {
            ca_cert: Some(cert),
            ca_key: Some(key),
            ..Default::default()
        };
        let other = tempfile::tempdir().unwrap();
        let loaded = Ca::load_or_create(&configured, other.path()).unwrap();
        assert_eq!(loaded.cert_pem(), ca.cert_pem());
        assert!(!own_paths(other.path()).0.exists());
    }

    #[test]
    fn refuses_a_key_that_is_not_the_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let first = tempfile::tempdir().unwrap();
        let second = tempfile::tempdir().unwrap();
        Ca::load_or_create(&InterceptConfig::default(), first.path()).unwrap();
        Ca::load_or_create(&InterceptConfig::default(), second.path()).unwrap();
        let config = InterceptConfig {
            ca_cert: Some(own_paths(first.path()).0),
            ca_key: Some(own_paths(second.path()).1),
            ..Default::default()
        };
        let error = Ca::load_or_create(&config, dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("does not verify against it"), "{error}");
        let missing = InterceptConfig {
            ca_cert: Some(dir.path().join("nope.pem")),
            ca_key: Some(dir.path().join("nope-key.pem")),
            ..Default::default()
        };
        let error = Ca::load_or_create(&missing, dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot read"), "{error}");
    }
}
