//! `identity:` configuration: who may call Warden and how their claims become Cedar attributes.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// `identity:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IdentityConfig {
    /// Require every agent request to carry a valid token. When false, callers are the
    /// `anonymous` agent and Warden refuses to listen on a non-loopback address.
    pub required: bool,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// Tokens signed by Warden itself (`warden token issue`).
    pub warden_issuer: WardenIssuerConfig,
    /// Trusted OIDC issuers whose access tokens (JWT) identify agents.
    pub issuers: Vec<IssuerConfig>,
    /// How token claims map to principal attributes (default for every issuer).
    pub claims: ClaimMapping,
    /// Maximum number of verified tokens kept in the cache.
    pub cache_entries: usize,
    /// How often each issuer's JWKS is fetched again in the background.
    #[serde(with = "humantime_serde")]
    pub jwks_refresh_interval: Duration,
    /// Shortest time between two fetches of one issuer's JWKS triggered by tokens (unknown
    /// `kid`, keys not yet loaded): bounds what a stream of forged tokens can cost the IdP.
    #[serde(with = "humantime_serde")]
    pub jwks_min_refetch_interval: Duration,
    /// The longest a request waits for a refetch of its issuer's JWKS (its token names a key
    /// Warden does not have); the fetch goes on past it and the request is refused `503`.
    #[serde(with = "humantime_serde")]
    pub jwks_refetch_wait: Duration,
    /// What a verified client certificate (mTLS, `listen.tls.client_ca`) says about the caller.
    pub client_certificate: ClientCertificate,
}

/// `identity.client_certificate`: what the identity of a verified client certificate is to
/// the principal. Either way it is in the Cedar context (`context.client_certificate`) and in
/// the audit record.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientCertificate {
    /// A principal attribute (`principal.client_certificate`) of the agent the token names.
    #[default]
    Attribute,
    /// The principal itself when the request carries no agent token: `Agent::"<identity>"`,
    /// issuer `mtls`. A request with a token is the token's agent, with the attribute.
    Principal,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            required: true,
            leeway_seconds: 30,
            warden_issuer: WardenIssuerConfig::default(),
            issuers: Vec::new(),
            claims: ClaimMapping::default(),
            cache_entries: 100_000,
            jwks_refresh_interval: Duration::from_secs(300),
            jwks_min_refetch_interval: Duration::from_secs(5),
            jwks_refetch_wait: Duration::from_secs(2),
            client_certificate: ClientCertificate::default(),
        }
    }
}

/// The issuer of an agent a verified client certificate names
/// (`identity.client_certificate`): no token issuer may have it, or a secret path templated
/// with `{principal.issuer}` would give that agent's secrets to a token's namesake.
pub const CERTIFICATE_ISSUER: &str = "mtls";

/// `identity.warden_issuer:` Warden's own agent tokens.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WardenIssuerConfig {
    /// Accept tokens issued by `warden token issue`.
    pub enabled: bool,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens.
    pub audience: String,
    /// Signing key (PKCS#8 PEM, Ed25519). Default: `<data_dir>/keys/agent-signing.pem`,
    /// created on first use with mode 0600.
    pub key_file: Option<PathBuf>,
    /// The signing key's PEM from a secret source instead (`{ vault: { kv: ..., field: ... }
    /// }`, `{ env: NAME }`, `{ file: PATH }`): read at start and when the identity settings
    /// change; never created.
    pub key: Option<crate::secrets::CredentialSource>,
    /// Retired signing keys (PEM files: the public key, or the old key file itself; each its
    /// path, or `{ path, until }`) whose tokens are still accepted, and published in the JWK
    /// Set, before their `until` (always, without one); never signed with. A rotation moves
    /// the old key here, so agents' tokens outlive it.
    pub previous_keys: Vec<crate::keys::PreviousKey>,
    /// The longest lifetime (`exp` - `iat`) of a Warden token: `warden token issue` refuses a
    /// longer `--ttl`, and a presented token whose lifetime is longer is refused
    /// (`token_lifetime_exceeded`), whenever it was issued. At most [`MAX_TTL_LIMIT`].
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// How often the state store's token revocation revision is read (at start): the delay
    /// with which a revocation made by another process reaches this one on SQLite (on
    /// PostgreSQL it arrives by `NOTIFY` at once; this is the safety net).
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
}

/// `identity.warden_issuer.max_ttl` unless configured: 30 days.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest `identity.warden_issuer.max_ttl` any Warden accepts: 365 days. No replica
/// accepts a Warden token living longer, whatever its own maximum, so a revocation kept this
/// long (plus [`MAX_LEEWAY_SECONDS`]) outlives every token it stops on every replica.
pub const MAX_TTL_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);

/// The largest `identity.leeway_seconds` any Warden accepts: 5 minutes.
pub const MAX_LEEWAY_SECONDS: u64 = 300;

/// What is wrong with `max_ttl` as `identity.warden_issuer.max_ttl`, if anything.
pub fn max_ttl_problem(max_ttl: Duration) -> Option<String> {
    if max_ttl.as_secs() == 0 {
        return Some("must be at least 1s (e.g. 30d): the longest a Warden token may live".into());
    }
    (max_ttl > MAX_TTL_LIMIT).then(|| {
        "must be at most 365d, the longest Warden's tokens may ever live: revocations are kept \
         that long, so that every replica refuses a revoked token until it expires"
            .into()
    })
}

/// What is wrong with `until`, a retired signing key's end in
/// `identity.warden_issuer.previous_keys`, at `now`, if anything: it is more than `max_ttl`
/// away, longer than any token issued before a rotation made now can live, so it would
/// only lengthen what a holder of the old key can do.
pub fn retired_until_problem(
    until: std::time::SystemTime,
    max_ttl: Duration,
    now: std::time::SystemTime,
) -> Option<String> {
    let latest = now + max_ttl;
    (until > latest).then(|| {
        format!(
            "is more than identity.warden_issuer.max_ttl after now: no token signed before the \
             rotation lives that long; write the rotation time plus max_ttl, at most {}",
            humantime::format_rfc3339_seconds(latest)
        )
    })
}

/// The configuration key of entry `i` of `identity.warden_issuer.previous_keys`, and each
/// entry's `until` problem at `now`.
pub fn previous_keys_problems(
    cfg: &WardenIssuerConfig,
    now: std::time::SystemTime,
) -> Vec<(String, String)> {
    cfg.previous_keys
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| {
            let problem = retired_until_problem(entry.until?, cfg.max_ttl, now)?;
            Some((
                format!("identity.warden_issuer.previous_keys[{i}].until"),
                problem,
            ))
        })
        .collect()
}

/// What is wrong with `leeway` as `identity.leeway_seconds`, if anything.
pub fn leeway_problem(leeway: u64) -> Option<String> {
    (leeway > MAX_LEEWAY_SECONDS).then(|| {
        format!(
            "{leeway} is more clock skew than Warden tolerates ({MAX_LEEWAY_SECONDS} at most): \
             revocations are kept until every token they stop has expired with this much \
             leeway; synchronise the clocks"
        )
    })
}

impl Default for WardenIssuerConfig {
    fn default() -> Self {
        WardenIssuerConfig {
            enabled: true,
            issuer: "warden".to_string(),
            audience: "warden".to_string(),
            key_file: None,
            key: None,
            previous_keys: Vec::new(),
            max_ttl: DEFAULT_MAX_TTL,
            refresh_interval: Duration::from_millis(500),
        }
    }
}

/// One trusted OIDC issuer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Issuer URL; must equal the token's `iss`. Discovery reads
    /// `<issuer>/.well-known/openid-configuration` unless `jwks_uri` is set.
    pub issuer: String,
    /// Accepted `aud` values (at least one must match).
    pub audiences: Vec<String>,
    /// Accepted signing algorithms.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// JWKS URL, skipping discovery.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Claim mapping for this issuer, replacing `identity.claims`.
    #[serde(default)]
    pub claims: Option<ClaimMapping>,
    /// Extra CA certificate (PEM) trusted for discovery and JWKS fetches.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Where a `jwks_uri` from discovery (or a redirect) on another host than the issuer's
    /// may be reached at an address that is not globally reachable: the entries of
    /// `upstream.allow_private` (`10.0.0.0/8`, `keys.internal`, `*.svc.cluster.local`).
    #[serde(default)]
    pub allow_private: Vec<crate::upstream::private_allowance::PrivateAllowance>,
}

/// The signature algorithms an issuer's tokens may use unless configured.
pub(crate) fn default_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .map(String::from)
        .to_vec()
}

/// Which claim feeds which principal attribute.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimMapping {
    /// Claim holding the agent id.
    pub agent: String,
    pub fleet: String,
    pub owner: String,
    pub environment: String,
    /// Space-separated string or array of scopes.
    pub scopes: String,
    /// Array (or single string) of group names: Cedar `AgentGroup` parents.
    pub groups: String,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            agent: "sub".into(),
            fleet: "fleet".into(),
            owner: "owner".into(),
            environment: "environment".into(),
            scopes: "scope".into(),
            groups: "groups".into(),
        }
    }
}
