//! What the Vault tests share: an OpenBao dev server of each test's own.

pub mod openbao;
