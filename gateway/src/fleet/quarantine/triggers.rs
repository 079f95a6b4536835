//! The triggers that quarantine an agent by itself, judged after each decision: a finding of
//! one of the configured detectors (`canary` by default), N denies within a window, a forbid
//! annotated `@on_match("quarantine")` that determined a deny.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::Quarantines;
use super::config::{DeniesTrigger, TriggersConfig};
use crate::action::Action;
use crate::decision::Decision;
use crate::policy::PolicyEngine;
use crate::state::fleet::DenyWindow;

/// Recent denies per agent: this replica's (at most `count` each), and the other replicas'
/// as last read from the state store (`share.rs`), so that the trigger counts the fleet's
/// denies, not this replica's.
#[derive(Debug, Default)]
pub(super) struct DenyWindows {
    agents: DashMap<Arc<str>, Window>,
    /// The other replicas' recent denies per agent, as last read.
    others: ArcSwap<HashMap<Arc<str>, Elsewhere>>,
}

/// One agent's denies on the other replicas, as last read.
#[derive(Debug, Default)]
struct Elsewhere {
    /// When, milliseconds since the Unix epoch.
    at_ms: Vec<i64>,
    /// The newest time the trigger fired for the agent on one of them (0: never): the denies
    /// made until then, anywhere, were counted by it (or made before it) and count no more.
    fired_ms: i64,
}

/// One agent's denies on this replica.
#[derive(Debug, Default)]
struct Window {
    /// When, milliseconds since the Unix epoch; at most the trigger's count.
    at_ms: VecDeque<i64>,
    /// The last time the trigger fired for this agent here: the other replicas' denies until
    /// then were counted in it.
    fired_ms: i64,
    /// Changed since last published.
    changed: bool,
}

impl DenyWindows {
    /// Notes a deny of `agent` at `now_ms`; whether it makes `trigger.count` within
    /// `trigger.window` with this replica's and the other replicas' denies (this replica's
    /// window is then emptied, and the others' counted so far are not counted again).
    pub(super) fn deny(&self, agent: &Arc<str>, trigger: &DeniesTrigger, now_ms: i64) -> bool {
        let count = trigger.count.max(1) as usize;
        let from = now_ms.saturating_sub(window_ms(trigger.window));
        let mut window = self.agents.entry(Arc::clone(agent)).or_default();
        while window.at_ms.front().is_some_and(|t| *t < from) {
            window.at_ms.pop_front();
        }
        window.at_ms.push_back(now_ms);
        if window.at_ms.len() > count {
            window.at_ms.pop_front();
        }
        window.changed = true;
        let others = self.others.load();
        let elsewhere = others.get(agent).map_or(0, |e| {
            let fired_ms = window.fired_ms.max(e.fired_ms);
            e.at_ms
                .iter()
                .filter(|t| **t >= from && **t > fired_ms)
                .count()
        });
        if window.at_ms.len() + elsewhere >= count {
            window.at_ms.clear();
            window.fired_ms = now_ms;
            return true;
        }
        false
    }

    /// Forgets agents whose last deny is older than `window` (once what changed is
    /// published).
    pub(super) fn tidy(&self, window: Duration, now_ms: i64) {
        let from = now_ms.saturating_sub(window_ms(window));
        self.agents.retain(|_, w| {
            w.changed || w.at_ms.back().is_some_and(|t| *t >= from) || w.fired_ms >= from
        });
    }

    /// This replica's windows changed since last published, as `replica` stores them (each
    /// forgotten once out of `trigger.window`); they count as published from now on.
    pub(super) fn to_publish(
        &self,
        replica: &str,
        trigger: &DeniesTrigger,
        now_ms: i64,
    ) -> Vec<DenyWindow> {
        let window = window_ms(trigger.window);
        let mut out = Vec::new();
        for mut entry in self.agents.iter_mut() {
            if !entry.changed {
                continue;
            }
            entry.changed = false;
            let at_ms: Vec<i64> = entry.at_ms.iter().copied().collect();
            // Kept while a deny or the firing is within the window, so that the other
            // replicas learn of the firing.
            let last = at_ms.last().copied().unwrap_or(0).max(entry.fired_ms);
            let expires_ms = match last {
                0 => now_ms,
                last => last.saturating_add(window),
            };
            out.push(DenyWindow {
                replica: replica.to_owned(),
                agent: entry.key().to_string(),
                at_ms,
                fired_ms: entry.fired_ms,
                expires_ms,
            });
        }
        out.sort_unstable_by(|a, b| a.agent.cmp(&b.agent));
        out
    }

    /// The windows `published` could not be stored: they are published again next time.
    pub(super) fn unpublished(&self, published: &[DenyWindow]) {
        for w in published {
            if let Some(mut window) = self.agents.get_mut(w.agent.as_str()) {
                window.changed = true;
            }
        }
    }

    /// Takes the other replicas' recent denies, as read from the store. Where the trigger
    /// fired for an agent on another replica, this replica's denies of it made until then are
    /// dropped (and the window published again): that firing counted them, or came after
    /// them, and after a release they must not fire again with fewer new denies than the
    /// trigger's count.
    pub(super) fn read(&self, rows: Vec<DenyWindow>) {
        let mut others: HashMap<Arc<str>, Elsewhere> = HashMap::new();
        for row in rows {
            let elsewhere = others.entry(Arc::from(row.agent)).or_default();
            elsewhere.at_ms.extend(row.at_ms);
            elsewhere.fired_ms = elsewhere.fired_ms.max(row.fired_ms);
        }
        for (agent, elsewhere) in &others {
            if elsewhere.fired_ms == 0 {
                continue;
            }
            if let Some(mut window) = self.agents.get_mut(agent)
                && window.at_ms.iter().any(|t| *t <= elsewhere.fired_ms)
            {
                window.at_ms.retain(|t| *t > elsewhere.fired_ms);
                window.changed = true;
            }
        }
        self.others.store(Arc::new(others));
    }
}

/// `window` in milliseconds.
fn window_ms(window: Duration) -> i64 {
    i64::try_from(window.as_millis()).unwrap_or(i64::MAX)
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
        let now = crate::state::pins::now_ms();
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
        let agent: Arc<str> = "a".into();
        let trigger = DeniesTrigger {
            count: 3,
            window: Duration::from_secs(60),
        };
        let t0 = 1_000_000;
        let s = 1000;
        assert!(!windows.deny(&agent, &trigger, t0));
        assert!(!windows.deny(&agent, &trigger, t0 + 30 * s));
        // The first deny has left the window: two within it.
        assert!(!windows.deny(&agent, &trigger, t0 + 61 * s));
        assert!(windows.deny(&agent, &trigger, t0 + 62 * s));
        // The window starts again after a quarantine.
        assert!(!windows.deny(&agent, &trigger, t0 + 64 * s));
        let other: Arc<str> = "b".into();
        assert!(!windows.deny(&other, &trigger, t0 + 64 * s));
    }

    #[test]
    fn the_other_replicas_denies_within_the_window_count_once() {
        let windows = DenyWindows::default();
        let agent: Arc<str> = "a".into();
        let trigger = DeniesTrigger {
            count: 4,
            window: Duration::from_secs(60),
        };
        let t0 = 1_000_000;
        let s = 1000;
        let elsewhere = |at_ms: Vec<i64>| DenyWindow {
            replica: "b".into(),
            agent: "a".into(),
            at_ms,
            fired_ms: 0,
            expires_ms: i64::MAX,
        };
        // Two denies elsewhere, one of them out of the window by the time this one counts.
        windows.read(vec![elsewhere(vec![t0 - 70 * s, t0 + 5 * s])]);
        assert!(!windows.deny(&agent, &trigger, t0 + 10 * s));
        assert!(!windows.deny(&agent, &trigger, t0 + 11 * s));
        assert!(windows.deny(&agent, &trigger, t0 + 12 * s));
        // What fired here is not counted again: the others' denies until then are spent.
        windows.read(vec![elsewhere(vec![t0 + 5 * s, t0 + 13 * s])]);
        assert!(!windows.deny(&agent, &trigger, t0 + 14 * s));
        assert!(!windows.deny(&agent, &trigger, t0 + 15 * s));
        assert!(windows.deny(&agent, &trigger, t0 + 16 * s));
        // Published: the window emptied by the trigger, so that no replica counts it again.
        let published = windows.to_publish("here", &trigger, t0 + 16 * s);
        assert_eq!(published.len(), 1);
        assert!(published[0].at_ms.is_empty(), "{published:?}");
        // With when it fired, kept for the others to read while that is within the window.
        assert_eq!(published[0].fired_ms, t0 + 16 * s);
        assert_eq!(published[0].expires_ms, t0 + 76 * s);
        assert!(windows.to_publish("here", &trigger, t0 + 16 * s).is_empty());
    }
}
