//! Observe the gateway itself: metrics and logs.

pub mod config;
pub mod logging;
pub mod metrics;
