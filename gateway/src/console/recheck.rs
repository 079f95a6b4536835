//! Asking the SSO provider again who an approver is before they see an approval or vote
//! (`console.oidc.recheck_at_vote`, on by default): the provider's userinfo endpoint, with the
//! sign-in's access token, names their groups now, and the rules (`@approvers`, Cedar's
//! `approval:decide`) judge them with those. Someone removed from the approvers' group at the
//! provider can no longer decide; someone whose account was disabled (the provider refuses
//! the token) cannot either; while the provider cannot answer, nothing is decided (fail
//! closed: the approval stays pending). An answer is used again for the same session for
//! `console.oidc.userinfo_max_age` (default `0s`: every time). The access token it asks with is
//! refreshed first when it is (about to be) expired (`refresh`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::OidcConfig;
use super::refresh::RefreshError;
use super::sso::{Sso, SsoError, groups};
use crate::approval::operator::Approver;
use crate::approval::sealed::Sealer;
use crate::state::sessions::{ConsoleSession, SessionRepository, secret_hash};

/// Why the provider's word on an approver could not be had: nothing is decided then.
#[derive(Debug, thiserror::Error)]
pub enum RecheckError {
    #[error(
        "could not confirm your identity with the identity provider ({0}), so nothing was \
         decided and the approval stays pending: try again"
    )]
    Unavailable(String),
    #[error(
        "the identity provider no longer accepts your sign-in (your account may be disabled, or \
         your sign-in ended there), so you cannot decide approvals: sign in again"
    )]
    Refused,
    #[error(
        "the identity provider's userinfo answer has no {0:?} claim (console.oidc.groups_claim), \
         so your groups cannot be confirmed and you cannot decide approvals: the provider's \
         administrator must release that claim in userinfo, not only in the ID token (see \
         docs/approvals.md)"
    )]
    NoGroupsClaim(String),
    #[error(
        "the identity provider's discovery document names no userinfo endpoint, so approvers \
         cannot be confirmed at vote: an administrator sets console.oidc.recheck_at_vote to \
         false, or uses a provider that has one"
    )]
    NoUserInfo,
    #[error(
        "this session keeps no usable access token at the identity provider (it began before \
         Warden asked the provider again at each vote, or the factor key changed): sign out \
         and sign in again"
    )]
    NoToken,
    #[error("your sign-in at the identity provider has expired: sign in again")]
    Expired,
    #[error(
        "the identity provider no longer renews your sign-in (your account may be disabled, or \
         your sign-in was revoked or ended there), so your console session has ended: sign in \
         again"
    )]
    Ended,
}

impl From<RefreshError> for RecheckError {
    fn from(e: RefreshError) -> RecheckError {
        match e {
            RefreshError::NoToken => RecheckError::NoToken,
            RefreshError::Expired => RecheckError::Expired,
            RefreshError::Ended => RecheckError::Ended,
            RefreshError::Unavailable(why) => RecheckError::Unavailable(why),
            RefreshError::Sso(e) => RecheckError::from(e),
        }
    }
}

impl From<SsoError> for RecheckError {
    fn from(e: SsoError) -> RecheckError {
        match e {
            SsoError::UserInfoRefused(_) => RecheckError::Refused,
            SsoError::NoUserInfo => RecheckError::NoUserInfo,
            SsoError::RefreshRefused => RecheckError::Ended,
            e => RecheckError::Unavailable(e.to_string()),
        }
    }
}

/// The recheck, with its answers of the last `userinfo_max_age` by session.
pub struct Recheck {
    enabled: bool,
    groups_claim: String,
    max_age: Duration,
    /// Keyed by the hash of the session id.
    answers: Mutex<HashMap<String, (Vec<String>, Instant)>>,
}

impl Recheck {
    /// The recheck `oidc` configures.
    pub fn new(oidc: &OidcConfig) -> Recheck {
        Recheck {
            enabled: oidc.recheck_at_vote,
            groups_claim: oidc.groups_claim.clone(),
            max_age: oidc.userinfo_max_age,
            answers: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the provider is asked again at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The approver session `session_id` (`record`, in `sessions`) is, as the rules see them
    /// now: with the groups the provider names now, or those of the sign-in when the recheck is
    /// off.
    pub async fn approver(
        &self,
        sso: &Sso,
        sealer: &Sealer,
        sessions: &dyn SessionRepository,
        session_id: &str,
        record: &ConsoleSession,
    ) -> Result<Approver, RecheckError> {
        let signed_in = Approver {
            subject: record.subject.clone(),
            groups: record.groups.clone(),
            aliases: record.aliases.clone(),
            issuer: sso.issuer().to_owned(),
        };
        if !self.enabled {
            return Ok(signed_in);
        }
        let key = secret_hash(session_id);
        let groups = match self.recent(&key) {
            Some(groups) => groups,
            None => {
                let groups = self.ask(sso, sealer, sessions, session_id, record).await?;
                self.remember(key, &groups);
                groups
            }
        };
        Ok(Approver {
            groups,
            ..signed_in
        })
    }

    /// The groups the provider names now for session `session_id`.
    async fn ask(
        &self,
        sso: &Sso,
        sealer: &Sealer,
        sessions: &dyn SessionRepository,
        session_id: &str,
        record: &ConsoleSession,
    ) -> Result<Vec<String>, RecheckError> {
        let token = super::refresh::current(sso, sealer, sessions, session_id, record).await?;
        let claims = sso.userinfo(&token).await.map_err(|e| {
            tracing::warn!(error = %e, subject = %record.subject, "the SSO provider could not confirm a console approver");
            RecheckError::from(e)
        })?;
        groups(&claims, &self.groups_claim)
            .ok_or_else(|| RecheckError::NoGroupsClaim(self.groups_claim.clone()))
    }

    fn recent(&self, key: &str) -> Option<Vec<String>> {
        if self.max_age.is_zero() {
            return None;
        }
        let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.max_age)
            .map(|(groups, _)| groups.clone())
    }

    fn remember(&self, key: String, groups: &[String]) {
        if self.max_age.is_zero() {
            return;
        }
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        answers.retain(|_, (_, at)| at.elapsed() < self.max_age);
        answers.insert(key, (groups.to_vec(), Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::approval::sealed::FactorKey;
    use crate::console::idp_token::IdpToken;
    use crate::state::Store;
    use crate::state::sqlite::SqliteStore;

    fn oidc(recheck: bool) -> OidcConfig {
        OidcConfig {
            recheck_at_vote: recheck,
            ..crate::console::sso::tests::oidc()
        }
    }

    fn sealer() -> Sealer {
        Sealer::new(vec![FactorKey::from_bytes(&[5; 32])]).unwrap()
    }

    fn record(sealed_idp_token: Option<Vec<u8>>) -> ConsoleSession {
        ConsoleSession {
            subject: "alice".into(),
            display_name: "Alice".into(),
            groups: vec!["sre".into()],
            aliases: vec![],
            csrf_hash: secret_hash("csrf"),
            sealed_idp_token,
            idp_token_version: 0,
            idp_refreshing_until_ms: None,
            created_ms: 0,
            expires_ms: i64::MAX,
            last_seen_ms: 0,
        }
    }

    fn token(expires_in: Duration, now: SystemTime) -> IdpToken {
        IdpToken::new("at".into(), "alice".into(), Some(expires_in), now)
    }

    #[tokio::test]
    async fn without_the_providers_word_nobody_decides() {
        let sso = Sso::new(&oidc(true), None, "http://localhost:9443").unwrap();
        let recheck = Recheck::new(&oidc(true));
        let sealer = sealer();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(
            SqliteStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        );
        let sessions = store.sessions();
        let sessions = &*sessions;
        // The provider cannot be reached: refused, and the message says to try again.
        let live = token(Duration::from_secs(3600), SystemTime::now())
            .seal(&sealer, "s1")
            .unwrap();
        let e = recheck
            .approver(&sso, &sealer, sessions, "s1", &record(Some(live.clone())))
            .await
            .unwrap_err();
        assert!(matches!(e, RecheckError::Unavailable(_)), "{e:?}");
        assert!(
            e.to_string()
                .starts_with("could not confirm your identity with the identity provider"),
            "{e}"
        );
        // No token kept, one sealed for another session, an expired one.
        for (id, sealed) in [("s1", None), ("s2", Some(live))] {
            let e = recheck
                .approver(&sso, &sealer, sessions, id, &record(sealed))
                .await
                .unwrap_err();
            assert!(matches!(e, RecheckError::NoToken), "{e:?}");
        }
        let old = token(
            Duration::from_secs(60),
            SystemTime::now() - Duration::from_secs(120),
        )
        .seal(&sealer, "s1")
        .unwrap();
        let e = recheck
            .approver(&sso, &sealer, sessions, "s1", &record(Some(old)))
            .await
            .unwrap_err();
        assert!(matches!(e, RecheckError::Expired), "{e:?}");
        // Turned off: the sign-in's groups, as before.
        let off = Recheck::new(&oidc(false));
        let who = off
            .approver(&sso, &sealer, sessions, "s1", &record(None))
            .await
            .unwrap();
        assert_eq!(who.groups, ["sre"]);
    }

    #[test]
    fn an_answer_is_used_again_only_within_its_max_age() {
        let mut config = oidc(true);
        let recheck = Recheck::new(&config);
        recheck.remember("k".into(), &["sre".into()]);
        assert_eq!(recheck.recent("k"), None, "0s: always asked again");
        config.userinfo_max_age = Duration::from_millis(50);
        let recheck = Recheck::new(&config);
        recheck.remember("k".into(), &["sre".into()]);
        assert_eq!(recheck.recent("k"), Some(vec!["sre".into()]));
        assert_eq!(recheck.recent("other"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(recheck.recent("k"), None);
    }
}
