//! What the Vault tests share: an OpenBao dev server of each test's own, the PostgreSQL
//! cluster and the OpenID Provider that `tests/run` starts for the whole run.

// Each test file uses a part of this module.
#![allow(dead_code)]

pub mod idp;
pub mod openbao;
pub mod postgres;
