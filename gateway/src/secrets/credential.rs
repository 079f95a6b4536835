//! A credential ready to send upstream, and why a request may have none.

use std::path::Path;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use zeroize::Zeroizing;

use super::echo::Echo;
use super::template::ResolveError;
use crate::vault::SecretError;
pub use crate::vault::SecretOrigin;

/// Why a request has no usable upstream credential. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "route {route:?} has no upstream credential configured (set credential: {{ env: NAME }}, {{ file: PATH }} or {{ vault: ... }})"
    )]
    NotConfigured { route: String },
    #[error("environment variable {0} is not set or empty")]
    EnvMissing(String),
    /// `file` is the path as [`crate::vault::config::shown_path`] shows it (a path that may
    /// be the secret itself, written where its path goes, is not): build it with
    /// [`CredentialError::file`].
    #[error("cannot read credential file {file}: {reason}")]
    File { file: String, reason: String },
    #[error("the credential from {0} contains characters not allowed in an HTTP header")]
    InvalidValue(String),
    #[error("connector header name {0:?} is not a valid HTTP header name")]
    InvalidHeader(String),
    #[error("no credential is available yet: {0}")]
    Unavailable(String),
    /// The secret lacks what the injection template puts in.
    #[error("the secret from {origin} has no {what}")]
    Missing { origin: String, what: String },
    /// Vault answered, but not with the secret (no such path, no permission, a bad answer).
    #[error("vault could not give {path}: {reason}")]
    Vault { path: String, reason: String },
    /// Vault is unreachable and no cached copy of the secret is still valid: fail closed.
    #[error(
        "vault is unreachable and the cached secret {path} has expired (or was never read): {reason}"
    )]
    VaultDown { path: String, reason: String },
    /// The principal's templated secret path is one policy does not let it use.
    #[error("principal {principal:?} may not use secret {path}: {reason}")]
    Forbidden {
        principal: String,
        path: String,
        reason: String,
    },
    /// The principal lacks an attribute its route's secret path names, or has an unsafe one.
    #[error(transparent)]
    Unresolved(#[from] ResolveError),
}

impl CredentialError {
    /// Credential file `path` could not be read (`error`), or was read and is empty (`None`).
    pub fn file(path: &Path, error: Option<&std::io::Error>) -> CredentialError {
        CredentialError::File {
            file: crate::vault::config::shown_path(path, error).into_owned(),
            reason: error.map_or_else(|| "file is empty".to_owned(), ToString::to_string),
        }
    }
}

impl From<SecretError> for CredentialError {
    fn from(e: SecretError) -> CredentialError {
        match e {
            SecretError::Down { path, reason } => CredentialError::VaultDown { path, reason },
            SecretError::Refused { path, reason } => CredentialError::Vault { path, reason },
        }
    }
}

impl CredentialError {
    /// The HTTP status the agent gets: 403 when the principal may not have this secret,
    /// 503 (fail closed) when Warden cannot get it.
    pub fn status(&self) -> StatusCode {
        match self {
            CredentialError::Forbidden { .. } | CredentialError::Unresolved(_) => {
                StatusCode::FORBIDDEN
            }
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable code (`x-warden-error`).
    pub fn code(&self) -> &'static str {
        match self {
            CredentialError::Forbidden { .. } => "secret_denied",
            CredentialError::Unresolved(_) => "secret_unresolved",
            CredentialError::VaultDown { .. } => "vault_unavailable",
            _ => "credential_unavailable",
        }
    }
}

/// What an agent is told when Warden could not get the upstream credential its request
/// needs: the failure names Vault's address, secret paths and files, which stay in the
/// operator's log and the audit record; `decision_id`, when the request was decided, says
/// where to look.
pub fn unavailable_to_agent(decision_id: Option<&str>) -> String {
    let mut text = "Warden could not get the upstream credential for this request, so it refused \
                    it (fail closed); the operator's log and audit record say why"
        .to_owned();
    if let Some(id) = decision_id.filter(|id| !id.is_empty()) {
        text.push_str(&format!(" (decision {id})"));
    }
    text
}

/// Where a credential goes on the upstream request.
#[derive(Clone)]
pub enum Placed {
    /// A header; its value is marked sensitive, so it is never printed by `Debug` nor indexed
    /// by HPACK.
    Header(HeaderName, HeaderValue),
    /// A query parameter: its name and its value, already percent-encoded.
    Query(String, Zeroizing<String>),
}

/// A ready-to-send upstream credential.
#[derive(Clone)]
pub struct Credential {
    pub placed: Placed,
    /// The secret's values as they could come back in a response (the value, its base64,
    /// its hex, however JSON, a URL or HTML spells them): redacted from responses. Empty with
    /// `inject.redact: false`.
    pub echo: Arc<Echo>,
    /// Where in Vault it came from.
    pub origin: Option<Arc<SecretOrigin>>,
}

impl Credential {
    /// A header credential with nothing to redact (tests, MCP sessions' fixed headers).
    pub fn header(name: HeaderName, mut value: HeaderValue) -> Credential {
        value.set_sensitive(true);
        Credential {
            placed: Placed::Header(name, value),
            echo: Arc::new(Echo::default()),
            origin: None,
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match &self.placed {
            Placed::Header(name, _) => format!("header {name}"),
            Placed::Query(name, _) => format!("query {name}"),
        };
        f.debug_struct("Credential")
            .field("placed", &place)
            .field("value", &"<redacted>")
            .field("origin", &self.origin)
            .finish()
    }
}
