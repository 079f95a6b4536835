//! Observe: the upstream response streams through chunk by chunk; usage is read on the way
//! and the outcome is recorded when the stream ends, fails, or the agent goes away. When an
//! agent leaves before the end and its usage matters (budgets), the rest of the upstream's
//! response is read in the background, within bounds, for the usage it reports at its end.

pub mod decoded;
pub mod readable;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::fleet::cut::Cut;
use crate::observe::decoded::{Decoder, Undecodable};
use crate::propose::Judging;
use crate::propose::judging::Resumed;
use crate::protocol::openai::UsageChunks;
use crate::protocol::proposed::join;
use crate::protocol::{Dialect, Usage, UsageScanner};
use crate::secrets::redact::Redactor;
use crate::upstream::BoxError;

/// What was read of a response when its outcome completes.
#[derive(Debug, Default)]
pub struct Read {
    /// The usage it reported (figures it did not report, or not readably, are `None`).
    pub usage: Usage,
    /// Why it ended early, if it did.
    pub error: Option<String>,
    /// The upstream's body was read to its end.
    pub ended: bool,
    /// Bytes of the upstream's body read.
    pub bytes: u64,
    /// Echoes of the injected credential redacted from the response, and how many of them
    /// were spread over an event stream's deltas.
    pub redacted: (usize, usize),
}

/// What to do with a response's outcome once its body has ended: the request path records it.
pub trait Complete: Send + 'static {
    /// The body ended (or its agent left, or it failed) with `read` of it.
    fn complete(self, read: Read);
}

/// How much of the upstream's response is still read once its agent has gone, for the usage
/// it reports at its end: at most `max_bytes` more, for at most `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    pub max_bytes: u64,
    pub timeout: Duration,
}

/// Why an outcome completes when the agent went away.
const AGENT_GONE: &str = "the agent disconnected before the response ended";

/// Why the upstream's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error("the upstream stream failed: {0}")]
    Upstream(#[from] hyper::Error),
    #[error(transparent)]
    Undecodable(#[from] Undecodable),
}

/// `frame` with, when it is the upstream's trailers, what never reaches the agent from an
/// upstream removed as from its headers (`x-warden-…` among them: `protocol::strip_upstreams`).
fn untrusted_trailers_removed(frame: Frame<Bytes>) -> Frame<Bytes> {
    match frame.into_trailers() {
        Ok(mut trailers) => {
            crate::protocol::strip_upstreams(&mut trailers);
            Frame::trailers(trailers)
        }
        Err(frame) => frame,
    }
}

/// What [`ObservedBody::read`] gives: a frame (or the body's end, or a failure), and whether
/// it ended the body.
type Next = (Poll<Option<Result<Frame<Bytes>, BoxError>>>, bool);

/// What reading the upstream's body gave: a frame (or its end, or a failure), and whether
/// that frame is the body's last.
type Polled = (Poll<Option<Result<Frame<Bytes>, Failed>>>, bool);

/// Reads the upstream body and completes the outcome of one response exactly once.
struct Observer<C: Complete> {
    outcome: Option<C>,
    scanner: Option<UsageScanner>,
    /// The upstream's body.
    inner: Option<Incoming>,
    /// Undoes its content codings, when it has some.
    decoder: Option<Box<Decoder>>,
    /// Its trailers, held while what was received before them is decoded.
    trailers: Option<http::HeaderMap>,
    /// Bytes of it read so far (as they came, compressed or not).
    bytes: u64,
    /// Read the rest of it when the agent goes away.
    drain: Option<Drain>,
    /// Echoes redacted so far (all, and those joined from deltas).
    redacted: (usize, usize),
    /// The body is redacted: its outcome completes once its end has been redacted (so that
    /// the record counts what was), not when the upstream's body ends.
    defer_end: bool,
}

impl<C: Complete> Observer<C> {
    fn scan(&mut self, chunk: &Bytes) {
        if let Some(s) = self.scanner.as_mut() {
            s.feed_shared(chunk);
        }
    }

    /// The body's next frame, decoded when it is encoded, its usage read; whether it is the
    /// last.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Polled {
        loop {
            if let Some(decoder) = self.decoder.as_mut() {
                match decoder.pull() {
                    Err(e) => {
                        self.inner = None;
                        return (Poll::Ready(Some(Err(e.into()))), false);
                    }
                    Ok(Some(data)) => {
                        self.scan(&data);
                        return (Poll::Ready(Some(Ok(Frame::data(data)))), false);
                    }
                    Ok(None) if decoder.is_finished() => {
                        return match self.trailers.take() {
                            Some(trailers) => {
                                (Poll::Ready(Some(Ok(Frame::trailers(trailers)))), true)
                            }
                            None => (Poll::Ready(None), true),
                        };
                    }
                    Ok(None) => {}
                }
            }
            let Some(inner) = self.inner.as_mut() else {
                return (Poll::Ready(None), true);
            };
            let polled = Pin::new(&mut *inner).poll_frame(cx);
            // A body of known length ends with its last frame: the server stops polling
            // there, so this is the end to record, not a later `None`.
            let at_end = inner.is_end_stream();
            let frame = match polled {
                Poll::Ready(Some(Ok(frame))) => untrusted_trailers_removed(frame),
                Poll::Ready(Some(Err(e))) => return (Poll::Ready(Some(Err(e.into()))), false),
                Poll::Ready(None) => {
                    self.inner = None;
                    match self.decoder.as_mut() {
                        Some(decoder) => {
                            decoder.end();
                            continue;
                        }
                        None => return (Poll::Ready(None), true),
                    }
                }
                Poll::Pending => return (Poll::Pending, false),
            };
            if let Some(data) = frame.data_ref() {
                self.bytes = self.bytes.saturating_add(data.len() as u64);
            }
            let Some(decoder) = self.decoder.as_mut() else {
                if let Some(data) = frame.data_ref() {
                    let data = data.clone();
                    self.scan(&data);
                }
                return (Poll::Ready(Some(Ok(frame))), at_end);
            };
            match frame.into_data() {
                Ok(data) => decoder.push(&data),
                Err(trailers) => {
                    self.trailers = trailers.into_trailers().ok();
                    decoder.end();
                    self.inner = None;
                }
            }
            if at_end {
                decoder.end();
                self.inner = None;
            }
        }
    }

    /// Whether the body has given everything.
    fn is_end_stream(&self) -> bool {
        match &self.decoder {
            None => self.inner.as_ref().is_none_or(Incoming::is_end_stream),
            Some(decoder) => decoder.is_finished() && self.trailers.is_none(),
        }
    }

    /// Completes and records the outcome (`ended`: the upstream's body was read to its end);
    /// later calls do nothing.
    fn complete(&mut self, error: Option<String>, ended: bool) {
        let Some(outcome) = self.outcome.take() else {
            return;
        };
        let usage = self
            .scanner
            .take()
            .map(UsageScanner::finish)
            .unwrap_or_default();
        outcome.complete(Read {
            usage,
            error,
            ended,
            bytes: self.bytes,
            redacted: self.redacted,
        });
    }

    /// Reads the rest of the body within `drain`'s bounds, then completes the outcome with
    /// what it reported.
    async fn drain(mut self, drain: Drain) {
        let start = self.bytes;
        let read = async {
            loop {
                let polled = std::future::poll_fn(|cx| self.poll_next(cx).0).await;
                match polled {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(_)) if self.bytes - start > drain.max_bytes => {
                        return Err(format!("more than {} bytes", drain.max_bytes));
                    }
                    Some(Ok(_)) => {}
                }
            }
        };
        let read = tokio::time::timeout(drain.timeout, read).await;
        let (why, ended) = match read {
            Ok(Ok(())) => (
                "; Warden read the rest of the response for its usage".to_owned(),
                true,
            ),
            Ok(Err(why)) => (format!("; the rest could not be read: {why}"), false),
            Err(_) => (
                format!(
                    "; the rest could not be read within {}",
                    humantime::format_duration(drain.timeout)
                ),
                false,
            ),
        };
        self.complete(Some(format!("{AGENT_GONE}{why}")), ended);
    }
}

impl<C: Complete> Drop for Observer<C> {
    /// The agent went away before the end: the rest is read in the background when
    /// [`Observer::drain`] says so, else the outcome completes with what was read.
    fn drop(&mut self) {
        if self.outcome.is_none() {
            return;
        }
        let unread =
            self.inner.is_some() || self.decoder.as_ref().is_some_and(|d| !d.is_finished());
        if self.defer_end && !unread {
            // Read to its end, its last part not yet redacted (a proposed call held for an
            // approval): complete as the upstream's body ended.
            self.complete(None, true);
            return;
        }
        if let Some(drain) = self.drain
            && unread
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let rest = Observer {
                outcome: self.outcome.take(),
                scanner: self.scanner.take(),
                inner: self.inner.take(),
                decoder: self.decoder.take(),
                trailers: self.trailers.take(),
                bytes: self.bytes,
                drain: None,
                redacted: self.redacted,
                defer_end: false,
            };
            runtime.spawn(rest.drain(drain));
            return;
        }
        self.complete(Some(AGENT_GONE.into()), false);
    }
}

pin_project_lite::pin_project! {
    /// An upstream body passed through while its usage is read (unchanged, but for an
    /// injected secret it echoes, in its body or trailers, redacted, and the usage Warden
    /// asked for, taken out); its outcome is completed when it ends, or once the rest is read
    /// when its agent leaves.
    pub struct ObservedBody<C: Complete> {
        observer: Observer<C>,
        // Takes out of an event stream the usage chunk Warden asked for and the agent did not.
        asked: Option<Box<UsageChunks>>,
        redactor: Option<Box<Redactor>>,
        judging: Option<Box<Judging>>,
        // A frame that waits while the redactor's held-back bytes go first.
        stashed: Option<Frame<Bytes>>,
        // The redacted stream has given everything.
        done: bool,
        // Ends the stream when its agent is quarantined or its token revoked (boxed: a
        // response body is moved around whole, and few are cut), and whether it is an event
        // stream.
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
        let end = inner.is_end_stream();
        let mut observer = Observer {
            outcome: Some(outcome),
            scanner: Some(UsageScanner::new(dialect, event_stream)),
            inner: Some(inner),
            decoder: None,
            trailers: None,
            bytes: 0,
            drain: None,
            redacted: (0, 0),
            defer_end: false,
        };
        if end {
            // An empty body is never polled: its outcome is complete now.
            observer.complete(None, true);
        }
        ObservedBody {
            observer,
            asked: None,
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

    /// Undoes the body's content codings with `decoder` as it streams (the length changes:
    /// the response must not announce one); an empty body is left as it is.
    pub fn decoding(mut self, decoder: Option<Decoder>) -> Self {
        if self.observer.outcome.is_some() {
            self.observer.decoder = decoder.map(Box::new);
        }
        self
    }

    /// Reads the rest of the upstream's body, within `drain`, when the agent goes away
    /// before its end (`None`: the outcome completes with what was read by then).
    pub fn draining(mut self, drain: Option<Drain>) -> Self {
        self.observer.drain = drain;
        self
    }

    /// Takes the usage chunk Warden asked for out of the event stream, when `asked` (the
    /// length may change: the response must not announce one).
    pub fn hiding_asked_usage(mut self, asked: bool) -> Self {
        self.asked = asked.then(Box::default);
        self
    }

    /// Redacts what `redactor` looks for from the body (its length may change: the response
    /// must not announce one).
    pub fn redacting(mut self, redactor: Option<Redactor>) -> Self {
        self.observer.defer_end = redactor.is_some();
        self.redactor = redactor.map(Box::new);
        self
    }

    /// Ends the body when `cut` is ready (its agent quarantined, or its token revoked): an
    /// event stream with an `error` event that says why (what OpenAI's and Anthropic's SDKs
    /// raise), any other body where it is; the outcome records the cut.
    pub fn cut_on(mut self, cut: Option<Cut>, event_stream: bool) -> Self {
        self.cut = cut.map(|cut| Box::new((cut, event_stream)));
        self
    }
}

/// The server-sent event that ends a cut stream: `event: error` with the error (`code`) in
/// the shape both OpenAI's and Anthropic's SDKs read.
fn cut_event(code: &str, message: &str) -> Bytes {
    let data = serde_json::json!({
        "type": "error",
        "error": {
            "type": code,
            "code": code,
            "message": message,
        },
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

impl<C: Complete> ObservedBody<C> {
    /// The upstream's next frame, decoded and its usage read; whether it ended the body (its
    /// outcome then completed).
    fn read(observer: &mut Observer<C>, cx: &mut Context<'_>) -> Next {
        let (polled, at_end) = observer.poll_next(cx);
        let ended = match &polled {
            Poll::Ready(Some(Ok(_))) => {
                if at_end && !observer.defer_end {
                    observer.complete(None, true);
                }
                at_end
            }
            Poll::Ready(Some(Err(e))) => {
                observer.complete(Some(e.to_string()), false);
                false
            }
            Poll::Ready(None) => {
                if !observer.defer_end {
                    observer.complete(None, true);
                }
                true
            }
            Poll::Pending => false,
        };
        (polled.map_err(BoxError::from), ended)
    }

    /// [`ObservedBody::read`], the usage chunk Warden asked for taken out by `asked`, if set.
    fn read_asked(
        observer: &mut Observer<C>,
        asked: &mut Option<Box<UsageChunks>>,
        cx: &mut Context<'_>,
    ) -> Next {
        let (polled, ended) = Self::read(observer, cx);
        let Some(chunks) = asked.as_mut() else {
            return (polled, ended);
        };
        let polled = match polled {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let mut out = chunks.push(data);
                    if ended {
                        out = join(out, chunks.finish());
                    }
                    Poll::Ready(Some(Ok(Frame::data(out))))
                }
                Err(trailers) => Poll::Ready(Some(Ok(trailers))),
            },
            Poll::Ready(None) => {
                let held = chunks.finish();
                *asked = None;
                if held.is_empty() {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Ok(Frame::data(held))))
                }
            }
            other => other,
        };
        (polled, ended)
    }
}

/// Notes in `observer` what `redactor` redacted so far; completes the outcome once the
/// upstream's body `ended` and was redacted to its end, or when the stream could not be read
/// to be redacted (it ended with the dialect's error; the rest is not read).
fn counted<C: Complete>(observer: &mut Observer<C>, redactor: &Redactor, ended: bool) {
    observer.redacted = (redactor.count(), redactor.joined_count());
    if redactor.failed() {
        observer.complete(
            Some(format!(
                "{}: {}",
                crate::secrets::redact::UNREADABLE_CODE,
                crate::secrets::redact::UNREADABLE
            )),
            false,
        );
    } else if ended {
        observer.complete(None, true);
    }
}

impl<C: Complete> Body for ObservedBody<C> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        loop {
            if let Some(frame) = this.stashed.take() {
                // Trailers held back while the judged or redacted body went first.
                let frame = match this.redactor.as_mut() {
                    Some(redactor) => redactor.trailers(frame),
                    None => frame,
                };
                return Poll::Ready(Some(Ok(frame)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            if let Some(cut) = this.cut.as_mut()
                && let Poll::Ready(cause) = cut.0.poll_cut(cx)
            {
                let event_stream = cut.1;
                *this.cut = None;
                *this.done = true;
                this.observer.complete(Some(cause.outcome()), false);
                if event_stream {
                    let event = cut_event(cause.code(), &cause.message());
                    return Poll::Ready(Some(Ok(Frame::data(event))));
                }
                return Poll::Ready(None);
            }
            // Events the redactor has held too long go on, the upstream silent or not (its
            // timer runs only while it holds some).
            if let Some(redactor) = this.redactor.as_mut()
                && let Poll::Ready(out) = redactor.poll_release(cx)
            {
                *this.done = redactor.failed();
                counted(this.observer, redactor, false);
                if out.is_empty() {
                    continue;
                }
                return Poll::Ready(Some(Ok(Frame::data(out))));
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
                    let (polled, ended) = Self::read_asked(this.observer, this.asked, cx);
                    // A chunk that was all asked usage: nothing to give.
                    if !ended
                        && let Poll::Ready(Some(Ok(frame))) = &polled
                        && frame.data_ref().is_some_and(Bytes::is_empty)
                    {
                        continue;
                    }
                    match this.judging.as_mut() {
                        None => (polled, ended),
                        Some(judging) => {
                            let polled = match polled {
                                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                                    Ok(data) => match judging.push(&data, ended) {
                                        None => continue,
                                        Some(out) => {
                                            if ended
                                                || judging.failed()
                                                || judging.unjudged().is_some()
                                            {
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
                            let unjudged = judging.unjudged();
                            if judging.failed() {
                                this.observer.complete(
                                    Some(
                                        "a proposed tool call was refused (propose.on_deny: error)"
                                            .into(),
                                    ),
                                    false,
                                );
                            } else if let Some(why) = unjudged {
                                // The stream ended with the error: the outcome says why.
                                this.observer.complete(
                                    Some(format!("{}: {}", why.code(), why.message())),
                                    false,
                                );
                            }
                            (polled, ended || judging.failed() || unjudged.is_some())
                        }
                    }
                }
            };
            let Some(redactor) = this.redactor.as_mut() else {
                return polled;
            };
            let observer = &mut *this.observer;
            let polled = match polled {
                Poll::Ready(Some(Ok(frame))) => {
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            let mut out = redactor.push(data);
                            if ended || redactor.failed() {
                                out = join(out, redactor.finish());
                                *this.done = true;
                            }
                            counted(observer, redactor, ended);
                            if out.is_empty() {
                                continue;
                            }
                            Frame::data(out)
                        }
                        Err(trailers) => {
                            let trailers = redactor.trailers(trailers);
                            let held = redactor.finish();
                            counted(observer, redactor, ended);
                            if held.is_empty() {
                                trailers
                            } else {
                                *this.stashed = Some(trailers);
                                Frame::data(held)
                            }
                        }
                    };
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    let held = redactor.finish();
                    counted(observer, redactor, true);
                    if held.is_empty() {
                        Poll::Ready(None)
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(held))))
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    counted(observer, redactor, false);
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Pending => Poll::Pending,
            };
            return polled;
        }
    }

    fn is_end_stream(&self) -> bool {
        match (&self.redactor, &self.judging, &self.asked) {
            (None, None, None) => self.observer.is_end_stream(),
            _ => self.done && self.stashed.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.redactor, &self.judging, &self.asked) {
            (None, None, None) if self.observer.decoder.is_none() => self
                .observer
                .inner
                .as_ref()
                .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint),
            // Decoding, redaction, judging and the asked usage's removal may change the length.
            _ => SizeHint::default(),
        }
    }
}
