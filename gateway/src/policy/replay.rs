//! `warden policy replay`: recorded decisions judged again by a candidate policy set, from the
//! facts their records carry (`policy/facts.rs`), and what would change, grouped by kind of
//! change, policy and agent.
//!
//! A decision policy did not make alone is not judged again, and replay never claims it
//! would flip: one a quarantine trigger or the egress guard overruled (the record's
//! `overruled_by`), and a request a rate limit or a quarantine refused before policy saw it
//! (a `rejected` record with that `code`). They are counted as "not re-judged", with why.
//! A canary token's deny is judged again: replay applies the same rule to the recorded
//! findings.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use super::PolicyEngine;
use super::facts::{OVERRULED_BY_INTERNAL_ADDRESS, OVERRULED_BY_QUARANTINE};
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
    /// Decisions made beyond policy, not judged again: why, how many.
    pub not_rejudged: BTreeMap<&'static str, usize>,
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
        if let Some(why) = beyond_policy(record) {
            *self.not_rejudged.entry(why).or_default() += 1;
            return;
        }
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

/// Why `record` is a decision made beyond policy, which replay does not judge again; `None`
/// for a decision policy made (or a record that is no decision).
fn beyond_policy(record: &Value) -> Option<&'static str> {
    match (record["kind"].as_str(), record["decision"].as_str()) {
        (Some("decision"), Some(_)) => match record["overruled_by"].as_str()? {
            OVERRULED_BY_QUARANTINE => Some("a quarantine trigger denied it, not policy"),
            OVERRULED_BY_INTERNAL_ADDRESS => {
                Some("the egress guard denied an internal address policy let through")
            }
            _ => Some("something beyond policy decided it"),
        },
        (Some("rejected"), _) => match record["code"].as_str()? {
            "rate_limited" | "concurrency_limited" => {
                Some("a rate limit refused it before policy judged it")
            }
            crate::fleet::quarantine::CODE => {
                Some("the agent was quarantined: refused before policy judged it")
            }
            crate::fleet::budget::sync::BudgetUnknown::CODE => Some(
                "the fleet's budget spend was unknown (state store away): refused before \
                 policy judged it",
            ),
            // Unauthenticated or malformed: no decision to judge.
            _ => None,
        },
        _ => None,
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
        for (why, n) in &self.not_rejudged {
            writeln!(f, "not re-judged {n}: {why}")?;
        }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CHAT: &str =
        "@id(\"chat\")\npermit (principal, action == Action::\"llm:chat\", resource);\n";
    const HELD: &str = "@id(\"held\")\n@approval(\"required\")\n\
        permit (principal, action == Action::\"llm:chat\", resource == Model::\"openai/gpt-4o\");\n\
        @id(\"chat-others\")\n\
        permit (principal, action == Action::\"llm:chat\", resource) unless { resource == Model::\"openai/gpt-4o\" };\n";

    fn engine(text: &str) -> PolicyEngine {
        let dir = crate::policy::tests::pack(&[("p.cedar", text)]);
        PolicyEngine::load(dir.path()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn decision(id: &str, decision: &str, model: &str) -> Value {
        json!({
            "kind": "decision",
            "request_id": id,
            "decision": decision,
            "principal": {"id": "ci-bot"},
            "facts": {
                "principal": {"id": "ci-bot", "kind": "agent", "issuer": "https://idp", "scopes": [], "groups": []},
                "action": "llm:chat",
                "resource": {"provider": "openai", "model": model},
                "context": {"route": "openai", "time": 1_700_000_000, "source_ip": "127.0.0.1", "tls": false, "findings": [], "stream": false, "tools": [], "input_tokens": 5},
            },
        })
    }

    #[test]
    fn an_approval_policy_added_or_removed_is_reported_as_such() {
        let mut added = ReplayReport::default();
        let held = engine(HELD);
        added.add(&held, &decision("r1", "allow", "gpt-4o"));
        added.add(&held, &decision("r2", "allow", "gpt-4.1"));
        assert_eq!(added.replayed, 2, "{:?}", added.skipped);
        assert_eq!(added.count(Change::ApprovalAdded), 1);
        let text = added.to_string();
        assert!(
            text.contains("approval-added: 1\n  policy held, agent ci-bot: 1 (e.g. r1)\n"),
            "{text}"
        );
        let mut removed = ReplayReport::default();
        removed.add(
            &engine(CHAT),
            &decision("r3", "approval_required", "gpt-4o"),
        );
        assert_eq!(removed.count(Change::ApprovalRemoved), 1, "{removed}");
    }

    #[test]
    fn decisions_made_beyond_policy_are_counted_as_not_rejudged() {
        let chat = engine(CHAT);
        let mut report = ReplayReport::default();
        // Policy allowed it; a quarantine trigger denied it: the same set must not "flip" it.
        let mut quarantined = decision("q1", "deny", "gpt-4o");
        quarantined["overruled_by"] = json!("quarantine");
        report.add(&chat, &quarantined);
        let mut guarded = decision("g1", "deny", "gpt-4o");
        guarded["overruled_by"] = json!("internal_address");
        report.add(&chat, &guarded);
        for code in [
            "rate_limited",
            "concurrency_limited",
            "agent_quarantined",
            "budget_unavailable",
        ] {
            report.add(
                &chat,
                &json!({"kind": "rejected", "decision": "rejected", "code": code}),
            );
        }
        // Not a decision at all: not counted anywhere.
        report.add(
            &chat,
            &json!({"kind": "rejected", "decision": "rejected", "code": "invalid_token"}),
        );
        report.add(&chat, &decision("a1", "allow", "gpt-4o"));
        assert_eq!(report.replayed, 1);
        assert!(report.changes.is_empty(), "{report}");
        assert_eq!(
            report.to_string(),
            "replayed 1 decisions: 0 would change\n\
             not re-judged 1: a quarantine trigger denied it, not policy\n\
             not re-judged 2: a rate limit refused it before policy judged it\n\
             not re-judged 1: the agent was quarantined: refused before policy judged it\n\
             not re-judged 1: the egress guard denied an internal address policy let through\n\
             not re-judged 1: the fleet's budget spend was unknown (state store away): refused \
             before policy judged it\n"
        );
    }
}
