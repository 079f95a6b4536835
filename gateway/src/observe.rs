//! Observe: the upstream response streams through chunk by chunk; usage is read on the way
//! and the outcome is recorded when the stream ends, fails, or the agent goes away.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::protocol::{Dialect, Usage, UsageScanner};

/// What to do with a response's outcome once its body has ended: the request path records it.
pub trait Complete: Send + 'static {
    /// The body ended with `usage` read from it; `error` says why it ended early, if it did.
    fn complete(self, usage: Usage, error: Option<String>);
}

/// Completes the outcome of one response exactly once.
struct Observer<C: Complete> {
    outcome: Option<C>,
    scanner: Option<UsageScanner>,
}

impl<C: Complete> Observer<C> {
    fn feed(&mut self, chunk: &Bytes) {
        if let Some(s) = self.scanner.as_mut() {
            s.feed_shared(chunk);
        }
    }

    /// Completes and records the outcome; later calls do nothing.
    fn complete(&mut self, error: Option<String>) {
        let Some(outcome) = self.outcome.take() else {
            return;
        };
        let usage = self
            .scanner
            .take()
            .map(UsageScanner::finish)
            .unwrap_or_default();
        outcome.complete(usage, error);
    }
}

impl<C: Complete> Drop for Observer<C> {
    fn drop(&mut self) {
        self.complete(Some(
            "the agent disconnected before the response ended".into(),
        ));
    }
}

pin_project_lite::pin_project! {
    /// An upstream body passed through unchanged while its usage is read; its outcome is
    /// completed when it ends.
    pub struct ObservedBody<C: Complete> {
        #[pin]
        inner: Incoming,
        observer: Observer<C>,
    }
}

impl<C: Complete> ObservedBody<C> {
    /// Wraps `inner`, a response in `dialect` (`event_stream`: its content type is
    /// `text/event-stream`) whose outcome is `outcome`.
    pub fn new(
        inner: Incoming,
        outcome: C,
        dialect: &'static dyn Dialect,
        event_stream: bool,
    ) -> Self {
        let mut observer = Observer {
            outcome: Some(outcome),
            scanner: Some(UsageScanner::new(dialect, event_stream)),
        };
        if inner.is_end_stream() {
            // An empty body is never polled: its outcome is complete now.
            observer.complete(None);
        }
        ObservedBody { inner, observer }
    }
}

impl<C: Complete> Body for ObservedBody<C> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.observer.feed(data);
                }
                // A body of known length ends with its last frame: the server stops polling
                // there, so this is the end to record, not a later `None`.
                if this.inner.is_end_stream() {
                    this.observer.complete(None);
                }
            }
            Poll::Ready(Some(Err(e))) => this
                .observer
                .complete(Some(format!("upstream stream failed: {e}"))),
            Poll::Ready(None) => this.observer.complete(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
