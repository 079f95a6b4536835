//! `console:` the approval console's listener, its single sign-on and its sessions.
//!
//! The console is served only when `console.oidc` is set: approvers sign in with the
//! company's SSO (OpenID Connect, authorization code with PKCE), and nobody can use it
//! without. Its public address is `approvals.console_url` (the links in notifications, the
//! SSO redirect and the passkeys' relying party all derive from it).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::listener::config::TlsConfig;
use crate::secrets::config::CredentialSource;

/// Default `console.listen`.
pub const DEFAULT_LISTEN: ([u8; 4], u16) = ([127, 0, 0, 1], 9443);
/// Default `console.session_ttl`.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// Default `console.enrol_within`.
pub const DEFAULT_ENROL_WITHIN: Duration = Duration::from_secs(10 * 60);

/// `console:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where the console listens (default `127.0.0.1:9443`).
    pub listen: SocketAddr,
    /// TLS for the console listener (PEM files, reloaded when they change).
    pub tls: Option<TlsConfig>,
    /// The SSO provider approvers sign in with; without it the console is not served.
    pub oidc: Option<OidcConfig>,
    /// How long a console session lasts after sign-in (default 8h, at most 7d).
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// How recent the sign-in must be to enrol or remove a second factor (default 10m): a
    /// session taken over later cannot add the taker's own authenticator.
    #[serde(with = "humantime_serde")]
    pub enrol_within: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            listen: SocketAddr::from(DEFAULT_LISTEN),
            tls: None,
            oidc: None,
            session_ttl: DEFAULT_SESSION_TTL,
            enrol_within: DEFAULT_ENROL_WITHIN,
        }
    }
}

/// `console.oidc:` the SSO provider.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL; its discovery document is read from
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The console's client id at the provider.
    pub client_id: String,
    /// The client secret (a confidential client); absent for a public client, which PKCE
    /// protects.
    #[serde(default)]
    pub client_secret: Option<CredentialSource>,
    /// Scopes asked for beside `openid` (default `profile`, `email`).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names the approver (default `sub`; `email` where `approvals.operators`
    /// and agents' `owner` claims use it; `preferred_username` only with
    /// `match_preferred_username`).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// Whether the approver's `preferred_username` is one of their names (default `false`):
    /// for `@approvers` `User::` entries, one vote per person and telling their own agents.
    /// OpenID Connect says it is neither unique nor stable, and some providers let users edit
    /// it: on, whoever can set theirs to an approver's name is taken for that approver. Turn
    /// on only where the provider makes it a unique name users cannot change.
    #[serde(default)]
    pub match_preferred_username: bool,
    /// The claim listing the approver's groups (default `groups`), read from the ID token
    /// or else from the userinfo endpoint.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Whether a console session ends when the sign-in's ID token expires (its `exp`), if
    /// that comes before `console.session_ttl` (default `true`): the provider's word on how
    /// long it vouches for the sign-in, and for the groups it named. Off for providers whose
    /// ID tokens live only minutes (Keycloak's default is 5m); `session_ttl` alone bounds
    /// sessions then.
    #[serde(default = "default_true")]
    pub session_follows_id_token: bool,
    /// Whether the console asks the provider again who an approver is (its userinfo
    /// endpoint, with the sign-in's access token) before it shows them an approval or counts
    /// their vote (default `true`): someone removed from the approvers' group, or whose
    /// account was disabled, at the provider can no longer decide, without waiting for their
    /// console session to end. Votes are refused while the provider cannot answer.
    #[serde(default = "default_true")]
    pub recheck_at_vote: bool,
    /// How long the provider's answer is used for the same session before it is asked again
    /// (default `0s`: every page and vote asks; at most `5m`).
    #[serde(default, with = "humantime_serde")]
    pub userinfo_max_age: Duration,
    /// Whether the sign-in asks for the `offline_access` scope (with `prompt=consent`, as
    /// OpenID Connect requires), for a refresh token that outlives the approver's session at
    /// the provider (default `false`: the refresh token the provider gives a code flow anyway,
    /// if any, which ends with that session).
    #[serde(default)]
    pub offline_access: bool,
}

/// The longest `console.oidc.userinfo_max_age`.
pub const MAX_USERINFO_AGE: Duration = Duration::from_secs(5 * 60);

fn default_true() -> bool {
    true
}

fn default_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into()]
}

fn default_subject_claim() -> String {
    "sub".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

impl ConsoleConfig {
    /// The secret sources this section reads, by key.
    pub fn secrets(&self) -> Vec<(String, &CredentialSource)> {
        self.oidc
            .iter()
            .filter_map(|o| o.client_secret.as_ref())
            .map(|s| ("oidc.client_secret".to_owned(), s))
            .collect()
    }

    /// Returns `(key, message)` for every mistake in `console:`; `console_url` is
    /// `approvals.console_url`.
    pub fn validate(&self, console_url: Option<&str>) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |key: &str, message: String| errors.push((format!("console.{key}"), message));
        if self.session_ttl < Duration::from_secs(60)
            || self.session_ttl > Duration::from_secs(7 * 86400)
        {
            err("session_ttl", "must be between 1m and 7d".into());
        }
        if self.enrol_within < Duration::from_secs(60) || self.enrol_within > self.session_ttl {
            err(
                "enrol_within",
                "must be at least 1m and at most console.session_ttl".into(),
            );
        }
        let Some(oidc) = &self.oidc else {
            return errors;
        };
        if console_url.is_none() {
            err(
                "oidc",
                "the console needs approvals.console_url, its public address (the SSO \
                 provider redirects there, and passkeys are bound to it): set it to the URL \
                 approvers open, e.g. https://warden.example.com"
                    .into(),
            );
        }
        if let Err(m) = crate::config::url::secure_url(&oidc.issuer) {
            err("oidc.issuer", m);
        }
        if oidc.client_id.trim().is_empty() {
            err("oidc.client_id", "must not be empty".into());
        }
        if oidc.subject_claim == "preferred_username" && !oidc.match_preferred_username {
            err(
                "oidc.subject_claim",
                "preferred_username is neither unique nor stable (OpenID Connect Core 5.7; some \
                 providers let users edit it), so it cannot name approvers: use sub, or email \
                 (accepted only when verified), or set console.oidc.match_preferred_username: \
                 true where the provider makes it a unique name users cannot change"
                    .into(),
            );
        }
        for (key, value) in [
            ("oidc.subject_claim", &oidc.subject_claim),
            ("oidc.groups_claim", &oidc.groups_claim),
        ] {
            if value.trim().is_empty() {
                err(key, "must name a claim".into());
            }
        }
        if oidc.scopes.iter().any(|s| s == "offline_access") {
            err(
                "oidc.scopes",
                "offline_access is asked for with console.oidc.offline_access: true (which also \
                 sends prompt=consent, as OpenID Connect requires), not among the scopes"
                    .into(),
            );
        }
        if oidc.userinfo_max_age > MAX_USERINFO_AGE {
            err(
                "oidc.userinfo_max_age",
                "must be at most 5m: an approver removed at the SSO provider may decide for \
                 that long"
                    .into(),
            );
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> ConsoleConfig {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_console_is_off_without_an_sso_provider() {
        let c = ConsoleConfig::default();
        assert!(c.oidc.is_none());
        assert_eq!(c.listen.to_string(), "127.0.0.1:9443");
        assert!(c.validate(None).is_empty());
    }

    #[test]
    fn an_sso_provider_needs_the_console_url_and_a_safe_issuer() {
        let c = parse("oidc: {issuer: 'http://idp.example.com', client_id: console}");
        let errors = c.validate(None);
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["console.oidc", "console.oidc.issuer"], "{errors:?}");
        let c = parse("oidc: {issuer: 'http://127.0.0.1:4000', client_id: console}");
        assert!(c.validate(Some("http://localhost:9443")).is_empty());
        let oidc = c.oidc.unwrap();
        assert_eq!(oidc.scopes, ["profile", "email"]);
        assert_eq!(oidc.subject_claim, "sub");
        assert_eq!(oidc.groups_claim, "groups");
        assert!(oidc.session_follows_id_token, "on unless turned off");
        assert!(
            oidc.recheck_at_vote,
            "approvers are checked again unless turned off"
        );
        assert_eq!(oidc.userinfo_max_age, Duration::ZERO, "every vote asks");
        assert!(
            !oidc.match_preferred_username,
            "a name users may edit names no one unless turned on"
        );
        assert!(!oidc.offline_access, "offline_access only when configured");
    }

    #[test]
    fn offline_access_is_its_own_key_not_a_scope() {
        let c = parse(
            "oidc: {issuer: 'http://127.0.0.1:4000', client_id: console, \
             scopes: [profile, offline_access]}",
        );
        let errors = c.validate(Some("http://localhost:9443"));
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["console.oidc.scopes"], "{errors:?}");
        assert!(errors[0].1.contains("offline_access: true"), "{errors:?}");
        let c = parse(
            "oidc: {issuer: 'http://127.0.0.1:4000', client_id: console, offline_access: true}",
        );
        assert!(c.validate(Some("http://localhost:9443")).is_empty());
        assert!(c.oidc.unwrap().offline_access);
    }

    #[test]
    fn preferred_username_names_approvers_only_when_turned_on() {
        let c = parse(
            "oidc: {issuer: 'http://127.0.0.1:4000', client_id: console, \
             subject_claim: preferred_username}",
        );
        let errors = c.validate(Some("http://localhost:9443"));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "console.oidc.subject_claim");
        assert!(
            errors[0].1.contains("match_preferred_username: true"),
            "{errors:?}"
        );
        let c = parse(
            "oidc: {issuer: 'http://127.0.0.1:4000', client_id: console, \
             subject_claim: preferred_username, match_preferred_username: true}",
        );
        assert!(c.validate(Some("http://localhost:9443")).is_empty());
    }

    #[test]
    fn the_provider_is_asked_again_at_least_every_five_minutes() {
        let c = parse(
            "oidc: {issuer: 'http://127.0.0.1:4000', client_id: console, \
             userinfo_max_age: 10m, recheck_at_vote: false}",
        );
        let errors = c.validate(Some("http://localhost:9443"));
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["console.oidc.userinfo_max_age"], "{errors:?}");
        assert!(!c.oidc.unwrap().recheck_at_vote);
    }

    #[test]
    fn sessions_are_bounded() {
        let c = parse("{session_ttl: 30s, enrol_within: 1h}");
        let errors = c.validate(None);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            serde_saphyr::from_str::<ConsoleConfig>("sesion_ttl: 1h").is_err(),
            "a misspelt key is refused"
        );
    }
}
