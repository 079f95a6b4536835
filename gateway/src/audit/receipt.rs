//! Signed decision receipts: every decided request's response carries `x-warden-receipt`, a
//! compact JWS (RFC 7515, `alg: EdDSA`) signed with the audit key over what Warden decided:
//!
//! ```json
//! {"iss":"warden","iat":1796300000,"decision_id":"…","action_digest":"sha256:…",
//!  "decision":"allow","policies":["allow-fleet-models"],"seq":41}
//! ```
//!
//! `action_digest` is also in the decision record (`seq`), computed from the record's own
//! fields ([`action_digest`]), so a receipt names one record of the log and the record can be
//! checked against it. A platform can so prove what Warden authorised without trusting the
//! agent that shows the receipt.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::Keys;
use super::event::AuditEvent;
use super::signer::Signer;

/// The JOSE header's `typ` (RFC 8725 explicit typing: a receipt is not a token).
pub const TYPE: &str = "warden-receipt+jwt";

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Always `warden`.
    pub iss: String,
    /// When it was signed (seconds since the epoch).
    pub iat: u64,
    /// The decision's id (`x-warden-decision-id`, the record's `decision_id`).
    pub decision_id: String,
    /// `sha256:<hex>` of the action ([`action_digest`]).
    pub action_digest: String,
    /// `allow`, `deny` or `approval_required`.
    pub decision: String,
    /// The determining policies.
    pub policies: Vec<String>,
    /// The decision record's position in the audit chain.
    pub seq: u64,
}

/// `sha256:<hex>` over who asked for what: principal (kind, issuer, id), action, resource and
/// the arguments' digest, each on a line of its own after `warden-action/v1`. The decision
/// record carries it; approvals bind to it.
pub fn action_digest(event: &AuditEvent) -> String {
    let mut hash = Sha256::new();
    hash.update(b"warden-action/v1\n");
    for part in [
        &*event.principal.kind,
        &*event.principal.issuer,
        &*event.principal.id,
        &*event.action,
        &*event.resource,
        &*event.content_digest,
    ] {
        hash.update(part.as_bytes());
        hash.update(b"\n");
    }
    let mut out = String::with_capacity(71);
    out.push_str("sha256:");
    for byte in hash.finalize() {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Signs receipts with the audit key; the encoded JOSE header is made once.
pub struct Receipts {
    header: String,
}

impl Receipts {
    /// Receipts signed by `signer`.
    pub fn new(signer: &Signer) -> Receipts {
        let header = serde_json::json!({"alg": "EdDSA", "kid": signer.key_id(), "typ": TYPE});
        Receipts {
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
        }
    }

    /// The compact JWS of `receipt`.
    pub fn sign(&self, signer: &Signer, receipt: &Receipt) -> String {
        let payload = serde_json::to_vec(receipt).unwrap_or_default();
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        jws.push_str(&self.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
        let signature = signer.sign(jws.as_bytes());
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        jws
    }
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("not a compact JWS (three base64url parts separated by dots): {0}")]
    Malformed(String),
    #[error("the receipt's header is not Warden's ({0})")]
    Header(String),
    #[error("signed by key {0}, which is not among the keys given (--key, --jwks)")]
    UnknownKey(String),
    #[error("the signature does not verify with key {0}: the receipt was altered or forged")]
    BadSignature(String),
    #[error("the receipt's claims are not a Warden receipt: {0}")]
    Claims(String),
}

/// Checks a compact JWS receipt against `keys`; returns what it says.
pub fn verify(jws: &str, keys: &Keys) -> Result<Receipt, ReceiptError> {
    let jws = jws.trim();
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReceiptError::Malformed("not three parts".into()));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| ReceiptError::Malformed(format!("{what}: {e}")))
    };
    let head: serde_json::Value = serde_json::from_slice(&decode(header, "header")?)
        .map_err(|e| ReceiptError::Header(e.to_string()))?;
    if head["alg"] != "EdDSA" || head["typ"] != TYPE {
        return Err(ReceiptError::Header(format!(
            "alg {} typ {}; expected EdDSA and {TYPE}",
            head["alg"], head["typ"]
        )));
    }
    let kid = head["kid"].as_str().unwrap_or_default().to_owned();
    let key = keys
        .get(&kid)
        .ok_or_else(|| ReceiptError::UnknownKey(kid.clone()))?;
    let signature = <[u8; 64]>::try_from(decode(signature, "signature")?)
        .map_err(|_| ReceiptError::Malformed("the signature is not 64 bytes".into()))?;
    let signed = &jws[..header.len() + 1 + payload.len()];
    key.verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| ReceiptError::BadSignature(kid))?;
    serde_json::from_slice(&decode(payload, "payload")?)
        .map_err(|e| ReceiptError::Claims(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::EventKind;
    use ed25519_dalek::SigningKey;

    fn receipt() -> Receipt {
        Receipt {
            iss: "warden".into(),
            iat: 1_796_300_000,
            decision_id: "d1".into(),
            action_digest: "sha256:00".into(),
            decision: "allow".into(),
            policies: vec!["p".into()],
            seq: 41,
        }
    }

    #[test]
    fn a_signed_receipt_verifies_and_an_altered_one_does_not() {
        let signer = Signer::new(SigningKey::from_bytes(&[3; 32]));
        let keys = Keys::one(SigningKey::from_bytes(&[3; 32]).verifying_key());
        let jws = Receipts::new(&signer).sign(&signer, &receipt());
        assert_eq!(verify(&jws, &keys), Ok(receipt()));

        let mut forged = receipt();
        forged.decision = "deny".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        let parts: Vec<&str> = jws.split('.').collect();
        let altered = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert!(matches!(
            verify(&altered, &keys),
            Err(ReceiptError::BadSignature(_))
        ));
        let other = Keys::one(SigningKey::from_bytes(&[4; 32]).verifying_key());
        assert!(matches!(
            verify(&jws, &other),
            Err(ReceiptError::UnknownKey(_))
        ));
        assert!(matches!(
            verify("a.b", &keys),
            Err(ReceiptError::Malformed(_))
        ));
    }

    #[test]
    fn the_action_digest_covers_who_what_and_the_arguments() {
        let mut event = AuditEvent::now(EventKind::Decision);
        event.principal.id = "bot".into();
        event.action = "mcp:call_tool".into();
        event.resource = "Tool::\"github/create_issue\"".into();
        let base = action_digest(&event);
        assert!(base.starts_with("sha256:") && base.len() == 71);
        event.content_digest = "sha256:ab".into();
        assert_ne!(action_digest(&event), base);
        event.content_digest = "".into();
        event.time = crate::audit::event::Timestamp(std::time::UNIX_EPOCH);
        assert_eq!(
            action_digest(&event),
            base,
            "time is not part of the action"
        );
        event.principal.id = "bot2".into();
        assert_ne!(action_digest(&event), base);
    }
}
