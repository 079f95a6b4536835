//! Identify: who is calling.

pub mod config;
