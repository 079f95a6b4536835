//! Warden's performance measurement: the side-by-side load harness (`load` binary) and its
//! parts. Micro benches live in `benches/`.

pub mod audit_share;
pub mod bare_proxy;
pub mod error;
pub mod haproxy;
pub mod inline_log;
pub mod loadgen;
pub mod nginx;
pub mod openbao;
pub mod process;
pub mod profile;
pub mod records;
pub mod report;
pub mod trace_spans;
pub mod upstream;
pub mod vault_reads;
pub mod warden;

pub use error::HarnessError;
