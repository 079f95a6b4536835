//! TLS to the PostgreSQL state store: libpq's `sslmode=verify-full` and `verify-ca`, which
//! `tokio-postgres` does not parse, read off the URL and applied by rustls; and the rustls
//! configuration for every mode.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `verify-full`, `require` | required | chain to a trusted root and the host name verified |
//! | `verify-ca` | required | chain to `state.postgres.tls.ca_file` (only) verified; the host name not |
//! | `prefer` (libpq's default) | when the server offers it | as `require`, when used |
//! | `disable` | never | — |
//!
//! Warden's `require` verifies as much as libpq's `verify-full` (libpq's own `require` checks
//! nothing): a network attacker with any certificate would otherwise read and change what
//! approves held requests. The trusted roots are the system's and `state.postgres.tls.ca_file`,
//! except for `verify-ca`, which trusts `ca_file` alone and needs it: with the name unchecked,
//! any certificate a public CA issued to anyone for any name would pass (libpq refuses
//! `sslrootcert=system` with `verify-ca` for the same reason).

use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;

use crate::state::error::StateError;

/// How the server's certificate is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Its chain to a trusted root, and that it names the host connected to.
    Full,
    /// Its chain to the CA of `state.postgres.tls.ca_file` only, never to a system root
    /// (`sslmode=verify-ca`): for a server reached by an address or alias its certificate does
    /// not name.
    ChainOnly,
}

/// The connection URL (or `key=value` string) with libpq's `sslmode=verify-full` or
/// `verify-ca` written as `require`, which `tokio-postgres` understands, and how the
/// certificate is then verified. Anything else is left as it is.
pub fn translate(url: &str) -> (zeroize::Zeroizing<String>, Verify) {
    let url = url.trim();
    let mut verify = Verify::Full;
    let mut mode = |value: &str| -> Option<&'static str> {
        match value {
            "verify-full" => {
                verify = Verify::Full;
                Some("require")
            }
            "verify-ca" => {
                verify = Verify::ChainOnly;
                Some("require")
            }
            _ => {
                verify = Verify::Full;
                None
            }
        }
    };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let translated = if is_url {
        match url.split_once('?') {
            Some((base, query)) => {
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some(("sslmode", value)) => match mode(value) {
                            Some(mapped) => format!("sslmode={mapped}"),
                            None => pair.to_owned(),
                        },
                        _ => pair.to_owned(),
                    })
                    .collect();
                format!("{base}?{}", pairs.join("&"))
            }
            None => url.to_owned(),
        }
    } else {
        // `key=value` pairs split by white space; a quoted value may hold spaces, which no
        // `sslmode` value does: the pairs are rewritten in place, the rest left byte for byte.
        let mut out = String::with_capacity(url.len());
        let mut rest = url;
        while !rest.is_empty() {
            let start = rest.len() - rest.trim_start().len();
            out.push_str(&rest[..start]);
            rest = &rest[start..];
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let token = &rest[..end];
            let replaced = token.split_once('=').and_then(|(key, value)| {
                let value = value.trim_matches('\'');
                (key == "sslmode").then(|| mode(value)).flatten()
            });
            match replaced {
                Some(mapped) => {
                    out.push_str("sslmode=");
                    out.push_str(mapped);
                }
                None => out.push_str(token),
            }
            rest = &rest[end..];
        }
        out
    };
    (zeroize::Zeroizing::new(translated), verify)
}

/// rustls for the connections: the system's roots and `ca_file` trusted (`ca_file` alone, which
/// must then be set, for `verify-ca`), the certificate verified as `verify` says.
pub async fn client_config(
    ca_file: Option<&std::path::Path>,
    verify: Verify,
) -> Result<rustls::ClientConfig, StateError> {
    require_ca_file(verify, ca_file)?;
    let ca = match ca_file {
        Some(path) => read_ca_file(path).await?,
        None => rustls::RootCertStore::empty(),
    };
    with_roots(trusted_roots(verify, ca, system_roots), verify)
}

/// Refuses `verify-ca` without `ca_file`: it would trust every public CA for every name.
pub fn require_ca_file(
    verify: Verify,
    ca_file: Option<&std::path::Path>,
) -> Result<(), StateError> {
    match (verify, ca_file) {
        (Verify::ChainOnly, None) => Err(StateError::VerifyCaWithoutCaFile),
        _ => Ok(()),
    }
}

/// The certificates of the PEM file `path`, at least one.
async fn read_ca_file(path: &std::path::Path) -> Result<rustls::RootCertStore, StateError> {
    use rustls_pki_types::pem::PemObject;
    let failed = |reason: String| StateError::PostgresTls {
        reason: format!(
            "cannot read the CA certificates in {}: {reason}",
            path.display()
        ),
    };
    let pem = tokio::fs::read(path)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| failed(e.to_string()))?;
        roots.add(cert).map_err(|e| failed(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(roots)
}

/// The system's CA certificates.
fn system_roots() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// What the server's certificate may chain to: `ca_file`'s certificates (`ca`), and for
/// `verify-full` the system's too (`system` is not called for `verify-ca`).
fn trusted_roots(
    verify: Verify,
    mut ca: rustls::RootCertStore,
    system: impl FnOnce() -> Vec<CertificateDer<'static>>,
) -> rustls::RootCertStore {
    if verify == Verify::Full {
        ca.add_parsable_certificates(system());
    }
    ca
}

/// [`client_config`] with the roots given.
fn with_roots(
    roots: rustls::RootCertStore,
    verify: Verify,
) -> Result<rustls::ClientConfig, StateError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| StateError::PostgresTls {
            reason: e.to_string(),
        })?;
    Ok(match verify {
        Verify::Full => builder.with_root_certificates(roots),
        Verify::ChainOnly => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots: Arc::new(roots),
                provider,
            })),
    }
    .with_no_client_auth())
}

/// `sslmode=verify-ca`: the certificate must chain to a trusted root, valid now, for a
/// server's use; the name it is for is not compared with the host connected to.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_postgres::config::SslMode;

    fn translated(url: &str) -> (String, Verify) {
        let (url, verify) = translate(url);
        (url.to_string(), verify)
    }

    #[test]
    fn verify_full_and_verify_ca_become_require_with_their_verification() {
        assert_eq!(
            translated("postgres://warden:pw@db.internal/warden?sslmode=verify-full"),
            (
                "postgres://warden:pw@db.internal/warden?sslmode=require".into(),
                Verify::Full
            )
        );
        assert_eq!(
            translated(
                "postgresql://warden:pw@10.0.0.7:5433/warden?connect_timeout=3&sslmode=verify-ca&application_name=x"
            ),
            (
                "postgresql://warden:pw@10.0.0.7:5433/warden?connect_timeout=3&sslmode=require&application_name=x"
                    .into(),
                Verify::ChainOnly
            )
        );
        assert_eq!(
            translated("host=db.internal  user=warden sslmode='verify-ca' password='a b'"),
            (
                "host=db.internal  user=warden sslmode=require password='a b'".into(),
                Verify::ChainOnly
            )
        );
        // The last sslmode is the one that counts, as for libpq.
        assert_eq!(
            translated("host=db user=w sslmode=verify-ca sslmode=verify-full").1,
            Verify::Full
        );
        for url in [
            "postgres://warden:pw@db/warden?sslmode=verify-full",
            "host=db user=warden sslmode=verify-ca",
        ] {
            let config: tokio_postgres::Config = translate(url).0.parse().unwrap();
            assert_eq!(config.get_ssl_mode(), SslMode::Require, "{url}");
        }
    }

    #[test]
    fn other_modes_and_urls_are_left_as_they_are() {
        for url in [
            "postgres://warden:pw@db/warden",
            "postgres://warden:pw@db/warden?sslmode=require",
            "postgres://warden:pw@db/warden?sslmode=disable&x=verify-ca",
            "postgres://warden:verify-ca@db/warden?sslmode=prefer",
            "host=db user=warden sslmode=prefer",
            "host=db user=warden",
        ] {
            assert_eq!(translated(url), (url.to_owned(), Verify::Full), "{url}");
        }
    }

    /// A CA, and a server certificate it issued for `name`.
    fn ca_and_server(name: &str) -> (CertificateDer<'static>, rustls::ServerConfig) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "warden test postgres CA");
        let ca_der = ca.self_signed(&ca_key).unwrap().der().clone();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf.signed_by(&key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        (ca_der, server)
    }

    /// A server on the loopback interface that answers PostgreSQL's `SSLRequest` with `S`
    /// and a TLS handshake with `server`'s certificate; says whether the handshake completed.
    async fn tls_postgres(
        server: rustls::ServerConfig,
    ) -> (u16, tokio::sync::oneshot::Receiver<bool>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (done, handshake) = tokio::sync::oneshot::channel();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            tcp.read_exact(&mut request).await.unwrap();
            assert_eq!(request, [0, 0, 0, 8, 4, 210, 22, 47], "an SSLRequest");
            tcp.write_all(b"S").await.unwrap();
            let _ = done.send(acceptor.accept(tcp).await.is_ok());
        });
        (port, handshake)
    }

    /// Connects to a [`tls_postgres`] server on `port` as `host`, `url`'s way, with `ca` as
    /// `ca_file`'s certificate and no system roots; the client's error (the server closes once
    /// the handshake is done, so there is always one) and whether the handshake completed.
    async fn connect(
        server: rustls::ServerConfig,
        ca: &CertificateDer<'static>,
        host: &str,
        sslmode: &str,
    ) -> (String, bool) {
        connect_with_system(server, &[], ca, host, sslmode).await
    }

    /// [`connect`], with `system` as the system's roots.
    async fn connect_with_system(
        server: rustls::ServerConfig,
        system: &[CertificateDer<'static>],
        ca: &CertificateDer<'static>,
        host: &str,
        sslmode: &str,
    ) -> (String, bool) {
        let (port, handshake) = tls_postgres(server).await;
        let url =
            format!("host={host} hostaddr=127.0.0.1 port={port} user=warden sslmode={sslmode}");
        let (url, verify) = translate(&url);
        let mut ca_file = rustls::RootCertStore::empty();
        ca_file.add(ca.clone()).unwrap();
        let roots = trusted_roots(verify, ca_file, || system.to_vec());
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(with_roots(roots, verify).unwrap());
        let config: tokio_postgres::Config = url.parse().unwrap();
        let error = config
            .connect(tls)
            .await
            .err()
            .expect("no PostgreSQL behind");
        (
            crate::state::error::Causes(&error).to_string(),
            handshake.await.unwrap_or(false),
        )
    }

    #[tokio::test]
    async fn verify_full_checks_the_chain_and_the_host_name() {
        let (ca, server) = ca_and_server("db.test");
        let (error, done) = connect(server, &ca, "db.test", "verify-full").await;
        assert!(done, "the handshake completed: {error}");
        let (ca, server) = ca_and_server("db.test");
        let (error, done) = connect(server, &ca, "other.test", "verify-full").await;
        assert!(!done, "a certificate for another host is refused");
        assert!(error.contains("not valid for name"), "{error}");
    }

    #[tokio::test]
    async fn verify_ca_checks_the_chain_but_not_the_host_name() {
        let (ca, server) = ca_and_server("db.test");
        let (error, done) = connect(server, &ca, "other.test", "verify-ca").await;
        assert!(done, "the handshake completed: {error}");
        // A certificate from a CA nobody trusts is refused all the same.
        let (_, server) = ca_and_server("db.test");
        let (untrusted, _) = ca_and_server("db.test");
        let (error, done) = connect(server, &untrusted, "db.test", "verify-ca").await;
        assert!(!done, "an untrusted issuer is refused");
        assert!(error.contains("invalid peer certificate"), "{error}");
    }

    /// With the host name unchecked, a system root would vouch for any certificate any public
    /// CA issued to anyone: `verify-ca` trusts `ca_file` alone.
    #[tokio::test]
    async fn verify_ca_refuses_a_certificate_from_a_system_root_not_in_ca_file() {
        let (ca_file, _) = ca_and_server("db.test");
        let (system, server) = ca_and_server("db.test");
        let (error, done) = connect_with_system(
            server,
            std::slice::from_ref(&system),
            &ca_file,
            "db.test",
            "verify-ca",
        )
        .await;
        assert!(!done, "a system root is not trusted with verify-ca");
        assert!(error.contains("invalid peer certificate"), "{error}");
        // The same certificate passes verify-full, which trusts the system's roots.
        let (system, server) = ca_and_server("db.test");
        let (error, done) =
            connect_with_system(server, &[system], &ca_file, "db.test", "verify-full").await;
        assert!(done, "the handshake completed: {error}");
    }

    #[test]
    fn verify_ca_trusts_ca_file_alone_and_verify_full_the_system_too() {
        let (ca, _) = ca_and_server("db.test");
        let (system, _) = ca_and_server("db.test");
        let ca_file = || {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            roots
        };
        let chain_only = trusted_roots(Verify::ChainOnly, ca_file(), || {
            panic!("the system's roots were loaded for verify-ca")
        });
        assert_eq!(chain_only.roots.len(), 1);
        let full = trusted_roots(Verify::Full, ca_file(), || vec![system.clone()]);
        assert_eq!(full.roots.len(), 2);
    }

    #[tokio::test]
    async fn verify_ca_without_ca_file_is_refused_naming_the_key() {
        let error = client_config(None, Verify::ChainOnly).await.unwrap_err();
        assert!(
            matches!(error, StateError::VerifyCaWithoutCaFile),
            "{error}"
        );
        let text = error.to_string();
        assert!(text.starts_with("state.postgres.tls.ca_file: "), "{text}");
        assert!(text.contains("sslmode=verify-ca"), "{text}");
        client_config(None, Verify::Full).await.unwrap();
    }
}
