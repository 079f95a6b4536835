//! Shadow mode: a candidate policy set judged beside the enforced one on live traffic. Its
//! decision never applies; where it differs from the enforced decision, the decision record
//! says how (`shadow`) and `warden_shadow_differences_total{policy}` counts it, so a new forbid
//! can run for a week before it is enforced. Promoting is removing `@mode("shadow")` (or moving
//! the candidate directory's files into `policy.dir`) and reloading.

use std::collections::HashSet;
use std::sync::Arc;

use cedar_policy::{PolicyId, PolicySet};

use super::load::Loaded;
use crate::decision::Decision;

/// The policy label of a difference no policy determined on either side (both default
/// decisions cannot differ, so in practice one side's default deny).
const NO_POLICY: &str = "<default>";

/// How the shadow set's decision on an action differs from the enforced one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDifference {
    /// What the shadow set decided.
    pub decision: Decision,
    /// The policy the difference is counted under: the shadow decision's first determining
    /// policy that the enforced decision does not name, else the enforced decision's first
    /// (a policy the shadow set lacks), else `<default>`.
    pub policy: Arc<str>,
    /// The shadow set's version.
    pub version: Arc<str>,
}

impl ShadowDifference {
    /// The difference between `enforced` and `shadow`, if their outcomes differ (allow, deny,
    /// approval required).
    pub(super) fn between(
        enforced: &Decision,
        shadow: Decision,
        version: &Arc<str>,
    ) -> Option<ShadowDifference> {
        if enforced.label() == shadow.label() {
            return None;
        }
        let named = enforced.policy_ids();
        let ours = shadow.policy_ids();
        let policy = ours
            .iter()
            .find(|id| !named.contains(id))
            .or(named.first())
            .or(ours.first())
            .cloned()
            .unwrap_or_else(|| Arc::from(NO_POLICY));
        Some(ShadowDifference {
            decision: shadow,
            policy,
            version: Arc::clone(version),
        })
    }
}

/// Splits a loaded set with `@mode("shadow")` policies into the enforced set (without them)
/// and the candidate (the whole set, every policy enforced); a set without any comes back
/// whole, without a candidate.
pub(super) fn split(loaded: Loaded) -> (Loaded, Option<Loaded>) {
    let shadowed: HashSet<Arc<str>> = loaded
        .meta
        .iter()
        .filter(|m| m.shadow)
        .map(|m| Arc::clone(&m.id))
        .collect();
    if shadowed.is_empty() {
        return (loaded, None);
    }
    let mut set = PolicySet::new();
    let mut failed = None;
    for policy in loaded.set.policies() {
        if !shadowed.contains(<PolicyId as AsRef<str>>::as_ref(policy.id()))
            && let Err(e) = set.add(policy.clone())
        {
            failed = Some(e.to_string());
            break;
        }
    }
    if let Some(e) = failed {
        // Each policy was added once already under the same id: cannot happen.
        tracing::error!(error = %e, "cannot split the shadow policies off");
        return (loaded, None);
    }
    let candidate = Loaded {
        schema: loaded.schema.clone(),
        set: loaded.set.clone(),
        meta: loaded.meta.clone(),
        warnings: Vec::new(),
        tools: loaded.tools.clone(),
        version: loaded.version.clone(),
        signed: loaded.signed,
    };
    let mut enforced = loaded;
    enforced.set = set;
    enforced.meta.retain(|m| !m.shadow);
    (enforced, Some(candidate))
}
