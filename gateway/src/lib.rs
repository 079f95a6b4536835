//! Warden: a security gateway for AI agent fleets.
//!
//! The request path lives in [`proxy`]; each stage it calls is a module here:
//! route ([`route`]) → identify ([`identity`]) → interpret ([`protocol`]) → inspect
//! ([`inspect`]) → decide ([`policy`]) → hold ([`approval`]) → credential ([`secrets`]) →
//! forward ([`upstream`]) → observe ([`observe`], [`protocol`]) → record ([`audit`]).

pub mod action;
pub mod admin;
pub mod approval;
pub mod audit;
pub mod config;
pub mod decision;
pub mod identity;
pub mod inspect;
pub mod listener;
pub mod observe;
pub mod openapi;
pub mod policy;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod secrets;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod telemetry;
pub mod text;
pub mod upstream;
