//! The facts a decision record carries for `warden policy replay` and `warden policy explain
//! --decision`: the action as a policy test case writes it (principal with its attributes,
//! action, resource, context), so the same reader ([`super::testing::recorded_action`])
//! rebuilds it. Never a body: a tool call's arguments only when `audit.record_content`
//! records them anyway.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::action::{
    Action, ActionContext, BudgetFacts, Facts, FieldValue, Principal, PrincipalKind, Resource,
    SessionFacts,
};
use crate::audit::event::RawJson;

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

/// The facts of `action` as JSON text, or why there are none. `arguments`: a tool call's
/// arguments may be recorded (they are in the record's `content` already). `max_bytes` bounds
/// the JSON text. Written straight from the action (no intermediate JSON tree): the decision
/// record embeds the text as it is.
pub fn of(action: &Action, arguments: bool, max_bytes: usize) -> Result<RawJson, &'static str> {
    match &action.context.facts {
        Facts::Tool(_) if !arguments => return Err(ARGUMENTS_NOT_RECORDED),
        Facts::Propose(_) => return Err(PROPOSED_CALL),
        _ => {}
    }
    let raw = RawJson::of(&Recorded(action)).map_err(|_| TOO_LARGE)?;
    if raw.get().len() > max_bytes {
        return Err(TOO_LARGE);
    }
    Ok(raw)
}

/// The action as a test case writes it: principal, action, resource, context.
struct Recorded<'a>(&'a Action);

impl Serialize for Recorded<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let action = self.0;
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("principal", &RecordedPrincipal(&action.principal))?;
        map.serialize_entry("action", action.verb.as_str())?;
        // A secret a detector found in the url may be in a path parameter: none is recorded.
        let withheld = crate::inspect::found_in_url(&action.context.findings);
        map.serialize_entry("resource", &RecordedResource(&action.resource, withheld))?;
        map.serialize_entry("context", &RecordedContext(&action.context))?;
        map.end()
    }
}

struct RecordedPrincipal<'a>(&'a Principal);

impl Serialize for RecordedPrincipal<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &*p.id)?;
        let kind = match p.kind {
            PrincipalKind::Agent => "agent",
            PrincipalKind::User => "user",
        };
        map.serialize_entry("kind", kind)?;
        map.serialize_entry("issuer", &*p.issuer)?;
        for (key, value) in [
            ("fleet", &p.fleet),
            ("owner", &p.owner),
            ("environment", &p.environment),
            ("client_certificate", &p.client_certificate),
        ] {
            if let Some(value) = value {
                map.serialize_entry(key, &**value)?;
            }
        }
        map.serialize_entry("scopes", &p.scopes)?;
        map.serialize_entry("groups", &p.groups)?;
        map.end()
    }
}

struct RecordedContext<'a>(&'a ActionContext);

impl Serialize for RecordedContext<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("route", &*c.route)?;
        let secs = c.time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        map.serialize_entry("time", &secs)?;
        map.serialize_entry("source_ip", &c.source_ip)?;
        map.serialize_entry("tls", &c.tls)?;
        if let Some(cert) = &c.client_certificate {
            map.serialize_entry("client_certificate", &**cert)?;
        }
        map.serialize_entry("findings", &Detectors(&c.findings))?;
        if let Some(session) = &c.session {
            map.serialize_entry("session", &RecordedSession(session))?;
        }
        if let Some(budget) = &c.budget {
            map.serialize_entry("budget", &RecordedBudget(budget))?;
        }
        match &c.facts {
            Facts::None | Facts::Propose(_) => {}
            Facts::Llm(l) => {
                map.serialize_entry("stream", &l.stream)?;
                if let Some(max) = l.max_tokens {
                    map.serialize_entry("max_tokens", &max)?;
                }
                map.serialize_entry("tools", &l.tools)?;
                map.serialize_entry("input_tokens", &l.input_tokens)?;
                if l.cached_content {
                    map.serialize_entry("cached_content", &true)?;
                }
            }
            Facts::Http(h) => {
                map.serialize_entry("method", &h.method)?;
                if crate::inspect::found_in_url(&c.findings) {
                    map.serialize_entry("path", crate::inspect::WITHHELD_PATH)?;
                } else {
                    map.serialize_entry("path", &h.path)?;
                }
                if let Some(fields) = &h.fields {
                    map.serialize_entry("fields", &Fields(fields))?;
                }
            }
            Facts::Egress(e) => {
                map.serialize_entry("port", &e.port)?;
                map.serialize_entry("addresses", &e.addresses)?;
                map.serialize_entry("scheme", &e.scheme)?;
                for (key, value) in [
                    ("sni", &e.sni),
                    ("method", &e.method),
                    ("path", &e.path),
                    ("server", &e.server),
                ] {
                    match value {
                        Some(_) if key == "path" && crate::inspect::found_in_url(&c.findings) => {
                            map.serialize_entry(key, crate::inspect::WITHHELD_PATH)?;
                        }
                        Some(value) => map.serialize_entry(key, value)?,
                        None => {}
                    }
                }
            }
            Facts::Tool(t) => map.serialize_entry("arguments", &*t.arguments)?,
            Facts::Sample(f) => {
                map.serialize_entry("max_tokens", &f.max_tokens)?;
                map.serialize_entry("include_context", &f.include_context)?;
                map.serialize_entry("model_hints", &f.model_hints)?;
                map.serialize_entry("system_prompt_bytes", &f.system_prompt_bytes)?;
                map.serialize_entry("messages", &f.messages)?;
            }
            Facts::Elicit(f) => {
                map.serialize_entry("mode", &f.mode)?;
                map.serialize_entry("field_names", &f.field_names)?;
            }
            Facts::Answer(f) => {
                map.serialize_entry("server", &f.server)?;
                map.serialize_entry("method", &f.method)?;
                map.serialize_entry("locations", &f.locations)?;
            }
        }
        map.end()
    }
}

/// The detectors that found something, each once.
struct Detectors<'a>(&'a crate::action::Findings);

impl Serialize for Detectors<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.detectors())
    }
}

struct RecordedSession<'a>(&'a SessionFacts);

impl Serialize for RecordedSession<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("actions", &f.actions)?;
        map.serialize_entry("action_count", &f.action_count)?;
        map.serialize_entry("resource_count", &f.resource_count)?;
        map.serialize_entry("labels", &f.labels)?;
        map.serialize_entry("resource_tags", &f.resource_tags)?;
        map.serialize_entry("answer_findings", &f.answer_findings)?;
        map.end()
    }
}

struct RecordedBudget<'a>(&'a BudgetFacts);

impl Serialize for RecordedBudget<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.0;
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("tokens_left", &b.tokens_left)?;
        map.serialize_entry("cost_left_micro_usd", &b.cost_left_micro_usd)?;
        map.serialize_entry("used_ratio_percent", &b.used_ratio_percent)?;
        map.serialize_entry("exceeded", &b.exceeded)?;
        map.end()
    }
}

/// A REST request's fields by name, each as its JSON value (in decision facts, and what an
/// approval shows and binds to).
pub(crate) struct Fields<'a>(pub &'a [(Arc<str>, FieldValue)]);

impl Serialize for Fields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            match value {
                FieldValue::String(v) => map.serialize_entry(&**name, v)?,
                FieldValue::Long(v) => map.serialize_entry(&**name, v)?,
                FieldValue::Bool(v) => map.serialize_entry(&**name, v)?,
                FieldValue::Strings(v) => map.serialize_entry(&**name, v)?,
            }
        }
        map.end()
    }
}

/// The resource as a test case writes it.
/// A resource as a test case writes it; the path parameters' values withheld when `.1`.
struct RecordedResource<'a>(&'a Resource, bool);

impl Serialize for RecordedResource<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match self.0 {
            Resource::Model { provider, name } => {
                map.serialize_entry("provider", &**provider)?;
                map.serialize_entry("model", name)?;
            }
            Resource::Provider { name } => map.serialize_entry("provider", &**name)?,
            Resource::Tool { server, name } => {
                map.serialize_entry("server", &**server)?;
                map.serialize_entry("tool", name)?;
            }
            Resource::McpServer { name } => map.serialize_entry("server", &**name)?,
            Resource::AgentTool { name, group } => {
                map.serialize_entry("tool", name)?;
                if let Some(group) = group {
                    map.serialize_entry("group", &**group)?;
                }
            }
            Resource::Operation { api, name, params } => {
                map.serialize_entry("api", &**api)?;
                map.serialize_entry("operation", &**name)?;
                map.serialize_entry("params", &Params(params, self.1))?;
            }
            Resource::Api { name } => map.serialize_entry("api", &**name)?,
            Resource::Host { name } => map.serialize_entry("host", name)?,
            Resource::Secret { path } => map.serialize_entry("secret", path)?,
            Resource::Approval {
                id,
                principal,
                action,
                resource,
                owner,
            } => {
                map.serialize_entry("approval", &**id)?;
                map.serialize_entry("principal", &**principal)?;
                map.serialize_entry("action", &**action)?;
                map.serialize_entry("resource", &**resource)?;
                if let Some(owner) = owner {
                    map.serialize_entry("owner", &**owner)?;
                }
            }
            Resource::Quarantine { kind, name } => {
                map.serialize_entry("quarantine", kind)?;
                map.serialize_entry("name", &**name)?;
            }
        }
        map.end()
    }
}

/// An operation's path parameters by name; their values withheld when `.1`.
struct Params<'a>(&'a [(Arc<str>, String)], bool);

impl Serialize for Params<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let withheld = self.1;
        s.collect_map(self.0.iter().map(|(k, v)| {
            let v = if withheld {
                crate::inspect::WITHHELD_PATH
            } else {
                v.as_str()
            };
            (&**k, v)
        }))
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
        let raw = of(original, arguments, 8192).unwrap();
        let facts: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
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
                    cached_content: false,
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
                server: Some("fetch".into()),
            }),
        );
        assert_round_trip(&egress, false);
        assert_round_trip(&tool_call(serde_json::json!({"repo": "acme/x"})), true);
    }

    #[test]
    fn arguments_that_are_not_recorded_and_large_facts_are_left_out() {
        let tool = tool_call(serde_json::json!({"token": "ghp_secret"}));
        assert_eq!(of(&tool, false, 8192).err(), Some(ARGUMENTS_NOT_RECORDED));
        let chat = action(
            Verb::LlmChat,
            Resource::Model {
                provider: "openai".into(),
                name: "gpt-4o".into(),
            },
            Facts::Llm(LlmFacts::default()),
        );
        assert_eq!(of(&chat, false, 64).err(), Some(TOO_LARGE));
    }

    #[test]
    fn a_rest_path_and_parameters_with_a_secret_in_the_url_are_withheld() {
        let key = "AKIAIOSFODNN7EXAMPLE";
        let mut call = action(
            Verb::Operation("github:repos.get".into()),
            Resource::Operation {
                api: "github".into(),
                name: "repos.get".into(),
                params: vec![("owner".into(), "acme".into()), ("repo".into(), key.into())],
            },
            Facts::Http(crate::action::HttpFacts {
                method: "GET".into(),
                path: format!("/repos/acme/{key}"),
                fields: None,
                undeclared: Vec::new(),
            }),
        );
        let raw = of(&call, false, 8192).unwrap();
        assert!(raw.get().contains(key), "kept without a finding in the url");
        call.context.findings.0.push(Finding {
            detector: "aws_access_key".into(),
            location: "url, byte 17".into(),
        });
        let raw = of(&call, false, 8192).unwrap();
        assert!(!raw.get().contains(key), "{}", raw.get());
        let facts: serde_json::Value = serde_json::from_str(raw.get()).unwrap();
        assert_eq!(facts["context"]["path"], crate::inspect::WITHHELD_PATH);
        assert_eq!(
            facts["resource"]["params"]["repo"],
            crate::inspect::WITHHELD_PATH
        );
    }
}
