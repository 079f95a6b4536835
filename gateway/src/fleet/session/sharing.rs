//! What sessions that share their labels remember between ticks (`sync/`): the labels
//! waiting to be stored, and when labels were last read.

use std::sync::Mutex;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use crate::state::fleet::SessionLabel;
use crate::state::pins::now_ms;

/// Labels waiting to be stored at most; past this, new ones are known to this replica only.
pub const QUEUE_MAX: usize = 10_000;

/// What sharing labels needs between ticks.
#[derive(Default)]
pub(crate) struct Sharing {
    pub(super) queue: Mutex<Vec<SessionLabel>>,
    /// When the labels were last read (this replica's clock), milliseconds since the epoch.
    pub(super) read_ms: AtomicI64,
}

impl Sharing {
    /// Queues `label` of session `key`, to live `window` (a session idle that long ends).
    pub(super) fn publish(&self, key: u64, label: &str, window: Duration) {
        let mut queue = self.queue.lock().expect("not poisoned");
        if queue.len() >= QUEUE_MAX {
            return;
        }
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        queue.push(SessionLabel {
            session: format!("{key:016x}"),
            label: label.to_owned(),
            expires_ms: now_ms().saturating_add(window_ms),
            updated_ms: 0,
        });
    }
}
