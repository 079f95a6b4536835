//! Asking the SSO provider again who an approver is before they see an approval or vote
//! (`console.oidc.recheck_at_vote`, on by default): the provider's userinfo endpoint, with the
//! sign-in's access token, names their groups now, and the rules (`@approvers`, Cedar's
//! `approval:decide`) judge them with those. Someone removed from the approvers' group at the
//! provider can no longer decide; someone whose account was disabled (the provider refuses
//! the token) cannot either; while the provider cannot answer, nothing is decided (fail
//! closed: the approval stays pending). An answer is used again for the same session for
//! `console.oidc.userinfo_max_age` (default `0s`: every time), but not once the session's
//! tokens are due for a refresh: then they are refreshed and the provider asked again, as when
//! nothing is remembered (so a refresh the provider refuses ends the session on schedule, and
//! one that renews the ID token moves the session's end). The access token it asks with is
//! refreshed first when it is (about to be) expired (`refresh`); one the provider refuses
//! before its expiry (revoked there) is refreshed once and the provider asked again with the
//! new one: a refused refresh ends the session, a provider that cannot answer decides nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::OidcConfig;
use super::refresh::{Lifetime, RefreshError};
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
    /// How long sessions last, which a refresh may extend.
    lifetime: Lifetime,
    /// Keyed by the hash of the session id.
    answers: Mutex<HashMap<String, (Vec<String>, Instant)>>,
}

impl Recheck {
    /// The recheck `oidc` configures, for sessions of `console.session_ttl` `session_ttl`.
    pub fn new(oidc: &OidcConfig, session_ttl: Duration) -> Recheck {
        Recheck {
            enabled: oidc.recheck_at_vote,
            groups_claim: oidc.groups_claim.clone(),
            max_age: oidc.userinfo_max_age,
            lifetime: Lifetime {
                ttl: session_ttl,
                follows_id_token: oidc.session_follows_id_token,
            },
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
        // A remembered answer stands only while the session's tokens need nothing: one due for
        // a refresh (its access token, or the ID token that ends the session) is refreshed on
        // schedule, and the provider asked again with it.
        let remembered = self
            .recent(&key)
            .filter(|_| !super::refresh::is_due(sealer, self.lifetime, session_id, record));
        let groups = match remembered {
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
        let lifetime = self.lifetime;
        let current =
            super::refresh::current(sso, sealer, sessions, lifetime, session_id, record).await?;
        let answer = match sso.userinfo(&current.token).await {
            // Refused before it expired (revoked at the provider): renewed once with the
            // refresh token, and asked again with the new one; a provider that refuses the
            // refresh token too has ended the sign-in.
            Err(SsoError::UserInfoRefused(status)) if current.token.refresh_secret().is_some() => {
                tracing::info!(status, subject = %record.subject, "the SSO provider refused a console session's access token before its expiry: renewing it");
                let renewed = super::refresh::after_refusal(
                    sso, sealer, sessions, lifetime, session_id, record, current,
                )
                .await?;
                sso.userinfo(&renewed.token).await
            }
            answer => answer,
        };
        let claims = answer.map_err(|e| {
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

    const TTL: Duration = Duration::from_secs(8 * 3600);

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
        let recheck = Recheck::new(&oidc(true), TTL);
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
        let off = Recheck::new(&oidc(false), TTL);
        let who = off
            .approver(&sso, &sealer, sessions, "s1", &record(None))
            .await
            .unwrap();
        assert_eq!(who.groups, ["sre"]);
    }

    /// A provider whose userinfo takes only the access token `at-renewed` (every other one
    /// was revoked), and whose token endpoint answers refresh grants with `status` and
    /// `answer`: its issuer, and how many refresh grants it answered.
    async fn revoking_provider(
        status: u16,
        answer: serde_json::Value,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let grants = Arc::new(AtomicUsize::new(0));
        let counted = grants.clone();
        let base = crate::console::sso::tests::provider(move |app| {
            app.route(
                "/jwks",
                get(|| async { axum::Json(serde_json::json!({ "keys": [] })) }),
            )
            .route(
                "/token",
                post(move |body: String| {
                    let (counted, answer) = (counted.clone(), answer.clone());
                    async move {
                        assert!(body.contains("grant_type=refresh_token"), "{body}");
                        assert!(body.contains("refresh_token=rt-1"), "{body}");
                        counted.fetch_add(1, Ordering::SeqCst);
                        (StatusCode::from_u16(status).unwrap(), axum::Json(answer))
                    }
                }),
            )
            .route(
                "/userinfo",
                get(|headers: HeaderMap| async move {
                    let bearer = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    if bearer == "Bearer at-renewed" {
                        let who =
                            serde_json::json!({ "sub": "alice", "groups": ["sre", "oncall"] });
                        (StatusCode::OK, axum::Json(who))
                    } else {
                        let refused = serde_json::json!({ "error": "invalid_token" });
                        (StatusCode::UNAUTHORIZED, axum::Json(refused))
                    }
                }),
            )
        })
        .await;
        (base, grants)
    }

    /// Session `s1` as it is asked about: its access token `at-1` expires in `expires_in`, is
    /// renewable with refresh token `rt-1` or not, and an earlier answer (groups `sre`) is
    /// remembered for it (`userinfo_max_age` 5m) or not.
    struct Asked {
        expires_in: Duration,
        renewable: bool,
        remembered: bool,
    }

    /// `asked` asked about at the revoking provider (answering refresh grants with `status`
    /// and `answer`): the approver, how many refresh grants were made, the session after.
    async fn ask(
        status: u16,
        answer: serde_json::Value,
        asked: Asked,
    ) -> (
        Result<Approver, RecheckError>,
        usize,
        Option<ConsoleSession>,
    ) {
        let (issuer, grants) = revoking_provider(status, answer).await;
        let config = OidcConfig {
            issuer,
            userinfo_max_age: Duration::from_secs(if asked.remembered { 300 } else { 0 }),
            ..oidc(true)
        };
        let sso = Sso::new(&config, None, "http://localhost:9443").unwrap();
        let recheck = Recheck::new(&config, TTL);
        let sealer = sealer();
        let dir = tempfile::tempdir().unwrap();
        let store = Store::sqlite(
            SqliteStore::open(&dir.path().join("state.db"))
                .await
                .unwrap(),
        );
        let token = IdpToken::new(
            "at-1".into(),
            "alice".into(),
            Some(asked.expires_in),
            SystemTime::now(),
        )
        .renewable_with(asked.renewable.then(|| "rt-1".to_owned()));
        let record = crate::console::refresh::tests::signed_in(&store, &sealer, &token).await;
        if asked.remembered {
            recheck.remember(secret_hash("s1"), &["sre".into()]);
        }
        let sessions = store.sessions();
        let result = recheck
            .approver(&sso, &sealer, &*sessions, "s1", &record)
            .await;
        let after = sessions.resume("s1").await.unwrap();
        let grants = grants.load(std::sync::atomic::Ordering::SeqCst);
        (result, grants, after)
    }

    /// Session `s1` signed in with access token `at-1`, valid for an hour (so not due),
    /// renewable or not, and nothing remembered: asked about at the revoking provider.
    async fn ask_revoking_provider(
        status: u16,
        answer: serde_json::Value,
        renewable: bool,
    ) -> (
        Result<Approver, RecheckError>,
        usize,
        Option<ConsoleSession>,
    ) {
        let asked = Asked {
            expires_in: Duration::from_secs(3600),
            renewable,
            remembered: false,
        };
        ask(status, answer, asked).await
    }

    #[tokio::test]
    async fn a_token_revoked_before_its_expiry_is_renewed_once_and_asked_again() {
        let renewed = serde_json::json!({
            "access_token": "at-renewed", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "rt-2",
        });
        let (who, grants, after) = ask_revoking_provider(200, renewed, true).await;
        let who = who.unwrap();
        assert_eq!(
            who.groups,
            ["sre", "oncall"],
            "the provider's answer to the new token"
        );
        assert_eq!(grants, 1, "one refresh");
        let after = after.expect("the session goes on");
        assert_eq!(after.idp_token_version, 1, "the new tokens are stored");
        let stored =
            IdpToken::open(&sealer(), "s1", after.sealed_idp_token.as_deref().unwrap()).unwrap();
        assert_eq!(stored.secret(), "at-renewed");
        assert_eq!(stored.refresh_secret(), Some("rt-2"));
    }

    #[tokio::test]
    async fn a_revoked_token_whose_refresh_is_refused_ends_the_session() {
        let refused = serde_json::json!({ "error": "invalid_grant" });
        let (who, grants, after) = ask_revoking_provider(400, refused, true).await;
        let e = who.unwrap_err();
        assert!(matches!(e, RecheckError::Ended), "{e:?}");
        assert_eq!(grants, 1);
        assert_eq!(after, None, "the session is gone");
    }

    #[tokio::test]
    async fn a_revoked_token_while_the_token_endpoint_is_down_decides_nothing() {
        let down = serde_json::json!({ "error": "temporarily_unavailable" });
        let (who, grants, after) = ask_revoking_provider(503, down, true).await;
        let e = who.unwrap_err();
        assert!(matches!(e, RecheckError::Unavailable(_)), "{e:?}");
        assert_eq!(grants, 1);
        let after = after.expect("the session stays, for the next try");
        assert_eq!(after.idp_token_version, 0);
        assert_eq!(after.idp_refreshing_until_ms, None, "the claim is lifted");
    }

    #[tokio::test]
    async fn a_revoked_token_without_a_refresh_token_is_refused() {
        let unused = serde_json::json!({ "error": "invalid_grant" });
        let (who, grants, after) = ask_revoking_provider(400, unused, false).await;
        let e = who.unwrap_err();
        assert!(matches!(e, RecheckError::Refused), "{e:?}");
        assert_eq!(grants, 0, "nothing to renew it with");
        assert!(after.is_some());
    }

    /// Session `s1`, its access token expiring in `expires_in`, renewable, with an answer
    /// remembered for it.
    async fn ask_with_a_remembered_answer(
        status: u16,
        answer: serde_json::Value,
        expires_in: Duration,
    ) -> (
        Result<Approver, RecheckError>,
        usize,
        Option<ConsoleSession>,
    ) {
        let asked = Asked {
            expires_in,
            renewable: true,
            remembered: true,
        };
        ask(status, answer, asked).await
    }

    #[tokio::test]
    async fn a_remembered_answer_stands_only_while_the_sessions_tokens_are_not_due() {
        let renewed = serde_json::json!({
            "access_token": "at-renewed", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "rt-2",
        });
        // Not due: the remembered answer, the provider not asked.
        let hour = Duration::from_secs(3600);
        let (who, grants, _) = ask_with_a_remembered_answer(200, renewed.clone(), hour).await;
        assert_eq!(who.unwrap().groups, ["sre"], "the remembered answer");
        assert_eq!(grants, 0);
        // Its access token due: refreshed on schedule, and the provider asked again with it.
        let soon = Duration::from_secs(2);
        let (who, grants, after) = ask_with_a_remembered_answer(200, renewed, soon).await;
        assert_eq!(
            who.unwrap().groups,
            ["sre", "oncall"],
            "the provider's answer now"
        );
        assert_eq!(grants, 1, "the due refresh was not skipped");
        let after = after.expect("the session goes on");
        assert_eq!(after.idp_token_version, 1);
        let stored =
            IdpToken::open(&sealer(), "s1", after.sealed_idp_token.as_deref().unwrap()).unwrap();
        assert_eq!(stored.refresh_secret(), Some("rt-2"));
    }

    #[tokio::test]
    async fn a_remembered_answer_does_not_outlive_a_sign_in_the_provider_ended() {
        let refused = serde_json::json!({ "error": "invalid_grant" });
        let soon = Duration::from_secs(2);
        let (who, grants, after) = ask_with_a_remembered_answer(400, refused, soon).await;
        let e = who.unwrap_err();
        assert!(matches!(e, RecheckError::Ended), "{e:?}");
        assert_eq!(grants, 1);
        assert_eq!(after, None, "the session is gone");
    }

    #[test]
    fn an_answer_is_used_again_only_within_its_max_age() {
        let mut config = oidc(true);
        let recheck = Recheck::new(&config, TTL);
        recheck.remember("k".into(), &["sre".into()]);
        assert_eq!(recheck.recent("k"), None, "0s: always asked again");
        config.userinfo_max_age = Duration::from_millis(50);
        let recheck = Recheck::new(&config, TTL);
        recheck.remember("k".into(), &["sre".into()]);
        assert_eq!(recheck.recent("k"), Some(vec!["sre".into()]));
        assert_eq!(recheck.recent("other"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(recheck.recent("k"), None);
    }
}
