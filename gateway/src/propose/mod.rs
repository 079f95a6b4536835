//! Tool calls a model proposes for the agent to run itself (`exec`, `write`, `browser`, ...),
//! judged inside the LLM response before the agent receives them (docs/local-tools.md).
//!
//! `config.rs` is the `propose:` section and the catalogue of agent tools; `shell.rs` reads a
//! command line as a shell does; `paths.rs` makes paths absolute and places them against the
//! workspace; `facts.rs` turns a call's arguments into the context policies read; `judge.rs`
//! decides and records each call. The responses' shapes are the dialects' (`protocol/*/
//! proposals.rs`, behind `Dialect::proposals`).

pub mod config;
pub mod facts;
pub mod judge;
pub mod paths;
pub mod shell;

pub use config::ProposeConfig;
pub use judge::{Catalogue, Judge, RecordProposal};
