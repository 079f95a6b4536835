//! Decide, with redaction: a deny determined only by forbids annotated `@on_match("redact")`
//! redacts in place, in the content that leaves, the findings those forbids test (the detector
//! names their conditions compare; every content finding when they name none), and the
//! redacted request is judged again, as it now reads. A deny any other forbid takes part in
//! stays a deny (deny wins); a canary is never redacted (it always denies: `canary::overrule`).

use bytes::Bytes;

use crate::action::{Action, Finding, Findings};
use crate::canary;
use crate::decision::Decision;
use crate::inspect::{self, DETECTOR_NAMES};
use crate::snapshot::Snapshot;

/// Policy's verdict on `action`, whose outgoing content is `body`; when the verdict asks for
/// a redaction, `body` is redacted, `action`'s findings lose the redacted detectors (any match
/// of them left in the redacted body is found again; one found outside the body, which is
/// never redacted, stays), and the verdict is on the redacted request (read as inspect read it:
/// `multipart`, the boundary of a multipart body). The second value: what was redacted
/// (detector and location), for the record.
pub(super) fn judge(
    snap: &Snapshot,
    action: &mut Action,
    body: &mut Bytes,
    multipart: Option<&[u8]>,
) -> (Decision, Vec<Finding>) {
    let decision = snap.policy.decide(action);
    if canary::hit(&action.context.findings) {
        return (decision, Vec::new());
    }
    let Some(named) = snap.policy.redaction(&decision) else {
        return (decision, Vec::new());
    };
    let chosen = chosen(&named, &action.context.findings);
    let wanted = |d: &str| chosen.iter().any(|c| c == d);
    let config = &snap.config.inspect;
    let Some(redacted) = inspect::redact::redact(body, config, &wanted) else {
        return (decision, Vec::new());
    };
    // What was found outside the body (an egress request's url or headers) is not redacted,
    // so its findings stay and still count against the redacted request.
    action
        .context
        .findings
        .0
        .retain(|f| !wanted(&f.detector) || inspect::outside_body(&f.location));
    let mut left = Findings::none();
    inspect::inspect(&mut left, &redacted.body, multipart, config);
    action
        .context
        .findings
        .0
        .extend(left.0.into_iter().filter(|f| wanted(&f.detector)));
    *body = Bytes::from(redacted.body);
    (snap.policy.decide(action), redacted.findings)
}

/// The content detectors among `findings` that a redaction naming `named` redacts: those it
/// names, or every content finding when it names none of them.
pub(super) fn chosen(named: &[&str], findings: &Findings) -> Vec<String> {
    let found: Vec<&str> = findings
        .detectors()
        .filter(|d| DETECTOR_NAMES.contains(d))
        .collect();
    match found.iter().filter(|d| named.contains(d)).count() {
        0 => found.iter().map(|d| (*d).to_owned()).collect(),
        _ => found
            .iter()
            .filter(|d| named.contains(d))
            .map(|d| (*d).to_owned())
            .collect(),
    }
}

/// Counts each of `action`'s findings, and each detector `redacted` names once, in
/// `warden_dlp_findings_total` with what became of the request.
pub(super) fn count(action: &Action, decision: &Decision, redacted: &[Finding]) {
    let channel = canary::channel(&action.context.facts);
    let outcome = match decision {
        Decision::Allow { .. } => "allowed",
        Decision::Deny { .. } => "denied",
        Decision::NeedsApproval { .. } => "held",
    };
    for finding in &action.context.findings.0 {
        inspect::FINDINGS
            .with_label_values(&[&finding.detector, channel, outcome])
            .inc();
    }
    let outcome = match decision {
        Decision::Deny { .. } => "denied",
        _ => "redacted",
    };
    let mut counted: Vec<&str> = Vec::with_capacity(redacted.len());
    for finding in redacted {
        if !counted.contains(&&*finding.detector) {
            counted.push(&finding.detector);
            inspect::FINDINGS
                .with_label_values(&[&finding.detector, channel, outcome])
                .inc();
        }
    }
}
