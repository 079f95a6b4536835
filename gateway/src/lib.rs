//! Warden: a security gateway for AI agent fleets.
//!
//! The request path lives in [`proxy`]; each stage it calls is a module here:
//! route → identify ([`identity`]) → interpret ([`protocol`]) → inspect ([`inspect`]) →
//! decide ([`policy`]) → credential ([`secrets`]) → forward ([`upstream`]) → observe
//! ([`protocol`]) → record ([`audit`]).

pub mod action;
pub mod audit;
pub mod config;
pub mod decision;
pub mod identity;
pub mod policy;
pub mod protocol;
pub mod route;
pub mod secrets;
pub mod telemetry;
