//! Fleet controls: what keeps a fleet of agents within bounds as a whole rather than request
//! by request. `limits/`: request rates and concurrent requests per agent, group, route,
//! model and tool; `session/`: what an agent did earlier in its session, for policy.

pub mod limits;
pub mod session;
