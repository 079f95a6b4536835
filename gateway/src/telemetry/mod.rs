//! Observe the gateway itself: metrics and logs.

pub mod logging;
pub mod metrics;
