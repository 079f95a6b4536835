//! Operators' identity: the [`Identifier`] that verifies the admin API's tokens, built from
//! `admin.identity` alone. It trusts only the issuers listed there, for their admin audiences,
//! and never Warden's own agent tokens, so no agent's credential names an operator.

use std::sync::Arc;

use super::config::OperatorIdentity;
use crate::config::Config;
use crate::identity::config::{ClaimMapping, IdentityConfig, IssuerConfig, WardenIssuerConfig};
use crate::identity::{Identifier, IdentityError};

/// Verified operators' tokens kept: operators are few.
const CACHE_ENTRIES: usize = 1024;

/// The operators' identifier of `config`, when `admin.identity` is set: `previous`'s when
/// nothing it depends on changed (its keys and cache carry over).
pub async fn identifier(
    config: &Config,
    previous: Option<(&Config, &Arc<Identifier>)>,
) -> Result<Option<Arc<Identifier>>, IdentityError> {
    let Some(operators) = &config.admin.identity else {
        return Ok(None);
    };
    if let Some((old, identifier)) = previous
        && old.admin.identity == config.admin.identity
        && same_fetching(&old.identity, &config.identity)
    {
        return Ok(Some(Arc::clone(identifier)));
    }
    let settings = settings(operators, &config.identity);
    let identifier =
        Identifier::new(&settings, &config.data_dir)
            .await
            .map_err(|error| match error {
                IdentityError::Config { key, problem } => IdentityError::Config {
                    key: key.replacen("identity.", "admin.identity.", 1),
                    problem,
                },
                other => other,
            })?;
    Ok(Some(Arc::new(identifier)))
}

/// Whether two agents' identity settings verify and fetch alike (the operators' identifier
/// takes its leeway and JWKS intervals from them).
fn same_fetching(a: &IdentityConfig, b: &IdentityConfig) -> bool {
    a.leeway_seconds == b.leeway_seconds
        && a.jwks_refresh_interval == b.jwks_refresh_interval
        && a.jwks_min_refetch_interval == b.jwks_min_refetch_interval
        && a.jwks_refetch_wait == b.jwks_refetch_wait
}

/// `admin.identity` as identity settings: its issuers only, the operator's claim in place of
/// the agent's, no agent attributes, Warden's own issuer off.
fn settings(operators: &OperatorIdentity, agents: &IdentityConfig) -> IdentityConfig {
    let issuers = operators
        .issuers
        .iter()
        .map(|o| IssuerConfig {
            issuer: o.issuer.clone(),
            audiences: o.audiences.clone(),
            algorithms: o.algorithms.clone(),
            jwks_uri: o.jwks_uri.clone(),
            claims: Some(ClaimMapping {
                agent: o.subject_claim.clone(),
                groups: o.groups_claim.clone(),
                fleet: String::new(),
                owner: String::new(),
                environment: String::new(),
                scopes: String::new(),
            }),
            ca_file: o.ca_file.clone(),
            allow_private: o.allow_private.clone(),
        })
        .collect();
    IdentityConfig {
        required: true,
        leeway_seconds: agents.leeway_seconds,
        warden_issuer: WardenIssuerConfig {
            enabled: false,
            ..WardenIssuerConfig::default()
        },
        issuers,
        claims: ClaimMapping::default(),
        cache_entries: CACHE_ENTRIES,
        jwks_refresh_interval: agents.jwks_refresh_interval,
        jwks_min_refetch_interval: agents.jwks_min_refetch_interval,
        jwks_refetch_wait: agents.jwks_refetch_wait,
        client_certificate: Default::default(),
    }
}

/// Whether `issuer` is Warden's own issuer of agent tokens (`warden token issue`), whose
/// tokens name agents, never operators.
pub fn is_wardens_own(issuer: &str, agents: &IdentityConfig) -> bool {
    issuer == agents.warden_issuer.issuer
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn operators_settings_trust_their_issuers_only_and_read_no_agent_attributes() {
        let operators: OperatorIdentity = serde_saphyr::from_str(
            "issuers: [{issuer: 'https://sso.example.com', audiences: [warden-admin], \
             subject_claim: email, groups_claim: roles}]",
        )
        .unwrap();
        let settings = settings(&operators, &IdentityConfig::default());
        assert!(!settings.warden_issuer.enabled, "no Warden agent token");
        assert!(settings.required);
        let names: HashSet<_> = settings.issuers.iter().map(|i| i.issuer.as_str()).collect();
        assert_eq!(names, HashSet::from(["https://sso.example.com"]));
        let claims = settings.issuers[0].claims.as_ref().unwrap();
        assert_eq!(
            (claims.agent.as_str(), claims.groups.as_str()),
            ("email", "roles")
        );
        assert!(claims.fleet.is_empty() && claims.owner.is_empty() && claims.scopes.is_empty());
        assert_eq!(settings.issuers[0].audiences, ["warden-admin"]);
    }

    #[test]
    fn an_operator_whose_name_does_not_read_as_it_is_is_refused_as_an_agent_would_be() {
        let operators: OperatorIdentity = serde_saphyr::from_str(
            "issuers: [{issuer: 'https://sso.example.com', audiences: [warden-admin], \
             subject_claim: email}]",
        )
        .unwrap();
        let settings = settings(&operators, &IdentityConfig::default());
        // The operators' identifier reads their claim as an agent's id is read.
        let mapper =
            crate::identity::claims::ClaimMapper::new(settings.issuers[0].claims.as_ref().unwrap());
        let issuer: std::sync::Arc<str> = "https://sso.example.com".into();
        for (email, problem) in [
            ("alice\u{202e}moc.elpmaxe@", "bidirectional control U+202E"),
            ("al\u{2066}ice@example.com", "bidirectional control U+2066"),
            (
                "alice@example.com\u{200b}",
                "invisible formatting character U+200B",
            ),
        ] {
            let claims = serde_json::json!({"email": email, "groups": ["sre"]});
            let refused = mapper
                .principal(claims.as_object().unwrap(), &issuer, 1)
                .unwrap_err();
            assert_eq!(refused.status(), axum::http::StatusCode::UNAUTHORIZED);
            let refused = super::super::error::ApiError::Unauthenticated(refused);
            assert_eq!(refused.code(), "invalid_claim");
            let text = refused.to_string();
            assert!(text.contains("`email`") && text.contains(problem), "{text}");
            assert!(!text.contains(email), "the value is not repeated: {text}");
        }
        let claims = serde_json::json!({"email": "alice@example.com"});
        let alice = mapper
            .principal(claims.as_object().unwrap(), &issuer, 1)
            .unwrap();
        assert_eq!(&*alice.id, "alice@example.com");
    }
}
