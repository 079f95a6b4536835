//! What the Vault tests share: an OpenBao dev server of each test's own and the PostgreSQL
//! cluster that `tests/run` starts for the whole run.

// Each test file uses a part of this module.
#![allow(dead_code)]

pub mod openbao;
pub mod postgres;
