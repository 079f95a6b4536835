//! Record: the tamper-evident audit log.
//!
//! Every record is one JSON line, `{"seq":N,"prev":"<sha256 hex of the previous line>",...}`,
//! appended to `audit-NNNNNN.jsonl` segments by one writer thread that group-commits (one
//! synchronous write for everything pending: direct I/O with `O_DSYNC`, or a write and
//! `fdatasync`) into zero-filled space it reserves ahead, so a segment's data ends at its
//! first NUL byte. `head.json` anchors the last record so a cut tail shows. [`verify`] walks
//! the chain and names the first bad record. The format is described in `docs/audit.md`.

mod anchor;
pub mod answer;
mod chain;
pub mod config;
mod direct;
pub mod event;
pub(crate) mod faults;
mod log;
pub mod producers;
mod record;
mod recover;
mod segment;
pub mod stats;
mod verify;
mod writer;

pub use log::{AuditError, AuditLog};
pub use record::Hash;
pub use verify::{
    EditEvidence, Location, Problem, TruncationEvidence, VerifyError, VerifyReport, verify,
};

#[cfg(test)]
mod tests;
