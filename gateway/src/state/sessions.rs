//! The console-session repository: who is signed in to the approval console. Only hashes of
//! the session id and of its CSRF token are stored, so a copy of the store opens no session.

use std::time::Duration;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::error::StateError;

/// A new console session, as the login creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The session id the browser holds in its cookie (only its hash is stored).
    pub id: String,
    /// The CSRF token the console's forms carry (only its hash is stored).
    pub csrf_token: String,
    /// The approver's subject at the SSO provider.
    pub subject: String,
    /// The name shown in the console and the audit log.
    pub display_name: String,
    /// The approver's groups, from the SSO provider.
    pub groups: Vec<String>,
    /// Other names the approver goes by (a verified e-mail address, the preferred username).
    pub aliases: Vec<String>,
    /// The SSO provider's access token of the sign-in, sealed (for asking the provider again
    /// who the approver is when they vote); `None` when the console does not ask again.
    pub sealed_idp_token: Option<Vec<u8>>,
    /// How long the session lasts.
    pub ttl: Duration,
}

/// A console session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub subject: String,
    pub display_name: String,
    pub groups: Vec<String>,
    /// Other names the approver goes by (a verified e-mail address, the preferred username).
    pub aliases: Vec<String>,
    /// [`secret_hash`] of the CSRF token.
    pub csrf_hash: String,
    /// The sign-in's tokens at the SSO provider, sealed for this session's id.
    pub sealed_idp_token: Option<Vec<u8>>,
    /// How many times those tokens were replaced (refreshed): the version a replacement
    /// compares against.
    pub idp_token_version: i64,
    /// Until when a replica's claim to refresh the tokens holds (ms since the Unix epoch), if
    /// one claimed it.
    pub idp_refreshing_until_ms: Option<i64>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub last_seen_ms: i64,
}

impl ConsoleSession {
    /// Whether `token` is this session's CSRF token.
    pub fn csrf_matches(&self, token: &str) -> bool {
        let given = secret_hash(token);
        // Both are hashes of the same length; compare without stopping at the first difference.
        given.len() == self.csrf_hash.len()
            && given
                .bytes()
                .zip(self.csrf_hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// How a session id or CSRF token is stored: `sha256:` and the hex of its SHA-256.
pub fn secret_hash(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// Console sessions in the state store, shared by every replica.
pub trait SessionRepository: Send + Sync {
    /// Stores `session`.
    fn create(&self, session: NewSession) -> BoxFuture<'_, Result<(), StateError>>;

    /// The live session whose id is `id`, marked as seen now; `None` when there is none or it
    /// has expired.
    fn resume<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConsoleSession>, StateError>>;

    /// Claims, until `until_ms`, the refreshing of the sealed tokens of session `id` at version
    /// `version`: whether this caller holds the claim now. Refused while another claim holds,
    /// or once the tokens were replaced (another version); so that one replica at a time spends
    /// the session's refresh token.
    fn claim_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Replaces the sealed tokens of live session `id`, if they are still at `version`, with
    /// `sealed` (version `version + 1`), moves the session's end to `expires_ms` when given (a
    /// refreshed ID token's, within `console.session_ttl` of sign-in), and lifts the claim to
    /// refresh them: whether they were replaced.
    fn replace_idp_token<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        sealed: Vec<u8>,
        expires_ms: Option<i64>,
    ) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Lifts the claim (`until_ms`, version `version`) to refresh the tokens of session `id`,
    /// when its refresh failed, so that the next try need not wait for it to lapse.
    fn release_refresh<'a>(
        &'a self,
        id: &'a str,
        version: i64,
        until_ms: i64,
    ) -> BoxFuture<'a, Result<(), StateError>>;

    /// Ends the session whose id is `id` (a logout); whether there was one.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StateError>>;

    /// Removes every expired session; how many.
    fn purge_expired(&self) -> BoxFuture<'_, Result<u64, StateError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_matches_only_its_own_hash() {
        let session = ConsoleSession {
            subject: "alice".into(),
            display_name: "Alice".into(),
            groups: vec![],
            aliases: vec![],
            csrf_hash: secret_hash("token-1"),
            sealed_idp_token: None,
            idp_token_version: 0,
            idp_refreshing_until_ms: None,
            created_ms: 0,
            expires_ms: 1,
            last_seen_ms: 0,
        };
        assert!(session.csrf_matches("token-1"));
        assert!(!session.csrf_matches("token-2"));
        assert!(!session.csrf_matches(""));
        assert!(!secret_hash("token-1").contains("token-1"));
    }
}
