//! Why a caller was not identified ([`AuthError`]) and why identity could not be set up
//! ([`IdentityError`]). Messages name what was wrong and where; they never contain a token.

use std::fmt;

use crate::text::bounded;
use std::path::PathBuf;
use std::sync::Arc;

/// Longest untrusted string (issuer, kid, audience) echoed back in a message.
const SHOWN_MAX: usize = 120;

/// A value read from an unverified token, cut to a readable length for messages and quoted
/// (unless it is a short plain word such as an algorithm name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    text: String,
    quoted: bool,
}

impl Shown {
    /// Keeps at most [`SHOWN_MAX`] characters of `s`, shown quoted (and so escaped).
    pub(crate) fn new(s: &str) -> Shown {
        Shown {
            text: bounded(s, SHOWN_MAX).into_owned(),
            quoted: true,
        }
    }

    /// Like [`Shown::new`], but shown bare when `s` is a short ASCII word.
    pub(crate) fn word(s: &str) -> Shown {
        let plain = !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        Shown {
            quoted: !plain,
            ..Shown::new(s)
        }
    }

    /// The (possibly cut) text.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted {
            write!(f, "{:?}", self.text)
        } else {
            f.write_str(&self.text)
        }
    }
}

/// A list of names shown as `"a", "b"` (or `none`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Arc<[Arc<str>]>);

impl fmt::Display for NameList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name:?}")?;
        }
        Ok(())
    }
}

/// The state of an issuer's key set, as a refusal tells it: when it was last fetched, whether
/// the last attempt to fetch it again failed, and whether a fetch runs now (either way the
/// keys in use may be older than the token needs). It names no URL of the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedAgo {
    /// Seconds since the last successful fetch; `None` if there never was one.
    pub success: Option<u64>,
    /// When the last attempt failed (seconds ago) and why, if it did.
    pub failure: Option<(u64, Arc<str>)>,
    /// Seconds since the fetch that runs now started, if one does.
    pub running: Option<u64>,
}

impl FetchedAgo {
    /// Keys fetched `secs` ago, with no failure since.
    pub fn fresh(secs: u64) -> FetchedAgo {
        FetchedAgo {
            success: Some(secs),
            failure: None,
            running: None,
        }
    }
}

impl fmt::Display for FetchedAgo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ago = |secs: u64| {
            if secs == 0 {
                "just now".to_owned()
            } else {
                format!("{secs}s ago")
            }
        };
        let last_fetched = |f: &mut fmt::Formatter<'_>| match self.success {
            Some(secs) => write!(f, "keys last fetched {}", ago(secs)),
            None => f.write_str("keys never fetched"),
        };
        if let Some(secs) = self.running {
            write!(
                f,
                "refetching the JWKS has run since {} without an answer; ",
                ago(secs)
            )?;
            return last_fetched(f);
        }
        if let Some((secs, error)) = &self.failure {
            write!(f, "refetching the JWKS failed {}: {error}; ", ago(*secs))?;
            return match self.success {
                Some(secs) => write!(f, "keys last fetched {}", ago(secs)),
                None => f.write_str("keys never fetched"),
            };
        }
        match self.success {
            Some(secs) => write!(f, "refreshed {}", ago(secs)),
            None => f.write_str("never fetched"),
        }
    }
}

/// Unix seconds shown as RFC 3339 (`2026-11-21T10:00:00Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixTime(pub u64);

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(self.0));
        match at {
            Some(at) => write!(f, "{}", humantime::format_rfc3339_seconds(at)),
            None => write!(f, "unix time {}", self.0),
        }
    }
}

/// Why a request's caller could not be identified. Shown to operators and (as a reason) to
/// agents; never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credential in any of the accepted headers.
    #[error(
        "no credential: send the agent token in `Authorization: Bearer`, `x-api-key`, `api-key` \
         or `x-goog-api-key`"
    )]
    MissingCredential,
    /// The credential is not a well-formed JWT.
    #[error("credential is not a valid JWT: {0}")]
    MalformedToken(&'static str),
    /// `exp` (plus leeway) is in the past.
    #[error("token expired at {exp} (leeway {leeway}s)")]
    Expired { exp: UnixTime, leeway: u64 },
    /// `nbf` (minus leeway) is in the future.
    #[error("token is not valid before {nbf} (leeway {leeway}s)")]
    NotYetValid { nbf: UnixTime, leeway: u64 },
    /// The token's `iss` is not configured as trusted. The caller is not told which issuers
    /// are ([`AuthError::detail`] says, for the log and the audit record).
    #[error(
        "token issuer {issuer} is not trusted by this gateway; ask its operators which identity \
         provider issues your tokens"
    )]
    UntrustedIssuer { issuer: Shown, trusted: NameList },
    /// None of the token's `aud` values is accepted for its issuer.
    #[error("audience [{audience}] does not match any of [{accepted}]")]
    WrongAudience {
        audience: NameList,
        accepted: NameList,
    },
    /// A required claim is absent.
    #[error("token has no `{claim}` claim{hint}")]
    MissingClaim { claim: Arc<str>, hint: &'static str },
    /// A claim has the wrong type.
    #[error("claim `{claim}` must be {expected}")]
    InvalidClaim {
        claim: Arc<str>,
        expected: &'static str,
    },
    /// The claim naming the principal (an agent; an operator of the admin API, whose
    /// `admin.identity` claim is read the same way) would not read as it is in records and
    /// logs (a control, bidirectional or invisible character, whitespace at either end).
    #[error(
        "claim `{claim}` names the principal with a value that does not read as it is: \
         {problem}; the identity provider must issue ids without control, bidirectional or \
         invisible characters"
    )]
    UnreadableClaim {
        claim: Arc<str>,
        problem: crate::protocol::IdentifierProblem,
    },
    /// The token's `kid` is not in the issuer's key set, even after a refetch.
    #[error("no key {kid} in the JWKS of {issuer} ({fetched})")]
    UnknownKey {
        kid: Shown,
        issuer: Arc<str>,
        fetched: FetchedAgo,
    },
    /// The token names a key (or, without `kid`, an algorithm) the issuer's key set does not
    /// have, and the key set could not be fetched again to look for it: the last attempt
    /// failed, or the one that runs did not answer within `identity.jwks_refetch_wait`. The
    /// key may be a new one: Warden's outage, refused (fail closed) as such.
    #[error(
        "{wanted} is not among the keys of issuer {issuer} Warden has, and they could not be \
         fetched again ({fetched}); tokens needing a key Warden does not have are refused until \
         its keys can be fetched: retry later, and tell Warden's operators if it lasts"
    )]
    KeysUnconfirmed {
        /// `key "rsa-2"`, or `no key fitting RS256` for a token without `kid`.
        wanted: String,
        issuer: Arc<str>,
        fetched: FetchedAgo,
    },
    /// The token has no `kid` and no key of the issuer fits its algorithm.
    #[error(
        "token has no `kid` and no key in the JWKS of {issuer} fits algorithm {alg} ({fetched})"
    )]
    NoFittingKey {
        alg: &'static str,
        issuer: Arc<str>,
        fetched: FetchedAgo,
    },
    /// The token has no `kid` and more of the issuer's keys fit its algorithm than Warden
    /// tries: each try is a signature check on the request's worker.
    #[error(
        "token has no `kid` and {fitting} keys in the JWKS of {issuer} fit algorithm {alg}; \
         Warden tries at most {tried} keys for a token that does not name its key (OpenID \
         Connect Core 10.1 requires `kid` when there are several): have the issuer set `kid`"
    )]
    KidRequired {
        alg: &'static str,
        issuer: Arc<str>,
        fitting: usize,
        tried: usize,
    },
    /// The token's `alg` is not in the issuer's allowlist (or is never acceptable).
    #[error("algorithm {alg} is not allowed for issuer {issuer} (allowed: {allowed})")]
    AlgorithmNotAllowed {
        alg: Shown,
        issuer: Arc<str>,
        allowed: Arc<str>,
    },
    /// `alg: none`: an unsigned token.
    #[error("unsigned token (algorithm \"none\") is never accepted")]
    UnsignedToken,
    /// The key named by `kid` cannot verify the token's algorithm.
    #[error("token algorithm {alg} does not fit key {kid} of {issuer} ({key})")]
    KeyAlgorithmMismatch {
        alg: &'static str,
        kid: Shown,
        issuer: Arc<str>,
        key: String,
    },
    /// The signature does not verify.
    #[error("signature does not verify with the key of {issuer} it names")]
    BadSignature { issuer: Arc<str> },
    /// The issuer's keys could not be fetched: its tokens are refused (fail closed).
    #[error(
        "keys of issuer {issuer} are unavailable ({reason}); its tokens are refused until its \
         JWKS can be fetched: retry later, and tell Warden's operators if it lasts"
    )]
    IssuerUnavailable { issuer: Arc<str>, reason: Arc<str> },
    /// A Warden token lives longer than `identity.warden_issuer.max_ttl` allows.
    #[error(
        "token lifetime {lifetime}s is longer than Warden's tokens may live ({max}s, \
         identity.warden_issuer.max_ttl); issue a new token with a shorter --ttl"
    )]
    LifetimeExceeded { lifetime: u64, max: u64 },
    /// A Warden token says it was issued later than now (beyond the clock skew tolerated):
    /// its lifetime and its place before a revocation could not be trusted.
    #[error(
        "token issued at {iat}, in the future (leeway {leeway}s); issue a new token, and check \
         the clocks of the host that issued it"
    )]
    IssuedInFuture { iat: UnixTime, leeway: u64 },
    /// The token was signed by a retired key (`previous_keys`) past its `until`.
    #[error(
        "token signed by key {kid}, retired by Warden's operators: nothing it signs is accepted \
         since {until}; ask the operators for a new token"
    )]
    RetiredKey { kid: Arc<str>, until: UnixTime },
    /// An operator revoked the token, or every token of its agent issued until then.
    #[error(
        "token revoked {whom} at {at} by an operator: {reason}; ask the operators for a new token"
    )]
    Revoked {
        /// `by its id`, or `with every token of its agent issued until then`.
        whom: &'static str,
        at: UnixTime,
        reason: Arc<str>,
    },
}

impl AuthError {
    /// The HTTP status a request refused for this reason gets: 401, except when the issuer's
    /// keys are unavailable, or could not be fetched again for a key they lack, which is
    /// Warden's outage, not the agent's bad key (503, which agents retry).
    pub fn status(&self) -> http::StatusCode {
        match self {
            AuthError::IssuerUnavailable { .. } | AuthError::KeysUnconfirmed { .. } => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            _ => http::StatusCode::UNAUTHORIZED,
        }
    }

    /// What the caller is not told but the operator needs: the issuers this gateway trusts,
    /// for an untrusted one.
    pub fn detail(&self) -> Option<String> {
        match self {
            AuthError::UntrustedIssuer { trusted, .. } => Some(format!("trusted: {trusted}")),
            _ => None,
        }
    }

    /// `told` (what the caller was told) followed by the [`detail`](Self::detail), if any.
    pub fn detailed(&self, told: String) -> String {
        match self.detail() {
            Some(detail) => format!("{told} ({detail})"),
            None => told,
        }
    }

    /// A stable short code for metrics, audit and error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingCredential => "missing_credential",
            AuthError::MalformedToken(_) => "malformed_token",
            AuthError::Expired { .. } => "expired",
            AuthError::NotYetValid { .. } => "not_yet_valid",
            AuthError::UntrustedIssuer { .. } => "untrusted_issuer",
            AuthError::WrongAudience { .. } => "wrong_audience",
            AuthError::MissingClaim { .. } => "missing_claim",
            AuthError::InvalidClaim { .. } | AuthError::UnreadableClaim { .. } => "invalid_claim",
            AuthError::UnknownKey { .. }
            | AuthError::NoFittingKey { .. }
            | AuthError::KidRequired { .. } => "unknown_key",
            AuthError::AlgorithmNotAllowed { .. } | AuthError::UnsignedToken => {
                "algorithm_not_allowed"
            }
            AuthError::KeyAlgorithmMismatch { .. } => "key_algorithm_mismatch",
            AuthError::BadSignature { .. } => "bad_signature",
            AuthError::IssuerUnavailable { .. } | AuthError::KeysUnconfirmed { .. } => {
                "issuer_unavailable"
            }
            AuthError::LifetimeExceeded { .. } => "token_lifetime_exceeded",
            AuthError::IssuedInFuture { .. } => "issued_in_future",
            AuthError::RetiredKey { .. } => "retired_key",
            AuthError::Revoked { .. } => "token_revoked",
        }
    }
}

/// Why identity could not be set up, or a Warden token not issued.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A configuration value is unusable.
    #[error("identity configuration: {key}: {problem}")]
    Config { key: String, problem: String },
    /// Reading, creating or writing a key file failed.
    #[error("{action} {path}: {source}")]
    KeyFile {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The signing key file exists but does not hold an Ed25519 PKCS#8 PEM key.
    #[error(
        "{path} is not an Ed25519 private key in PKCS#8 PEM ({reason}); move it away to let \
         Warden create a new one, or point identity.warden_issuer.key_file at the right file"
    )]
    KeyFormat { path: PathBuf, reason: String },
    /// Signing a token failed.
    #[error("could not sign the token: {0}")]
    Sign(String),
    /// A token request is invalid (agent name, TTL, claims).
    #[error("cannot issue token: {0}")]
    InvalidRequest(String),
}

/// Why a `--claim k=v` argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimArgError {
    /// No `=` in the argument.
    #[error("claim {0:?} has no `=`: write it as NAME=VALUE (e.g. fleet=billing)")]
    NoEquals(String),
    /// The name before `=` is empty.
    #[error("claim {0:?} has an empty name: write it as NAME=VALUE")]
    EmptyName(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_message_shows_rfc3339_time_and_leeway() {
        let e = AuthError::Expired {
            exp: UnixTime(1_795_255_200),
            leeway: 30,
        };
        assert_eq!(
            e.to_string(),
            "token expired at 2026-11-21T10:00:00Z (leeway 30s)"
        );
        assert_eq!(e.code(), "expired");
    }

    #[test]
    fn untrusted_strings_are_quoted_and_cut() {
        let long = "x".repeat(500);
        let shown = Shown::new(&long).to_string();
        assert!(shown.len() < 140, "{shown}");
        assert!(Shown::new("a\"b").to_string().contains("\\\""));
    }

    #[test]
    fn audience_message_lists_both_sides() {
        let e = AuthError::WrongAudience {
            audience: NameList(vec![Arc::from("a")].into()),
            accepted: NameList(vec![Arc::from("warden")].into()),
        };
        assert_eq!(
            e.to_string(),
            r#"audience ["a"] does not match any of ["warden"]"#
        );
    }
}
