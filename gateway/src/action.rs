//! The words every stage shares: who asks ([`Principal`]), to do what ([`Verb`]), on what
//! ([`Resource`]), in which circumstances ([`ActionContext`]). Interpret builds an [`Action`],
//! inspect adds its findings, decide judges it, record writes it down.
//!
//! These types carry the whole Cedar model of `policies/schema.cedarschema`: LLM calls, MCP
//! tool calls, REST operations, egress, tool calls a model proposes, secrets and approvals,
//! whether or not a protocol produces each of them yet.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

/// Whether a principal is a machine agent or a human (approver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    /// An AI agent: Cedar entity type `Agent`.
    Agent,
    /// A human: Cedar entity type `User`.
    User,
}

impl PrincipalKind {
    /// The kind as audit records name it: `agent` or `user`.
    pub fn audit_kind(self) -> &'static str {
        match self {
            PrincipalKind::Agent => "agent",
            PrincipalKind::User => "user",
        }
    }

    /// The Cedar entity type name.
    pub fn cedar_type(self) -> &'static str {
        match self {
            PrincipalKind::Agent => "Agent",
            PrincipalKind::User => "User",
        }
    }
}

/// An authenticated caller with the attributes policies see. Built once per verified token and
/// shared (`Arc`) by every request that presents the same token until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Agent or user.
    pub kind: PrincipalKind,
    /// Stable identifier: the Cedar entity id (`Agent::"<id>"`).
    pub id: Arc<str>,
    /// Issuer that vouched for this principal (`iss` claim, `warden`, or `mtls`).
    pub issuer: Arc<str>,
    /// Fleet the agent belongs to.
    pub fleet: Option<Arc<str>>,
    /// Human or team that owns the agent.
    pub owner: Option<Arc<str>>,
    /// Deployment environment (`prod`, `staging`, ...).
    pub environment: Option<Arc<str>>,
    /// OAuth-style scopes granted to the principal.
    pub scopes: Vec<Arc<str>>,
    /// Groups: Cedar parents (`AgentGroup` for agents, `Group` for users).
    pub groups: Vec<Arc<str>>,
    /// The identity of the verified client certificate the request came with, when
    /// `identity.client_certificate` makes it a principal attribute (Cedar
    /// `principal.client_certificate`).
    pub client_certificate: Option<Arc<str>>,
    /// When the credential that proved this identity stops being valid (unix seconds).
    pub expires_at: Option<u64>,
}

impl Principal {
    /// The principal used when agent authentication is switched off.
    pub fn anonymous() -> Self {
        Principal {
            kind: PrincipalKind::Agent,
            id: Arc::from(ANONYMOUS),
            issuer: Arc::from(NO_ISSUER),
            fleet: None,
            owner: None,
            environment: None,
            scopes: Vec::new(),
            groups: Vec::new(),
            client_certificate: None,
            expires_at: None,
        }
    }

    /// Whether this is the principal of a request that proved no identity.
    pub fn is_anonymous(&self) -> bool {
        &*self.id == ANONYMOUS && &*self.issuer == NO_ISSUER
    }
}

/// The anonymous principal's id, and its issuer (no issuer's tokens name it: issuers are URLs).
const ANONYMOUS: &str = "anonymous";
const NO_ISSUER: &str = "none";

/// What a principal wants to do: the Cedar action id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verb {
    /// A chat / completion / messages / generateContent call: `llm:chat`.
    LlmChat,
    /// An embeddings call: `llm:embed`.
    LlmEmbed,
    /// Listing a provider's models or describing one: `llm:models`.
    LlmModels,
    /// MCP `tools/list`: `mcp:list_tools`.
    McpListTools,
    /// MCP `tools/call`: `mcp:call_tool`.
    McpCallTool,
    /// MCP `resources/read`: `mcp:read_resource`.
    McpReadResource,
    /// MCP `prompts/get`: `mcp:get_prompt`.
    McpGetPrompt,
    /// MCP `completion/complete`: `mcp:complete`.
    McpComplete,
    /// A server's `sampling/createMessage` to the agent (its model generates for the server):
    /// `mcp:sample`.
    McpSample,
    /// A server's `elicitation/create` to the agent (its user is asked): `mcp:elicit`.
    McpElicit,
    /// A server's `roots/list` to the agent (its filesystem roots): `mcp:list_roots`.
    McpListRoots,
    /// What a server answers a `tools/call`, `prompts/get`, `resources/read` or
    /// `tasks/result`, judged before the agent gets it: `mcp:receive_result`.
    McpReceiveResult,
    /// A REST call that no finer operation names: `http:request`.
    HttpRequest,
    /// A REST connector's operation, named by the connector (`github:issues.create`).
    Operation(Arc<str>),
    /// Opening a connection through the egress proxy: `egress:connect`.
    EgressConnect,
    /// One plain-HTTP request through the egress proxy: `egress:request`.
    EgressRequest,
    /// A tool call the model proposes for the agent to run itself: `tool:propose`.
    ToolPropose,
    /// Using a secret from the secret store: `secret:use`.
    SecretUse,
    /// A human deciding a pending approval: `approval:decide`.
    ApprovalDecide,
    /// An operator quarantining an agent or a group through the admin API: `admin:quarantine`.
    AdminQuarantine,
    /// An operator releasing a quarantine through the admin API: `admin:release`.
    AdminRelease,
    /// An operator listing the quarantines through the admin API: `admin:list`.
    AdminList,
    /// An operator revoking Warden agent tokens (one by its id, or every one of an agent)
    /// through the admin API: `admin:revoke`.
    AdminRevoke,
}

impl Verb {
    /// Every action Warden itself defines (connector operations come from connector files).
    pub const BUILT_IN: [Verb; 22] = [
        Verb::LlmChat,
        Verb::LlmEmbed,
        Verb::LlmModels,
        Verb::McpListTools,
        Verb::McpCallTool,
        Verb::McpReadResource,
        Verb::McpGetPrompt,
        Verb::McpComplete,
        Verb::HttpRequest,
        Verb::EgressConnect,
        Verb::EgressRequest,
        Verb::ToolPropose,
        Verb::SecretUse,
        Verb::ApprovalDecide,
        Verb::AdminQuarantine,
        Verb::AdminRelease,
        Verb::AdminList,
        Verb::McpSample,
        Verb::McpElicit,
        Verb::McpListRoots,
        Verb::AdminRevoke,
        Verb::McpReceiveResult,
    ];

    /// The place of one of Warden's own actions in [`Verb::BUILT_IN`]; `None` for a
    /// connector's operation.
    pub fn built_in_index(&self) -> Option<usize> {
        Some(match self {
            Verb::LlmChat => 0,
            Verb::LlmEmbed => 1,
            Verb::LlmModels => 2,
            Verb::McpListTools => 3,
            Verb::McpCallTool => 4,
            Verb::McpReadResource => 5,
            Verb::McpGetPrompt => 6,
            Verb::McpComplete => 7,
            Verb::HttpRequest => 8,
            Verb::EgressConnect => 9,
            Verb::EgressRequest => 10,
            Verb::ToolPropose => 11,
            Verb::SecretUse => 12,
            Verb::ApprovalDecide => 13,
            Verb::AdminQuarantine => 14,
            Verb::AdminRelease => 15,
            Verb::AdminList => 16,
            Verb::McpSample => 17,
            Verb::McpElicit => 18,
            Verb::McpListRoots => 19,
            Verb::AdminRevoke => 20,
            Verb::McpReceiveResult => 21,
            Verb::Operation(_) => return None,
        })
    }

    /// The Cedar action entity id, e.g. `llm:chat`.
    pub fn as_str(&self) -> &str {
        match self {
            Verb::Operation(name) => name,
            other => other.static_name().unwrap_or_default(),
        }
    }

    /// The action id as audit records keep it: borrowed for Warden's own actions, owned for a
    /// connector's.
    pub fn label(&self) -> std::borrow::Cow<'static, str> {
        match self.static_name() {
            Some(name) => std::borrow::Cow::Borrowed(name),
            None => std::borrow::Cow::Owned(self.as_str().to_owned()),
        }
    }

    /// The id of one of Warden's own actions; `None` for a connector's operation.
    fn static_name(&self) -> Option<&'static str> {
        Some(match self {
            Verb::LlmChat => "llm:chat",
            Verb::LlmEmbed => "llm:embed",
            Verb::LlmModels => "llm:models",
            Verb::McpListTools => "mcp:list_tools",
            Verb::McpCallTool => "mcp:call_tool",
            Verb::McpReadResource => "mcp:read_resource",
            Verb::McpGetPrompt => "mcp:get_prompt",
            Verb::McpComplete => "mcp:complete",
            Verb::McpSample => "mcp:sample",
            Verb::McpElicit => "mcp:elicit",
            Verb::McpListRoots => "mcp:list_roots",
            Verb::McpReceiveResult => "mcp:receive_result",
            Verb::HttpRequest => "http:request",
            Verb::Operation(_) => return None,
            Verb::EgressConnect => "egress:connect",
            Verb::EgressRequest => "egress:request",
            Verb::ToolPropose => "tool:propose",
            Verb::SecretUse => "secret:use",
            Verb::ApprovalDecide => "approval:decide",
            Verb::AdminQuarantine => "admin:quarantine",
            Verb::AdminRelease => "admin:release",
            Verb::AdminList => "admin:list",
            Verb::AdminRevoke => "admin:revoke",
        })
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thing acted upon, as a Cedar entity (type, id, attributes, parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A model offered by a provider: `Model::"<provider>/<name>"` in `Provider::"<provider>"`.
    Model { provider: Arc<str>, name: String },
    /// A provider as a whole (e.g. listing its models): `Provider::"<name>"`.
    Provider { name: Arc<str> },
    /// A tool of an MCP server: `Tool::"<server>/<name>"` in `McpServer::"<server>"`.
    Tool { server: Arc<str>, name: String },
    /// An MCP server as a whole (e.g. listing its tools): `McpServer::"<name>"`.
    McpServer { name: Arc<str> },
    /// A tool the agent runs itself (`exec`, `write`, `browser`, ...), proposed by a model:
    /// `Tool::"<name>"`, in `ToolGroup::"<group>"` when the tool catalogue names one.
    AgentTool {
        name: String,
        group: Option<Arc<str>>,
    },
    /// A REST operation: `Operation::"<api>/<name>"` in `Api::"<api>"`, with the path
    /// parameters it was called with (`owner`, `repo`, ...).
    Operation {
        api: Arc<str>,
        name: Arc<str>,
        params: Vec<(Arc<str>, String)>,
    },
    /// A REST API as a whole: `Api::"<name>"`.
    Api { name: Arc<str> },
    /// A destination host of egress traffic: `Host::"<name>"` (a DNS name or an address).
    Host { name: String },
    /// A secret in the secret store: `Secret::"<path>"`.
    Secret { path: String },
    /// A pending approval: `Approval::"<id>"`, naming what it would allow.
    Approval {
        id: Arc<str>,
        /// The principal whose action waits (`Agent::"ci-bot"`).
        principal: Arc<str>,
        /// The action that waits (`llm:chat`).
        action: Arc<str>,
        /// The resource it waits on (`Model::"openai/gpt-4o"`).
        resource: Arc<str>,
        /// Who owns the agent whose action waits (its `owner` attribute), when it has one.
        owner: Option<Arc<str>>,
    },
    /// What an operator's admin action is about: an agent's quarantine
    /// (`Quarantine::"agent/<name>"`), a group's (`Quarantine::"group/<name>"`, in
    /// `AgentGroup::"<name>"`), or every quarantine (`Quarantine::"*"`, kind `all`).
    Quarantine {
        /// `agent`, `group` or `all`.
        kind: &'static str,
        /// The agent's or the group's name; `*` for all.
        name: Arc<str>,
    },
}

impl Resource {
    /// The Cedar entity type name.
    pub fn cedar_type(&self) -> &'static str {
        match self {
            Resource::Model { .. } => "Model",
            Resource::Provider { .. } => "Provider",
            Resource::Tool { .. } | Resource::AgentTool { .. } => "Tool",
            Resource::McpServer { .. } => "McpServer",
            Resource::Operation { .. } => "Operation",
            Resource::Api { .. } => "Api",
            Resource::Host { .. } => "Host",
            Resource::Secret { .. } => "Secret",
            Resource::Approval { .. } => "Approval",
            Resource::Quarantine { .. } => "Quarantine",
        }
    }

    /// The Cedar entity as records and logs show it: `Model::"openai/gpt-4o"`.
    pub fn cedar_ref(&self) -> String {
        use std::fmt::Write as _;
        let id = self.cedar_id();
        let ty = self.cedar_type();
        let mut text = String::with_capacity(ty.len() + id.len() + 8);
        let _ = write!(text, "{ty}::{id:?}");
        text
    }

    /// The Cedar entity id (`openai/gpt-4o` for a model, `openai` for a provider).
    pub fn cedar_id(&self) -> String {
        fn joined(namespace: &str, name: &str) -> String {
            let mut id = String::with_capacity(namespace.len() + 1 + name.len());
            id.push_str(namespace);
            id.push('/');
            id.push_str(name);
            id
        }
        match self {
            Resource::Model { provider, name } => joined(provider, name),
            Resource::Tool { server, name } => joined(server, name),
            Resource::Operation { api, name, .. } => joined(api, name),
            Resource::Provider { name } | Resource::McpServer { name } | Resource::Api { name } => {
                name.to_string()
            }
            Resource::AgentTool { name, .. } | Resource::Host { name } => name.clone(),
            Resource::Secret { path } => path.clone(),
            Resource::Approval { id, .. } => id.to_string(),
            Resource::Quarantine { kind: "all", .. } => "*".to_owned(),
            Resource::Quarantine { kind, name } => joined(kind, name),
        }
    }
}

/// Facts about the request that policies may use (Cedar `context`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionContext {
    /// Name of the route that matched.
    pub route: Arc<str>,
    /// When the request arrived.
    pub time: SystemTime,
    /// Address of the direct peer.
    pub source_ip: IpAddr,
    /// The agent connected over TLS.
    pub tls: bool,
    /// The identity of the verified client certificate of the connection, if any.
    pub client_certificate: Option<Arc<str>>,
    /// What the inspect stage found in the content that leaves.
    pub findings: Findings,
    /// What the request itself says, by kind of action.
    pub facts: Facts,
    /// What the agent's session did before (`context.session`), when a policy reads it.
    pub session: Option<Box<SessionFacts>>,
    /// What the agent has left of its budgets (`context.budget`), when a policy reads it and
    /// budgets are set.
    pub budget: Option<BudgetFacts>,
}

/// What an agent has left of its token and cost budgets (`context.budget`; `fleet/budget`):
/// each figure from the tightest budget that bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetFacts {
    /// Tokens left (`i64::MAX` when no budget counts tokens).
    pub tokens_left: u64,
    /// Millionths of a US dollar left (`i64::MAX` when no budget counts dollars).
    pub cost_left_micro_usd: u64,
    /// The most used budget's spend, in percent of it (past 100 when overspent).
    pub used_ratio_percent: u64,
    /// A budget is spent.
    pub exceeded: bool,
}

/// What an agent's session did before an action (`context.session`; `fleet/session`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionFacts {
    /// Actions remembered in the session before this one.
    pub actions: u64,
    /// Of them, with this action's verb.
    pub action_count: u64,
    /// Of them, on this action's resource.
    pub resource_count: u64,
    /// The tags of the resources the session used (`private`, `external`, ...).
    pub labels: Vec<Arc<str>>,
    /// The tags of this action's resource.
    pub resource_tags: Vec<Arc<str>>,
    /// The detectors that matched in what MCP servers answered the agent before
    /// (`context.session.answer_findings`), this session's and its agent's trail's.
    pub answer_findings: Vec<Arc<str>>,
    /// The session (a hash of the agent and the session's name), to remember the action in.
    pub key: u64,
    /// The agent's trail (a hash of the agent alone): the labels it earned in any of its
    /// sessions within the window, so that a new session name does not wash them off.
    pub trail_key: u64,
    /// A hash of the action's verb.
    pub verb_key: u64,
    /// A hash of the action's resource.
    pub resource_key: u64,
    /// The agent named the session (else it is a time window).
    pub named: bool,
}

impl SessionFacts {
    /// The tag of resources holding private data (`context.session.read_private`).
    pub const PRIVATE: &str = "private";
    /// The tag of destinations outside (`context.session.sent_external`).
    pub const EXTERNAL: &str = "external";

    /// Whether the session used a resource tagged `tag`.
    pub fn labelled(&self, tag: &str) -> bool {
        self.labels.iter().any(|l| &**l == tag)
    }
}

/// What a request says that policies may judge, by kind of action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Facts {
    /// An LLM call (`llm:*`).
    Llm(LlmFacts),
    /// A REST call (`http:request`, connector operations).
    Http(HttpFacts),
    /// Egress through the forward proxy (`egress:*`).
    Egress(EgressFacts),
    /// A tool call and the like (`mcp:call_tool`, `mcp:get_prompt`, `mcp:complete`): the
    /// arguments the agent sent.
    Tool(ToolFacts),
    /// A tool call a model proposes (`tool:propose`): what its arguments ask the agent to do.
    Propose(Box<ProposeFacts>),
    /// A server asks the agent's model to generate (`mcp:sample`).
    Sample(SampleFacts),
    /// A server asks the agent's user for information (`mcp:elicit`).
    Elicit(ElicitFacts),
    /// A server's answer to the agent (`mcp:receive_result`): what the detectors found in it
    /// is the context's `findings`.
    Answer(AnswerFacts),
    /// Nothing beyond the common facts.
    #[default]
    None,
}

impl Facts {
    /// The facts of an LLM call, if this is one.
    pub fn llm(&self) -> Option<&LlmFacts> {
        match self {
            Facts::Llm(facts) => Some(facts),
            _ => None,
        }
    }

    /// The facts of an LLM call, to change, if this is one.
    pub fn llm_mut(&mut self) -> Option<&mut LlmFacts> {
        match self {
            Facts::Llm(facts) => Some(facts),
            _ => None,
        }
    }
}

/// What an LLM request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LlmFacts {
    /// The response is requested as a stream.
    pub stream: bool,
    /// Output token limit the request asks for, if any (the larger, when it sets several).
    pub max_tokens: Option<u64>,
    /// Names of the tools the request declares to the model.
    pub tools: Vec<String>,
    /// Estimated input tokens (prompt, system, tool definitions).
    pub input_tokens: u64,
    /// The request names content cached at the provider (Gemini's `cachedContent`), which
    /// Warden never saw; only on a route that allows it (`allow_cached_content`).
    pub cached_content: bool,
}

/// What a REST request asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpFacts {
    /// Request method (`GET`, `POST`, ...).
    pub method: String,
    /// Request path as sent upstream, without the query.
    pub path: String,
    /// The values of the operation's fields the request gives (`context.fields`); `None` when
    /// the operation declares no fields (its context then has no `fields`).
    pub fields: Option<Vec<(Arc<str>, FieldValue)>>,
    /// The top-level keys of a JSON or form body that no declared body field reads, when the
    /// operation declares body fields (its body is then read whole): approvers are told they
    /// are there, though no policy judges them. Not part of the Cedar context.
    pub undeclared: Vec<String>,
}

/// The value of one field of a REST operation, typed as its connector declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldValue {
    String(String),
    Long(i64),
    Bool(bool),
    Strings(Vec<String>),
}

/// Where an egress connection or request goes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EgressFacts {
    /// Destination port.
    pub port: u16,
    /// The addresses the host resolved to (the one dialled among them).
    pub addresses: Vec<IpAddr>,
    /// `https`, `http`, or the protocol a tunnel carries when known.
    pub scheme: String,
    /// The TLS server name the client sent, when the tunnel carries TLS.
    pub sni: Option<String>,
    /// A plain-HTTP request's method (`egress:request` only).
    pub method: Option<String>,
    /// A plain-HTTP request's path, without the query (`egress:request` only).
    pub path: Option<String>,
    /// The local MCP server whose sandboxed process made the connection
    /// (`sandbox.network: egress`), by its configured name; `None` for the agent's own.
    pub server: Option<String>,
}

/// What a tool call (or prompt, or completion) asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolFacts {
    /// The arguments as the agent sent them (a JSON object), for `context.arguments`.
    pub arguments: Arc<serde_json::Value>,
}

/// What a server answers the agent (`mcp:receive_result`), besides the findings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnswerFacts {
    /// The server that answered (its configured name).
    pub server: String,
    /// The request it answers: `tools/call`, `prompts/get`, `resources/read` or
    /// `tasks/result`.
    pub method: String,
    /// Where in the answer the detectors matched (`result.content[0].text`), each once.
    pub locations: Vec<String>,
    /// The arguments of the request it answers (`context.arguments`), as they were judged: a
    /// `tools/call`'s or `prompts/get`'s, a task's creating `tools/call`'s; an empty object
    /// for a `resources/read`. `None` when Warden did not keep them (a task created while no
    /// policy judged answers, or whose arguments were past `MAX_TASK_ARGUMENTS`): a policy
    /// that reads them cannot judge the answer.
    pub arguments: Option<Arc<serde_json::Value>>,
    /// The URI a `resources/read` read, as its server was sent it (`context.uri`).
    pub uri: Option<String>,
}

/// What a server's `sampling/createMessage` asks of the agent's model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SampleFacts {
    /// The output token limit it asks for (`maxTokens`).
    pub max_tokens: u64,
    /// Which MCP context the agent is asked to include (`includeContext`): `none`,
    /// `thisServer` or `allServers`.
    pub include_context: String,
    /// The model names it hints at (`modelPreferences.hints[].name`).
    pub model_hints: Vec<String>,
    /// The size of its system prompt in bytes (0: none).
    pub system_prompt_bytes: u64,
    /// How many messages it sends.
    pub messages: u64,
}

/// What a server's `elicitation/create` asks of the agent's user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElicitFacts {
    /// `form` (fields the user fills in) or `url` (a page the user is sent to).
    pub mode: String,
    /// The names of the fields a form asks for (`requestedSchema.properties`).
    pub field_names: Vec<String>,
}

/// What a tool call a model proposes asks the agent to do, read from its arguments
/// (`propose/facts.rs`; Cedar `ProposeContext`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposeFacts {
    /// The arguments as compact JSON text.
    pub arguments_json: String,
    /// A shell tool's command line, as proposed.
    pub command: Option<String>,
    /// The command line could be read (always true for other tools).
    pub command_parsed: bool,
    /// Every program the command runs (file names), through wrappers and substitutions.
    pub programs: Vec<String>,
    /// `program first-operand` of every command (`git push`, `npm install`).
    pub subcommands: Vec<String>,
    /// A download's output reaches an interpreter (`curl … | sh`, `sh -c "$(curl …)"`).
    pub pipes_to_shell: bool,
    /// `git push` that overwrites remote history.
    pub force_push: bool,
    /// A recursive delete (`rm -r`, `find -delete`).
    pub recursive_delete: bool,
    /// A delete whose target lies outside the workspace (or cannot be known).
    pub deletes_outside_workspace: bool,
    /// Absolute, lexically normalised paths the call names.
    pub paths: Vec<String>,
    /// A path lies outside the workspace (or cannot be known).
    pub outside_workspace: bool,
    /// A path the call writes, edits or deletes lies outside the workspace.
    pub writes_outside_workspace: bool,
    /// A program whose effect on its arguments Warden does not read (neither one it knows
    /// writes nor one it knows only reads) names a path outside the workspace, or runs in a
    /// directory outside it.
    pub unknown_effect_outside_workspace: bool,
    /// An interpreter runs a program given on the line (`python3 -c CODE`, `node -e CODE`,
    /// `python3 - <<EOF`) or read from a pipe (`… | sh`): code Warden does not judge.
    pub runs_inline_code: bool,
    /// The interpreters that run such code (`python3`, `node`, `sh`).
    pub inline_code_programs: Vec<String>,
    /// Hosts of the URLs the call names.
    pub hosts: Vec<String>,
    /// Who a message tool sends to.
    pub recipients: Vec<String>,
}

/// What the inspect stage found in one request's outgoing content.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Findings(pub Vec<Finding>);

/// One finding: which detector matched, and where. Never the matched content itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The detector that matched (`aws_access_key`, `canary`, `lookalike_identifier`, ...):
    /// what policies test with `context.findings.contains(...)`.
    pub detector: Arc<str>,
    /// Where in the request it matched (`messages[2].content`, `model`).
    pub location: String,
}

impl Findings {
    /// No findings.
    pub fn none() -> Self {
        Findings(Vec::new())
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The detectors that matched, each once, in the order first found.
    pub fn detectors(&self) -> impl Iterator<Item = &str> {
        let mut seen: Vec<&str> = Vec::with_capacity(self.0.len());
        self.0.iter().filter_map(move |f| {
            let d = &*f.detector;
            (!seen.contains(&d)).then(|| {
                seen.push(d);
                d
            })
        })
    }
}

/// One judgeable request: who, what, on what, in which context.
#[derive(Debug, Clone)]
pub struct Action {
    pub principal: Arc<Principal>,
    pub verb: Verb,
    pub resource: Resource,
    pub context: ActionContext,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_name_their_cedar_entities() {
        let cases = [
            (
                Resource::Model {
                    provider: "openai".into(),
                    name: "gpt-4o".into(),
                },
                r#"Model::"openai/gpt-4o""#,
            ),
            (
                Resource::Tool {
                    server: "github".into(),
                    name: "create_issue".into(),
                },
                r#"Tool::"github/create_issue""#,
            ),
            (
                Resource::AgentTool {
                    name: "exec".into(),
                    group: Some("shell".into()),
                },
                r#"Tool::"exec""#,
            ),
            (
                Resource::Operation {
                    api: "github".into(),
                    name: "issues.create".into(),
                    params: vec![("owner".into(), "acme".into())],
                },
                r#"Operation::"github/issues.create""#,
            ),
            (
                Resource::Host {
                    name: "pypi.org".into(),
                },
                r#"Host::"pypi.org""#,
            ),
            (
                Resource::Secret {
                    path: "secret/agents/ci/github".into(),
                },
                r#"Secret::"secret/agents/ci/github""#,
            ),
            (
                Resource::Quarantine {
                    kind: "group",
                    name: "red-team".into(),
                },
                r#"Quarantine::"group/red-team""#,
            ),
            (
                Resource::Quarantine {
                    kind: "all",
                    name: "*".into(),
                },
                r#"Quarantine::"*""#,
            ),
        ];
        for (resource, expected) in cases {
            assert_eq!(resource.cedar_ref(), expected);
        }
    }

    #[test]
    fn built_in_verbs_are_distinct_cedar_actions() {
        let mut names: Vec<&str> = Verb::BUILT_IN.iter().map(Verb::as_str).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Verb::BUILT_IN.len(), "{names:?}");
        assert_eq!(
            Verb::Operation("github:issues.create".into()).as_str(),
            "github:issues.create"
        );
    }

    #[test]
    fn built_in_indexes_follow_the_built_in_list() {
        for (i, verb) in Verb::BUILT_IN.iter().enumerate() {
            assert_eq!(verb.built_in_index(), Some(i), "{verb}");
        }
        assert_eq!(Verb::Operation("github:x".into()).built_in_index(), None);
    }

    #[test]
    fn findings_name_each_detector_once() {
        let finding = |d: &str, at: &str| Finding {
            detector: d.into(),
            location: at.into(),
        };
        let findings = Findings(vec![
            finding("aws_access_key", "messages[0].content"),
            finding("canary", "messages[1].content"),
            finding("aws_access_key", "messages[2].content"),
        ]);
        assert_eq!(
            findings.detectors().collect::<Vec<_>>(),
            ["aws_access_key", "canary"]
        );
    }
}
