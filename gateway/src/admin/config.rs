//! `admin:` the admin API on the admin listener, and who its operators are.

use std::path::PathBuf;

use serde::Deserialize;

use crate::identity::config::{IdentityConfig, default_algorithms};

/// `admin` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API (`/v1/admin/…`) on the admin listener: operators' calls,
    /// authenticated by `admin.identity` and authorised by Cedar's `admin:*` actions.
    /// Default off; on, it needs `admin.identity`.
    pub api: bool,
    /// The identity providers whose tokens name operators: humans and their tooling, never
    /// agents.
    pub identity: Option<OperatorIdentity>,
}

/// `admin.identity:` where operators' tokens come from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OperatorIdentity {
    /// The OIDC issuers trusted to name operators, each with the audience of tokens minted
    /// for the admin API.
    pub issuers: Vec<OperatorIssuer>,
}

/// `admin.identity.issuers[]`: one issuer of operators' tokens.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OperatorIssuer {
    /// The issuer URL; must equal the tokens' `iss`. Its keys are read from
    /// `<issuer>/.well-known/openid-configuration` unless `jwks_uri` is set.
    pub issuer: String,
    /// Accepted `aud` values: the admin API's own, which no agent's token of this issuer
    /// carries.
    pub audiences: Vec<String>,
    /// The claim naming the operator (default `sub`; `email` or `preferred_username`, as
    /// `console.oidc.subject_claim`).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim listing the operator's groups (default `groups`): Cedar `Group` parents.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Accepted signing algorithms (default RS256, PS256, ES256, EdDSA).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// The JWKS URL, skipping discovery.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// An extra CA certificate (PEM) trusted for discovery and JWKS fetches.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Where a discovered `jwks_uri` on another host than the issuer's may be reached at an
    /// address that is not globally reachable (as `identity.issuers[].allow_private`).
    #[serde(default)]
    pub allow_private: Vec<crate::upstream::private_allowance::PrivateAllowance>,
}

fn default_subject_claim() -> String {
    "sub".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

impl AdminConfig {
    /// Mistakes, as (key, message), given the admin listener's address, whether it has TLS,
    /// and the agents' identity settings (whose tokens must never name an operator).
    pub fn validate(
        &self,
        listen: std::net::SocketAddr,
        tls: bool,
        agents: &IdentityConfig,
    ) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.api && !listen.ip().is_loopback() && !tls {
            errors.push((
                "admin.api".into(),
                format!(
                    "the admin API carries operators' tokens: it needs TLS on the admin listener \
                     (listen.admin_tls) when it listens on {listen}, beyond this host; or keep \
                     listen.admin on 127.0.0.1"
                ),
            ));
        }
        match &self.identity {
            None if self.api => errors.push((
                "admin.identity".into(),
                "the admin API needs to know who its operators are: set admin.identity.issuers \
                 to your identity provider (its issuer URL and the audience of tokens minted \
                 for the admin API); agents' tokens never authenticate operators"
                    .into(),
            )),
            None => {}
            Some(identity) => errors.extend(identity.validate(agents)),
        }
        errors
    }
}

impl OperatorIdentity {
    fn validate(&self, agents: &IdentityConfig) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.issuers.is_empty() {
            errors.push((
                "admin.identity.issuers".into(),
                "list at least one issuer of operators' tokens".into(),
            ));
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            let mut err = |field: &str, message: String| {
                errors.push((format!("admin.identity.issuers[{i}].{field}"), message));
            };
            if let Err(m) = crate::config::url::secure_url(&issuer.issuer) {
                err("issuer", m);
            }
            if self.issuers[..i].iter().any(|o| o.issuer == issuer.issuer) {
                err("issuer", format!("{:?} is listed twice", issuer.issuer));
            }
            if agents.warden_issuer.enabled && issuer.issuer == agents.warden_issuer.issuer {
                err(
                    "issuer",
                    format!(
                        "{:?} is Warden's own issuer of agent tokens \
                         (identity.warden_issuer.issuer): agents' tokens never name operators",
                        issuer.issuer
                    ),
                );
            }
            if issuer.audiences.iter().all(|a| a.trim().is_empty()) {
                err(
                    "audiences",
                    "name the audience of tokens minted for the admin API (e.g. warden-admin): \
                     without one, a token this issuer minted for any service would do"
                        .into(),
                );
            }
            for (j, agent_issuer) in agents.issuers.iter().enumerate() {
                if agent_issuer.issuer != issuer.issuer {
                    continue;
                }
                for shared in issuer
                    .audiences
                    .iter()
                    .filter(|a| agent_issuer.audiences.contains(a))
                {
                    err(
                        "audiences",
                        format!(
                            "{shared:?} is also an audience of agents' tokens of this issuer \
                             (identity.issuers[{j}].audiences): an agent's token would \
                             authenticate as an operator; have the identity provider mint \
                             operators' tokens for an audience of the admin API's own \
                             (e.g. warden-admin)"
                        ),
                    );
                }
            }
            for (field, value) in [
                ("subject_claim", &issuer.subject_claim),
                ("groups_claim", &issuer.groups_claim),
            ] {
                if value.trim().is_empty() {
                    err(field, "must name a claim".into());
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::config::IssuerConfig;

    fn parse(yaml: &str) -> AdminConfig {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn loopback() -> std::net::SocketAddr {
        "127.0.0.1:9090".parse().unwrap()
    }

    const OPERATORS: &str = "{api: true, identity: {issuers: [{issuer: 'https://sso.example.com', \
                             audiences: [warden-admin]}]}}";

    #[test]
    fn the_admin_api_beyond_this_host_needs_tls() {
        let on = parse(OPERATORS);
        let outside = "0.0.0.0:9090".parse().unwrap();
        let agents = IdentityConfig::default();
        let errors = on.validate(outside, false, &agents);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "admin.api");
        assert!(errors[0].1.contains("listen.admin_tls"), "{}", errors[0].1);
        assert!(on.validate(outside, true, &agents).is_empty());
        assert!(on.validate(loopback(), false, &agents).is_empty());
        assert!(
            AdminConfig::default()
                .validate(outside, false, &agents)
                .is_empty()
        );
    }

    #[test]
    fn the_admin_api_is_refused_without_its_operators_identity() {
        let errors = parse("api: true").validate(loopback(), false, &IdentityConfig::default());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "admin.identity");
        assert!(errors[0].1.contains("admin.identity.issuers"), "{errors:?}");
        let errors = parse("{api: true, identity: {issuers: []}}").validate(
            loopback(),
            false,
            &IdentityConfig::default(),
        );
        assert_eq!(errors[0].0, "admin.identity.issuers", "{errors:?}");
    }

    #[test]
    fn operators_tokens_never_share_what_names_agents() {
        let mut agents = IdentityConfig::default();
        agents.issuers.push(IssuerConfig {
            issuer: "https://sso.example.com".into(),
            audiences: vec!["warden".into(), "warden-admin".into()],
            algorithms: default_algorithms(),
            jwks_uri: None,
            claims: None,
            ca_file: None,
            allow_private: Vec::new(),
        });
        let errors = parse(OPERATORS).validate(loopback(), false, &agents);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "admin.identity.issuers[0].audiences");
        assert!(errors[0].1.contains("identity.issuers[0]"), "{errors:?}");

        let warden = parse(
            "{api: true, identity: {issuers: [{issuer: warden, audiences: [warden], \
             subject_claim: ''}]}}",
        );
        let errors = warden.validate(loopback(), false, &IdentityConfig::default());
        let keys: Vec<_> = errors.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "admin.identity.issuers[0].issuer",
                "admin.identity.issuers[0].issuer",
                "admin.identity.issuers[0].subject_claim"
            ],
            "{errors:?}"
        );
        assert!(errors[1].1.contains("Warden's own issuer"), "{errors:?}");
    }

    #[test]
    fn an_operators_issuer_has_defaults_for_its_claims() {
        let config = parse(OPERATORS);
        let issuer = &config.identity.unwrap().issuers[0];
        assert_eq!(issuer.subject_claim, "sub");
        assert_eq!(issuer.groups_claim, "groups");
        assert!(issuer.algorithms.contains(&"RS256".to_owned()));
        assert!(
            serde_saphyr::from_str::<AdminConfig>("identity: {issuers: [], audience: x}").is_err(),
            "a misspelt key is refused"
        );
    }
}
