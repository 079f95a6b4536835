//! Fleet controls: what keeps a fleet of agents within bounds as a whole rather than request
//! by request. `limits/`: request rates and concurrent requests per agent, group, route,
//! model and tool.

pub mod limits;
