//! Observe the gateway itself: metrics, logs and traces.

pub mod config;
pub mod logging;
pub mod metrics;
pub mod trace;
