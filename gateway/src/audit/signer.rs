//! The audit log's Ed25519 key: it signs checkpoints (on the writer thread) and decision
//! receipts (on the request path). Its public half is published as a JWK Set on the admin
//! listener (`/.well-known/warden-audit-keys.json`) for `warden audit verify --jwks` and
//! `warden receipt verify`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};

use super::config::SigningConfig;
use crate::keys::{self, KeyError, RetiredKey};

/// What [`Signer::load`] names the key in logs.
const WHAT: &str = "audit signing key";

/// Signs with the audit key.
pub struct Signer {
    key: SigningKey,
    kid: Arc<str>,
    public: [u8; 32],
    /// Retired keys (`audit.signing.previous_keys`): published before their `until`, never
    /// signed with.
    previous: Vec<RetiredKey>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with `key`; its key id is the key's RFC 7638 thumbprint.
    pub fn new(key: SigningKey) -> Signer {
        let public = key.verifying_key().to_bytes();
        Signer {
            kid: Arc::from(keys::thumbprint(&public)),
            key,
            public,
            previous: Vec::new(),
        }
    }

    /// The retired keys of `audit.signing.previous_keys`, each with its `until`.
    pub fn previous(&self) -> &[RetiredKey] {
        &self.previous
    }

    /// The key of `audit.signing`: `pem` (read from `audit.signing.key`'s source, with its
    /// origin) when given, else the file `audit.signing.key_file`
    /// (`<data_dir>/keys/audit-signing.pem` by default), created when missing.
    pub fn load(
        cfg: &SigningConfig,
        data_dir: &Path,
        pem: Option<(&str, &str)>,
    ) -> Result<Signer, KeyError> {
        let key = match pem {
            Some((pem, origin)) => keys::from_pem(pem, origin)?,
            None => keys::load_or_create(&key_path(cfg, data_dir), WHAT)?,
        };
        let mut signer = Signer::new(key);
        signer.previous = keys::retired(
            &cfg.previous_keys,
            &signer.kid,
            "audit.signing.previous_keys",
        )?;
        Ok(signer)
    }

    /// Checks the key file start-up would use, without creating it (`warden check`).
    pub fn check(cfg: &SigningConfig, data_dir: &Path) -> Result<(), KeyError> {
        if cfg.key.is_some() {
            return Ok(());
        }
        keys::check_file(&key_path(cfg, data_dir), WHAT)
    }

    /// The key id (`kid`) checkpoints and receipts name.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// A 32-byte key for `purpose` (HMAC-SHA256 of it under the private key): files Warden
    /// writes for itself (SIEM cursors) are authenticated with it, so that only a holder of
    /// the audit key can forge them.
    pub fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.key.to_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// The public keys as a JWK Set: the signing key's, then the retired ones' before their
    /// `until`.
    pub fn jwks(&self) -> Value {
        let now = std::time::SystemTime::now();
        let in_force = self.previous.iter().filter(|k| k.in_force(now));
        let keys: Vec<Value> = std::iter::once((&*self.kid, &self.public))
            .chain(in_force.map(|k| (&*k.kid, &k.public)))
            .map(|(kid, public)| keys::public_jwk(public, kid))
            .collect();
        json!({ "keys": keys })
    }
}

/// Where the key file is: `audit.signing.key_file`, or `<data_dir>/keys/audit-signing.pem`.
pub fn key_path(cfg: &SigningConfig, data_dir: &Path) -> PathBuf {
    cfg.key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("keys").join("audit-signing.pem"))
}
