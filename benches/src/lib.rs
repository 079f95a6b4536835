//! Load harness support.
