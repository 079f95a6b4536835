//! Verifies a token: pick the trusted issuer named by its (unverified) `iss`, check the
//! algorithm against that issuer's allowlist and key, verify the signature, then `exp`, `nbf`
//! and `aud`, and map the claims to a [`Principal`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::claims::ClaimMapper;
use super::config::{ClaimMapping, IssuerConfig};
use super::error::{AuthError, FetchedAgo, IdentityError, NameList, Shown, UnixTime};
use super::jwks::{KeySet, VerifyKey, alg_name, is_hmac};
use super::refresh::{KeyInUse, RemoteKeys};
use super::revocation::TokenStamp;
use super::token::{self, UnverifiedToken};
use crate::action::Principal;

/// The most keys a token without `kid` is tried against: an issuer publishing more (a hostile
/// or broken JWKS of thousands) would make every forged token cost that many signature
/// checks on the worker that reads it.
const KIDLESS_MAX_KEYS: usize = 4;

/// Where an issuer's keys come from.
pub(crate) enum IssuerKeys {
    /// Keys known at start (Warden's own).
    Fixed(Arc<KeySet>),
    /// A JWKS fetched from the issuer.
    Remote(Arc<RemoteKeys>),
}

/// One issuer whose tokens are accepted, with everything needed to verify them.
pub(crate) struct TrustedIssuer {
    name: Arc<str>,
    audiences: NameList,
    algorithms: Vec<Algorithm>,
    allowed_text: Arc<str>,
    keys: IssuerKeys,
    claims: ClaimMapper,
    /// Warden's own tokens: the longest lifetime (`exp` - `iat`, seconds) accepted, and their
    /// id and issue time kept for revocation. `None` for other issuers.
    max_lifetime: Option<u64>,
    /// The longest a request waits for a refetch of this issuer's keys
    /// (`identity.jwks_refetch_wait`).
    refetch_wait: Duration,
}

impl TrustedIssuer {
    /// An OIDC issuer from configuration (`key` names it in errors); a request waits at most
    /// `refetch_wait` for a refetch of its keys.
    pub(crate) fn oidc(
        cfg: &IssuerConfig,
        key: &str,
        keys: IssuerKeys,
        default_claims: &ClaimMapping,
        refetch_wait: Duration,
    ) -> Result<TrustedIssuer, IdentityError> {
        let config_err = |field: &str, problem: String| IdentityError::Config {
            key: format!("{key}.{field}"),
            problem,
        };
        if cfg.audiences.iter().all(|a| a.is_empty()) {
            return Err(config_err(
                "audiences",
                "at least one audience is required, or tokens minted for any other service \
                 of this issuer would be accepted"
                    .into(),
            ));
        }
        if cfg.algorithms.is_empty() {
            return Err(config_err(
                "algorithms",
                "at least one algorithm is required".into(),
            ));
        }
        let mut algorithms = Vec::with_capacity(cfg.algorithms.len());
        for name in &cfg.algorithms {
            let alg = Algorithm::from_str(name).map_err(|_| {
                config_err(
                    "algorithms",
                    format!(
                        "{name:?} is not a supported signature algorithm (RS256, RS384, RS512, \
                         PS256, PS384, PS512, ES256, ES384, EdDSA)"
                    ),
                )
            })?;
            if is_hmac(alg) {
                return Err(config_err(
                    "algorithms",
                    format!(
                        "{name} is an HMAC algorithm: an issuer that publishes public keys never \
                         signs with a shared secret, and allowing it lets anyone sign with the \
                         public key"
                    ),
                ));
            }
            algorithms.push(alg);
        }
        let audiences = cfg
            .audiences
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| Arc::from(a.as_str()));
        Ok(TrustedIssuer {
            refetch_wait,
            ..TrustedIssuer::new(
                Arc::from(cfg.issuer.as_str()),
                NameList(audiences.collect()),
                algorithms,
                keys,
                ClaimMapper::new(cfg.claims.as_ref().unwrap_or(default_claims)),
            )
        })
    }

    /// Warden itself: EdDSA with its own key; the agent is always `sub`; tokens live at most
    /// `max_lifetime` seconds.
    pub(crate) fn warden(
        issuer: &str,
        audience: &str,
        keys: Vec<VerifyKey>,
        default_claims: &ClaimMapping,
        max_lifetime: u64,
    ) -> TrustedIssuer {
        let mapping = ClaimMapping {
            agent: "sub".into(),
            ..default_claims.clone()
        };
        TrustedIssuer {
            max_lifetime: Some(max_lifetime),
            ..TrustedIssuer::new(
                Arc::from(issuer),
                NameList(Arc::from([Arc::from(audience)])),
                vec![Algorithm::EdDSA],
                IssuerKeys::Fixed(Arc::new(KeySet::from_keys(keys))),
                ClaimMapper::new(&mapping),
            )
        }
    }

    fn new(
        name: Arc<str>,
        audiences: NameList,
        algorithms: Vec<Algorithm>,
        keys: IssuerKeys,
        claims: ClaimMapper,
    ) -> TrustedIssuer {
        let allowed_text: Vec<&str> = algorithms.iter().map(|a| alg_name(*a)).collect();
        TrustedIssuer {
            name,
            audiences,
            algorithms,
            allowed_text: Arc::from(allowed_text.join(", ")),
            keys,
            claims,
            max_lifetime: None,
            refetch_wait: Duration::ZERO,
        }
    }

    /// For Warden's own tokens: the lifetime (`exp` - `iat`) within the maximum, and the
    /// token's id (`jti`, absent from none Warden issued but allowed) and issue time, for
    /// revocation. `None` for other issuers' tokens.
    fn stamp(
        &self,
        claims: &Map<String, Value>,
        exp: u64,
    ) -> Result<Option<TokenStamp>, AuthError> {
        let Some(max) = self.max_lifetime else {
            return Ok(None);
        };
        let issued_at = numeric_date(claims, "iat")?.ok_or_else(|| AuthError::MissingClaim {
            claim: Arc::from("iat"),
            hint: ": Warden's tokens carry when they were issued; issue a new one",
        })?;
        let lifetime = exp.saturating_sub(issued_at);
        if lifetime > max {
            return Err(AuthError::LifetimeExceeded { lifetime, max });
        }
        let id = match claims.get("jti") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => Some(Arc::from(id.as_str())),
            Some(_) => {
                return Err(AuthError::InvalidClaim {
                    claim: Arc::from("jti"),
                    expected: "a string",
                });
            }
        };
        Ok(Some(TokenStamp { id, issued_at }))
    }

    /// The token's algorithm, if this issuer allows it.
    fn algorithm(&self, alg: &str) -> Result<Algorithm, AuthError> {
        let refused = || AuthError::AlgorithmNotAllowed {
            alg: Shown::word(alg),
            issuer: self.name.clone(),
            allowed: self.allowed_text.clone(),
        };
        let parsed = Algorithm::from_str(alg).map_err(|_| refused())?;
        if is_hmac(parsed) || !self.algorithms.contains(&parsed) {
            return Err(refused());
        }
        Ok(parsed)
    }

    /// Verifies the signature of `token` with the key it names (or, without `kid`, any key of
    /// this issuer that fits its algorithm), refetching the issuer's keys when needed: for an
    /// issuer whose keys are fetched, the key that verified it; for a retired Warden key with
    /// an `until`, its id and `until`.
    async fn verify_signature(
        &self,
        token: &UnverifiedToken<'_>,
        alg: Algorithm,
    ) -> Result<(Option<KeyInUse>, Option<(Arc<str>, u64)>), AuthError> {
        let kid = token.header.kid.as_deref();
        let set = self.key_set_for(kid, alg).await?;
        let verified = match kid {
            Some(kid) => {
                let key = set.by_kid(kid).ok_or_else(|| {
                    self.missing(format!("key {}", Shown::new(kid)), |fetched| {
                        AuthError::UnknownKey {
                            kid: Shown::new(kid),
                            issuer: self.name.clone(),
                            fetched,
                        }
                    })
                })?;
                if !key.fits(alg) {
                    return Err(AuthError::KeyAlgorithmMismatch {
                        alg: alg_name(alg),
                        kid: Shown::new(kid),
                        issuer: self.name.clone(),
                        key: key.describe(),
                    });
                }
                key.verify(alg, token.signing_input, token.signature)
                    .then(|| Arc::clone(key))
            }
            None => {
                let fitting = set.fitting(alg).count();
                if fitting == 0 {
                    let wanted =
                        format!("a key fitting {} (the token has no `kid`)", alg_name(alg));
                    return Err(self.missing(wanted, |fetched| AuthError::NoFittingKey {
                        alg: alg_name(alg),
                        issuer: self.name.clone(),
                        fetched,
                    }));
                }
                if fitting > KIDLESS_MAX_KEYS {
                    return Err(AuthError::KidRequired {
                        alg: alg_name(alg),
                        issuer: self.name.clone(),
                        fitting,
                        tried: KIDLESS_MAX_KEYS,
                    });
                }
                set.fitting(alg)
                    .find(|key| key.verify(alg, token.signing_input, token.signature))
                    .cloned()
            }
        };
        let key = verified.ok_or_else(|| AuthError::BadSignature {
            issuer: self.name.clone(),
        })?;
        let retired = key.until.map(|until| {
            let kid = key.kid.clone().unwrap_or_else(|| Arc::from("(no kid)"));
            (kid, until)
        });
        let in_use = match &self.keys {
            IssuerKeys::Fixed(_) => None,
            IssuerKeys::Remote(remote) => Some(KeyInUse::new(Arc::clone(remote), key)),
        };
        Ok((in_use, retired))
    }

    /// The key set to look in: the current one when it has what the token needs, else the
    /// one after a (rate-limited) refetch, waited for at most `refetch_wait`. Fails closed
    /// when no key set was ever fetched.
    async fn key_set_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, AuthError> {
        let remote = match &self.keys {
            IssuerKeys::Fixed(set) => return Ok(set.clone()),
            IssuerKeys::Remote(remote) => remote,
        };
        let has_key = |set: &KeySet| match kid {
            Some(kid) => set.by_kid(kid).is_some(),
            None => set.fitting(alg).next().is_some(),
        };
        if let Some(set) = remote.keys()
            && has_key(&set)
        {
            return Ok(set);
        }
        remote.refresh_on_demand(self.refetch_wait).await;
        remote.keys().ok_or_else(|| AuthError::IssuerUnavailable {
            issuer: self.name.clone(),
            reason: remote.unavailable_reason(),
        })
    }

    /// Why the key set lacks what a token needs (`wanted`): `absent` (a 401) when it is the
    /// issuer's current set, [`AuthError::KeysUnconfirmed`] (a 503) when it could not be
    /// fetched again to look (the last attempt failed, or one still runs).
    fn missing(&self, wanted: String, absent: impl FnOnce(FetchedAgo) -> AuthError) -> AuthError {
        match &self.keys {
            IssuerKeys::Fixed(_) => absent(FetchedAgo::fresh(0)),
            IssuerKeys::Remote(remote) if remote.unconfirmed() => AuthError::KeysUnconfirmed {
                wanted,
                issuer: self.name.clone(),
                fetched: remote.fetched_ago(),
            },
            IssuerKeys::Remote(remote) => absent(remote.fetched_ago()),
        }
    }

    fn check_audience(&self, claims: &Map<String, Value>) -> Result<(), AuthError> {
        let wrong = |audience: Vec<Arc<str>>| AuthError::WrongAudience {
            audience: NameList(audience.into()),
            accepted: self.audiences.clone(),
        };
        let accepted = |aud: &str| self.audiences.0.iter().any(|a| **a == *aud);
        match claims.get("aud") {
            Some(Value::String(aud)) if accepted(aud) => Ok(()),
            Some(Value::String(aud)) => Err(wrong(vec![Arc::from(Shown::new(aud).as_str())])),
            Some(Value::Array(auds)) => {
                if auds.iter().any(|a| a.as_str().is_some_and(accepted)) {
                    return Ok(());
                }
                let shown = auds.iter().take(8).filter_map(|a| a.as_str());
                Err(wrong(
                    shown.map(|a| Arc::from(Shown::new(a).as_str())).collect(),
                ))
            }
            Some(_) => Err(AuthError::InvalidClaim {
                claim: Arc::from("aud"),
                expected: "a string or an array of strings",
            }),
            None => Err(wrong(Vec::new())),
        }
    }
}

/// What a verified token proved.
pub(crate) struct Verified {
    pub principal: Principal,
    /// A Warden token's id and issue time.
    pub stamp: Option<TokenStamp>,
    /// The key that verified it, when its issuer's keys are fetched (and may be withdrawn).
    pub key: Option<KeyInUse>,
}

/// Verifies tokens against the trusted issuers.
pub(crate) struct Verifier {
    issuers: Vec<TrustedIssuer>,
    trusted: NameList,
    leeway: u64,
}

impl Verifier {
    /// A verifier trusting `issuers`, tolerating `leeway` seconds of clock skew.
    pub(crate) fn new(issuers: Vec<TrustedIssuer>, leeway: u64) -> Verifier {
        let trusted = NameList(issuers.iter().map(|i| i.name.clone()).collect());
        Verifier {
            issuers,
            trusted,
            leeway,
        }
    }

    /// Verifies `token` fully (signature, time, audience, claims; for Warden's own tokens,
    /// their lifetime) at unix time `now`: its principal, for Warden's own tokens what
    /// revocations are judged on, and for a fetched key set the key that verified it.
    pub(crate) async fn verify(&self, token: &str, now: u64) -> Result<Verified, AuthError> {
        let token = token::parse(token)?;
        if token.header.alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::UnsignedToken);
        }
        let iss = match token.claims.get("iss") {
            Some(Value::String(iss)) => iss,
            Some(_) => {
                return Err(AuthError::InvalidClaim {
                    claim: Arc::from("iss"),
                    expected: "a string",
                });
            }
            None => {
                return Err(AuthError::MissingClaim {
                    claim: Arc::from("iss"),
                    hint: " naming the issuer",
                });
            }
        };
        let issuer = self
            .issuers
            .iter()
            .find(|i| *i.name == **iss)
            .ok_or_else(|| AuthError::UntrustedIssuer {
                issuer: Shown::new(iss),
                trusted: self.trusted.clone(),
            })?;
        let alg = issuer.algorithm(&token.header.alg)?;
        let (key, retired) = issuer.verify_signature(&token, alg).await?;
        if let Some((kid, until)) = &retired
            && now >= *until
        {
            return Err(AuthError::RetiredKey {
                kid: kid.clone(),
                until: UnixTime(*until),
            });
        }
        let exp = self.check_time(&token.claims, now)?;
        issuer.check_audience(&token.claims)?;
        let stamp = issuer.stamp(&token.claims, exp)?;
        if let Some(stamp) = &stamp
            && stamp.issued_at > now.saturating_add(self.leeway)
        {
            return Err(AuthError::IssuedInFuture {
                iat: UnixTime(stamp.issued_at),
                leeway: self.leeway,
            });
        }
        // A retired key's token ends at the key's `until`: so does its principal, and with
        // it the token's place in the cache.
        let ends = retired.map_or(exp, |(_, until)| exp.min(until));
        let principal = issuer.claims.principal(&token.claims, &issuer.name, ends)?;
        Ok(Verified {
            principal,
            stamp,
            key,
        })
    }

    /// Checks `exp` (required) and `nbf` with leeway; returns `exp`.
    fn check_time(&self, claims: &Map<String, Value>, now: u64) -> Result<u64, AuthError> {
        let exp = numeric_date(claims, "exp")?.ok_or_else(|| AuthError::MissingClaim {
            claim: Arc::from("exp"),
            hint: ": tokens without an expiry are refused",
        })?;
        if now > exp.saturating_add(self.leeway) {
            return Err(AuthError::Expired {
                exp: UnixTime(exp),
                leeway: self.leeway,
            });
        }
        if let Some(nbf) = numeric_date(claims, "nbf")?
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(AuthError::NotYetValid {
                nbf: UnixTime(nbf),
                leeway: self.leeway,
            });
        }
        Ok(exp)
    }
}

/// A NumericDate claim (seconds since 1970, integer or fractional).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, AuthError> {
    let invalid = || AuthError::InvalidClaim {
        claim: Arc::from(name),
        expected: "a number of seconds since 1970",
    };
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Ok(Some(secs)),
            (None, Some(secs)) if secs.is_finite() && secs >= 0.0 && secs < u64::MAX as f64 => {
                Ok(Some(secs as u64))
            }
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}
