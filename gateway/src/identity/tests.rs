//! End-to-end tests of the identify stage.
