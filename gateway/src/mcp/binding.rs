//! Whose an agent session is, on which route, and how long it may rest unused: the same for
//! the sessions of both transports agents speak (Streamable HTTP, `session.rs`; the legacy
//! HTTP+SSE transport, `legacy_session.rs`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::RngCore;

use crate::action::Principal;

/// A session's owner, route and idle clock.
pub(super) struct Binding {
    /// The principal (id, issuer) that opened it.
    principal: (Arc<str>, Arc<str>),
    /// The route it was opened on.
    route: Arc<str>,
    clock: Arc<Clock>,
    idle_timeout: Duration,
}

/// When a session was last used, and how many of its requests are still under way (a
/// session is not idle while one is: a tool call may outlast the idle timeout).
struct Clock {
    last_used: Mutex<Instant>,
    busy: AtomicUsize,
}

impl Clock {
    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// A request of a session under way: the session is not idle until it is dropped, and its
/// idle clock starts again then.
pub struct InUse(Arc<Clock>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Binding {
    /// A session of `principal` on `route`, used now.
    pub(super) fn new(principal: &Principal, route: &Arc<str>, idle_timeout: Duration) -> Binding {
        Binding {
            principal: (Arc::clone(&principal.id), Arc::clone(&principal.issuer)),
            route: Arc::clone(route),
            clock: Arc::new(Clock {
                last_used: Mutex::new(Instant::now()),
                busy: AtomicUsize::new(0),
            }),
            idle_timeout,
        }
    }

    /// Whether `principal` may use the session on `route`.
    pub(super) fn admits(&self, principal: &Principal, route: &str) -> bool {
        self.principal.0 == principal.id
            && self.principal.1 == principal.issuer
            && &*self.route == route
    }

    /// Whether it rested unused past its idle timeout, no request of it under way.
    pub(super) fn idle(&self) -> bool {
        self.clock.busy.load(Ordering::Acquire) == 0
            && self
                .clock
                .last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed()
                > self.idle_timeout
    }

    /// It is used now.
    pub(super) fn touch(&self) {
        self.clock.touch();
    }

    /// A request of it is under way until the guard is dropped.
    pub(super) fn in_use(&self) -> InUse {
        self.clock.busy.fetch_add(1, Ordering::AcqRel);
        InUse(Arc::clone(&self.clock))
    }

    /// How long it may rest unused.
    pub(super) fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
}

/// A new session id: 256 random bits as 64 hex digits.
pub(super) fn new_session_id() -> Arc<str> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    Arc::from(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> Principal {
        Principal {
            id: Arc::from("a"),
            ..Principal::anonymous()
        }
    }

    /// A request under way keeps its session from resting: a tool call (or an `initialize`
    /// starting slow servers) may outlast the idle timeout; once it ends, the clock starts
    /// again from then.
    #[test]
    fn a_session_with_a_request_under_way_is_not_idle() {
        let binding = Binding::new(&principal(), &Arc::from("mcp"), Duration::from_millis(20));
        let call = binding.in_use();
        std::thread::sleep(Duration::from_millis(40));
        assert!(!binding.idle(), "idle while a request is under way");
        let second = binding.in_use();
        drop(call);
        assert!(!binding.idle(), "idle while another request is under way");
        drop(second);
        assert!(
            !binding.idle(),
            "the clock starts again when the last request ends"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            binding.idle(),
            "rests past its timeout once nothing is under way"
        );
    }

    #[test]
    fn session_ids_are_long_random_and_visible_ascii() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
