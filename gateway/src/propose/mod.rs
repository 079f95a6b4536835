//! Tool calls a model proposes for the agent to run itself (`exec`, `write`, `browser`, ...),
//! judged inside the LLM response before the agent receives them (docs/local-tools.md).
//!
//! `config.rs` is the `propose:` section and the catalogue of agent tools; `shell.rs` reads a
//! command line as a shell does; `paths.rs` makes paths absolute and places them against the
//! workspace; `tool_name.rs` finds the tool a proposed name runs as; `facts.rs` turns a call's arguments into the context policies read; `judge.rs`
//! decides and records each call; `hold.rs` holds one that needs approval through the
//! approval gate; `judging.rs` runs a response's rewriter with the judge, replaying it once a
//! held call is settled. The responses' shapes are the dialects' (`protocol/*/
//! proposals.rs`, behind `Dialect::proposals`).

pub mod config;
pub mod facts;
pub mod hold;
pub mod judge;
pub mod judging;
pub mod paths;
pub mod shell;
pub mod tool_name;

pub use config::ProposeConfig;
pub use judge::{Catalogue, Judge, RecordProposal};
pub use judging::Judging;
