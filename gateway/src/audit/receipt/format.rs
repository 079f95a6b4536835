//! The `x-warden-receipt` value: `<signed head>~<claims>~<proof>`.
//!
//! - `<signed head>`: a compact JWS (RFC 7515, `alg: EdDSA`, `typ:` [`HEAD_TYPE`], `kid`: the
//!   audit key's RFC 7638 thumbprint) whose payload is the batch head [`Head`]: the root of the
//!   batch's Merkle tree (RFC 9162 §2.1) and how many receipts it holds.
//! - `<claims>`: base64url (no padding) of the receipt's claims, JSON ([`super::claims`]);
//!   these bytes are the leaf: its hash is `SHA-256(0x00 || bytes)`.
//! - `<proof>`: base64url of the inclusion proof [`Proof`], JSON: the leaf's index in the
//!   batch and its audit path.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::merkle::Hash;
use crate::audit::signer::Signer;

/// The signed head's JOSE `typ` (RFC 8725 explicit typing: a batch head is not a token).
pub const HEAD_TYPE: &str = "warden-receipt-batch+jwt";

/// The `typ` of a receipt signed alone (Warden before batching): still verified.
pub const SINGLE_TYPE: &str = "warden-receipt+jwt";

/// Between the three parts.
pub const SEPARATOR: char = '~';

/// What a batch's signed head says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Always `warden`.
    pub iss: String,
    /// When the batch was signed (seconds since the epoch).
    pub iat: u64,
    /// How many receipts the batch holds (the tree's size).
    pub size: u64,
    /// The tree's root hash, base64url.
    pub root: String,
}

/// Where a receipt's claims sit in their batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The leaf's index, from 0.
    pub index: u64,
    /// The audit path: base64url hashes, the leaf's sibling first (RFC 9162 §2.1.3.1).
    pub path: Vec<String>,
}

/// The encoded JOSE header of a batch head signed by `signer`.
pub fn head_header(signer: &Signer) -> String {
    let header = serde_json::json!({"alg": "EdDSA", "kid": signer.key_id(), "typ": HEAD_TYPE});
    URL_SAFE_NO_PAD.encode(header.to_string())
}

/// The compact JWS of the head of a batch of `size` receipts whose tree has `root`
/// (`header`: from [`head_header`]).
pub fn sign_head(signer: &Signer, header: &str, root: &Hash, size: usize, iat: u64) -> String {
    let head = Head {
        iss: "warden".to_owned(),
        iat,
        size: size as u64,
        root: URL_SAFE_NO_PAD.encode(root),
    };
    let payload = serde_json::to_vec(&head).unwrap_or_default();
    let mut jws = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
    jws.push_str(header);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
    let signature = signer.sign(jws.as_bytes());
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
    jws
}

/// The receipt of `claims` (their JSON), leaf `index` of the batch signed by `head` with
/// audit `path`.
pub fn receipt(head: &str, claims: &[u8], index: usize, path: &[Hash]) -> String {
    let proof = Proof {
        index: index as u64,
        path: path.iter().map(|h| URL_SAFE_NO_PAD.encode(h)).collect(),
    };
    let proof = serde_json::to_vec(&proof).unwrap_or_default();
    let mut out = String::with_capacity(head.len() + 2 + (claims.len() + proof.len()) * 4 / 3 + 8);
    out.push_str(head);
    out.push(SEPARATOR);
    URL_SAFE_NO_PAD.encode_string(claims, &mut out);
    out.push(SEPARATOR);
    URL_SAFE_NO_PAD.encode_string(proof, &mut out);
    out
}
