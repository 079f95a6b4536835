//! The words every stage shares: who asks ([`Principal`]), to do what ([`Verb`]), on what
//! ([`Resource`]), in which circumstances ([`ActionContext`]). Interpret builds an [`Action`],
//! decide judges it, record writes it down.

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
    /// Issuer that vouched for this principal (`iss` claim, or `warden`).
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
    /// When the credential that proved this identity stops being valid (unix seconds).
    pub expires_at: Option<u64>,
}

impl Principal {
    /// The principal used when agent authentication is switched off.
    pub fn anonymous() -> Self {
        Principal {
            kind: PrincipalKind::Agent,
            id: Arc::from("anonymous"),
            issuer: Arc::from("none"),
            fleet: None,
            owner: None,
            environment: None,
            scopes: Vec::new(),
            groups: Vec::new(),
            expires_at: None,
        }
    }
}

/// What a principal wants to do: the Cedar action id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    /// A chat / completion / messages / generateContent call.
    LlmChat,
    /// An embeddings call.
    LlmEmbed,
    /// Listing or describing models.
    LlmModels,
}

impl Verb {
    /// The Cedar action entity id, e.g. `llm:chat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::LlmChat => "llm:chat",
            Verb::LlmEmbed => "llm:embed",
            Verb::LlmModels => "llm:models",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The thing acted upon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    /// A model offered by a provider: Cedar `Model::"<provider>/<name>"` in `Provider::"<provider>"`.
    Model { provider: Arc<str>, name: String },
    /// A provider as a whole (e.g. listing its models): Cedar `Provider::"<name>"`.
    Provider { name: Arc<str> },
}

impl Resource {
    /// The Cedar entity type name.
    pub fn cedar_type(&self) -> &'static str {
        match self {
            Resource::Model { .. } => "Model",
            Resource::Provider { .. } => "Provider",
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
        match self {
            Resource::Model { provider, name } => {
                let mut id = String::with_capacity(provider.len() + 1 + name.len());
                id.push_str(provider);
                id.push('/');
                id.push_str(name);
                id
            }
            Resource::Provider { name } => name.to_string(),
        }
    }
}

/// Facts about the request that policies may use (Cedar `context`).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionContext {
    /// Name of the route that matched.
    pub route: Arc<str>,
    /// The response is requested as a stream.
    pub stream: bool,
    /// Output token limit the request asks for, if any.
    pub max_tokens: Option<u64>,
    /// Names of the tools the request declares to the model.
    pub tools: Vec<String>,
    /// Estimated input tokens (prompt, system, tool definitions).
    pub input_tokens: u64,
    /// When the request arrived.
    pub time: SystemTime,
    /// Address of the direct peer.
    pub source_ip: IpAddr,
    /// The agent connected over TLS.
    pub tls: bool,
}

/// One judgeable request: who, what, on what, in which context.
#[derive(Debug, Clone)]
pub struct Action {
    pub principal: Arc<Principal>,
    pub verb: Verb,
    pub resource: Resource,
    pub context: ActionContext,
}
