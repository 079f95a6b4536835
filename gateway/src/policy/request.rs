//! Turns an [`Action`] into Cedar's request and entities, from typed values (no JSON, no
//! per-request schema checks), caching each principal's entity.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use dashmap::DashMap;

use super::arguments::{self, ToolArguments};
use super::context_keys::{ContextKeys, Key};
use super::records;
use crate::action::{
    Action, ActionContext, Facts, FieldValue, Principal, PrincipalKind, Resource, Verb,
};

/// Principal entities kept at most; past this the cache starts over.
const PRINCIPAL_CACHE_MAX: usize = 4096;

/// Source addresses whose `ip(...)` expression is kept; past this the cache starts over.
const IP_CACHE_MAX: usize = 4096;

/// Cedar names parsed once per engine: every entity type Warden sends, and the uids of
/// Warden's own actions.
#[derive(Debug)]
pub(crate) struct CedarNames {
    agent: EntityTypeName,
    user: EntityTypeName,
    agent_group: EntityTypeName,
    group: EntityTypeName,
    model: EntityTypeName,
    provider: EntityTypeName,
    tool: EntityTypeName,
    mcp_server: EntityTypeName,
    tool_group: EntityTypeName,
    operation: EntityTypeName,
    api: EntityTypeName,
    host: EntityTypeName,
    secret: EntityTypeName,
    approval: EntityTypeName,
    quarantine: EntityTypeName,
    action: EntityTypeName,
    /// `Action::"<name>"` of each of `Verb::BUILT_IN`, in its order.
    built_in: Vec<EntityUid>,
}

impl CedarNames {
    /// Parses the fixed type names; they are constants, so this cannot fail in practice.
    pub(crate) fn new() -> Result<CedarNames, String> {
        let ty = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        let action = ty("Action")?;
        let built_in = Verb::BUILT_IN
            .iter()
            .map(|verb| {
                EntityUid::from_type_name_and_id(action.clone(), EntityId::new(verb.as_str()))
            })
            .collect();
        Ok(CedarNames {
            agent: ty(PrincipalKind::Agent.cedar_type())?,
            user: ty(PrincipalKind::User.cedar_type())?,
            agent_group: ty("AgentGroup")?,
            group: ty("Group")?,
            model: ty("Model")?,
            provider: ty("Provider")?,
            tool: ty("Tool")?,
            mcp_server: ty("McpServer")?,
            tool_group: ty("ToolGroup")?,
            operation: ty("Operation")?,
            api: ty("Api")?,
            host: ty("Host")?,
            secret: ty("Secret")?,
            approval: ty("Approval")?,
            quarantine: ty("Quarantine")?,
            action,
            built_in,
        })
    }

    /// `Action::"llm:chat"`, `Action::"github:issues.create"`.
    pub(crate) fn action(&self, verb: &Verb) -> EntityUid {
        match verb
            .built_in_index()
            .and_then(|slot| self.built_in.get(slot))
        {
            Some(uid) => uid.clone(),
            None => {
                EntityUid::from_type_name_and_id(self.action.clone(), EntityId::new(verb.as_str()))
            }
        }
    }

    /// `Agent::"<id>"` or `User::"<id>"`.
    pub(crate) fn principal_uid(&self, p: &Principal) -> EntityUid {
        let ty = match p.kind {
            PrincipalKind::Agent => &self.agent,
            PrincipalKind::User => &self.user,
        };
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(&*p.id))
    }

    /// The principal as a Cedar entity: attributes from claims, groups as parents.
    pub(crate) fn principal_entity(&self, p: &Principal) -> Result<Entity, String> {
        let group_type = match p.kind {
            PrincipalKind::Agent => &self.agent_group,
            PrincipalKind::User => &self.group,
        };
        let parents: HashSet<EntityUid> = p.groups.iter().map(|g| uid(group_type, g)).collect();
        let mut attrs = HashMap::with_capacity(6);
        attrs.insert("issuer".to_owned(), string(&p.issuer));
        if p.kind == PrincipalKind::Agent {
            for (key, value) in [
                ("fleet", &p.fleet),
                ("owner", &p.owner),
                ("environment", &p.environment),
                ("client_certificate", &p.client_certificate),
            ] {
                if let Some(v) = value {
                    attrs.insert(key.to_owned(), string(v));
                }
            }
            attrs.insert(
                "scopes".to_owned(),
                RestrictedExpression::new_set(p.scopes.iter().map(|s| string(s))),
            );
        }
        Entity::new(self.principal_uid(p), attrs, parents).map_err(|e| e.to_string())
    }

    /// The resource's uid and entity: its attributes, its parent (a model's provider, a
    /// tool's server or group, an operation's API) and, for an operation, its path
    /// parameters as tags.
    pub(crate) fn resource_entity(&self, r: &Resource) -> Result<(EntityUid, Entity), String> {
        let id = self.resource_uid(r);
        let mut attrs: Vec<(String, RestrictedExpression)> = Vec::new();
        let mut attr = |name: &str, value: &str| attrs.push((name.to_owned(), string(value)));
        let mut parent = None;
        let mut tags = Vec::new();
        match r {
            Resource::Model { provider, name } => {
                attr("name", name);
                attr("provider", provider);
                parent = Some(uid(&self.provider, provider));
            }
            Resource::Tool { server, name } => {
                attr("name", name);
                attr("server", server);
                parent = Some(uid(&self.mcp_server, server));
            }
            Resource::AgentTool { name, group } => {
                attr("name", name);
                if let Some(group) = group {
                    attr("group", group);
                    parent = Some(uid(&self.tool_group, group));
                }
            }
            Resource::Operation { api, name, params } => {
                attr("name", name);
                attr("api", api);
                parent = Some(uid(&self.api, api));
                tags = params
                    .iter()
                    .map(|(key, value)| (key.to_string(), string(value)))
                    .collect();
            }
            Resource::Host { name } => attr("name", name),
            Resource::Secret { path } => attr("path", path),
            Resource::Approval {
                principal,
                action,
                resource,
                owner,
                ..
            } => {
                attr("principal", principal);
                attr("action", action);
                attr("resource", resource);
                if let Some(owner) = owner {
                    attr("owner", owner);
                }
            }
            Resource::Quarantine { kind, name } => {
                attr("kind", kind);
                attr("name", name);
                if *kind == "group" {
                    parent = Some(uid(&self.agent_group, name));
                }
            }
            Resource::Provider { .. } | Resource::McpServer { .. } | Resource::Api { .. } => {}
        }
        let entity =
            Entity::new_with_tags(id.clone(), attrs, parent, tags).map_err(|e| e.to_string())?;
        Ok((id, entity))
    }

    /// `Model::"<provider>/<name>"`, `Tool::"<server>/<name>"`, `Host::"<name>"`, ...
    pub(crate) fn resource_uid(&self, r: &Resource) -> EntityUid {
        let ty = match r {
            Resource::Model { .. } => &self.model,
            Resource::Provider { .. } => &self.provider,
            Resource::Tool { .. } | Resource::AgentTool { .. } => &self.tool,
            Resource::McpServer { .. } => &self.mcp_server,
            Resource::Operation { .. } => &self.operation,
            Resource::Api { .. } => &self.api,
            Resource::Host { .. } => &self.host,
            Resource::Secret { .. } => &self.secret,
            Resource::Approval { .. } => &self.approval,
            Resource::Quarantine { .. } => &self.quarantine,
        };
        match r {
            Resource::Provider { name } | Resource::McpServer { name } | Resource::Api { name } => {
                uid(ty, name)
            }
            Resource::AgentTool { name, .. } | Resource::Host { name } => uid(ty, name),
            Resource::Secret { path } => uid(ty, path),
            Resource::Approval { id, .. } => uid(ty, id),
            _ => uid(ty, &r.cedar_id()),
        }
    }
}

/// `Type::"id"`.
fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

/// A REST operation's field value as Cedar holds it.
fn field(value: &FieldValue) -> RestrictedExpression {
    match value {
        FieldValue::String(s) => string(s),
        FieldValue::Long(n) => RestrictedExpression::new_long(*n),
        FieldValue::Bool(b) => RestrictedExpression::new_bool(*b),
        FieldValue::Strings(all) => RestrictedExpression::new_set(all.iter().map(|s| string(s))),
    }
}

fn long(n: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Time facts derived from the arrival time: unix seconds, UTC hour (0-23), weekday (0=Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeFacts {
    /// Seconds since the unix epoch (0 for times before it).
    pub unix: u64,
    /// Hour of the day, UTC, 0-23.
    pub hour: u64,
    /// Day of the week, UTC, 0 = Monday … 6 = Sunday.
    pub weekday: u64,
}

impl TimeFacts {
    /// The facts for `time`.
    pub fn of(time: SystemTime) -> TimeFacts {
        let unix = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let days = unix / 86_400;
        // 1970-01-01 was a Thursday (weekday 3 when Monday is 0).
        TimeFacts {
            unix,
            hour: (unix / 3600) % 24,
            weekday: (days + 3) % 7,
        }
    }
}

/// `ip("...")` expressions by address. Building one resolves the extension function's name
/// with Cedar's parser (about 9 µs); cloning a cached one costs next to nothing.
#[derive(Debug, Default)]
pub(crate) struct IpCache {
    entries: DashMap<IpAddr, RestrictedExpression>,
}

impl IpCache {
    /// The Cedar `ipaddr` expression for `ip`.
    pub(crate) fn expr(&self, ip: IpAddr) -> RestrictedExpression {
        if let Some(hit) = self.entries.get(&ip) {
            return hit.value().clone();
        }
        let expr = RestrictedExpression::new_ip(ip.to_string());
        if self.entries.len() >= IP_CACHE_MAX {
            self.entries.clear();
        }
        self.entries.insert(ip, expr.clone());
        expr
    }
}

/// The Cedar context for an action (see `policies/schema.cedarschema`): the common facts and
/// those of its kind, with the attributes in `keys` (those the loaded policies read); a tool
/// call's arguments as `known` types them (`Err` when they do not fit).
pub(crate) fn context(
    ctx: &ActionContext,
    ips: &IpCache,
    keys: ContextKeys,
    known: &ToolArguments,
) -> Result<Context, String> {
    let t = TimeFacts::of(ctx.time);
    let mut pairs = Vec::with_capacity(Key::ALL.len());
    let mut add = |key: Key, value: &dyn Fn() -> RestrictedExpression| {
        if keys.contains(key) {
            pairs.push((key.name().to_owned(), value()));
        }
    };
    add(Key::Route, &|| string(&ctx.route));
    add(Key::Time, &|| long(t.unix));
    add(Key::Hour, &|| long(t.hour));
    add(Key::Weekday, &|| long(t.weekday));
    add(Key::SourceIp, &|| ips.expr(ctx.source_ip));
    add(Key::Tls, &|| RestrictedExpression::new_bool(ctx.tls));
    if let Some(certificate) = &ctx.client_certificate {
        add(Key::ClientCertificate, &|| string(certificate));
    }
    add(Key::Findings, &|| {
        RestrictedExpression::new_set(ctx.findings.detectors().map(string))
    });
    match &ctx.facts {
        Facts::Llm(llm) => {
            add(Key::Stream, &|| RestrictedExpression::new_bool(llm.stream));
            if let Some(max) = llm.max_tokens {
                add(Key::MaxTokens, &|| long(max));
            }
            add(Key::Tools, &|| {
                RestrictedExpression::new_set(llm.tools.iter().map(|t| string(t)))
            });
            add(Key::InputTokens, &|| long(llm.input_tokens));
            if llm.cached_content {
                add(Key::CachedContent, &|| RestrictedExpression::new_bool(true));
            }
        }
        Facts::Http(http) => {
            add(Key::Method, &|| string(&http.method));
            add(Key::Path, &|| string(&http.path));
            if let Some(fields) = &http.fields {
                let record = RestrictedExpression::new_record(
                    fields
                        .iter()
                        .map(|(name, value)| (name.to_string(), field(value))),
                )
                .map_err(|e| e.to_string())?;
                add(Key::Fields, &|| record.clone());
            }
        }
        Facts::Egress(egress) => {
            add(Key::Port, &|| long(u64::from(egress.port)));
            add(Key::Addresses, &|| {
                RestrictedExpression::new_set(egress.addresses.iter().map(|ip| ips.expr(*ip)))
            });
            add(Key::Scheme, &|| string(&egress.scheme));
            if let Some(sni) = &egress.sni {
                add(Key::Sni, &|| string(sni));
            }
            if let Some(method) = &egress.method {
                add(Key::Method, &|| string(method));
            }
            if let Some(path) = &egress.path {
                add(Key::Path, &|| string(path));
            }
            if let Some(server) = &egress.server {
                add(Key::Server, &|| string(server));
            }
        }
        Facts::Tool(tool) => {
            if keys.contains(Key::Arguments) {
                pairs.push((
                    Key::Arguments.name().to_owned(),
                    arguments::to_cedar(&tool.arguments, known)?,
                ));
            }
        }
        Facts::Propose(p) => {
            let strings =
                |all: &[String]| RestrictedExpression::new_set(all.iter().map(|s| string(s)));
            let boolean = RestrictedExpression::new_bool;
            add(Key::ArgumentsJson, &|| string(&p.arguments_json));
            if let Some(command) = &p.command {
                add(Key::Command, &|| string(command));
            }
            add(Key::CommandParsed, &|| boolean(p.command_parsed));
            add(Key::Programs, &|| strings(&p.programs));
            add(Key::Subcommands, &|| strings(&p.subcommands));
            add(Key::PipesToShell, &|| boolean(p.pipes_to_shell));
            add(Key::ForcePush, &|| boolean(p.force_push));
            add(Key::RecursiveDelete, &|| boolean(p.recursive_delete));
            add(Key::DeletesOutsideWorkspace, &|| {
                boolean(p.deletes_outside_workspace)
            });
            add(Key::Paths, &|| strings(&p.paths));
            add(Key::OutsideWorkspace, &|| boolean(p.outside_workspace));
            add(Key::WritesOutsideWorkspace, &|| {
                boolean(p.writes_outside_workspace)
            });
            add(Key::UnknownEffectOutsideWorkspace, &|| {
                boolean(p.unknown_effect_outside_workspace)
            });
            add(Key::RunsInlineCode, &|| boolean(p.runs_inline_code));
            add(Key::InlineCodePrograms, &|| {
                strings(&p.inline_code_programs)
            });
            add(Key::Hosts, &|| strings(&p.hosts));
            add(Key::Recipients, &|| strings(&p.recipients));
        }
        Facts::Sample(sample) => {
            add(Key::MaxTokens, &|| long(sample.max_tokens));
            add(Key::IncludeContext, &|| string(&sample.include_context));
            add(Key::ModelHints, &|| {
                RestrictedExpression::new_set(sample.model_hints.iter().map(|h| string(h)))
            });
            add(Key::SystemPromptBytes, &|| long(sample.system_prompt_bytes));
            add(Key::Messages, &|| long(sample.messages));
        }
        Facts::Elicit(elicit) => {
            add(Key::Mode, &|| string(&elicit.mode));
            add(Key::FieldNames, &|| {
                RestrictedExpression::new_set(elicit.field_names.iter().map(|f| string(f)))
            });
        }
        Facts::Answer(answer) => {
            add(Key::Server, &|| string(&answer.server));
            add(Key::Method, &|| string(&answer.method));
            add(Key::Locations, &|| {
                RestrictedExpression::new_set(answer.locations.iter().map(|l| string(l)))
            });
            if let Some(uri) = &answer.uri {
                add(Key::Uri, &|| string(uri));
            }
            if keys.contains(Key::Arguments) {
                // Arguments Warden did not keep cannot be judged: the answer is not passed
                // on a guess (the caller withholds what cannot be judged).
                let arguments = answer.arguments.as_ref().ok_or(
                    "the arguments of the call this answer answers were not kept (a task \
                     created while no policy judged answers, or whose arguments were past \
                     the bound Warden keeps of a task's)",
                )?;
                pairs.push((
                    Key::Arguments.name().to_owned(),
                    arguments::to_cedar(arguments, known)?,
                ));
            }
        }
        Facts::None => {}
    }
    for record in [Key::Session, Key::Budget] {
        if keys.contains(record)
            && let Some(value) = records::to_cedar(record, ctx)
        {
            pairs.push((record.name().to_owned(), value.map_err(|e| e.to_string())?));
        }
    }
    Context::from_pairs(pairs).map_err(|e| e.to_string())
}

/// Resources kept per principal; past this the oldest is dropped.
const RESOURCES_PER_PRINCIPAL: usize = 16;

/// Same principal: the same `Arc` (one verified token), or equal content.
fn same(a: &Arc<Principal>, b: &Arc<Principal>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// A principal and a resource as Cedar sees them, shared by every request between the two:
/// their uids, their entity set, and, per action, what the policies settle before any
/// request context (a function of principal, action and resource alone, of type `J`), on
/// first use.
#[derive(Debug)]
pub(crate) struct Pair<J> {
    pub(crate) principal: EntityUid,
    pub(crate) resource: EntityUid,
    /// The schema's action entities, the principal and the resource.
    pub(crate) entities: Entities,
    /// What is settled before any request context, per one of Warden's own actions (in
    /// `Verb::BUILT_IN` order).
    pub(crate) judged: Vec<OnceLock<J>>,
    /// What is settled for the first connector operation judged on the pair, with its slice:
    /// an `Operation` resource is judged under its own operation's action (and `http:request`,
    /// a built-in), so one slot serves, however many operations a connector declares.
    pub(crate) operation: OnceLock<(usize, J)>,
}

/// One principal's entity set and pairs.
#[derive(Debug)]
struct PrincipalEntry<J> {
    principal: Arc<Principal>,
    /// Action entities + the principal.
    base: Entities,
    /// One pair per resource, most recently added last.
    pairs: Vec<(Resource, Arc<Pair<J>>)>,
}

/// Pairs per principal and resource, shared across requests: a request from a known principal
/// on a known model finds its entities and fixed verdicts ready (one `Arc` clone).
#[derive(Debug)]
pub(crate) struct EntityCache<J> {
    entries: DashMap<Arc<str>, PrincipalEntry<J>>,
}

impl<J> Default for EntityCache<J> {
    fn default() -> Self {
        EntityCache {
            entries: DashMap::new(),
        }
    }
}

impl<J> EntityCache<J> {
    /// The pair for `principal` and `resource` on top of `actions` (the schema's action
    /// entities), with `slices` empty verdict slots: from the cache when seen before, built
    /// and cached otherwise.
    pub(crate) fn pair(
        &self,
        names: &CedarNames,
        actions: &Entities,
        principal: &Arc<Principal>,
        resource: &Resource,
        slices: usize,
    ) -> Result<Arc<Pair<J>>, String> {
        let known_base = match self.entries.get(&principal.id) {
            Some(hit) if same(&hit.principal, principal) => {
                if let Some((_, pair)) = hit.pairs.iter().find(|(r, _)| r == resource) {
                    return Ok(Arc::clone(pair));
                }
                Some(hit.base.clone())
            }
            _ => None,
        };
        let base = match known_base {
            Some(base) => base,
            None => actions
                .clone()
                .add_entities([names.principal_entity(principal)?], None)
                .map_err(|e| e.to_string())?,
        };
        let (resource_uid, resource_entity) = names.resource_entity(resource)?;
        let pair = Arc::new(Pair {
            principal: names.principal_uid(principal),
            resource: resource_uid,
            entities: base
                .clone()
                .add_entities([resource_entity], None)
                .map_err(|e| e.to_string())?,
            judged: (0..slices).map(|_| OnceLock::new()).collect(),
            operation: OnceLock::new(),
        });
        if self.entries.len() >= PRINCIPAL_CACHE_MAX {
            self.entries.clear();
        }
        let mut entry =
            self.entries
                .entry(principal.id.clone())
                .or_insert_with(|| PrincipalEntry {
                    principal: principal.clone(),
                    base: base.clone(),
                    pairs: Vec::new(),
                });
        if !same(&entry.principal, principal) {
            *entry = PrincipalEntry {
                principal: principal.clone(),
                base,
                pairs: Vec::new(),
            };
        }
        if entry.pairs.len() >= RESOURCES_PER_PRINCIPAL {
            entry.pairs.remove(0);
        }
        entry.pairs.push((resource.clone(), Arc::clone(&pair)));
        Ok(pair)
    }
}

/// The principal, action and resource uids and the context for `action`.
pub(crate) fn cedar_parts(
    names: &CedarNames,
    ips: &IpCache,
    keys: ContextKeys,
    action: &Action,
    known: &ToolArguments,
) -> Result<(EntityUid, EntityUid, EntityUid, Context), String> {
    Ok((
        names.principal_uid(&action.principal),
        names.action(&action.verb),
        names.resource_uid(&action.resource),
        context(&action.context, ips, keys, known)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn derives_utc_hour_and_monday_based_weekday() {
        // 2026-11-02T10:00:00Z is a Monday.
        let t = TimeFacts::of(UNIX_EPOCH + Duration::from_secs(1_793_613_600));
        assert_eq!(
            t,
            TimeFacts {
                unix: 1_793_613_600,
                hour: 10,
                weekday: 0
            }
        );
        // 2026-11-08T23:30:00Z is a Sunday.
        let t = TimeFacts::of(
            UNIX_EPOCH + Duration::from_secs(1_793_613_600 + 6 * 86_400 + 13 * 3600 + 1800),
        );
        assert_eq!((t.hour, t.weekday), (23, 6));
    }
}
