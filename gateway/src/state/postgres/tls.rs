//! TLS to the PostgreSQL state store: libpq's `sslmode=verify-full` and `verify-ca`, which
//! `tokio-postgres` does not parse, read off the URL and applied by rustls; and the rustls
//! configuration for every mode.
//!
//! | `sslmode` | TLS | the server's certificate |
//! |---|---|---|
//! | `verify-full`, `require` | required | chain to a trusted root and the host name verified |
//! | `verify-ca` | required | chain to `state.postgres.tls.ca_file` verified; the host name not |
//! | `prefer` (libpq's default) | when the server offers it | as `require`, when used |
//! | `disable` | never | — |
//!
//! Warden's `require` verifies as much as libpq's `verify-full` (libpq's own `require` checks
//! nothing): a network attacker with any certificate would otherwise read and change what
//! approves held requests. The trusted roots are, as for libpq, the CA file given
//! (`state.postgres.tls.ca_file`, or `sslrootcert=PATH`) alone, in every mode: an operator who
//! names their private CA trusts only it, and a certificate a public CA issued for the
//! database's host name is refused. Without a CA file (or with `sslrootcert=system`) they are
//! the system's roots, with the host name verified. `verify-ca` needs the CA file: with the
//! name unchecked, any certificate a public CA issued to anyone for any name would pass (libpq
//! refuses `sslrootcert=system` with `verify-ca` for the same reason).

use std::path::{Path, PathBuf};
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

/// What libpq's `sslrootcert` names: the roots the server's certificate may chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of CA certificates: what `state.postgres.tls.ca_file` names.
    File(PathBuf),
    /// `system` (libpq 16): the system's roots, with the host name verified.
    System,
}

/// The connection URL (or `key=value` string) as `tokio-postgres` reads it, and what it said
/// about TLS in libpq's words that `tokio-postgres` does not take.
pub struct Translated {
    /// `sslmode=verify-full` and `verify-ca` written as `require`; `sslrootcert` taken out;
    /// `sslmode=require` added when `sslrootcert=system` comes without an `sslmode`. Anything
    /// else as it was.
    pub url: zeroize::Zeroizing<String>,
    /// How the server's certificate is verified.
    pub verify: Verify,
    /// The last `sslmode`, as written.
    mode: Option<String>,
    /// The last `sslrootcert`.
    pub root_cert: Option<RootCert>,
}

/// What becomes of one parameter of the URL.
enum Rewrite {
    Keep,
    Replace(&'static str),
    Drop,
}

/// Reads `url` for what `tokio-postgres` cannot (see [`Translated`]).
pub fn translate(url: &str) -> Translated {
    let url = url.trim();
    let mut verify = Verify::Full;
    let mut mode = None;
    let mut root_cert = None;
    let mut rewrite = |key: &str, value: &str| -> Rewrite {
        match key {
            "sslmode" => {
                mode = Some(value.to_owned());
                verify = if value == "verify-ca" {
                    Verify::ChainOnly
                } else {
                    Verify::Full
                };
                match value {
                    "verify-full" | "verify-ca" => Rewrite::Replace("require"),
                    _ => Rewrite::Keep,
                }
            }
            "sslrootcert" => {
                root_cert = match value {
                    "" => None,
                    "system" => Some(RootCert::System),
                    path => Some(RootCert::File(PathBuf::from(path))),
                };
                Rewrite::Drop
            }
            _ => Rewrite::Keep,
        }
    };
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let mut translated = if is_url {
        rewrite_url(url, &mut rewrite)
    } else {
        rewrite_pairs(url, &mut rewrite)
    };
    // libpq 16: `sslrootcert=system` makes the default mode `verify-full`.
    if root_cert == Some(RootCert::System) && mode.is_none() {
        let separator = match (is_url, translated.contains('?')) {
            (false, _) => " ",
            (true, true) => "&",
            (true, false) => "?",
        };
        translated.push_str(separator);
        translated.push_str("sslmode=require");
    }
    Translated {
        url: zeroize::Zeroizing::new(translated),
        verify,
        mode,
        root_cert,
    }
}

/// A `postgres://` URL with its query's parameters rewritten (read percent-decoded, as
/// `tokio-postgres` reads them; the others left byte for byte).
fn rewrite_url(url: &str, rewrite: &mut impl FnMut(&str, &str) -> Rewrite) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pairs: Vec<String> = query
        .split('&')
        .filter_map(|pair| {
            let Some((key, value)) = pair.split_once('=') else {
                return Some(pair.to_owned());
            };
            match rewrite(&decode(key), &decode(value)) {
                Rewrite::Keep => Some(pair.to_owned()),
                Rewrite::Replace(value) => Some(format!("{key}={value}")),
                Rewrite::Drop => None,
            }
        })
        .collect();
    if pairs.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", pairs.join("&"))
    }
}

/// A libpq `key=value` string with its parameters rewritten: read as `tokio-postgres` reads
/// them (space around `=`, values in single quotes with `\` escapes), the text of those left
/// as they are copied byte for byte. What cannot be read is left for `tokio-postgres` to
/// refuse.
fn rewrite_pairs(text: &str, rewrite: &mut impl FnMut(&str, &str) -> Rewrite) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while let Some((key, value, start, end)) = next_pair(text, at) {
        match rewrite(key, &value) {
            Rewrite::Keep => {}
            Rewrite::Replace(value) => {
                out.push_str(&text[copied..start]);
                out.push_str(key);
                out.push('=');
                out.push_str(value);
                copied = end;
            }
            Rewrite::Drop => {
                out.push_str(&text[copied..start]);
                copied = end;
            }
        }
        at = end;
    }
    out.push_str(&text[copied..]);
    out
}

/// The `key=value` pair at or after byte `at` of `text`: its key, its value unquoted, and where
/// the pair starts and ends.
fn next_pair(text: &str, at: usize) -> Option<(&str, String, usize, usize)> {
    let rest = &text[at..];
    let start = at + (rest.len() - rest.trim_start().len());
    let rest = &text[start..];
    let key_len = rest.find(|c: char| c.is_whitespace() || c == '=')?;
    if key_len == 0 {
        return None;
    }
    let key = &rest[..key_len];
    let after_key = rest[key_len..].trim_start();
    let after_eq = after_key.strip_prefix('=')?.trim_start();
    let value_at = text.len() - after_eq.len();
    let mut value = String::new();
    let mut chars = after_eq.char_indices();
    let quoted = after_eq.starts_with('\'');
    if quoted {
        chars.next();
    }
    let mut end = after_eq.len();
    let mut closed = !quoted;
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '\'' if quoted => {
                end = i + 1;
                closed = true;
                break;
            }
            c if !quoted && c.is_whitespace() => {
                end = i;
                break;
            }
            c => value.push(c),
        }
    }
    closed.then_some((key, value, start, value_at + end))
}

/// The CA file the server's certificate is checked against: `sslrootcert` in the URL or
/// `configured` (`state.postgres.tls.ca_file`), which say the same, so that both given must
/// name one file; refused where the URL's TLS settings contradict each other or `verify-ca`
/// has no CA file (at start and by `warden check`).
pub fn ca_file(
    translated: &Translated,
    configured: Option<&Path>,
) -> Result<Option<PathBuf>, StateError> {
    let ca_file = match (&translated.root_cert, configured) {
        (None, configured) => configured.map(Path::to_path_buf),
        (Some(RootCert::File(in_url)), None) => Some(in_url.clone()),
        (Some(RootCert::File(in_url)), Some(configured)) => {
            if !same_file(in_url, configured) {
                return Err(StateError::SslRootCertConflict {
                    in_url: in_url.display().to_string(),
                    ca_file: configured.to_path_buf(),
                });
            }
            Some(configured.to_path_buf())
        }
        (Some(RootCert::System), Some(configured)) => {
            return Err(StateError::SslRootCertConflict {
                in_url: "system".into(),
                ca_file: configured.to_path_buf(),
            });
        }
        (Some(RootCert::System), None) => {
            // As libpq 16: the system's roots vouch for a name, so the name is verified.
            if let Some(mode) = translated
                .mode
                .as_deref()
                .filter(|mode| !matches!(*mode, "verify-full" | "require"))
            {
                return Err(StateError::SslRootCertSystemMode {
                    mode: mode.to_owned(),
                });
            }
            None
        }
    };
    require_ca_file(translated.verify, ca_file.as_deref())?;
    Ok(ca_file)
}

/// Whether `a` and `b` name one file: written alike, or resolving to one.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// rustls for the connections: `ca_file` trusted alone when given (it must be for `verify-ca`),
/// the system's roots when not; the certificate verified as `verify` says.
pub async fn client_config(
    ca_file: Option<&std::path::Path>,
    verify: Verify,
) -> Result<rustls::ClientConfig, StateError> {
    require_ca_file(verify, ca_file)?;
    let ca = match ca_file {
        Some(path) => Some(read_ca_file(path).await?),
        None => None,
    };
    with_roots(trusted_roots(ca, system_roots), verify)
}

/// Refuses `verify-ca` without `ca_file`: it would trust every public CA for every name.
fn require_ca_file(verify: Verify, ca_file: Option<&std::path::Path>) -> Result<(), StateError> {
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

/// What the server's certificate may chain to: `ca_file`'s certificates (`ca`) alone when
/// given, whatever the mode (`system` is then not called); the system's roots when not.
fn trusted_roots(
    ca: Option<rustls::RootCertStore>,
    system: impl FnOnce() -> Vec<CertificateDer<'static>>,
) -> rustls::RootCertStore {
    ca.unwrap_or_else(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(system());
        roots
    })
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
        let translated = translate(url);
        (translated.url.to_string(), translated.verify)
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
            let config: tokio_postgres::Config = translate(url).url.parse().unwrap();
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

    #[test]
    fn sslrootcert_is_taken_out_of_the_url_and_read_as_written() {
        for (url, left, root_cert) in [
            (
                "postgres://warden:pw@db/warden?sslrootcert=%2Fetc%2Fwarden%2Fdb%20ca.pem&sslmode=verify-full",
                "postgres://warden:pw@db/warden?sslmode=require",
                Some(RootCert::File("/etc/warden/db ca.pem".into())),
            ),
            (
                "postgres://warden:pw@db/warden?sslmode=verify-ca&sslrootcert=/etc/ca.pem",
                "postgres://warden:pw@db/warden?sslmode=require",
                Some(RootCert::File("/etc/ca.pem".into())),
            ),
            (
                "postgres://warden:pw@db/warden?sslrootcert=/etc/ca.pem",
                "postgres://warden:pw@db/warden",
                Some(RootCert::File("/etc/ca.pem".into())),
            ),
            // libpq 16: the system's roots, and `verify-full` when no sslmode is given.
            (
                "postgres://warden:pw@db/warden?sslrootcert=system",
                "postgres://warden:pw@db/warden?sslmode=require",
                Some(RootCert::System),
            ),
            (
                "postgres://warden:pw@db/warden?application_name=w&sslrootcert=system",
                "postgres://warden:pw@db/warden?application_name=w&sslmode=require",
                Some(RootCert::System),
            ),
            (
                "host=db user=warden sslrootcert = '/etc/my ca\\'s.pem' sslmode=verify-ca password='a b'",
                "host=db user=warden  sslmode=require password='a b'",
                Some(RootCert::File("/etc/my ca's.pem".into())),
            ),
            (
                "host=db user=warden sslrootcert=system",
                "host=db user=warden  sslmode=require",
                Some(RootCert::System),
            ),
            (
                "postgres://warden:sslrootcert=x@db/warden?sslmode=require",
                "postgres://warden:sslrootcert=x@db/warden?sslmode=require",
                None,
            ),
        ] {
            let translated = translate(url);
            assert_eq!(translated.url.as_str(), left, "{url}");
            assert_eq!(translated.root_cert, root_cert, "{url}");
            let config: tokio_postgres::Config = translated.url.parse().expect(left);
            if root_cert == Some(RootCert::System) || url.contains("sslmode") {
                assert_eq!(config.get_ssl_mode(), SslMode::Require, "{url}");
            }
        }
    }

    #[test]
    fn sslrootcert_is_ca_file_and_both_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("db-ca.pem");
        std::fs::write(&ca, "").unwrap();
        let ca_text = ca.display().to_string();
        let ca_file = |url: &str, configured: Option<&Path>| ca_file(&translate(url), configured);
        // A password no temporary directory's random name can hold by chance (`pw` could).
        let url = format!("postgres://w:Secret-PW_1@db/w?sslmode=verify-ca&sslrootcert={ca_text}");
        assert_eq!(ca_file(&url, None).unwrap(), Some(ca.clone()));
        assert_eq!(ca_file(&url, Some(&ca)).unwrap(), Some(ca.clone()));
        // The same file, written another way.
        let other_spelling = dir.path().join(".").join("db-ca.pem");
        assert_eq!(
            ca_file(&url, Some(&other_spelling)).unwrap(),
            Some(other_spelling)
        );
        let error = ca_file(&url, Some(Path::new("/etc/warden/other-ca.pem"))).unwrap_err();
        assert!(
            matches!(error, StateError::SslRootCertConflict { .. }),
            "{error}"
        );
        let text = error.to_string();
        assert!(text.starts_with("state.postgres.tls.ca_file: "), "{text}");
        assert!(
            text.contains(&ca_text) && text.contains("/etc/warden/other-ca.pem"),
            "{text}"
        );
        assert!(!text.contains("Secret-PW_1"), "{text}");
        // ca_file alone, as before; verify-ca with neither is refused.
        assert_eq!(
            ca_file("postgres://w:pw@db/w?sslmode=verify-ca", Some(&ca)).unwrap(),
            Some(ca.clone())
        );
        assert!(matches!(
            ca_file("postgres://w:pw@db/w?sslmode=verify-ca", None),
            Err(StateError::VerifyCaWithoutCaFile)
        ));
    }

    #[test]
    fn sslrootcert_system_is_the_system_s_roots_with_the_host_name_verified() {
        let ca_file = |url: &str, configured: Option<&Path>| ca_file(&translate(url), configured);
        for url in [
            "postgres://w:pw@db/w?sslrootcert=system",
            "postgres://w:pw@db/w?sslrootcert=system&sslmode=verify-full",
            "postgres://w:pw@db/w?sslmode=require&sslrootcert=system",
        ] {
            assert_eq!(ca_file(url, None).unwrap(), None, "{url}");
            assert_eq!(translate(url).verify, Verify::Full, "{url}");
        }
        for mode in ["verify-ca", "prefer", "disable"] {
            let url = format!("postgres://w:pw@db/w?sslrootcert=system&sslmode={mode}");
            let error = ca_file(&url, None).unwrap_err();
            assert!(
                matches!(&error, StateError::SslRootCertSystemMode { mode: m } if m == mode),
                "{error}"
            );
            assert!(
                error.to_string().starts_with("state.postgres.url: "),
                "{error}"
            );
        }
        let error = ca_file(
            "postgres://w:pw@db/w?sslrootcert=system",
            Some(Path::new("/etc/warden/db-ca.pem")),
        )
        .unwrap_err();
        assert!(
            matches!(error, StateError::SslRootCertConflict { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("sslrootcert=system"), "{error}");
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
        connect_with_system(server, &[], Some(ca), host, sslmode).await
    }

    /// [`connect`], with `system` as the system's roots and `ca` as `ca_file`'s certificate
    /// when given.
    async fn connect_with_system(
        server: rustls::ServerConfig,
        system: &[CertificateDer<'static>],
        ca: Option<&CertificateDer<'static>>,
        host: &str,
        sslmode: &str,
    ) -> (String, bool) {
        let (port, handshake) = tls_postgres(server).await;
        let url =
            format!("host={host} hostaddr=127.0.0.1 port={port} user=warden sslmode={sslmode}");
        let Translated { url, verify, .. } = translate(&url);
        let ca_file = ca.map(|ca| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            roots
        });
        let roots = trusted_roots(ca_file, || system.to_vec());
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
            Some(&ca_file),
            "db.test",
            "verify-ca",
        )
        .await;
        assert!(!done, "a system root is not trusted with verify-ca");
        assert!(error.contains("invalid peer certificate"), "{error}");
    }

    /// An operator who names their private CA trusts it alone, as with libpq: a certificate
    /// valid for the database's host name from another CA (a public one among the system's
    /// roots) is refused in every verifying mode; without a CA file the system's roots vouch.
    #[tokio::test]
    async fn a_ca_file_is_the_only_trust_anchor_in_every_mode() {
        let (ca_file, _) = ca_and_server("db.test");
        for sslmode in ["verify-full", "require", "verify-ca"] {
            let (public, server) = ca_and_server("db.test");
            let (error, done) = connect_with_system(
                server,
                std::slice::from_ref(&public),
                Some(&ca_file),
                "db.test",
                sslmode,
            )
            .await;
            assert!(!done, "another CA's certificate refused with {sslmode}");
            assert!(
                error.contains("invalid peer certificate"),
                "{sslmode}: {error}"
            );
        }
        // No CA file (`sslrootcert=system`, or none given): the system's roots.
        for sslmode in ["verify-full", "require"] {
            let (public, server) = ca_and_server("db.test");
            let (error, done) =
                connect_with_system(server, &[public], None, "db.test", sslmode).await;
            assert!(done, "{sslmode}: the handshake completed: {error}");
        }
    }

    #[test]
    fn a_ca_file_is_trusted_alone_and_the_system_s_roots_without_one() {
        let (ca, _) = ca_and_server("db.test");
        let (system, _) = ca_and_server("db.test");
        let mut ca_file = rustls::RootCertStore::empty();
        ca_file.add(ca.clone()).unwrap();
        let given = trusted_roots(Some(ca_file), || {
            panic!("the system's roots were loaded with a CA file given")
        });
        assert_eq!(given.roots.len(), 1);
        let none = trusted_roots(None, || vec![system.clone()]);
        assert_eq!(none.roots.len(), 1);
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
