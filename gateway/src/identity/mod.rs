//! Identify: who is calling. An agent presents a JWT (from a trusted OIDC issuer, or issued by
//! Warden itself) in `Authorization: Bearer`, `x-api-key`, `api-key` or `x-goog-api-key`; the
//! [`Identifier`] verifies it once, caches the result by the token's SHA-256 until it expires,
//! and hands out the [`Principal`] policies judge.

pub mod config;

mod cache;
pub(crate) mod claims;
mod clock;
mod confusable;
mod credential;
mod error;
mod fetch;
mod issuer;
mod jwks;
mod refresh;
pub mod revocation;
mod token;
mod verify;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use confusable::{CONFUSABLE_FINDING, mixed_scripts};
pub use credential::credential_from_headers;
pub use error::{AuthError, ClaimArgError, FetchedAgo, IdentityError, NameList, Shown, UnixTime};
pub use issuer::{TokenIssuer, key_path as issuer_key_path, parse_claim_arg};

pub(crate) use fetch::read_ca_bundle;

use crate::action::Principal;
use cache::{TokenCache, TokenKey};
pub(crate) use clock::now_unix;
use config::{ClientCertificate, IdentityConfig};
use fetch::JwksFetcher;
use refresh::RemoteKeys;
use revocation::{Revocations, TokenStamp};
use verify::{IssuerKeys, TrustedIssuer, Verifier};

/// The longest `identity.jwks_refetch_wait`.
const MAX_REFETCH_WAIT: Duration = Duration::from_secs(30);

/// How long [`Identifier::new`] waits for the first JWKS fetches before serving anyway.
const STARTUP_WAIT: Duration = Duration::from_secs(3);

/// Identifies callers from their credentials. `Send + Sync`; share it as `Arc`.
pub struct Identifier {
    verifier: Verifier,
    cache: TokenCache,
    required: bool,
    client_certificate: ClientCertificate,
    anonymous: Arc<Principal>,
    token_issuer: Option<Arc<TokenIssuer>>,
    _refreshers: AbortOnDrop,
}

impl Identifier {
    /// Never fails because an IdP is down: keys are fetched in the background and tokens of an
    /// issuer whose keys are unavailable are rejected (fail closed) with a clear reason.
    pub async fn new(cfg: &IdentityConfig, data_dir: &Path) -> Result<Identifier, IdentityError> {
        Identifier::with_key(cfg, data_dir, None).await
    }

    /// [`Identifier::new`] with Warden's signing key given as PEM (`warden_issuer.key`, read
    /// from its source by the caller) instead of its key file.
    pub async fn with_key(
        cfg: &IdentityConfig,
        data_dir: &Path,
        key: Option<(&str, &str)>,
    ) -> Result<Identifier, IdentityError> {
        if let Some(problem) = config::max_ttl_problem(cfg.warden_issuer.max_ttl) {
            return Err(IdentityError::Config {
                key: "identity.warden_issuer.max_ttl".into(),
                problem,
            });
        }
        if let Some((key, problem)) =
            config::previous_keys_problems(&cfg.warden_issuer, std::time::SystemTime::now())
                .into_iter()
                .next()
        {
            return Err(IdentityError::Config { key, problem });
        }
        if let Some(problem) = config::leeway_problem(cfg.leeway_seconds) {
            return Err(IdentityError::Config {
                key: "identity.leeway_seconds".into(),
                problem,
            });
        }
        if cfg.warden_issuer.refresh_interval < Duration::from_millis(10) {
            return Err(IdentityError::Config {
                key: "identity.warden_issuer.refresh_interval".into(),
                problem: "must be at least 10ms (e.g. 500ms)".into(),
            });
        }
        if cfg.jwks_refetch_wait.is_zero() || cfg.jwks_refetch_wait > MAX_REFETCH_WAIT {
            return Err(IdentityError::Config {
                key: "identity.jwks_refetch_wait".into(),
                problem: "must be longer than zero and at most 30s (e.g. 2s): requests wait \
                          that long for an identity provider"
                    .into(),
            });
        }
        if cfg.jwks_refresh_interval.is_zero() {
            return Err(IdentityError::Config {
                key: "identity.jwks_refresh_interval".into(),
                problem: "must be longer than zero (e.g. 5m)".into(),
            });
        }
        let mut issuers = Vec::with_capacity(cfg.issuers.len() + 1);
        let mut names = HashSet::new();
        let token_issuer = if cfg.warden_issuer.enabled {
            let token_issuer = Arc::new(match key {
                Some((pem, origin)) => TokenIssuer::from_pem(&cfg.warden_issuer, pem, origin)?,
                None => TokenIssuer::load_or_create(&cfg.warden_issuer, data_dir)?,
            });
            issuers.push(TrustedIssuer::warden(
                token_issuer.issuer(),
                token_issuer.audience(),
                token_issuer.verify_keys(),
                &cfg.claims,
                cfg.warden_issuer.max_ttl.as_secs(),
            ));
            names.insert(token_issuer.issuer().to_owned());
            Some(token_issuer)
        } else {
            None
        };
        let mut remotes = Vec::with_capacity(cfg.issuers.len());
        for (i, issuer_cfg) in cfg.issuers.iter().enumerate() {
            let key = format!("identity.issuers[{i}]");
            if !names.insert(issuer_cfg.issuer.clone()) {
                return Err(IdentityError::Config {
                    key: format!("{key}.issuer"),
                    problem: format!(
                        "{:?} is already trusted (listed twice, or equal to \
                         identity.warden_issuer.issuer)",
                        issuer_cfg.issuer
                    ),
                });
            }
            let fetcher = JwksFetcher::new(issuer_cfg, &key)?;
            let remote = RemoteKeys::new(
                Arc::from(issuer_cfg.issuer.as_str()),
                fetcher,
                cfg.jwks_min_refetch_interval,
            );
            let keys = IssuerKeys::Remote(remote.clone());
            issuers.push(TrustedIssuer::oidc(
                issuer_cfg,
                &key,
                keys,
                &cfg.claims,
                cfg.jwks_refetch_wait,
            )?);
            remotes.push(remote);
        }
        let refreshers = remotes
            .iter()
            .map(|r| r.spawn_refresher(cfg.jwks_refresh_interval))
            .collect();
        let first_fetches =
            futures_util::future::join_all(remotes.iter().map(|r| r.first_attempt_done()));
        if tokio::time::timeout(STARTUP_WAIT, first_fetches)
            .await
            .is_err()
        {
            tracing::warn!(
                "JWKS of some issuers not fetched yet; their tokens are refused until it is"
            );
        }
        Ok(Identifier {
            verifier: Verifier::new(issuers, cfg.leeway_seconds),
            cache: TokenCache::new(cfg.cache_entries),
            required: cfg.required,
            client_certificate: cfg.client_certificate,
            anonymous: Arc::new(Principal::anonymous()),
            token_issuer,
            _refreshers: AbortOnDrop(refreshers),
        })
    }

    /// Who sent these headers over a connection whose verified client certificate names
    /// `certificate` (if any). The token's agent, with the certificate as its
    /// `client_certificate` attribute; without a token, the certificate's agent when
    /// `identity.client_certificate: principal`; otherwise [`AuthError::MissingCredential`], or
    /// the anonymous principal when authentication is not [`required`](Self::required). A
    /// Warden token that `revocations` revoke is refused, cached or not.
    pub async fn identify(
        &self,
        headers: &http::HeaderMap,
        certificate: Option<&Arc<str>>,
        revocations: Option<&Revocations>,
    ) -> Result<Arc<Principal>, AuthError> {
        Ok(self
            .identify_stamped(headers, certificate, revocations)
            .await?
            .0)
    }

    /// [`identify`](Self::identify), with what the Warden token that proved the identity says
    /// about itself (its id and issue time), so that a request which waits (for an approval)
    /// can be judged against revocations made meanwhile. `None` for any other credential.
    pub async fn identify_stamped(
        &self,
        headers: &http::HeaderMap,
        certificate: Option<&Arc<str>>,
        revocations: Option<&Revocations>,
    ) -> Result<(Arc<Principal>, Option<TokenStamp>), AuthError> {
        let (principal, stamp) = match credential_from_headers(headers) {
            Some(token) => self.identify_token_stamped(token, revocations).await?,
            None => match (certificate, self.client_certificate) {
                (Some(id), ClientCertificate::Principal) => {
                    return Ok((certificate_agent(id), None));
                }
                _ if self.required => return Err(AuthError::MissingCredential),
                _ => (self.anonymous.clone(), None),
            },
        };
        let principal = match certificate {
            Some(id) if principal.client_certificate.as_ref() != Some(id) => {
                let mut with = Principal::clone(&principal);
                with.client_certificate = Some(Arc::clone(id));
                Arc::new(with)
            }
            _ => principal,
        };
        Ok((principal, stamp))
    }

    /// Who this token identifies: from the cache when verified earlier (one SHA-256 and one
    /// lookup), else fully verified and cached until it expires. Either way a Warden token is
    /// then judged against `revocations` (`None`: tokens this process cannot revoke, such as
    /// operators' at the admin API).
    pub async fn identify_token(
        &self,
        token: &str,
        revocations: Option<&Revocations>,
    ) -> Result<Arc<Principal>, AuthError> {
        Ok(self.identify_token_stamped(token, revocations).await?.0)
    }

    /// [`identify_token`](Self::identify_token), with the token's stamp when it is a Warden
    /// token.
    async fn identify_token_stamped(
        &self,
        token: &str,
        revocations: Option<&Revocations>,
    ) -> Result<(Arc<Principal>, Option<TokenStamp>), AuthError> {
        let key = TokenKey::of(token);
        let now = now_unix();
        let (principal, stamp) = match self.cache.get(&key, now) {
            Some(hit) => hit,
            None => {
                // Boxed: the cold path's future (discovery and JWKS fetches) is large, and
                // inline it would size every request's state for it, cache hits included.
                let verified = Box::pin(self.verifier.verify(token, now)).await?;
                let principal = Arc::new(verified.principal);
                let stamp = verified.stamp;
                self.cache
                    .insert(key, principal.clone(), stamp.clone(), verified.key, now);
                (principal, stamp)
            }
        };
        if let (Some(revocations), Some(stamp)) = (revocations, &stamp) {
            revocations.check(&principal.id, stamp)?;
        }
        Ok((principal, stamp))
    }

    /// Verifies `token` fully without reading or filling the cache: the cold path, for
    /// benchmarks and diagnostics.
    pub async fn verify_uncached(&self, token: &str) -> Result<Principal, AuthError> {
        Ok(self.verifier.verify(token, now_unix()).await?.principal)
    }

    /// Whether every request must carry a valid credential.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Warden's own token issuer, when `identity.warden_issuer.enabled`.
    pub fn token_issuer(&self) -> Option<&Arc<TokenIssuer>> {
        self.token_issuer.as_ref()
    }

    /// Number of verified tokens currently cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }
}

/// The agent a verified client certificate names, when certificates identify agents.
fn certificate_agent(id: &Arc<str>) -> Arc<Principal> {
    Arc::new(Principal {
        id: Arc::clone(id),
        issuer: Arc::from(config::CERTIFICATE_ISSUER),
        client_certificate: Some(Arc::clone(id)),
        ..Principal::anonymous()
    })
}

/// Background tasks stopped when the [`Identifier`] goes away.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
