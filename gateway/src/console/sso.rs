//! Signing approvers in with the company's SSO: OpenID Connect authorization code flow with
//! PKCE (`openidconnect`), the provider found by discovery.
//!
//! The sign-in in flight (PKCE verifier, nonce, `state`, where to go afterwards) is not kept
//! on the server: it travels sealed (AES-256-GCM under the factor key, bound to its purpose)
//! in a short-lived cookie, so the provider's redirect may come back to any replica. The ID
//! token is verified (signature against the provider's keys, issuer, audience, expiry, nonce);
//! the approver's groups come from the ID token, or else from the userinfo endpoint, which
//! [`Sso::userinfo`] asks again later with the sign-in's access token. [`Sso::refresh`] gets a
//! new access token for the sign-in's refresh token when that one expires (refresh_token grant,
//! the client authenticating as at sign-in).
//!
//! The provider's metadata is read on the first sign-in and kept for [`METADATA_TTL`]; an
//! unreachable provider makes sign-in fail with a clear page, and Warden still starts.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openidconnect::core::{
    CoreAuthPrompt, CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessToken, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EndUserEmail, EndUserName, EndUserUsername, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdToken, IdTokenClaims, IssuerUrl, LocalizedClaim, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, SignatureVerificationError, SubjectIdentifier, TokenResponse,
    UserInfoError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::config::OidcConfig;
use super::idp_token::{IdTokenBinding, IdpToken};
use super::provider_http::ProviderHttp;
use crate::approval::sealed::{Purpose, Sealer};

/// How long the provider's discovered metadata (and keys) is used before it is read again.
pub const METADATA_TTL: Duration = Duration::from_secs(15 * 60);
/// How long a sign-in may take at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(10 * 60);

/// Why a sign-in failed. The messages are shown to the person signing in: no token, code or
/// secret is ever part of one.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("the SSO provider {issuer} cannot be reached or read: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("the console's SSO settings are not usable: {0}")]
    Config(String),
    #[error("the sign-in expired or was started in another browser: sign in again")]
    NoLogin,
    #[error("the SSO provider's answer does not belong to the sign-in this browser started")]
    StateMismatch,
    #[error("the SSO provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the code from the SSO provider could not be exchanged: {0}")]
    Exchange(String),
    #[error("the SSO provider's ID token is not valid: {0}")]
    IdToken(String),
    #[error("the SSO provider's userinfo could not be read: {0}")]
    UserInfo(String),
    #[error(
        "the SSO provider refuses this sign-in's access token at its userinfo endpoint (HTTP \
         {0}): the account may be disabled or the sign-in ended there; if it refuses everyone, \
         the provider gives the console's client access tokens meant for another API rather \
         than for userinfo (see docs/approvals.md)"
    )]
    UserInfoRefused(u16),
    #[error(
        "the SSO provider's discovery document names no userinfo endpoint, which \
         console.oidc.recheck_at_vote needs"
    )]
    NoUserInfo,
    #[error(
        "the SSO provider's userinfo answer has no {0:?} claim (console.oidc.groups_claim), \
         which console.oidc.recheck_at_vote reads at every vote: release that claim in userinfo \
         too, not only in the ID token, or set recheck_at_vote to false (docs/approvals.md)"
    )]
    NoGroupsInUserInfo(String),
    #[error(
        "the SSO provider no longer renews this sign-in (its refresh token was refused: \
         invalid_grant): the account may be disabled, or the sign-in revoked or ended there"
    )]
    RefreshRefused,
    #[error(
        "the SSO provider renewed this sign-in with an ID token that is not valid for it ({0}), \
         so its tokens were not used"
    )]
    RefreshedIdToken(String),
    #[error(
        "the SSO provider renewed this sign-in with an ID token whose signature cannot be \
         checked now ({reason}), so its tokens were not used; the new refresh token is kept \
         for the next try"
    )]
    RefreshedIdTokenUnchecked {
        reason: String,
        /// The sign-in's tokens as they were, with the refresh token the provider just issued
        /// (it may have spent the old one): to keep, so that the next try can renew again.
        kept: Box<IdpToken>,
    },
    #[error("the SSO provider could not renew this sign-in's access token: {0}")]
    Refresh(String),
    #[error("the sign-in has no {0:?} claim naming the approver")]
    NoSubject(String),
    #[error(
        "the sign-in's {claim:?} claim names the approver with a value that does not read as it \
         is: {problem}; votes, records and the console would show one person as another, so the \
         identity provider must issue names without control, bidirectional or invisible \
         characters (console.oidc.subject_claim picks the claim)"
    )]
    UnreadableSubject {
        claim: String,
        problem: crate::protocol::IdentifierProblem,
    },
    #[error(
        "console.oidc.subject_claim is email, and the provider does not say this e-mail address \
         is verified (email_verified): verify it at the provider, or name approvers by sub"
    )]
    EmailNotVerified,
}

/// Claims beyond the standard ones (the groups claim among them), kept as they came.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OtherClaims {
    #[serde(flatten)]
    pub claims: Map<String, Value>,
}

impl AdditionalClaims for OtherClaims {}

/// The client discovery gives: authorization and (maybe) token and userinfo endpoints.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

type ClaimsIdToken = IdToken<
    OtherClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// A sign-in the browser holds between the redirect and its return (sealed in a cookie).
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
    next: String,
    /// When it was started, seconds since the Unix epoch.
    at: u64,
}

/// Who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The approver's name for Warden (the `subject_claim`).
    pub subject: String,
    /// The name shown (`name`, else `preferred_username`, else `email`, else the subject).
    pub display_name: String,
    /// Their groups (the `groups_claim`).
    pub groups: Vec<String>,
    /// The other names they go by, for telling their own agents and counting one vote per
    /// person, and for `@approvers` `User::` entries: `sub`, `email` (only when the provider
    /// verified it) and `preferred_username` (only with `match_preferred_username`), without
    /// the subject itself.
    pub aliases: Vec<String>,
    /// Where to go now (a path of the console).
    pub next: String,
    /// When the provider's ID token for this sign-in expires (`exp`): how long the provider
    /// vouches for it.
    pub id_token_expires: Option<SystemTime>,
    /// The sign-in's access token, for asking the provider again later.
    pub idp_token: Option<IdpToken>,
}

/// The SSO side of the console.
pub struct Sso {
    config: OidcConfig,
    client_secret: Option<Zeroizing<String>>,
    redirect: String,
    http: ProviderHttp,
    metadata: Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Sso {
    /// Sign-in at `config`'s provider, returning to `console_url`'s `/auth/callback`.
    pub fn new(
        config: &OidcConfig,
        client_secret: Option<Zeroizing<String>>,
        console_url: &str,
    ) -> Result<Sso, SsoError> {
        let http = ProviderHttp::new(
            reqwest::Client::builder()
                // The token and userinfo endpoints answer directly: a redirect there is
                // refused (a redirected token request could carry the code somewhere else).
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| SsoError::Config(e.to_string()))?,
        );
        Ok(Sso {
            config: config.clone(),
            client_secret,
            redirect: format!("{}/auth/callback", console_url.trim_end_matches('/')),
            http,
            metadata: Mutex::new(None),
        })
    }

    /// The provider's issuer URL.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, SsoError> {
        if let Some((m, at)) = &*self.metadata.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        self.discover().await
    }

    /// The provider's metadata and keys read now, and kept for [`METADATA_TTL`].
    async fn discover(&self) -> Result<CoreProviderMetadata, SsoError> {
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| SsoError::Config(format!("console.oidc.issuer: {e}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| SsoError::Discovery {
                issuer: self.config.issuer.clone(),
                reason: error_chain(&e),
            })?;
        *self.metadata.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// The provider's client, with the console's redirect.
    async fn client(&self) -> Result<Client, SsoError> {
        self.client_of(self.metadata().await?)
    }

    /// The client of the provider described by `metadata`, with the console's redirect.
    fn client_of(&self, metadata: CoreProviderMetadata) -> Result<Client, SsoError> {
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.client_secret
                .as_ref()
                .map(|s| ClientSecret::new(s.to_string())),
        )
        .set_redirect_uri(
            RedirectUrl::new(self.redirect.clone())
                .map_err(|e| SsoError::Config(format!("approvals.console_url: {e}")))?,
        ))
    }

    /// Starts a sign-in that comes back to `next`: the provider's URL to send the browser to,
    /// and the sealed sign-in for the browser to hold.
    pub async fn start(&self, sealer: &Sealer, next: &str) -> Result<(String, Vec<u8>), SsoError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        let (scopes, consent) = asked_scopes(&self.config);
        for scope in scopes {
            request = request.add_scope(Scope::new(scope));
        }
        if consent {
            request = request.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.url();
        let pending = Pending {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            next: next.to_owned(),
            at: now_secs(),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&pending).expect("plain data serializes"));
        let sealed = sealer
            .seal(Purpose::LoginState, "console", &plain)
            .map_err(|e| SsoError::Config(e.to_string()))?;
        Ok((url.to_string(), sealed))
    }

    /// Finishes the sign-in the browser's `sealed` cookie holds with the provider's answer
    /// (`state` and `code`, or `error`).
    pub async fn finish(
        &self,
        sealer: &Sealer,
        sealed: Option<&[u8]>,
        answer: &CallbackQuery,
    ) -> Result<SignedIn, SsoError> {
        let sealed = sealed.ok_or(SsoError::NoLogin)?;
        let plain = sealer
            .open(Purpose::LoginState, "console", sealed)
            .map_err(|_| SsoError::NoLogin)?;
        let pending: Pending = serde_json::from_slice(&plain).map_err(|_| SsoError::NoLogin)?;
        if now_secs().saturating_sub(pending.at) > LOGIN_TTL.as_secs() {
            return Err(SsoError::NoLogin);
        }
        // The state check first: an answer to another browser's sign-in tells nothing.
        let state_matches = answer
            .state
            .as_deref()
            .is_some_and(|s| constant_time_eq(s.as_bytes(), pending.state.as_bytes()));
        if !state_matches {
            return Err(SsoError::StateMismatch);
        }
        if let Some(error) = &answer.error {
            let detail = answer.error_description.as_deref().unwrap_or("");
            return Err(SsoError::Refused(
                format!("{error} {detail}")
                    .trim()
                    .chars()
                    .take(300)
                    .collect(),
            ));
        }
        let code = answer
            .code
            .clone()
            .ok_or_else(|| SsoError::Refused("no authorization code came back".into()))?;
        let client = self.client().await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| SsoError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| SsoError::Exchange(error_chain(&e)))?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| SsoError::IdToken("the provider returned none".into()))?;
        // Read again with room for every claim (the groups claim is not a standard one).
        let id_token: ClaimsIdToken = id_token
            .to_string()
            .parse()
            .map_err(|e: serde_json::Error| SsoError::IdToken(e.to_string()))?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims = id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map_err(|e| SsoError::IdToken(e.to_string()))?;
        let id_token_expires = u64::try_from(claims.expiration().timestamp())
            .ok()
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs));
        let mut other = claims.additional_claims().claims.clone();
        insert_standard(
            &mut other,
            claims.subject(),
            claims.name(),
            claims.preferred_username(),
            claims.email(),
            claims.email_verified(),
        );
        let access = IdpToken::new(
            tokens.access_token().secret().clone(),
            claims.subject().to_string(),
            tokens.expires_in(),
            SystemTime::now(),
        )
        .renewable_with(tokens.refresh_token().map(|t| t.secret().clone()))
        .bound_to(Some(binding(claims)));
        // With the recheck on, userinfo is asked now too: a provider that will not answer it
        // with this sign-in's token fails the sign-in, not every vote after it.
        let recheck = self.config.recheck_at_vote;
        let needs_userinfo = recheck
            || !other.contains_key(&self.config.groups_claim)
            || !other.contains_key(&self.config.subject_claim);
        if needs_userinfo {
            match self.read_userinfo(&client, &access).await? {
                Some(info) => {
                    // Every vote reads the groups from userinfo: one without them fails the
                    // sign-in, not every vote after it.
                    if recheck && !info.contains_key(&self.config.groups_claim) {
                        return Err(SsoError::NoGroupsInUserInfo(
                            self.config.groups_claim.clone(),
                        ));
                    }
                    for (k, v) in info {
                        other.entry(k).or_insert(v);
                    }
                }
                None if recheck => return Err(SsoError::NoUserInfo),
                None => {}
            }
        }
        let mut who = identity(&other, &self.config, pending.next)?;
        who.id_token_expires = id_token_expires;
        who.idp_token = Some(access);
        Ok(who)
    }

    /// What the provider's userinfo endpoint says now of the person `token` was issued to:
    /// their claims, `sub` checked against the sign-in's.
    pub async fn userinfo(&self, token: &IdpToken) -> Result<Map<String, Value>, SsoError> {
        let client = self.client().await?;
        self.read_userinfo(&client, token)
            .await?
            .ok_or(SsoError::NoUserInfo)
    }

    /// A new access token for the sign-in `token` is of, from the provider's token endpoint
    /// for `token`'s refresh token (the client authenticating as at sign-in). The provider's
    /// new refresh token replaces the old one (rotation); without one, the old one stays.
    /// [`SsoError::RefreshRefused`] when the provider refuses the refresh token
    /// (`invalid_grant`: revoked, expired, the account disabled, the sign-in ended there);
    /// [`SsoError::Refresh`] when it cannot answer. A new ID token in the answer is verified as
    /// at sign-in and held to the sign-in's (OpenID Connect Core 12.2:
    /// [`IdTokenBinding::accepts`]); [`SsoError::RefreshedIdToken`] when it fails, and none of
    /// the answer's tokens is used. One signed with a key the provider's keys as Warden holds
    /// them lack has them read again first; [`SsoError::RefreshedIdTokenUnchecked`] when they
    /// cannot be read, or still lack it: nothing of the answer is used but its refresh token.
    pub async fn refresh(&self, token: &IdpToken) -> Result<IdpToken, SsoError> {
        let refresh = RefreshToken::new(
            token
                .refresh_secret()
                .ok_or_else(|| SsoError::Refresh("the sign-in has no refresh token".into()))?
                .to_owned(),
        );
        let client = self.client().await?;
        let tokens = client
            .exchange_refresh_token(&refresh)
            .map_err(|e| SsoError::Config(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r)
                    if *r.error() == CoreErrorResponseType::InvalidGrant =>
                {
                    SsoError::RefreshRefused
                }
                RequestTokenError::ServerResponse(r) => {
                    SsoError::Refresh(format!("its token endpoint answered {}", r.error()))
                }
                e => SsoError::Refresh(error_chain(&e)),
            })?;
        let renewed_with = tokens
            .refresh_token()
            .map(|t| t.secret().as_str())
            .or(token.refresh_secret())
            .map(str::to_owned);
        let id_token = match (tokens.id_token(), &token.id_token) {
            (Some(fresh), Some(signed_in)) => Some(
                self.check_renewed(&client, token, signed_in, fresh, &renewed_with)
                    .await?,
            ),
            // No new ID token: the sign-in's stands, and is not renewed by refreshing. (A
            // session sealed before the console kept its ID token's claims has nothing to hold
            // a new one to: it moves nothing.)
            (_, signed_in) => signed_in.as_ref().map(|b| IdTokenBinding {
                renewed_by_refresh: false,
                ..b.clone()
            }),
        };
        Ok(IdpToken::new(
            tokens.access_token().secret().clone(),
            token.subject.clone(),
            tokens.expires_in(),
            SystemTime::now(),
        )
        .renewable_with(renewed_with)
        .bound_to(id_token))
    }

    /// The binding of the sign-in `token` (`signed_in`) renewed by `fresh`, the ID token a
    /// refresh returned with the refresh token `renewed_with`: checked with `client`'s keys,
    /// or, when none of them signed it, with the provider's keys read again.
    async fn check_renewed(
        &self,
        client: &Client,
        token: &IdpToken,
        signed_in: &IdTokenBinding,
        fresh: &openidconnect::core::CoreIdToken,
        renewed_with: &Option<String>,
    ) -> Result<IdTokenBinding, SsoError> {
        let unchecked = |reason: String| SsoError::RefreshedIdTokenUnchecked {
            reason,
            kept: Box::new(token.clone().renewable_with(renewed_with.clone())),
        };
        match renewed_id_token(client, &token.subject, signed_in, fresh) {
            Ok(binding) => return Ok(binding),
            Err(Unaccepted::Invalid(why)) => return Err(SsoError::RefreshedIdToken(why)),
            Err(Unaccepted::NoKey) => {}
        }
        // Signed with a key Warden does not hold: the provider may have rotated its keys.
        let client = match self.discover().await.and_then(|m| self.client_of(m)) {
            Ok(client) => client,
            Err(e) => return Err(unchecked(format!("its keys cannot be read: {e}"))),
        };
        renewed_id_token(&client, &token.subject, signed_in, fresh).map_err(|e| match e {
            Unaccepted::NoKey => {
                unchecked("none of the keys the provider publishes now signed it".into())
            }
            Unaccepted::Invalid(why) => SsoError::RefreshedIdToken(why),
        })
    }

    /// The claims `client`'s userinfo endpoint gives for `token` (its `sub` checked), or
    /// `None` when the provider publishes no such endpoint.
    async fn read_userinfo(
        &self,
        client: &Client,
        token: &IdpToken,
    ) -> Result<Option<Map<String, Value>>, SsoError> {
        let Ok(request) = client.user_info(
            AccessToken::new(token.secret().to_owned()),
            Some(SubjectIdentifier::new(token.subject.clone())),
        ) else {
            return Ok(None);
        };
        let info: openidconnect::UserInfoClaims<OtherClaims, CoreGenderClaim> = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                // The provider no longer takes the token: expired, revoked, or its account
                // disabled.
                UserInfoError::Response(status, _, _) if matches!(status.as_u16(), 401 | 403) => {
                    SsoError::UserInfoRefused(status.as_u16())
                }
                UserInfoError::Response(status, _, _) => {
                    SsoError::UserInfo(format!("its userinfo endpoint answered HTTP {status}"))
                }
                e => SsoError::UserInfo(error_chain(&e)),
            })?;
        let mut claims = info.additional_claims().claims.clone();
        insert_standard(
            &mut claims,
            info.subject(),
            info.name(),
            info.preferred_username(),
            info.email(),
            info.email_verified(),
        );
        Ok(Some(claims))
    }
}

/// What an ID token's `claims` say that a refreshed one is held to, and its lifetime.
fn binding<AC: AdditionalClaims>(claims: &IdTokenClaims<AC, CoreGenderClaim>) -> IdTokenBinding {
    IdTokenBinding {
        audiences: claims
            .audiences()
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
        authorized_party: claims.authorized_party().map(|c| c.as_str().to_owned()),
        auth_time: claims.auth_time().map(|t| t.timestamp()),
        nonce: claims.nonce().map(|n| n.secret().clone()),
        issued_at: claims.issue_time().timestamp(),
        expires_at: claims.expiration().timestamp(),
        renewed_by_refresh: true,
    }
}

/// Why a refreshed ID token does not stand for the sign-in.
enum Unaccepted {
    /// None of the provider's keys at hand signed it: it cannot be checked with them.
    NoKey,
    /// It is not valid, or not of this sign-in.
    Invalid(String),
}

/// The binding of the sign-in `signed_in` (of `subject`) renewed by `fresh`, the ID token a
/// refresh returned: verified as at sign-in (signature, issuer, audience, expiry) with
/// `client`'s keys, then held to the sign-in's.
fn renewed_id_token(
    client: &Client,
    subject: &str,
    signed_in: &IdTokenBinding,
    fresh: &openidconnect::core::CoreIdToken,
) -> Result<IdTokenBinding, Unaccepted> {
    // The nonce, if any, is held to the sign-in's by `accepts` (a refreshed ID token need not
    // carry one).
    let claims = fresh
        .claims(
            &client.id_token_verifier(),
            |_: Option<&Nonce>| -> Result<(), String> { Ok(()) },
        )
        .map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            ) => Unaccepted::NoKey,
            e => Unaccepted::Invalid(e.to_string()),
        })?;
    let newer = binding(claims);
    signed_in
        .accepts(subject, claims.subject().as_str(), &newer)
        .map_err(Unaccepted::Invalid)?;
    Ok(signed_in.renewed_by(&newer))
}

/// The scopes a sign-in asks for beside `openid`, and whether it asks for consent: with
/// `offline_access` configured, that scope and `prompt=consent` (OpenID Connect Core 11: a
/// provider may ignore `offline_access` without it); otherwise the refresh token, if any, is the
/// one the provider gives a code flow by itself.
fn asked_scopes(config: &OidcConfig) -> (Vec<String>, bool) {
    let mut scopes = config.scopes.clone();
    if config.offline_access {
        scopes.push("offline_access".to_owned());
    }
    (scopes, config.offline_access)
}

/// Adds `sub` and the standard name claims (`name`, `preferred_username`, `email`,
/// `email_verified`) to `claims` where absent.
fn insert_standard(
    claims: &mut Map<String, Value>,
    subject: &SubjectIdentifier,
    name: Option<&LocalizedClaim<EndUserName>>,
    preferred_username: Option<&EndUserUsername>,
    email: Option<&EndUserEmail>,
    email_verified: Option<bool>,
) {
    claims
        .entry("sub")
        .or_insert_with(|| Value::from(subject.as_str()));
    let standard = [
        (
            "name",
            name.and_then(|n| n.get(None))
                .map(|n| Value::from(n.to_string())),
        ),
        (
            "preferred_username",
            preferred_username.map(|n| Value::from(n.to_string())),
        ),
        ("email", email.map(|n| Value::from(n.to_string()))),
        ("email_verified", email_verified.map(Value::from)),
    ];
    for (k, v) in standard {
        if let Some(v) = v {
            claims.entry(k).or_insert(v);
        }
    }
}

/// Who `claims` name, by `config`'s claim names.
fn identity(
    claims: &Map<String, Value>,
    config: &OidcConfig,
    next: String,
) -> Result<SignedIn, SsoError> {
    let text = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let subject = text(&config.subject_claim)
        .ok_or_else(|| SsoError::NoSubject(config.subject_claim.clone()))?;
    // Votes, records and the console show this name: `alice` followed by U+202E must not read
    // as `alice`, as an agent's id may not (`identity::claims`).
    if let Some(problem) = crate::protocol::unreadable_identifier(&subject) {
        return Err(SsoError::UnreadableSubject {
            claim: config.subject_claim.clone(),
            problem,
        });
    }
    let email_verified = claims.get("email_verified") == Some(&Value::Bool(true));
    if config.subject_claim == "email" && !email_verified {
        return Err(SsoError::EmailNotVerified);
    }
    let mut aliases: Vec<String> = Vec::new();
    // An e-mail address the provider has not verified is no name of theirs: `@approvers`
    // entries name approvers by their names too, and some providers let users set it. Nor is
    // a preferred username, which is neither unique nor stable, unless the operator says so.
    let email = text("email").filter(|_| email_verified);
    let username = text("preferred_username").filter(|_| config.match_preferred_username);
    // A name that does not read as it is names no one: an `@approvers` entry that looks like
    // it would name someone else.
    let readable = |a: &String| crate::protocol::unreadable_identifier(a).is_none();
    for alias in [text("sub"), username, email].into_iter().flatten() {
        if alias != subject && !aliases.contains(&alias) && readable(&alias) {
            aliases.push(alias);
        }
    }
    let display_name = text("name")
        .or_else(|| text("preferred_username"))
        .or_else(|| text("email"))
        .unwrap_or_else(|| subject.clone());
    let groups = groups(claims, &config.groups_claim).unwrap_or_default();
    Ok(SignedIn {
        subject,
        display_name,
        groups,
        aliases,
        next,
        id_token_expires: None,
        idp_token: None,
    })
}

/// The groups claim `claim` of `claims` lists, `None` when there is no such claim.
pub fn groups(claims: &Map<String, Value>, claim: &str) -> Option<Vec<String>> {
    match claims.get(claim)? {
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        // Some providers send a single group as a string, or a space-separated list.
        Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
        _ => Some(Vec::new()),
    }
}

/// The provider's answer at `/auth/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `e` and its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A console's SSO settings for tests: a provider on port 1, where nothing listens.
    pub(crate) fn oidc() -> OidcConfig {
        OidcConfig {
            issuer: "http://127.0.0.1:1".into(),
            client_id: "console".into(),
            client_secret: None,
            scopes: vec![],
            subject_claim: "sub".into(),
            groups_claim: "groups".into(),
            session_follows_id_token: true,
            recheck_at_vote: true,
            userinfo_max_age: Duration::ZERO,
            match_preferred_username: false,
            offline_access: false,
        }
    }

    /// A provider on a local port for tests: its discovery document (endpoints `/auth`,
    /// `/token`, `/userinfo`, `/jwks` below its issuer) and the routes `routes` adds; its
    /// issuer.
    pub(crate) async fn provider(routes: impl FnOnce(axum::Router) -> axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let metadata = serde_json::json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/auth"),
            "token_endpoint": format!("{base}/token"),
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{base}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let app = routes(axum::Router::new()).route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let metadata = metadata.clone();
                async move { axum::Json(metadata) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    #[test]
    fn offline_access_is_asked_for_only_when_configured() {
        let mut config = oidc();
        config.scopes = vec!["profile".into(), "groups".into()];
        assert_eq!(asked_scopes(&config), (config.scopes.clone(), false));
        config.offline_access = true;
        assert_eq!(
            asked_scopes(&config),
            (
                vec!["profile".into(), "groups".into(), "offline_access".into()],
                true
            )
        );
    }

    #[tokio::test]
    async fn a_provider_that_cannot_be_reached_renews_nothing() {
        let sso = Sso::new(&oidc(), None, "http://localhost:9443").unwrap();
        let renewable = IdpToken::new("at".into(), "alice".into(), None, SystemTime::now())
            .renewable_with(Some("rt".into()));
        let e = sso.refresh(&renewable).await.unwrap_err();
        assert!(matches!(e, SsoError::Discovery { .. }), "{e:?}");
        let plain = IdpToken::new("at".into(), "alice".into(), None, SystemTime::now());
        let e = sso.refresh(&plain).await.unwrap_err();
        assert!(matches!(e, SsoError::Refresh(_)), "{e:?}");
    }

    #[test]
    fn a_missing_groups_claim_is_not_an_empty_one() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "groups": ["sre"], "roles": "a b", "none": [],
        }))
        .unwrap();
        assert_eq!(groups(&claims, "groups"), Some(vec!["sre".to_owned()]));
        assert_eq!(
            groups(&claims, "roles"),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(groups(&claims, "none"), Some(vec![]), "in no group");
        assert_eq!(groups(&claims, "teams"), None, "not said at all");
    }

    #[test]
    fn the_approver_is_named_by_the_configured_claims() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "u-123", "email": "alice@example.com", "preferred_username": "alice",
            "groups": ["sre", "oncall"], "roles": "admins approvers",
        }))
        .unwrap();
        let who = identity(&claims, &oidc(), "/approvals".into()).unwrap();
        assert_eq!(who.subject, "u-123");
        assert_eq!(who.display_name, "alice");
        assert_eq!(who.groups, ["sre", "oncall"]);
        assert!(
            who.aliases.is_empty(),
            "an unverified e-mail is no name of theirs (@approvers entries grant by names), nor \
             a preferred username unless turned on: {:?}",
            who.aliases
        );
        let mut by_username = oidc();
        by_username.match_preferred_username = true;
        let who = identity(&claims, &by_username, "/".into()).unwrap();
        assert_eq!(who.aliases, ["alice"]);
        let mut by_email = oidc();
        by_email.subject_claim = "email".into();
        by_email.groups_claim = "roles".into();
        assert!(matches!(
            identity(&claims, &by_email, "/".into()),
            Err(SsoError::EmailNotVerified)
        ));
        let mut verified = claims.clone();
        verified.insert("email_verified".into(), Value::Bool(true));
        let who = identity(&verified, &by_email, "/".into()).unwrap();
        assert_eq!(who.subject, "alice@example.com");
        assert_eq!(who.aliases, ["u-123"]);
        assert_eq!(who.groups, ["admins", "approvers"]);
        let mut missing = oidc();
        missing.subject_claim = "upn".into();
        assert!(matches!(
            identity(&claims, &missing, "/".into()),
            Err(SsoError::NoSubject(c)) if c == "upn"
        ));
    }

    #[test]
    fn an_approver_whose_name_does_not_read_as_it_is_cannot_sign_in() {
        for (sub, problem) in [
            ("alice\u{202e}ecila", "bidirectional control U+202E"),
            ("al\u{200b}ice", "invisible formatting character U+200B"),
            ("alice\u{9b}31m", "control character U+009B"),
        ] {
            let claims: Map<String, Value> =
                serde_json::from_value(serde_json::json!({"sub": sub})).unwrap();
            let e = identity(&claims, &oidc(), "/".into()).unwrap_err();
            assert!(matches!(e, SsoError::UnreadableSubject { .. }), "{e:?}");
            let text = e.to_string();
            assert!(text.contains("\"sub\"") && text.contains(problem), "{text}");
            assert!(!text.contains(sub), "the value is not repeated: {text}");
            let page = crate::console::error::ConsoleError::from(e);
            assert_eq!(page.status(), axum::http::StatusCode::FORBIDDEN);
            assert_eq!(page.code(), "unreadable_principal");
        }
        // An alias that does not read as it is names no one; a readable subject still signs in.
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "sub": "u-1", "email": "bob\u{2066}@example.com", "email_verified": true,
            "preferred_username": "Алиса",
        }))
        .unwrap();
        let mut by_username = oidc();
        by_username.match_preferred_username = true;
        let who = identity(&claims, &by_username, "/".into()).unwrap();
        assert_eq!(who.subject, "u-1");
        assert_eq!(who.aliases, ["Алиса"], "other scripts read as they are");
    }

    #[tokio::test]
    async fn a_sign_in_comes_back_only_to_the_browser_that_started_it() {
        let sealer = Sealer::new(vec![crate::approval::sealed::FactorKey::from_bytes(
            &[7; 32],
        )])
        .unwrap();
        let sso = Sso::new(&oidc(), None, "http://localhost:9443").unwrap();
        let answer = CallbackQuery {
            code: Some("c".into()),
            state: Some("s".into()),
            ..Default::default()
        };
        assert!(matches!(
            sso.finish(&sealer, None, &answer).await,
            Err(SsoError::NoLogin)
        ));
        let pending = Pending {
            state: "the-state".into(),
            nonce: "n".into(),
            verifier: "v".into(),
            next: "/".into(),
            at: now_secs(),
        };
        let sealed = sealer
            .seal(
                Purpose::LoginState,
                "console",
                &serde_json::to_vec(&pending).unwrap(),
            )
            .unwrap();
        assert!(matches!(
            sso.finish(&sealer, Some(&sealed), &answer).await,
            Err(SsoError::StateMismatch)
        ));
        // A blob sealed for another purpose (a TOTP secret) is not a sign-in.
        let other = sealer
            .seal(
                Purpose::TotpSecret,
                "console",
                &serde_json::to_vec(&pending).unwrap(),
            )
            .unwrap();
        assert!(matches!(
            sso.finish(&sealer, Some(&other), &answer).await,
            Err(SsoError::NoLogin)
        ));
        let old = Pending {
            at: now_secs() - LOGIN_TTL.as_secs() - 1,
            ..pending
        };
        let sealed = sealer
            .seal(
                Purpose::LoginState,
                "console",
                &serde_json::to_vec(&old).unwrap(),
            )
            .unwrap();
        let answer = CallbackQuery {
            state: Some("the-state".into()),
            ..answer
        };
        assert!(matches!(
            sso.finish(&sealer, Some(&sealed), &answer).await,
            Err(SsoError::NoLogin)
        ));
    }
}
