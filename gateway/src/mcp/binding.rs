//! Whose an agent session is, on which route, and how long it may rest unused: the same for
//! the sessions of both transports agents speak (Streamable HTTP, `session.rs`; the legacy
//! HTTP+SSE transport, `legacy_session.rs`).

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
    last_used: Mutex<Instant>,
    idle_timeout: Duration,
}

impl Binding {
    /// A session of `principal` on `route`, used now.
    pub(super) fn new(principal: &Principal, route: &Arc<str>, idle_timeout: Duration) -> Binding {
        Binding {
            principal: (Arc::clone(&principal.id), Arc::clone(&principal.issuer)),
            route: Arc::clone(route),
            last_used: Mutex::new(Instant::now()),
            idle_timeout,
        }
    }

    /// Whether `principal` may use the session on `route`.
    pub(super) fn admits(&self, principal: &Principal, route: &str) -> bool {
        self.principal.0 == principal.id
            && self.principal.1 == principal.issuer
            && &*self.route == route
    }

    /// Whether it rested unused past its idle timeout.
    pub(super) fn idle(&self) -> bool {
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            > self.idle_timeout
    }

    /// It is used now.
    pub(super) fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
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

    #[test]
    fn session_ids_are_long_random_and_visible_ascii() {
        let a = new_session_id();
        let b = new_session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
