//! Each agent's open tunnels and when each last carried a byte. An agent at its
//! `egress.max_tunnels_per_agent` that asks for another has its longest-idle tunnel (idle for
//! `egress.evict_idle_after` at least) closed to make room: a client that keeps one tunnel per host open
//! would otherwise be refused for as long as `egress.tunnel_idle_timeout`. When all of them
//! carry bytes, nothing is closed and the cap refuses the new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Longest wait for the tunnel closed to make room to have closed (its place given back).
const CLOSING_WAIT: Duration = Duration::from_secs(5);

/// Every agent's open tunnels, shared by the egress workers.
#[derive(Clone)]
pub struct AgentTunnels(Arc<Inner>);

struct Inner {
    /// The instant activity is counted from.
    epoch: Instant,
    open: Mutex<HashMap<Arc<str>, Vec<Open>>>,
    next: AtomicU64,
    /// Raised whenever a tunnel leaves.
    left: Notify,
}

struct Open {
    id: u64,
    activity: Activity,
    close: Arc<Notify>,
}

impl Default for AgentTunnels {
    fn default() -> Self {
        AgentTunnels(Arc::new(Inner {
            epoch: Instant::now(),
            open: Mutex::default(),
            next: AtomicU64::new(0),
            left: Notify::new(),
        }))
    }
}

/// When a tunnel last carried a byte (milliseconds from its registry's epoch).
#[derive(Clone)]
pub(super) struct Activity {
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn now(epoch: Instant) -> u64 {
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The tunnel carried a byte now.
    pub(super) fn touch(&self) {
        self.last.store(Self::now(self.epoch), Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let last = self.last.load(Ordering::Relaxed);
        Duration::from_millis(Self::now(self.epoch).saturating_sub(last))
    }
}

/// One open tunnel in the registry, until dropped.
pub(super) struct Registered {
    tunnels: AgentTunnels,
    agent: Arc<str>,
    id: u64,
    /// Touched as the tunnel carries bytes.
    pub(super) activity: Activity,
    /// Raised when the tunnel is to close to make room for another of its agent's.
    pub(super) close: Arc<Notify>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = self.tunnels.lock();
        if let Some(list) = open.get_mut(&self.agent) {
            list.retain(|t| t.id != self.id);
            if list.is_empty() {
                open.remove(&self.agent);
            }
        }
        drop(open);
        self.tunnels.0.left.notify_waiters();
    }
}

impl AgentTunnels {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Vec<Open>>> {
        self.0.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a tunnel of `agent` open (active now) until the value returned is dropped.
    pub(super) fn register(&self, agent: &str) -> Registered {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let activity = Activity {
            epoch: self.0.epoch,
            last: Arc::new(AtomicU64::new(Activity::now(self.0.epoch))),
        };
        let close = Arc::new(Notify::new());
        let agent: Arc<str> = Arc::from(agent);
        self.lock()
            .entry(Arc::clone(&agent))
            .or_default()
            .push(Open {
                id,
                activity: activity.clone(),
                close: Arc::clone(&close),
            });
        Registered {
            tunnels: self.clone(),
            agent,
            id,
            activity,
            close,
        }
    }

    /// When `agent` has `max` tunnels open or more, closes its longest-idle one (idle for
    /// `idle_enough` at least) and waits, a bounded while, for it to be gone. Whether one was
    /// closed.
    pub(super) async fn make_room(&self, agent: &str, max: u32, idle_enough: Duration) -> bool {
        let closed = {
            let open = self.lock();
            let Some(list) = open.get(agent).filter(|l| l.len() >= max as usize) else {
                return false;
            };
            let idlest = list
                .iter()
                .map(|t| (t.activity.idle(), t))
                .filter(|(idle, _)| *idle >= idle_enough)
                .max_by_key(|(idle, _)| *idle);
            let Some((_, tunnel)) = idlest else {
                return false;
            };
            tunnel.close.notify_one();
            tunnel.id
        };
        let gone = async {
            loop {
                let left = self.0.left.notified();
                if !self.holds(agent, closed) {
                    return;
                }
                left.await;
            }
        };
        let _ = tokio::time::timeout(CLOSING_WAIT, gone).await;
        true
    }

    fn holds(&self, agent: &str, id: u64) -> bool {
        self.lock()
            .get(agent)
            .is_some_and(|list| list.iter().any(|t| t.id == id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `egress.evict_idle_after`'s default.
    const IDLE_ENOUGH: Duration = Duration::from_secs(30);

    /// Closes `registered` once it is told to, as a tunnel does.
    fn closes_when_told(registered: Registered) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            registered.close.notified().await;
            drop(registered);
        })
    }

    /// As if `tunnel` had carried nothing for `secs` seconds.
    fn idle_for(tunnel: &Registered, secs: u64) {
        let now = Activity::now(tunnel.activity.epoch);
        let last = now
            .checked_sub(secs * 1000)
            .expect("an epoch far enough back");
        tunnel.activity.last.store(last, Ordering::Relaxed);
    }

    #[tokio::test]
    async fn an_agent_at_its_cap_has_its_longest_idle_tunnel_closed_and_no_active_one() {
        let tunnels = AgentTunnels::default();
        let mut inner = Arc::try_unwrap(tunnels.0).ok().expect("not shared yet");
        inner.epoch = Instant::now()
            .checked_sub(Duration::from_secs(3600))
            .expect("an hour back");
        let tunnels = AgentTunnels(Arc::new(inner));
        let idlest = tunnels.register("pooler");
        let idle = tunnels.register("pooler");
        let busy = tunnels.register("pooler");
        let someone_elses = tunnels.register("someone-else");
        for (tunnel, secs) in [(&idlest, 60), (&idle, 40), (&busy, 0), (&someone_elses, 90)] {
            idle_for(tunnel, secs);
        }
        busy.activity.touch();
        // Below the cap, nothing is closed.
        assert!(!tunnels.make_room("pooler", 4, IDLE_ENOUGH).await);
        let (idlest_id, idle_id, busy_id) = (idlest.id, idle.id, busy.id);
        let closing = [closes_when_told(idlest), closes_when_told(idle)];
        // At the cap: the longest idle of the agent's own tunnels is closed, and only it.
        assert!(tunnels.make_room("pooler", 3, IDLE_ENOUGH).await);
        assert!(
            !tunnels.holds("pooler", idlest_id),
            "the longest idle closed"
        );
        assert!(tunnels.holds("pooler", idle_id));
        assert!(tunnels.holds("pooler", busy_id));
        assert!(tunnels.holds("someone-else", someone_elses.id));
        // None idle long enough (the other two carried bytes within the minute): nothing
        // closed, the cap refuses.
        assert!(
            !tunnels
                .make_room("pooler", 2, Duration::from_secs(50))
                .await
        );
        assert!(tunnels.holds("pooler", idle_id));
        drop(busy);
        for task in closing {
            task.abort();
        }
        assert!(!tunnels.holds("pooler", busy_id), "a dropped tunnel leaves");
    }
}
