//! `listen.idle_timeout`: a connection with no request in flight for that long is closed
//! gracefully — HTTP/2 with a GOAWAY (streams the client opened meanwhile still end), HTTP/1
//! between two requests — so that an idle connection does not keep its listener's slot
//! (`listen.max_connections`) for ever: HTTP/2 keep-alive pings only tell a dead peer from a
//! live one, and a live idle peer answers them.
//!
//! A request is in flight from its handler's call until its response's body is dropped
//! ([`Guarded`]); work that carries a stream on past its response (an HTTP/2
//! `CONNECT` tunnel) holds a [`Busy`] of its own ([`Activity::busy`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::watch;

/// One connection's requests in flight; cheap to clone.
#[derive(Debug, Clone)]
pub struct Activity {
    open: Arc<watch::Sender<usize>>,
}

/// One request (or stream) in flight on its connection, until dropped.
#[derive(Debug)]
pub struct Busy {
    open: Arc<watch::Sender<usize>>,
}

impl Activity {
    /// A connection with nothing in flight.
    pub(super) fn new() -> Activity {
        Activity {
            open: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Counts one more request (or stream) in flight until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        self.open.send_modify(|n| *n += 1);
        Busy {
            open: Arc::clone(&self.open),
        }
    }

    /// Resolves once nothing has been in flight for `timeout`; any request that starts (or
    /// ends) meanwhile starts the wait again.
    pub(super) async fn idle_for(&self, timeout: Duration) {
        let mut open = self.open.subscribe();
        loop {
            let idle = *open.borrow_and_update() == 0;
            if idle {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => return,
                    // The sender lives as long as `self`: `changed` cannot fail.
                    _ = open.changed() => {}
                }
            } else {
                let _ = open.changed().await;
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.open.send_modify(|n| *n -= 1);
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
}
