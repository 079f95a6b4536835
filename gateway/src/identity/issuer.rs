//! Warden's own agent tokens: the Ed25519 signing key (loaded or created with tight file
//! modes), `warden token issue`, and the public key as a JWK Set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};

use super::config::WardenIssuerConfig;
use super::error::{ClaimArgError, IdentityError};
use super::jwks::VerifyKey;
use crate::keys::{self, KeyError, RetiredKey};

impl From<KeyError> for IdentityError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::File {
                action,
                path,
                source,
            } => IdentityError::KeyFile {
                action,
                path,
                source,
            },
            KeyError::Format { origin, reason, .. } => IdentityError::KeyFormat {
                path: PathBuf::from(origin),
                reason,
            },
            KeyError::Retired { key, problem } => IdentityError::Config { key, problem },
            other @ (KeyError::Jwks { .. } | KeyError::Encode(_)) => {
                IdentityError::Sign(other.to_string())
            }
        }
    }
}

/// Claims Warden sets itself; `--claim` cannot override them.
const RESERVED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

/// Signs agent tokens with Warden's Ed25519 key.
pub struct TokenIssuer {
    issuer: String,
    audience: String,
    key_file: PathBuf,
    kid: Arc<str>,
    public: [u8; 32],
    /// Retired keys (`previous_keys`): their tokens verify, nothing is signed with them.
    previous: Vec<RetiredKey>,
    encoding: EncodingKey,
    max_ttl: Duration,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("key_file", &self.key_file)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Loads Warden's Ed25519 signing key (PKCS#8 PEM) or creates it (dir mode 0700, file 0600).
    pub fn load_or_create(
        cfg: &WardenIssuerConfig,
        data_dir: &Path,
    ) -> Result<TokenIssuer, IdentityError> {
        let key_file = key_path(cfg, data_dir);
        let signing = keys::load_or_create(&key_file, "agent signing key")?;
        TokenIssuer::with_key(cfg, key_file, &signing)
    }

    /// Warden's signing key from `pem` (PKCS#8, Ed25519), read from `origin` (a secret
    /// source, named in errors).
    pub fn from_pem(
        cfg: &WardenIssuerConfig,
        pem: &str,
        origin: &str,
    ) -> Result<TokenIssuer, IdentityError> {
        let signing = keys::from_pem(pem, origin)?;
        TokenIssuer::with_key(cfg, PathBuf::from(origin), &signing)
    }

    fn with_key(
        cfg: &WardenIssuerConfig,
        key_file: PathBuf,
        signing: &SigningKey,
    ) -> Result<TokenIssuer, IdentityError> {
        let der = signing
            .to_pkcs8_der()
            .map_err(|e| IdentityError::Sign(format!("cannot encode the signing key: {e}")))?;
        let public = signing.verifying_key().to_bytes();
        let kid = keys::thumbprint(&public);
        let previous = previous_keys(cfg, &kid)?;
        Ok(TokenIssuer {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            key_file,
            kid: Arc::from(kid),
            public,
            previous,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            max_ttl: cfg.max_ttl,
        })
    }

    /// Checks the signing key [`load_or_create`](Self::load_or_create) would use, without
    /// creating anything: an existing file must be readable and hold an Ed25519 PKCS#8 PEM
    /// key. A missing file is fine: start-up creates it.
    pub fn check_key_file(cfg: &WardenIssuerConfig, data_dir: &Path) -> Result<(), IdentityError> {
        if cfg.key.is_some() {
            // Read from its source at start (it may be in Vault).
            return Ok(());
        }
        Ok(keys::check_file(
            &key_path(cfg, data_dir),
            "agent signing key",
        )?)
    }

    /// `warden token issue --agent NAME --ttl 1h --claim k=v`: claims are extra JWT claims.
    pub fn issue(
        &self,
        agent: &str,
        ttl: Duration,
        claims: &[(String, Value)],
    ) -> Result<String, IdentityError> {
        if agent.trim().is_empty() {
            return Err(IdentityError::InvalidRequest(
                "the agent name is empty".into(),
            ));
        }
        // A gateway refuses such a token (`identity/claims.rs`): say so now.
        if let Some(problem) = crate::protocol::unreadable_identifier(agent) {
            return Err(IdentityError::InvalidRequest(format!(
                "the agent name does not read as it is: {problem}; records and SIEMs would show \
                 it as another name"
            )));
        }
        if ttl.as_secs() == 0 {
            return Err(IdentityError::InvalidRequest(
                "the TTL must be at least 1s".into(),
            ));
        }
        if ttl > self.max_ttl {
            return Err(IdentityError::InvalidRequest(format!(
                "the TTL {} is longer than identity.warden_issuer.max_ttl ({}): issue a shorter \
                 token (and a new one before it expires), or raise the maximum",
                as_written(ttl),
                as_written(self.max_ttl)
            )));
        }
        let mut payload = Map::new();
        for (name, value) in claims {
            if RESERVED_CLAIMS.contains(&name.as_str()) {
                return Err(IdentityError::InvalidRequest(format!(
                    "claim `{name}` is set by Warden (use --agent and --ttl)"
                )));
            }
            payload.insert(name.clone(), value.clone());
        }
        let now = super::clock::now_unix();
        payload.insert("iss".into(), json!(self.issuer));
        payload.insert("sub".into(), json!(agent));
        payload.insert("aud".into(), json!(self.audience));
        payload.insert("iat".into(), json!(now));
        payload.insert("exp".into(), json!(now.saturating_add(ttl.as_secs())));
        payload.insert("jti".into(), json!(uuid::Uuid::now_v7().to_string()));
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.to_string());
        jsonwebtoken::encode(&header, &payload, &self.encoding)
            .map_err(|e| IdentityError::Sign(e.to_string()))
    }

    /// Warden's public keys as a JWK Set, for the admin API: the signing key's, then the
    /// retired keys' whose tokens are still accepted (those before their `until`).
    pub fn jwks(&self) -> Value {
        let now = std::time::SystemTime::now();
        let in_force = self.previous.iter().filter(|k| k.in_force(now));
        let keys: Vec<Value> = std::iter::once((&self.kid, &self.public))
            .chain(in_force.map(|k| (&k.kid, &k.public)))
            .map(|(kid, public)| keys::public_jwk(public, kid))
            .collect();
        json!({ "keys": keys })
    }

    /// `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// `aud` of issued tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The longest lifetime of a token (`identity.warden_issuer.max_ttl`).
    pub fn max_ttl(&self) -> Duration {
        self.max_ttl
    }

    /// Key id (`kid`): the RFC 7638 thumbprint of the public key.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The ids of the retired keys (`previous_keys`), whatever their `until`.
    pub fn retired_key_ids(&self) -> Vec<&str> {
        self.previous.iter().map(|k| &*k.kid).collect()
    }

    /// Where the signing key lives (its file, or the secret source it was read from).
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The `exp` of `token` when this issuer signed it (expired or not), else `None`: what an
    /// operator revoking a token by itself may keep the revocation until.
    pub fn signed_exp(&self, token: &str) -> Option<u64> {
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        std::iter::once(&self.public)
            .chain(self.previous.iter().map(|k| &k.public))
            .find_map(|public| {
                let key = jsonwebtoken::DecodingKey::from_ed_der(public);
                jsonwebtoken::decode::<Value>(token.trim(), &key, &validation).ok()
            })
            .and_then(|claims| claims.claims.get("exp").and_then(Value::as_u64))
    }

    /// The public keys Warden's tokens are verified with: the signing key's, then the
    /// retired ones, each with its `until`.
    pub(crate) fn verify_keys(&self) -> Vec<VerifyKey> {
        std::iter::once(VerifyKey::ed25519(Some(self.kid.clone()), &self.public))
            .chain(self.previous.iter().map(|k| {
                VerifyKey::ed25519(Some(k.kid.clone()), &k.public).retired_until(k.until_unix())
            }))
            .collect()
    }
}

/// The retired keys of `previous_keys` beside the signing key `kid`, each named by its
/// thumbprint; one without `until` is accepted as long as it is listed, which is said.
fn previous_keys(cfg: &WardenIssuerConfig, kid: &str) -> Result<Vec<RetiredKey>, IdentityError> {
    let retired = keys::retired(
        &cfg.previous_keys,
        kid,
        "identity.warden_issuer.previous_keys",
    )?;
    for (key, entry) in retired.iter().zip(&cfg.previous_keys) {
        if key.until.is_none() {
            tracing::warn!(
                key_id = %key.kid,
                path = %entry.path.display(),
                "a retired agent signing key has no `until`: tokens it signs are accepted as \
                 long as it is listed in identity.warden_issuer.previous_keys; write it as \
                 {{ path: ..., until: <the rotation time plus max_ttl> }}"
            );
        }
    }
    Ok(retired)
}

/// Where the signing key lives: `key_file`, or `<data_dir>/keys/agent-signing.pem`.
pub fn key_path(cfg: &WardenIssuerConfig, data_dir: &Path) -> PathBuf {
    cfg.key_file
        .clone()
        .unwrap_or_else(|| data_dir.join("keys").join("agent-signing.pem"))
}

/// Parses `--claim k=v`: the value is JSON when it parses as JSON, else a string.
pub fn parse_claim_arg(s: &str) -> Result<(String, Value), ClaimArgError> {
    let (name, raw) = s
        .split_once('=')
        .ok_or_else(|| ClaimArgError::NoEquals(s.to_owned()))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(ClaimArgError::EmptyName(s.to_owned()));
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
    Ok((name.to_owned(), value))
}

/// A lifetime as an operator writes one: whole days as `45d` (humantime would say `1month
/// 14days 13h 26m 24s`), anything else as humantime does.
fn as_written(d: Duration) -> String {
    const DAY: u64 = 86_400;
    let secs = d.as_secs();
    if secs >= DAY && secs.is_multiple_of(DAY) && d.subsec_nanos() == 0 {
        format!("{}d", secs / DAY)
    } else {
        humantime::format_duration(d).to_string()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_lifetime_is_echoed_as_written() {
        assert_eq!(super::as_written(Duration::from_secs(45 * 86_400)), "45d");
        assert_eq!(super::as_written(Duration::from_secs(90 * 60)), "1h 30m");
    }
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn cfg() -> WardenIssuerConfig {
        WardenIssuerConfig::default()
    }

    #[test]
    fn creates_key_file_with_mode_0600_in_a_0700_directory() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenIssuer::load_or_create(&cfg(), dir.path()).unwrap();
        let path = dir.path().join("keys").join("agent-signing.pem");
        assert_eq!(issuer.key_file(), path);
        let file_mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(file_mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
    }

    #[test]
    fn loads_the_same_key_on_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenIssuer::load_or_create(&cfg(), dir.path()).unwrap();
        let second = TokenIssuer::load_or_create(&cfg(), dir.path()).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.jwks(), second.jwks());
    }

    #[test]
    fn refuses_a_key_file_that_is_not_an_ed25519_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "not a key").unwrap();
        let cfg = WardenIssuerConfig {
            key_file: Some(path),
            ..cfg()
        };
        let err = TokenIssuer::load_or_create(&cfg, dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::KeyFormat { .. }), "{err}");
    }

    #[test]
    fn issues_tokens_with_reserved_claims_and_extra_claims() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenIssuer::load_or_create(&cfg(), dir.path()).unwrap();
        let token = issuer
            .issue(
                "agent-1",
                Duration::from_secs(3600),
                &[("fleet".into(), json!("billing"))],
            )
            .unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(issuer.key_id()));
        let claims: Map<String, Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
        assert_eq!(claims["sub"], "agent-1");
        assert_eq!(claims["iss"], "warden");
        assert_eq!(claims["aud"], "warden");
        assert_eq!(claims["fleet"], "billing");
        let (iat, exp) = (
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(exp - iat, 3600);
    }

    #[test]
    fn refuses_to_issue_with_reserved_claims_empty_agent_or_zero_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenIssuer::load_or_create(&cfg(), dir.path()).unwrap();
        let hour = Duration::from_secs(3600);
        assert!(
            issuer
                .issue("a", hour, &[("exp".into(), json!(1))])
                .is_err()
        );
        assert!(issuer.issue(" ", hour, &[]).is_err());
        for unreadable in [
            "ci-bot\u{202e}",
            "ci-bot\u{200b}",
            "evil\u{9b}31m",
            " ci-bot",
        ] {
            let err = issuer.issue(unreadable, hour, &[]).unwrap_err().to_string();
            assert!(
                err.contains("does not read as it is"),
                "{unreadable:?}: {err}"
            );
        }
        assert!(issuer.issue("a", Duration::from_millis(10), &[]).is_err());
    }

    #[test]
    fn refuses_to_issue_a_token_longer_than_the_maximum_lifetime() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WardenIssuerConfig {
            max_ttl: Duration::from_secs(7 * 24 * 3600),
            ..cfg()
        };
        let issuer = TokenIssuer::load_or_create(&cfg, dir.path()).unwrap();
        assert!(issuer.issue("a", cfg.max_ttl, &[]).is_ok());
        let err = issuer
            .issue("a", cfg.max_ttl + Duration::from_secs(1), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("identity.warden_issuer.max_ttl (7d)"), "{err}");
        // The default maximum is 30 days.
        let issuer =
            TokenIssuer::load_or_create(&WardenIssuerConfig::default(), dir.path()).unwrap();
        assert!(
            issuer
                .issue("a", Duration::from_secs(31 * 24 * 3600), &[])
                .is_err()
        );
    }

    #[test]
    fn parses_claim_args_as_json_or_string() {
        assert_eq!(
            parse_claim_arg("fleet=billing").unwrap(),
            ("fleet".into(), json!("billing"))
        );
        assert_eq!(parse_claim_arg("n=3").unwrap(), ("n".into(), json!(3)));
        assert_eq!(
            parse_claim_arg("ok=true").unwrap(),
            ("ok".into(), json!(true))
        );
        assert_eq!(
            parse_claim_arg("g=[\"a\",\"b\"]").unwrap(),
            ("g".into(), json!(["a", "b"]))
        );
        assert_eq!(
            parse_claim_arg("u=a=b").unwrap(),
            ("u".into(), json!("a=b"))
        );
        assert_eq!(parse_claim_arg("e=").unwrap(), ("e".into(), json!("")));
        assert_eq!(
            parse_claim_arg("novalue"),
            Err(ClaimArgError::NoEquals("novalue".into()))
        );
        assert_eq!(
            parse_claim_arg("=x"),
            Err(ClaimArgError::EmptyName("=x".into()))
        );
    }
}
