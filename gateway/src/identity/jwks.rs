//! Key sets: JWKS documents turned into verification keys indexed by `kid`, and the rule
//! that decides which algorithm a key may verify.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How many skipped keys' reasons an error names (the rest are counted).
const SKIPPED_SHOWN: usize = 3;

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// The name of an algorithm as written in JOSE headers.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "an algorithm this build does not know",
    }
}

/// True for HS256/384/512: never accepted from an issuer that publishes public keys.
pub(crate) fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// The type and curve of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind can verify `alg`.
    pub(crate) fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RSA",
            KeyKind::P256 => "EC P-256",
            KeyKind::P384 => "EC P-384",
            KeyKind::Ed25519 => "OKP Ed25519",
        }
    }
}

/// One public key able to verify signatures.
#[derive(Debug)]
pub(crate) struct VerifyKey {
    pub kid: Option<Arc<str>>,
    pub kind: KeyKind,
    /// The algorithm the key is restricted to, when its JWK states one.
    pub alg: Option<Algorithm>,
    /// A retired Warden key's `until` (seconds since 1970): from then on what it signed is
    /// refused. `None` for every other key.
    pub until: Option<u64>,
    key: DecodingKey,
    /// SHA-256 of the public key's parameters: the same key in a later key set.
    material: [u8; 32],
}

impl VerifyKey {
    /// An Ed25519 public key (32 bytes).
    pub(crate) fn ed25519(kid: Option<Arc<str>>, public: &[u8; 32]) -> VerifyKey {
        VerifyKey {
            kid,
            kind: KeyKind::Ed25519,
            alg: Some(Algorithm::EdDSA),
            until: None,
            key: DecodingKey::from_ed_der(public),
            material: Sha256::digest(public).into(),
        }
    }

    /// This key, refusing what it signed from `until` on (a retired Warden key's end).
    pub(crate) fn retired_until(mut self, until: Option<u64>) -> VerifyKey {
        self.until = until;
        self
    }

    /// Converts a JWK, refusing keys that are not usable for signature verification.
    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<VerifyKey, String> {
        if let Some(key_use) = &jwk.common.public_key_use
            && *key_use != PublicKeyUse::Signature
        {
            return Err("not a signing key (`use` is not \"sig\")".into());
        }
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(stated) => match Algorithm::try_from(stated) {
                Ok(alg) if is_hmac(alg) => return Err(format!("symmetric key ({stated})")),
                Ok(alg) => Some(alg),
                Err(_) => return Err(format!("algorithm {stated} is not a signature algorithm")),
            },
        };
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => {
                let bits = modulus_bits(&p.n).ok_or("RSA modulus is not base64url")?;
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "RSA key of {bits} bits (at least {MIN_RSA_BITS} needed)"
                    ));
                }
                KeyKind::Rsa
            }
            AlgorithmParameters::EllipticCurve(p) => {
                let (kind, len) = match p.curve {
                    EllipticCurve::P256 => (KeyKind::P256, 32),
                    EllipticCurve::P384 => (KeyKind::P384, 48),
                    ref other => return Err(format!("unsupported EC curve {other:?}")),
                };
                if decoded_len(&p.x) != Some(len) || decoded_len(&p.y) != Some(len) {
                    return Err("EC coordinates have the wrong length".into());
                }
                kind
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return Err(format!("unsupported OKP curve {:?}", p.curve));
                }
                if decoded_len(&p.x) != Some(32) {
                    return Err("Ed25519 key is not 32 bytes".into());
                }
                KeyKind::Ed25519
            }
            AlgorithmParameters::OctetKey(_) => return Err("symmetric key (kty oct)".into()),
            _ => return Err("unsupported key type".into()),
        };
        if let Some(alg) = alg
            && !kind.fits(alg)
        {
            return Err(format!(
                "{} key states algorithm {}",
                kind.name(),
                alg_name(alg)
            ));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable key: {e}"))?;
        let params =
            serde_json::to_vec(&jwk.algorithm).map_err(|e| format!("unusable key: {e}"))?;
        Ok(VerifyKey {
            kid: jwk.common.key_id.as_deref().map(Arc::from),
            kind,
            alg,
            until: None,
            key,
            material: Sha256::digest(params).into(),
        })
    }

    /// Whether `other` is this key: the same public key under the same `kid` and `alg`.
    pub(crate) fn is(&self, other: &VerifyKey) -> bool {
        self.material == other.material && self.kid == other.kid && self.alg == other.alg
    }

    /// Whether this key may verify a token signed with `alg` (type, curve and stated `alg`).
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.kind.fits(alg) && self.alg.is_none_or(|stated| stated == alg)
    }

    /// `RSA key, alg RS256`: what the key is, for messages.
    pub(crate) fn describe(&self) -> String {
        match self.alg {
            Some(alg) => format!("{} key, alg {}", self.kind.name(), alg_name(alg)),
            None => format!("{} key", self.kind.name()),
        }
    }

    /// Verifies `signature` (base64url) over `signing_input` with `alg`.
    pub(crate) fn verify(&self, alg: Algorithm, signing_input: &str, signature: &str) -> bool {
        self.fits(alg)
            && jsonwebtoken::crypto::verify(signature, signing_input.as_bytes(), &self.key, alg)
                .unwrap_or(false)
    }
}

fn decoded_len(b64: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(b64).ok().map(|bytes| bytes.len())
}

fn modulus_bits(n: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(n).ok()?;
    let first = bytes.iter().position(|b| *b != 0)?;
    Some((bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize)
}

/// An issuer's verification keys.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<Arc<str>, Arc<VerifyKey>>,
    keys: Vec<Arc<VerifyKey>>,
}

/// The outer shape of a JWKS document; keys are read one by one so one odd key does not
/// spoil the set.
#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// A set of the given keys (first key wins on a duplicate `kid`).
    pub(crate) fn from_keys(keys: impl IntoIterator<Item = VerifyKey>) -> KeySet {
        let mut set = KeySet::default();
        for key in keys {
            let key = Arc::new(key);
            if let Some(kid) = &key.kid {
                if set.by_kid.contains_key(kid) {
                    continue;
                }
                set.by_kid.insert(kid.clone(), key.clone());
            }
            set.keys.push(key);
        }
        set
    }

    /// Parses a JWKS document, skipping keys that cannot verify signatures. Fails when the
    /// document is not a JWKS or holds no usable key.
    pub(crate) fn parse(json: &[u8]) -> Result<KeySet, String> {
        let doc: JwksDocument = serde_json::from_slice(json)
            .map_err(|e| format!("not a JWKS document (expected {{\"keys\": [...]}}): {e}"))?;
        let mut usable = Vec::new();
        // The first few reasons, and how many keys were skipped: a document of a million
        // odd keys makes an error of a few lines, not of megabytes.
        let mut skipped = Vec::new();
        let mut skipped_count = 0usize;
        for (i, value) in doc.keys.into_iter().enumerate() {
            let parsed = serde_json::from_value::<Jwk>(value)
                .map_err(|e| format!("not a JWK: {e}"))
                .and_then(|jwk| VerifyKey::from_jwk(&jwk));
            match parsed {
                Ok(key) => usable.push(key),
                Err(reason) => {
                    skipped_count += 1;
                    if skipped.len() < SKIPPED_SHOWN {
                        let reason = crate::text::bounded(&reason, 200);
                        skipped.push(format!("key {i}: {reason}"));
                    }
                }
            }
        }
        let more = match skipped_count.saturating_sub(skipped.len()) {
            0 => String::new(),
            n => format!("; and {n} more"),
        };
        if skipped_count > 0 {
            tracing::debug!(skipped = skipped_count, first = ?skipped, "JWKS keys skipped");
        }
        if usable.is_empty() {
            return Err(format!(
                "JWKS holds no usable signing key ({skipped_count} skipped: {}{more})",
                skipped.join("; ")
            ));
        }
        Ok(KeySet::from_keys(usable))
    }

    /// The key with this `kid`.
    pub(crate) fn by_kid(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)
    }

    /// Whether the set still holds `key` (under its `kid`, when it has one).
    pub(crate) fn publishes(&self, key: &VerifyKey) -> bool {
        match &key.kid {
            Some(kid) => self.by_kid(kid).is_some_and(|k| k.is(key)),
            None => self.keys.iter().any(|k| k.is(key)),
        }
    }

    /// Keys able to verify `alg` (for tokens without `kid`).
    pub(crate) fn fitting(&self, alg: Algorithm) -> impl Iterator<Item = &Arc<VerifyKey>> {
        self.keys.iter().filter(move |k| k.fits(alg))
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key ids, for logs.
    pub(crate) fn kids(&self) -> Vec<&str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ec_p256_jwk() -> serde_json::Value {
        json!({
            "kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32]),
        })
    }

    #[test]
    fn keeps_signing_keys_and_skips_the_rest() {
        let doc = json!({"keys": [
            ec_p256_jwk(),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB", "kid": "small"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": URL_SAFE_NO_PAD.encode([3u8; 32])},
            {"kty": "RSA", "alg": "RSA-OAEP", "kid": "oaep",
             "n": URL_SAFE_NO_PAD.encode([0xffu8; 256]), "e": "AQAB"},
            {"kty": "weird"},
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes()).unwrap();
        let mut kids = set.kids();
        kids.sort();
        assert_eq!(kids, ["ec1", "ed"]);
        assert_eq!(set.by_kid("ec1").unwrap().kind, KeyKind::P256);
    }

    #[test]
    fn an_error_names_a_few_skipped_keys_and_counts_the_rest() {
        let doc = format!("{{\"keys\": [{}]}}", vec!["{}"; 100_000].join(","));
        let err = KeySet::parse(doc.as_bytes()).unwrap_err();
        assert!(
            err.len() < 600,
            "{} bytes: {}",
            err.len(),
            crate::text::bounded(&err, 300)
        );
        assert!(
            err.contains("100000 skipped: key 0: ") && err.ends_with("; and 99997 more)"),
            "{err}"
        );
    }

    #[test]
    fn fails_when_no_key_is_usable() {
        let doc = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
        let err = KeySet::parse(doc.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("no usable signing key"), "{err}");
        assert!(KeySet::parse(b"<html>").is_err());
    }

    #[test]
    fn key_fits_only_its_type_curve_and_stated_alg() {
        let mut jwk = ec_p256_jwk();
        let key = VerifyKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
        assert!(key.fits(Algorithm::ES256));
        assert!(!key.fits(Algorithm::ES384));
        assert!(!key.fits(Algorithm::RS256));
        assert!(!key.fits(Algorithm::HS256));
        jwk["alg"] = json!("ES384");
        assert!(VerifyKey::from_jwk(&serde_json::from_value(jwk).unwrap()).is_err());
    }

    #[test]
    fn measures_rsa_modulus_bits() {
        let mut n = vec![0u8; 1];
        n.extend([0x01u8; 1]);
        n.extend([0u8; 255]);
        assert_eq!(modulus_bits(&URL_SAFE_NO_PAD.encode(&n)), Some(2041));
        assert_eq!(
            modulus_bits(&URL_SAFE_NO_PAD.encode([0x80u8; 256])),
            Some(2048)
        );
    }
}
