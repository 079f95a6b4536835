//! Checking a receipt with the audit public keys alone: the head's signature, then the
//! claims' way up their audit path to the signed root.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signature;
use serde::de::DeserializeOwned;

use super::claims::Receipt;
use super::format::{HEAD_TYPE, Head, Proof, SEPARATOR, SINGLE_TYPE};
use super::merkle::{self, Hash, ProofError};
use crate::audit::checkpoint::Keys;

/// What a receipt that verifies says, and where it sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The decision's claims.
    pub claims: Receipt,
    /// The key that signed it.
    pub kid: String,
    /// The claims' index in their batch.
    pub index: u64,
    /// How many receipts the batch's signed head covers (1 for a receipt signed alone).
    pub size: u64,
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error(
        "not a Warden receipt (<signed head>~<claims>~<proof>, see docs/audit.md#receipts): {0}"
    )]
    Malformed(String),
    #[error("the signed head's JOSE header is not Warden's ({0})")]
    Header(String),
    #[error("signed by key {0}, which is not among the keys given (--key, --jwks)")]
    UnknownKey(String),
    #[error(
        "the signed head's signature does not verify with key {0}: the head was altered or forged"
    )]
    BadSignature(String),
    #[error("the signed head is not a Warden batch head: {0}")]
    Head(String),
    #[error("the receipt's claims are not a Warden receipt: {0}")]
    Claims(String),
    #[error("the inclusion proof does not fit the signed batch: {0}; the proof was altered")]
    Proof(ProofError),
    #[error(
        "the claims, hashed up the proof's audit path (leaf {index} of {size}), do not reach the \
         signed root: the claims or the proof's path were altered"
    )]
    NotIncluded { index: u64, size: u64 },
}

/// Checks a receipt (`x-warden-receipt`) against `keys`; returns what it says. A receipt
/// signed alone (a compact JWS of `typ` `warden-receipt+jwt`, from Warden before batching)
/// verifies too.
pub fn verify(receipt: &str, keys: &Keys) -> Result<Verified, ReceiptError> {
    let receipt = receipt.trim();
    if !receipt.contains(SEPARATOR) {
        let (kid, payload) = signed(receipt, keys, SINGLE_TYPE)?;
        let claims = json(&payload, ReceiptError::Claims)?;
        return Ok(Verified {
            claims,
            kid,
            index: 0,
            size: 1,
        });
    }
    let mut parts = receipt.split(SEPARATOR);
    let (Some(head), Some(claims), Some(proof), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReceiptError::Malformed("not three parts".into()));
    };
    let (kid, head) = signed(head, keys, HEAD_TYPE)?;
    let head: Head = json(&head, ReceiptError::Head)?;
    let root = decode_hash(&head.root).map_err(|e| ReceiptError::Head(format!("root: {e}")))?;
    let claims = decode(claims, "claims")?;
    let proof: Proof = json(&decode(proof, "proof")?, |e| {
        ReceiptError::Malformed(format!("proof: {e}"))
    })?;
    if proof.path.len() > merkle::PATH_MAX {
        return Err(ReceiptError::Malformed(format!(
            "proof path: {} hashes; a batch's path has at most {}",
            proof.path.len(),
            merkle::PATH_MAX
        )));
    }
    let path = proof
        .path
        .iter()
        .map(|h| decode_hash(h))
        .collect::<Result<Vec<Hash>, String>>()
        .map_err(|e| ReceiptError::Malformed(format!("proof path: {e}")))?;
    let reached = merkle::root_from_path(proof.index, head.size, merkle::leaf_hash(&claims), &path)
        .map_err(ReceiptError::Proof)?;
    if reached != root {
        return Err(ReceiptError::NotIncluded {
            index: proof.index,
            size: head.size,
        });
    }
    Ok(Verified {
        claims: json(&claims, ReceiptError::Claims)?,
        kid,
        index: proof.index,
        size: head.size,
    })
}

/// The key id and payload of compact JWS `jws`, of `typ`, signed with one of `keys`.
fn signed(jws: &str, keys: &Keys, typ: &str) -> Result<(String, Vec<u8>), ReceiptError> {
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReceiptError::Malformed(
            "the signed head is not a compact JWS (three base64url parts separated by dots)".into(),
        ));
    };
    let head: serde_json::Value = json(&decode(header, "header")?, |e| {
        ReceiptError::Header(e.to_string())
    })?;
    // RFC 7515 §4.1.11: extensions a verifier does not understand must not be ignored.
    if head.get("crit").is_some() {
        return Err(ReceiptError::Header(
            "it names critical extensions (crit), which Warden never sets".into(),
        ));
    }
    if head["alg"] != "EdDSA" || head["typ"] != typ {
        return Err(ReceiptError::Header(format!(
            "alg {} typ {}; expected EdDSA and {typ}",
            head["alg"], head["typ"]
        )));
    }
    let kid = head["kid"].as_str().unwrap_or_default().to_owned();
    let key = keys
        .get(&kid)
        .ok_or_else(|| ReceiptError::UnknownKey(kid.clone()))?;
    let signature = <[u8; 64]>::try_from(decode(signature, "signature")?)
        .map_err(|_| ReceiptError::Malformed("the signature is not 64 bytes".into()))?;
    let message = &jws[..header.len() + 1 + payload.len()];
    key.verify_strict(message.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| ReceiptError::BadSignature(kid.clone()))?;
    Ok((kid, decode(payload, "payload")?))
}

fn decode(part: &str, what: &str) -> Result<Vec<u8>, ReceiptError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| ReceiptError::Malformed(format!("{what} is not base64url: {e}")))
}

fn decode_hash(text: &str) -> Result<Hash, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| format!("not base64url: {e}"))?;
    <Hash>::try_from(bytes).map_err(|b| format!("{} bytes, not 32", b.len()))
}

fn json<T: DeserializeOwned>(
    bytes: &[u8],
    error: impl FnOnce(String) -> ReceiptError,
) -> Result<T, ReceiptError> {
    serde_json::from_slice(bytes).map_err(|e| error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::receipt::format;
    use crate::audit::receipt::merkle::Tree;
    use crate::audit::signer::Signer;
    use ed25519_dalek::SigningKey;

    /// A batch of `n` receipts signed with key `[3; 32]`.
    fn batch(n: u64) -> Vec<String> {
        let signer = Signer::new(SigningKey::from_bytes(&[3; 32]));
        let json: Vec<Vec<u8>> = (0..n)
            .map(|seq| serde_json::to_vec(&Receipt::example(seq)).unwrap())
            .collect();
        let tree = Tree::new(json.iter().map(|j| merkle::leaf_hash(j)).collect()).unwrap();
        let header = format::head_header(&signer);
        let head = format::sign_head(&signer, &header, &tree.root(), tree.size(), 1);
        (0..n as usize)
            .map(|i| format::receipt(&head, &json[i], i, &tree.path(i)))
            .collect()
    }

    fn keys() -> Keys {
        Keys::one(SigningKey::from_bytes(&[3; 32]).verifying_key())
    }

    /// `receipt` with its part `at` (0 head, 1 claims, 2 proof) replaced by `part`.
    fn with_part(receipt: &str, at: usize, part: String) -> String {
        let mut parts: Vec<String> = receipt.split('~').map(str::to_owned).collect();
        parts[at] = part;
        parts.join("~")
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn part(receipt: &str, at: usize) -> serde_json::Value {
        let part = receipt.split('~').nth(at).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn every_receipt_of_a_batch_verifies_with_its_own_claims() {
        for n in [1, 2, 3, 7, 17] {
            for (seq, receipt) in batch(n).iter().enumerate() {
                let verified = verify(receipt, &keys()).unwrap();
                assert_eq!(verified.claims, Receipt::example(seq as u64));
                assert_eq!((verified.index, verified.size), (seq as u64, n));
            }
        }
    }

    #[test]
    fn altered_claims_do_not_reach_the_signed_root() {
        let receipt = &batch(5)[2];
        let mut altered = part(receipt, 1);
        altered["decision"] = "deny".into();
        let forged = with_part(receipt, 1, b64(&altered));
        assert_eq!(
            verify(&forged, &keys()),
            Err(ReceiptError::NotIncluded { index: 2, size: 5 })
        );
        // Another receipt's claims with this one's proof fail as well.
        let swapped = with_part(receipt, 1, batch(5)[3].split('~').nth(1).unwrap().into());
        assert!(matches!(
            verify(&swapped, &keys()),
            Err(ReceiptError::NotIncluded { .. })
        ));
    }

    #[test]
    fn an_altered_path_or_index_is_refused() {
        let receipt = &batch(5)[2];
        let proof = part(receipt, 2);
        let mut hash = proof.clone();
        let first = hash["path"][0].as_str().unwrap().to_owned();
        let mut bytes = URL_SAFE_NO_PAD.decode(first).unwrap();
        bytes[0] ^= 1;
        hash["path"][0] = URL_SAFE_NO_PAD.encode(bytes).into();
        assert!(matches!(
            verify(&with_part(receipt, 2, b64(&hash)), &keys()),
            Err(ReceiptError::NotIncluded { .. })
        ));
        let mut index = proof.clone();
        index["index"] = 3.into();
        assert!(matches!(
            verify(&with_part(receipt, 2, b64(&index)), &keys()),
            Err(ReceiptError::NotIncluded { .. })
        ));
        let mut past = proof.clone();
        past["index"] = 5.into();
        assert_eq!(
            verify(&with_part(receipt, 2, b64(&past)), &keys()),
            Err(ReceiptError::Proof(ProofError::IndexOutOfRange {
                index: 5,
                size: 5
            }))
        );
        let mut short = proof;
        short["path"].as_array_mut().unwrap().pop();
        assert!(matches!(
            verify(&with_part(receipt, 2, b64(&short)), &keys()),
            Err(ReceiptError::Proof(ProofError::PathLength { .. }))
        ));
    }

    #[test]
    fn an_altered_head_does_not_verify() {
        let receipt = &batch(5)[2];
        let head = receipt.split('~').next().unwrap();
        let jws: Vec<&str> = head.split('.').collect();
        let mut payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jws[1]).unwrap()).unwrap();
        payload["size"] = 6.into();
        let forged = format!("{}.{}.{}", jws[0], b64(&payload), jws[2]);
        assert_eq!(
            verify(&with_part(receipt, 0, forged), &keys()),
            Err(ReceiptError::BadSignature(
                Signer::new(SigningKey::from_bytes(&[3; 32]))
                    .key_id()
                    .to_owned()
            ))
        );
        let other = Keys::one(SigningKey::from_bytes(&[4; 32]).verifying_key());
        assert!(matches!(
            verify(receipt, &other),
            Err(ReceiptError::UnknownKey(_))
        ));
        let typ = b64(&serde_json::json!({"alg": "EdDSA", "typ": "JWT"}));
        let retyped = format!("{typ}.{}.{}", jws[1], jws[2]);
        assert!(matches!(
            verify(&with_part(receipt, 0, retyped), &keys()),
            Err(ReceiptError::Header(_))
        ));
    }

    #[test]
    fn a_head_with_critical_extensions_and_an_overlong_path_are_refused() {
        let signer = Signer::new(SigningKey::from_bytes(&[3; 32]));
        let json = serde_json::to_vec(&Receipt::example(0)).unwrap();
        let tree = Tree::new(vec![merkle::leaf_hash(&json)]).unwrap();
        let header = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"alg": "EdDSA", "kid": signer.key_id(),
                "typ": format::HEAD_TYPE, "crit": ["exp"]})
            .to_string(),
        );
        let head = format::sign_head(&signer, &header, &tree.root(), 1, 1);
        let receipt = format::receipt(&head, &json, 0, &[]);
        let err = verify(&receipt, &keys()).unwrap_err();
        assert!(
            matches!(&err, ReceiptError::Header(why) if why.contains("crit")),
            "{err}"
        );
        let long = serde_json::json!({"index": 0, "path": vec!["x"; 65]});
        let err = verify(&with_part(&batch(1)[0], 2, b64(&long)), &keys()).unwrap_err();
        assert!(
            matches!(&err, ReceiptError::Malformed(why) if why.contains("65 hashes")),
            "{err}"
        );
    }

    #[test]
    fn malformed_receipts_say_so() {
        let receipt = &batch(2)[0];
        for bad in [
            "a~b".to_owned(),
            format!("{receipt}~x"),
            with_part(receipt, 1, "*".into()),
            with_part(receipt, 2, b64(&serde_json::json!({"index": 0}))),
            with_part(receipt, 0, "a.b".into()),
        ] {
            assert!(
                matches!(verify(&bad, &keys()), Err(ReceiptError::Malformed(_))),
                "{bad}: {:?}",
                verify(&bad, &keys())
            );
        }
    }

    #[test]
    fn a_receipt_signed_alone_still_verifies() {
        let signer = Signer::new(SigningKey::from_bytes(&[3; 32]));
        let header = b64(&serde_json::json!({
            "alg": "EdDSA", "kid": signer.key_id(), "typ": SINGLE_TYPE,
        }));
        let message = format!(
            "{header}.{}",
            b64(&serde_json::to_value(Receipt::example(9)).unwrap())
        );
        let jws = format!(
            "{message}.{}",
            URL_SAFE_NO_PAD.encode(signer.sign(message.as_bytes()))
        );
        let verified = verify(&jws, &keys()).unwrap();
        assert_eq!((verified.claims, verified.size), (Receipt::example(9), 1));
        let forged = jws.replacen(&message[header.len() + 1..header.len() + 5], "AAAA", 1);
        assert!(verify(&forged, &keys()).is_err());
    }
}
