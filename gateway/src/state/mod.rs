//! Warden's durable state: what must survive a restart and, with several replicas, be shared
//! (tool-definition pins today; approvals, quarantine and SIEM spool cursors next).
//!
//! One repository trait per concern (`pins::PinRepository`, …), each with typed records and
//! atomic steps rather than a key/value bag, so that every backend keeps the same rules. A
//! [`Store`] opens the backend the `state:` section names and hands out the repositories.
//! SQLite in one file under `data_dir` is the embedded default (`sqlite/`); PostgreSQL, when
//! approvals bring it, implements the same traits against the same tables and migrations, and
//! runs the same tests.
//!
//! Callers never hold a store's answer on the request path for something they already know:
//! the pins cache (`pins/`) answers from memory and goes to the store only for what is new.
//! A store failure is a [`StateError`], which security decisions treat as a refusal.

pub mod config;
pub mod error;
pub mod pins;
pub mod sqlite;
pub mod store;

pub use config::StateConfig;
pub use error::StateError;
pub use store::Store;
