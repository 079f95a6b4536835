//! Warden's durable state: what must survive a restart and, with several replicas, be shared
//! (tool-definition pins, approvals, approvers' second factors, console sessions, canary
//! tokens, quarantines, token revocations, fleet counters: budget spend, rate-limit counts, session labels;
//! the rollback floors of signed policy bundles; SIEM spool cursors next).
//!
//! One repository trait per concern (`pins::PinRepository`, `approvals::ApprovalRepository`,
//! `factors::FactorRepository`, `sessions::SessionRepository`,
//! `quarantine::QuarantineRepository`, `revocations::RevocationRepository`,
//! `fleet::FleetRepository`, `bundle_floors::BundleFloorRepository`), each with typed records and
//! atomic steps rather than a key/value bag, so that every backend keeps the same rules. A
//! [`Store`] opens the backend the `state:` section names and hands out the repositories.
//! SQLite in one file under `data_dir` is the embedded default (`sqlite/`); PostgreSQL
//! (`postgres/`), for several replicas, implements the same traits with the same tables and
//! runs the same tests (`tests.rs`). Changes of an approval reach watchers in every process:
//! LISTEN/NOTIFY on PostgreSQL, a polled revision on SQLite.
//!
//! Callers never hold a store's answer on the request path for something they already know:
//! the pins cache (`pins/`) answers from memory and goes to the store only for what is new.
//! A store failure is a [`StateError`], which security decisions treat as a refusal.

pub mod approvals;
pub mod bundle_floors;
pub mod canaries;
pub mod config;
pub mod error;
pub mod factors;
#[cfg(test)]
pub mod flaky;
pub mod fleet;
pub mod follow;
pub mod health;
pub mod in_force;
pub mod migrated;
pub mod pins;
pub mod postgres;
pub mod quarantine;
pub mod revocations;
pub mod sessions;
pub mod sqlite;
pub mod store;

pub use config::StateConfig;
pub use error::StateError;
pub use store::Store;

#[cfg(test)]
mod tests;
