//! Turns verified token claims into a [`Principal`] following a [`ClaimMapping`].

use std::sync::Arc;

use serde_json::{Map, Value};

use super::config::ClaimMapping;
use super::error::AuthError;
use crate::action::{Principal, PrincipalKind};

/// Claim names of one mapping, ready for lookups and messages. An empty name switches the
/// attribute off.
#[derive(Debug, Clone)]
pub(crate) struct ClaimMapper {
    agent: Arc<str>,
    fleet: Arc<str>,
    owner: Arc<str>,
    environment: Arc<str>,
    scopes: Arc<str>,
    groups: Arc<str>,
}

impl ClaimMapper {
    /// The mapper for `mapping`.
    pub(crate) fn new(mapping: &ClaimMapping) -> ClaimMapper {
        ClaimMapper {
            agent: Arc::from(mapping.agent.as_str()),
            fleet: Arc::from(mapping.fleet.as_str()),
            owner: Arc::from(mapping.owner.as_str()),
            environment: Arc::from(mapping.environment.as_str()),
            scopes: Arc::from(mapping.scopes.as_str()),
            groups: Arc::from(mapping.groups.as_str()),
        }
    }

    /// The agent the claims describe. Fails when the agent claim is missing or empty, or an
    /// attribute claim has the wrong type.
    pub(crate) fn principal(
        &self,
        claims: &Map<String, Value>,
        issuer: &Arc<str>,
        expires_at: u64,
    ) -> Result<Principal, AuthError> {
        let id = match self.string(claims, &self.agent)? {
            Some(id) if !id.is_empty() => id,
            _ => {
                return Err(AuthError::MissingClaim {
                    claim: self.agent.clone(),
                    hint: " naming the agent (see identity.claims.agent)",
                });
            }
        };
        // Records, the CLI and SIEMs show this id: `ci-bot` followed by U+202E must not read
        // as `ci-bot`, nor an id carry a terminal's control sequence.
        if let Some(problem) = crate::protocol::unreadable_identifier(&id) {
            return Err(AuthError::UnreadableClaim {
                claim: self.agent.clone(),
                problem,
            });
        }
        Ok(Principal {
            kind: PrincipalKind::Agent,
            id,
            issuer: issuer.clone(),
            fleet: self.string(claims, &self.fleet)?,
            owner: self.string(claims, &self.owner)?,
            environment: self.string(claims, &self.environment)?,
            scopes: self.list(claims, &self.scopes, true)?,
            groups: self.list(claims, &self.groups, false)?,
            client_certificate: None,
            expires_at: Some(expires_at),
        })
    }

    fn string(
        &self,
        claims: &Map<String, Value>,
        name: &Arc<str>,
    ) -> Result<Option<Arc<str>>, AuthError> {
        match lookup(claims, name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(Arc::from(s.as_str()))),
            Some(_) => Err(AuthError::InvalidClaim {
                claim: name.clone(),
                expected: "a string",
            }),
        }
    }

    /// An array of strings, or one string (split on whitespace when `split` is set, as
    /// OAuth `scope` is).
    fn list(
        &self,
        claims: &Map<String, Value>,
        name: &Arc<str>,
        split: bool,
    ) -> Result<Vec<Arc<str>>, AuthError> {
        let invalid = || AuthError::InvalidClaim {
            claim: name.clone(),
            expected: "a string or an array of strings",
        };
        match lookup(claims, name) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) if split => Ok(s.split_whitespace().map(Arc::from).collect()),
            Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![Arc::from(s.as_str())]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(Arc::from).ok_or_else(invalid))
                .collect(),
            Some(_) => Err(invalid()),
        }
    }
}

/// The claim `name`, unless the name is empty (attribute switched off) or the value is null.
/// The claim `name`: a top-level claim, or with a leading `/` a JSON Pointer (RFC 6901) into
/// the claims (`/kubernetes.io/namespace`).
fn lookup<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if name.is_empty() {
        return None;
    }
    let found = match name.strip_prefix('/') {
        Some(path) => {
            let (first, rest) = path.split_at(path.find('/').unwrap_or(path.len()));
            let top = claims.get(&first.replace("~1", "/").replace("~0", "~"))?;
            if rest.is_empty() {
                Some(top)
            } else {
                top.pointer(rest)
            }
        }
        None => claims.get(name),
    };
    found.filter(|v| !v.is_null())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(map) => map,
            _ => unreachable!("test claims are objects"),
        }
    }

    #[test]
    fn a_claim_path_reads_nested_claims_of_a_kubernetes_service_account_token() {
        let mapper = ClaimMapper::new(&ClaimMapping {
            fleet: "/kubernetes.io/namespace".into(),
            owner: "/kubernetes.io/serviceaccount/name".into(),
            environment: "/kubernetes.io/missing".into(),
            ..ClaimMapping::default()
        });
        let c = claims(json!({
            "sub": "system:serviceaccount:agents:billing-bot",
            "kubernetes.io": {
                "namespace": "agents",
                "pod": {"name": "billing-bot-7d9f-x2", "uid": "u1"},
                "serviceaccount": {"name": "billing-bot", "uid": "u2"},
            },
        }));
        let p = mapper.principal(&c, &Arc::from("https://k8s"), 99).unwrap();
        assert_eq!(&*p.id, "system:serviceaccount:agents:billing-bot");
        assert_eq!(p.fleet.as_deref(), Some("agents"));
        assert_eq!(p.owner.as_deref(), Some("billing-bot"));
        assert_eq!(p.environment, None);
        let escaped = ClaimMapper::new(&ClaimMapping {
            fleet: "/a~1b".into(),
            ..ClaimMapping::default()
        });
        let c = claims(json!({"sub": "x", "a/b": "slash"}));
        let p = escaped
            .principal(&c, &Arc::from("https://k8s"), 99)
            .unwrap();
        assert_eq!(p.fleet.as_deref(), Some("slash"));
    }

    #[test]
    fn maps_default_claims_to_principal_attributes() {
        let mapper = ClaimMapper::new(&ClaimMapping::default());
        let c = claims(json!({
            "sub": "agent-7", "fleet": "billing", "owner": "team-a", "environment": "prod",
            "scope": "llm:chat  mcp:call", "groups": ["ops", "eu"],
        }));
        let p = mapper.principal(&c, &Arc::from("https://idp"), 99).unwrap();
        assert_eq!(&*p.id, "agent-7");
        assert_eq!(&*p.issuer, "https://idp");
        assert_eq!(p.fleet.as_deref(), Some("billing"));
        assert_eq!(p.owner.as_deref(), Some("team-a"));
        assert_eq!(p.environment.as_deref(), Some("prod"));
        let scopes: Vec<&str> = p.scopes.iter().map(|s| &**s).collect();
        assert_eq!(scopes, ["llm:chat", "mcp:call"]);
        let groups: Vec<&str> = p.groups.iter().map(|s| &**s).collect();
        assert_eq!(groups, ["ops", "eu"]);
        assert_eq!(p.expires_at, Some(99));
        assert_eq!(p.kind, PrincipalKind::Agent);
    }

    #[test]
    fn follows_a_custom_mapping_with_array_scopes_and_single_group() {
        let mapping = ClaimMapping {
            agent: "client_id".into(),
            scopes: "scp".into(),
            groups: "team".into(),
            fleet: String::new(),
            ..ClaimMapping::default()
        };
        let c = claims(json!({"client_id": "bot", "scp": ["a", "b"], "team": "sre", "fleet": 3}));
        let p = ClaimMapper::new(&mapping)
            .principal(&c, &Arc::from("i"), 1)
            .unwrap();
        assert_eq!(&*p.id, "bot");
        assert_eq!(p.scopes.len(), 2);
        assert_eq!(p.groups.first().map(|g| &**g), Some("sre"));
        assert_eq!(
            p.fleet, None,
            "an empty claim name switches the attribute off"
        );
    }

    #[test]
    fn rejects_token_without_agent_claim() {
        let mapper = ClaimMapper::new(&ClaimMapping::default());
        for c in [json!({"fleet": "x"}), json!({"sub": ""})] {
            let err = mapper
                .principal(&claims(c), &Arc::from("i"), 1)
                .unwrap_err();
            assert_eq!(err.code(), "missing_claim");
            assert!(err.to_string().contains("`sub`"), "{err}");
        }
    }

    #[test]
    fn rejects_an_agent_id_that_does_not_read_as_it_is() {
        let mapper = ClaimMapper::new(&ClaimMapping::default());
        for (id, problem) in [
            ("ci-bot\u{202e}", "bidirectional control U+202E"),
            ("ci\u{200b}-bot", "invisible formatting character U+200B"),
            ("evil\u{9b}31m", "control character U+009B"),
            ("ci-bot\u{2028}x", "control character U+2028"),
            ("ci-bot ", "whitespace"),
        ] {
            let err = mapper
                .principal(&claims(json!({"sub": id})), &Arc::from("i"), 1)
                .unwrap_err();
            assert_eq!(err.code(), "invalid_claim", "{id:?}");
            let text = err.to_string();
            assert!(text.contains("`sub`") && text.contains(problem), "{text}");
        }
        // Other scripts and accents read as they are.
        for id in ["café-bot", "通义-agent", "ci bot"] {
            let p = mapper
                .principal(&claims(json!({"sub": id})), &Arc::from("i"), 1)
                .unwrap();
            assert_eq!(&*p.id, id);
        }
    }

    #[test]
    fn rejects_attribute_claims_of_the_wrong_type() {
        let mapper = ClaimMapper::new(&ClaimMapping::default());
        for c in [
            json!({"sub": 5}),
            json!({"sub": "a", "owner": ["x"]}),
            json!({"sub": "a", "scope": 1}),
            json!({"sub": "a", "groups": ["ok", 2]}),
        ] {
            let err = mapper
                .principal(&claims(c.clone()), &Arc::from("i"), 1)
                .unwrap_err();
            assert_eq!(err.code(), "invalid_claim", "{c}");
        }
    }
}
