//! Which budget resets this gateway audited (`sync/resets.rs` reads and audits them): before
//! its first read, when the gateway started sharing spend; after it, the number of the last
//! record read.

use std::sync::Mutex;
use std::time::SystemTime;

use super::freshness::ms;

/// Where the next read of reset records starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextRead {
    /// No read yet: the records made since this time (milliseconds since the Unix epoch, when
    /// the gateway started sharing spend), whatever their numbers.
    Since(i64),
    /// The records numbered after this one.
    After(i64),
}

/// Which reset records this gateway audited.
#[derive(Debug)]
pub(super) struct Seen(Mutex<NextRead>);

impl Seen {
    pub(super) fn new(now: SystemTime) -> Seen {
        Seen(Mutex::new(NextRead::Since(ms(now))))
    }

    /// This gateway starts sharing spend at `now` (before its first read).
    pub(super) fn started(&self, now: SystemTime) {
        if let NextRead::Since(since) = &mut *self.lock() {
            *since = ms(now);
        }
    }

    /// Where the next read starts.
    pub(super) fn next(&self) -> NextRead {
        *self.lock()
    }

    /// The records up to number `id` were read (and audited).
    pub(super) fn read_up_to(&self, id: i64) {
        *self.lock() = NextRead::After(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NextRead> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
