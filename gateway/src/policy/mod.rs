//! Decide: Cedar policies judge every action.
//!
//! [`PolicyEngine::load`] reads a policy directory (schema and schema fragments, `*.cedar`
//! files) into an immutable snapshot; [`PolicyEngine::decide`] turns an [`Action`] into a
//! [`Decision`]. Default deny; forbid beats permit; a determining permit with
//! `@approval("required")` asks a human. Tool arguments are typed per tool by schema
//! fragments (`tool_schemas.rs`, written by `from_mcp.rs`) and validated per tool
//! (`validate.rs`).

mod actions;
mod annotations;
mod arguments;
pub mod bundle;
pub mod config;
mod context_keys;
mod error;
pub mod explain;
pub mod facts;
pub mod fleet_floor;
pub mod floor_reset;
mod fragment;
pub mod from_mcp;
mod load;
mod named_models;
mod native;
mod policy_file;
mod records;
pub mod replay;
mod request;
pub mod rollback;
mod schema_files;
mod shadow;
pub mod testing;
mod tool_schemas;
pub mod tools_list;
mod validate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Effect, Entities, EntityUid, EvalResult, Expression,
    Policy, PolicyId, PolicySet, Request, Schema,
};

pub use annotations::{Approvers, PolicyMeta};
pub use error::{PolicyError, PolicyErrorKind, PolicyErrors, Position};
pub use fragment::SchemaFragment;
pub use request::TimeFacts;
pub use schema_files::SCHEMA_FILE;
pub use shadow::ShadowDifference;

use crate::action::{Action, Verb};
use crate::decision::Decision;
use actions::FactsKind;
use arguments::ToolArguments;
use cedar_policy::pst::Clause;
use context_keys::{ContextKeys, Key};
use native::NativeCondition;
use request::{CedarNames, EntityCache, IpCache};
use tool_schemas::ToolTypes;

/// The files of the policy set in `dir` (relative, `schema.cedarschema` included): what its
/// bundle manifest lists ([`bundle::sign`]).
pub fn bundle_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyErrors> {
    load::policy_files(dir).map(|files| load::with_schema(&files))
}

/// A policy that could not be evaluated for a request (it then does not apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationFailure {
    /// The policy id (`@id`).
    pub policy: Arc<str>,
    /// Cedar's message, e.g. a missing optional attribute.
    pub message: String,
}

/// A decision with the evaluation errors met on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What policy says.
    pub decision: Decision,
    /// Policies skipped because they failed to evaluate; worth a log line, never a panic.
    pub errors: Vec<EvaluationFailure>,
}

/// A validated, immutable policy set; cheap to share as `Arc<PolicyEngine>`.
pub struct PolicyEngine {
    schema: Schema,
    /// Metadata by policy id.
    meta: HashMap<Arc<str>, PolicyMeta>,
    warnings: Vec<PolicyError>,
    authorizer: Authorizer,
    names: CedarNames,
    /// The schema's action entities: the base of every request's entity set.
    action_entities: Entities,
    entities: EntityCache<PairJudgement>,
    ips: IpCache,
    /// Per action the schema declares, the policies whose action scope can match it
    /// (evaluation cost grows with the number of policies evaluated; most policies name
    /// their actions).
    slices: Vec<Slice>,
    /// The slice of each of Warden's own actions, in `Verb::BUILT_IN` order.
    built_in: [Option<usize>; Verb::BUILT_IN.len()],
    /// The slice of every action by name: how a connector's operation finds its own.
    by_name: HashMap<Arc<str>, usize>,
    /// The tools whose arguments schema fragments type.
    tools: ToolTypes,
    /// The set's content digest (`sha256:<hex>` of its files' manifest).
    version: Arc<str>,
    /// When its bundle's manifest says it was signed (a signed bundle's only).
    bundle_signed: Option<SystemTime>,
    /// Every enforced policy as loaded, for `explain`.
    set: PolicySet,
    /// The candidate set judged beside this one without deciding: this set with its
    /// `@mode("shadow")` policies enforced, or `policy.shadow_dir`'s.
    shadow: Option<Box<PolicyEngine>>,
    /// Whether a loaded policy reads `context.session`.
    reads_session: bool,
    /// Whether a loaded policy reads `context.addresses` (egress looks a name up before it
    /// is judged only then).
    reads_addresses: bool,
    /// Whether a loaded policy reads `context.budget`.
    reads_budget: bool,
    /// Whether a loaded policy names `mcp:receive_result` in its action scope (servers'
    /// answers are judged only then).
    judges_answers: bool,
    /// The models its policies name (`Model::"openai/gpt-4o"`).
    models: named_models::NamedModels,
}

/// One action's policies, split by whether they read the request's context.
///
/// A policy that reads no context judges only principal, action and resource, so its verdict
/// is computed once per principal and resource and kept with their entities. A policy that
/// reads the context is split in two: its scope (principal, action, resource constraints),
/// also judged once per principal and resource, and its conditions, evaluated on every
/// request where the scope holds, with the scope left out (Cedar would only find it true
/// again). Cedar's answer is the same as for the whole slice: a decision is deny when any
/// forbid holds, allow when a permit holds and no forbid does, and its reasons are the
/// forbids that hold, else the permits; the union of the parts' reasons gives exactly that.
/// Conditions that read only the context are compiled to native code (`native.rs`) and need
/// no Cedar request; the others, and any case where Cedar would raise an error, are
/// evaluated as one Cedar expression each (`eval_expression`), which spares the authorizer's
/// per-request work (rebuilding each policy's condition, partial evaluation, the response's
/// sets); a policy whose conditions cannot be turned into one expression goes through the
/// authorizer instead, with the same answer.
#[derive(Debug)]
struct Slice {
    verb: Verb,
    /// `Action::"<verb>"`.
    uid: EntityUid,
    /// The principal types the schema lets the action apply to.
    principals: Vec<String>,
    /// The resource types the schema lets the action apply to.
    resources: Vec<String>,
    /// What the action's context holds, per the schema.
    facts: FactsKind,
    /// Policies that read nothing from `context`.
    fixed: PolicySet,
    /// Each context-reading policy's scope, as a permit without conditions.
    scopes: PolicySet,
    /// Each context-reading policy's conditions, by policy id.
    conditions: HashMap<PolicyId, Arc<Condition>>,
}

/// What is settled about one principal, action and resource before any request context:
/// the reasons and errors of the policies that read no context, and the conditions of the
/// context-reading policies whose scope holds.
#[derive(Debug, Default)]
pub(crate) struct PairJudgement {
    reasons: Vec<Arc<str>>,
    errors: Vec<EvaluationFailure>,
    /// Evaluated on every request.
    conditions: Vec<Arc<Condition>>,
    /// The context attributes those conditions read: only these are built for Cedar.
    keys: ContextKeys,
    /// What policies know of the resource's arguments (a tool's), when a condition reads them.
    arguments: ToolArguments,
}

/// A context-reading policy's conditions (its `when` clauses and the negated `unless`
/// clauses), judged on every request where its scope holds.
#[derive(Debug)]
struct Condition {
    /// The policy id, as reasons and errors name it.
    id: Arc<str>,
    /// The context attributes the conditions read.
    keys: ContextKeys,
    /// The conditions compiled to native code, when they fit its subset: judged without
    /// building a Cedar request; Cedar is asked only when this cannot settle them.
    native: Option<NativeCondition>,
    check: Check,
}

#[derive(Debug)]
enum Check {
    /// The conjunction of the clauses as one expression: true when the policy holds.
    Expression(Expression),
    /// The policy under an unconstrained scope, judged by the authorizer.
    Policy(PolicySet),
}

impl Condition {
    /// Prepares `policy`'s conditions from `unscoped`, the policy with its scope unconstrained
    /// (or, should that split have failed, the whole policy).
    fn new(policy: &Policy, unscoped: Policy, keys: ContextKeys) -> Result<Condition, String> {
        let clauses = scope_free_clauses(&unscoped);
        let native = clauses.as_deref().and_then(NativeCondition::compile);
        let check = match clauses.as_deref().and_then(conditions_expression) {
            Some(expression) => Check::Expression(expression),
            None => {
                let mut set = PolicySet::new();
                set.add(unscoped).map_err(|e| e.to_string())?;
                Check::Policy(set)
            }
        };
        Ok(Condition {
            id: Arc::from(policy.id().as_ref()),
            keys,
            native,
            check,
        })
    }
}

/// One policy as the slices of the actions it applies to take it, prepared once per load.
struct Prepared {
    policy: Policy,
    /// The policy's action scope.
    actions: ActionConstraint,
    /// The context attributes the policy reads.
    reads: ContextKeys,
    /// For a context-reading policy: its scope, as a permit without conditions, and its
    /// conditions, shared by every slice the policy is in.
    condition: Option<(Policy, Arc<Condition>)>,
}

impl Prepared {
    fn new(policy: &Policy) -> Result<Prepared, String> {
        let reads = ContextKeys::read_by_policy(policy);
        let condition = if reads.is_empty() {
            None
        } else {
            let (scope, unscoped) = split_scope(policy);
            Some((scope, Arc::new(Condition::new(policy, unscoped, reads)?)))
        };
        Ok(Prepared {
            policy: policy.clone(),
            actions: policy.action_constraint(),
            reads,
            condition,
        })
    }
}

/// The `when` and `unless` clauses of a policy whose scope is unconstrained; `None` if the
/// scope constrains anything (its clauses alone would leave that out), if it has no clause,
/// or if Cedar cannot give its syntax tree.
fn scope_free_clauses(unscoped: &Policy) -> Option<Vec<Clause>> {
    use cedar_policy::pst::{ActionConstraint, PrincipalConstraint, ResourceConstraint};
    let pst = unscoped.to_pst().ok()?;
    let body = pst.body();
    let scope_free = matches!(body.principal, PrincipalConstraint::Any)
        && matches!(body.action, ActionConstraint::Any)
        && matches!(body.resource, ResourceConstraint::Any);
    let clauses = body.clauses();
    (scope_free && !clauses.is_empty()).then(|| clauses.clone())
}

/// A scope-free policy's clauses as one Cedar expression (`(w) && !(u)`), printed by Cedar
/// and parsed back: exactly when the policy holds.
fn conditions_expression(clauses: &[Clause]) -> Option<Expression> {
    let text = clauses
        .iter()
        .map(|c| match c {
            Clause::When(e) => format!("({e})"),
            Clause::Unless(e) => format!("!({e})"),
        })
        .collect::<Vec<_>>()
        .join(" && ");
    text.parse().ok()
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policies", &self.meta.len())
            .finish_non_exhaustive()
    }
}

impl PolicyEngine {
    /// Loads `schema.cedarschema`, the schema fragments (other `*.cedarschema`) and every
    /// `*.cedar` under `dir` (recursively, skipping `tests/` and `examples/`), validates
    /// against the schema, returns ALL errors.
    pub fn load(dir: &Path) -> Result<PolicyEngine, PolicyErrors> {
        PolicyEngine::load_with(dir, &[])
    }

    /// [`PolicyEngine::load`], with `fragments` added to the schema (the actions of the REST
    /// connectors the routes use).
    pub fn load_with(
        dir: &Path,
        fragments: &[SchemaFragment],
    ) -> Result<PolicyEngine, PolicyErrors> {
        PolicyEngine::load_trusted(dir, fragments, &bundle::Trust::default())
    }

    /// [`PolicyEngine::load_with`], refusing a directory that is not a bundle signed by a key
    /// of `trust` (when it holds any) listing exactly the files it loads.
    pub fn load_trusted(
        dir: &Path,
        fragments: &[SchemaFragment],
        trust: &bundle::Trust,
    ) -> Result<PolicyEngine, PolicyErrors> {
        PolicyEngine::build(load::load_dir(dir, fragments, trust)?, dir)
    }

    /// The set's version: `sha256:<hex>` over its files (policies and schema) and the
    /// connector actions declared with it.
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// When the set's bundle was signed, as its verified manifest says (`None` when it was
    /// not verified, or signed before manifests said so).
    pub fn bundle_signed(&self) -> Option<SystemTime> {
        self.bundle_signed
    }

    /// The candidate set judged in the shadow of this one, if any.
    pub fn shadow(&self) -> Option<&PolicyEngine> {
        self.shadow.as_deref()
    }

    /// This set with `candidate` (every policy of it enforced, its own `@mode("shadow")` ones
    /// included) judged in its shadow, in place of its own shadow policies.
    pub fn with_shadow(mut self, candidate: PolicyEngine) -> PolicyEngine {
        let full = match candidate.shadow {
            Some(full) => full,
            None => Box::new(candidate),
        };
        self.shadow = Some(full);
        self
    }

    /// Loads `dir/schema.cedarschema` with only the given policy files and schema fragments
    /// (relative to `dir`), e.g. to check `examples/*.cedar` against the schema.
    pub fn load_files(dir: &Path, files: &[PathBuf]) -> Result<PolicyEngine, PolicyErrors> {
        PolicyEngine::load_files_with(dir, files, &[])
    }

    /// [`PolicyEngine::load_files`], with `fragments` added to the schema.
    pub fn load_files_with(
        dir: &Path,
        files: &[PathBuf],
        fragments: &[SchemaFragment],
    ) -> Result<PolicyEngine, PolicyErrors> {
        PolicyEngine::build(load::load_files(dir, files, Vec::new(), fragments)?, dir)
    }

    /// The engine of `loaded`'s enforced policies, with the whole set (its `@mode("shadow")`
    /// policies enforced too) in its shadow when it has any.
    fn build(loaded: load::Loaded, dir: &Path) -> Result<PolicyEngine, PolicyErrors> {
        let (enforced, candidate) = shadow::split(loaded);
        let mut engine = PolicyEngine::build_set(enforced, dir)?;
        if let Some(candidate) = candidate {
            engine.shadow = Some(Box::new(PolicyEngine::build_set(candidate, dir)?));
        }
        Ok(engine)
    }

    fn build_set(loaded: load::Loaded, dir: &Path) -> Result<PolicyEngine, PolicyErrors> {
        let fail = |message: String| {
            PolicyErrors(vec![PolicyError::new(
                &dir.join(SCHEMA_FILE),
                None,
                PolicyErrorKind::Schema(message),
            )])
        };
        let names = CedarNames::new().map_err(fail)?;
        let action_entities = loaded
            .schema
            .action_entities()
            .map_err(|e| fail(e.to_string()))?;
        // Loading checked every declared action already (`load::check_schema_matches_warden`).
        let (declared, undeclarable) = actions::declared(&loaded.schema);
        if let Some(e) = undeclarable.first() {
            return Err(fail(format!("`{}`: {}", e.action, e.message)));
        }
        // What a policy brings to a slice depends on the policy alone: prepared once here and
        // shared by every action it applies to, so loading stays linear in actions plus
        // policies (a connector declares a thousand actions, and a policy on any action
        // applies to each of them).
        let mut prepared = Vec::new();
        for policy in loaded.set.policies() {
            prepared.push(Prepared::new(policy).map_err(fail)?);
        }
        let mut slices = Vec::with_capacity(declared.len());
        let mut read = ContextKeys::default();
        let mut built_in = [None; Verb::BUILT_IN.len()];
        let mut by_name = HashMap::with_capacity(declared.len());
        let mut judges_answers = false;
        for action in declared {
            let uid = &action.uid;
            let mut slice = Slice {
                verb: action.verb,
                uid: action.uid.clone(),
                principals: action.principals,
                resources: action.resources,
                facts: action.facts,
                fixed: PolicySet::new(),
                scopes: PolicySet::new(),
                conditions: HashMap::new(),
            };
            for p in &prepared {
                let applies = match &p.actions {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(a) => a == uid,
                    ActionConstraint::In(list) => list
                        .iter()
                        .any(|a| a == uid || action_entities.is_ancestor_of(a, uid)),
                };
                if !applies {
                    continue;
                }
                // Answers are judged only by the policies written for them: one on every
                // action (a guardrail on requests, an approval rule) does not reach them.
                if slice.verb == Verb::McpReceiveResult {
                    if matches!(p.actions, ActionConstraint::Any) {
                        continue;
                    }
                    judges_answers = true;
                    refuse_approval_of_answers(&loaded.meta, p.policy.id())?;
                }
                read = read.union(p.reads);
                match &p.condition {
                    None => slice
                        .fixed
                        .add(p.policy.clone())
                        .map_err(|e| fail(e.to_string()))?,
                    Some((scope, condition)) => {
                        slice
                            .scopes
                            .add(scope.clone())
                            .map_err(|e| fail(e.to_string()))?;
                        slice
                            .conditions
                            .insert(p.policy.id().clone(), Arc::clone(condition));
                    }
                }
            }
            let index = slices.len();
            if let Some(slot) = slice.verb.built_in_index() {
                built_in[slot] = Some(index);
            }
            by_name.insert(Arc::from(slice.verb.as_str()), index);
            slices.push(slice);
        }
        let models = named_models::NamedModels::of(loaded.set.policies());
        Ok(PolicyEngine {
            schema: loaded.schema,
            meta: loaded.meta.into_iter().map(|m| (m.id.clone(), m)).collect(),
            warnings: loaded.warnings,
            authorizer: Authorizer::new(),
            names,
            action_entities,
            entities: EntityCache::default(),
            ips: IpCache::default(),
            slices,
            built_in,
            by_name,
            tools: loaded.tools,
            version: Arc::from(loaded.version),
            bundle_signed: loaded.signed,
            set: loaded.set,
            shadow: None,
            reads_session: read.contains(Key::Session),
            reads_addresses: read.contains(Key::Addresses),
            reads_budget: read.contains(Key::Budget),
            judges_answers,
            models,
        })
    }

    /// Whether a loaded policy reads `context.session` (session facts are kept only then).
    pub fn reads_session(&self) -> bool {
        self.reads_session
    }

    /// Whether a loaded policy reads `context.addresses`: then an egress destination is
    /// looked up before it is judged; otherwise only once its name could be allowed.
    pub fn reads_addresses(&self) -> bool {
        // A shadow set judged beside this one needs them as much to say what it would decide.
        self.reads_addresses || self.shadow.as_ref().is_some_and(|s| s.reads_addresses)
    }

    /// Whether a loaded policy reads `context.budget` (the remaining budget is computed only
    /// then).
    pub fn reads_budget(&self) -> bool {
        self.reads_budget
    }

    /// Whether a loaded policy names `mcp:receive_result` in its action scope (`action ==`,
    /// or `action in` a list holding it): only then are servers' answers judged, and only by
    /// such policies. A policy on every action (`action` unconstrained) does not reach
    /// answers: it was not written for them. A shadow set that names it has answers judged
    /// too (by this set as well, whose decision alone applies), to say what it would decide.
    pub fn judges_answers(&self) -> bool {
        self.judges_answers || self.shadow.as_ref().is_some_and(|s| s.judges_answers)
    }

    /// Whether a loaded policy (enforced or shadow) names `model` (`Model::"<provider>/<model>"`,
    /// in its scope or a condition): a real model, which a `model` rate rule matching `*`
    /// counts by its name before an upstream has answered it.
    pub fn names_model(&self, model: &str) -> bool {
        self.models.contains(model) || self.shadow.as_ref().is_some_and(|s| s.names_model(model))
    }

    /// Number of loaded policies.
    pub fn policy_count(&self) -> usize {
        self.meta.len()
    }

    /// Validator warnings (impossible or suspicious policies); the set loaded regardless.
    pub fn warnings(&self) -> &[PolicyError] {
        &self.warnings
    }

    /// The loaded policy whose id is `id`.
    pub fn policy(&self, id: &str) -> Option<&PolicyMeta> {
        self.meta.get(id)
    }

    /// The loaded policies in load order.
    pub fn policies(&self) -> Vec<&PolicyMeta> {
        let mut all: Vec<&PolicyMeta> = self.meta.values().collect();
        all.sort_by_key(|m| m.order);
        all
    }

    /// The schema the policies were validated against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Whether one of `policies` (the permits that allowed an egress action) carries
    /// `@egress("internal")`: the egress may reach addresses that are not globally reachable.
    pub fn allows_internal(&self, policies: &[Arc<str>]) -> bool {
        policies
            .iter()
            .any(|id| self.meta.get(id).is_some_and(|m| m.egress_internal))
    }

    /// Whether a policy is annotated `@on_match("redact")`: a request's content may be
    /// redacted, so its length may change.
    pub fn redacts(&self) -> bool {
        self.meta.values().any(|m| m.on_match_redact.is_some())
    }

    /// When `decision` is a deny determined only by `@on_match("redact")` forbids: the string
    /// literals their conditions compare (the detectors they test); `None` for any other
    /// decision, a default deny, or a deny any other forbid took part in (deny wins).
    pub fn redaction(&self, decision: &Decision) -> Option<Vec<&str>> {
        let Decision::Deny { policies, .. } = decision else {
            return None;
        };
        if policies.is_empty() {
            return None;
        }
        let mut literals = Vec::new();
        for id in policies {
            let redact = self.meta.get(id)?.on_match_redact.as_ref()?;
            literals.extend(redact.iter().map(String::as_str));
        }
        Some(literals)
    }

    /// Judges `action` by the shadow set, if there is one, and says how its decision differs
    /// from `enforced` (this set's decision on it); `None` when there is no shadow set or it
    /// decides the same.
    pub fn shadow_difference(
        &self,
        action: &Action,
        enforced: &Decision,
    ) -> Option<ShadowDifference> {
        let shadow = self.shadow.as_deref()?;
        ShadowDifference::between(enforced, shadow.decide(action), &shadow.version)
    }

    /// Judges `action`; evaluation errors are logged (policy id and message) and skipped.
    pub fn decide(&self, action: &Action) -> Decision {
        let verdict = self.evaluate(action);
        for e in &verdict.errors {
            tracing::warn!(policy = %e.policy, error = %e.message, "policy evaluation failed; policy skipped");
        }
        verdict.decision
    }

    /// Whether some request could make `action` allowed, whatever its context (a tool call's
    /// arguments, the time, ...): no forbid that reads no context holds for its principal and
    /// resource, and a permit does, or the scope of a permit that reads the context does. For
    /// listing what a caller may use (`tools/list`) without the arguments of a call; the call
    /// itself is judged by [`PolicyEngine::decide`].
    pub fn may_allow(&self, action: &Action) -> bool {
        let Ok(index) = self.slice_of(action) else {
            return false;
        };
        let slice = &self.slices[index];
        let Ok(pair) = self.entities.pair(
            &self.names,
            &self.action_entities,
            &action.principal,
            &action.resource,
            Verb::BUILT_IN.len(),
        ) else {
            return false;
        };
        let judge = || self.judge_pair(slice, &pair, &slice.uid, &action.resource);
        let unslotted;
        let settled = match slice.verb.built_in_index() {
            Some(slot) => match pair.judged.get(slot) {
                Some(slot) => slot.get_or_init(judge),
                None => return false,
            },
            None => match pair.operation.get_or_init(|| (index, judge())) {
                (first, settled) if *first == index => settled,
                _ => {
                    unslotted = judge();
                    &unslotted
                }
            },
        };
        let effect = |id: &str| self.meta.get(id).map(|m| m.effect);
        if settled
            .reasons
            .iter()
            .any(|id| effect(id) == Some(Effect::Forbid))
        {
            return false;
        }
        settled
            .reasons
            .iter()
            .chain(settled.conditions.iter().map(|c| &c.id))
            .any(|id| effect(id) == Some(Effect::Permit))
    }

    /// Judges `action` and returns the evaluation errors alongside the decision.
    pub fn evaluate(&self, action: &Action) -> Verdict {
        let slice = match self.slice_of(action) {
            Ok(slice) => slice,
            Err(decision) => {
                return Verdict {
                    decision,
                    errors: Vec::new(),
                };
            }
        };
        match self.judge(slice, action) {
            Ok((reasons, errors)) => {
                let mut determining: Vec<&PolicyMeta> =
                    reasons.iter().filter_map(|id| self.meta.get(id)).collect();
                determining.sort_by_key(|m| m.order);
                determining.dedup_by_key(|m| m.order);
                Verdict {
                    decision: self.decision(action, &determining),
                    errors,
                }
            }
            Err(message) => Verdict {
                decision: Decision::Deny {
                    reasons: vec![format!("request could not be judged: {message}")],
                    policies: Vec::new(),
                },
                errors: vec![EvaluationFailure {
                    policy: Arc::from("<request>"),
                    message,
                }],
            },
        }
    }

    /// The index of the slice of `verb`, if the schema declares it.
    fn slice_index(&self, verb: &Verb) -> Option<usize> {
        match verb.built_in_index() {
            Some(slot) => self.built_in[slot],
            None => self.by_name.get(verb.as_str()).copied(),
        }
    }

    /// The slice of the action the schema declares for `action`, or a default deny when the
    /// schema does not declare it or does not let it apply to the principal's or the
    /// resource's type: a policy with an unconstrained `principal` must not reach, say, a
    /// `User` calling a model.
    fn slice_of(&self, action: &Action) -> Result<usize, Decision> {
        let index = self.slice_index(&action.verb);
        let principal_type = action.principal.kind.cedar_type();
        let resource_type = action.resource.cedar_type();
        let why = match index.map(|i| (i, &self.slices[i])) {
            Some((i, slice))
                if slice.principals.iter().any(|t| t == principal_type)
                    && slice.resources.iter().any(|t| t == resource_type) =>
            {
                return Ok(i);
            }
            Some((_, slice)) => format!(
                "the schema allows {} for {} on {} only",
                action.verb,
                slice.principals.join(", "),
                slice.resources.join(", ")
            ),
            None => format!("the schema does not declare {}", action.verb),
        };
        Err(Decision::Deny {
            reasons: vec![format!("{} ({why})", default_deny_reason(action))],
            policies: Vec::new(),
        })
    }

    /// The policies Cedar gives as reasons for `action` (both halves of its slice), and the
    /// evaluation errors; `Err` when the request itself cannot be built.
    fn judge(
        &self,
        index: usize,
        action: &Action,
    ) -> Result<(Vec<Arc<str>>, Vec<EvaluationFailure>), String> {
        let slice = &self.slices[index];
        let facts = FactsKind::of(&action.context.facts);
        if facts != slice.facts {
            return Err(format!(
                "{} was built with the facts of {}, but the schema gives it {}",
                action.verb,
                facts.context_type(),
                slice.facts.context_type()
            ));
        }
        let pair = self.entities.pair(
            &self.names,
            &self.action_entities,
            &action.principal,
            &action.resource,
            Verb::BUILT_IN.len(),
        )?;
        let verb = &slice.uid;
        let unslotted;
        let settled = match slice.verb.built_in_index() {
            Some(slot) => match pair.judged.get(slot) {
                Some(slot) => {
                    slot.get_or_init(|| self.judge_pair(slice, &pair, verb, &action.resource))
                }
                None => return Err("the entity cache has no verdict slot for this action".into()),
            },
            None => {
                let (first, settled) = pair
                    .operation
                    .get_or_init(|| (index, self.judge_pair(slice, &pair, verb, &action.resource)));
                if *first == index {
                    settled
                } else {
                    unslotted = self.judge_pair(slice, &pair, verb, &action.resource);
                    &unslotted
                }
            }
        };
        let mut reasons = settled.reasons.clone();
        let mut errors = settled.errors.clone();
        // Built only for a condition the native form cannot settle.
        let mut cedar_request: Option<Request> = None;
        for condition in &settled.conditions {
            if let Some(native) = &condition.native {
                match native.holds(&action.context) {
                    Ok(true) => {
                        reasons.push(Arc::clone(&condition.id));
                        continue;
                    }
                    Ok(false) => continue,
                    // Cedar raises an error here: let it say which.
                    Err(native::AskCedar) => {}
                }
            }
            let request = match &mut cedar_request {
                Some(request) => request,
                None => cedar_request.insert(self.cedar_request(settled, &pair, verb, action)?),
            };
            self.check(
                condition,
                request,
                &pair.entities,
                &mut reasons,
                &mut errors,
            );
        }
        Ok((reasons, errors))
    }

    /// The Cedar request for `action` on `pair`, with the context attributes the conditions
    /// `settled` keeps read.
    fn cedar_request(
        &self,
        settled: &PairJudgement,
        pair: &request::Pair<PairJudgement>,
        verb: &EntityUid,
        action: &Action,
    ) -> Result<Request, String> {
        let context =
            request::context(&action.context, &self.ips, settled.keys, &settled.arguments)?;
        Request::new(
            pair.principal.clone(),
            verb.clone(),
            pair.resource.clone(),
            context,
            None,
        )
        .map_err(|e| e.to_string())
    }

    /// Judges one policy's conditions: its id joins `reasons` when they hold (every holding
    /// policy is a reason; [`PolicyEngine::decision`] lets forbids win), `errors` when they
    /// cannot be evaluated (the policy then does not apply, as in Cedar).
    fn check(
        &self,
        condition: &Condition,
        request: &Request,
        entities: &Entities,
        reasons: &mut Vec<Arc<str>>,
        errors: &mut Vec<EvaluationFailure>,
    ) {
        let expression = match &condition.check {
            Check::Expression(expression) => expression,
            Check::Policy(set) => {
                let response = self.authorizer.is_authorized(request, set, entities);
                self.collect(&response, reasons, errors);
                return;
            }
        };
        let failure = |message: String| EvaluationFailure {
            policy: Arc::clone(&condition.id),
            message: format!(
                "error while evaluating policy `{}`: {message}",
                condition.id
            ),
        };
        match cedar_policy::eval_expression(request, entities, expression) {
            Ok(EvalResult::Bool(true)) => reasons.push(Arc::clone(&condition.id)),
            Ok(EvalResult::Bool(false)) => {}
            Ok(other) => errors.push(failure(format!(
                "its conditions evaluate to {other}, not to a boolean"
            ))),
            Err(e) => errors.push(failure(e.to_string())),
        }
    }

    /// What `slice` settles for `pair` and `verb` before any context: the fixed policies'
    /// verdict, and which context-reading policies' scopes hold.
    fn judge_pair(
        &self,
        slice: &Slice,
        pair: &request::Pair<PairJudgement>,
        verb: &EntityUid,
        resource: &crate::action::Resource,
    ) -> PairJudgement {
        let mut judged = PairJudgement::default();
        if slice.fixed.is_empty() && slice.scopes.is_empty() {
            return judged;
        }
        let request = match Request::new(
            pair.principal.clone(),
            verb.clone(),
            pair.resource.clone(),
            Context::empty(),
            None,
        ) {
            Ok(request) => request,
            Err(e) => {
                judged.errors.push(EvaluationFailure {
                    policy: Arc::from("<request>"),
                    message: e.to_string(),
                });
                return judged;
            }
        };
        if !slice.fixed.is_empty() {
            let response = self
                .authorizer
                .is_authorized(&request, &slice.fixed, &pair.entities);
            self.collect(&response, &mut judged.reasons, &mut judged.errors);
        }
        if !slice.scopes.is_empty() {
            // Every scope is a permit: the reasons are all the scopes that hold.
            let response = self
                .authorizer
                .is_authorized(&request, &slice.scopes, &pair.entities);
            for id in response.diagnostics().reason() {
                if let Some(condition) = slice.conditions.get(id) {
                    judged.keys = judged.keys.union(condition.keys);
                    judged.conditions.push(Arc::clone(condition));
                }
            }
        }
        if judged.keys.contains(Key::Arguments) {
            judged.arguments = self.tools.arguments_of(resource);
        }
        judged
    }

    /// Appends a Cedar response's reasons (as the loaded policies' ids) and errors.
    fn collect(
        &self,
        response: &cedar_policy::Response,
        reasons: &mut Vec<Arc<str>>,
        errors: &mut Vec<EvaluationFailure>,
    ) {
        reasons.extend(response.diagnostics().reason().filter_map(|id| {
            self.meta
                .get_key_value(<cedar_policy::PolicyId as AsRef<str>>::as_ref(id))
                .map(|(key, _)| Arc::clone(key))
        }));
        errors.extend(response.diagnostics().errors().map(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
            EvaluationFailure {
                policy: Arc::from(e.policy_id().as_ref()),
                message: e.to_string(),
            }
        }));
    }

    fn decision(&self, action: &Action, determining: &[&PolicyMeta]) -> Decision {
        let forbids: Vec<&&PolicyMeta> = determining
            .iter()
            .filter(|m| m.effect == Effect::Forbid)
            .collect();
        // An answer already exists: what a policy can say of it is only that it is withheld.
        // No permit is needed to pass it, and none can hold it for approval.
        if forbids.is_empty() && action.verb == Verb::McpReceiveResult {
            return Decision::Allow {
                policies: determining.iter().map(|m| m.id.clone()).collect(),
            };
        }
        if !forbids.is_empty() {
            return Decision::Deny {
                reasons: forbids
                    .iter()
                    .map(|m| match &m.reason {
                        Some(r) => r.clone(),
                        None => format!("denied by policy {}", m.id),
                    })
                    .collect(),
                policies: forbids.iter().map(|m| m.id.clone()).collect(),
            };
        }
        if determining.is_empty() {
            return Decision::Deny {
                reasons: vec![default_deny_reason(action)],
                policies: Vec::new(),
            };
        }
        // Of several approval permits, the one asking for the most approvers decides (the
        // first in load order among equals): a two-person rule is never undercut by a looser
        // permit that matches too.
        if let Some((m, rule)) = determining
            .iter()
            .filter_map(|m| m.approval.as_ref().map(|rule| (m, rule)))
            .rev()
            .max_by_key(|(_, rule)| rule.approvals)
        {
            return Decision::NeedsApproval {
                policy: m.id.clone(),
                approvers: rule.approvers.clone(),
                reason: m.reason.clone(),
                ttl: rule.ttl,
                approvals: rule.approvals,
            };
        }
        Decision::Allow {
            policies: determining.iter().map(|m| m.id.clone()).collect(),
        }
    }
}

/// `Err` when the policy `id` (of `meta`), which names `mcp:receive_result`, carries
/// `@approval`: an answer cannot wait for a human (the server's request is over and the agent
/// waits for it), and permits do not decide answers.
fn refuse_approval_of_answers(meta: &[PolicyMeta], id: &PolicyId) -> Result<(), PolicyErrors> {
    let Some(m) = meta.iter().find(|m| *m.id == *AsRef::<str>::as_ref(id)) else {
        return Ok(());
    };
    if m.approval.is_none() {
        return Ok(());
    }
    Err(PolicyErrors(vec![PolicyError::new(
        &m.file,
        Some(m.position),
        PolicyErrorKind::Validation(format!(
            "policy {} asks for @approval on mcp:receive_result; a server's answer cannot wait \
             for an approval (only a forbid withholds it): remove @approval, or write a forbid",
            m.id
        )),
    )]))
}

/// A context-reading policy as its scope alone (a permit without conditions) and its
/// conditions alone (scope unconstrained), both under the policy's id. Should the policy not
/// convert, its scope is taken to hold always and its conditions are the whole policy: the
/// same answer, without the saving.
fn split_scope(policy: &Policy) -> (Policy, Policy) {
    let id = policy.id().clone();
    let split = || -> Option<(Policy, Policy)> {
        let est = policy.to_json().ok()?;
        let mut scope = est.clone();
        scope["effect"] = serde_json::json!("permit");
        scope["conditions"] = serde_json::json!([]);
        let mut conditions = est;
        for var in ["principal", "action", "resource"] {
            conditions[var] = serde_json::json!({ "op": "All" });
        }
        Some((
            Policy::from_json(Some(id.clone()), scope).ok()?,
            Policy::from_json(Some(id.clone()), conditions).ok()?,
        ))
    };
    split().unwrap_or_else(|| {
        let always = Policy::from_json(
            Some(id.clone()),
            serde_json::json!({
                "effect": "permit",
                "principal": { "op": "All" },
                "action": { "op": "All" },
                "resource": { "op": "All" },
                "conditions": []
            }),
        );
        match always {
            Ok(always) => (always, policy.clone()),
            // A policy with no conditions always converts; unreachable in practice.
            Err(_) => (policy.clone(), policy.clone()),
        }
    })
}

/// `no policy permits llm:chat on Model::"openai/gpt-4o" for Agent::"ci-bot"`.
fn default_deny_reason(action: &Action) -> String {
    format!(
        "no policy permits {} on {}::\"{}\" for {}::\"{}\"",
        action.verb,
        action.resource.cedar_type(),
        action.resource.cedar_id(),
        action.principal.kind.cedar_type(),
        action.principal.id,
    )
}

#[cfg(test)]
mod argument_tests;
#[cfg(test)]
pub(crate) mod tests;
