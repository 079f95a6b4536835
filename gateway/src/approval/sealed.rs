//! Second-factor secrets sealed for the state store: AES-256-GCM with a random 96-bit nonce,
//! the associated data binding each blob to its user and purpose (a blob copied to another
//! user's row does not open), and the id of the key that sealed it in the blob, so keys can
//! be rotated: the first key seals, every configured key opens.
//!
//! Blob layout (all of it authenticated):
//! `"WF1"` · key id length (1 byte) · key id · nonce (12 bytes) · ciphertext and tag.

use std::fmt;
use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::config::ApprovalsConfig;
use crate::secrets::CredentialSource;
use crate::vault::SecretStore;
use crate::vault::config::shown_path;

/// The file name of the generated key under `<data_dir>/keys/`.
pub const KEY_FILE_NAME: &str = "approvals-factor.key";
/// The first bytes of every blob: format version 1.
const MAGIC: &[u8; 3] = b"WF1";
const NONCE_BYTES: usize = 12;
const KEY_BYTES: usize = 32;

/// Why a key could not be had or a blob not sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No key was given.
    #[error("no factor key: approvals.factor_key or the key file under data_dir gives one")]
    NoKey,
    /// An operator command found no key file where the gateway keeps it.
    #[error(
        "no approvals factor key at {0}: the gateway makes it at its first start; run the command with the gateway's --config (its data_dir), or set approvals.factor_key as the gateway does"
    )]
    NoKeyFile(PathBuf),
    /// Two configured keys are the same key.
    #[error("the factor key {0} is configured twice")]
    DuplicateKey(String),
    /// A key is not 32 bytes in base64 or hex.
    #[error(
        "{origin} is not a factor key: {reason}; give 32 random bytes as base64 (`openssl rand -base64 32`) or 64 hex digits"
    )]
    KeyFormat { origin: String, reason: String },
    /// Reading, creating or writing the key file failed.
    #[error("{action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The blob is not one this module sealed.
    #[error("the sealed factor secret is malformed ({0})")]
    Malformed(&'static str),
    /// The blob was sealed with a key that is no longer configured.
    #[error(
        "the factor secret was sealed with key {0}, which is not configured; add it back to approvals.previous_factor_keys to open it"
    )]
    UnknownKey(String),
    /// Authentication failed: another user's or purpose's blob, or a blob altered.
    #[error(
        "the sealed factor secret does not open for this user and purpose (moved, altered, or sealed with another key of the same id)"
    )]
    Open,
    /// Encryption failed.
    #[error("cannot seal the factor secret")]
    Seal,
    /// A key's secret source cannot be read.
    #[error("approvals.{key}: {reason}")]
    Source { key: String, reason: String },
    /// The task reading the key file failed.
    #[error("cannot read the approvals factor key file: {0}")]
    Task(String),
}

/// What a sealed secret is for; part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A TOTP enrolment's shared secret.
    TotpSecret,
    /// The approval console's sign-in in flight (PKCE verifier, nonce, state), held by the
    /// browser in a cookie between the redirect to the SSO provider and its return.
    LoginState,
    /// The approval console's proof that an approver confirmed it is them with a factor
    /// before changing factors, held by the browser in a cookie bound to the session.
    FactorsVerified,
    /// The approval console's access token at the SSO provider, kept in the state store with
    /// the session, sealed for the session's id, so that a vote can ask the provider again.
    IdpToken,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::TotpSecret => "totp-secret",
            Purpose::LoginState => "console-login",
            Purpose::FactorsVerified => "console-verified",
            Purpose::IdpToken => "console-idp-token",
        }
    }
}

/// One AES-256 key with its id (a digest of the key, so no one needs to name keys).
pub struct FactorKey {
    id: String,
    cipher: Aes256Gcm,
    /// The key's bytes, from which keys for other purposes are derived.
    bytes: Zeroizing<[u8; KEY_BYTES]>,
}

impl fmt::Debug for FactorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactorKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl FactorKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> FactorKey {
        let digest = Sha256::new()
            .chain_update(b"warden approvals factor key id\0")
            .chain_update(bytes)
            .finalize();
        FactorKey {
            id: hex::encode(&digest[..8]),
            cipher: Aes256Gcm::new(bytes.into()),
            bytes: Zeroizing::new(*bytes),
        }
    }

    /// A key from text: 32 bytes in base64 (standard or URL-safe, padding optional) or 64
    /// hex digits; `origin` names where it came from in errors (never the text).
    pub fn parse(text: &str, origin: &str) -> Result<FactorKey, SealError> {
        let text = text.trim();
        let err = |reason: String| SealError::KeyFormat {
            origin: origin.to_owned(),
            reason,
        };
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(
            if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
                hex::decode(text).map_err(|e| err(e.to_string()))?
            } else {
                let unpadded = text.trim_end_matches('=');
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(unpadded)
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(unpadded))
                    .map_err(|_| err("neither base64 nor hex".into()))?
            },
        );
        let key: &[u8; KEY_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| err(format!("it holds {} bytes, not {KEY_BYTES}", bytes.len())))?;
        Ok(FactorKey::from_bytes(key))
    }

    /// The key's id, as blobs name it.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Seals with the first of its keys, opens with any of them.
#[derive(Debug)]
pub struct Sealer {
    keys: Vec<FactorKey>,
}

impl Sealer {
    /// A sealer over `keys`: the first seals; all open (the older ones for rotation).
    pub fn new(keys: Vec<FactorKey>) -> Result<Sealer, SealError> {
        if keys.is_empty() {
            return Err(SealError::NoKey);
        }
        for (i, key) in keys.iter().enumerate() {
            if keys[..i].iter().any(|k| k.id == key.id) {
                return Err(SealError::DuplicateKey(key.id.clone()));
            }
        }
        Ok(Sealer { keys })
    }

    /// The id of the key that seals.
    pub fn sealing_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// A key for `purpose`: HMAC-SHA256 of `purpose` under the sealing key. Every replica
    /// configured with the same factor key derives the same one; the state store holds none.
    /// (The pin URI key is one: `pins::uri::KEY_PURPOSE`.)
    pub fn derive_key(&self, purpose: &str) -> Zeroizing<[u8; KEY_BYTES]> {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.keys[0].bytes.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// `secret` sealed for `user` and `purpose`.
    pub fn seal(&self, purpose: Purpose, user: &str, secret: &[u8]) -> Result<Vec<u8>, SealError> {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut blob = header(&key.id);
        blob.extend_from_slice(&nonce);
        let aad = associated_data(&blob, purpose, user);
        let sealed = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    /// The secret in `blob`, if it was sealed for `user` and `purpose` by one of the keys.
    pub fn open(
        &self,
        purpose: Purpose,
        user: &str,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let rest = blob
            .strip_prefix(MAGIC.as_slice())
            .ok_or(SealError::Malformed("not a sealed factor secret"))?;
        let (&id_len, rest) = rest
            .split_first()
            .ok_or(SealError::Malformed("truncated"))?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_BYTES + 16 {
            return Err(SealError::Malformed("truncated"));
        }
        let id = std::str::from_utf8(&rest[..id_len])
            .map_err(|_| SealError::Malformed("the key id is not text"))?;
        let nonce: [u8; NONCE_BYTES] = rest[id_len..id_len + NONCE_BYTES]
            .try_into()
            .map_err(|_| SealError::Malformed("truncated"))?;
        let sealed = &rest[id_len + NONCE_BYTES..];
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let head = &blob[..MAGIC.len() + 1 + id_len + NONCE_BYTES];
        let aad = associated_data(head, purpose, user);
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }

    /// Whether `blob` was sealed by another key than the sealing one (re-seal it on next
    /// use to finish a rotation).
    pub fn needs_reseal(&self, blob: &[u8]) -> bool {
        let id = blob
            .strip_prefix(MAGIC.as_slice())
            .and_then(|r| r.split_first())
            .and_then(|(&n, r)| r.get(..usize::from(n)));
        id != Some(self.keys[0].id.as_bytes())
    }
}

/// The purpose the binding key is derived for.
const BINDING_PURPOSE: &str = "warden approval binding v1";

/// The key an approval binds a request's credentials with (`proxy/bound_headers.rs`):
/// HMAC-SHA256, so that the digest the state store keeps of a low-entropy password cannot be
/// tried against guesses by whoever holds a copy of the store. Derived from the sealing
/// factor key, which every replica on a shared store holds and the store does not.
#[derive(Clone)]
pub struct BindingKey(Zeroizing<[u8; KEY_BYTES]>);

impl fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingKey(..)")
    }
}

impl BindingKey {
    /// The binding key of `sealer`'s sealing key.
    pub fn of(sealer: &Sealer) -> BindingKey {
        BindingKey(sealer.derive_key(BINDING_PURPOSE))
    }

    /// `hmac-sha256:<hex>` of `bytes` under this key.
    pub fn digest(&self, bytes: &[u8]) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_slice())
            .expect("HMAC takes a key of any length");
        mac.update(bytes);
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

fn header(id: &str) -> Vec<u8> {
    let mut blob = Vec::with_capacity(MAGIC.len() + 1 + id.len() + NONCE_BYTES + 64);
    blob.extend_from_slice(MAGIC);
    // Key ids are 16 hex digits.
    blob.push(id.len() as u8);
    blob.extend_from_slice(id.as_bytes());
    blob
}

/// The blob's header and nonce, then purpose and user, each length-prefixed so no two
/// different pairs give the same bytes.
fn associated_data(head: &[u8], purpose: Purpose, user: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(head.len() + 16 + user.len());
    aad.extend_from_slice(head);
    for part in [purpose.label().as_bytes(), user.as_bytes()] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad
}

/// The sealer `approvals:` configures: `factor_key` then `previous_factor_keys` from their
/// sources, or the key file under `data_dir` (created when missing) without a `factor_key`.
pub async fn sealer(
    config: &ApprovalsConfig,
    data_dir: &Path,
    vault: Option<&Arc<SecretStore>>,
) -> Result<Sealer, SealError> {
    open_sealer(config, data_dir, vault, true).await
}

/// The sealer of the keys a gateway already holds, for an operator command: as [`sealer`],
/// but without `approvals.factor_key` the key file under `data_dir` must exist (a command
/// never makes a key the gateway does not use).
pub async fn existing_sealer(
    config: &ApprovalsConfig,
    data_dir: &Path,
    vault: Option<&Arc<SecretStore>>,
) -> Result<Sealer, SealError> {
    open_sealer(config, data_dir, vault, false).await
}

async fn open_sealer(
    config: &ApprovalsConfig,
    data_dir: &Path,
    vault: Option<&Arc<SecretStore>>,
    create: bool,
) -> Result<Sealer, SealError> {
    let Some(first) = &config.factor_key else {
        let path = default_key_file(data_dir);
        let key = tokio::task::spawn_blocking(move || match create {
            true => load_or_create_key_file(&path),
            false => read_key_file(&path)?.ok_or(SealError::NoKeyFile(path)),
        })
        .await
        .map_err(|e| SealError::Task(e.to_string()))??;
        return Sealer::new(vec![key]);
    };
    let sources = std::iter::once(("factor_key".to_owned(), first)).chain(
        config
            .previous_factor_keys
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("previous_factor_keys[{i}]"), s)),
    );
    let mut keys = Vec::new();
    for (key, source) in sources {
        let origin = format!("approvals.{key} ({})", source.kind());
        let text = match source {
            CredentialSource::File(path) => {
                let bytes = tokio::fs::read(path).await.map_err(|e| SealError::Source {
                    key: key.clone(),
                    reason: format!("cannot read {}: {e}", shown_path(path, Some(&e))),
                })?;
                key_text(bytes, &origin)?
            }
            _ => crate::secrets::own::read(source, vault, &format!("approvals.{key}"))
                .await
                .map_err(|e| SealError::Source {
                    key: key.clone(),
                    reason: e.to_string(),
                })?,
        };
        keys.push(FactorKey::parse(&text, &origin)?);
    }
    Sealer::new(keys)
}

/// The text of key file `path`; a file of raw bytes (`head -c 32 /dev/urandom`) is refused
/// saying so, since a key is written as text (base64 or hex).
fn key_text(bytes: Vec<u8>, origin: &str) -> Result<Zeroizing<String>, SealError> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            let mut bytes = e.into_bytes();
            let len = bytes.len();
            bytes.zeroize();
            Err(SealError::KeyFormat {
                origin: origin.to_owned(),
                reason: format!("it holds {len} bytes of binary data, not text"),
            })
        }
    }
}

/// Checks the key file Warden would use without `approvals.factor_key`, if it exists (a
/// missing one is created at start); reads, never creates.
pub fn check_key_file(config: &ApprovalsConfig, data_dir: &Path) -> Result<(), SealError> {
    if config.factor_key.is_some() {
        return check_configured_files(config);
    }
    let path = default_key_file(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => FactorKey::parse(&Zeroizing::new(text), &path.display().to_string()).map(drop),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SealError::File {
            action: "cannot read",
            path,
            source,
        }),
    }
}

/// Checks the keys of `factor_key` and `previous_factor_keys` that are files (the others are
/// read at start).
fn check_configured_files(config: &ApprovalsConfig) -> Result<(), SealError> {
    let sources = config
        .factor_key
        .iter()
        .map(|s| ("factor_key".to_owned(), s))
        .chain(
            config
                .previous_factor_keys
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("previous_factor_keys[{i}]"), s)),
        );
    for (key, source) in sources {
        let CredentialSource::File(path) = source else {
            continue;
        };
        let bytes = std::fs::read(path).map_err(|e| SealError::Source {
            key: key.clone(),
            reason: format!("cannot read {}: {e}", shown_path(path, Some(&e))),
        })?;
        let origin = format!("{} (approvals.{key})", shown_path(path, None));
        FactorKey::parse(&key_text(bytes, &origin)?, &origin)?;
    }
    Ok(())
}

/// The default key file: `<data_dir>/keys/approvals-factor.key`.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("keys").join(KEY_FILE_NAME)
}

/// The key in `path`, or a new random one written there (directory 0700, file 0600) when
/// the file does not exist. Blocking file I/O: call it at start or in `spawn_blocking`.
pub fn load_or_create_key_file(path: &Path) -> Result<FactorKey, SealError> {
    if let Some(key) = read_key_file(path)? {
        return Ok(key);
    }
    let file_err = |action, source| SealError::File {
        action,
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        crate::private_files::create_dir_all(dir)
            .map_err(|e| file_err("cannot create the directory of", e))?;
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(|e| file_err("cannot restrict the directory of", e))?;
    }
    let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut_slice());
    let text = Zeroizing::new(format!("{}\n", STANDARD.encode(bytes.as_slice())));
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process created it first: use theirs.
            let text = Zeroizing::new(
                std::fs::read_to_string(path).map_err(|e| file_err("cannot read", e))?,
            );
            return load_key_file(path, &text);
        }
        Err(e) => return Err(file_err("cannot create", e)),
    };
    file.set_permissions(Permissions::from_mode(0o600))
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(|e| file_err("cannot write", e))?;
    tracing::info!(path = %path.display(), "created the approvals factor key");
    Ok(FactorKey::from_bytes(&bytes))
}

/// The key in `path`, or `None` when the file does not exist. Blocking file I/O.
fn read_key_file(path: &Path) -> Result<Option<FactorKey>, SealError> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_key_file(path, &Zeroizing::new(text)).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SealError::File {
            action: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

fn load_key_file(path: &Path, text: &str) -> Result<FactorKey, SealError> {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "the approvals factor key is readable by other users; run chmod 600 on it"
        );
    }
    FactorKey::parse(text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> FactorKey {
        FactorKey::from_bytes(&[byte; 32])
    }

    #[test]
    fn the_binding_key_is_the_sealing_keys_own_and_keys_its_digests() {
        let binding = |keys: Vec<FactorKey>| BindingKey::of(&Sealer::new(keys).unwrap());
        let one = binding(vec![key(1)]);
        let digest = one.digest(b"authorization:Basic dTpw\n");
        assert!(digest.starts_with("hmac-sha256:"), "{digest}");
        assert_eq!(digest.len(), "hmac-sha256:".len() + 64);
        // Replicas with the same sealing key agree; an older key beside it changes nothing.
        assert_eq!(
            binding(vec![key(1), key(2)]).digest(b"authorization:Basic dTpw\n"),
            digest
        );
        // Another key, or the plain SHA-256 a copy of the store could recompute, differs.
        assert_ne!(
            binding(vec![key(2)]).digest(b"authorization:Basic dTpw\n"),
            digest
        );
        let unkeyed = hex::encode(Sha256::digest(b"authorization:Basic dTpw\n"));
        assert!(!digest.ends_with(&unkeyed));
        assert_eq!(format!("{one:?}"), "BindingKey(..)");
    }

    #[test]
    fn a_sealed_secret_opens_for_its_user_and_purpose_only() {
        let sealer = Sealer::new(vec![key(1)]).unwrap();
        let secret = b"12345678901234567890";
        let blob = sealer.seal(Purpose::TotpSecret, "alice", secret).unwrap();
        assert!(!blob.windows(secret.len()).any(|w| w == secret));
        assert_eq!(
            sealer
                .open(Purpose::TotpSecret, "alice", &blob)
                .unwrap()
                .as_slice(),
            secret
        );
        // Moved to another user's row: refused.
        assert!(matches!(
            sealer.open(Purpose::TotpSecret, "bob", &blob),
            Err(SealError::Open)
        ));
        assert!(matches!(
            sealer.open(Purpose::TotpSecret, "alic", &blob),
            Err(SealError::Open)
        ));
        // Two seals of one secret differ (random nonce).
        let again = sealer.seal(Purpose::TotpSecret, "alice", secret).unwrap();
        assert_ne!(blob, again);
    }

    #[test]
    fn an_altered_or_truncated_blob_is_refused() {
        let sealer = Sealer::new(vec![key(1)]).unwrap();
        let blob = sealer
            .seal(Purpose::TotpSecret, "alice", b"secret")
            .unwrap();
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(
                sealer.open(Purpose::TotpSecret, "alice", &bad).is_err(),
                "byte {i}"
            );
        }
        assert!(matches!(
            sealer.open(Purpose::TotpSecret, "alice", &blob[..blob.len() - 1]),
            Err(SealError::Open)
        ));
        assert!(matches!(
            sealer.open(Purpose::TotpSecret, "alice", &blob[..20]),
            Err(SealError::Malformed(_))
        ));
        assert!(matches!(
            sealer.open(Purpose::TotpSecret, "alice", b"plain"),
            Err(SealError::Malformed(_))
        ));
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = Sealer::new(vec![key(1)]).unwrap();
        let sealed_before = old.seal(Purpose::TotpSecret, "alice", b"before").unwrap();
        let rotated = Sealer::new(vec![key(2), key(1)]).unwrap();
        assert_eq!(
            rotated
                .open(Purpose::TotpSecret, "alice", &sealed_before)
                .unwrap()
                .as_slice(),
            b"before"
        );
        assert!(rotated.needs_reseal(&sealed_before));
        let sealed_after = rotated
            .seal(Purpose::TotpSecret, "alice", b"after")
            .unwrap();
        assert!(!rotated.needs_reseal(&sealed_after));
        assert_eq!(rotated.sealing_key_id(), key(2).id());
        // The old key alone cannot open what the new one sealed, and says which key it needs.
        match old.open(Purpose::TotpSecret, "alice", &sealed_after) {
            Err(SealError::UnknownKey(id)) => assert_eq!(id, key(2).id()),
            other => panic!("{other:?}"),
        }
        // A different key under the same id does not open it.
        let mut forged = Sealer::new(vec![key(3)]).unwrap();
        forged.keys[0].id = key(2).id().to_owned();
        assert!(matches!(
            forged.open(Purpose::TotpSecret, "alice", &sealed_after),
            Err(SealError::Open)
        ));
        assert!(matches!(Sealer::new(vec![]), Err(SealError::NoKey)));
        assert!(matches!(
            Sealer::new(vec![key(1), key(1)]),
            Err(SealError::DuplicateKey(_))
        ));
    }

    #[test]
    fn keys_parse_from_base64_or_hex_and_errors_never_show_them() {
        let b64 = STANDARD.encode([7u8; 32]);
        let hex = hex::encode([7u8; 32]);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert_eq!(FactorKey::parse(&b64, "x").unwrap().id(), key(7).id());
        assert_eq!(
            FactorKey::parse(&format!(" {hex}\n"), "x").unwrap().id(),
            key(7).id()
        );
        assert_eq!(FactorKey::parse(&url, "x").unwrap().id(), key(0xfb).id());
        let short = STANDARD.encode([7u8; 16]);
        let err = FactorKey::parse(&short, "env WARDEN_FACTOR_KEY")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("env WARDEN_FACTOR_KEY is not a factor key: it holds 16 bytes"),
            "{err}"
        );
        assert!(!err.contains(&short));
        let err = FactorKey::parse("correct horse battery staple", "f")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("neither base64 nor hex") && !err.contains("horse"),
            "{err}"
        );
        assert!(!format!("{:?}", key(7)).contains("cipher"));
    }

    #[tokio::test]
    async fn the_configured_keys_come_from_their_sources_or_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        // No factor_key: the key file under data_dir, created once and kept.
        let by_default = sealer(&ApprovalsConfig::default(), dir.path(), None)
            .await
            .unwrap();
        assert!(dir.path().join("keys/approvals-factor.key").exists());
        let blob = by_default.seal(Purpose::TotpSecret, "alice", b"s").unwrap();
        let again = sealer(&ApprovalsConfig::default(), dir.path(), None)
            .await
            .unwrap();
        assert_eq!(
            again
                .open(Purpose::TotpSecret, "alice", &blob)
                .unwrap()
                .as_slice(),
            b"s"
        );
        // factor_key from a file source, the old file key as a previous key: rotation.
        let new_key = dir.path().join("new.key");
        std::fs::write(&new_key, STANDARD.encode([9u8; 32])).unwrap();
        let old_key = dir.path().join("keys/approvals-factor.key");
        let config = ApprovalsConfig {
            factor_key: Some(crate::secrets::CredentialSource::File(new_key.clone())),
            previous_factor_keys: vec![crate::secrets::CredentialSource::File(old_key)],
            ..ApprovalsConfig::default()
        };
        let rotated = sealer(&config, dir.path(), None).await.unwrap();
        assert_eq!(rotated.sealing_key_id(), key(9).id());
        assert_eq!(
            rotated
                .open(Purpose::TotpSecret, "alice", &blob)
                .unwrap()
                .as_slice(),
            b"s"
        );
        // A source that cannot be read names its key.
        let missing = ApprovalsConfig {
            factor_key: Some(crate::secrets::CredentialSource::Env(
                "WARDEN_TEST_NO_SUCH_FACTOR_KEY".into(),
            )),
            ..ApprovalsConfig::default()
        };
        let err = sealer(&missing, dir.path(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("approvals.factor_key: "), "{err}");
        std::fs::write(&new_key, "short").unwrap();
        let err = sealer(&config, dir.path(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("approvals.factor_key (file) is not a factor key"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_key_file_of_raw_bytes_is_refused_naming_the_key_and_the_format_wanted() {
        let dir = tempfile::tempdir().unwrap();
        // `head -c 32 /dev/urandom > key`: binary, not the base64 or hex text of a key.
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, [0xffu8; 32]).unwrap();
        let config = ApprovalsConfig {
            factor_key: Some(CredentialSource::File(raw.clone())),
            ..ApprovalsConfig::default()
        };
        let err = sealer(&config, dir.path(), None).await.unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(
                "approvals.factor_key (file) is not a factor key: it holds 32 bytes of binary data, not text; give 32 random bytes as base64 (`openssl rand -base64 32`) or 64 hex digits"
            ),
            "{shown}"
        );
        // At start it is the factor key that cannot be loaded, not the notifications.
        let serve = crate::server::ServeError::from(err).to_string();
        assert!(
            serve.starts_with("cannot load the approvals factor key: approvals.factor_key"),
            "{serve}"
        );
        assert!(!serve.contains("notification"), "{serve}");
        // `warden check` reads a configured key file too, and says the same.
        let checked = check_key_file(&config, dir.path()).unwrap_err().to_string();
        assert!(
            checked.starts_with(&format!(
                "{} (approvals.factor_key) is not a factor key: it holds 32 bytes of binary data",
                raw.display()
            )),
            "{checked}"
        );
        let previous = dir.path().join("previous.key");
        std::fs::write(&previous, "short").unwrap();
        std::fs::write(&raw, STANDARD.encode([3u8; 32])).unwrap();
        let rotated = ApprovalsConfig {
            previous_factor_keys: vec![CredentialSource::File(previous.clone())],
            ..config
        };
        let checked = check_key_file(&rotated, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            checked.starts_with(&format!(
                "{} (approvals.previous_factor_keys[0]) is not a factor key",
                previous.display()
            )),
            "{checked}"
        );
        std::fs::write(&previous, STANDARD.encode([4u8; 32])).unwrap();
        check_key_file(&rotated, dir.path()).unwrap();
    }

    #[tokio::test]
    async fn a_key_files_path_that_may_be_the_key_itself_and_its_content_are_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        // The key written where its file's path goes: a relative path not starting with `.`.
        let written_in_place = "c2VjcmV0LWZhY3Rvci1rZXktd3JpdHRlbi1pbi1wbGFjZQ";
        // A file that is not a key, by a relative path (tests run in the package's
        // directory); its content is not shown either.
        let not_a_key = "Cargo.toml";
        // A standard base64 key may start with `/` (1 in 64): a missing file at `/`, or in a
        // directory that does not exist, is not shown either, nor told to start with `/`.
        let at_the_root = "/q3Zf9kXW0b1T0sH7nJcYkq2r8mPz4vLx6aB5eD1uC0s";
        let slash_further_in = "/q3Zf9kXW0b1T0sH7n/Jcq2r8mPz4vLx6aB5eD1uC0s";
        for (path, hidden, hint) in [
            (written_in_place, written_in_place, "./PATH"),
            (not_a_key, "[package]", "./PATH"),
            (at_the_root, "q3Zf9kXW", "it may be the secret itself"),
            (slash_further_in, "q3Zf9kXW", "it may be the secret itself"),
        ] {
            for config in [
                ApprovalsConfig {
                    factor_key: Some(CredentialSource::File(path.into())),
                    ..ApprovalsConfig::default()
                },
                ApprovalsConfig {
                    factor_key: Some(CredentialSource::File(dir.path().join("k"))),
                    previous_factor_keys: vec![CredentialSource::File(path.into())],
                    ..ApprovalsConfig::default()
                },
            ] {
                std::fs::write(dir.path().join("k"), STANDARD.encode([5u8; 32])).unwrap();
                let at_start = sealer(&config, dir.path(), None)
                    .await
                    .unwrap_err()
                    .to_string();
                let checked = check_key_file(&config, dir.path()).unwrap_err().to_string();
                for shown in [&at_start, &checked] {
                    assert!(!shown.contains(path), "{shown}");
                    assert!(!shown.contains(hidden), "{shown}");
                }
                // `warden check` says the path is not shown and why (or how to write it);
                // the start names the key's configuration key alone where it has the file's
                // content.
                assert!(
                    checked.contains("not shown") && checked.contains(hint),
                    "{checked}"
                );
                assert!(checked.contains("approvals."), "{checked}");
                assert!(
                    at_start.contains("not shown")
                        || at_start.contains("approvals.previous_factor_keys[0] (file) is not")
                        || at_start.contains("approvals.factor_key (file) is not"),
                    "{at_start}"
                );
            }
        }
        // A path starting with `/` or `.` is shown, so the operator knows which file.
        let missing = dir.path().join("missing.key");
        let config = ApprovalsConfig {
            factor_key: Some(CredentialSource::File(missing.clone())),
            ..ApprovalsConfig::default()
        };
        let shown = sealer(&config, dir.path(), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(shown.contains(&missing.display().to_string()), "{shown}");
        let relative = ApprovalsConfig {
            factor_key: Some(CredentialSource::File("./missing.key".into())),
            ..ApprovalsConfig::default()
        };
        let shown = check_key_file(&relative, dir.path())
            .unwrap_err()
            .to_string();
        assert!(shown.contains("cannot read ./missing.key"), "{shown}");
    }

    #[test]
    fn the_key_file_is_created_0600_in_a_0700_directory_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = default_key_file(&dir.path().join("data"));
        assert!(path.ends_with("data/keys/approvals-factor.key"));
        let created = load_or_create_key_file(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), 32);
        let again = load_or_create_key_file(&path).unwrap();
        assert_eq!(again.id(), created.id());
        // What one sealed, the key read back opens.
        let blob = Sealer::new(vec![created])
            .unwrap()
            .seal(Purpose::TotpSecret, "alice", b"s")
            .unwrap();
        assert_eq!(
            Sealer::new(vec![again])
                .unwrap()
                .open(Purpose::TotpSecret, "alice", &blob)
                .unwrap()
                .as_slice(),
            b"s"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create_key_file(&path),
            Err(SealError::KeyFormat { .. })
        ));
    }
}
