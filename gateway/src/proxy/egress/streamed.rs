//! A plain-HTTP body larger than `inspect.stream_above`, inspected as it streams to the origin
//! (as Envoy's `ext_proc` streams a body): the request is judged on its head and its first
//! bytes, then every further chunk goes through the content detectors and the canary search
//! (`inspect/stream.rs`) before it leaves, and a byte leaves only once the detectors have
//! judged it. A detector or canary not seen before is judged by policy at once; a verdict
//! other than allow ([`Tripped`]) ends the body with an error, so the origin's connection is
//! aborted before the body is whole, and the request is recorded as denied mid-body.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::action::{Action, Finding};
use crate::canary::{self, Canaries};
use crate::decision::Decision;
use crate::inspect::stream::StreamScan;
use crate::policy::PolicyEngine;

/// Why a streamed body was stopped: the findings that stopped it and policy's verdict.
#[derive(Debug, Clone)]
pub(super) struct Tripped {
    /// The findings in the body past its first bytes (detector and location).
    pub findings: Vec<Finding>,
    /// Policy's verdict with them (a deny, or an approval that a stream cannot wait for).
    pub decision: Decision,
}

/// The error that ends a stopped body (what the origin's connection is aborted with).
#[derive(Debug, thiserror::Error)]
pub(super) enum Stopped {
    #[error("the request body was denied mid-body by inspection")]
    Denied,
    #[error("could not read the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// Where the verdict on a streamed body is left for the request path to record.
pub(super) type Verdict = Arc<Mutex<Option<Tripped>>>;

/// The rest of a body, inspected as it goes.
pub(super) struct Inspected {
    /// The judged part of the first bytes, to send first.
    head: Option<Bytes>,
    rest: Incoming,
    scan: StreamScan,
    /// Read but not yet judged (the end of what has come): held back.
    held: BytesMut,
    judge: Judge,
    verdict: Verdict,
    done: bool,
}

/// What judges a streamed body's findings: policy and the canaries, on the request's action.
pub(super) struct Judge {
    pub policy: Arc<PolicyEngine>,
    pub canaries: Option<Arc<Canaries>>,
    pub action: Action,
    pub request_id: String,
}

impl Judge {
    /// Policy's verdict once `found` (and any canary in `window`) joins the action's findings;
    /// `None` while it allows.
    fn judge(&mut self, found: Vec<Finding>, window: &[u8]) -> Option<Tripped> {
        let before = self.action.context.findings.0.len();
        if let Some(canaries) = &self.canaries
            && canaries.present(window)
        {
            canaries.inspect(
                &mut self.action,
                window,
                "body (streamed)",
                &self.request_id,
            );
        }
        self.action.context.findings.0.extend(found);
        if self.action.context.findings.0.len() == before {
            return None;
        }
        let decision = canary::overrule(
            self.policy.decide(&self.action),
            &self.action.context.findings,
        );
        match decision {
            Decision::Allow { .. } => None,
            decision => Some(Tripped {
                findings: self.action.context.findings.0[before..].to_vec(),
                decision,
            }),
        }
    }
}

impl Inspected {
    /// `rest` of a body whose first bytes were `head` (already judged), inspected by `judge`;
    /// the verdict is left in `verdict` when it stops the body.
    pub fn new(
        head: Bytes,
        rest: Incoming,
        mut scan: StreamScan,
        judge: Judge,
        verdict: Verdict,
    ) -> Inspected {
        // The head was judged whole: scanned again to carry its end over, and its end is
        // judged again with what follows.
        scan.feed(&head, false);
        let judged = head.len().saturating_sub(scan.unsettled());
        let held = BytesMut::from(&head[judged..]);
        Inspected {
            head: Some(head.slice(..judged)).filter(|h| !h.is_empty()),
            rest,
            scan,
            held,
            judge,
            verdict,
            done: false,
        }
    }

    /// Stops the body with `tripped`.
    fn stop(&mut self, tripped: Tripped) -> Poll<Option<Result<Frame<Bytes>, Stopped>>> {
        tracing::info!(request_id = %self.judge.request_id, findings = tripped.findings.len(), "a streamed request body is denied mid-body");
        *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(tripped);
        self.done = true;
        Poll::Ready(Some(Err(Stopped::Denied)))
    }
}

impl Body for Inspected {
    type Data = Bytes;
    type Error = Stopped;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Stopped>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        loop {
            match ready!(Pin::new(&mut this.rest).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    };
                    let found = this.scan.feed(&data, false);
                    if let Some(tripped) = this.judge.judge(found, this.scan.window()) {
                        return this.stop(tripped);
                    }
                    this.held.extend_from_slice(&data);
                    // What the detectors have judged leaves; the unjudged end waits.
                    let judged = this.held.len().saturating_sub(this.scan.unsettled());
                    if judged > 0 {
                        return Poll::Ready(Some(Ok(Frame::data(
                            this.held.split_to(judged).freeze(),
                        ))));
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Stopped::Read(e))));
                }
                None => {
                    let found = this.scan.feed(&[], true);
                    if let Some(tripped) = this.judge.judge(found, this.scan.window()) {
                        return this.stop(tripped);
                    }
                    this.done = true;
                    if this.held.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(this.held.split().freeze()))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.held.is_empty() && self.head.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let held = (self.held.len() + self.head.as_ref().map_or(0, Bytes::len)) as u64;
        match rest.exact() {
            Some(exact) => SizeHint::with_exact(exact + held),
            None => {
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower() + held);
                hint
            }
        }
    }
}
