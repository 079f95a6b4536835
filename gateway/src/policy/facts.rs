//! The facts a decision record carries for `warden policy replay` and `warden policy explain
//! --decision`: the action as a policy test case writes it (principal with its attributes,
//! action, resource, context), so the same reader ([`super::testing::recorded_action`])
//! rebuilds it. Never a body: a tool call's arguments only when `audit.record_content`
//! records them anyway.

use std::time::UNIX_EPOCH;

use serde_json::{Map, Value, json};

use crate::action::{Action, Facts, FieldValue, PrincipalKind, Resource};

/// Why a decision record carries no facts (`facts_omitted`).
pub const TOO_LARGE: &str = "too large";
/// A tool call's arguments are not recorded (`audit.record_content` is off).
pub const ARGUMENTS_NOT_RECORDED: &str = "arguments not recorded";
/// A proposed tool call is judged on facts read from its arguments with the gateway's
/// workspace settings; it is not replayed.
pub const PROPOSED_CALL: &str = "proposed tool call";

/// A decision record's `overruled_by`: a quarantine trigger turned policy's verdict into a
/// deny. Replay does not judge it again.
pub const OVERRULED_BY_QUARANTINE: &str = "quarantine";
/// A decision record's `overruled_by`: the egress guard denied an internal address policy let
/// through without `@egress("internal")`. Replay does not judge it again.
pub const OVERRULED_BY_INTERNAL_ADDRESS: &str = "internal_address";

/// The facts of `action`, or why there are none. `arguments`: a tool call's arguments may be
/// recorded (they are in the record's `content` already). `max_bytes` bounds the JSON text.
pub fn of(action: &Action, arguments: bool, max_bytes: usize) -> Result<Value, &'static str> {
    let mut context = Map::new();
    let c = &action.context;
    context.insert("route".into(), json!(&*c.route));
    let secs = c.time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    context.insert("time".into(), json!(secs));
    context.insert("source_ip".into(), json!(c.source_ip.to_string()));
    context.insert("tls".into(), json!(c.tls));
    if let Some(cert) = &c.client_certificate {
        context.insert("client_certificate".into(), json!(&**cert));
    }
    let findings: Vec<&str> = c.findings.detectors().collect();
    context.insert("findings".into(), json!(findings));
    if let Some(s) = &c.session {
        let tags = |t: &[std::sync::Arc<str>]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        context.insert(
            "session".into(),
            json!({
                "actions": s.actions,
                "action_count": s.action_count,
                "resource_count": s.resource_count,
                "labels": tags(&s.labels),
                "resource_tags": tags(&s.resource_tags),
            }),
        );
    }
    if let Some(b) = &c.budget {
        context.insert(
            "budget".into(),
            json!({
                "tokens_left": b.tokens_left,
                "cost_left_micro_usd": b.cost_left_micro_usd,
                "used_ratio_percent": b.used_ratio_percent,
                "exceeded": b.exceeded,
            }),
        );
    }
    match &c.facts {
        Facts::None => {}
        Facts::Llm(l) => {
            context.insert("stream".into(), json!(l.stream));
            if let Some(max) = l.max_tokens {
                context.insert("max_tokens".into(), json!(max));
            }
            context.insert("tools".into(), json!(l.tools));
            context.insert("input_tokens".into(), json!(l.input_tokens));
        }
        Facts::Http(h) => {
            context.insert("method".into(), json!(h.method));
            context.insert("path".into(), json!(h.path));
            if let Some(fields) = &h.fields {
                let fields: Map<String, Value> = fields
                    .iter()
                    .map(|(name, value)| {
                        let value = match value {
                            FieldValue::String(s) => json!(s),
                            FieldValue::Long(n) => json!(n),
                            FieldValue::Bool(b) => json!(b),
                            FieldValue::Strings(list) => json!(list),
                        };
                        (name.to_string(), value)
                    })
                    .collect();
                context.insert("fields".into(), Value::Object(fields));
            }
        }
        Facts::Egress(e) => {
            context.insert("port".into(), json!(e.port));
            let addresses: Vec<String> = e.addresses.iter().map(ToString::to_string).collect();
            context.insert("addresses".into(), json!(addresses));
            context.insert("scheme".into(), json!(e.scheme));
            if let Some(sni) = &e.sni {
                context.insert("sni".into(), json!(sni));
            }
            if let Some(method) = &e.method {
                context.insert("method".into(), json!(method));
            }
            if let Some(path) = &e.path {
                context.insert("path".into(), json!(path));
            }
        }
        Facts::Tool(t) if arguments => {
            context.insert("arguments".into(), (*t.arguments).clone());
        }
        Facts::Tool(_) => return Err(ARGUMENTS_NOT_RECORDED),
        Facts::Propose(_) => return Err(PROPOSED_CALL),
    }
    let p = &action.principal;
    let mut principal = Map::new();
    principal.insert("id".into(), json!(&*p.id));
    let kind = match p.kind {
        PrincipalKind::Agent => "agent",
        PrincipalKind::User => "user",
    };
    principal.insert("kind".into(), json!(kind));
    principal.insert("issuer".into(), json!(&*p.issuer));
    for (key, value) in [
        ("fleet", &p.fleet),
        ("owner", &p.owner),
        ("environment", &p.environment),
        ("client_certificate", &p.client_certificate),
    ] {
        if let Some(value) = value {
            principal.insert(key.into(), json!(&**value));
        }
    }
    let list = |l: &[std::sync::Arc<str>]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    principal.insert("scopes".into(), json!(list(&p.scopes)));
    principal.insert("groups".into(), json!(list(&p.groups)));
    let facts = json!({
        "principal": principal,
        "action": action.verb.as_str(),
        "resource": resource(&action.resource),
        "context": context,
    });
    let size = serde_json::to_vec(&facts).map_or(usize::MAX, |b| b.len());
    if size > max_bytes {
        return Err(TOO_LARGE);
    }
    Ok(facts)
}

/// The resource as a test case writes it.
fn resource(r: &Resource) -> Value {
    match r {
        Resource::Model { provider, name } => json!({ "provider": &**provider, "model": name }),
        Resource::Provider { name } => json!({ "provider": &**name }),
        Resource::Tool { server, name } => json!({ "server": &**server, "tool": name }),
        Resource::McpServer { name } => json!({ "server": &**name }),
        Resource::AgentTool { name, group } => match group {
            Some(group) => json!({ "tool": name, "group": &**group }),
            None => json!({ "tool": name }),
        },
        Resource::Operation { api, name, params } => {
            let params: Map<String, Value> = params
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({ "api": &**api, "operation": &**name, "params": params })
        }
        Resource::Api { name } => json!({ "api": &**name }),
        Resource::Host { name } => json!({ "host": name }),
        Resource::Secret { path } => json!({ "secret": path }),
        Resource::Approval {
            id,
            principal,
            action,
            resource,
            owner,
        } => {
            let mut m = json!({
                "approval": &**id, "principal": &**principal, "action": &**action,
                "resource": &**resource,
            });
            if let Some(owner) = owner {
                m["owner"] = json!(&**owner);
            }
            m
        }
        Resource::Quarantine { kind, name } => json!({ "quarantine": kind, "name": &**name }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::action::{
        ActionContext, EgressFacts, Finding, Findings, LlmFacts, Principal, SessionFacts,
        ToolFacts, Verb,
    };
    use crate::policy::testing::recorded_action;

    fn engine() -> crate::policy::PolicyEngine {
        let dir = tempfile::tempdir().unwrap();
        let schema = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/schema.cedarschema"
        );
        std::fs::copy(schema, dir.path().join("schema.cedarschema")).unwrap();
        std::fs::write(
            dir.path().join("p.cedar"),
            "@id(\"all\")\npermit (principal, action, resource);\n",
        )
        .unwrap();
        crate::policy::PolicyEngine::load(dir.path()).unwrap()
    }

    fn action(verb: Verb, resource: Resource, facts: Facts) -> Action {
        Action {
            principal: Arc::new(Principal {
                fleet: Some("ci".into()),
                owner: Some("alice".into()),
                environment: Some("prod".into()),
                scopes: vec!["models".into()],
                groups: vec!["builders".into()],
                client_certificate: Some("spiffe://ci/bot".into()),
                ..Principal::anonymous()
            }),
            verb,
            resource,
            context: ActionContext {
                route: "openai".into(),
                time: UNIX_EPOCH + Duration::from_secs(1_793_613_600),
                source_ip: "10.1.2.3".parse().unwrap(),
                tls: false,
                client_certificate: Some("spiffe://ci/bot".into()),
                findings: Findings(vec![Finding {
                    detector: "aws_access_key".into(),
                    location: "messages[0]".into(),
                }]),
                facts,
                budget: Some(crate::action::BudgetFacts {
                    tokens_left: 1200,
                    cost_left_micro_usd: 450_000,
                    used_ratio_percent: 91,
                    exceeded: false,
                }),
                session: Some(Box::new(SessionFacts {
                    actions: 4,
                    action_count: 2,
                    resource_count: 1,
                    labels: vec!["private".into()],
                    resource_tags: vec!["external".into()],
                    ..SessionFacts::default()
                })),
            },
        }
    }

    fn tool_call(arguments: serde_json::Value) -> Action {
        action(
            Verb::McpCallTool,
            Resource::Tool {
                server: "github".into(),
                name: "create_issue".into(),
            },
            Facts::Tool(ToolFacts {
                arguments: Arc::new(arguments),
            }),
        )
    }

    /// What replay judges is what was judged: every fact policy reads comes back.
    fn assert_round_trip(original: &Action, arguments: bool) {
        let facts = of(original, arguments, 8192).unwrap();
        let back = recorded_action(&engine(), &facts).unwrap();
        assert_eq!(back.principal, original.principal, "{facts}");
        assert_eq!(back.verb, original.verb);
        assert_eq!(back.resource, original.resource);
        let (mut a, mut b) = (back.context.clone(), original.context.clone());
        // Detectors are kept, not where they matched.
        a.findings.0.iter_mut().for_each(|f| f.location.clear());
        b.findings.0.iter_mut().for_each(|f| f.location.clear());
        assert_eq!(a, b, "{facts}");
    }

    #[test]
    fn recorded_facts_rebuild_the_action_policy_judged() {
        assert_round_trip(
            &action(
                Verb::LlmChat,
                Resource::Model {
                    provider: "openai".into(),
                    name: "gpt-4o".into(),
                },
                Facts::Llm(LlmFacts {
                    stream: true,
                    max_tokens: Some(512),
                    tools: vec!["search".into()],
                    input_tokens: 900,
                }),
            ),
            false,
        );
        let egress = action(
            Verb::EgressConnect,
            Resource::Host {
                name: "pypi.org".into(),
            },
            Facts::Egress(EgressFacts {
                port: 443,
                addresses: vec!["151.101.0.223".parse().unwrap()],
                scheme: "https".into(),
                sni: Some("pypi.org".into()),
                method: None,
                path: None,
            }),
        );
        assert_round_trip(&egress, false);
        assert_round_trip(&tool_call(serde_json::json!({"repo": "acme/x"})), true);
    }

    #[test]
    fn arguments_that_are_not_recorded_and_large_facts_are_left_out() {
        let tool = tool_call(serde_json::json!({"token": "ghp_secret"}));
        assert_eq!(of(&tool, false, 8192), Err(ARGUMENTS_NOT_RECORDED));
        let chat = action(
            Verb::LlmChat,
            Resource::Model {
                provider: "openai".into(),
                name: "gpt-4o".into(),
            },
            Facts::Llm(LlmFacts::default()),
        );
        assert_eq!(of(&chat, false, 64), Err(TOO_LARGE));
    }
}
