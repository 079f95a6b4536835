//! How many sessions one agent holds: each session (and each legacy event stream) holds a
//! slot of its agent's, taken before its servers start and given back when the session is
//! dropped, so that one agent cannot take every session (`mcp.max_sessions`) nor start a
//! process per session without bound, however many `initialize` it sends at once.

use std::sync::Arc;

use dashmap::DashMap;

use super::error::McpError;
use crate::action::Principal;

/// An agent: its id and issuer.
type Agent = (Arc<str>, Arc<str>);

/// The slots held, by agent.
#[derive(Default, Clone)]
pub(super) struct AgentSlots {
    held: Arc<DashMap<Agent, usize>>,
}

impl AgentSlots {
    /// A slot of `principal`'s, unless it holds `cap` already.
    pub(super) fn take(&self, principal: &Principal, cap: usize) -> Result<Slot, McpError> {
        let key = (Arc::clone(&principal.id), Arc::clone(&principal.issuer));
        let mut held = self.held.entry(key.clone()).or_insert(0);
        if *held >= cap {
            return Err(McpError::TooManyAgentSessions(cap));
        }
        *held += 1;
        drop(held);
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }

    /// Slots `principal` holds.
    #[cfg(test)]
    pub(super) fn held(&self, principal: &Principal) -> usize {
        let key = (Arc::clone(&principal.id), Arc::clone(&principal.issuer));
        self.held.get(&key).map_or(0, |n| *n)
    }
}

/// One session's slot, given back when dropped.
pub(super) struct Slot {
    slots: AgentSlots,
    key: Agent,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.held.remove_if_mut(&self.key, |_, held| {
            *held = held.saturating_sub(1);
            *held == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str) -> Principal {
        Principal {
            id: Arc::from(id),
            ..Principal::anonymous()
        }
    }

    #[test]
    fn an_agent_holds_at_most_its_cap_and_gets_slots_back() {
        let slots = AgentSlots::default();
        let (a, b) = (agent("a"), agent("b"));
        let first = slots.take(&a, 2).expect("a slot");
        let _second = slots.take(&a, 2).expect("a slot");
        assert!(matches!(
            slots.take(&a, 2),
            Err(McpError::TooManyAgentSessions(2))
        ));
        // Another agent is not held back by the first.
        let _other = slots.take(&b, 2).expect("b's slot");
        drop(first);
        assert_eq!(slots.held(&a), 1);
        assert!(slots.take(&a, 2).is_ok());
        assert_eq!(slots.held(&a), 1, "the slot taken was dropped at once");
    }
}
