//! The sign-in's access token at the SSO provider, kept so that the console can ask the
//! provider again who an approver is (its userinfo endpoint) before they see an approval or
//! vote (`console.oidc.recheck_at_vote`).
//!
//! It lives server-side only: in the session's row of the state store, sealed (AES-256-GCM
//! under the factor key) for the session's id, which the store does not hold (only its hash):
//! neither a copy of the store nor the factor key alone opens it, and no cookie carries it.
//! It is never logged: its `Debug` shows no token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::approval::sealed::{Purpose, SealError, Sealer};

/// An access token at the SSO provider, with the subject it was issued for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpToken {
    /// The access token (bearer) for the provider's userinfo endpoint.
    access_token: String,
    /// The `sub` the sign-in's ID token named: userinfo must name the same.
    pub subject: String,
    /// When the token expires (seconds since the Unix epoch), when the provider said.
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for IdpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpToken")
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Drop for IdpToken {
    fn drop(&mut self) {
        self.access_token.zeroize();
    }
}

impl IdpToken {
    /// `access_token` for `subject`, issued at `now` for `expires_in` (when the provider said).
    pub fn new(
        access_token: String,
        subject: String,
        expires_in: Option<Duration>,
        now: SystemTime,
    ) -> IdpToken {
        let expires_at = expires_in.and_then(|left| {
            (now + left)
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs())
        });
        IdpToken {
            access_token,
            subject,
            expires_at,
        }
    }

    /// The bearer token.
    pub fn secret(&self) -> &str {
        &self.access_token
    }

    /// When the token expires, if the provider said.
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires_at
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
    }

    /// The token sealed for session `session_id`.
    pub fn seal(&self, sealer: &Sealer, session_id: &str) -> Result<Vec<u8>, SealError> {
        let plain = Zeroizing::new(serde_json::to_vec(self).map_err(|_| SealError::Seal)?);
        sealer.seal(Purpose::IdpToken, session_id, &plain)
    }

    /// The token `blob` holds, if it was sealed for session `session_id`.
    pub fn open(sealer: &Sealer, session_id: &str, blob: &[u8]) -> Result<IdpToken, SealError> {
        let plain = sealer.open(Purpose::IdpToken, session_id, blob)?;
        serde_json::from_slice(&plain).map_err(|_| SealError::Malformed("not an access token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::sealed::FactorKey;

    fn sealer() -> Sealer {
        Sealer::new(vec![FactorKey::from_bytes(&[3; 32])]).unwrap()
    }

    #[test]
    fn the_token_opens_only_for_its_own_session_and_is_never_printed() {
        let now = SystemTime::now();
        let token = IdpToken::new(
            "at-very-secret".into(),
            "alice".into(),
            Some(Duration::from_secs(3600)),
            now,
        );
        let sealed = token.seal(&sealer(), "session-1").unwrap();
        assert!(
            !sealed.windows(14).any(|w| w == b"at-very-secret"),
            "sealed, not stored as it is"
        );
        let opened = IdpToken::open(&sealer(), "session-1", &sealed).unwrap();
        assert_eq!(opened, token);
        assert_eq!(opened.secret(), "at-very-secret");
        assert!(opened.expires().unwrap() > now + Duration::from_secs(3599));
        assert!(
            IdpToken::open(&sealer(), "session-2", &sealed).is_err(),
            "another session's row"
        );
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("at-very-secret") && shown.contains("alice"),
            "{shown}"
        );
    }
}
