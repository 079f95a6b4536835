//! What a credential provider is: asked for a principal's credential, it answers at once from
//! memory ([`Fetch::Ready`]) or, on a miss, with the wait for one ([`Fetch::Pending`]).

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use super::credential::{Credential, CredentialError};
use crate::action::Principal;

/// What the request path receives: the credential, or why there is none.
pub type Lookup = Result<Arc<Credential>, CredentialError>;

/// A credential at once (from memory), or the wait for one (a Vault read on a miss).
pub enum Fetch<'a> {
    Ready(Lookup),
    Pending(Pin<Box<dyn Future<Output = Lookup> + Send + 'a>>),
}

impl Fetch<'_> {
    /// The credential, waiting if it must be read.
    pub async fn get(self) -> Lookup {
        match self {
            Fetch::Ready(lookup) => lookup,
            Fetch::Pending(future) => future.await,
        }
    }
}

/// Whether a principal may use the secret at a path its route's template resolved to (Cedar
/// `secret:use` on `Secret::"<path>"`, on the request path).
pub trait SecretGuard: Sync {
    fn check(&self, principal: &Principal, path: &str) -> Result<(), CredentialError>;
}

/// The guard where no principal is known (an MCP server's own session): a templated path is
/// refused.
pub struct NoPrincipal;

impl SecretGuard for NoPrincipal {
    fn check(&self, principal: &Principal, path: &str) -> Result<(), CredentialError> {
        Err(CredentialError::Forbidden {
            principal: principal.id.to_string(),
            path: path.to_owned(),
            reason: "a per-principal secret path needs a request's principal".into(),
        })
    }
}

/// A source of one route's upstream credential.
pub trait CredentialProvider: Send + Sync + fmt::Debug + 'static {
    /// The credential for `principal`'s next upstream request; `guard` judges a secret path
    /// chosen by the principal's attributes.
    fn credential<'a>(&'a self, principal: &'a Principal, guard: &'a dyn SecretGuard) -> Fetch<'a>;

    /// Why no credential can be given right now, if that is known without a request (for
    /// start-up and reload warnings).
    fn unavailable(&self) -> Option<CredentialError> {
        None
    }
}

/// Why a provider cannot be built from its configuration: the key (below `credential` or
/// `inject`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub key: String,
    pub message: String,
}
