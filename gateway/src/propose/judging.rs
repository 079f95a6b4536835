//! A response's proposed calls judged as it passes: its dialect's rewriter run with the
//! judge. When a call waits for its approval, the rewriter goes back to before the input that
//! met it, nothing more is read meanwhile (an event stream carries a keep-alive comment every
//! `approvals.keepalive_interval`), and once the call is settled the same input is given
//! again: the calls judged before it get their verdicts again, the held one its own.
//! With `propose.on_deny: error` a refused call ends the response as the protocol's error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::Frame;

use super::config::OnDeny;
use super::hold::HeldCall;
use super::judge::Judge;
use crate::protocol::Dialect;
use crate::protocol::proposed::{JudgeCalls as _, ProposalRewriter, Unjudged, join};

/// The stable code of a response ended because a proposed call was refused.
pub const REFUSED_CODE: &str = "tool_call_refused";

/// One response's rewriter and judge.
pub struct Judging {
    rewriter: Box<dyn ProposalRewriter>,
    judge: Judge,
    dialect: &'static dyn Dialect,
    event_stream: bool,
    /// How often a stream waiting for an approval carries a comment.
    keepalive: Option<Duration>,
    held: Option<Box<Held>>,
    /// The response ended as an error: nothing more is sent.
    failed: bool,
    /// Told when the response ends as an error (a whole body, answered with an error status).
    signal: Option<Arc<AtomicBool>>,
}

/// Input that met a call waiting for its approval.
struct Held {
    call: HeldCall,
    /// Given again once the call is settled.
    input: Vec<u8>,
    /// The upstream body had ended with it.
    end: bool,
    /// Trailers that came after it.
    trailers: Option<Frame<Bytes>>,
    ticks: Option<tokio::time::Interval>,
}

/// What a held response does next.
pub enum Resumed {
    /// A comment that keeps the stream alive.
    KeepAlive(Bytes),
    /// Settled: what the input gives now, whether the body has ended, and trailers that
    /// waited.
    Out {
        out: Bytes,
        end: bool,
        trailers: Option<Frame<Bytes>>,
    },
    /// Settled, and another call in the same input waits: poll again.
    Again,
}

impl Judging {
    /// Judging by `judge` as `rewriter` reads a response in `dialect` (`event_stream`: an
    /// event stream, kept alive every `keepalive` while a call waits).
    pub fn new(
        rewriter: Box<dyn ProposalRewriter>,
        judge: Judge,
        dialect: &'static dyn Dialect,
        event_stream: bool,
        keepalive: Option<Duration>,
    ) -> Judging {
        Judging {
            rewriter,
            judge,
            dialect,
            event_stream,
            keepalive,
            held: None,
            failed: false,
            signal: None,
        }
    }

    /// With `propose.on_deny: error`, a whole body's refusal is an HTTP error: the flag set
    /// when a refused call made the body the protocol's error (the caller reads the body to
    /// its end first). `None` for streams (their error is an event) and refusals as text.
    pub fn refusal_signal(&mut self) -> Option<Arc<AtomicBool>> {
        if self.event_stream || self.judge.on_deny() != OnDeny::Error {
            return None;
        }
        let signal = Arc::new(AtomicBool::new(false));
        self.signal = Some(Arc::clone(&signal));
        Some(signal)
    }

    /// Whether a call waits for its approval: poll [`poll_held`](Self::poll_held), read
    /// nothing more.
    pub fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// Takes the next chunk of the upstream body (`end`: its last): what to send now, or
    /// `None` when a call in it waits for its approval.
    pub fn push(&mut self, chunk: &[u8], end: bool) -> Option<Bytes> {
        if self.failed {
            return Some(Bytes::new());
        }
        let mark = self.judge.mark();
        let may_hold = self.judge.may_hold();
        if may_hold {
            self.rewriter.checkpoint(mark);
        }
        let mut out = if chunk.is_empty() {
            Bytes::new()
        } else {
            self.rewriter.push(chunk, &mut self.judge)
        };
        if end && !self.judge.is_holding() {
            out = join(out, self.rewriter.finish(&mut self.judge));
        }
        if let Some(call) = self.judge.take_held() {
            self.rewriter.rewind(&mut self.judge);
            self.judge.rewind(mark);
            let ticks = self
                .keepalive
                .filter(|_| self.event_stream)
                .map(tokio::time::interval);
            self.held = Some(Box::new(Held {
                call,
                input: chunk.to_vec(),
                end,
                trailers: None,
                ticks,
            }));
            return None;
        }
        if let Some(text) = self.judge.take_refused()
            && self.judge.on_deny() == OnDeny::Error
        {
            self.failed = true;
            if let Some(signal) = &self.signal {
                signal.store(true, Ordering::Release);
            }
            return Some(self.error(&text));
        }
        Some(out)
    }

    /// Keeps trailers that came while a call waits, to follow what it releases.
    pub fn hold_trailers(&mut self, trailers: Frame<Bytes>) {
        if let Some(held) = self.held.as_mut() {
            held.trailers = Some(trailers);
        }
    }

    /// Polls the call that waits: a keep-alive comment, or what the input gives once it is
    /// settled.
    pub fn poll_held(&mut self, cx: &mut Context<'_>) -> Poll<Resumed> {
        let Some(held) = self.held.as_mut() else {
            return Poll::Ready(Resumed::Again);
        };
        if let Poll::Ready(settled) = held.call.poll_settled(cx) {
            let Some(held) = self.held.take() else {
                return Poll::Ready(Resumed::Again);
            };
            self.judge.settle(settled);
            return Poll::Ready(match self.push(&held.input, held.end) {
                Some(out) => Resumed::Out {
                    out,
                    end: held.end,
                    trailers: held.trailers,
                },
                None => {
                    if let Some(trailers) = held.trailers {
                        self.hold_trailers(trailers);
                    }
                    Resumed::Again
                }
            });
        }
        if let Some(ticks) = held.ticks.as_mut()
            && ticks.poll_tick(cx).is_ready()
        {
            return Poll::Ready(Resumed::KeepAlive(Bytes::from_static(
                b": a proposed tool call waits for approval\n\n",
            )));
        }
        Poll::Pending
    }

    /// The response's end as the protocol's error naming the refused call.
    fn error(&self, text: &str) -> Bytes {
        if !self.event_stream {
            return self
                .dialect
                .error_body(StatusCode::FORBIDDEN, REFUSED_CODE, text);
        }
        self.dialect
            .error_event(StatusCode::FORBIDDEN, REFUSED_CODE, text)
    }

    /// Whether the response ended as an error (`propose.on_deny: error`).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Why the stream was ended with an error instead of judged (an event that may hold a
    /// call and that Warden cannot read, or that a client could read otherwise), once it was.
    pub fn unjudged(&self) -> Option<Unjudged> {
        self.rewriter.unjudged()
    }
}
