//! `warden policy test DIR`: decision cases in `DIR/tests/*.yaml` run against the policies in
//! `DIR`. The format is described in `docs/policy-guide.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::actions::FactsKind;
use super::{EvaluationFailure, PolicyEngine, PolicyErrors};
use crate::action::{
    Action, ActionContext, AnswerFacts, EgressFacts, ElicitFacts, Facts, FieldValue, Finding,
    Findings, HttpFacts, LlmFacts, Principal, PrincipalKind, Resource, SampleFacts, SessionFacts,
    ToolFacts,
};
use crate::decision::Decision;

/// Default arrival time of a case: Monday 2026-11-02 10:00:00 UTC.
const DEFAULT_TIME: u64 = 1_793_613_600;
/// Default source address of a case.
const DEFAULT_SOURCE_IP: &str = "10.0.0.10";
/// Default issuer of a case's principal.
const DEFAULT_ISSUER: &str = "https://idp.example.com";

/// Why the tests could not run at all (as opposed to cases that failed).
#[derive(Debug, thiserror::Error)]
pub enum PolicyTestError {
    /// The policy directory does not load.
    #[error("the policies do not load; fix these first:\n{0}")]
    Policies(PolicyErrors),
    /// No `*.yaml` case files were found.
    #[error("no test files: write decision cases in {0}/*.yaml (see docs/policy-guide.md)")]
    NoTests(PathBuf),
    /// Case files that cannot be read, parsed or understood.
    #[error("{}", lines(.0))]
    BadTestFiles(Vec<TestFileError>),
}

fn lines(errors: &[TestFileError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// One problem in a case file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFileError {
    /// The case file.
    pub file: PathBuf,
    /// `(line, column)`, 1-based, when known.
    pub position: Option<(u64, u64)>,
    /// What is wrong and how to write it.
    pub message: String,
}

impl fmt::Display for TestFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => {
                write!(f, "{}:{line}:{col}: {}", self.file.display(), self.message)
            }
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The decision a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// `allow`
    Allow,
    /// `deny`
    Deny,
    /// `approval_required`
    ApprovalRequired,
}

impl Expect {
    fn label(self) -> &'static str {
        match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::ApprovalRequired => "approval_required",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    cases: Vec<Spanned<Case>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    principal: PrincipalSpec,
    action: String,
    resource: ResourceSpec,
    #[serde(default)]
    context: ContextSpec,
    expect: Expect,
    /// Expected determining policy ids (order does not matter).
    policies: Option<Vec<String>>,
    /// Texts that must each appear in one of the decision's reasons.
    reasons: Option<Vec<String>>,
    /// Expected approvers of an `approval_required` decision.
    approvers: Option<Vec<String>>,
    /// Expected number of approvals (`@approvals`) of an `approval_required` decision.
    approvals: Option<u8>,
    /// Expected `@approval_ttl` of an `approval_required` decision (`15m`; `default` for
    /// none).
    approval_ttl: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindSpec {
    #[default]
    Agent,
    User,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalSpec {
    id: String,
    #[serde(default)]
    kind: KindSpec,
    issuer: Option<String>,
    fleet: Option<String>,
    owner: Option<String>,
    environment: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    client_certificate: Option<String>,
}

/// The resource, by the keys it is written with (see [`ResourceSpec::resource`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceSpec {
    provider: Option<String>,
    model: Option<String>,
    server: Option<String>,
    tool: Option<String>,
    group: Option<String>,
    api: Option<String>,
    operation: Option<String>,
    params: Option<BTreeMap<String, String>>,
    host: Option<String>,
    secret: Option<String>,
    approval: Option<String>,
    principal: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    owner: Option<String>,
    quarantine: Option<String>,
    name: Option<String>,
}

/// How a case writes a resource of each entity type.
const RESOURCE_FORMS: [(&str, &str); 11] = [
    ("Model", "{ provider: openai, model: gpt-4o }"),
    ("Provider", "{ provider: openai }"),
    (
        "Tool",
        "{ server: github, tool: create_issue } (an MCP server's tool)",
    ),
    (
        "Tool",
        "{ tool: exec, group: shell } (a tool the agent runs; group optional)",
    ),
    ("McpServer", "{ server: github }"),
    (
        "Operation",
        "{ api: github, operation: issues.create, params: { owner: acme } } (params optional)",
    ),
    ("Api", "{ api: github }"),
    ("Host", "{ host: pypi.org }"),
    ("Secret", "{ secret: secret/agents/ci/github }"),
    (
        "Approval",
        "{ approval: a-1, principal: 'Agent::\"ci-bot\"', action: llm:chat, resource: 'Model::\"openai/gpt-4o\"', owner: dave } (owner optional)",
    ),
    (
        "Quarantine",
        "{ quarantine: agent, name: ci-bot } (quarantine: agent, group or all; name * for all)",
    ),
];

/// `resource: { ... }` forms for the entity types in `types`, joined with " or ".
fn resource_forms<'a>(types: impl IntoIterator<Item = &'a str>) -> String {
    let types: Vec<&str> = types.into_iter().collect();
    RESOURCE_FORMS
        .iter()
        .filter(|(ty, _)| types.contains(ty))
        .map(|(_, form)| format!("resource: {form}"))
        .collect::<Vec<_>>()
        .join(" or ")
}

impl ResourceSpec {
    /// The keys written, in declaration order.
    fn keys(&self) -> Vec<&'static str> {
        [
            ("provider", self.provider.is_some()),
            ("model", self.model.is_some()),
            ("server", self.server.is_some()),
            ("tool", self.tool.is_some()),
            ("group", self.group.is_some()),
            ("api", self.api.is_some()),
            ("operation", self.operation.is_some()),
            ("params", self.params.is_some()),
            ("host", self.host.is_some()),
            ("secret", self.secret.is_some()),
            ("approval", self.approval.is_some()),
            ("principal", self.principal.is_some()),
            ("action", self.action.is_some()),
            ("resource", self.resource.is_some()),
            ("owner", self.owner.is_some()),
            ("quarantine", self.quarantine.is_some()),
            ("name", self.name.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// The resource these keys write, or what to write instead.
    fn resource(&self) -> Result<Resource, String> {
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        let arc = |s: &Option<String>| Arc::from(s.as_deref().unwrap_or_default());
        Ok(match self.keys().as_slice() {
            ["provider", "model"] => Resource::Model {
                provider: arc(&self.provider),
                name: text(&self.model),
            },
            ["provider"] => Resource::Provider {
                name: arc(&self.provider),
            },
            ["server", "tool"] => Resource::Tool {
                server: arc(&self.server),
                name: text(&self.tool),
            },
            ["server"] => Resource::McpServer {
                name: arc(&self.server),
            },
            ["tool"] | ["tool", "group"] => Resource::AgentTool {
                name: text(&self.tool),
                group: self.group.as_deref().map(Arc::from),
            },
            ["api", "operation"] | ["api", "operation", "params"] => Resource::Operation {
                api: arc(&self.api),
                name: arc(&self.operation),
                params: self
                    .params
                    .iter()
                    .flatten()
                    .map(|(k, v)| (Arc::from(k.as_str()), v.clone()))
                    .collect(),
            },
            ["api"] => Resource::Api {
                name: arc(&self.api),
            },
            ["host"] => Resource::Host {
                name: text(&self.host),
            },
            ["secret"] => Resource::Secret {
                path: text(&self.secret),
            },
            ["approval", "principal", "action", "resource"]
            | ["approval", "principal", "action", "resource", "owner"] => Resource::Approval {
                id: arc(&self.approval),
                principal: arc(&self.principal),
                action: arc(&self.action),
                resource: arc(&self.resource),
                owner: self.owner.as_deref().map(Arc::from),
            },
            ["quarantine", "name"] => Resource::Quarantine {
                kind: match self.quarantine.as_deref() {
                    Some("agent") => "agent",
                    Some("group") => "group",
                    Some("all") => "all",
                    _ => return Err("quarantine: must be agent, group or all".to_owned()),
                },
                name: arc(&self.name),
            },
            keys => {
                return Err(format!(
                    "resource {{ {} }} is no resource Warden knows",
                    keys.join(", ")
                ));
            }
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextSpec {
    // Every action's.
    route: Option<String>,
    time: Option<TimeSpec>,
    source_ip: Option<String>,
    tls: Option<bool>,
    client_certificate: Option<String>,
    #[serde(default)]
    findings: Vec<String>,
    // LLM calls'.
    stream: Option<bool>,
    max_tokens: Option<u64>,
    tools: Option<Vec<String>>,
    input_tokens: Option<u64>,
    cached_content: Option<bool>,
    // REST calls'.
    method: Option<String>,
    path: Option<String>,
    /// A REST operation's fields: strings, integers, booleans, arrays of strings.
    fields: Option<BTreeMap<String, serde_json::Value>>,
    // Egress'.
    port: Option<u16>,
    addresses: Option<Vec<String>>,
    scheme: Option<String>,
    sni: Option<String>,
    // Tool calls' (`mcp:call_tool`, `mcp:get_prompt`, `mcp:complete`), and a proposed tool
    // call's, read as `tool_kind` says (the context Warden derives from them).
    arguments: Option<serde_json::Value>,
    tool_kind: Option<crate::propose::config::ToolKind>,
    // A server's sampling request's (`mcp:sample`; `max_tokens` too).
    include_context: Option<String>,
    model_hints: Option<Vec<String>>,
    system_prompt_bytes: Option<u64>,
    messages: Option<u64>,
    // A server's elicitation request's (`mcp:elicit`).
    mode: Option<String>,
    field_names: Option<Vec<String>>,
    // A server's answer's (`mcp:receive_result`; `method` and `arguments` too); egress's, the
    // local server whose process connects.
    server: Option<String>,
    locations: Option<Vec<String>>,
    uri: Option<String>,
    // Every action's, when policies read it.
    session: Option<SessionSpec>,
    budget: Option<BudgetSpec>,
}

/// A test case's `context.budget`: what the agent has left (unset figures are unbounded,
/// `exceeded` false).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetSpec {
    tokens_left: Option<u64>,
    cost_left_micro_usd: Option<u64>,
    #[serde(default)]
    used_ratio_percent: u64,
    #[serde(default)]
    exceeded: bool,
}

impl BudgetSpec {
    fn facts(&self) -> crate::action::BudgetFacts {
        let unbounded = i64::MAX as u64;
        crate::action::BudgetFacts {
            tokens_left: self.tokens_left.unwrap_or(unbounded),
            cost_left_micro_usd: self.cost_left_micro_usd.unwrap_or(unbounded),
            used_ratio_percent: self.used_ratio_percent,
            exceeded: self.exceeded,
        }
    }
}

/// A test case's `context.session`: what the session did before (unset figures are 0).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SessionSpec {
    #[serde(default)]
    actions: u64,
    #[serde(default)]
    action_count: u64,
    #[serde(default)]
    resource_count: u64,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    resource_tags: Vec<String>,
    #[serde(default)]
    answer_findings: Vec<String>,
}

impl SessionSpec {
    fn facts(&self) -> SessionFacts {
        let tags = |t: &[String]| t.iter().map(|s| Arc::from(s.as_str())).collect();
        SessionFacts {
            actions: self.actions,
            action_count: self.action_count,
            resource_count: self.resource_count,
            labels: tags(&self.labels),
            resource_tags: tags(&self.resource_tags),
            answer_findings: tags(&self.answer_findings),
            ..SessionFacts::default()
        }
    }
}

impl ContextSpec {
    /// The facts of `kind` these keys write, or which keys do not belong to it.
    fn facts(&self, kind: FactsKind, action: &str) -> Result<Facts, String> {
        let of_kind = |k: FactsKind, keys: &[(&'static str, bool)]| {
            if k == kind {
                Vec::new()
            } else {
                keys.iter()
                    .filter(|(_, set)| *set)
                    .map(|(key, _)| *key)
                    .collect()
            }
        };
        let foreign: Vec<&str> = [
            of_kind(
                FactsKind::Llm,
                &[
                    ("stream", self.stream.is_some()),
                    ("tools", self.tools.is_some()),
                    ("input_tokens", self.input_tokens.is_some()),
                    ("cached_content", self.cached_content.is_some()),
                ],
            ),
            // An LLM call's output limit; a server's sampling request has one too.
            if kind == FactsKind::Sample {
                Vec::new()
            } else {
                of_kind(FactsKind::Llm, &[("max_tokens", self.max_tokens.is_some())])
            },
            of_kind(
                FactsKind::Sample,
                &[
                    ("include_context", self.include_context.is_some()),
                    ("model_hints", self.model_hints.is_some()),
                    ("system_prompt_bytes", self.system_prompt_bytes.is_some()),
                    ("messages", self.messages.is_some()),
                ],
            ),
            of_kind(
                FactsKind::Elicit,
                &[
                    ("mode", self.mode.is_some()),
                    ("field_names", self.field_names.is_some()),
                ],
            ),
            of_kind(
                FactsKind::Answer,
                &[
                    // Egress has it too: the local server whose process connects.
                    ("server", self.server.is_some() && kind != FactsKind::Egress),
                    ("locations", self.locations.is_some()),
                    ("uri", self.uri.is_some()),
                ],
            ),
            // A REST call's method and path; egress:request has them too, a server's answer
            // its method.
            match kind {
                FactsKind::Egress => Vec::new(),
                FactsKind::Answer => of_kind(FactsKind::Http, &[("path", self.path.is_some())]),
                _ => of_kind(
                    FactsKind::Http,
                    &[
                        ("method", self.method.is_some()),
                        ("path", self.path.is_some()),
                    ],
                ),
            },
            of_kind(FactsKind::Http, &[("fields", self.fields.is_some())]),
            of_kind(
                FactsKind::Egress,
                &[
                    ("port", self.port.is_some()),
                    ("addresses", self.addresses.is_some()),
                    ("scheme", self.scheme.is_some()),
                    ("sni", self.sni.is_some()),
                ],
            ),
            if matches!(kind, FactsKind::Propose | FactsKind::Answer) {
                Vec::new()
            } else {
                of_kind(FactsKind::Tool, &[("arguments", self.arguments.is_some())])
            },
            of_kind(
                FactsKind::Propose,
                &[("tool_kind", self.tool_kind.is_some())],
            ),
        ]
        .concat();
        if !foreign.is_empty() {
            return Err(format!(
                "context: {} not in the context of {action} ({}); it takes {}",
                foreign.join(", "),
                kind.context_type(),
                context_keys(kind)
            ));
        }
        Ok(match kind {
            FactsKind::Request => Facts::None,
            FactsKind::Llm => Facts::Llm(LlmFacts {
                stream: self.stream.unwrap_or(false),
                max_tokens: self.max_tokens,
                tools: self.tools.clone().unwrap_or_default(),
                input_tokens: self.input_tokens.unwrap_or(0),
                cached_content: self.cached_content.unwrap_or(false),
            }),
            FactsKind::Http => Facts::Http(HttpFacts {
                method: self.method.clone().unwrap_or_else(|| "GET".into()),
                path: self.path.clone().unwrap_or_else(|| "/".into()),
                fields: self.fields.as_ref().map(fields).transpose()?,
                undeclared: Vec::new(),
            }),
            FactsKind::Egress => Facts::Egress(EgressFacts {
                port: self.port.unwrap_or(443),
                addresses: self
                    .addresses
                    .iter()
                    .flatten()
                    .map(|a| {
                        a.parse()
                            .map_err(|_| format!("context.addresses: `{a}` is not an IP address"))
                    })
                    .collect::<Result<_, _>>()?,
                scheme: self.scheme.clone().unwrap_or_else(|| "https".into()),
                sni: self.sni.clone(),
                method: self.method.clone(),
                path: self.path.clone(),
                server: self.server.clone(),
            }),
            FactsKind::Tool => Facts::Tool(ToolFacts {
                arguments: Arc::new(object_arguments(
                    self.arguments.as_ref(),
                    "arguments: { path: /srv/shared/a.txt }",
                )?),
            }),
            FactsKind::Propose => {
                let arguments = object_arguments(
                    self.arguments.as_ref(),
                    "arguments: { command: \"git push --force\" }",
                )?;
                let kind = self
                    .tool_kind
                    .unwrap_or(if arguments.get("command").is_some() {
                        crate::propose::config::ToolKind::Shell
                    } else {
                        crate::propose::config::ToolKind::Other
                    });
                let defaults = crate::propose::config::ProposeConfig::default();
                let workspace = crate::propose::paths::Workspace {
                    root: defaults.workspace,
                    home: defaults.home,
                };
                Facts::Propose(Box::new(crate::propose::facts::read(
                    kind, &arguments, &workspace,
                )))
            }
            FactsKind::Sample => Facts::Sample(SampleFacts {
                max_tokens: self.max_tokens.unwrap_or(0),
                include_context: self
                    .include_context
                    .clone()
                    .unwrap_or_else(|| "none".into()),
                model_hints: self.model_hints.clone().unwrap_or_default(),
                system_prompt_bytes: self.system_prompt_bytes.unwrap_or(0),
                messages: self.messages.unwrap_or(1),
            }),
            FactsKind::Elicit => Facts::Elicit(ElicitFacts {
                mode: self.mode.clone().unwrap_or_else(|| "form".into()),
                field_names: self.field_names.clone().unwrap_or_default(),
            }),
            FactsKind::Answer => Facts::Answer(AnswerFacts {
                server: self.server.clone().unwrap_or_default(),
                method: self.method.clone().unwrap_or_else(|| "tools/call".into()),
                locations: self.locations.clone().unwrap_or_default(),
                arguments: Some(Arc::new(object_arguments(
                    self.arguments.as_ref(),
                    "arguments: { path: /srv/app/.env }",
                )?)),
                uri: self.uri.clone(),
            }),
        })
    }
}

/// A test case's `context.arguments` (absent: an empty object); `Err` when it is not a
/// mapping, with `example` showing one.
fn object_arguments(
    arguments: Option<&serde_json::Value>,
    example: &str,
) -> Result<serde_json::Value, String> {
    match arguments {
        None => Ok(serde_json::Value::Object(serde_json::Map::new())),
        Some(arguments @ serde_json::Value::Object(_)) => Ok(arguments.clone()),
        Some(_) => Err(format!(
            "context.arguments: write the arguments as a mapping, e.g. `{example}`"
        )),
    }
}

/// The context keys a case may write for an action of `kind`.
/// A test case's `context.fields` as a REST operation's field values.
fn fields(
    spec: &BTreeMap<String, serde_json::Value>,
) -> Result<Vec<(Arc<str>, FieldValue)>, String> {
    use serde_json::Value;
    spec.iter()
        .map(|(name, value)| {
            let value = match value {
                Value::String(s) => FieldValue::String(s.clone()),
                Value::Bool(b) => FieldValue::Bool(*b),
                Value::Number(n) if n.is_i64() => FieldValue::Long(n.as_i64().unwrap_or(0)),
                Value::Array(items) => FieldValue::Strings(
                    items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| format!("context.fields.{name}: only strings in a list"))?,
                ),
                _ => {
                    return Err(format!(
                        "context.fields.{name}: a string, an integer, true or false, or a list \
                         of strings"
                    ));
                }
            };
            Ok((Arc::from(name.as_str()), value))
        })
        .collect()
}

fn context_keys(kind: FactsKind) -> &'static str {
    match kind {
        FactsKind::Request => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget"
        }
        FactsKind::Llm => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, stream, max_tokens, \
             tools, input_tokens, cached_content"
        }
        FactsKind::Http => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, method, path, fields"
        }
        FactsKind::Egress => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, port, addresses, \
             scheme, sni, method, path"
        }
        FactsKind::Tool => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, arguments"
        }
        FactsKind::Propose => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, arguments, \
             tool_kind (the context of docs/local-tools.md is derived from them)"
        }
        FactsKind::Sample => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, max_tokens, \
             include_context, model_hints, system_prompt_bytes, messages"
        }
        FactsKind::Elicit => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, mode, \
             field_names"
        }
        FactsKind::Answer => {
            "route, time, source_ip, tls, client_certificate, findings, session, budget, server, \
             method, locations, arguments, uri"
        }
    }
}

/// Unix seconds or an RFC 3339 timestamp (`2026-11-02T10:00:00Z`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TimeSpec {
    Unix(u64),
    Rfc3339(String),
}

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseOutcome {
    /// The case file.
    pub file: PathBuf,
    /// Line of the case in its file.
    pub line: u64,
    /// The case's `name`.
    pub name: String,
    /// The decision it expected.
    pub expected: Expect,
    /// The decision the policies gave.
    pub actual: Decision,
    /// Policies that failed to evaluate during the case.
    pub errors: Vec<EvaluationFailure>,
    /// Each way the actual decision differs from the expectation; empty when the case passed.
    pub mismatches: Vec<String>,
}

impl CaseOutcome {
    /// The decision matched every expectation.
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Per-case results of `warden policy test`.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Every case, in file and case order.
    pub cases: Vec<CaseOutcome>,
}

impl TestReport {
    /// Number of cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| !c.passed()).count()
    }

    /// Number of cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.len() - self.failed()
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut file: Option<&Path> = None;
        for case in &self.cases {
            if file != Some(case.file.as_path()) {
                file = Some(case.file.as_path());
                writeln!(f, "{}", case.file.display())?;
            }
            if case.passed() {
                writeln!(f, "  ok    {}", case.name)?;
                continue;
            }
            writeln!(
                f,
                "  FAIL  {} ({}:{})",
                case.name,
                case.file.display(),
                case.line
            )?;
            writeln!(f, "        expected: {}", case.expected.label())?;
            writeln!(f, "        actual:   {}", describe(&case.actual))?;
            for m in &case.mismatches {
                writeln!(f, "        - {m}")?;
            }
            for e in &case.errors {
                writeln!(
                    f,
                    "        evaluation error in `{}`: {}",
                    e.policy, e.message
                )?;
            }
        }
        write!(
            f,
            "{} cases: {} passed, {} failed",
            self.cases.len(),
            self.passed(),
            self.failed()
        )
    }
}

/// `allow by [a, b]`, `deny by [x]: reason; reason`, `approval_required by p (approvers: ...)`.
fn describe(d: &Decision) -> String {
    let ids = |p: &[Arc<str>]| p.iter().map(|s| &**s).collect::<Vec<_>>().join(", ");
    match d {
        Decision::Allow { policies } => format!("allow by [{}]", ids(policies)),
        Decision::Deny { reasons, policies } => {
            format!("deny by [{}]: {}", ids(policies), reasons.join("; "))
        }
        Decision::NeedsApproval {
            policy,
            approvers,
            reason,
            ..
        } => format!(
            "approval_required by {policy} (approvers: {}){}",
            approvers.join(", "),
            reason
                .as_ref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
    }
}

/// Loads the policies in `dir` and runs every case in `dir/tests/*.yaml` (and `*.yml`).
pub fn run_tests(dir: &Path) -> Result<TestReport, PolicyTestError> {
    run_tests_with(dir, &[])
}

/// [`run_tests`], with `fragments` added to the schema (the REST connectors' actions).
pub fn run_tests_with(
    dir: &Path,
    fragments: &[super::SchemaFragment],
) -> Result<TestReport, PolicyTestError> {
    let engine = PolicyEngine::load_with(dir, fragments).map_err(PolicyTestError::Policies)?;
    let tests_dir = dir.join("tests");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&tests_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(PolicyTestError::BadTestFiles(vec![TestFileError {
                file: tests_dir,
                position: None,
                message: format!("cannot read the directory: {e}"),
            }]));
        }
    };
    if files.is_empty() {
        return Err(PolicyTestError::NoTests(tests_dir));
    }
    files.sort();
    let mut errors = Vec::new();
    let mut prepared = Vec::new();
    for file in files {
        match read_cases(&engine, &file) {
            Ok(cases) => prepared.extend(cases),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if !errors.is_empty() {
        return Err(PolicyTestError::BadTestFiles(errors));
    }
    let cases = prepared.into_iter().map(|p| run_case(&engine, p)).collect();
    Ok(TestReport { cases })
}

/// A case turned into an [`Action`], ready to run.
struct Prepared {
    file: PathBuf,
    line: u64,
    case: Case,
    action: Action,
}

fn read_cases(engine: &PolicyEngine, file: &Path) -> Result<Vec<Prepared>, Vec<TestFileError>> {
    let err = |position, message| TestFileError {
        file: file.to_path_buf(),
        position,
        message,
    };
    let text =
        std::fs::read_to_string(file).map_err(|e| vec![err(None, format!("cannot read: {e}"))])?;
    let parsed: TestFile = serde_saphyr::from_str(&text).map_err(|e| {
        let position = e.location().map(|l| (l.line(), l.column()));
        let message = e.without_snippet().to_string().replace('\n', " ");
        vec![err(position, strip_position_suffix(&message).to_owned())]
    })?;
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for spanned in parsed.cases {
        let position = (spanned.referenced.line(), spanned.referenced.column());
        let case = spanned.value;
        match to_action(engine, &case) {
            Ok(action) => out.push(Prepared {
                file: file.to_path_buf(),
                line: position.0,
                case,
                action,
            }),
            Err(message) => errors.push(err(
                Some(position),
                format!("case `{}`: {message}", case.name),
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `unknown variant ... at line 6, column 13` → `unknown variant ...` (the position is printed
/// in front already).
fn strip_position_suffix(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i)
            if message[i + 9..]
                .split(", column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            &message[..i]
        }
        _ => message,
    }
}

fn to_action(engine: &PolicyEngine, case: &Case) -> Result<Action, String> {
    let Some(slice) = engine
        .by_name
        .get(case.action.as_str())
        .map(|&i| &engine.slices[i])
    else {
        let mut known: Vec<&str> = engine.slices.iter().map(|s| s.verb.as_str()).collect();
        known.sort_unstable();
        return Err(format!(
            "unknown action `{}`; use one of {}",
            case.action,
            known.join(", ")
        ));
    };
    let verb = slice.verb.clone();
    let acts_on = || {
        format!(
            "{verb} acts on {}: write {}",
            slice.resources.join(" or "),
            resource_forms(slice.resources.iter().map(String::as_str))
        )
    };
    let resource = case
        .resource
        .resource()
        .map_err(|e| format!("{e}; {}", acts_on()))?;
    if !slice.resources.iter().any(|t| t == resource.cedar_type()) {
        return Err(format!(
            "resource is a {}; {}",
            resource.cedar_type(),
            acts_on()
        ));
    }
    let p = &case.principal;
    let opt = |s: &Option<String>| s.as_deref().map(Arc::from);
    let principal = Principal {
        kind: match p.kind {
            KindSpec::Agent => PrincipalKind::Agent,
            KindSpec::User => PrincipalKind::User,
        },
        id: Arc::from(p.id.as_str()),
        issuer: Arc::from(p.issuer.as_deref().unwrap_or(DEFAULT_ISSUER)),
        fleet: opt(&p.fleet),
        owner: opt(&p.owner),
        environment: opt(&p.environment),
        scopes: p.scopes.iter().map(|s| Arc::from(s.as_str())).collect(),
        groups: p.groups.iter().map(|s| Arc::from(s.as_str())).collect(),
        client_certificate: opt(&p.client_certificate),
        expires_at: None,
    };
    let c = &case.context;
    let source_ip: IpAddr = c
        .source_ip
        .as_deref()
        .unwrap_or(DEFAULT_SOURCE_IP)
        .parse()
        .map_err(|_| {
            format!(
                "context.source_ip `{}` is not an IP address",
                c.source_ip.as_deref().unwrap_or_default()
            )
        })?;
    let time = match &c.time {
        None => UNIX_EPOCH + Duration::from_secs(DEFAULT_TIME),
        Some(TimeSpec::Unix(secs)) => UNIX_EPOCH + Duration::from_secs(*secs),
        Some(TimeSpec::Rfc3339(s)) => parse_time(s)?,
    };
    let facts = c.facts(slice.facts, &case.action)?;
    Ok(Action {
        principal: Arc::new(principal),
        verb,
        resource,
        context: ActionContext {
            route: Arc::from(c.route.as_deref().unwrap_or("test")),
            time,
            source_ip,
            tls: c.tls.unwrap_or(true),
            client_certificate: opt(&c.client_certificate),
            findings: Findings(
                c.findings
                    .iter()
                    .map(|d| Finding {
                        detector: Arc::from(d.as_str()),
                        location: "test case".into(),
                    })
                    .collect(),
            ),
            facts,
            session: c.session.as_ref().map(|s| Box::new(s.facts())),
            budget: c.budget.as_ref().map(BudgetSpec::facts),
        },
    })
}

/// The action `warden policy explain` judges, from its arguments: `principal` as a test
/// case's principal (`{ id: ci-bot, fleet: ci }`), `Agent::"ci-bot"`, `User::"alice"` or a bare
/// agent id; `verb` the Cedar action; `resource` as a test case's resource
/// (`{ provider: openai, model: gpt-4o }`) or `Model::"openai/gpt-4o"`; `context` the YAML of a
/// test case's context (the time is now when it names none).
pub fn explain_action(
    engine: &PolicyEngine,
    principal: &str,
    verb: &str,
    resource: &str,
    context: Option<&str>,
) -> Result<Action, String> {
    let principal = match principal.trim() {
        p if p.starts_with('{') => {
            serde_saphyr::from_str::<PrincipalSpec>(p).map_err(|e| format!("--principal: {e}"))?
        }
        p => {
            let (kind, id) = match cedar_reference(p) {
                Some(("Agent", id)) => (KindSpec::Agent, id),
                Some(("User", id)) => (KindSpec::User, id),
                Some((other, _)) => {
                    return Err(format!(
                        "--principal: `{other}` is not a principal type; write Agent::\"id\", \
                         User::\"id\" or {{ id: ci-bot, fleet: ci, owner: alice }}"
                    ));
                }
                None => (KindSpec::Agent, p.to_owned()),
            };
            PrincipalSpec {
                id,
                kind,
                ..PrincipalSpec::default()
            }
        }
    };
    let resource = match resource.trim() {
        r if r.starts_with('{') => {
            serde_saphyr::from_str::<ResourceSpec>(r).map_err(|e| format!("--resource: {e}"))?
        }
        r => resource_from_reference(r)?,
    };
    let context_spec = match context {
        Some(text) => {
            serde_saphyr::from_str::<ContextSpec>(text).map_err(|e| format!("--context: {e}"))?
        }
        None => ContextSpec::default(),
    };
    let timed = context_spec.time.is_some();
    let case = judged_case(principal, verb.to_owned(), resource, context_spec);
    let mut action = to_action(engine, &case)?;
    if !timed {
        action.context.time = SystemTime::now();
    }
    Ok(action)
}

/// The action a decision record's `facts` describe (`policy/facts.rs` writes them), to judge
/// again: `warden policy replay` and `warden policy explain --decision`.
pub fn recorded_action(engine: &PolicyEngine, facts: &serde_json::Value) -> Result<Action, String> {
    #[derive(Deserialize)]
    struct Recorded {
        principal: PrincipalSpec,
        action: String,
        resource: ResourceSpec,
        #[serde(default)]
        context: ContextSpec,
    }
    let recorded = Recorded::deserialize(facts).map_err(|e| format!("facts: {e}"))?;
    let case = judged_case(
        recorded.principal,
        recorded.action,
        recorded.resource,
        recorded.context,
    );
    to_action(engine, &case)
}

/// A case with no expectations: an action to judge (explain, replay).
fn judged_case(
    principal: PrincipalSpec,
    action: String,
    resource: ResourceSpec,
    context: ContextSpec,
) -> Case {
    Case {
        name: "judged".into(),
        principal,
        action,
        resource,
        context,
        expect: Expect::Allow,
        policies: None,
        reasons: None,
        approvers: None,
        approvals: None,
        approval_ttl: None,
    }
}

/// `Type::"id"` (or `Type::id`, as a shell leaves it) as its type and id.
fn cedar_reference(text: &str) -> Option<(&str, String)> {
    let (kind, rest) = text.split_once("::")?;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    match rest.strip_prefix('"') {
        Some(quoted) => Some((kind, quoted.strip_suffix('"')?.replace("\\\"", "\""))),
        // `Agent::alice`: the shell took the quotes away.
        None => Some((kind, rest.to_owned())),
    }
}

/// A resource written as a Cedar reference, in a test case's terms.
fn resource_from_reference(text: &str) -> Result<ResourceSpec, String> {
    let mut spec = ResourceSpec::default();
    let unknown = || {
        format!(
            "--resource `{text}`: write Model::\"openai/gpt-4o\", Provider::\"openai\", \
             Tool::\"github/create_issue\", McpServer::\"github\", Api::\"github\", \
             Operation::\"github/issues.create\", Host::\"pypi.org\", Secret::\"path\", or a \
             test case's resource mapping such as {{ provider: openai, model: gpt-4o }}"
        )
    };
    let (kind, id) = cedar_reference(text).ok_or_else(unknown)?;
    let split = |id: &str| {
        id.split_once('/')
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .ok_or_else(unknown)
    };
    match kind {
        "Model" => {
            let (provider, model) = split(&id)?;
            (spec.provider, spec.model) = (Some(provider), Some(model));
        }
        "Provider" => spec.provider = Some(id),
        "Tool" => match id.split_once('/') {
            Some((server, tool)) => {
                (spec.server, spec.tool) = (Some(server.into()), Some(tool.into()))
            }
            None => spec.tool = Some(id),
        },
        "McpServer" => spec.server = Some(id),
        "Api" => spec.api = Some(id),
        "Operation" => {
            let (api, operation) = split(&id)?;
            (spec.api, spec.operation) = (Some(api), Some(operation));
        }
        "Host" => spec.host = Some(id),
        "Secret" => spec.secret = Some(id),
        _ => return Err(unknown()),
    }
    Ok(spec)
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339(s).map_err(|e| {
        format!(
            "context.time `{s}` is neither unix seconds nor RFC 3339 (2026-11-02T10:00:00Z): {e}"
        )
    })
}

fn run_case(engine: &PolicyEngine, p: Prepared) -> CaseOutcome {
    let verdict = engine.evaluate(&p.action);
    let case = &p.case;
    let actual = &verdict.decision;
    let mut mismatches = Vec::new();
    if actual.label() != case.expect.label() {
        mismatches.push(format!(
            "decision is {}, not {}",
            actual.label(),
            case.expect.label()
        ));
    }
    if let Some(expected) = &case.policies {
        let mut want: Vec<&str> = expected.iter().map(String::as_str).collect();
        let ids = actual.policy_ids();
        let mut got: Vec<&str> = ids.iter().map(|s| &**s).collect();
        want.sort_unstable();
        got.sort_unstable();
        if want != got {
            mismatches.push(format!(
                "determining policies are [{}], expected [{}]",
                got.join(", "),
                want.join(", ")
            ));
        }
    }
    if let Some(expected) = &case.reasons {
        let reasons: Vec<&str> = match actual {
            Decision::Deny { reasons, .. } => reasons.iter().map(String::as_str).collect(),
            Decision::NeedsApproval { reason, .. } => reason.iter().map(String::as_str).collect(),
            Decision::Allow { .. } => Vec::new(),
        };
        for want in expected {
            if !reasons.iter().any(|r| r.contains(want.as_str())) {
                mismatches.push(format!("no reason contains \"{want}\""));
            }
        }
    }
    if let Some(expected) = &case.approvers {
        let got = match actual {
            Decision::NeedsApproval { approvers, .. } => approvers.as_slice(),
            _ => &[],
        };
        if got != expected.as_slice() {
            mismatches.push(format!(
                "approvers are [{}], expected [{}]",
                got.join(", "),
                expected.join(", ")
            ));
        }
    }
    if let Some(expected) = p.case.approvals {
        let got = match actual {
            Decision::NeedsApproval { approvals, .. } => Some(*approvals),
            _ => None,
        };
        if got != Some(expected) {
            mismatches.push(match got {
                Some(n) => format!("{n} approvals required, expected {expected}"),
                None => format!("no approval required, expected {expected} approvals"),
            });
        }
    }
    if let Some(expected) = &p.case.approval_ttl {
        let got = match actual {
            Decision::NeedsApproval { ttl, .. } => Some(*ttl),
            _ => None,
        };
        let want = match expected.trim() {
            "default" => Ok(None),
            text => humantime::parse_duration(text).map(Some),
        };
        match (want, got) {
            (Err(e), _) => mismatches.push(format!(
                "approval_ttl {expected:?} is not a duration ({e}); write e.g. 15m, or default"
            )),
            (Ok(want), Some(got)) if want == got => {}
            (Ok(_), got) => mismatches.push(format!(
                "approval TTL is {}, expected {expected}",
                match got {
                    Some(Some(ttl)) => humantime::format_duration(ttl).to_string(),
                    Some(None) => "default".into(),
                    None => "none (no approval required)".into(),
                }
            )),
        }
    }
    CaseOutcome {
        file: p.file,
        line: p.line,
        name: p.case.name,
        expected: p.case.expect,
        actual: verdict.decision,
        errors: verdict.errors,
        mismatches,
    }
}

#[cfg(test)]
mod tests {
    use super::{cedar_reference, strip_position_suffix};

    #[test]
    fn a_reference_reads_with_or_without_the_quotes_a_shell_removes() {
        assert_eq!(
            cedar_reference(r#"Agent::"alice""#),
            Some(("Agent", "alice".to_owned()))
        );
        assert_eq!(
            cedar_reference("Agent::alice"),
            Some(("Agent", "alice".to_owned()))
        );
        assert_eq!(
            cedar_reference("Model::openai/gpt-4o"),
            Some(("Model", "openai/gpt-4o".to_owned()))
        );
        assert_eq!(cedar_reference("ci-bot"), None);
        assert_eq!(cedar_reference(r#"Agent::"alice"#), None);
    }

    #[test]
    fn strips_the_position_the_yaml_parser_appends() {
        assert_eq!(
            strip_position_suffix("unknown variant `allw` at line 6, column 13"),
            "unknown variant `allw`"
        );
        assert_eq!(
            strip_position_suffix("seen at line one"),
            "seen at line one"
        );
    }
}
