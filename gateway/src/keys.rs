//! Ed25519 signing keys Warden keeps (its agent-token key, its audit key): loaded from a
//! PKCS#8 PEM file or created with tight file modes, read from a PEM text, named by their
//! RFC 7638 thumbprint and published as JWKs; public keys read back from PEM or a JWK Set;
//! retired keys (`previous_keys`) with the time their signatures stop being accepted.

use std::fs::{OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or writing a key file failed.
    #[error("{action} {path}: {source}")]
    File {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not an Ed25519 key in PEM.
    #[error("{origin} is not an Ed25519 {what} in PEM ({reason})")]
    Format {
        /// The file or secret source it came from.
        origin: String,
        /// `private key (PKCS#8)`, `public or private key`.
        what: &'static str,
        reason: String,
    },
    /// A JWK Set holds no usable Ed25519 key.
    #[error("{origin}: {reason}")]
    Jwks { origin: String, reason: String },
    /// Encoding a new key failed.
    #[error("cannot encode the new signing key: {0}")]
    Encode(String),
    /// A `previous_keys` entry that cannot stand beside the others or the signing key.
    #[error("{key}: {problem}")]
    Retired {
        /// The configuration key, e.g. `audit.signing.previous_keys[1]`.
        key: String,
        problem: String,
    },
}

/// One entry of `previous_keys`: a retired key's PEM file (the public key, or the old key
/// file itself), written as its path, or as `{ path: PATH, until: <RFC 3339 time> }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousKey {
    /// The PEM file.
    pub path: PathBuf,
    /// From this time on nothing the key signed is accepted, and it is no longer published.
    pub until: Option<SystemTime>,
}

impl From<PathBuf> for PreviousKey {
    fn from(path: PathBuf) -> Self {
        PreviousKey { path, until: None }
    }
}

impl<'de> Deserialize<'de> for PreviousKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            path: PathBuf,
            until: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Path(PathBuf),
            Full(Full),
        }
        let full = match Written::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "a retired key is its PEM file's path, or { path: PATH, until: \
                 2027-01-31T00:00:00Z }",
            )
        })? {
            Written::Path(path) => return Ok(PreviousKey::from(path)),
            Written::Full(full) => full,
        };
        let until = full
            .until
            .map(|text| {
                humantime::parse_rfc3339(text.trim()).map_err(|_| {
                    serde::de::Error::custom(format!(
                        "until {text:?} is not an RFC 3339 time in UTC (2027-01-31T00:00:00Z)"
                    ))
                })
            })
            .transpose()?;
        Ok(PreviousKey {
            path: full.path,
            until,
        })
    }
}

/// A retired key as loaded: its id (thumbprint), public key, and when what it signed stops
/// being accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredKey {
    pub kid: Arc<str>,
    pub public: [u8; 32],
    pub until: Option<SystemTime>,
}

impl RetiredKey {
    /// Whether what it signed is still accepted at `now` (before its `until`, if any).
    pub fn in_force(&self, now: SystemTime) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    /// `until` in seconds since 1970.
    pub fn until_unix(&self) -> Option<u64> {
        self.until.map(|until| {
            until
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }
}

/// The retired keys of `entries`, the configuration key `key` (e.g.
/// `audit.signing.previous_keys`), beside the signing key whose id is `current`: refused,
/// naming the entry, when one is the signing key itself or the same key as another entry.
pub fn retired(
    entries: &[PreviousKey],
    current: &str,
    key: &str,
) -> Result<Vec<RetiredKey>, KeyError> {
    let mut out: Vec<RetiredKey> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let public = public_from_file(&entry.path)?.to_bytes();
        let kid = thumbprint(&public);
        let refused = |problem: String| KeyError::Retired {
            key: format!("{key}[{i}]"),
            problem,
        };
        if kid == current {
            return Err(refused(format!(
                "{} holds the signing key itself (key id {kid}), not a retired one: list only \
                 keys signed with before a rotation, or give the new key as the signing key",
                entry.path.display()
            )));
        }
        if let Some(j) = out.iter().position(|k| *k.kid == *kid) {
            return Err(refused(format!(
                "{} holds the same key (key id {kid}) as {key}[{j}]: list each retired key once",
                entry.path.display()
            )));
        }
        out.push(RetiredKey {
            kid: Arc::from(kid),
            public,
            until: entry.until,
        });
    }
    Ok(out)
}

/// The key in `path`, or a new one created there (directory mode 0700, file 0600) when the
/// file does not exist; `what` names it in logs (`agent signing key`).
pub fn load_or_create(path: &Path, what: &str) -> Result<SigningKey, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => load(path, &pem, what),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, what),
        Err(source) => Err(KeyError::File {
            action: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Checks the key `path` holds, if the file exists (a missing file is created at start).
pub fn check_file(path: &Path, what: &str) -> Result<(), KeyError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => load(path, &pem, what).map(drop),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(KeyError::File {
            action: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// The private key in `pem` (PKCS#8), which came from `origin`.
pub fn from_pem(pem: &str, origin: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| KeyError::Format {
        origin: origin.to_owned(),
        what: "private key (PKCS#8)",
        reason: e.to_string(),
    })
}

/// The public key in `pem`: a public key (SPKI, `BEGIN PUBLIC KEY`) or a private key
/// (PKCS#8), whose public half is taken.
pub fn public_from_pem(pem: &str, origin: &str) -> Result<VerifyingKey, KeyError> {
    let pem = pem.trim();
    let refused = |reason: String| KeyError::Format {
        origin: origin.to_owned(),
        what: "public or private key",
        reason,
    };
    if !pem.starts_with("-----BEGIN ") {
        // JSON, a raw key or anything else: the PEM decoder's own words ("PEM preamble
        // contains invalid data (NUL byte)") would not say what was wanted.
        return Err(refused(NOT_PEM.to_owned()));
    }
    VerifyingKey::from_public_key_pem(pem)
        .or_else(|_| SigningKey::from_pkcs8_pem(pem).map(|k| k.verifying_key()))
        .map_err(|e| refused(e.to_string()))
}

/// What a file that is not PEM at all is told.
const NOT_PEM: &str = "it does not start with a -----BEGIN line: expected a PEM file holding an \
                       Ed25519 public key (BEGIN PUBLIC KEY, which `warden keys public KEY_FILE` \
                       writes) or private key (BEGIN PRIVATE KEY)";

/// The public key in the PEM file `path` ([`public_from_pem`]): a retired key an operator
/// keeps so that what it signed still verifies.
pub fn public_from_file(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = std::fs::read_to_string(path).map_err(|source| KeyError::File {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })?;
    public_from_pem(&pem, &path.display().to_string())
}

/// The Ed25519 keys of a JWK Set (`{"keys":[{"kty":"OKP","crv":"Ed25519","x":..,"kid":..}]}`),
/// with their `kid` (the thumbprint when the JWK has none); other keys are skipped.
pub fn public_from_jwks(
    jwks: &Value,
    origin: &str,
) -> Result<Vec<(String, VerifyingKey)>, KeyError> {
    let err = |reason: &str| KeyError::Jwks {
        origin: origin.to_owned(),
        reason: reason.to_owned(),
    };
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| err("not a JWK Set: no \"keys\" array"))?;
    let mut out = Vec::new();
    for key in keys {
        if key.get("kty").and_then(Value::as_str) != Some("OKP")
            || key.get("crv").and_then(Value::as_str) != Some("Ed25519")
        {
            continue;
        }
        let x = key
            .get("x")
            .and_then(Value::as_str)
            .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
            .and_then(|x| <[u8; 32]>::try_from(x).ok())
            .ok_or_else(|| err("an Ed25519 key's \"x\" is not 32 bytes of base64url"))?;
        let public = VerifyingKey::from_bytes(&x)
            .map_err(|_| err("an Ed25519 key's \"x\" is not a valid public key"))?;
        let kid = key
            .get("kid")
            .and_then(Value::as_str)
            .map_or_else(|| thumbprint(&x), str::to_owned);
        out.push((kid, public));
    }
    if out.is_empty() {
        return Err(err("the JWK Set holds no Ed25519 (OKP) key"));
    }
    Ok(out)
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key: its key id.
pub fn thumbprint(public: &[u8; 32]) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public)
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// `key` as an SPKI PEM text (what [`public_from_pem`] reads).
pub fn public_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))
}

/// `key` as a PKCS#8 v1 PEM text (RFC 8410, `BEGIN PRIVATE KEY`): the private key alone, the
/// form `openssl genpkey -algorithm ed25519` writes and every PKCS#8 reader takes. The v2 form
/// (RFC 5958, the public key beside it), which Warden wrote before, is refused by OpenSSL 3.0's
/// `openssl pkey` and by Python's `cryptography`; [`from_pem`] still reads it.
pub fn private_pem(key: &SigningKey) -> Result<zeroize::Zeroizing<String>, KeyError> {
    KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| KeyError::Encode(e.to_string()))
}

/// The public JWK of an Ed25519 key, for a JWK Set.
pub fn public_jwk(public: &[u8; 32], kid: &str) -> Value {
    json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": URL_SAFE_NO_PAD.encode(public),
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    })
}

fn load(path: &Path, pem: &str, what: &str) -> Result<SigningKey, KeyError> {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
            "the {what} is readable by other users; run chmod 600 on it"
        );
    }
    from_pem(pem, &path.display().to_string())
}

fn create(path: &Path, what: &str) -> Result<SigningKey, KeyError> {
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = private_pem(&signing)?;
    let created =
        write_new(path, pem.as_bytes(), 0o600).map_err(|(action, source)| KeyError::File {
            action,
            path: path.to_owned(),
            source,
        })?;
    if !created {
        // Another process created it first: use theirs.
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::File {
            action: "cannot read",
            path: path.to_owned(),
            source,
        })?;
        return load(path, &pem, what);
    }
    tracing::info!(path = %path.display(), "created the {what}");
    Ok(signing)
}

/// Key files a start may create, noted before it creates any: a start refused after making
/// some ([`NewKeyFiles::remove`]) leaves the disk as it found it, so that restoring the old
/// keys is putting their files back, not first removing new ones.
#[derive(Debug, Default)]
pub struct NewKeyFiles {
    /// The files that did not exist.
    files: Vec<PathBuf>,
    /// The directories of those files that did not exist either.
    dirs: Vec<PathBuf>,
}

impl NewKeyFiles {
    /// Notes which of `paths` do not exist yet, and which of their directories.
    pub fn note(paths: impl IntoIterator<Item = PathBuf>) -> NewKeyFiles {
        let mut new = NewKeyFiles::default();
        for path in paths {
            if path.symlink_metadata().is_ok() {
                continue;
            }
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
                if d.symlink_metadata().is_ok() {
                    break;
                }
                if !new.dirs.iter().any(|known| known == d) {
                    new.dirs.push(d.to_owned());
                }
                dir = d.parent();
            }
            new.files.push(path);
        }
        // Deepest first, so that each is empty when its turn comes.
        new.dirs
            .sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        new
    }

    /// Removes the noted files that exist now, then the noted directories left empty;
    /// returns what could not be removed, with why.
    pub fn remove(&self) -> Vec<(PathBuf, std::io::Error)> {
        let mut failed = Vec::new();
        for file in &self.files {
            match std::fs::remove_file(file) {
                Ok(()) => {
                    tracing::info!(path = %file.display(), "removed the key file this refused start created");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failed.push((file.clone(), e)),
            }
        }
        for dir in &self.dirs {
            match std::fs::remove_dir(dir) {
                Ok(()) => {}
                // Not made by this start after all, or holding files of someone else's.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::DirectoryNotEmpty
                    ) => {}
                Err(e) => failed.push((dir.clone(), e)),
            }
        }
        failed
    }
}

/// Writes `contents` to the new file `path` with `mode`, synced, its directory created (mode
/// 0700) when missing: `Ok(false)` when the file exists already (another process created it
/// first), else `Err` with what failed (`cannot create`, ...) and why.
pub fn write_new(
    path: &Path,
    contents: &[u8],
    mode: u32,
) -> Result<bool, (&'static str, std::io::Error)> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        crate::private_files::create_dir_all(dir)
            .map_err(|e| ("cannot create the directory of", e))?;
        std::fs::set_permissions(dir, Permissions::from_mode(0o700))
            .map_err(|e| ("cannot restrict the directory of", e))?;
    }
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(("cannot create", e)),
    };
    file.set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(contents))
        .and_then(|()| file.sync_all())
        .map_err(|e| ("cannot write", e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_start_removes_the_key_files_and_directories_it_made_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let kept = tmp.path().join("kept.pem");
        load_or_create(&kept, "kept key").unwrap();
        let before = std::fs::read(&kept).unwrap();
        let new = tmp
            .path()
            .join("data")
            .join("keys")
            .join("agent-signing.pem");
        let noted = NewKeyFiles::note([kept.clone(), new.clone()]);
        load_or_create(&new, "agent signing key").unwrap();
        assert!(new.exists());

        assert!(noted.remove().is_empty());
        assert!(
            !tmp.path().join("data").exists(),
            "its directories went too"
        );
        assert_eq!(
            std::fs::read(&kept).unwrap(),
            before,
            "a key that was there stays"
        );
    }
    use ed25519_dalek::pkcs8::EncodePublicKey;

    #[test]
    fn a_key_warden_writes_is_pkcs8_v1_that_openssl_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("audit-signing.pem");
        let key = load_or_create(&path, "test key").unwrap();
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&path)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl pkey refused the key file: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = public_pem(&key.verifying_key()).unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), public);
        // The form `openssl genpkey -algorithm ed25519` writes: 48 bytes of DER, no public key.
        let pem = std::fs::read_to_string(&path).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap()
                .len(),
            48,
            "{pem}"
        );
        assert_eq!(load_or_create(&path, "test key").unwrap(), key);
    }

    #[test]
    fn a_pkcs8_v2_key_file_written_before_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-signing.pem");
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        // What Warden wrote until now: the public key beside the private one (RFC 5958).
        let v2 = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        write_new(&path, v2.as_bytes(), 0o600).unwrap();
        assert_eq!(load_or_create(&path, "test key").unwrap(), key);
        assert_eq!(public_from_file(&path).unwrap(), key.verifying_key());
    }

    #[test]
    fn a_retired_key_file_that_is_not_pem_says_what_was_expected_and_where() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("keys.json", r#"{"keys":[]}"#),
            ("garbage.bin", "\u{1}\u{2}garbage"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = public_from_file(&path).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
            assert!(err.contains("BEGIN PUBLIC KEY"), "{err}");
            assert!(err.contains("warden keys public"), "{err}");
            assert!(!err.contains("NUL byte"), "{err}");
        }
    }

    #[test]
    fn public_keys_read_from_spki_pkcs8_and_jwks_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k").join("key.pem");
        let key = load_or_create(&path, "test key").unwrap();
        let public = key.verifying_key();
        let private_pem = std::fs::read_to_string(&path).unwrap();
        assert_eq!(public_from_pem(&private_pem, "f").unwrap(), public);
        let spki = public.to_public_key_pem(LineEnding::LF).unwrap();
        assert_eq!(public_from_pem(&spki, "f").unwrap(), public);
        let kid = thumbprint(&public.to_bytes());
        let jwks = json!({"keys": [{"kty": "RSA"}, public_jwk(&public.to_bytes(), &kid)]});
        assert_eq!(public_from_jwks(&jwks, "j").unwrap(), vec![(kid, public)]);
        assert!(public_from_pem("nope", "f").is_err());
        assert!(public_from_jwks(&json!({"keys": []}), "j").is_err());
        assert_eq!(load_or_create(&path, "test key").unwrap(), key);
    }
}
