//! Why an upstream could not be reached or answered badly, sorted so the proxy can answer
//! 502 (bad gateway) or 504 (gateway timeout).

use std::error::Error as StdError;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use http::uri::Authority;

use super::address_guard::{AddressRefused, UpstreamResolveError};
use crate::egress::resolve::ResolverSetupError;
use crate::listener::TlsError;

/// A boxed error from the HTTP stack.
type BoxError = Box<dyn StdError + Send + Sync>;

/// What went wrong building the upstream client or sending a request through it.
///
/// Messages name the upstream by host and port only: never the path or query, which may
/// carry a credential.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// `upstream.ca_only` without `upstream.ca_file`: nothing would be trusted.
    #[error("upstream.ca_only is set but upstream.ca_file is not; name the CA bundle to trust")]
    CaOnlyWithoutFile,
    /// `upstream.ca_file` is unusable.
    #[error("upstream.ca_file: {0}")]
    CaFile(#[from] CaFileError),
    /// The crypto provider refused the protocol versions (a build defect, not configuration).
    #[error("the TLS crypto provider cannot speak TLS 1.2/1.3: {0}")]
    Provider(rustls::Error),
    /// `upstream.nameservers` cannot serve as a resolver.
    #[error("upstream.nameservers: {0}")]
    Resolver(ResolverSetupError),
    /// The request URI has no scheme and host.
    #[error(
        "upstream request URI is not absolute (scheme://host/...); the route's upstream URL is wrong"
    )]
    NotAbsolute,
    /// The upstream could not be reached: DNS failure, connection refused or reset.
    #[error("cannot connect to upstream {authority}: {source}")]
    Connect {
        authority: Authority,
        source: BoxError,
    },
    /// The upstream's name resolves to an address the guard refuses (`upstream.allow_private`).
    #[error("Warden refuses to connect to upstream {authority}: {source}")]
    AddressRefused {
        authority: Authority,
        source: AddressRefused,
    },
    /// TCP connect did not complete within `upstream.connect_timeout`.
    #[error("connecting to upstream {authority} timed out after {after:?}")]
    ConnectTimeout {
        authority: Authority,
        after: Duration,
    },
    /// The TLS handshake failed: untrusted or mismatched certificate, protocol mismatch.
    #[error(
        "TLS with upstream {authority} failed: {source}; check upstream.ca_file and the URL's host"
    )]
    Tls {
        authority: Authority,
        source: BoxError,
    },
    /// No response headers within `upstream.response_timeout`.
    #[error("upstream {authority} sent no response headers within {after:?}")]
    Timeout {
        authority: Authority,
        after: Duration,
    },
    /// The upstream broke HTTP: closed mid-exchange, malformed response, stream reset.
    #[error("upstream {authority} broke the HTTP exchange: {source}")]
    Protocol {
        authority: Authority,
        source: BoxError,
    },
}

/// Why `upstream.ca_file` cannot serve as the upstream trust anchors.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read or is not valid PEM.
    #[error(transparent)]
    Read(Box<TlsError>),
    /// The file holds no certificate.
    #[error("{path} holds no PEM `CERTIFICATE` block")]
    Empty { path: PathBuf },
    /// A certificate in the file cannot be a trust anchor.
    #[error("{path} holds a certificate that cannot be trusted as a CA: {source}")]
    Invalid {
        path: PathBuf,
        source: rustls::Error,
    },
}

impl UpstreamError {
    /// The status the proxy should answer with: 504 for timeouts, 502 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Timeout { .. } | UpstreamError::ConnectTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable code of a request that failed for this reason: `upstream_timeout` for
    /// timeouts, `upstream_unavailable` otherwise.
    pub fn code(&self) -> &'static str {
        match self {
            UpstreamError::Timeout { .. } | UpstreamError::ConnectTimeout { .. } => {
                "upstream_timeout"
            }
            UpstreamError::AddressRefused { .. } => "upstream_address_refused",
            _ => "upstream_unavailable",
        }
    }

    /// Sorts an error from the pooled client.
    pub(super) fn classify(
        authority: Authority,
        error: hyper_util::client::legacy::Error,
        connect_timeout: Duration,
    ) -> UpstreamError {
        if let Some(refused) = refused(&error) {
            return UpstreamError::AddressRefused {
                authority,
                source: refused.clone(),
            };
        }
        match kind(&error, error.is_connect()) {
            Kind::Tls => UpstreamError::Tls {
                authority,
                source: error.into(),
            },
            Kind::ConnectTimeout => UpstreamError::ConnectTimeout {
                authority,
                after: connect_timeout,
            },
            Kind::Connect => UpstreamError::Connect {
                authority,
                source: error.into(),
            },
            Kind::Protocol => UpstreamError::Protocol {
                authority,
                source: error.into(),
            },
        }
    }
}

/// The guard's refusal in a client error's source chain, if that is why it failed.
fn refused<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a AddressRefused> {
    let mut next = Some(error);
    while let Some(current) = next {
        if let Some(UpstreamResolveError::Refused(refused)) =
            current.downcast_ref::<UpstreamResolveError>()
        {
            return Some(refused);
        }
        next = current.source();
    }
    None
}

/// The class of a client error, read from its source chain.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Tls,
    ConnectTimeout,
    Connect,
    Protocol,
}

fn kind(error: &(dyn StdError + 'static), is_connect: bool) -> Kind {
    let mut timed_out = false;
    let mut next = Some(error);
    while let Some(current) = next {
        if current.is::<rustls::Error>() {
            return Kind::Tls;
        }
        next = current.source();
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            // io::Error's `source` skips the error it wraps: step into that error instead.
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn StdError + 'static));
            }
        }
    }
    match (is_connect, timed_out) {
        (true, true) => Kind::ConnectTimeout,
        (true, false) => Kind::Connect,
        (false, _) => Kind::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("tcp connect error")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn rustls_error_inside_io_error_is_tls() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(kind(&Wrapper(io), true), Kind::Tls);
    }

    #[test]
    fn rustls_error_inside_nested_io_errors_is_tls() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let outer = std::io::Error::other(tls);
        assert_eq!(kind(&Wrapper(outer), true), Kind::Tls);
    }

    #[test]
    fn timed_out_connect_is_connect_timeout() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout");
        assert_eq!(kind(&Wrapper(io), true), Kind::ConnectTimeout);
    }

    #[test]
    fn refused_connect_is_connect() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(kind(&Wrapper(io), true), Kind::Connect);
    }

    #[test]
    fn error_after_connect_is_protocol() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(kind(&Wrapper(io), false), Kind::Protocol);
    }

    #[test]
    fn timeouts_answer_504_and_others_502() {
        let authority = Authority::from_static("api.example:443");
        let timeout = UpstreamError::Timeout {
            authority: authority.clone(),
            after: Duration::ZERO,
        };
        let connect = UpstreamError::Connect {
            authority,
            source: "refused".into(),
        };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(connect.status(), StatusCode::BAD_GATEWAY);
    }
}
