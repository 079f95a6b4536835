//! Warden: a security gateway for AI agent fleets.
//!
//! The request path lives in [`proxy`]; each stage it calls is a module here:
//! route ([`route`]) → identify ([`identity`]) → interpret ([`protocol`]) → inspect
//! ([`inspect`]) → decide ([`policy`]) → hold ([`approval`]) → credential ([`secrets`]) →
//! forward ([`upstream`]) → observe ([`observe`], [`protocol`]) → record ([`audit`]).
//! Beside it: [`state`], the durable state store, and [`pins`], tool-definition pinning.

pub mod action;
pub mod admin;
pub mod approval;
pub mod audit;
pub mod bounded_body;
pub mod build_info;
pub mod canary;
pub mod config;
pub mod console;
pub mod decision;
pub mod egress;
pub mod fleet;
pub mod harden;
pub mod identity;
pub mod inspect;
pub mod json_len;
pub mod keys;
pub mod listener;
pub mod mcp;
pub mod observe;
pub mod openapi;
pub mod pins;
pub mod policy;
pub mod private_files;
pub mod propose;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod scrubbed;
pub mod secrets;
pub mod server;
pub mod shared;
pub mod siem;
pub mod snapshot;
pub mod state;
pub mod telemetry;
#[cfg(test)]
mod test_alloc;
pub mod text;
pub mod upstream;
pub mod vault;
