//! Observe: the upstream response streams through chunk by chunk; usage is read on the way
//! and the outcome is recorded when the stream ends, fails, or the agent goes away.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::fleet::quarantine::{self, cut::Cut};
use crate::propose::Judging;
use crate::propose::judging::Resumed;
use crate::protocol::proposed::join;
use crate::protocol::{Dialect, Usage, UsageScanner};
use crate::secrets::redact::Redactor;

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
    /// An upstream body passed through while its usage is read (unchanged, but for an
    /// injected secret it echoes, redacted); its outcome is completed when it ends.
    pub struct ObservedBody<C: Complete> {
        #[pin]
        inner: Incoming,
        observer: Observer<C>,
        redactor: Option<Box<Redactor>>,
        judging: Option<Box<Judging>>,
        // A frame that waits while the redactor's held-back bytes go first.
        stashed: Option<Frame<Bytes>>,
        // The redacted stream has given everything.
        done: bool,
        // Ends the stream when its agent is quarantined.
        // Ends the stream when its agent is quarantined (boxed: a response body is moved
        // around whole, and few are cut), and whether it is an event stream.
        cut: Option<Box<(Cut, bool)>>,
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
        ObservedBody {
            inner,
            observer,
            redactor: None,
            judging: None,
            stashed: None,
            done: false,
            cut: None,
        }
    }

    /// Has the tool calls the response proposes judged and rewritten by `judging` before the
    /// agent gets them (the length may change: the response must not announce one).
    pub fn judging(mut self, judging: Judging) -> Self {
        self.judging = Some(Box::new(judging));
        self
    }

    /// Redacts what `redactor` looks for from the body (its length may change: the response
    /// must not announce one).
    pub fn redacting(mut self, redactor: Option<Redactor>) -> Self {
        self.redactor = redactor.map(Box::new);
        self
    }

    /// Ends the body when `cut` is ready (its agent quarantined): an event stream with an
    /// `error` event that says why (what OpenAI's and Anthropic's SDKs raise), any other body
    /// where it is; the outcome records the cut.
    pub fn cut_on(mut self, cut: Option<Cut>, event_stream: bool) -> Self {
        self.cut = cut.map(|cut| Box::new((cut, event_stream)));
        self
    }
}

/// The server-sent event that ends a cut stream: `event: error` with the error in the shape
/// both OpenAI's and Anthropic's SDKs read.
fn cut_event(message: &str) -> Bytes {
    let data = serde_json::json!({
        "type": "error",
        "error": {
            "type": quarantine::CODE,
            "code": quarantine::CODE,
            "message": message,
        },
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

impl<C: Complete> ObservedBody<C> {
    /// The upstream's next frame, its usage read; whether it ended the body (its outcome then
    /// completed).
    #[allow(clippy::type_complexity)]
    fn read(
        inner: Pin<&mut Incoming>,
        observer: &mut Observer<C>,
        cx: &mut Context<'_>,
    ) -> (Poll<Option<Result<Frame<Bytes>, hyper::Error>>>, bool) {
        let mut inner = inner;
        let polled = inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    observer.feed(data);
                }
                // A body of known length ends with its last frame: the server stops
                // polling there, so this is the end to record, not a later `None`.
                let ended = inner.is_end_stream();
                if ended {
                    observer.complete(None);
                }
                ended
            }
            Poll::Ready(Some(Err(e))) => {
                observer.complete(Some(format!("upstream stream failed: {e}")));
                false
            }
            Poll::Ready(None) => {
                observer.complete(None);
                true
            }
            Poll::Pending => false,
        };
        (polled, ended)
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
        loop {
            if let Some(frame) = this.stashed.take() {
                return Poll::Ready(Some(Ok(frame)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            if let Some(cut) = this.cut.as_mut()
                && let Poll::Ready(record) = cut.0.poll_cut(cx)
            {
                let event_stream = cut.1;
                *this.cut = None;
                *this.done = true;
                let message = quarantine::message(&record);
                this.observer.complete(Some(format!(
                    "cut: the agent was quarantined ({})",
                    record.reason
                )));
                if event_stream {
                    return Poll::Ready(Some(Ok(Frame::data(cut_event(&message)))));
                }
                return Poll::Ready(None);
            }
            // A proposed call waits for its approval: nothing more is read meanwhile.
            let (polled, ended) = match this.judging.as_mut().filter(|j| j.is_held()) {
                Some(judging) => match judging.poll_held(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Resumed::Again) => continue,
                    Poll::Ready(Resumed::KeepAlive(comment)) => {
                        (Poll::Ready(Some(Ok(Frame::data(comment)))), false)
                    }
                    Poll::Ready(Resumed::Out { out, end, trailers }) => {
                        if end {
                            *this.done = this.redactor.is_none() && trailers.is_none();
                            *this.stashed = trailers;
                        } else if out.is_empty() {
                            continue;
                        }
                        (Poll::Ready(Some(Ok(Frame::data(out)))), end)
                    }
                },
                None => {
                    let (polled, ended) = Self::read(this.inner.as_mut(), this.observer, cx);
                    match this.judging.as_mut() {
                        None => (polled, ended),
                        Some(judging) => {
                            let polled = match polled {
                                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                                    Ok(data) => match judging.push(&data, ended) {
                                        None => continue,
                                        Some(out) => {
                                            if ended || judging.failed() {
                                                *this.done = this.redactor.is_none();
                                            } else if out.is_empty() {
                                                continue;
                                            }
                                            Poll::Ready(Some(Ok(Frame::data(out))))
                                        }
                                    },
                                    Err(trailers) => match judging.push(&[], true) {
                                        None => {
                                            judging.hold_trailers(trailers);
                                            continue;
                                        }
                                        Some(held) if held.is_empty() => {
                                            Poll::Ready(Some(Ok(trailers)))
                                        }
                                        Some(held) => {
                                            *this.stashed = Some(trailers);
                                            Poll::Ready(Some(Ok(Frame::data(held))))
                                        }
                                    },
                                },
                                Poll::Ready(None) => match judging.push(&[], true) {
                                    None => continue,
                                    Some(held) if held.is_empty() => Poll::Ready(None),
                                    Some(held) => {
                                        *this.done = this.redactor.is_none();
                                        Poll::Ready(Some(Ok(Frame::data(held))))
                                    }
                                },
                                other => other,
                            };
                            if judging.failed() {
                                this.observer.complete(Some(
                                    "a proposed tool call was refused (propose.on_deny: error)"
                                        .into(),
                                ));
                            }
                            (polled, ended || judging.failed())
                        }
                    }
                }
            };
            let Some(redactor) = this.redactor.as_mut() else {
                return polled;
            };
            match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            let mut out = redactor.push(data);
                            if ended {
                                out = join(out, redactor.finish());
                                *this.done = true;
                            }
                            if out.is_empty() {
                                continue;
                            }
                            Frame::data(out)
                        }
                        Err(trailers) => {
                            let held = redactor.finish();
                            if held.is_empty() {
                                trailers
                            } else {
                                *this.stashed = Some(trailers);
                                Frame::data(held)
                            }
                        }
                    };
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    let held = redactor.finish();
                    if held.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(held))));
                }
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match (&self.redactor, &self.judging) {
            (None, None) => self.inner.is_end_stream(),
            _ => self.done && self.stashed.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.redactor, &self.judging) {
            (None, None) => self.inner.size_hint(),
            // Redaction and judging may change the length.
            _ => SizeHint::default(),
        }
    }
}
