//! Keeps one upstream connection up for one upstream session: a local process (`stdio.rs`) or
//! a remote server's legacy event stream (`legacy_sse.rs`). When a run ends, the requests in
//! flight fail and the connection is made again with backoff (100 ms, doubling, at most 30 s;
//! back to 100 ms after a run of more than a minute) and initialised again, until the session
//! ends. A first run that fails is the session's error, and is not retried.
//!
//! A restart goes through the server's circuit breaker: while it is open nothing is started
//! (the supervisor waits until it lets a probe through). A restart that is that probe and
//! does not come up opens it again; otherwise restarts count neither way (the backoff retries
//! on its own; the requests that wait for the server meanwhile are what the breaker counts).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::error::LinkError;
use super::router::{Router, State, closed as link_closed};
use crate::text::{FIELD_MAX, bounded};
use crate::upstream::breaker::Admitted;

/// Why one run of a connection ended.
pub(super) enum Exit {
    /// The session ended: do not start again.
    Closed,
    /// The connection died or could not be made.
    Died(String),
}

/// A connection the supervisor runs again and again.
pub(super) trait Connection: Send + 'static {
    /// What the requests in flight are told when a run ends.
    const LOST: &'static str;
    /// What the log says when a run ends.
    const LOG: &'static str;

    /// One run: connect, initialise, call [`Up::ready`], then serve until the connection
    /// ends or `closed` says the session did.
    fn run_once(
        &mut self,
        up: &mut Up,
        closed: &mut watch::Receiver<State>,
    ) -> impl Future<Output = Exit> + Send;
}

/// Told by a run that its connection is initialised.
pub(super) struct Up {
    router: Arc<Router>,
    first: Option<oneshot::Sender<Result<(), String>>>,
    /// The restart the server's breaker let through, until it comes up.
    restart: Option<Admitted>,
}

impl Up {
    /// The connection is initialised: requests go through (and the first start succeeded).
    pub(super) fn ready(&mut self) {
        self.router.state.send_if_modified(|s| {
            let changed = *s == State::Starting;
            if changed {
                *s = State::Ready;
            }
            changed
        });
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
        // Up: neither a success nor a failure of the server.
        drop(self.restart.take());
    }
}

/// Starts supervising `connection` and waits for its first run to be up.
pub(super) async fn start(
    connection: impl Connection,
    router: &Arc<Router>,
) -> Result<(), LinkError> {
    let (first_tx, first_rx) = oneshot::channel();
    let up = Up {
        router: Arc::clone(router),
        first: Some(first_tx),
        restart: None,
    };
    tokio::spawn(supervise(connection, up));
    let server = router.server.to_string();
    match first_rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(LinkError::Handshake { server, reason }),
        Err(_) => Err(LinkError::Closed { server }),
    }
}

async fn supervise<C: Connection>(mut connection: C, mut up: Up) {
    let router = Arc::clone(&up.router);
    let mut closed = router.state.subscribe();
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let reason = match connection.run_once(&mut up, &mut closed).await {
            Exit::Closed => return,
            Exit::Died(reason) => reason,
        };
        router.state.send_if_modified(|s| {
            let changed = *s == State::Ready;
            if changed {
                *s = State::Starting;
            }
            changed
        });
        router.end_all(C::LOST, true);
        if let Some(restart) = up.restart.take()
            && restart.is_probe()
        {
            restart.failed();
        }
        if let Some(first) = up.first.take() {
            router.state.send_replace(State::Closed);
            let _ = first.send(Err(reason));
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(100);
        }
        tracing::warn!(
            server = %router.server,
            reason = %bounded(&reason, FIELD_MAX),
            restart_in_ms = backoff.as_millis() as u64,
            "{}",
            C::LOG
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = link_closed(&mut closed) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
        match admitted(&router, &mut closed).await {
            Some(restart) => up.restart = Some(restart),
            None => return,
        }
    }
}

/// Waits until the server's circuit breaker lets a restart through; `None` when the session
/// ends first.
async fn admitted(router: &Router, closed: &mut watch::Receiver<State>) -> Option<Admitted> {
    loop {
        match router.breaker.admit() {
            Ok(admitted) => return Some(admitted),
            Err(open) => {
                tokio::select! {
                    () = tokio::time::sleep(open.retry_after) => {}
                    _ = link_closed(closed) => return None,
                }
            }
        }
    }
}
