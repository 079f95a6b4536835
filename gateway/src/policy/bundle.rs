//! A policy set as a bundle: its manifest (the SHA-256 of every file it loads, by path), its
//! version (the digest of that manifest and of the connector actions declared beside it) and,
//! optionally, a detached Ed25519 signature over the manifest (`bundle.manifest`,
//! `bundle.sig`) that must verify against a configured public key before the set loads. A
//! manifest signed by this Warden says when it was signed (`signed <RFC 3339>`), so a gateway
//! can refuse an older bundle put back in place of a newer one (`policy/rollback.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::fragment::SchemaFragment;
use crate::keys;

/// The manifest's file name in a policy directory.
pub const MANIFEST_FILE: &str = "bundle.manifest";
/// The detached signature's file name in a policy directory.
pub const SIGNATURE_FILE: &str = "bundle.sig";
/// The first line of the manifest text the set's version is the digest of.
const MANIFEST_HEADER: &str = "warden-policy-bundle v1";
/// The first line of a signed manifest that says when it was signed (on its second line).
const SIGNED_HEADER: &str = "warden-policy-bundle v2";
/// The start of a signed manifest's second line, before the RFC 3339 time of signing.
const SIGNED_AT: &str = "signed ";

/// Why a bundle was refused or could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file of the set could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Signatures are required and the directory has no manifest or no signature.
    #[error(
        "{dir} is not a signed bundle: {missing} is missing (policy.bundle.public_keys requires \
         one); make it with `warden policy bundle {dir} --sign KEY`"
    )]
    Unsigned { dir: String, missing: &'static str },
    /// The signature file does not parse.
    #[error("{0}: not a bundle signature ({1}); make it again with `warden policy bundle --sign`")]
    BadSignatureFile(PathBuf, String),
    /// No configured key has the signature's key id.
    #[error(
        "{path} is signed by key {kid}, which is not among policy.bundle.public_keys; add its \
         public key or sign with a trusted key"
    )]
    UnknownKey { path: PathBuf, kid: String },
    /// The signature does not verify over the manifest.
    #[error(
        "{0}: the signature does not match {MANIFEST_FILE} (the manifest was changed after it \
         was signed); sign the bundle again"
    )]
    Forged(PathBuf),
    /// The bundle was signed before the newest one this gateway loaded: an older bundle put
    /// back (a rollback).
    #[error(
        "{dir}: this bundle was signed {signed}, before the bundle {whose} already loaded \
         (signed {newest}); an older bundle put back is refused. To go back to it on purpose, \
         sign it again (`warden policy bundle {dir} --sign KEY`)"
    )]
    Rollback {
        dir: String,
        signed: String,
        newest: String,
        /// Who loaded the newer one: this gateway, or one sharing its state store.
        whose: &'static str,
    },
    /// The fleet's rollback floor could not be read or raised in the state store: the bundle
    /// is not loaded (the check fails closed).
    #[error(
        "{dir}: cannot check this bundle against the newest one the gateways sharing the state \
         store loaded ({reason}); it is not loaded until the store answers"
    )]
    FleetFloor { dir: String, reason: String },
    /// The bundle says it was signed later than now (a signer's clock ahead): loading it
    /// would raise the rollback floor past every bundle signed at the real time.
    #[error(
        "{dir}: this bundle says it was signed at {signed}, more than {slack} after this \
         gateway's time ({now}); the signer's clock is ahead: set it right and sign the bundle \
         again (`warden policy bundle {dir} --sign KEY`)"
    )]
    SignedInFuture {
        dir: String,
        signed: String,
        now: String,
        slack: &'static str,
    },
    /// A time of signing out of the range the state store keeps.
    #[error("{dir}: this bundle's time of signing is out of range ({signed})")]
    SignedOutOfRange { dir: String, signed: String },
    /// The remembered time of the newest bundle loaded cannot be read.
    #[error(
        "{path}: not the time of the newest policy bundle loaded ({reason}); Warden writes \
         it: remove it to accept any validly signed bundle again"
    )]
    NewestUnreadable { path: PathBuf, reason: String },
    /// The files on disk are not the ones the manifest lists.
    #[error("{dir}: the policy files differ from the signed {MANIFEST_FILE}: {changes}")]
    Tampered { dir: String, changes: String },
    /// A path cannot be written in a manifest.
    #[error("{0}: a policy file's path must be UTF-8 without line breaks")]
    BadPath(PathBuf),
    /// A key could not be read.
    #[error("{0}")]
    Key(#[from] keys::KeyError),
    /// A private key where gateways need only the public one.
    #[error(
        "{0} is a private key: a gateway needs only the public key that verifies bundles (the \
         .pub file `warden policy keygen` writes beside it); keep the private key where bundles \
         are signed, in CI, and not on the gateways"
    )]
    PrivateKey(PathBuf),
}

/// The public keys a bundle must be signed with (`policy.bundle.public_keys`).
#[derive(Debug, Clone, Default)]
pub struct Trust {
    keys: Vec<(String, VerifyingKey)>,
}

impl Trust {
    /// Reads each PEM file, a public key; a private key is refused, since whoever reads it
    /// from a gateway could sign bundles.
    pub fn load(paths: &[PathBuf]) -> Result<Trust, BundleError> {
        let mut keys = Vec::with_capacity(paths.len());
        for path in paths {
            let pem = std::fs::read_to_string(path).map_err(|source| BundleError::Io {
                path: path.clone(),
                source,
            })?;
            if pem.contains("PRIVATE KEY-----") {
                return Err(BundleError::PrivateKey(path.clone()));
            }
            let key = keys::public_from_pem(&pem, &path.display().to_string())?;
            keys.push((keys::thumbprint(&key.to_bytes()), key));
        }
        Ok(Trust { keys })
    }

    /// Trusts `keys` (tests build bundles with keys of their own).
    #[cfg(test)]
    pub(crate) fn of(public: &[VerifyingKey]) -> Trust {
        Trust {
            keys: public
                .iter()
                .map(|key| (keys::thumbprint(&key.to_bytes()), *key))
                .collect(),
        }
    }

    /// The fingerprint of this set of keys (`sha256:<hex>` over their sorted key ids): the
    /// fleet's rollback floors are kept per fingerprint, so that deployments trusting other
    /// keys and sharing a database keep floors of their own.
    pub fn fingerprint(&self) -> String {
        let mut ids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        sha256(ids.join("\n").as_bytes())
    }

    /// Whether no key is configured (bundles need not be signed).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The SHA-256 of each file of a policy set, by path relative to its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// `(path, sha256:<hex>)`, sorted by path.
    files: Vec<(String, String)>,
}

impl Manifest {
    /// Digests `files` (relative to `dir`).
    pub fn of(dir: &Path, files: &[PathBuf]) -> Result<Manifest, BundleError> {
        let mut out = Vec::with_capacity(files.len());
        for rel in files {
            let name = rel
                .to_str()
                .filter(|s| !s.contains(['\n', '\r']))
                .ok_or_else(|| BundleError::BadPath(rel.clone()))?;
            let path = dir.join(rel);
            let bytes = super::policy_file::read(&path)
                .map_err(|source| BundleError::Io { path, source })?;
            out.push((name.replace('\\', "/"), sha256(&bytes)));
        }
        out.sort();
        Ok(Manifest { files: out })
    }

    /// The manifest as written to `bundle.manifest`.
    pub fn text(&self) -> String {
        let mut text = format!("{MANIFEST_HEADER}\n");
        for (path, digest) in &self.files {
            let _ = writeln!(text, "{digest}  {path}");
        }
        text
    }

    /// The manifest as signed: [`Manifest::text`] with the time of signing after its header.
    fn signed_text(&self, at: SystemTime) -> String {
        let files = self.text();
        let files = files.strip_prefix(MANIFEST_HEADER).unwrap_or(&files);
        format!(
            "{SIGNED_HEADER}\n{SIGNED_AT}{}{files}",
            humantime::format_rfc3339_nanos(at)
        )
    }

    /// Reads a signed manifest's text and when it says it was signed (`None` for a manifest
    /// written before manifests said so); `None` when it is not one.
    fn parse(text: &str) -> Option<(Manifest, Option<SystemTime>)> {
        let mut lines = text.lines();
        let signed = match lines.next()? {
            MANIFEST_HEADER => None,
            SIGNED_HEADER => {
                let at = lines.next()?.strip_prefix(SIGNED_AT)?;
                Some(humantime::parse_rfc3339(at).ok()?)
            }
            _ => return None,
        };
        let mut files = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let (digest, path) = line.split_once("  ")?;
            if !digest.starts_with("sha256:") {
                return None;
            }
            files.push((path.to_owned(), digest.to_owned()));
        }
        files.sort();
        Some((Manifest { files }, signed))
    }

    /// The set's version: `sha256:<hex>` of the manifest and of the schema text added in
    /// memory (the connector actions the routes declare).
    pub fn version(&self, extra: &[SchemaFragment]) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.text().as_bytes());
        for e in extra {
            hasher.update(format!("{}\n", e.origin.display()).as_bytes());
            hasher.update(sha256(e.text.as_bytes()).as_bytes());
            hasher.update(b"\n");
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// What differs from `signed`: files added, removed or changed, by path.
    fn changes_from(&self, signed: &Manifest) -> Vec<String> {
        let mut changes = Vec::new();
        for (path, digest) in &self.files {
            match signed.files.iter().find(|(p, _)| p == path) {
                None => changes.push(format!("{path} is not in the manifest")),
                Some((_, d)) if d != digest => changes.push(format!("{path} was changed")),
                Some(_) => {}
            }
        }
        for (path, _) in &signed.files {
            if !self.files.iter().any(|(p, _)| p == path) {
                changes.push(format!("{path} is missing"));
            }
        }
        changes
    }
}

/// The detached signature file's content.
#[derive(serde::Serialize, serde::Deserialize)]
struct SignatureFile {
    alg: String,
    kid: String,
    signature: String,
}

/// Checks that `dir`'s signed manifest is signed by a key of `trust` and lists exactly the
/// files of `manifest` (what is about to load); returns when it says it was signed (`None`
/// for a manifest signed before manifests said so).
pub fn verify(
    dir: &Path,
    manifest: &Manifest,
    trust: &Trust,
) -> Result<Option<SystemTime>, BundleError> {
    let shown = dir.display().to_string();
    let read = |name: &'static str| -> Result<String, BundleError> {
        let path = dir.join(name);
        super::policy_file::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                BundleError::Unsigned {
                    dir: shown.clone(),
                    missing: name,
                }
            } else {
                BundleError::Io { path, source }
            }
        })
    };
    let text = read(MANIFEST_FILE)?;
    let sig_path = dir.join(SIGNATURE_FILE);
    let sig: SignatureFile = serde_json::from_str(&read(SIGNATURE_FILE)?)
        .map_err(|e| BundleError::BadSignatureFile(sig_path.clone(), e.to_string()))?;
    match check(&sig, &text, trust) {
        Ok(()) => {}
        Err(Fault::Malformed(reason)) => {
            return Err(BundleError::BadSignatureFile(sig_path, reason));
        }
        Err(Fault::UnknownKey) => {
            return Err(BundleError::UnknownKey {
                path: sig_path,
                kid: sig.kid,
            });
        }
        Err(Fault::Forged) => return Err(BundleError::Forged(sig_path)),
    }
    let (signed, at) = Manifest::parse(&text).ok_or_else(|| BundleError::Tampered {
        dir: shown.clone(),
        changes: format!("{MANIFEST_FILE} is not a manifest"),
    })?;
    let changes = manifest.changes_from(&signed);
    if changes.is_empty() {
        Ok(at)
    } else {
        Err(BundleError::Tampered {
            dir: shown,
            changes: changes.join("; "),
        })
    }
}

/// Writes `dir`'s manifest of `files`, saying it was signed `at`, and its signature with
/// `key`; returns the key id.
pub fn sign(
    dir: &Path,
    files: &[PathBuf],
    key: &SigningKey,
    at: SystemTime,
) -> Result<String, BundleError> {
    let text = Manifest::of(dir, files)?.signed_text(at);
    let sig = signature(&text, key);
    let kid = sig.kid.clone();
    let write = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|source| BundleError::Io { path, source })
    };
    write(MANIFEST_FILE, text)?;
    let body = serde_json::to_string_pretty(&sig).unwrap_or_default();
    write(SIGNATURE_FILE, format!("{body}\n"))?;
    Ok(kid)
}

/// `text` signed with `key`.
fn signature(text: &str, key: &SigningKey) -> SignatureFile {
    SignatureFile {
        alg: "Ed25519".into(),
        kid: keys::thumbprint(&key.verifying_key().to_bytes()),
        signature: STANDARD.encode(key.sign(text.as_bytes()).to_bytes()),
    }
}

/// Why a signature does not verify.
enum Fault {
    /// Not an Ed25519 signature, or not one at all.
    Malformed(String),
    /// By a key not trusted.
    UnknownKey,
    /// By a trusted key, over another text.
    Forged,
}

/// Checks that `sig` is a signature of `text` by a key of `trust`.
fn check(sig: &SignatureFile, text: &str, trust: &Trust) -> Result<(), Fault> {
    if sig.alg != "Ed25519" {
        return Err(Fault::Malformed(format!(
            "algorithm {:?}; only Ed25519 is accepted",
            sig.alg
        )));
    }
    let bytes = STANDARD
        .decode(sig.signature.trim())
        .map_err(|e| Fault::Malformed(e.to_string()))?;
    let signature = Signature::from_slice(&bytes).map_err(|e| Fault::Malformed(e.to_string()))?;
    let Some((_, key)) = trust.keys.iter().find(|(kid, _)| *kid == sig.kid) else {
        return Err(Fault::UnknownKey);
    };
    key.verify_strict(text.as_bytes(), &signature)
        .map_err(|_| Fault::Forged)
}

/// Signs `statement` (a text other than a manifest: a floor reset's) with `key`, as bundles
/// are signed; the signature as JSON (`alg`, `kid`, `signature`), for [`verify_statement`].
pub fn sign_statement(statement: &str, key: &SigningKey) -> String {
    serde_json::to_string(&signature(statement, key)).unwrap_or_default()
}

/// Whether `signature` (as [`sign_statement`] wrote it) is a signature of `statement` by a key
/// of `trust`.
pub fn verify_statement(statement: &str, signature: &str, trust: &Trust) -> bool {
    serde_json::from_str::<SignatureFile>(signature)
        .is_ok_and(|sig| check(&sig, statement, trust).is_ok())
}

/// `sha256:<hex>` of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(dir: &Path) -> Vec<PathBuf> {
        std::fs::write(dir.join("schema.cedarschema"), "namespace X {}").unwrap();
        std::fs::write(dir.join("a.cedar"), "permit(principal, action, resource);").unwrap();
        vec!["a.cedar".into(), "schema.cedarschema".into()]
    }

    fn trust_of(key: &SigningKey) -> Trust {
        let public = key.verifying_key();
        Trust {
            keys: vec![(keys::thumbprint(&public.to_bytes()), public)],
        }
    }

    #[test]
    fn a_private_key_is_not_trusted_as_a_public_one() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("bundle.pem");
        let key = keys::load_or_create(&private, "bundle signing key").unwrap();
        let e = Trust::load(std::slice::from_ref(&private))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bundle.pem is a private key"), "{e}");
        let public = tmp.path().join("bundle.pub");
        std::fs::write(&public, keys::public_pem(&key.verifying_key()).unwrap()).unwrap();
        assert!(!Trust::load(&[public]).unwrap().is_empty());
    }

    #[test]
    fn a_signed_bundle_verifies_and_an_edited_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let files = set(tmp.path());
        let key = SigningKey::from_bytes(&[7; 32]);
        sign(tmp.path(), &files, &key, SystemTime::now()).unwrap();
        let trust = trust_of(&key);
        let manifest = Manifest::of(tmp.path(), &files).unwrap();
        verify(tmp.path(), &manifest, &trust).unwrap();

        std::fs::write(
            tmp.path().join("a.cedar"),
            "forbid(principal, action, resource);",
        )
        .unwrap();
        let manifest = Manifest::of(tmp.path(), &files).unwrap();
        let e = verify(tmp.path(), &manifest, &trust)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.cedar was changed"), "{e}");

        let mut more = files.clone();
        std::fs::write(tmp.path().join("b.cedar"), "").unwrap();
        more.push("b.cedar".into());
        sign(tmp.path(), &files, &key, SystemTime::now()).unwrap();
        let manifest = Manifest::of(tmp.path(), &more).unwrap();
        let e = verify(tmp.path(), &manifest, &trust)
            .unwrap_err()
            .to_string();
        assert!(e.contains("b.cedar is not in the manifest"), "{e}");
    }

    #[test]
    fn a_forged_manifest_or_an_untrusted_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let files = set(tmp.path());
        let key = SigningKey::from_bytes(&[7; 32]);
        sign(tmp.path(), &files, &key, SystemTime::now()).unwrap();
        let other = trust_of(&SigningKey::from_bytes(&[8; 32]));
        let manifest = Manifest::of(tmp.path(), &files).unwrap();
        let e = verify(tmp.path(), &manifest, &other).unwrap_err();
        assert!(matches!(e, BundleError::UnknownKey { .. }), "{e}");

        let path = tmp.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}sha256:00  c.cedar\n")).unwrap();
        let e = verify(tmp.path(), &manifest, &trust_of(&key)).unwrap_err();
        assert!(matches!(e, BundleError::Forged(_)), "{e}");

        std::fs::remove_file(tmp.path().join(SIGNATURE_FILE)).unwrap();
        let e = verify(tmp.path(), &manifest, &trust_of(&key)).unwrap_err();
        assert!(e.to_string().contains("bundle.sig is missing"), "{e}");
    }

    #[test]
    fn the_signed_manifest_says_when_it_was_signed() {
        let tmp = tempfile::tempdir().unwrap();
        let files = set(tmp.path());
        let key = SigningKey::from_bytes(&[7; 32]);
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_765_000_000, 123_456_789);
        sign(tmp.path(), &files, &key, at).unwrap();
        let manifest = Manifest::of(tmp.path(), &files).unwrap();
        assert_eq!(
            verify(tmp.path(), &manifest, &trust_of(&key)).unwrap(),
            Some(at)
        );
        let text = std::fs::read_to_string(tmp.path().join(MANIFEST_FILE)).unwrap();
        assert!(
            text.starts_with("warden-policy-bundle v2\nsigned 2025-12-06T05:46:40.123456789Z\n"),
            "{text}"
        );

        // A manifest signed before manifests said when verifies, its time unknown.
        let old = manifest.text();
        let sig = SignatureFile {
            alg: "Ed25519".into(),
            kid: keys::thumbprint(&key.verifying_key().to_bytes()),
            signature: STANDARD.encode(key.sign(old.as_bytes()).to_bytes()),
        };
        std::fs::write(tmp.path().join(MANIFEST_FILE), old).unwrap();
        std::fs::write(
            tmp.path().join(SIGNATURE_FILE),
            serde_json::to_string(&sig).unwrap(),
        )
        .unwrap();
        assert_eq!(
            verify(tmp.path(), &manifest, &trust_of(&key)).unwrap(),
            None
        );
    }

    #[test]
    fn the_version_follows_the_content() {
        let tmp = tempfile::tempdir().unwrap();
        let files = set(tmp.path());
        let v1 = Manifest::of(tmp.path(), &files).unwrap().version(&[]);
        assert!(v1.starts_with("sha256:") && v1.len() == 71, "{v1}");
        assert_eq!(Manifest::of(tmp.path(), &files).unwrap().version(&[]), v1);
        std::fs::write(
            tmp.path().join("a.cedar"),
            "forbid(principal, action, resource);",
        )
        .unwrap();
        assert_ne!(Manifest::of(tmp.path(), &files).unwrap().version(&[]), v1);
    }
}
