//! The actions the schema declares, as the engine judges them: Warden's own (`Verb::BUILT_IN`)
//! and any other (a REST connector's operations), each with the principal and resource types
//! it applies to and the kind of facts its context holds.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use cedar_policy::{Context, EntityUid, Schema};

use super::arguments::ToolArguments;
use super::context_keys::ContextKeys;
use super::request::{self, IpCache};
use crate::action::{
    ActionContext, AnswerFacts, EgressFacts, ElicitFacts, Facts, Finding, Findings, HttpFacts,
    LlmFacts, ProposeFacts, SampleFacts, ToolFacts, Verb,
};

/// Which of the schema's context types an action's context is: which [`Facts`] it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FactsKind {
    /// `RequestContext`: the common facts only ([`Facts::None`]).
    Request,
    /// `LlmContext` ([`Facts::Llm`]).
    Llm,
    /// `HttpContext` ([`Facts::Http`]).
    Http,
    /// `EgressContext` ([`Facts::Egress`]).
    Egress,
    /// `ToolContext` ([`Facts::Tool`]).
    Tool,
    /// `ProposeContext` ([`Facts::Propose`]).
    Propose,
    /// `SampleContext` ([`Facts::Sample`]).
    Sample,
    /// `ElicitContext` ([`Facts::Elicit`]).
    Elicit,
    /// `ResultContext` ([`Facts::Answer`]).
    Answer,
}

impl FactsKind {
    const ALL: [FactsKind; 9] = [
        FactsKind::Request,
        FactsKind::Llm,
        FactsKind::Http,
        FactsKind::Egress,
        FactsKind::Tool,
        FactsKind::Propose,
        FactsKind::Sample,
        FactsKind::Elicit,
        FactsKind::Answer,
    ];

    /// The kind of `facts`.
    pub(crate) fn of(facts: &Facts) -> FactsKind {
        match facts {
            Facts::None => FactsKind::Request,
            Facts::Llm(_) => FactsKind::Llm,
            Facts::Http(_) => FactsKind::Http,
            Facts::Egress(_) => FactsKind::Egress,
            Facts::Tool(_) => FactsKind::Tool,
            Facts::Propose(_) => FactsKind::Propose,
            Facts::Sample(_) => FactsKind::Sample,
            Facts::Elicit(_) => FactsKind::Elicit,
            Facts::Answer(_) => FactsKind::Answer,
        }
    }

    /// The facts Warden gives `verb`: LLM calls theirs, REST calls and connector operations
    /// theirs, egress its own, MCP tool calls, prompts and completions their arguments,
    /// everything else the common facts only.
    pub(crate) fn of_verb(verb: &Verb) -> FactsKind {
        match verb {
            Verb::LlmChat | Verb::LlmEmbed | Verb::LlmModels => FactsKind::Llm,
            Verb::HttpRequest | Verb::Operation(_) => FactsKind::Http,
            Verb::EgressConnect | Verb::EgressRequest => FactsKind::Egress,
            Verb::McpCallTool | Verb::McpGetPrompt | Verb::McpComplete => FactsKind::Tool,
            Verb::ToolPropose => FactsKind::Propose,
            Verb::McpSample => FactsKind::Sample,
            Verb::McpElicit => FactsKind::Elicit,
            Verb::McpReceiveResult => FactsKind::Answer,
            Verb::McpListTools
            | Verb::McpListRoots
            | Verb::McpReadResource
            | Verb::SecretUse
            | Verb::ApprovalDecide
            | Verb::AdminQuarantine
            | Verb::AdminRelease
            | Verb::AdminList
            | Verb::AdminRevoke => FactsKind::Request,
        }
    }

    /// The schema's name for the context type.
    pub(crate) fn context_type(self) -> &'static str {
        match self {
            FactsKind::Request => "RequestContext",
            FactsKind::Llm => "LlmContext",
            FactsKind::Http => "HttpContext",
            FactsKind::Egress => "EgressContext",
            FactsKind::Tool => "ToolContext",
            FactsKind::Propose => "ProposeContext",
            FactsKind::Sample => "SampleContext",
            FactsKind::Elicit => "ElicitContext",
            FactsKind::Answer => "ResultContext",
        }
    }

    /// Sample facts of this kind, with every optional fact set (`full`) or none.
    pub(crate) fn sample(self, full: bool) -> Facts {
        match self {
            FactsKind::Request => Facts::None,
            FactsKind::Llm => Facts::Llm(LlmFacts {
                stream: full,
                max_tokens: full.then_some(1),
                tools: vec!["exec".into()],
                input_tokens: 1,
                cached_content: false,
            }),
            FactsKind::Http => Facts::Http(HttpFacts {
                method: "POST".into(),
                path: "/repos/acme/app/issues".into(),
                fields: None,
                undeclared: Vec::new(),
            }),
            FactsKind::Egress => Facts::Egress(EgressFacts {
                port: 443,
                addresses: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
                scheme: "https".into(),
                sni: full.then(|| "pypi.org".into()),
                method: full.then(|| "GET".into()),
                path: full.then(|| "/simple/".into()),
                server: full.then(|| "fetch".into()),
            }),
            FactsKind::Tool => Facts::Tool(ToolFacts {
                arguments: Arc::new(serde_json::json!({ "path": "/tmp/a" })),
            }),
            FactsKind::Propose => Facts::Propose(Box::new(ProposeFacts {
                arguments_json: r#"{"command":"ls"}"#.into(),
                command: full.then(|| "ls".into()),
                command_parsed: true,
                programs: vec!["ls".into()],
                ..ProposeFacts::default()
            })),
            FactsKind::Sample => Facts::Sample(SampleFacts {
                max_tokens: 100,
                include_context: "none".into(),
                model_hints: vec!["claude".into()],
                system_prompt_bytes: u64::from(full),
                messages: 1,
            }),
            FactsKind::Elicit => Facts::Elicit(ElicitFacts {
                mode: "form".into(),
                field_names: vec!["email".into()],
            }),
            FactsKind::Answer => Facts::Answer(AnswerFacts {
                server: "github".into(),
                method: "tools/call".into(),
                locations: vec!["result.content[0].text".into()],
                arguments: Some(Arc::new(serde_json::json!({ "path": "/tmp/a" }))),
                uri: full.then(|| "file:///tmp/a".into()),
            }),
        }
    }
}

/// A sample context of `kind`, with every optional fact set (`full`) or none.
pub(crate) fn sample_context(kind: FactsKind, full: bool) -> ActionContext {
    ActionContext {
        route: Arc::from("route"),
        time: UNIX_EPOCH,
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls: full,
        client_certificate: full.then(|| Arc::from("CN=agent")),
        findings: Findings(
            full.then(|| Finding {
                detector: Arc::from("canary"),
                location: "messages[0].content".into(),
            })
            .into_iter()
            .collect(),
        ),
        facts: kind.sample(full),
        session: full.then(|| {
            Box::new(crate::action::SessionFacts {
                actions: 3,
                labels: vec![Arc::from("private")],
                answer_findings: vec![Arc::from("tool_instruction_override")],
                ..Default::default()
            })
        }),
        budget: full.then_some(crate::action::BudgetFacts {
            tokens_left: 1000,
            cost_left_micro_usd: 2_000_000,
            used_ratio_percent: 80,
            exceeded: false,
        }),
    }
}

/// One action the schema declares, as the engine judges it.
#[derive(Debug)]
pub(crate) struct Declared {
    /// The action as Warden names it.
    pub verb: Verb,
    /// `Action::"<name>"`.
    pub uid: EntityUid,
    /// The principal types it applies to.
    pub principals: Vec<String>,
    /// The resource types it applies to.
    pub resources: Vec<String>,
    /// What its context holds.
    pub facts: FactsKind,
}

/// Why an action the schema declares cannot be judged: its name and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undeclarable {
    pub action: String,
    pub message: String,
}

/// Every action the schema declares for requests (action groups, which apply to nothing,
/// are left out), and each one whose context is not the one Warden builds for it
/// ([`FactsKind::of_verb`]).
pub(crate) fn declared(schema: &Schema) -> (Vec<Declared>, Vec<Undeclarable>) {
    let ips = IpCache::default();
    let mut samples: Vec<(FactsKind, Result<Context, String>)> = FactsKind::ALL
        .into_iter()
        .map(|kind| {
            let context = request::context(
                &sample_context(kind, true),
                &ips,
                ContextKeys::all(),
                &ToolArguments::Hidden,
            );
            (kind, context)
        })
        .collect();
    // A REST operation with fields: `HttpContext`'s attributes and a record of optional fields,
    // which an empty record fits.
    let mut with_fields = sample_context(FactsKind::Http, true);
    if let Facts::Http(http) = &mut with_fields.facts {
        http.fields = Some(Vec::new());
    }
    samples.push((
        FactsKind::Http,
        request::context(
            &with_fields,
            &ips,
            ContextKeys::all(),
            &ToolArguments::Hidden,
        ),
    ));
    let fits = |kind: FactsKind, uid: &EntityUid| -> Result<(), String> {
        let mut first_error = None;
        for (_, context) in samples.iter().filter(|(k, _)| *k == kind) {
            match context {
                Ok(context) => match context.validate(schema, uid) {
                    Ok(()) => return Ok(()),
                    Err(e) => {
                        first_error.get_or_insert(e.to_string());
                    }
                },
                Err(e) => {
                    first_error.get_or_insert(e.clone());
                }
            }
        }
        Err(first_error.unwrap_or_else(|| format!("no sample of {}", kind.context_type())))
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for uid in schema.actions() {
        if uid.type_name().to_string() != "Action" || !seen.insert(uid.clone()) {
            continue;
        }
        let types = |it: Option<Vec<String>>| it.unwrap_or_default();
        let principals = types(
            schema
                .principals_for_action(uid)
                .map(|it| it.map(ToString::to_string).collect()),
        );
        let resources = types(
            schema
                .resources_for_action(uid)
                .map(|it| it.map(ToString::to_string).collect()),
        );
        if principals.is_empty() || resources.is_empty() {
            continue;
        }
        let name: &str = uid.id().unescaped();
        let verb = Verb::BUILT_IN
            .iter()
            .find(|v| v.as_str() == name)
            .cloned()
            .unwrap_or_else(|| Verb::Operation(Arc::from(name)));
        let facts = FactsKind::of_verb(&verb);
        match fits(facts, uid) {
            Ok(()) => out.push(Declared {
                verb,
                uid: uid.clone(),
                principals,
                resources,
                facts,
            }),
            Err(cedar) => {
                let expected = facts.context_type();
                let message = match FactsKind::ALL.into_iter().find(|k| fits(*k, uid).is_ok()) {
                    Some(other) => format!(
                        "Warden sends it with a context of type {expected}, the schema gives it {}",
                        other.context_type()
                    ),
                    None => format!("Warden sends it with a context of type {expected}: {cedar}"),
                };
                errors.push(Undeclarable {
                    action: name.to_owned(),
                    message,
                });
            }
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_kinds_name_their_facts() {
        for kind in FactsKind::ALL {
            assert_eq!(FactsKind::of(&kind.sample(true)), kind);
        }
    }
}
