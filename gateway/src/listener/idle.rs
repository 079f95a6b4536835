//! `listen.idle_timeout`: a connection with no request in flight for that long is closed
//! gracefully — HTTP/2 with a GOAWAY (streams the client opened meanwhile still end), HTTP/1
//! between two requests — so that an idle connection does not keep its listener's slot
//! (`listen.max_connections`) for ever: HTTP/2 keep-alive pings only tell a dead peer from a
//! live one, and a live idle peer answers them.
//!
//! A request is in flight from its handler's call until its response's body is dropped
//! ([`Guarded`]); work that carries a stream on past its response (an HTTP/2
//! `CONNECT` tunnel) holds a [`Busy`] of its own ([`Activity::busy`]).
//!
//! A request costs two atomic additions and a clock read: nothing is woken. The connection's
//! wait ([`Activity::idle_for`]) sleeps until the timeout after the last moment nothing was in
//! flight, then looks again: idle, it is done; a request ended since, it sleeps the rest of
//! the timeout after that one; a request in flight, a whole timeout (the earliest it can be
//! idle for that long).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

/// One connection's requests in flight; cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity {
    state: Arc<State>,
}

/// One request (or stream) in flight on its connection, until dropped.
#[derive(Debug)]
pub struct Busy {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    /// Requests (and streams) in flight.
    open: AtomicUsize,
    /// When the last one ended (or the connection opened, if none has), in nanoseconds
    /// since `opened`.
    ended: AtomicU64,
    opened: Instant,
}

impl State {
    /// The last moment nothing was known to be in flight.
    fn ended(&self) -> Instant {
        self.opened + Duration::from_nanos(self.ended.load(Ordering::Acquire))
    }
}

impl Activity {
    /// A connection with nothing in flight.
    pub(super) fn new() -> Activity {
        Activity {
            state: Arc::new(State {
                open: AtomicUsize::new(0),
                ended: AtomicU64::new(0),
                opened: Instant::now(),
            }),
        }
    }

    /// Counts one more request (or stream) in flight until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.state.open.fetch_add(1, Ordering::AcqRel);
        Busy {
            state: Arc::clone(&self.state),
        }
    }

    /// Resolves once nothing has been in flight for `timeout`; any request that starts (or
    /// ends) meanwhile starts the wait again.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        let state = &self.state;
        let mut deadline = Instant::now().max(state.ended()) + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            // In flight is read first: a request that ended has said when before it stopped
            // counting (`Busy::drop`), so its end is seen with it.
            if state.open.load(Ordering::Acquire) > 0 {
                deadline = Instant::now() + timeout;
                continue;
            }
            let idle_until = state.ended() + timeout;
            if idle_until <= Instant::now() {
                return;
            }
            deadline = idle_until;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let state = &self.state;
        let since = u64::try_from(state.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Said before it stops counting, so a wait that sees nothing in flight sees this end.
        state.ended.fetch_max(since, Ordering::AcqRel);
        state.open.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project! {
    /// A response body that holds `guard` for as long as it lives (hyper drops a response's
    /// body once it is sent, or its stream reset): a [`Busy`] keeps its request counted in
    /// flight.
    pub struct Guarded<B, G> {
        #[pin]
        body: B,
        guard: G,
    }
}

impl<B, G> Guarded<B, G> {
    /// `body`, holding `guard` while it lives.
    pub fn new(body: B, guard: G) -> Guarded<B, G> {
        Guarded { body, guard }
    }
}

impl<B: Body, G> Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_waits_for_the_last_request_then_the_whole_timeout() {
        let ms = Duration::from_millis;
        let activity = Activity::new();
        let busy = activity.busy();
        let idle = activity.clone();
        let started = std::time::Instant::now();
        let waited = tokio::spawn(async move {
            idle.idle_for(ms(300)).await;
            started.elapsed()
        });
        tokio::time::sleep(ms(400)).await;
        assert!(!waited.is_finished(), "idle while a request was in flight");
        drop(busy);
        // A short request 200 ms later starts the wait again.
        tokio::time::sleep(ms(200)).await;
        drop(activity.busy());
        let waited = waited.await.unwrap();
        assert!(waited >= ms(900), "{waited:?}");
        assert!(waited < ms(3000), "{waited:?}");
    }

    #[tokio::test]
    async fn a_request_in_flight_at_the_deadline_keeps_it_open_until_a_timeout_after_its_end() {
        let ms = Duration::from_millis;
        let activity = Activity::new();
        let idle = activity.clone();
        let started = std::time::Instant::now();
        let waited = tokio::spawn(async move {
            idle.idle_for(ms(300)).await;
            started.elapsed()
        });
        // A request starts within the wait and ends after its first deadline (a tunnel's
        // stream, say): the connection is idle a timeout after it ends, not before.
        tokio::time::sleep(ms(100)).await;
        let busy = activity.busy();
        tokio::time::sleep(ms(400)).await;
        assert!(!waited.is_finished(), "idle while a request was in flight");
        drop(busy);
        let ended = started.elapsed();
        let waited = waited.await.unwrap();
        assert!(
            waited >= ended + ms(300),
            "{waited:?} after an end at {ended:?}"
        );
        assert!(
            waited < ended + ms(2500),
            "{waited:?} after an end at {ended:?}"
        );
    }
}
