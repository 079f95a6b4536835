//! Session counts shared through the state store. On every tick a replica publishes, for each
//! session it counted in since its last publish, its running counts (actions, per action and
//! per resource: one row per replica and session, replaced each time), then reads the rows the
//! other replicas stored since its last read and keeps each one's latest per session. The
//! counts a policy sees are this replica's plus the others' (`Sharing::add_others`).
//!
//! The bound: another replica's count reaches this one at most two intervals after it counted
//! (one for it to publish, one for this one to read). Only sessions a policy needs are counted
//! at all (session facts are kept only while a loaded policy reads `context.session`), and only
//! those counted in since the last tick are published, at most [`PUBLISH_MAX`] per tick. A row
//! lives until its session has been idle a `sessions.window` on the replica that published it;
//! expired rows are removed by whichever replica reads next, and their counts forgotten here.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::CLOCK_SLACK_MS;
use crate::fleet::session::sharing::{Counts, Sharing};
use crate::fleet::session::{AgentSessions, Session, SessionsConfig};
use crate::state::StateError;
use crate::state::fleet::{FleetRepository, SessionCount};
use crate::state::pins::now_ms;

/// Sessions whose counts one tick publishes at most; the others wait for the next tick.
const PUBLISH_MAX: usize = 5_000;

impl AgentSessions {
    /// Publishes this replica's counts of the sessions counted in since the last tick, then
    /// takes the other replicas' counts stored since the last read.
    pub(super) async fn share_counts(
        &self,
        sharing: &Sharing,
        store: &dyn FleetRepository,
        config: &SessionsConfig,
    ) -> Result<(), StateError> {
        let started = now_ms();
        let rows = self.unpublished(sharing, config, started);
        if !rows.is_empty()
            && let Err(error) = store.publish_session_counts(rows.clone()).await
        {
            self.unpublish(&rows);
            return Err(error);
        }
        let since = sharing.counts_read_ms.load(Ordering::Relaxed) - CLOCK_SLACK_MS;
        let read = store.session_counts(sharing.replica.clone(), since).await?;
        sharing.counts_read_ms.store(started, Ordering::Relaxed);
        sharing.expire_others(started);
        for row in read {
            let Ok(key) = u64::from_str_radix(&row.session, 16) else {
                continue;
            };
            // A session new here takes a place within its agent's `max_per_agent` (its oldest
            // forgotten first), so that one agent naming many sessions cannot take every place.
            if !sharing.others.contains_key(&key) {
                let agent = u64::from_str_radix(&row.owner, 16).ok();
                if !sharing.room_for_other(agent, key, config.max_per_agent, config.max_sessions) {
                    continue;
                }
            }
            let counts = decode(&row, config.max_keys);
            sharing
                .others
                .entry(key)
                .or_default()
                .set(&row.replica, counts, row.expires_ms);
        }
        Ok(())
    }

    /// The rows of the sessions counted in since they were last published (marked published).
    pub(super) fn unpublished(
        &self,
        sharing: &Sharing,
        config: &SessionsConfig,
        now_ms: i64,
    ) -> Vec<SessionCount> {
        let now = self.now();
        let window_ms = i64::try_from(config.window.as_millis()).unwrap_or(i64::MAX);
        let mut rows = Vec::new();
        for mut session in self.sessions.iter_mut() {
            if rows.len() >= PUBLISH_MAX {
                break;
            }
            if !session.unpublished {
                continue;
            }
            session.unpublished = false;
            let idle_ms = i64::try_from(now.saturating_sub(session.last))
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            rows.push(SessionCount {
                replica: sharing.replica.clone(),
                session: format!("{:016x}", session.key()),
                owner: session
                    .owner
                    .map(|owner| format!("{owner:016x}"))
                    .unwrap_or_default(),
                actions: clamp(session.actions),
                keys: encode(&session),
                expires_ms: now_ms.saturating_sub(idle_ms).saturating_add(window_ms),
                updated_ms: 0,
            });
        }
        rows
    }

    /// The store refused `rows`: their sessions are published at the next tick.
    fn unpublish(&self, rows: &[SessionCount]) {
        for row in rows {
            if let Ok(key) = u64::from_str_radix(&row.session, 16)
                && let Some(mut session) = self.sessions.get_mut(&key)
            {
                session.unpublished = true;
            }
        }
    }
}

/// A session's counts per action and per resource as stored: `v<hash>=<n>` and `r<hash>=<n>`,
/// space-separated, each hash 16 hex digits.
fn encode(session: &Session) -> String {
    let mut text =
        String::with_capacity(24 * (session.per_verb.len() + session.per_resource.len()));
    for (tag, map) in [('v', &session.per_verb), ('r', &session.per_resource)] {
        for (key, n) in map {
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{tag}{key:016x}={n}");
        }
    }
    text
}

/// The counts of a stored row, at most `max_keys` per action and per resource; what is not
/// well formed is skipped.
fn decode(row: &SessionCount, max_keys: usize) -> Counts {
    let mut counts = Counts {
        actions: u64::try_from(row.actions).unwrap_or(0),
        ..Counts::default()
    };
    for item in row.keys.split_ascii_whitespace() {
        let Some((key, n)) = item.get(1..).and_then(|rest| rest.split_once('=')) else {
            continue;
        };
        let (Ok(key), Ok(n)) = (u64::from_str_radix(key, 16), n.parse::<u64>()) else {
            continue;
        };
        let map = match item.as_bytes()[0] {
            b'v' => &mut counts.per_verb,
            b'r' => &mut counts.per_resource,
            _ => continue,
        };
        if map.len() < max_keys {
            map.insert(key, n);
        }
    }
    counts
}

/// A count as the store keeps it (a signed 64-bit integer).
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
