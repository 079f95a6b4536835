//! Signed decision receipts: every decided request's response carries `x-warden-receipt`,
//! proof of what Warden decided that anyone holding the audit public key can check:
//!
//! ```json
//! {"iss":"warden","iat":1796300000,"decision_id":"…","action_digest":"sha256:…",
//!  "decision":"allow","policies":["allow-fleet-models"],"seq":41}
//! ```
//!
//! Receipts are signed a batch at a time ([`batch`]): the claims of every receipt in a batch
//! are the leaves of a Merkle tree (RFC 9162 §2.1, [`merkle`]), one Ed25519 signature covers
//! the tree's root (the signed head), and each receipt carries its claims, its inclusion
//! proof and the signed head ([`format`]), so it verifies alone ([`verify()`]).
//! `action_digest` is also in the decision record (`seq`), computed from the record's own
//! fields ([`action_digest`]), so a receipt names one record of the log and the record can be
//! checked against it. A platform can so prove what Warden authorised without trusting the
//! agent that shows the receipt.

pub mod batch;
mod claims;
pub mod format;
pub mod merkle;
pub mod verify;

pub use batch::{BatchSigner, Pending};
pub use claims::{Receipt, action_digest};
pub use verify::{ReceiptError, Verified, verify};
