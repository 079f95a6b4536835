//! Keeping a console session's access token at the SSO provider alive: when it has expired, or
//! expires within [`REFRESH_AHEAD`], the console gets a new one for the sign-in's refresh token
//! ([`Sso::refresh`]) before it asks the provider's userinfo endpoint who the approver is, and
//! stores the new tokens (sealed, as at sign-in) for every replica. So a session lasts
//! `console.session_ttl` (or until the ID token's `exp`), not the access token's few minutes.
//!
//! - A session that ends with its ID token (`console.oidc.session_follows_id_token`) is
//!   refreshed too once half that ID token's lifetime has passed: a new ID token in the
//!   answer, verified as at sign-in and held to the sign-in's (OpenID Connect Core 12.2: same
//!   `iss`, `sub`, `aud`), moves the session's end to its `exp`, never past
//!   `console.session_ttl` from sign-in. An answer without one leaves the end where it was.
//!   One that is not of the sign-in, or not valid, ends the session. One signed with a key
//!   the provider's keys (read again for it) do not hold, or while they cannot be read, is
//!   not used, nor the answer's access token: the answer's refresh token (the provider may
//!   have spent the old one) is stored with the tokens as they were, the session's end
//!   unmoved, and nothing is decided; the next try refreshes again.
//! - A recheck answer remembered for `console.oidc.userinfo_max_age` is not used once the
//!   session is due for a refresh ([`is_due`]): the refresh comes on schedule all the same.
//! - The provider refuses the access token at userinfo before its expiry (revoked there):
//!   [`after_refusal`] refreshes it once, and the recheck asks again with the new one.
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

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// How long a console session lasts: `console.session_ttl` from sign-in and, with
/// `console.oidc.session_follows_id_token`, no longer than the newest ID token the provider
/// gave for it (at sign-in, or with a refresh).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// `console.session_ttl`.
    pub ttl: Duration,
    /// `console.oidc.session_follows_id_token`.
    pub follows_id_token: bool,
}

impl Lifetime {
    /// When a session signed in at `created_ms` ends by `token`'s ID token (ms since the Unix
    /// epoch), never later than `ttl` after sign-in; `None` when sessions do not follow the
    /// ID token or `token` keeps none.
    pub fn ends_ms(&self, created_ms: i64, token: &IdpToken) -> Option<i64> {
        let id = token.id_token.as_ref().filter(|_| self.follows_id_token)?;
        Some(
            self.cap_ms(created_ms)
                .min(id.expires_at.saturating_mul(1000)),
        )
    }

    /// Whether `token` is to be refreshed at `now` for its ID token, which ends the session
    /// signed in at `created_ms` before `ttl` does: once half its lifetime has passed (or it
    /// is within [`REFRESH_AHEAD`] of its expiry), when there is a refresh token and the
    /// provider renews ID tokens with it.
    pub fn id_token_due(&self, created_ms: i64, token: &IdpToken, now: SystemTime) -> bool {
        let Some(id) = token
            .id_token
            .as_ref()
            .filter(|t| self.follows_id_token && t.renewed_by_refresh)
        else {
            return false;
        };
        let expires_ms = id.expires_at.saturating_mul(1000);
        if token.refresh_secret().is_none() || expires_ms >= self.cap_ms(created_ms) {
            return false;
        }
        let half_life_ms = id.expires_at.saturating_sub(id.issued_at).max(0) * 500;
        let ahead = half_life_ms.max(millis(REFRESH_AHEAD));
        expires_ms.saturating_sub(epoch_ms(now)) <= ahead
    }

    fn cap_ms(&self, created_ms: i64) -> i64 {
        created_ms.saturating_add(millis(self.ttl))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn epoch_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, millis)
}

/// A session's access token at the provider, with the version of the session's tokens it is.
#[derive(Debug)]
pub struct Current {
    pub token: IdpToken,
    version: i64,
}

/// The access token to ask the provider with for session `session_id` (`record`, as read at
/// the start of this request): the one it keeps, or a new one when that one is due, or when
/// the ID token that bounds the session is (refreshed by this replica, or by another that
/// claimed it first and stored it).
pub async fn current(
    sso: &Sso,
    sealer: &Sealer,
    sessions: &dyn SessionRepository,
    lifetime: Lifetime,
    session_id: &str,
    record: &ConsoleSession,
) -> Result<Current, RefreshError> {
    let kept = Current {
        token: open(sealer, session_id, record)?,
        version: record.idp_token_version,
    };
    obtain(
        sso, sealer, sessions, lifetime, session_id, record, kept, false,
    )
    .await
}

/// A new access token for session `session_id` (`record`) after the provider refused
/// `refused` before its expiry (revoked there): refreshed once, by this replica or by another
/// that did meanwhile. [`RefreshError::Ended`] when the provider refuses the refresh token too.
pub async fn after_refusal(
    sso: &Sso,
    sealer: &Sealer,
    sessions: &dyn SessionRepository,
    lifetime: Lifetime,
    session_id: &str,
    record: &ConsoleSession,
    refused: Current,
) -> Result<Current, RefreshError> {
    obtain(
        sso, sealer, sessions, lifetime, session_id, record, refused, true,
    )
    .await
}

/// `from`, or newer tokens when it is due (or `refused`, whatever its expiry).
#[allow(clippy::too_many_arguments)]
async fn obtain(
    sso: &Sso,
    sealer: &Sealer,
    sessions: &dyn SessionRepository,
    lifetime: Lifetime,
    session_id: &str,
    record: &ConsoleSession,
    from: Current,
    refused: bool,
) -> Result<Current, RefreshError> {
    let refused_version = refused.then_some(from.version);
    let Current {
        mut token,
        mut version,
    } = from;
    let deadline = Instant::now() + CLAIM_FOR + Duration::from_secs(5);
    loop {
        let needed = refused_version == Some(version)
            || needs_refresh(lifetime, record.created_ms, &token, SystemTime::now())?;
        if !needed {
            return Ok(Current { token, version });
        }
        let until = now_ms().saturating_add(millis(CLAIM_FOR));
        let claimed = sessions
            .claim_refresh(session_id, version, until)
            .await
            .map_err(|e| RefreshError::Unavailable(e.to_string()))?;
        if claimed {
            let claim = Claim {
                session_id,
                version,
                until,
            };
            return refresh(sso, sealer, sessions, lifetime, record, claim, &token).await;
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

/// Whether session `session_id` (`record`) is due for a refresh now (its access token, or
/// the ID token that ends it), or cannot go on without one (no token to open, an expired
/// one): a provider's answer remembered for it (`console.oidc.userinfo_max_age`) does not
/// stand in for the refresh then.
pub fn is_due(
    sealer: &Sealer,
    lifetime: Lifetime,
    session_id: &str,
    record: &ConsoleSession,
) -> bool {
    open(sealer, session_id, record)
        .and_then(|token| needs_refresh(lifetime, record.created_ms, &token, SystemTime::now()))
        .unwrap_or(true)
}

/// Whether `token` of the session signed in at `created_ms` is to be refreshed at `now`: its
/// access token is due, or (by `lifetime`) the ID token that ends the session.
/// [`RefreshError::Expired`] when it expired and cannot be renewed.
fn needs_refresh(
    lifetime: Lifetime,
    created_ms: i64,
    token: &IdpToken,
    now: SystemTime,
) -> Result<bool, RefreshError> {
    match due(token, now) {
        Due::Use => Ok(lifetime.id_token_due(created_ms, token, now)),
        Due::Refresh => Ok(true),
        Due::Expired => Err(RefreshError::Expired),
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

/// This replica's claim to refresh the tokens of session `session_id` at `version`, until
/// `until`.
struct Claim<'a> {
    session_id: &'a str,
    version: i64,
    until: i64,
}

/// Lifts this replica's `claim` when a refresh stopped short of storing tokens, so that the
/// next try (here or on another replica) need not wait for it to lapse.
async fn release(sessions: &dyn SessionRepository, claim: &Claim<'_>) {
    if let Err(e) = sessions
        .release_refresh(claim.session_id, claim.version, claim.until)
        .await
    {
        tracing::debug!(error = %e, "a console session's refresh claim could not be lifted; it lapses");
    }
}

/// Refreshes `token` of session `record` under this replica's `claim` and stores the new
/// tokens; a new ID token moves the session's end to its expiry (by `lifetime`).
async fn refresh(
    sso: &Sso,
    sealer: &Sealer,
    sessions: &dyn SessionRepository,
    lifetime: Lifetime,
    record: &ConsoleSession,
    claim: Claim<'_>,
    token: &IdpToken,
) -> Result<Current, RefreshError> {
    let Claim {
        session_id,
        version,
        ..
    } = claim;
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
        Err(SsoError::RefreshedIdToken(why)) => {
            // An ID token not of this sign-in (OpenID Connect Core 12.2), or not valid: the
            // session ends here, on every replica.
            if let Err(e) = sessions.delete(session_id).await {
                tracing::warn!(error = %e, subject = %token.subject, "a console session renewed with a foreign ID token could not be removed");
            }
            tracing::warn!(subject = %token.subject, reason = %why, "the SSO provider renewed a console sign-in with an ID token that does not stand for it: its session ended");
            return Err(RefreshError::Ended);
        }
        Err(SsoError::RefreshedIdTokenUnchecked { reason, kept }) => {
            // The provider may have spent the old refresh token: the new one is kept, with
            // the tokens as they were (the session's end unmoved), for the next try.
            tracing::warn!(subject = %token.subject, reason = %reason, "the SSO provider renewed a console sign-in with an ID token that cannot be checked now; its new refresh token is kept");
            let kept = match kept.seal(sealer, session_id) {
                Ok(kept) => kept,
                Err(e) => {
                    release(sessions, &claim).await;
                    return Err(RefreshError::Unavailable(e.to_string()));
                }
            };
            match sessions
                .replace_idp_token(session_id, version, kept, None)
                .await
            {
                Ok(true) => {}
                Ok(false) => return Err(RefreshError::Ended),
                Err(e) => {
                    tracing::error!(error = %e, subject = %token.subject, "a console session's renewed refresh token could not be kept");
                    release(sessions, &claim).await;
                }
            }
            return Err(RefreshError::Unavailable(format!(
                "the provider's new ID token cannot be checked now: {reason}"
            )));
        }
        Err(e) => {
            tracing::warn!(error = %e, subject = %token.subject, "the SSO provider could not renew a console sign-in");
            release(sessions, &claim).await;
            return Err(RefreshError::Sso(e));
        }
    };
    let lifetime_of = |t: &IdpToken| t.id_token.as_ref().map(|i| (i.issued_at, i.expires_at));
    let ends = if lifetime_of(&renewed) != lifetime_of(token) {
        lifetime.ends_ms(record.created_ms, &renewed)
    } else {
        None
    };
    let sealed = match renewed.seal(sealer, session_id) {
        Ok(sealed) => sealed,
        Err(e) => {
            release(sessions, &claim).await;
            return Err(RefreshError::Unavailable(e.to_string()));
        }
    };
    let stored = match sessions
        .replace_idp_token(session_id, version, sealed, ends)
        .await
    {
        Ok(stored) => stored,
        Err(e) => {
            release(sessions, &claim).await;
            return Err(RefreshError::Unavailable(e.to_string()));
        }
    };
    if !stored {
        // The session ended meanwhile (its ttl, a sign-out): nothing is decided with it.
        return Err(RefreshError::Ended);
    }
    if let Some(ends) = ends {
        tracing::debug!(subject = %token.subject, ends_ms = ends, "a console session follows its renewed ID token");
    }
    Ok(Current {
        token: renewed,
        version: version + 1,
    })
}

#[cfg(test)]
pub(in crate::console) mod tests {
    use super::*;
    use crate::approval::sealed::FactorKey;
    use crate::console::config::OidcConfig;
    use crate::state::Store;
    use crate::state::sessions::NewSession;
    use crate::state::sqlite::SqliteStore;

    const LIFETIME: Lifetime = Lifetime {
        ttl: Duration::from_secs(8 * 3600),
        follows_id_token: true,
    };

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

    /// An ID token issued at `iat` for `life` seconds, as a session keeps it.
    fn id_token(iat: i64, life: i64) -> crate::console::idp_token::IdTokenBinding {
        crate::console::idp_token::IdTokenBinding {
            audiences: vec!["warden-console".into()],
            authorized_party: None,
            auth_time: Some(iat),
            nonce: Some("n".into()),
            issued_at: iat,
            expires_at: iat + life,
            renewed_by_refresh: true,
        }
    }

    #[test]
    fn a_session_ends_with_its_newest_id_token_never_past_its_ttl() {
        let created_ms = 1_000_000_000_000;
        let signed_in = created_ms / 1000;
        let hour = Duration::from_secs(3600);
        let lifetime = Lifetime {
            ttl: hour,
            follows_id_token: true,
        };
        let renewable = token(hour, Some("rt")).bound_to(Some(id_token(signed_in, 300)));
        assert_eq!(
            lifetime.ends_ms(created_ms, &renewable),
            Some(created_ms + 300_000)
        );
        // A newer ID token that outlives the ttl: the ttl ends the session.
        let newer = token(hour, Some("rt")).bound_to(Some(id_token(signed_in + 3500, 300)));
        assert_eq!(
            lifetime.ends_ms(created_ms, &newer),
            Some(created_ms + 3_600_000)
        );
        // Sessions that do not follow it, and a token sealed without one: nothing moves.
        let off = Lifetime {
            follows_id_token: false,
            ..lifetime
        };
        assert_eq!(off.ends_ms(created_ms, &renewable), None);
        assert_eq!(lifetime.ends_ms(created_ms, &token(hour, Some("rt"))), None);
    }

    #[test]
    fn an_id_token_is_renewed_past_half_its_lifetime_when_it_ends_the_session() {
        let now = SystemTime::now();
        let now_s = epoch_ms(now) / 1000;
        let hour = Duration::from_secs(3600);
        let lifetime = Lifetime {
            ttl: Duration::from_secs(8 * 3600),
            follows_id_token: true,
        };
        let created_ms = epoch_ms(now) - 200_000;
        // Issued 200 s ago for 300 s: past half its life, due.
        let id = id_token(now_s - 200, 300);
        let due_now = token(hour, Some("rt")).bound_to(Some(id.clone()));
        assert!(lifetime.id_token_due(created_ms, &due_now, now));
        // Issued 100 s ago for 300 s: not yet.
        let fresh = token(hour, Some("rt")).bound_to(Some(id_token(now_s - 100, 300)));
        assert!(!lifetime.id_token_due(created_ms, &fresh, now));
        // Nothing to renew it with, sessions that do not follow it, a provider that gave no
        // new ID token at the last refresh, a ttl that ends the session first: not due.
        let plain = token(hour, None).bound_to(Some(id.clone()));
        assert!(!lifetime.id_token_due(created_ms, &plain, now));
        let off = Lifetime {
            follows_id_token: false,
            ..lifetime
        };
        assert!(!off.id_token_due(created_ms, &due_now, now));
        let stale = crate::console::idp_token::IdTokenBinding {
            renewed_by_refresh: false,
            ..id
        };
        let stale = token(hour, Some("rt")).bound_to(Some(stale));
        assert!(!lifetime.id_token_due(created_ms, &stale, now));
        let short = Lifetime {
            ttl: Duration::from_secs(250),
            ..lifetime
        };
        assert!(!short.id_token_due(created_ms, &due_now, now));
    }

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::sqlite(
            SqliteStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        )
    }

    /// Session `s1` of alice (group sre, an hour to live) in `store`, holding `token`.
    pub(in crate::console) async fn signed_in(
        store: &Store,
        sealer: &Sealer,
        token: &IdpToken,
    ) -> ConsoleSession {
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
            assert!(
                other
                    .replace_idp_token("s1", 0, sealed, None)
                    .await
                    .unwrap()
            );
        });
        let got = current(&sso, &sealer, &*sessions, LIFETIME, "s1", &record)
            .await
            .unwrap()
            .token;
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
        let e = current(&sso, &sealer, &*sessions, LIFETIME, "s1", &record)
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
        let e = current(&sso, &sealer, &*store.sessions(), LIFETIME, "s1", &record)
            .await
            .unwrap_err();
        assert!(matches!(e, RefreshError::Expired), "{e:?}");
    }

    /// A provider whose refresh grants answer access token `at-2`, refresh token `rt-2` and
    /// the ID token `id_token` holds, and whose keys (`jwks`: `None` while they cannot be read)
    /// are read at discovery: its issuer.
    async fn signing_provider(
        id_token: std::sync::Arc<std::sync::Mutex<String>>,
        jwks: std::sync::Arc<std::sync::Mutex<Option<serde_json::Value>>>,
    ) -> String {
        use axum::http::StatusCode;
        use axum::routing::{get, post};
        crate::console::sso::tests::provider(move |app| {
            app.route(
                "/jwks",
                get(move || {
                    let keys = jwks.lock().unwrap().clone();
                    async move {
                        match keys {
                            Some(keys) => (StatusCode::OK, axum::Json(keys)),
                            None => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                axum::Json(serde_json::json!({})),
                            ),
                        }
                    }
                }),
            )
            .route(
                "/token",
                post(move |body: String| {
                    let id_token = id_token.lock().unwrap().clone();
                    async move {
                        assert!(body.contains("refresh_token=rt-1"), "{body}");
                        axum::Json(serde_json::json!({
                            "access_token": "at-2", "token_type": "Bearer", "expires_in": 3600,
                            "refresh_token": "rt-2", "id_token": id_token,
                        }))
                    }
                }),
            )
        })
        .await
    }

    /// A test RSA key `kid`: its encoding key and its JWK.
    fn rsa_key(pem: &[u8], kid: &str) -> (jsonwebtoken::EncodingKey, serde_json::Value) {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).unwrap();
        let mut jwk = serde_json::to_value(
            jsonwebtoken::jwk::Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::RS256)
                .unwrap(),
        )
        .unwrap();
        jwk["kid"] = kid.into();
        jwk["use"] = "sig".into();
        (key, jwk)
    }

    const RSA1: &[u8] = include_bytes!("../identity/testdata/rsa1.pem");
    const RSA2: &[u8] = include_bytes!("../identity/testdata/rsa2.pem");

    /// What a refresh of session `s1` did, its ID token signed with the new key `k2` for
    /// `sub`, while the keys read at discovery hold only `k1` and a second read of them
    /// answers `again` (`None`: it fails).
    async fn refresh_with_rotated_key(
        sub: &str,
        again: Option<&[&serde_json::Value]>,
    ) -> (
        Result<Current, RefreshError>,
        Option<ConsoleSession>,
        ConsoleSession,
        Sealer,
    ) {
        refresh_with_rotated_key_in(sub, again, |sessions| sessions).await
    }

    /// [`refresh_with_rotated_key`] against the store's sessions as `sessions` wraps them.
    async fn refresh_with_rotated_key_in(
        sub: &str,
        again: Option<&[&serde_json::Value]>,
        sessions: impl FnOnce(
            std::sync::Arc<dyn SessionRepository>,
        ) -> std::sync::Arc<dyn SessionRepository>,
    ) -> (
        Result<Current, RefreshError>,
        Option<ConsoleSession>,
        ConsoleSession,
        Sealer,
    ) {
        let (_, old_jwk) = rsa_key(RSA2, "k1");
        let (new_key, _) = rsa_key(RSA1, "k2");
        let id_token = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let jwks = std::sync::Arc::new(std::sync::Mutex::new(Some(
            serde_json::json!({ "keys": [old_jwk] }),
        )));
        let issuer = signing_provider(id_token.clone(), jwks.clone()).await;
        let now_s = epoch_ms(SystemTime::now()) / 1000;
        let signed_in_at = now_s - 200;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("k2".into());
        let claims = serde_json::json!({
            "iss": issuer, "aud": "console", "sub": sub, "iat": now_s, "exp": now_s + 300,
            "auth_time": signed_in_at,
        });
        *id_token.lock().unwrap() = jsonwebtoken::encode(&header, &claims, &new_key).unwrap();
        let config = OidcConfig {
            issuer,
            ..crate::console::sso::tests::oidc()
        };
        let sso = Sso::new(&config, None, "http://localhost:9443").unwrap();
        // The first discovery reads k1 only; the keys are read again as `again` says.
        sso.userinfo(&token(Duration::from_secs(60), None))
            .await
            .ok();
        *jwks.lock().unwrap() = again.map(|keys| serde_json::json!({ "keys": keys }));
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let sealer = sealer();
        let binding = crate::console::idp_token::IdTokenBinding {
            audiences: vec!["console".into()],
            authorized_party: None,
            auth_time: Some(signed_in_at),
            nonce: Some("n".into()),
            issued_at: signed_in_at,
            expires_at: signed_in_at + 300,
            renewed_by_refresh: true,
        };
        let due = IdpToken::new(
            "at-1".into(),
            "alice".into(),
            Some(Duration::from_secs(2)),
            SystemTime::now(),
        )
        .renewable_with(Some("rt-1".into()))
        .bound_to(Some(binding));
        let record = signed_in(&store, &sealer, &due).await;
        let result = current(
            &sso,
            &sealer,
            &*sessions(store.sessions()),
            LIFETIME,
            "s1",
            &record,
        )
        .await;
        let after = store.sessions().resume("s1").await.unwrap();
        (result, after, record, sealer)
    }

    /// Sessions whose renewed tokens cannot be stored (the store fails that write).
    struct StoreFails(std::sync::Arc<dyn SessionRepository>);

    impl SessionRepository for StoreFails {
        fn create(
            &self,
            session: crate::state::sessions::NewSession,
        ) -> futures_util::future::BoxFuture<'_, Result<(), crate::state::StateError>> {
            self.0.create(session)
        }
        fn resume<'a>(
            &'a self,
            id: &'a str,
        ) -> futures_util::future::BoxFuture<
            'a,
            Result<Option<ConsoleSession>, crate::state::StateError>,
        > {
            self.0.resume(id)
        }
        fn claim_refresh<'a>(
            &'a self,
            id: &'a str,
            version: i64,
            until_ms: i64,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, crate::state::StateError>> {
            self.0.claim_refresh(id, version, until_ms)
        }
        fn replace_idp_token<'a>(
            &'a self,
            _: &'a str,
            _: i64,
            _: Vec<u8>,
            _: Option<i64>,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, crate::state::StateError>> {
            Box::pin(async {
                Err(crate::state::StateError::Closed {
                    store: "test".into(),
                })
            })
        }
        fn release_refresh<'a>(
            &'a self,
            id: &'a str,
            version: i64,
            until_ms: i64,
        ) -> futures_util::future::BoxFuture<'a, Result<(), crate::state::StateError>> {
            self.0.release_refresh(id, version, until_ms)
        }
        fn delete<'a>(
            &'a self,
            id: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<bool, crate::state::StateError>> {
            self.0.delete(id)
        }
        fn purge_expired(
            &self,
        ) -> futures_util::future::BoxFuture<'_, Result<u64, crate::state::StateError>> {
            self.0.purge_expired()
        }
    }

    /// A renewal whose tokens cannot be stored lifts the refresh claim, whether its new ID
    /// token could be checked or not: the next try, on any replica, need not wait for the
    /// claim to lapse.
    #[tokio::test]
    async fn a_renewal_that_cannot_be_stored_lifts_its_refresh_claim() {
        let (_, old_jwk) = rsa_key(RSA2, "k1");
        let (_, new_jwk) = rsa_key(RSA1, "k2");
        let unchecked = None;
        let checked = Some(&[&old_jwk, &new_jwk][..]);
        for again in [unchecked, checked] {
            let (result, after, _, _) = refresh_with_rotated_key_in("alice", again, |sessions| {
                std::sync::Arc::new(StoreFails(sessions))
            })
            .await;
            let e = result.unwrap_err();
            assert!(matches!(e, RefreshError::Unavailable(_)), "{e:?}");
            let after = after.expect("the session goes on");
            assert_eq!(after.idp_token_version, 0, "nothing was stored");
            assert_eq!(
                after.idp_refreshing_until_ms,
                None,
                "the claim is lifted ({})",
                if again.is_none() {
                    "unchecked"
                } else {
                    "checked"
                }
            );
        }
    }

    #[tokio::test]
    async fn a_renewed_id_token_that_cannot_be_checked_keeps_the_new_refresh_token_and_decides_nothing()
     {
        // The keys cannot be read again, or still lack k2: the same.
        let (_, old_jwk) = rsa_key(RSA2, "k1");
        for again in [None, Some(&[&old_jwk][..])] {
            let (result, after, before, sealer) = refresh_with_rotated_key("alice", again).await;
            let e = result.unwrap_err();
            assert!(matches!(e, RefreshError::Unavailable(_)), "{e:?}");
            let after = after.expect("the session goes on");
            assert_eq!(
                after.idp_token_version, 1,
                "the new refresh token is stored"
            );
            assert_eq!(after.expires_ms, before.expires_ms, "its end is not moved");
            let kept =
                IdpToken::open(&sealer, "s1", after.sealed_idp_token.as_deref().unwrap()).unwrap();
            assert_eq!(
                kept.refresh_secret(),
                Some("rt-2"),
                "the one the provider issued"
            );
            assert_eq!(
                kept.secret(),
                "at-1",
                "the answer's access token is not used"
            );
            let opened = |r: &ConsoleSession| {
                IdpToken::open(&sealer, "s1", r.sealed_idp_token.as_deref().unwrap()).unwrap()
            };
            assert_eq!(
                kept.id_token,
                opened(&before).id_token,
                "nor its ID token's claims"
            );
        }
    }

    #[tokio::test]
    async fn a_renewed_id_token_signed_with_a_rotated_key_is_checked_with_the_keys_read_again() {
        let (_, old_jwk) = rsa_key(RSA2, "k1");
        let (_, new_jwk) = rsa_key(RSA1, "k2");
        let (result, after, before, _) =
            refresh_with_rotated_key("alice", Some(&[&old_jwk, &new_jwk][..])).await;
        let renewed = result.unwrap();
        assert_eq!(renewed.token.secret(), "at-2");
        assert_eq!(renewed.token.refresh_secret(), Some("rt-2"));
        let after = after.expect("the session goes on");
        assert_eq!(after.idp_token_version, 1);
        let id = renewed.token.id_token.as_ref().unwrap();
        assert!(
            id.issued_at > id.auth_time.unwrap(),
            "the new ID token's lifetime"
        );
        assert_ne!(after.expires_ms, before.expires_ms);
        assert_eq!(
            after.expires_ms,
            id.expires_at * 1000,
            "the new ID token's exp ends the session"
        );
    }

    #[tokio::test]
    async fn a_renewed_id_token_of_someone_else_ends_the_session() {
        let (_, old_jwk) = rsa_key(RSA2, "k1");
        let (_, new_jwk) = rsa_key(RSA1, "k2");
        let (result, after, _, _) =
            refresh_with_rotated_key("mallory", Some(&[&old_jwk, &new_jwk][..])).await;
        let e = result.unwrap_err();
        assert!(matches!(e, RefreshError::Ended), "{e:?}");
        assert_eq!(after, None, "the session is gone");
    }
}
