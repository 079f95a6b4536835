//! Record: the tamper-evident audit log.

pub mod config;
pub mod event;
