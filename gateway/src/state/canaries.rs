//! The canary repository: canary tokens Warden issued (planted credentials and documents) and
//! the values that betray them, as the state store keeps them for every replica. Minting and
//! matching live in `canary/`; this is only what is stored.

use futures_util::future::BoxFuture;

use super::error::StateError;

/// One canary as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryRecord {
    /// `cn_` and 16 hex digits: how records, alerts and the CLI name it.
    pub id: String,
    /// `aws-key`, `api-token`, `url` or `document`.
    pub kind: String,
    /// What the operator said it is for (where it is planted).
    pub label: String,
    /// The strings whose appearance in traffic betrays it (an AWS key's id and secret, a
    /// token, a URL's host name, a document's marker).
    pub needles: Vec<String>,
    /// When it was issued, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
}

/// Canary tokens in the state store, shared by every replica.
pub trait CanaryRepository: Send + Sync {
    /// Stores a newly issued canary.
    fn issue(&self, canary: CanaryRecord) -> BoxFuture<'_, Result<(), StateError>>;

    /// Every canary, revoked ones included, oldest first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<CanaryRecord>, StateError>>;

    /// Marks the canary `id` revoked (no longer looked for); whether a live one was there.
    fn revoke<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>>;
}

/// The needles as stored: a JSON array of strings.
pub(super) fn needles_json(needles: &[String]) -> String {
    serde_json::to_string(needles).unwrap_or_else(|_| "[]".into())
}

/// The needles from their stored JSON; `None` when it is not an array of strings.
pub(super) fn needles_from_json(json: &str) -> Option<Vec<String>> {
    serde_json::from_str(json).ok()
}
