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
    /// What the sign-in's ID token said that a refreshed one must say too, and the newest
    /// one's lifetime; absent in tokens sealed before the console kept it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<IdTokenBinding>,
}

/// The sign-in's ID token as a refreshed one is held to (OpenID Connect Core 12.2: the same
/// `iss` (the configured issuer, which every ID token is checked against), `sub` (the
/// token's `subject`), `aud`, `azp` and `auth_time`, and a `nonce`, if any, of the sign-in's),
/// and when the newest ID token was issued and expires (seconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdTokenBinding {
    /// `aud` of the sign-in's ID token.
    pub audiences: Vec<String>,
    /// `azp` of the sign-in's ID token, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_party: Option<String>,
    /// `auth_time` of the sign-in's ID token, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// `nonce` of the sign-in's ID token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// `iat` of the newest ID token.
    pub issued_at: i64,
    /// `exp` of the newest ID token.
    pub expires_at: i64,
    /// Whether the provider renews the ID token when the access token is refreshed: `false`
    /// once a refresh came back without one (it is not asked again for that alone).
    #[serde(default = "renews_by_default")]
    pub renewed_by_refresh: bool,
}

fn renews_by_default() -> bool {
    true
}

impl IdTokenBinding {
    /// Whether `newer`, the claims of an ID token a refresh returned for subject `subject`
    /// (its `sub` being `newer_subject`), may stand for this sign-in's (OpenID Connect Core
    /// 12.2); what differs, otherwise. Its signature, issuer, audience and expiry are checked
    /// as at sign-in before this.
    pub fn accepts(
        &self,
        subject: &str,
        newer_subject: &str,
        newer: &IdTokenBinding,
    ) -> Result<(), String> {
        if newer_subject != subject {
            return Err("its sub is not the sign-in's".into());
        }
        let mut ours = self.audiences.clone();
        let mut theirs = newer.audiences.clone();
        ours.sort();
        theirs.sort();
        if ours != theirs {
            return Err("its aud is not the sign-in's".into());
        }
        if newer.authorized_party != self.authorized_party {
            return Err("its azp is not the sign-in's".into());
        }
        if newer.auth_time.is_some() && newer.auth_time != self.auth_time {
            return Err("its auth_time is not the time of the sign-in".into());
        }
        if newer.nonce.is_some() && newer.nonce != self.nonce {
            return Err("its nonce is not the sign-in's".into());
        }
        if newer.issued_at < self.issued_at {
            return Err("it was issued before the ID token it would replace".into());
        }
        Ok(())
    }

    /// This sign-in's binding with `newer`'s lifetime. A provider whose new ID token expires
    /// no later than the one it replaces is not asked again for that alone.
    pub fn renewed_by(&self, newer: &IdTokenBinding) -> IdTokenBinding {
        IdTokenBinding {
            issued_at: newer.issued_at,
            expires_at: newer.expires_at,
            renewed_by_refresh: newer.expires_at > self.expires_at,
            ..self.clone()
        }
    }
}

impl std::fmt::Debug for IdpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpToken")
            .field("subject", &self.subject)
            .field("expires_at", &self.expires_at)
            .field("renewable", &self.refresh_token.is_some())
            .field(
                "id_token_expires_at",
                &self.id_token.as_ref().map(|t| t.expires_at),
            )
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
            id_token: None,
        }
    }

    /// The token with `id_token`, the sign-in's ID token as a refreshed one is held to.
    pub fn bound_to(mut self, id_token: Option<IdTokenBinding>) -> IdpToken {
        self.id_token = id_token;
        self
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

    fn signed_in() -> IdTokenBinding {
        IdTokenBinding {
            audiences: vec!["warden-console".into(), "api".into()],
            authorized_party: Some("warden-console".into()),
            auth_time: Some(1_000),
            nonce: Some("nonce-1".into()),
            issued_at: 1_000,
            expires_at: 1_300,
            renewed_by_refresh: true,
        }
    }

    #[test]
    fn a_refreshed_id_token_stands_for_the_sign_in_only_if_it_is_of_it() {
        let ours = signed_in();
        let newer = IdTokenBinding {
            audiences: vec!["api".into(), "warden-console".into()],
            nonce: None,
            issued_at: 1_200,
            expires_at: 1_500,
            ..signed_in()
        };
        assert_eq!(ours.accepts("alice", "alice", &newer), Ok(()));
        let renewed = ours.renewed_by(&newer);
        assert_eq!((renewed.issued_at, renewed.expires_at), (1_200, 1_500));
        assert_eq!(
            renewed.audiences, ours.audiences,
            "the sign-in's, to hold the next to"
        );
        assert!(renewed.renewed_by_refresh);
        // OpenID Connect Core 12.2: each of these is refused.
        let refused = |newer: IdTokenBinding, subject: &str, says: &str| {
            let e = ours.accepts("alice", subject, &newer).unwrap_err();
            assert!(e.contains(says), "{e}");
        };
        refused(newer.clone(), "mallory", "sub");
        let aud = IdTokenBinding {
            audiences: vec!["warden-console".into()],
            ..newer.clone()
        };
        refused(aud, "alice", "aud");
        let azp = IdTokenBinding {
            authorized_party: Some("other".into()),
            ..newer.clone()
        };
        refused(azp, "alice", "azp");
        let auth_time = IdTokenBinding {
            auth_time: Some(1_100),
            ..newer.clone()
        };
        refused(auth_time, "alice", "auth_time");
        let nonce = IdTokenBinding {
            nonce: Some("nonce-2".into()),
            ..newer.clone()
        };
        refused(nonce, "alice", "nonce");
        let older = IdTokenBinding {
            issued_at: 900,
            ..newer.clone()
        };
        refused(older, "alice", "issued before");
        // One that expires no later is taken, but the provider is not asked again for it.
        let same = IdTokenBinding {
            expires_at: 1_300,
            ..newer
        };
        assert!(!ours.renewed_by(&same).renewed_by_refresh);
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
