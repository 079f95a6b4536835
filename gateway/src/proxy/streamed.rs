//! A request body larger than `inspect.stream_above` (a plain-HTTP upload through the egress
//! proxy, a REST connector's upload), inspected as it streams upstream (as Envoy's `ext_proc`
//! streams a body): the request is judged on its head and its first bytes, then every further
//! chunk goes through the content detectors and the canary search (`inspect/stream.rs`)
//! before it leaves, and a byte leaves only once the detectors have judged every match it
//! belongs to. A detector or canary not seen before is judged by policy at once: a redaction
//! (`@on_match("redact")`) redacts that detector's matches in what leaves from then on; a
//! verdict other than allow ([`Tripped`]) ends the body with an error, so the upstream's
//! connection is aborted before the body is whole, and the request is recorded as denied
//! mid-body.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use super::exchange::{Exchange, StreamFindings};
use super::redaction;
use super::refusal::Refusal;
use super::stages::decide_with;
use crate::action::{Action, Finding};
use crate::approval::Hold;
use crate::canary::{self, Canaries};
use crate::decision::Decision;
use crate::inspect;
use crate::inspect::stream::{Released, StreamScan};
use crate::policy::PolicyEngine;
use crate::snapshot::Snapshot;

/// Why a streamed body was stopped: the findings that stopped it and policy's verdict.
#[derive(Debug, Clone)]
pub(super) struct Tripped {
    /// The findings in the body past its first bytes (detector and location).
    pub findings: Vec<Finding>,
    /// Policy's verdict with them (a deny, or an approval that a stream cannot wait for).
    pub decision: Decision,
}

/// The error that ends a stopped body (what the upstream's connection is aborted with).
#[derive(Debug, thiserror::Error)]
pub(super) enum Stopped {
    #[error("the request body was denied mid-body by inspection")]
    Denied,
    #[error("could not read the request body: {0}")]
    Read(#[from] hyper::Error),
}

/// What became of a streamed body: why it was stopped, if it was (left for the request path
/// to record), and what was redacted in it past its first bytes (named by the outcome record).
/// The default is no streamed body, and allocates nothing.
#[derive(Clone, Default)]
pub(super) struct Verdict(Option<Arc<Left>>);

#[derive(Default)]
struct Left {
    tripped: Mutex<Option<Tripped>>,
    redacted: StreamFindings,
}

impl Verdict {
    /// The verdict on a body that streams.
    pub fn streaming() -> Verdict {
        Verdict(Some(Arc::default()))
    }

    /// Why the body was stopped, if it was.
    pub fn tripped(&self) -> Option<Tripped> {
        self.0
            .as_ref()?
            .tripped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether the body was stopped.
    pub fn is_stopped(&self) -> bool {
        self.0.as_ref().is_some_and(|left| {
            left.tripped
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
        })
    }

    /// What was (and will be) redacted in the body, for its outcome record.
    pub fn redacted(&self) -> StreamFindings {
        self.0
            .as_ref()
            .map_or_else(StreamFindings::default, |left| Arc::clone(&left.redacted))
    }

    fn stop(&self, tripped: Tripped) {
        if let Some(left) = &self.0 {
            *left.tripped.lock().unwrap_or_else(|p| p.into_inner()) = Some(tripped);
        }
    }

    fn add_redacted(&self, redacted: Vec<Finding>) {
        if let Some(left) = &self.0 {
            left.redacted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(redacted);
        }
    }
}

/// The body a request sends upstream: `first` alone when its body was read whole, else `first`
/// and then `rest` inspected as it streams ([`body`]), with `verdict` made to say what becomes
/// of it and the exchange told to record what is redacted.
pub(super) fn outbound(
    snap: &Snapshot,
    ex: &mut Exchange,
    action: &Action,
    first: Bytes,
    rest: Option<Incoming>,
    verdict: &mut Verdict,
) -> Either<Full<Bytes>, Inspected> {
    match rest {
        None => Either::Left(Full::new(first)),
        Some(rest) => {
            *verdict = Verdict::streaming();
            ex.streams_body(verdict.redacted());
            Either::Right(body(snap, ex, action, first, rest, verdict))
        }
    }
}

/// The body that streams upstream after `head` (the judged and recorded first bytes of
/// `action`'s body): `rest`, inspected as it goes; what becomes of it is left in `verdict`.
pub(super) fn body(
    snap: &Snapshot,
    ex: &Exchange,
    action: &Action,
    head: Bytes,
    rest: Incoming,
    verdict: &Verdict,
) -> Inspected {
    Inspected::new(
        head,
        rest,
        StreamScan::new(Arc::new(snap.config.inspect.clone())),
        Judge {
            policy: Arc::clone(&snap.policy),
            canaries: ex.shared().canaries().cloned(),
            channel: canary::channel(&action.context.facts),
            action: action.clone(),
            request_id: ex.request_id().to_owned(),
        },
        verdict.clone(),
        !snap.policy.redacts(),
    )
}

/// A streamed body stopped by inspection: the findings past its first bytes join `action`,
/// which is judged (Cedar's verdict passed through `adjust`) and recorded again, denied
/// whatever else policy says (a stream cannot wait for an approval); the agent is refused.
pub(super) async fn denied_mid_body(
    snap: &Snapshot,
    ex: &mut Exchange,
    mut action: Action,
    tripped: Tripped,
    adjust: impl FnOnce(Decision) -> Decision,
) -> Refusal {
    action.context.findings.0.extend(tripped.findings);
    let judged = tripped.decision.reasons();
    // Why the stream stopped it when no policy did (a match it could not redact in flight).
    let own = tripped
        .decision
        .policy_ids()
        .is_empty()
        .then(|| judged.clone());
    let stopped = |decision: Decision| {
        let mut decision = match adjust(decision) {
            decision @ Decision::Deny { .. } => decision,
            other => Decision::Deny {
                reasons: vec![format!(
                    "{}; a body streamed past inspect.stream_above cannot wait for an approval",
                    other.reasons().concat()
                )],
                policies: other.policy_ids(),
            },
        };
        if let (Decision::Deny { reasons, .. }, Some(own)) = (&mut decision, own) {
            reasons.extend(own);
        }
        decision
    };
    match decide_with(snap, ex, &mut action, &mut Bytes::new(), stopped).await {
        Ok(Decision::Deny { reasons, .. }) => Hold::Denied { reasons }.into(),
        Ok(_) => Hold::Denied { reasons: judged }.into(),
        Err(refusal) => refusal,
    }
}

/// What polling a streamed body gives.
type Polled = Poll<Option<Result<Frame<Bytes>, Stopped>>>;

/// The rest of a body, inspected as it goes.
pub(super) struct Inspected {
    /// The judged part of the first bytes, to send first.
    head: Option<Bytes>,
    rest: Incoming,
    scan: StreamScan,
    judge: Judge,
    verdict: Verdict,
    /// Whether the body keeps its length (nothing in it can be redacted).
    keeps_length: bool,
    /// Detectors counted as redacted.
    counted: Vec<Arc<str>>,
    /// The most bytes held at once (`warden_inspect_stream_held_bytes`).
    peak: usize,
    done: bool,
}

impl Drop for Inspected {
    fn drop(&mut self) {
        crate::inspect::stream::HELD.observe(self.peak as f64);
    }
}

/// What judges a streamed body's findings: policy and the canaries, on the request's action.
pub(super) struct Judge {
    pub policy: Arc<PolicyEngine>,
    pub canaries: Option<Arc<Canaries>>,
    /// The channel findings are counted in.
    pub channel: &'static str,
    pub action: Action,
    pub request_id: String,
}

impl Judge {
    /// Policy's verdict once `found` (and any canary in `scan`'s window) joins the action's
    /// findings; `None` while it allows (redacting in `scan` what a redaction names).
    fn judge(&mut self, found: Vec<Finding>, scan: &mut StreamScan) -> Option<Tripped> {
        let before = self.action.context.findings.0.len();
        let window = scan.window();
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
        let findings = self.action.context.findings.0[before..].to_vec();
        let mut decision = self.decide();
        if !canary::hit(&self.action.context.findings)
            && let Some(named) = self.policy.redaction(&decision)
        {
            let chosen = redaction::chosen(&named, &self.action.context.findings);
            scan.redact(chosen.iter().map(String::as_str));
            // Judged again as what leaves now reads: without the redacted detectors.
            self.action
                .context
                .findings
                .0
                .retain(|f| !chosen.iter().any(|c| **c == *f.detector));
            decision = self.decide();
        }
        match decision {
            Decision::Allow { .. } => None,
            decision => Some(Tripped { findings, decision }),
        }
    }

    fn decide(&self) -> Decision {
        canary::overrule(
            self.policy.decide(&self.action),
            &self.action.context.findings,
        )
    }
}

impl Inspected {
    /// `rest` of a body whose first bytes were `head` (already judged, and redacted as policy
    /// said), inspected by `judge`; what becomes of it is left in `verdict`.
    pub fn new(
        head: Bytes,
        rest: Incoming,
        mut scan: StreamScan,
        judge: Judge,
        verdict: Verdict,
        keeps_length: bool,
    ) -> Inspected {
        // The head was judged whole: scanned again to carry its end over; its held end is
        // judged again with what follows. Nothing is redacted in it yet, so all of it may go.
        let peak = head.len();
        scan.feed(&head, false);
        let first = scan.release().map(|r| r.bytes).unwrap_or_default();
        Inspected {
            head: Some(first).filter(|h| !h.is_empty()),
            rest,
            scan,
            judge,
            verdict,
            keeps_length,
            counted: Vec::new(),
            peak,
            done: false,
        }
    }

    /// Stops the body with `tripped`.
    fn stop(&mut self, tripped: Tripped) -> Polled {
        tracing::info!(request_id = %self.judge.request_id, findings = tripped.findings.len(), "a streamed request body is denied mid-body");
        self.verdict.stop(tripped);
        self.done = true;
        Poll::Ready(Some(Err(Stopped::Denied)))
    }

    /// Counts what was `redacted` in `warden_dlp_findings_total` (each detector once per
    /// request, outcome `redacted`).
    fn count(&mut self, redacted: &[Finding]) {
        for finding in redacted {
            if !self.counted.contains(&finding.detector) {
                self.counted.push(Arc::clone(&finding.detector));
                inspect::FINDINGS
                    .with_label_values(&[&finding.detector, self.judge.channel, "redacted"])
                    .inc();
            }
        }
    }

    /// Feeds `data` (`last`: the end of the body) to the scan, judges what it finds and gives
    /// what may leave; stops the body when policy says so.
    fn inspect(&mut self, data: &[u8], last: bool) -> Result<Bytes, Polled> {
        let found = self.scan.feed(data, last);
        self.peak = self.peak.max(self.scan.window().len());
        if let Some(tripped) = self.judge.judge(found, &mut self.scan) {
            return Err(self.stop(tripped));
        }
        match self.scan.release() {
            Ok(Released { bytes, redacted }) => {
                if !redacted.is_empty() {
                    self.count(&redacted);
                    self.verdict.add_redacted(redacted);
                }
                Ok(bytes)
            }
            Err(unredactable) => {
                let reason = unredactable.to_string();
                let finding = Finding {
                    detector: Arc::from(unredactable.detector),
                    location: format!("body, byte {}", unredactable.at),
                };
                Err(self.stop(Tripped {
                    findings: vec![finding],
                    decision: Decision::Deny {
                        reasons: vec![reason],
                        policies: Vec::new(),
                    },
                }))
            }
        }
    }
}

impl Body for Inspected {
    type Data = Bytes;
    type Error = Stopped;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled {
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
                    match this.inspect(&data, false) {
                        Ok(judged) if judged.is_empty() => {}
                        Ok(judged) => return Poll::Ready(Some(Ok(Frame::data(judged)))),
                        Err(stopped) => return stopped,
                    }
                }
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(Stopped::Read(e))));
                }
                None => {
                    let rest = match this.inspect(&[], true) {
                        Ok(rest) => rest,
                        Err(stopped) => return stopped,
                    };
                    this.done = true;
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.head.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let known = (self.head.as_ref().map_or(0, Bytes::len) + self.scan.held()) as u64;
        match self.rest.size_hint().exact() {
            Some(rest) if self.keeps_length && !self.done => SizeHint::with_exact(known + rest),
            // Redaction may change the length: only a lower bound is known.
            _ => {
                let mut hint = SizeHint::new();
                hint.set_lower(self.head.as_ref().map_or(0, Bytes::len) as u64);
                hint
            }
        }
    }
}
