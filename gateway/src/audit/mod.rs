//! Record: the tamper-evident audit log.
//!
//! Every record is one JSON line, `{"seq":N,"prev":"<sha256 hex of the previous line>",...}`,
//! appended to `audit-NNNNNN.jsonl` segments by one writer thread that group-commits (one
//! write for everything pending) into zero-filled space it reserves ahead, so a segment's
//! data ends at its first NUL byte. In `disk` durability each commit is flushed
//! (`fdatasync`) before its records are answered; in `process` durability they are answered
//! once written and a flusher thread flushes them within `audit.flush_interval`. `head.json`
//! anchors the last durable record so a cut tail shows. In `process` durability a commit is
//! one write, so while nothing else is due the appending thread makes it itself, under the
//! writer's lock (`writer/inline.rs`). [`verify`] walks the chain and names
//! the first bad record. The format is described in `docs/audit.md`.

pub mod acknowledged;
mod anchor;
mod answer;
mod chain;
pub mod checkpoint;
pub mod config;
mod error;
pub mod event;
pub(crate) mod faults;
mod flusher;
mod interrupted;
pub mod last_keys;
mod log;
mod outbox;
pub mod read;
pub mod read_back;
pub mod receipt;
mod record;
mod recover;
pub mod replica;
pub mod retention;
mod run_end;
mod segment;
mod segment_file;
pub mod shape;
pub mod signer;
pub mod stats;
mod unauthenticated;
mod verify;
mod writer;

pub use anchor::Anchor;
pub use error::{
    AuditError, EditEvidence, Location, Problem, StaleSignature, TruncationEvidence, UnsignedStart,
    VerifyError,
};
pub use log::AuditLog;
pub use record::Hash;
pub use run_end::LastRun;
pub use verify::{VerifyOptions, VerifyReport, verify, verify_with};

#[cfg(test)]
mod inline_tests;
#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod signed_tests;
#[cfg(test)]
mod tail_tests;
#[cfg(test)]
mod tests;
