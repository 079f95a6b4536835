//! Keeping a console session's access token at the SSO provider alive: when it has expired, or
//! expires within [`REFRESH_AHEAD`], the console gets a new one for the sign-in's refresh token
//! ([`Sso::refresh`]) before it asks the provider's userinfo endpoint who the approver is, and
//! stores the new tokens (sealed, as at sign-in) for every replica. So a session lasts
//! `console.session_ttl` (or until the ID token's `exp`), not the access token's few minutes.
//!
//! - The provider refuses the refresh token (`invalid_grant`: the account disabled, the token
//!   revoked, the sign-in ended there): the session ends (deleted from the store), and the
//!   approver signs in again.
//! - The provider cannot answer: nothing is decided (fail closed, as when userinfo cannot
//!   answer); the session and its tokens stay as they were, for the next try.
//! - Replicas: a provider that rotates refresh tokens (a new one at each refresh, the old one
//!   spent) ends the whole sign-in when a spent one is used again, so two replicas (or two
//!   requests) must never refresh one session at once. One claims the refresh in the store
//!   (for [`CLAIM_FOR`], on the tokens' version), the others wait for the tokens it stores;
//!   its replacement is a compare-and-swap on that version.

use std::time::{Duration, Instant, SystemTime};

use super::idp_token::IdpToken;
use super::sso::{Sso, SsoError};
use crate::approval::sealed::Sealer;
use crate::state::pins::now_ms;
use crate::state::sessions::{ConsoleSession, SessionRepository};

/// How long before its expiry an access token is refreshed: room for the userinfo request it
/// is sent with to arrive while it is still valid.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(10);
/// How long one replica's claim to refresh a session's tokens holds: discovery and the token
/// request, each bounded at 10 s. A replica that dies mid-refresh holds no one up longer.
pub const CLAIM_FOR: Duration = Duration::from_secs(25);
/// How often a replica waiting for another's refresh reads the session again.
const POLL: Duration = Duration::from_millis(200);

/// Why a session has no access token to ask the provider with now.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("the session keeps no token this replica can open")]
    NoToken,
    #[error("the access token expired and there is no refresh token")]
    Expired,
    #[error("the SSO provider refused to renew the sign-in, or the session ended meanwhile")]
    Ended,
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Sso(SsoError),
}

/// What a session's access token needs before it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// It is valid beyond [`REFRESH_AHEAD`] (or the provider gave no expiry), or it still
    /// holds and cannot be refreshed: use it.
    Use,
    /// It has expired or is about to, and there is a refresh token: refresh it first.
    Refresh,
    /// It has expired and there is no refresh token: the session is over.
    Expired,
}

/// What `token` needs at `now`.
pub fn due(token: &IdpToken, now: SystemTime) -> Due {
    let Some(expires) = token.expires() else {
        return Due::Use;
    };
    if expires > now + REFRESH_AHEAD {
        Due::Use
    } else if token.refresh_secret().is_some() {
        Due::Refresh
    } else if expires > now {
        Due::Use
    } else {
        Due::Expired
    }
}

/// The access token to ask the provider with for session `session_id` (`record`, as read at
/// the start of this request): the one it keeps, or a new one when that one is due (refreshed
/// by this replica, or by another that claimed it first and stored it).
pub async fn current(
    sso: &Sso,
    sealer: &Sealer,
    sessions: &dyn SessionRepository,
    session_id: &str,
    record: &ConsoleSession,
) -> Result<IdpToken, RefreshError> {
    let mut version = record.idp_token_version;
    let mut token = open(sealer, session_id, record)?;
    let deadline = Instant::now() + CLAIM_FOR + Duration::from_secs(5);
    loop {
        match due(&token, SystemTime::now()) {
            Due::Use => return Ok(token),
            Due::Expired => return Err(RefreshError::Expired),
            Due::Refresh => {}
        }
        let until = now_ms().saturating_add(i64::try_from(CLAIM_FOR.as_millis()).unwrap_or(0));
        let claimed = sessions
            .claim_refresh(session_id, version, until)
            .await
            .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
        if claimed {
            return refresh(sso, sealer, sessions, session_id, version, until, &token).await;
        }
        // Another replica (or another request of this session) is refreshing them: its
        // tokens, once stored, serve this request too.
        if Instant::now() >= deadline {
            return Err(RefreshError::Unavailable(
                "another replica's renewal of your sign-in did not finish in time".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
        let again = sessions
            .resume(session_id)
            .await
            .map_err(|e| RefreshError::Unavailable(e.to_string()))?
            .ok_or(RefreshError::Ended)?;
        version = again.idp_token_version;
        token = open(sealer, session_id, &again)?;
    }
}

/// The token `record` keeps, opened for session `session_id`.
fn open(
    sealer: &Sealer,
    session_id: &str,
    record: &ConsoleSession,
) -> Result<IdpToken, RefreshError> {
    let blob = record
        .sealed_idp_token
        .as_deref()
        .ok_or(RefreshError::NoToken)?;
    IdpToken::open(sealer, session_id, blob).map_err(|_| RefreshError::NoToken)
}

/// Refreshes `token` of session `session_id` under this replica's claim (`version`, until
/// `until`) and stores the new tokens.
async fn refresh(
    sso: &Sso,
    sealer: &Sealer,
    sessions: &dyn SessionRepository,
    session_id: &str,
    version: i64,
    until: i64,
    token: &IdpToken,
) -> Result<IdpToken, RefreshError> {
    let renewed = match sso.refresh(token).await {
        Ok(renewed) => renewed,
        Err(SsoError::RefreshRefused) => {
            // The provider ended the sign-in: so does the console, on every replica.
            if let Err(e) = sessions.delete(session_id).await {
                tracing::warn!(error = %e, subject = %token.subject, "a console session the SSO provider ended could not be removed");
            }
            tracing::info!(subject = %token.subject, "the SSO provider refused to renew a console sign-in: its session ended");
            return Err(RefreshError::Ended);
        }
        Err(e) => {
            tracing::warn!(error = %e, subject = %token.subject, "the SSO provider could not renew a console sign-in");
            if let Err(e) = sessions.release_refresh(session_id, version, until).await {
                tracing::debug!(error = %e, "a console session's refresh claim could not be lifted; it lapses");
            }
            return Err(RefreshError::Sso(e));
        }
    };
    let sealed = renewed
        .seal(sealer, session_id)
        .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
    let stored = sessions
        .replace_idp_token(session_id, version, sealed)
        .await
        .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
    if !stored {
        // The session ended meanwhile (its ttl, a sign-out): nothing is decided with it.
        return Err(RefreshError::Ended);
    }
    Ok(renewed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approval::sealed::FactorKey;
    use crate::state::Store;
    use crate::state::sessions::NewSession;
    use crate::state::sqlite::SqliteStore;

    fn sealer() -> Sealer {
        Sealer::new(vec![FactorKey::from_bytes(&[9; 32])]).unwrap()
    }

    fn token(expires_in: Duration, refresh: Option<&str>) -> IdpToken {
        IdpToken::new(
            "at".into(),
            "alice".into(),
            Some(expires_in),
            SystemTime::now(),
        )
        .renewable_with(refresh.map(str::to_owned))
    }

    #[test]
    fn a_token_is_refreshed_when_it_expires_soon_and_can_be() {
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        assert_eq!(due(&token(hour, Some("rt")), now), Due::Use);
        assert_eq!(due(&token(hour, None), now), Due::Use);
        // Within the margin: refreshed if it can be, else used while it holds.
        let soon = REFRESH_AHEAD - Duration::from_secs(2);
        assert_eq!(due(&token(soon, Some("rt")), now), Due::Refresh);
        assert_eq!(due(&token(soon, None), now), Due::Use);
        // Expired.
        let later = now + Duration::from_secs(120);
        assert_eq!(due(&token(hour, Some("rt")), later), Due::Use);
        let gone = Duration::from_secs(60);
        assert_eq!(due(&token(gone, Some("rt")), later), Due::Refresh);
        assert_eq!(due(&token(gone, None), later), Due::Expired);
        // A provider that said no expiry.
        let forever = IdpToken::new("at".into(), "alice".into(), None, now);
        assert_eq!(due(&forever, later), Due::Use);
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::sqlite(
            SqliteStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        )
    }

    async fn signed_in(store: &Store, sealer: &Sealer, token: &IdpToken) -> ConsoleSession {
        store
            .sessions()
            .create(NewSession {
                id: "s1".into(),
                csrf_token: "c".into(),
                subject: "alice".into(),
                display_name: "Alice".into(),
                groups: vec!["sre".into()],
                aliases: vec![],
                sealed_idp_token: Some(token.seal(sealer, "s1").unwrap()),
                ttl: Duration::from_secs(3600),
            })
            .await
            .unwrap();
        store.sessions().resume("s1").await.unwrap().unwrap()
    }

    /// A provider that cannot be reached, and session `s1` in a new store, its access token
    /// due for a refresh.
    async fn due_session() -> (Sso, Sealer, Store, tempfile::TempDir, ConsoleSession) {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let sealer = sealer();
        let sso = Sso::new(
            &crate::console::sso::tests::oidc(),
            None,
            "http://localhost:9443",
        )
        .unwrap();
        let old = token(Duration::from_secs(1), Some("rt-1"));
        let record = signed_in(&store, &sealer, &old).await;
        (sso, sealer, store, dir, record)
    }

    #[tokio::test]
    async fn a_replica_waits_for_the_tokens_another_one_refreshes() {
        // The provider cannot be reached: only another replica's refresh can serve.
        let (sso, sealer, store, _dir, record) = due_session().await;
        let sessions = store.sessions();
        // The other replica claimed the refresh first, and stores its tokens a moment later.
        let until = now_ms() + 60_000;
        assert!(sessions.claim_refresh("s1", 0, until).await.unwrap());
        let renewed = token(Duration::from_secs(3600), Some("rt-2"));
        let sealed = renewed.seal(&sealer, "s1").unwrap();
        let other = store.sessions();
        let storing = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(other.replace_idp_token("s1", 0, sealed).await.unwrap());
        });
        let got = current(&sso, &sealer, &*sessions, "s1", &record)
            .await
            .unwrap();
        storing.await.unwrap();
        assert_eq!(
            got, renewed,
            "the other replica's tokens, not a second refresh"
        );
    }

    #[tokio::test]
    async fn a_provider_outage_at_refresh_decides_nothing_and_keeps_the_session() {
        let (sso, sealer, store, _dir, record) = due_session().await;
        let old =
            IdpToken::open(&sealer, "s1", record.sealed_idp_token.as_deref().unwrap()).unwrap();
        let sessions = store.sessions();
        let e = current(&sso, &sealer, &*sessions, "s1", &record)
            .await
            .unwrap_err();
        assert!(
            matches!(e, RefreshError::Sso(SsoError::Discovery { .. })),
            "{e:?}"
        );
        // The session and its tokens stay, and the claim is lifted for the next try.
        let kept = sessions.resume("s1").await.unwrap().unwrap();
        assert_eq!(kept.idp_token_version, 0);
        assert_eq!(kept.idp_refreshing_until_ms, None);
        assert_eq!(
            IdpToken::open(&sealer, "s1", kept.sealed_idp_token.as_deref().unwrap()).unwrap(),
            old
        );
        // Without a refresh token, an expired access token ends nothing here but is refused.
        let dir = tempfile::tempdir().unwrap();
        let store = self::store(&dir).await;
        let expired = IdpToken::new(
            "at".into(),
            "alice".into(),
            Some(Duration::from_secs(1)),
            SystemTime::now() - Duration::from_secs(60),
        );
        let record = signed_in(&store, &sealer, &expired).await;
        let e = current(&sso, &sealer, &*store.sessions(), "s1", &record)
            .await
            .unwrap_err();
        assert!(matches!(e, RefreshError::Expired), "{e:?}");
    }
}
