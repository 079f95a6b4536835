//! The sign-in's tokens at the SSO provider: its access token, kept so that the console can ask
//! the provider again who an approver is (its userinfo endpoint) before they see an approval or
//! vote (`console.oidc.recheck_at_vote`), and its refresh token (when the provider gave one),
//! with which the console gets a new access token when that one expires (`console::refresh`).
//!
//! Both live server-side only, sealed together: in the session's row of the state store, sealed (AES-256-GCM
//! under the factor key) for the session's id, which the store does not hold (only its hash):
//! neither a copy of the store nor the factor key alone opens them, and no cookie carries them.
//! They are never logged: `Debug` shows no token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::approval::sealed::{Purpose, SealError, Sealer};

/// An access token at the SSO provider (and the refresh token that renews it, when the
/// provider gave one), with the subject it was issued for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdpToken {
    /// The access token (bearer) for the provider's userinfo endpoint.
    access_token: String,
    /// The refresh token that gets a new access token when this one expires; absent when the
    /// provider gave none (and in tokens sealed before the console used refresh tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
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
            .field("renewable", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for IdpToken {
    fn drop(&mut self) {
        self.access_token.zeroize();
        if let Some(refresh) = &mut self.refresh_token {
            refresh.zeroize();
        }
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
            refresh_token: None,
            subject,
            expires_at,
        }
    }

    /// The token with `refresh_token` to renew it (the provider's `refresh_token`, if any).
    pub fn renewable_with(mut self, refresh_token: Option<String>) -> IdpToken {
        self.refresh_token = refresh_token;
        self
    }

    /// The bearer token.
    pub fn secret(&self) -> &str {
        &self.access_token
    }

    /// The refresh token, when the provider gave one.
    pub fn refresh_secret(&self) -> Option<&str> {
        self.refresh_token.as_deref()
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
        )
        .renewable_with(Some("rt-very-secret".into()));
        let sealed = token.seal(&sealer(), "session-1").unwrap();
        for secret in [b"at-very-secret", b"rt-very-secret"] {
            assert!(
                !sealed.windows(14).any(|w| w == secret),
                "sealed, not stored as it is"
            );
        }
        let opened = IdpToken::open(&sealer(), "session-1", &sealed).unwrap();
        assert_eq!(opened, token);
        assert_eq!(opened.secret(), "at-very-secret");
        assert_eq!(opened.refresh_secret(), Some("rt-very-secret"));
        assert!(opened.expires().unwrap() > now + Duration::from_secs(3599));
        assert!(
            IdpToken::open(&sealer(), "session-2", &sealed).is_err(),
            "another session's row"
        );
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("at-very-secret")
                && !shown.contains("rt-very-secret")
                && shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn a_token_sealed_before_refresh_tokens_still_opens_without_one() {
        // What a session stored by an earlier Warden holds: no refresh_token field.
        let plain = br#"{"access_token":"at","subject":"alice","expires_at":1}"#;
        let sealed = sealer()
            .seal(Purpose::IdpToken, "session-1", plain)
            .unwrap();
        let opened = IdpToken::open(&sealer(), "session-1", &sealed).unwrap();
        assert_eq!(opened.secret(), "at");
        assert_eq!(opened.refresh_secret(), None);
    }
}
