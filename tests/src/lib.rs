//! Test support for the warden end-to-end suite.
