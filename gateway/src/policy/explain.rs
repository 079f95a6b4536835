//! Explain: why an action is decided as it is. The decision, the policies that determined it
//! with their `@reason`, and for every other policy why it did not: its scope (principal,
//! action or resource) does not match, its conditions are false, they failed to evaluate, or
//! it holds but another policy won (a permit under a forbid). Each policy is judged alone,
//! with the whole context, so the answer does not depend on the engine's evaluation shortcuts.

use std::fmt;
use std::sync::Arc;

use cedar_policy::{Authorizer, Effect, Entities, Policy, PolicyId, PolicySet, Request};

use super::PolicyEngine;
use super::context_keys::ContextKeys;
use super::request;
use crate::action::Action;
use crate::decision::Decision;

/// Why a decision is what it is.
#[derive(Debug)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// The policy set's version.
    pub version: Arc<str>,
    /// Every loaded policy, in load order, with what it did.
    pub policies: Vec<PolicyExplanation>,
    /// Why no policy could be judged at all (the request could not be built), if so.
    pub unjudged: Option<String>,
}

/// What one policy did for the action.
#[derive(Debug)]
pub struct PolicyExplanation {
    /// `@id`.
    pub id: Arc<str>,
    /// Permit or forbid.
    pub effect: Effect,
    /// `@reason`.
    pub reason: Option<String>,
    /// `file:line:column`.
    pub location: String,
    /// What it did.
    pub outcome: Outcome,
}

/// What a policy did for an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It is one of the policies that determined the decision.
    Determining,
    /// Scope and conditions hold, but the decision is another policy's (a forbid beats a
    /// permit; of several approval permits, the one asking for the most approvers decides).
    Overridden,
    /// Its scope does not match: which of `principal`, `action`, `resource`.
    ScopeMismatch(Vec<&'static str>),
    /// Its scope matches and its `when`/`unless` conditions are false.
    ConditionFalse,
    /// Its conditions could not be evaluated (Cedar then skips it).
    Error(String),
}

impl Outcome {
    /// Short label for the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Determining => "determining",
            Outcome::Overridden => "overridden",
            Outcome::ScopeMismatch(_) => "scope does not match",
            Outcome::ConditionFalse => "condition false",
            Outcome::Error(_) => "error",
        }
    }
}

impl PolicyEngine {
    /// Explains the decision on `action`.
    pub fn explain(&self, action: &Action) -> Explanation {
        let decision = self.evaluate(action).decision;
        let determining = decision.policy_ids();
        let judged = self.parts(action);
        let authorizer = Authorizer::new();
        let policies = self
            .policies()
            .into_iter()
            .map(|meta| {
                let outcome = match (&judged, self.set.policy(&PolicyId::new(&*meta.id))) {
                    _ if determining.contains(&meta.id) => Outcome::Determining,
                    (Err(e), _) => Outcome::Error(e.clone()),
                    (Ok(_), None) => Outcome::Error("the policy is not in the loaded set".into()),
                    (Ok((request, entities)), Some(policy)) => {
                        judge_alone(&authorizer, policy, request, entities)
                    }
                };
                PolicyExplanation {
                    id: Arc::clone(&meta.id),
                    effect: meta.effect,
                    reason: meta.reason.clone(),
                    location: meta.location(),
                    outcome,
                }
            })
            .collect();
        Explanation {
            decision,
            version: Arc::clone(&self.version),
            policies,
            unjudged: judged.err(),
        }
    }

    /// The Cedar request (with every context attribute) and entities for `action`.
    fn parts(&self, action: &Action) -> Result<(Request, Entities), String> {
        let known = self.tools.arguments_of(&action.resource);
        let (principal, verb, resource, context) =
            request::cedar_parts(&self.names, &self.ips, ContextKeys::all(), action, &known)?;
        let request =
            Request::new(principal, verb, resource, context, None).map_err(|e| e.to_string())?;
        let (_, resource_entity) = self.names.resource_entity(&action.resource)?;
        let entities = self
            .action_entities
            .clone()
            .add_entities(
                [
                    self.names.principal_entity(&action.principal)?,
                    resource_entity,
                ],
                None,
            )
            .map_err(|e| e.to_string())?;
        Ok((request, entities))
    }
}

/// `policy` judged alone: holds (then overridden, since it did not determine), scope
/// mismatch, condition false or error.
fn judge_alone(
    authorizer: &Authorizer,
    policy: &Policy,
    request: &Request,
    entities: &Entities,
) -> Outcome {
    let mut alone = PolicySet::new();
    let as_permit = scope_only(policy, ["principal", "action", "resource"]);
    let Some(scope) = as_permit else {
        return Outcome::Error("Cedar cannot give the policy's scope".into());
    };
    if !holds(authorizer, scope, request, entities) {
        let mismatched = ["principal", "action", "resource"]
            .into_iter()
            .filter(|part| {
                scope_only(policy, [*part])
                    .is_some_and(|one| !holds(authorizer, one, request, entities))
            })
            .collect();
        return Outcome::ScopeMismatch(mismatched);
    }
    // Judged as a permit: a forbid's "holds" then reads the same way.
    let Some(whole) = as_permit_policy(policy) else {
        return Outcome::Error("Cedar cannot give the policy's conditions".into());
    };
    if alone.add(whole).is_err() {
        return Outcome::Error("the policy cannot be judged alone".into());
    }
    let response = authorizer.is_authorized(request, &alone, entities);
    if let Some(e) = response.diagnostics().errors().next() {
        return Outcome::Error(e.to_string());
    }
    if response.diagnostics().reason().next().is_some() {
        Outcome::Overridden
    } else {
        Outcome::ConditionFalse
    }
}

/// Whether the permit `policy` holds for `request`.
fn holds(authorizer: &Authorizer, policy: Policy, request: &Request, entities: &Entities) -> bool {
    let mut set = PolicySet::new();
    set.add(policy).is_ok()
        && authorizer
            .is_authorized(request, &set, entities)
            .diagnostics()
            .reason()
            .next()
            .is_some()
}

/// `policy` as a permit without conditions, keeping only the scope constraints in `keep`.
fn scope_only<const N: usize>(policy: &Policy, keep: [&str; N]) -> Option<Policy> {
    let mut est = policy.to_json().ok()?;
    est["effect"] = serde_json::json!("permit");
    est["conditions"] = serde_json::json!([]);
    for var in ["principal", "action", "resource"] {
        if !keep.contains(&var) {
            est[var] = serde_json::json!({ "op": "All" });
        }
    }
    Policy::from_json(Some(policy.id().clone()), est).ok()
}

/// `policy` as a permit, scope and conditions kept.
fn as_permit_policy(policy: &Policy) -> Option<Policy> {
    let mut est = policy.to_json().ok()?;
    est["effect"] = serde_json::json!("permit");
    Policy::from_json(Some(policy.id().clone()), est).ok()
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "decision: {}", self.decision.label())?;
        for reason in self.decision.reasons() {
            writeln!(f, "  reason: {reason}")?;
        }
        writeln!(f, "policy set: {}", self.version)?;
        if let Some(why) = &self.unjudged {
            writeln!(f, "the request could not be judged: {why}")?;
        }
        let effect = |e: Effect| match e {
            Effect::Permit => "permit",
            Effect::Forbid => "forbid",
        };
        let line = |f: &mut fmt::Formatter<'_>, p: &PolicyExplanation| -> fmt::Result {
            write!(f, "  {} ({}, {})", p.id, effect(p.effect), p.location)?;
            match &p.outcome {
                Outcome::ScopeMismatch(parts) if !parts.is_empty() => {
                    write!(f, ": {} does not match", parts.join(", "))?;
                }
                Outcome::ScopeMismatch(_) => write!(f, ": its scope does not match")?,
                Outcome::ConditionFalse => write!(f, ": its condition is false")?,
                Outcome::Overridden => write!(
                    f,
                    ": it holds, but {} decides",
                    if self.decision.label() == "deny" {
                        "a forbid"
                    } else {
                        "another policy"
                    }
                )?,
                Outcome::Error(e) => write!(f, ": it could not be evaluated: {e}")?,
                Outcome::Determining => {}
            }
            if let Some(reason) = &p.reason {
                write!(f, "\n      @reason: {reason}")?;
            }
            writeln!(f)
        };
        writeln!(f, "determined by:")?;
        let determining: Vec<_> = self
            .policies
            .iter()
            .filter(|p| p.outcome == Outcome::Determining)
            .collect();
        if determining.is_empty() {
            writeln!(f, "  no policy (default deny: nothing permits it)")?;
        }
        for p in determining {
            line(f, p)?;
        }
        writeln!(f, "did not apply:")?;
        for p in self
            .policies
            .iter()
            .filter(|p| p.outcome != Outcome::Determining)
        {
            line(f, p)?;
        }
        Ok(())
    }
}
