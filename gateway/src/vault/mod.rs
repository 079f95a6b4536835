//! Vault (or OpenBao): Warden's login, its token kept alive, and the secrets its credential
//! sources read (KV v2 versions, leased dynamic secrets), cached, renewed and revoked.

mod client;
pub mod config;
mod error;
pub mod metrics;
mod secret;
mod store;

pub use client::{Vault, VaultStatus, margin};
pub use config::VaultConfig;
pub use error::VaultError;
pub use secret::{KvSecret, LeasedSecret, SecretData};
pub use store::{Held, SecretError, SecretKey, SecretOrigin, SecretStore, Slot};
