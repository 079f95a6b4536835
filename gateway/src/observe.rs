//! Observe: the upstream response streams through chunk by chunk; usage is read on the way
//! and the outcome is recorded when the stream ends, fails, or the agent goes away.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::audit::event::AuditEvent;
use crate::protocol::UsageScanner;
use crate::shared::Shared;

/// Records the outcome of one response exactly once.
pub struct Observer {
    shared: Arc<Shared>,
    event: Option<AuditEvent>,
    started: Instant,
    scanner: Option<UsageScanner>,
    model: Option<String>,
}

impl Observer {
    /// `event` is the outcome record to complete; `model` labels token metrics.
    pub fn new(
        shared: Arc<Shared>,
        event: AuditEvent,
        started: Instant,
        scanner: UsageScanner,
        model: Option<String>,
    ) -> Self {
        Observer {
            shared,
            event: Some(event),
            started,
            scanner: Some(scanner),
            model,
        }
    }

    fn feed(&mut self, chunk: &Bytes) {
        if let Some(s) = self.scanner.as_mut() {
            s.feed_shared(chunk);
        }
    }

    /// Completes and records the outcome; later calls do nothing.
    fn complete(&mut self, error: Option<String>) {
        let Some(mut event) = self.event.take() else {
            return;
        };
        let usage = self
            .scanner
            .take()
            .map(UsageScanner::finish)
            .unwrap_or_default();
        if let Some(outcome) = event.outcome.as_mut() {
            outcome.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            outcome.input_tokens = usage.input_tokens;
            outcome.output_tokens = usage.output_tokens;
            outcome.error = error;
        }
        let model = self.model.as_deref().unwrap_or("");
        for (kind, n) in [
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
        ] {
            if let Some(n) = n {
                self.shared
                    .metrics
                    .tokens
                    .with_label_values(&[&event.principal.id, model, kind])
                    .inc_by(n);
            }
        }
        self.shared.audit.append_detached(event);
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.complete(Some(
            "the agent disconnected before the response ended".into(),
        ));
    }
}

pin_project_lite::pin_project! {
    /// An upstream body passed through unchanged while an [`Observer`] watches it.
    pub struct ObservedBody {
        #[pin]
        inner: Incoming,
        observer: Observer,
    }
}

impl ObservedBody {
    /// Wraps `inner`.
    pub fn new(inner: Incoming, mut observer: Observer) -> Self {
        if inner.is_end_stream() {
            // An empty body is never polled: its outcome is complete now.
            observer.complete(None);
        }
        ObservedBody { inner, observer }
    }
}

impl Body for ObservedBody {
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
