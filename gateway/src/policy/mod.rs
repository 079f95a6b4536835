//! Decide: Cedar policies judge every action.

pub mod config;
