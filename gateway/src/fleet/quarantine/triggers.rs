//! The triggers that quarantine an agent by itself, judged after each decision: a finding of
//! one of the configured detectors (`canary` by default), N denies within a window, a forbid
//! annotated `@on_match("quarantine")` that determined a deny.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::Quarantines;
use super::config::{DeniesTrigger, TriggersConfig};
use crate::action::Action;
use crate::decision::Decision;
use crate::policy::PolicyEngine;

/// Recent denies per agent: at most `count` instants each.
#[derive(Debug, Default)]
pub(super) struct DenyWindows {
    agents: DashMap<std::sync::Arc<str>, VecDeque<Instant>>,
}

impl DenyWindows {
    /// Notes a deny of `agent` at `now`; whether it makes `trigger.count` within
    /// `trigger.window` (the agent's window is then emptied).
    fn deny(&self, agent: &std::sync::Arc<str>, trigger: &DeniesTrigger, now: Instant) -> bool {
        let count = trigger.count.max(1) as usize;
        let mut window = self.agents.entry(std::sync::Arc::clone(agent)).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) > trigger.window)
        {
            window.pop_front();
        }
        window.push_back(now);
        if window.len() > count {
            window.pop_front();
        }
        if window.len() >= count {
            window.clear();
            return true;
        }
        false
    }

    /// Forgets agents whose last deny is older than `window`.
    fn tidy(&self, window: Duration, now: Instant) {
        self.agents
            .retain(|_, w| w.back().is_some_and(|t| now.duration_since(*t) <= window));
    }
}

/// What fired, if anything: the trigger label and the reason the agent is told.
fn fired(
    config: &TriggersConfig,
    policy: &PolicyEngine,
    action: &Action,
    decision: &Decision,
    denies: &DenyWindows,
) -> Option<(&'static str, String)> {
    if let Some(finding) = action
        .context
        .findings
        .0
        .iter()
        .find(|f| config.detectors.iter().any(|d| **d == *f.detector))
    {
        let trigger = if &*finding.detector == "canary" {
            "canary"
        } else {
            "detector"
        };
        return Some((
            trigger,
            format!(
                "a request carried what the {} detector looks for (at {})",
                finding.detector, finding.location
            ),
        ));
    }
    let Decision::Deny { policies, .. } = decision else {
        return None;
    };
    if config.on_match
        && let Some(meta) = policies
            .iter()
            .filter_map(|id| policy.policy(id))
            .find(|m| m.quarantines())
    {
        return Some((
            "policy",
            format!("policy {} quarantines agents it denies", meta.id),
        ));
    }
    if let Some(trigger) = &config.denies {
        let now = Instant::now();
        if denies.deny(&action.principal.id, trigger, now) {
            denies.tidy(trigger.window, now);
            return Some((
                "denies",
                format!(
                    "{} requests were denied within {}",
                    trigger.count,
                    humantime::format_duration(trigger.window)
                ),
            ));
        }
    }
    None
}

impl Quarantines {
    /// Judges the triggers on a decided `action`; quarantines its agent when one fires (in
    /// force here at once; the request that fired it is refused by its own decision or, when
    /// it was allowed, by the quarantine itself before it goes on).
    pub fn after_decision(
        &self,
        config: &TriggersConfig,
        policy: &PolicyEngine,
        action: &Action,
        decision: &Decision,
    ) -> bool {
        let Some((trigger, reason)) = fired(config, policy, action, decision, &self.denies) else {
            return false;
        };
        self.trigger(&action.principal, trigger, reason, config.duration);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_quarantine_only_when_enough_fall_within_the_window() {
        let windows = DenyWindows::default();
        let agent: std::sync::Arc<str> = "a".into();
        let trigger = DeniesTrigger {
            count: 3,
            window: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        assert!(!windows.deny(&agent, &trigger, t0));
        assert!(!windows.deny(&agent, &trigger, t0 + Duration::from_secs(30)));
        // The first deny has left the window: two within it.
        assert!(!windows.deny(&agent, &trigger, t0 + Duration::from_secs(61)));
        assert!(windows.deny(&agent, &trigger, t0 + Duration::from_secs(62)));
        // The window starts again after a quarantine.
        assert!(!windows.deny(&agent, &trigger, t0 + Duration::from_secs(64)));
        let other: std::sync::Arc<str> = "b".into();
        assert!(!windows.deny(&other, &trigger, t0 + Duration::from_secs(64)));
    }
}
