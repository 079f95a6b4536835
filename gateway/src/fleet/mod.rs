//! Fleet controls: what an operator (or a trigger) does to agents as a fleet. `quarantine/`
//! stops an agent or a group at once on every replica.

pub mod config;
pub mod quarantine;

pub use config::FleetConfig;
