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
}
