//! Credential: the agent's credential never leaves Warden; the upstream's is injected, taken at
//! request time from the route's [`CredentialProvider`].

pub mod config;
mod credential;
pub mod inject;
mod provider;

pub use config::CredentialSource;
pub use credential::{Credential, CredentialError};
pub use provider::{CredentialProvider, Lookup, provider};
