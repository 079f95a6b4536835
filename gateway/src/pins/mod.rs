//! Tool-definition pinning: a "rug pull" (an MCP server changing a tool's description or
//! schema after it was trusted) is caught, the changed tool hidden and refused until an
//! operator approves it, and the change audited with a diff. A server's `instructions` are
//! pinned the same way, as the definition [`INSTRUCTIONS`]: changed, they are withheld from
//! the agent's `initialize` result until approved.
//!
//! Each tool's definition (name, title, description, input and output schemas, annotations)
//! is reduced to a digest: SHA-256 over its canonical JSON (`definition.rs`). Per server, in
//! mode `tofu` (the default) the first definition seen is pinned; in mode `approved` only
//! definitions approved in the configuration (`pins.approved`, by digest) or with
//! `warden tools approve` count. [`Pins::check`] gives the verdict on each definition of a
//! `tools/list` result: [`PinVerdict::Trusted`], [`PinVerdict::FirstSeen`],
//! [`PinVerdict::Changed`] (with a bounded unified diff, `diff.rs`) or
//! [`PinVerdict::Unapproved`]; [`Pins::call_status`] says whether a `tools/call` may go ahead.
//! Both answer from memory for known definitions; new ones are recorded in the state store
//! (`state/`) first, and a store failure hides the tool (fail closed). Every check also
//! reports the hidden instructions `inspect::tool_description` finds, for the policy context
//! and for approvers. `review.rs` serves `warden tools list|approve|diff`.

pub mod check;
pub mod config;
pub mod definition;
pub mod diff;
pub mod error;
pub mod review;
pub mod uri;
pub mod verdict;

pub use check::{PINS_PER_KIND_MAX, Pins};
pub use config::{PinMode, PinsConfig};
pub use definition::{INSTRUCTIONS, ItemKind, instructions_item};
pub use error::PinError;
pub use verdict::{CallStatus, PinChange, PinCheck, PinVerdict, Standing};
