//! What can go wrong between Warden and Vault. No variant ever holds a secret: Vault's own
//! error messages name paths and reasons, not values.

use http::StatusCode;

/// A failed call to Vault, or a login that could not be made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum VaultError {
    /// The `vault:` section cannot be used as written.
    #[error("vault: {0}")]
    Config(String),
    /// A secret Warden needs to log in could not be read.
    #[error("vault login ({method}): cannot read {what}: {reason}")]
    Bootstrap {
        method: &'static str,
        what: String,
        reason: String,
    },
    /// Vault could not be reached, or did not answer in time.
    #[error("vault at {address} is unreachable: {reason}")]
    Unreachable { address: String, reason: String },
    /// Vault (or whatever answers at its address) did not finish answering a call in time.
    #[error(
        "vault at {address} did not answer {what} within {} (vault.timeout): is Vault \
         overloaded, or is something else listening at vault.address?",
        humantime::format_duration(*limit)
    )]
    TimedOut {
        address: String,
        what: String,
        limit: std::time::Duration,
    },
    /// Vault's answer is larger than Warden reads.
    #[error(
        "vault at {address} answered {what} with more than {limit} bytes, the most Warden reads \
         of an answer: the answer is refused (is something other than Vault listening at \
         vault.address?)"
    )]
    TooLarge {
        address: String,
        what: String,
        limit: usize,
    },
    /// Vault answered with an error.
    #[error("vault refused {what}: HTTP {status}: {message}")]
    Refused {
        what: String,
        status: StatusCode,
        message: String,
    },
    /// Vault's answer is not what its API documents.
    #[error("vault's answer to {what} is not understood: {reason}")]
    Malformed { what: String, reason: String },
    /// Vault keeps a KV v2 version but not its data (its answer is a 404 with the version's
    /// metadata): deleted, or destroyed.
    #[error("vault refused {what}: version {version} {gone}")]
    KvVersionGone {
        what: String,
        version: u64,
        gone: KvGone,
    },
    /// The secret exists but holds no such field.
    #[error("vault secret {path} has no field {field:?} (fields: {available})")]
    NoField {
        path: String,
        field: String,
        available: String,
    },
}

impl VaultError {
    /// Vault is down or unreachable (as opposed to refusing): callers may serve what they
    /// have cached until it expires.
    pub fn is_outage(&self) -> bool {
        match self {
            VaultError::Unreachable { .. } | VaultError::TimedOut { .. } => true,
            VaultError::Refused { status, .. } => status.is_server_error(),
            _ => false,
        }
    }

    /// The token is no longer accepted: log in again.
    pub fn is_forbidden(&self) -> bool {
        matches!(self, VaultError::Refused { status, .. } if *status == StatusCode::FORBIDDEN)
    }
}

/// Why a KV v2 version has no data, as its metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvGone {
    /// Soft-deleted (`kv delete`) at this time: `kv undelete` brings it back.
    Deleted { at: String },
    /// Destroyed (`kv destroy`): its data is gone for good.
    Destroyed,
}

impl std::fmt::Display for KvGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KvGone::Deleted { at } => write!(f, "was deleted at {at}"),
            KvGone::Destroyed => f.write_str("is destroyed"),
        }
    }
}

impl KvGone {
    /// The version and why it has no data, from a KV v2 answer's `data.metadata`
    /// (`destroyed`, `deletion_time`); `None` for a version that has its data, or no
    /// metadata at all.
    pub fn from_metadata(metadata: &serde_json::Value) -> Option<(u64, KvGone)> {
        let version = metadata["version"].as_u64()?;
        if metadata["destroyed"].as_bool() == Some(true) {
            return Some((version, KvGone::Destroyed));
        }
        match metadata["deletion_time"].as_str() {
            Some(at) if !at.is_empty() => Some((version, KvGone::Deleted { at: at.to_owned() })),
            _ => None,
        }
    }
}
