//! `warden policy replay`: recorded decisions judged again by a candidate policy set, from the
//! facts their records carry (`policy/facts.rs`), and what would change, grouped by kind of
//! change, policy and agent.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::PolicyEngine;
use super::testing::recorded_action;
use crate::decision::Decision;

/// Examples kept per group.
const EXAMPLES: usize = 3;

/// How a decision changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    /// `allow-to-deny`: allowed (or approval required), now denied.
    AllowToDeny,
    /// `deny-to-allow`: denied, now allowed.
    DenyToAllow,
    /// `approval-added`: allowed or denied, now held for approval.
    ApprovalAdded,
    /// `approval-removed`: held for approval, now allowed without.
    ApprovalRemoved,
}

impl Change {
    /// Every change, by its `--fail-on` name.
    pub const ALL: [Change; 4] = [
        Change::AllowToDeny,
        Change::DenyToAllow,
        Change::ApprovalAdded,
        Change::ApprovalRemoved,
    ];

    /// The name `--fail-on` takes.
    pub fn name(self) -> &'static str {
        match self {
            Change::AllowToDeny => "allow-to-deny",
            Change::DenyToAllow => "deny-to-allow",
            Change::ApprovalAdded => "approval-added",
            Change::ApprovalRemoved => "approval-removed",
        }
    }

    fn between(recorded: &str, now: &str) -> Option<Change> {
        match (recorded, now) {
            (a, b) if a == b => None,
            (_, "deny") => Some(Change::AllowToDeny),
            ("deny", "allow") => Some(Change::DenyToAllow),
            (_, "approval_required") => Some(Change::ApprovalAdded),
            ("approval_required", "allow") => Some(Change::ApprovalRemoved),
            _ => None,
        }
    }
}

/// Changes of one kind, by one policy, for one agent.
#[derive(Debug, Default)]
pub struct Group {
    /// How many decisions.
    pub count: usize,
    /// Request ids (decision ids where a record has none) of the first few.
    pub examples: Vec<String>,
}

/// What replay found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Decision records judged again.
    pub replayed: usize,
    /// Decision records that could not be: why, how many.
    pub skipped: BTreeMap<String, usize>,
    /// Changes by (change, policy, agent). The policy is the one that decides now, or for a
    /// change to allow the one that decided before; `no policy` for the default deny.
    pub changes: BTreeMap<(Change, String, String), Group>,
}

impl ReplayReport {
    /// Number of changed decisions of `kind`.
    pub fn count(&self, kind: Change) -> usize {
        self.changes
            .iter()
            .filter(|((c, _, _), _)| *c == kind)
            .map(|(_, g)| g.count)
            .sum()
    }

    /// Judges one record (records that are not decisions are ignored).
    pub fn add(&mut self, engine: &PolicyEngine, record: &Value) {
        if record["kind"] != "decision" {
            return;
        }
        let recorded = record["decision"].as_str().unwrap_or_default();
        if !matches!(recorded, "allow" | "deny" | "approval_required") {
            return;
        }
        let Some(facts) = record.get("facts") else {
            let why = record["facts_omitted"]
                .as_str()
                .unwrap_or("no facts recorded");
            *self.skipped.entry(why.to_owned()).or_default() += 1;
            return;
        };
        let action = match recorded_action(engine, facts) {
            Ok(action) => action,
            Err(e) => {
                *self
                    .skipped
                    .entry(format!("not judgeable: {e}"))
                    .or_default() += 1;
                return;
            }
        };
        self.replayed += 1;
        let now = crate::canary::overrule(engine.decide(&action), &action.context.findings);
        let Some(change) = Change::between(recorded, now.label()) else {
            return;
        };
        let policies = match (&now, change) {
            (_, Change::DenyToAllow | Change::ApprovalRemoved) => record["policies"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            (Decision::NeedsApproval { policy, .. }, _) => policy.to_string(),
            (now, _) => now
                .policy_ids()
                .iter()
                .map(|p| &**p)
                .collect::<Vec<_>>()
                .join(", "),
        };
        let policy = if policies.is_empty() {
            "no policy".to_owned()
        } else {
            policies
        };
        let agent = record["principal"]["id"].as_str().unwrap_or("?").to_owned();
        let group = self.changes.entry((change, policy, agent)).or_default();
        group.count += 1;
        if group.examples.len() < EXAMPLES {
            let id = record["request_id"]
                .as_str()
                .or(record["decision_id"].as_str())
                .unwrap_or("?");
            group.examples.push(id.to_owned());
        }
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let changed: usize = self.changes.values().map(|g| g.count).sum();
        writeln!(
            f,
            "replayed {} decisions: {changed} would change",
            self.replayed
        )?;
        for (why, n) in &self.skipped {
            writeln!(f, "skipped {n}: {why}")?;
        }
        for kind in Change::ALL {
            let n = self.count(kind);
            if n == 0 {
                continue;
            }
            writeln!(f, "{}: {n}", kind.name())?;
            for ((_, policy, agent), group) in self.changes.iter().filter(|(k, _)| k.0 == kind) {
                writeln!(
                    f,
                    "  policy {policy}, agent {agent}: {} (e.g. {})",
                    group.count,
                    group.examples.join(", ")
                )?;
            }
        }
        Ok(())
    }
}
