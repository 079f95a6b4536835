//! Revocations judged by the identifier (after its cache), made here or in another process on
//! the store, audited with who made them; and Warden tokens' maximum lifetime.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::audit::config::AuditConfig;
use crate::audit::read::Reader;
use crate::identity::Identifier;
use crate::identity::config::{IdentityConfig, WardenIssuerConfig};
use crate::state::sqlite::SqliteStore;

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

fn jti(token: &str) -> String {
    let claims: serde_json::Map<String, Value> =
        jsonwebtoken::dangerous::insecure_decode_claims(token).unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

struct Gateway {
    dir: tempfile::TempDir,
    identifier: Identifier,
    revocations: Arc<Revocations>,
    audit: AuditLog,
}

async fn gateway(identity: &IdentityConfig) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let identifier = Identifier::new(identity, dir.path()).await.unwrap();
    let audit = AuditLog::open(&dir.path().join("audit"), &AuditConfig::default()).unwrap();
    let revocations = Arc::new(Revocations::new(audit.clone()));
    Gateway {
        dir,
        identifier,
        revocations,
        audit,
    }
}

impl Gateway {
    fn issue(&self, agent: &str) -> String {
        let issuer = self.identifier.token_issuer().unwrap();
        issuer.issue(agent, Duration::from_secs(600), &[]).unwrap()
    }

    async fn identify(&self, token: &str) -> Result<Arc<crate::action::Principal>, AuthError> {
        self.identifier
            .identify(&bearer(token), None, Some(&self.revocations))
            .await
    }

    /// The `token_revocation` records of its audit log, once closed.
    async fn revocation_records(self) -> Vec<Value> {
        self.audit.close().await.unwrap();
        Reader::new(&self.dir.path().join("audit"))
            .next_batch()
            .unwrap()
            .into_iter()
            .filter(|r| r.value["detail"]["event"] == "token_revocation")
            .map(|r| r.value)
            .collect()
    }
}

fn by_alice() -> Actor {
    Actor::new("alice", "https://sso.example.com")
}

#[tokio::test]
async fn a_revoked_token_is_refused_though_it_was_verified_and_cached_before() {
    let gw = gateway(&IdentityConfig::default()).await;
    let token = gw.issue("bot-1");
    let other = gw.issue("bot-1");
    gw.identify(&token).await.unwrap();
    assert_eq!(gw.identifier.cached_tokens(), 1, "the token is cached");

    let record = revocation(
        Revoked::Token(jti(&token)),
        "leaked in a log".into(),
        by_alice(),
    );
    // Without a store it is in force on this process only, and says so.
    assert!(matches!(
        gw.revocations.revoke(record).await,
        Err(RevocationError::NoStore)
    ));
    let refused = gw.identify(&token).await.unwrap_err();
    assert_eq!(refused.code(), "token_revoked");
    assert_eq!(refused.status(), http::StatusCode::UNAUTHORIZED);
    assert!(refused.to_string().contains("leaked in a log"), "{refused}");
    assert!(!refused.to_string().contains(&token[..20]));
    // The agent's other token is not that one.
    gw.identify(&other).await.unwrap();

    let records = gw.revocation_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["detail"]["target"]["kind"], "token");
    assert_eq!(
        records[0]["detail"]["by"],
        json!({"id": "alice", "issuer": "https://sso.example.com"})
    );
}

#[tokio::test]
async fn revoking_an_agent_refuses_its_tokens_issued_until_then_only() {
    let gw = gateway(&IdentityConfig::default()).await;
    let token = gw.issue("bot-1");
    let someone_else = gw.issue("bot-2");
    let record = revocation(
        Revoked::Agent("bot-1".into()),
        "stolen laptop".into(),
        by_alice(),
    );
    let cutoff = seconds(record.created_ms);
    let _ = gw.revocations.revoke(record).await;
    assert_eq!(
        gw.identify(&token).await.unwrap_err().code(),
        "token_revoked"
    );
    gw.identify(&someone_else).await.unwrap();
    // Issued up to the second of the revocation: refused; after it: the agent's new token.
    let stamp = |issued_at| TokenStamp {
        id: None,
        issued_at,
    };
    assert!(gw.revocations.check("bot-1", &stamp(cutoff)).is_err());
    assert!(gw.revocations.check("bot-1", &stamp(cutoff + 1)).is_ok());
    assert!(gw.revocations.check("bot-2", &stamp(cutoff)).is_ok());
}

#[tokio::test]
async fn a_revocation_made_in_another_process_reaches_this_one_and_is_audited_there() {
    let gw = gateway(&IdentityConfig::default()).await;
    let path = gw.dir.path().join("state.db");
    gw.revocations
        .attach(
            Arc::new(SqliteStore::open(&path).await.unwrap()),
            Duration::from_millis(20),
        )
        .await
        .unwrap();
    let token = gw.issue("bot-1");
    gw.identify(&token).await.unwrap();
    // The command line, in another process on the same file.
    let cli = SqliteStore::open(&path).await.unwrap();
    cli.revoke(revocation(
        Revoked::Agent("bot-1".into()),
        "incident 4711".into(),
        Actor::cli("bob"),
    ))
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gw.identify(&token).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the revocation never reached the gateway"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gw.revocations.list().len(), 1);
    let records = gw.revocation_records().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["principal"]["id"], "bot-1");
    assert_eq!(
        records[0]["detail"]["by"],
        json!({"id": "bob", "issuer": "warden-cli"})
    );
}

#[test]
fn a_revocation_is_kept_until_every_token_it_stops_has_expired_on_any_replica() {
    // Whatever the revoker's own settings: another replica may allow tokens up to the limit.
    let limit = (365 * 24 * 3600 + 300 + 1) * 1000;
    let of_agent = revocation(Revoked::Agent("bot-1".into()), "r".into(), by_alice());
    assert_eq!(of_agent.expires_ms - of_agent.created_ms, limit);
    let by_id = revocation(Revoked::Token("t".into()), "r".into(), by_alice());
    assert_eq!(by_id.expires_ms - by_id.created_ms, limit);
    // The token at hand: until its own `exp` and the largest leeway.
    let mut known = by_id.clone();
    let exp = u64::try_from(known.created_ms / 1000).unwrap() + 3600;
    until_token_expires(&mut known, exp);
    assert_eq!(known.expires_ms, (exp as i64 + 301) * 1000);
    // Never longer than the limit, whatever its `exp` says.
    let mut far = by_id.clone();
    until_token_expires(&mut far, u64::MAX);
    assert_eq!(far.expires_ms, by_id.expires_ms);
}

/// A token signed with the gateway's own key with any claims (as a token made by another
/// tool, or by an older Warden, could be).
fn signed(gw: &Gateway, claims: &Value) -> String {
    let pem = std::fs::read(gw.dir.path().join("keys").join("agent-signing.pem")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(gw.identifier.token_issuer().unwrap().key_id().to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(&pem).unwrap()).unwrap()
}

#[tokio::test]
async fn a_warden_token_living_longer_than_the_maximum_is_refused_whenever_issued() {
    let identity = IdentityConfig {
        warden_issuer: WardenIssuerConfig {
            max_ttl: Duration::from_secs(3600),
            ..WardenIssuerConfig::default()
        },
        ..IdentityConfig::default()
    };
    let gw = gateway(&identity).await;
    let now = crate::identity::now_unix();
    let claims = |iat: u64, exp: u64| json!({"iss": "warden", "aud": "warden", "sub": "bot-1", "iat": iat, "exp": exp});
    let refused = gw
        .identify(&signed(&gw, &claims(now, now + 3601)))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "token_lifetime_exceeded");
    assert!(refused.to_string().contains("max_ttl"), "{refused}");
    // Issued long ago with a long life: refused too, though it has little left.
    let old = signed(&gw, &claims(now - 86_400, now + 60));
    assert_eq!(
        gw.identify(&old).await.unwrap_err().code(),
        "token_lifetime_exceeded"
    );
    // Within the maximum and without `jti`: accepted (revocable only with its agent).
    gw.identify(&signed(&gw, &claims(now, now + 3600)))
        .await
        .unwrap();
    // Without `iat` its lifetime is unknown: refused.
    let no_iat = json!({"iss": "warden", "aud": "warden", "sub": "bot-1", "exp": now + 60});
    let refused = gw.identify(&signed(&gw, &no_iat)).await.unwrap_err();
    assert_eq!(refused.code(), "missing_claim");
    assert!(refused.to_string().contains("`iat`"), "{refused}");
}

/// A store whose writes wait until `open` has a permit (a refresh meanwhile reads the store as
/// it was before the write), then fail when `closed`.
struct SlowWrites {
    inner: SqliteStore,
    open: tokio::sync::Semaphore,
    closed: bool,
}

impl RevocationRepository for SlowWrites {
    fn revoke(
        &self,
        record: RevocationRecord,
    ) -> futures_util::future::BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let _open = self.open.acquire().await;
            if self.closed {
                return Err(StateError::Closed {
                    store: "test".into(),
                });
            }
            self.inner.revoke(record).await
        })
    }

    fn active(
        &self,
    ) -> futures_util::future::BoxFuture<'_, Result<Vec<RevocationRecord>, StateError>> {
        self.inner.active()
    }

    fn revision(&self) -> futures_util::future::BoxFuture<'_, Result<i64, StateError>> {
        self.inner.revision()
    }

    fn announcements(&self) -> Option<tokio::sync::broadcast::Receiver<()>> {
        None
    }
}

impl Gateway {
    /// Follows a [`SlowWrites`] store of its own (read only when a test refreshes), whose
    /// writes have `permits` to go and fail when `closed`.
    async fn slow_store(&self, permits: usize, closed: bool) -> Arc<SlowWrites> {
        let store = Arc::new(SlowWrites {
            inner: SqliteStore::open(&self.dir.path().join("state.db"))
                .await
                .unwrap(),
            open: tokio::sync::Semaphore::new(permits),
            closed,
        });
        let follows = Arc::clone(&store) as Arc<dyn RevocationRepository>;
        self.revocations
            .attach(follows, Duration::from_secs(3600))
            .await
            .unwrap();
        store
    }

    /// A revocation of `token` by its id.
    fn revoking(&self, token: &str) -> RevocationRecord {
        revocation(
            Revoked::Token(jti(token)),
            "leaked in a log".into(),
            by_alice(),
        )
    }
}

#[tokio::test]
async fn a_refresh_that_read_the_store_before_a_revocation_was_written_keeps_it() {
    let gw = gateway(&IdentityConfig::default()).await;
    let store = gw.slow_store(0, false).await;
    let token = gw.issue("bot-1");
    gw.identify(&token).await.unwrap();
    let record = gw.revoking(&token);
    let revoking = tokio::spawn({
        let revocations = Arc::clone(&gw.revocations);
        async move { revocations.revoke(record).await }
    });
    while gw.identify(&token).await.is_ok() {
        tokio::task::yield_now().await;
    }
    // The store does not have it yet: a refresh now reads a copy without it.
    assert!(store.inner.active().await.unwrap().is_empty());
    gw.revocations.refresh().await.unwrap();
    assert_eq!(
        gw.identify(&token).await.unwrap_err().code(),
        "token_revoked",
        "a stale read of the store dropped a revocation made here"
    );
    // Once written, the store's copy is the one kept.
    store.open.add_permits(1);
    revoking.await.unwrap().unwrap();
    gw.revocations.refresh().await.unwrap();
    assert!(gw.identify(&token).await.is_err());
    assert!(gw.revocations.made_here().is_empty());
    assert_eq!(gw.revocations.list().len(), 1);
    let records = gw.revocation_records().await;
    assert_eq!(records.len(), 1, "audited once: {records:?}");
}

#[tokio::test]
async fn a_revocation_the_store_refused_lasts_here_until_the_next_read_of_the_store() {
    let gw = gateway(&IdentityConfig::default()).await;
    gw.slow_store(1, true).await;
    let token = gw.issue("bot-1");
    let record = gw.revoking(&token);
    assert!(matches!(
        gw.revocations.revoke(record).await,
        Err(RevocationError::State(_))
    ));
    assert!(gw.identify(&token).await.is_err(), "in force here");
    gw.revocations.refresh().await.unwrap();
    gw.identify(&token).await.unwrap();
}
