//! Fleet controls: what keeps a fleet of agents within bounds as a whole rather than request
//! by request. `quarantine/`: an agent or a group stopped at once on every replica (by an
//! operator or a trigger); `limits/`: request rates and concurrent requests per agent, group,
//! route, model and tool; `session/`: what an agent did earlier in its session, for policy;
//! `budget/`: tokens and dollars spent per agent, group and fleet, against their budgets;
//! `cut.rs`: what ends an agent's in-flight work when it is quarantined or its token revoked.

pub mod budget;
pub mod config;
pub mod cut;
pub mod limits;
pub mod quarantine;
pub mod session;
pub mod tick;

pub use config::FleetConfig;
