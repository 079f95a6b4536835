//! Why egress was refused or failed: one variant per cause, each with its HTTP status and
//! stable code (the `x-warden-error` header).

use http::StatusCode;

use super::host::HostError;
use super::sni::HelloError;
use crate::identity::AuthError;

/// Why an egress connection or request did not go through.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// No `Proxy-Authorization`.
    #[error(
        "the egress proxy needs Proxy-Authorization: your Warden or IdP token as \
         `Bearer <token>`, or as the password of `Basic` (e.g. HTTPS_PROXY=http://agent:<token>@host:port)"
    )]
    MissingCredential,
    /// `Proxy-Authorization` in a scheme other than Bearer or Basic, or Basic without a
    /// password.
    #[error(
        "Proxy-Authorization must be `Bearer <token>` or `Basic` with the token as the password"
    )]
    CredentialScheme,
    /// The token was refused.
    #[error("proxy authentication failed: {0}")]
    Auth(AuthError),
    /// The request target is not one the proxy takes.
    #[error("{0}")]
    Target(String),
    /// The destination host is malformed.
    #[error("the destination host {host} is refused: {source}")]
    Host {
        /// The host as the agent wrote it (quoted, bounded).
        host: String,
        source: HostError,
    },
    /// The name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    /// The DNS servers did not answer in time (`egress.resolve_timeout`).
    #[error("resolving {host} timed out (egress.resolve_timeout)")]
    ResolveTimeout { host: String },
    /// No address of the destination accepted the connection.
    #[error("cannot connect to {host} port {port}: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
    /// The destination did not accept the connection in time (`egress.connect_timeout`).
    #[error("connecting to {host} port {port} timed out (egress.connect_timeout)")]
    ConnectTimeout { host: String, port: u16 },
    /// A plain-HTTP destination broke the exchange.
    #[error("the destination failed: {0}")]
    Upstream(String),
    /// A plain-HTTP destination did not answer in time (`egress.response_timeout`).
    #[error("the destination did not answer within egress.response_timeout")]
    UpstreamTimeout,
    /// An intercepted destination's certificate is not trusted (`egress.intercept`).
    #[error(
        "the certificate of {host} is not trusted ({reason}): Warden verifies intercepted \
         destinations against the system's CAs and egress.intercept.upstream_ca_file"
    )]
    UpstreamUntrusted { host: String, reason: String },
    /// TLS with an intercepted destination failed otherwise.
    #[error("TLS with {host} failed: {reason}")]
    UpstreamTls { host: String, reason: String },
    /// The client's side of a tunnel failed before its first bytes were read.
    #[error("the client's connection failed: {0}")]
    Client(String),
    /// The client sent nothing through its tunnel in time (`egress.first_bytes_timeout`).
    #[error("the client sent nothing through the tunnel within egress.first_bytes_timeout")]
    FirstBytesTimeout,
    /// The tunnel's TLS ClientHello cannot be read.
    #[error("{0}")]
    Hello(#[from] HelloError),
    /// The ClientHello names another server than the tunnel's destination (domain fronting).
    #[error(
        "the TLS server name {sni:?} is not the tunnel's destination {host:?}: a tunnel carries \
         TLS for the host it was opened to only"
    )]
    SniMismatch { host: String, sni: String },
    /// The tunnel's protocol, once known, is denied by policy.
    #[error("policy denies this tunnel once its protocol is known: {0}")]
    TunnelDenied(String),
    /// An open tunnel is denied by the policies a reload brought.
    #[error("closed: the reloaded policies deny this open tunnel (policy_reloaded_denied): {0}")]
    ReloadDenied(String),
    /// The decision on what an open tunnel carries could not be recorded.
    #[error("closed: the decision on what this tunnel carries could not be recorded: {0}")]
    AuditUnavailable(String),
    /// An HTTP/2 tunnel would dial a connection beyond the egress listener's cap.
    #[error(
        "the egress proxy holds its most connections and tunnels (listen.max_connections.egress); \
         open the tunnel again once others close"
    )]
    AtCapacity,
    /// Warden shut down while the tunnel was open, and `listen.shutdown_grace` ran out.
    #[error("closed: Warden is shutting down and the tunnel outlived listen.shutdown_grace")]
    Shutdown,
}

impl EgressError {
    /// The HTTP status the agent gets (when the refusal comes before the tunnel opens).
    pub fn status(&self) -> StatusCode {
        match self {
            EgressError::MissingCredential | EgressError::CredentialScheme => {
                StatusCode::PROXY_AUTHENTICATION_REQUIRED
            }
            EgressError::Auth(e) if e.status().is_server_error() => e.status(),
            EgressError::Auth(_) => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            EgressError::Target(_) | EgressError::Host { .. } => StatusCode::BAD_REQUEST,
            EgressError::Resolve { .. }
            | EgressError::Connect { .. }
            | EgressError::Upstream(_)
            | EgressError::UpstreamUntrusted { .. }
            | EgressError::UpstreamTls { .. } => StatusCode::BAD_GATEWAY,
            EgressError::ResolveTimeout { .. }
            | EgressError::ConnectTimeout { .. }
            | EgressError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            EgressError::Client(_)
            | EgressError::FirstBytesTimeout
            | EgressError::Hello(_)
            | EgressError::SniMismatch { .. } => StatusCode::BAD_REQUEST,
            EgressError::TunnelDenied(_) | EgressError::ReloadDenied(_) => StatusCode::FORBIDDEN,
            EgressError::AuditUnavailable(_) | EgressError::AtCapacity | EgressError::Shutdown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            EgressError::MissingCredential => "proxy_credential_missing",
            EgressError::CredentialScheme => "proxy_credential_scheme",
            EgressError::Auth(e) => e.code(),
            EgressError::Target(_) => "egress_bad_target",
            EgressError::Host { .. } => "egress_bad_host",
            EgressError::Resolve { .. } => "egress_resolve_failed",
            EgressError::ResolveTimeout { .. } => "egress_resolve_timeout",
            EgressError::Connect { .. } => "egress_connect_failed",
            EgressError::ConnectTimeout { .. } => "egress_connect_timeout",
            EgressError::Upstream(_) => "egress_upstream_failed",
            EgressError::UpstreamTimeout => "egress_upstream_timeout",
            EgressError::UpstreamUntrusted { .. } => "egress_upstream_untrusted",
            EgressError::UpstreamTls { .. } => "egress_upstream_tls_failed",
            EgressError::Client(_) => "egress_client_error",
            EgressError::FirstBytesTimeout => "egress_first_bytes_timeout",
            EgressError::Hello(_) => "egress_bad_client_hello",
            EgressError::SniMismatch { .. } => "egress_sni_mismatch",
            EgressError::TunnelDenied(_) => "egress_tunnel_denied",
            EgressError::ReloadDenied(_) => "policy_reloaded_denied",
            EgressError::AuditUnavailable(_) => "audit_unavailable",
            EgressError::AtCapacity => "egress_at_capacity",
            EgressError::Shutdown => "egress_shutdown",
        }
    }

    /// Whether the agent was refused before a decision (no credential, a malformed target).
    pub fn before_decision(&self) -> bool {
        matches!(
            self,
            EgressError::MissingCredential
                | EgressError::CredentialScheme
                | EgressError::Auth(_)
                | EgressError::Target(_)
                | EgressError::Host { .. }
                | EgressError::Resolve { .. }
                | EgressError::ResolveTimeout { .. }
        )
    }
}
