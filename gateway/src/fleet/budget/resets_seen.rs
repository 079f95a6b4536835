//! Which budget resets this gateway audited (`sync/resets.rs` reads and audits them): the
//! number of the last record read, and when the gateway started sharing spend.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use super::freshness::ms;

/// Which reset records this gateway audited.
#[derive(Debug)]
pub(super) struct Seen {
    /// The number of the last record read; `None` before the first read.
    after: Mutex<Option<i64>>,
    /// When this gateway started sharing spend, milliseconds since the Unix epoch: records
    /// made before are not audited at the first read.
    since_ms: AtomicI64,
}

impl Seen {
    pub(super) fn new(now: SystemTime) -> Seen {
        Seen {
            after: Mutex::new(None),
            since_ms: AtomicI64::new(ms(now)),
        }
    }

    /// This gateway starts sharing spend at `now`.
    pub(super) fn started(&self, now: SystemTime) {
        self.since_ms.store(ms(now), Ordering::Relaxed);
    }

    /// The number of the last record read; `None` before the first read.
    pub(super) fn after(&self) -> Option<i64> {
        *self.lock()
    }

    /// The records up to number `id` were read (and audited).
    pub(super) fn read_up_to(&self, id: i64) {
        *self.lock() = Some(id);
    }

    /// When this gateway started sharing spend.
    pub(super) fn since_ms(&self) -> i64 {
        self.since_ms.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.after.lock().unwrap_or_else(|e| e.into_inner())
    }
}
