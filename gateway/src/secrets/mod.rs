//! Credential: the agent's credential never leaves Warden; the upstream's is injected, taken at
//! request time from the route's [`CredentialProvider`] (an environment variable, a file, or
//! Vault).

pub mod config;
mod credential;
mod echo;
mod fetch;
pub mod inject;
mod injection;
mod joined;
pub mod own;
mod provider;
pub mod redact;
mod spelled;
mod template;
mod vault_source;

pub use config::{CredentialSource, InjectConfig, VaultSource};
pub use credential::{Credential, CredentialError, Placed, SecretOrigin, unavailable_to_agent};
pub use fetch::{CredentialProvider, Fetch, Lookup, NoPrincipal, ProviderError, SecretGuard};
pub use injection::Injection;
pub use provider::provider;
pub use template::{PathTemplate, ResolveError};
