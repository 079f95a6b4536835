//! The stages every kind of traffic shares once it is read as an [`Action`]: its context,
//! inspect, limit, session, decide (with the durable decision record) and hold. `proxy::walk` and the MCP walk
//! (`proxy/mcp/message.rs`) both call them.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;

use super::bound_headers::BoundHeaders;
use super::exchange::{Content, Exchange, Judged};
use super::redaction;
use super::refusal::Refusal;
use crate::action::{Action, ActionContext, Facts, Findings, Principal, Resource, Verb};
use crate::approval;
use crate::approval::gate::{Gate, Opened};
use crate::canary;
use crate::decision::Decision;
use crate::fleet::limits::{AgentCaps, Subject};
use crate::fleet::session::Named;
use crate::inspect;
use crate::policy::facts::Fields;
use crate::protocol::body::{self, BodyError, Head};
use crate::protocol::{Protocol, rest};
use crate::route::Route;
use crate::secrets::{CredentialError, SecretGuard};
use crate::snapshot::Snapshot;
use crate::text::{FIELD_MAX, bounded};

/// The context of an action on `route`: what the request says (`facts`, `findings`) and
/// what every request has (time, peer, TLS, client certificate).
pub(super) fn context(
    ex: &Exchange,
    route: &Route,
    findings: Findings,
    facts: Facts,
) -> ActionContext {
    let conn = ex.conn();
    ActionContext {
        route: Arc::clone(&route.name),
        time: SystemTime::now(),
        source_ip: conn.peer.ip(),
        tls: conn.tls,
        client_certificate: conn.client_identity.clone(),
        findings,
        facts,
        session: None,
        budget: None,
    }
}

/// Interpret's read of a request body: whole, within `limits.max_request_bytes`; a REST body
/// larger than `inspect.stream_above` (or of unknown length and more than that) whose operation
/// reads no fields from it is read only that far: the rest streams upstream, inspected as it
/// goes (`proxy/streamed.rs`). A REST operation that reads fields from its body is judged on
/// all of it, so its body is read whole (a clear 413 past the limit), as is a body with a
/// `Content-Encoding`, decoded before it is judged and sent on decoded.
pub(super) async fn read_body(
    snap: &Snapshot,
    route: &Route,
    head: &mut http::request::Parts,
    body: Incoming,
) -> Result<(Bytes, Option<Incoming>), BodyError> {
    let path = route.rest(head.uri.path());
    let whole = route.protocol != Protocol::Rest
        || rest::reads_body(route.operations.as_deref(), &head.method, path);
    let read = body::read_for_inspection(
        body,
        head,
        &snap.config.limits,
        whole,
        snap.config.inspect.stream_above,
    )
    .await?;
    Ok(match read {
        Head::Whole(body) => (body, None),
        Head::Streaming(first, rest) => (first, Some(rest)),
    })
}

/// After identify: a quarantined agent (or one of a quarantined group) goes no further.
pub(super) fn quarantine(ex: &Exchange, principal: &Principal) -> Result<(), Refusal> {
    match ex.shared().quarantines.check(principal) {
        Some(record) => Err(Refusal::Quarantined(record)),
        None => Ok(()),
    }
}

/// Inspect: what the request's content shows before it leaves, for policy to judge, and any
/// canary token in it, in its bytes and as its receiver decodes them (`inspect/decoded.rs`):
/// a canary found only once decoded is located at the string, pair or URI it came from.
pub(super) fn inspect(snap: &Snapshot, ex: &Exchange, action: &mut Action, body: &[u8]) {
    let decoded = inspect::inspect_body(
        &mut action.context.findings,
        body,
        ex.multipart_boundary(),
        &snap.config.inspect,
    );
    look_for_canaries(ex, action, body, "body");
    if let Some(decoded) = decoded
        && !canary::hit(&action.context.findings)
        && let Some(canaries) = ex.shared().canaries()
        && canaries.present(&decoded.text)
    {
        for (text, from, how) in decoded.pieces() {
            let place = format!("body, byte {from}, in {how}");
            canaries.inspect(action, text, &place, ex.request_id());
        }
    }
}

/// Headers not inspected on a route's request (LLM or REST): those Warden strips before it
/// leaves (the agent's Warden credential; the connector's own credential is injected after
/// inspection). Everything else in the head goes upstream as the agent sent it, `Cookie`
/// included.
const ROUTE_UNINSPECTED: [http::HeaderName; 5] = [
    http::header::AUTHORIZATION,
    http::header::PROXY_AUTHORIZATION,
    http::HeaderName::from_static("x-api-key"),
    http::HeaderName::from_static("api-key"),
    http::HeaderName::from_static("x-goog-api-key"),
];

/// Inspect, for an LLM or a REST route: its target (path and query, percent-decoded) and the header
/// values that go upstream, with the content detectors and for canary tokens, as the egress
/// proxy does. The target is read as the agent `sent` it (when it goes upstream otherwise, as
/// judged: parameters folded), so that folding hides no secret from the detectors, and as it
/// goes upstream, for what folding made (a look-alike folded into a key): what only the latter
/// shows is added. A finding in the url keeps the path out of the decision record.
pub(super) fn inspect_head(
    snap: &Snapshot,
    ex: &Exchange,
    action: &mut Action,
    head: &http::request::Parts,
    sent: Option<&http::Uri>,
) {
    let findings = &mut action.context.findings;
    inspect::inspect_head(
        findings,
        sent.unwrap_or(&head.uri),
        &head.headers,
        &ROUTE_UNINSPECTED,
        &snap.config.inspect,
    );
    if sent.is_some() {
        inspect::inspect_url_also(findings, &head.uri, &snap.config.inspect);
    }
    let url_canaries = |action: &mut Action, uri: &http::Uri| {
        if let Some(target) = uri.path_and_query() {
            look_for_canaries(ex, action, &inspect::decoded_target(target), "url");
        }
    };
    url_canaries(action, sent.unwrap_or(&head.uri));
    // A canary the agent sent is found once; one only folding made, in what goes.
    if sent.is_some() && !canary::hit(&action.context.findings) {
        url_canaries(action, &head.uri);
    }
    let mut headers = Vec::new();
    for (name, value) in &head.headers {
        if !ROUTE_UNINSPECTED.contains(name) {
            headers.extend_from_slice(name.as_str().as_bytes());
            headers.extend_from_slice(b": ");
            headers.extend_from_slice(value.as_bytes());
            headers.push(b'\n');
        }
    }
    look_for_canaries(ex, action, &headers, "headers");
}

/// Any canary token in `haystack` (`place` of the request) becomes a `canary` finding.
pub(super) fn look_for_canaries(ex: &Exchange, action: &mut Action, haystack: &[u8], place: &str) {
    if let Some(canaries) = ex.shared().canaries() {
        canaries.inspect(action, haystack, place, ex.request_id());
    }
}

/// Limit: the action counted against its agent's caps (`limits.max_in_flight_per_agent`, and
/// `egress.max_tunnels_per_agent` for a `CONNECT`) and the rate and concurrency limits
/// (`rate_limits:`); its places in flight are kept until the response ends (a tunnel's until
/// it closes).
pub(super) fn limit(snap: &Snapshot, ex: &mut Exchange, action: &Action) -> Result<(), Refusal> {
    let caps = AgentCaps {
        in_flight: Some(snap.config.limits.max_in_flight_per_agent),
        tunnels: matches!(action.verb, Verb::EgressConnect)
            .then_some(snap.config.egress.max_tunnels_per_agent),
    };
    let mut subject = Subject::of(action);
    // A model priced or named by a loaded policy is a real one: counted by its name.
    subject.model_configured = subject.model.is_some_and(|model| {
        snap.config.budgets.table.names(model) || snap.policy.names_model(model)
    });
    let permit = ex
        .shared()
        .limits
        .admit(&snap.config.rate_limits, caps, &subject)?;
    ex.admitted(permit);
    Ok(())
}

/// Session: what the agent's session did before `action` (`context.session`), when a loaded
/// policy reads it; the action is remembered in it once decided and not denied. And what the
/// agent has left of its budgets (`context.budget`), when a loaded policy reads that, the
/// other calls in flight's reservations counted as spent (an LLM call reserves its own first:
/// [`reserve`]): refused when the fleet's spend is too old to decide on
/// (`budgets.on_stale: refuse`).
pub(super) fn recall(
    snap: &Snapshot,
    ex: &Exchange,
    action: &mut Action,
    named: Named<'_>,
) -> Result<(), Refusal> {
    if snap.policy.reads_budget() {
        action.context.budget = ex.shared().budgets.judge(
            &snap.config.budgets,
            &action.principal,
            action.context.time,
            ex.reservation(),
        )?;
    }
    if snap.policy.reads_session() {
        let facts = ex
            .shared()
            .sessions
            .facts(&snap.config.sessions, action, named);
        action.context.session = Some(Box::new(facts));
    }
    Ok(())
}

/// Reserve: an LLM call a budget bounds reserves its worst-case cost before it is judged, so
/// that every call judged after it counts it as spent until its response ends
/// (`fleet/budget/reserve.rs`). Reserved before, not after, the decision: two calls judged at
/// once each see the other's (the later always sees the earlier's), never the same budget twice.
pub(super) fn reserve(snap: &Snapshot, ex: &mut Exchange, action: &Action) {
    ex.reserve(&snap.config.budgets, &action.principal, action.context.time);
}

/// Hold, once an LLM call that waited for its approval is approved: it held its reservation on
/// its agent's own budgets only while it waited ([`open`]); it reserves on its groups' and the
/// fleet's again, and, when a loaded policy reads `context.budget`, policy judges it again on
/// what its budgets have left now (their spend, and the other calls in flight, may have grown
/// while it waited; nothing else of the action has changed). It goes on when policy allows it
/// or asks for the approval it went on with; denied then — the group ran out meanwhile — or
/// needing an approval under another policy (one that asks for approval past a share of the
/// budget), it is refused (with policy's reasons, or `another_approval_required`: the same
/// request sent again asks for that approval), recorded (`approved_call_refused_for_budget`),
/// and never sent ([`approval::still_approved`]); spend too old to decide on refuses it as
/// [`recall`] would.
pub(super) fn budget_once_approved(
    snap: &Snapshot,
    ex: &mut Exchange,
    action: &mut Action,
) -> Result<(), Refusal> {
    let budgets = &snap.config.budgets;
    let now = SystemTime::now();
    if !ex.reserve_again(budgets, &action.principal, now) || !snap.policy.reads_budget() {
        return Ok(());
    }
    action.context.budget =
        ex.shared()
            .budgets
            .judge(budgets, &action.principal, now, ex.reservation())?;
    let decision = snap.policy.decide(action);
    let judged = match ex.approval_used() {
        Some(approved) => approval::still_approved(&decision, approved),
        // Held on its agent's budgets only while an approval was pending, it goes on only
        // approved: never here, and refused as unapproved if it were.
        None => approval::hold(&decision),
    };
    let Err(refused) = judged else {
        return Ok(());
    };
    ex.refused_after_approval(&decision, action.context.budget.as_ref());
    Err(Refusal::Hold(refused))
}

/// Decide: Cedar's verdict on the action, recorded durably before anything else happens;
/// the record keeps `content` (the body, or a tool call's arguments, credentials masked) with
/// `audit.record_content`, else a REST operation's or a plain-HTTP egress request's body (and
/// any request that needs an approval) as its digest. A deny of `@on_match("redact")` forbids
/// redacts `content` in place and judges it again (`proxy/redaction.rs`).
pub(super) async fn decide(
    snap: &Snapshot,
    ex: &mut Exchange,
    action: &mut Action,
    content: &mut Bytes,
) -> Result<Decision, Refusal> {
    decide_with(snap, ex, action, content, |decision| decision).await
}

/// Decide, with `adjust` applied to Cedar's verdict before it is recorded (the egress
/// proxy's internal-address guard).
pub(super) async fn decide_with(
    snap: &Snapshot,
    ex: &mut Exchange,
    action: &mut Action,
    content: &mut Bytes,
    adjust: impl FnOnce(Decision) -> Decision,
) -> Result<Decision, Refusal> {
    let t = Instant::now();
    let (enforced, redacted) = redaction::judge(snap, action, content, ex.multipart_boundary());
    let action = &*action;
    let policy_seconds = t.elapsed().as_secs_f64();
    // The shadow set is judged beside the enforced one, outside the time policy took.
    let audit = &snap.config.audit;
    let shadow = snap.policy.shadow_difference(action, &enforced);
    let cedar = enforced.label();
    let adjusted = adjust(enforced);
    let adjusted_label = adjusted.label();
    // A canary token is a leak whatever policy says (replay judges it so again).
    let decision = canary::overrule(adjusted, &action.context.findings);
    let judged_label = decision.label();
    let decision = triggers(snap, ex, action, decision);
    let judged = Judged {
        version: Arc::clone(snap.policy.version()),
        shadow,
        facts: audit.decision_facts.then(|| {
            let facts = crate::policy::facts::of(
                action,
                audit.record_content,
                audit.decision_facts_max_bytes,
            );
            // An LLM call's facts hold no free text (model, limits, tool names), and the
            // others' may (a REST operation's fields; a tool call's arguments with
            // `record_content`): only those are masked, sparing every chat a second scan.
            let plain = matches!(action.context.facts, Facts::Llm(_) | Facts::None);
            match audit.record_content || !plain {
                true => facts.and_then(|facts| credentials_masked(facts, &snap.config.inspect)),
                false => facts,
            }
        }),
        overruled_by: overruled_by(cedar, adjusted_label, judged_label, decision.label()),
    };
    redaction::count(action, &decision, &redacted);
    if let Some(session) = &action.context.session
        && !matches!(decision, Decision::Deny { .. })
        && ex.remembered_in_session()
    {
        ex.shared()
            .sessions
            .remember(&snap.config.sessions, session);
    }
    // An approval is bound to the exact request: what waits for one is digested whatever
    // its kind (an LLM call's prompt too), so other arguments are another action; a REST or
    // egress request's digest covers where it goes too (its body alone does not say).
    if matches!(decision, Decision::NeedsApproval { .. })
        && let Some(target) = approval_target(action, ex.query(), ex.bound_headers())
    {
        let mut bound = target.into_bytes();
        bound.push(b'\n');
        bound.extend_from_slice(content);
        ex.digested(Arc::from(super::exchange::digest(&bound)));
        if audit.record_content
            && let Some(shown) = approval_body(content, &snap.config.inspect)
        {
            ex.show_body(shown);
        }
    }
    let canary = canary::hit(&action.context.findings);
    let content: &[u8] = content;
    // Recorded content never holds a credential: each is its detector's placeholder.
    let masked = (audit.record_content && !canary)
        .then(|| inspect::redact::credentials_masked(content, &snap.config.inspect))
        .flatten();
    let content = match (audit.record_content, &action.context.facts, &decision) {
        // A canary's value is never recorded.
        (true, _, _) if canary => Content::Digest(content),
        (true, _, _) => Content::Recorded(masked.as_deref().unwrap_or(content)),
        (false, Facts::Http(_) | Facts::Egress(_), _)
        | (false, _, Decision::NeedsApproval { .. }) => Content::Digest(content),
        (false, _, _) => Content::Omitted,
    };
    // The record names what was redacted (detector and location, never the value).
    let recorded = if redacted.is_empty() {
        std::borrow::Cow::Borrowed(&action.context.findings)
    } else {
        let mut all = action.context.findings.clone();
        all.0.extend(redacted);
        std::borrow::Cow::Owned(all)
    };
    ex.record_decision(
        &decision,
        judged,
        &recorded,
        content,
        policy_seconds,
        audit.fail_closed,
    )
    .await?;
    Ok(decision)
}

/// `facts` (which hold a tool call's arguments with `audit.record_content`) with every
/// credential masked, as recorded content is.
fn credentials_masked(
    facts: crate::audit::event::RawJson,
    config: &inspect::InspectConfig,
) -> Result<crate::audit::event::RawJson, &'static str> {
    let Some(masked) = inspect::redact::credentials_masked(facts.get().as_bytes(), config) else {
        return Ok(facts);
    };
    serde_json::from_slice::<Box<serde_json::value::RawValue>>(&masked)
        .and_then(|raw| crate::audit::event::RawJson::of(&raw))
        .map_err(|_| "facts hold a credential")
}

/// What made the decision beyond policy, from its labels along the way: Cedar's verdict, after
/// the `adjust` of [`decide_with`], after the canary check (which replay judges again) and
/// after the quarantine triggers.
fn overruled_by(cedar: &str, adjusted: &str, judged: &str, last: &str) -> Option<&'static str> {
    if last != judged {
        Some(crate::policy::facts::OVERRULED_BY_QUARANTINE)
    } else if adjusted != cedar {
        Some(crate::policy::facts::OVERRULED_BY_INTERNAL_ADDRESS)
    } else {
        None
    }
}

/// The quarantine triggers on a decision: when one fires, the agent is quarantined and a
/// request that policy would have let go on is denied with the quarantine's reason. What is
/// not the agent's own doing (a request an MCP server sends it) feeds none of them: a server
/// could otherwise get an honest agent quarantined by asking what policy denies (its
/// refusals are counted against the server, `warden_mcp_server_requests_denied_total`).
fn triggers(snap: &Snapshot, ex: &Exchange, action: &Action, decision: Decision) -> Decision {
    if !ex.remembered_in_session() {
        return decision;
    }
    let quarantines = &ex.shared().quarantines;
    let config = &snap.config.fleet.quarantine.triggers;
    if !quarantines.after_decision(config, &snap.policy, action, &decision) {
        return decision;
    }
    match (decision, quarantines.check(&action.principal)) {
        (Decision::Deny { reasons, policies }, _) => Decision::Deny { reasons, policies },
        (_, Some(record)) => Decision::Deny {
            reasons: vec![crate::fleet::quarantine::message(&record)],
            policies: Vec::new(),
        },
        (decision, None) => decision,
    }
}

/// Hold: an allowed request goes on; one that needs a human's approval goes on once the
/// approval gate has it approved (it waits, or is answered "pending"); any other stops.
/// A request answered with an event stream whose approval is pending waits for it in that
/// stream ([`Held::InStream`], `proxy/held.rs`) when requests wait (`approvals.mode: wait`).
/// An LLM call's approvers are shown what it asks (its `body`'s last user message, masked)
/// when `audit.record_content` lets request content be kept.
pub(super) async fn hold(
    ex: &mut Exchange,
    action: &Action,
    decision: &Decision,
    body: &[u8],
) -> Result<Held, Refusal> {
    let prompt = match (&action.context.facts, decision) {
        (Facts::Llm(_), Decision::NeedsApproval { .. }) => {
            let snap = ex.shared().snapshot.load();
            snap.config
                .audit
                .record_content
                .then(|| approval::prompt::shown(body, &snap.config.inspect))
                .flatten()
        }
        _ => None,
    };
    let Some(approval) = open(ex, action, decision, prompt).await? else {
        return Ok(Held::Released);
    };
    if ex.streams_events()
        && approval.opened.is_pending()
        && let Some(every) = approval.gate.keepalive()
    {
        return Ok(Held::InStream(Box::new(Waiting { approval, every })));
    }
    approval.settle(ex).await?;
    Ok(Held::Released)
}

/// Hold, for a request answered only once it is settled (an MCP message): as [`hold`], with
/// any wait here.
pub(super) async fn hold_here(
    ex: &mut Exchange,
    action: &Action,
    decision: &Decision,
) -> Result<(), Refusal> {
    match open(ex, action, decision, None).await? {
        Some(approval) => approval.settle(ex).await,
        None => Ok(()),
    }
}

/// What the hold stage lets through.
pub(super) enum Held {
    /// Allowed, or approved (the approval used): the request goes on.
    Released,
    /// It waits for its approval in its event stream, answered at once.
    InStream(Box<Waiting>),
}

/// A streamed request's approval, to be settled while its stream is kept alive.
pub(super) struct Waiting {
    /// The approval.
    pub approval: Approval,
    /// How often the stream carries a keep-alive comment meanwhile.
    pub every: std::time::Duration,
}

/// An approval the hold stage found or opened for an action.
pub(super) struct Approval {
    gate: Arc<Gate>,
    opened: Opened,
    /// Whose action it is: checked for a quarantine again once approved.
    principal: Arc<Principal>,
}

impl Approval {
    /// Its id.
    pub fn id(&self) -> &str {
        self.opened.id()
    }

    /// Waits for it (in `wait` mode) and, approved, uses it and records so; else why the
    /// request does not go on. An agent quarantined, or a token revoked, while its action
    /// waited is refused although a human approved: both were checked when the request came,
    /// and an approver may not know of them.
    pub async fn settle(self, ex: &mut Exchange) -> Result<(), Refusal> {
        let approved = self.gate.conclude(self.opened).await;
        release(ex, &self.principal, approved?)
    }

    /// As [`Approval::settle`], for a request that cannot be sent again (a server's request
    /// to the agent): it waits, whatever `approvals.mode`, until decided or expired, or until
    /// `withdrawn` says why the request no longer exists: then the approval is withdrawn
    /// (recorded, `approval_withdrawn`) and the request refused.
    pub async fn settle_unless_withdrawn(
        self,
        ex: &mut Exchange,
        withdrawn: impl Future<Output = String>,
    ) -> Result<(), Refusal> {
        let Approval {
            gate,
            opened,
            principal,
        } = self;
        let id = opened.id().to_owned();
        let approved = tokio::select! {
            approved = gate.decided(opened) => approved,
            why = withdrawn => {
                let hold = gate.withdraw(&id, &why).await;
                ex.withdrawn(&id, &why);
                Err(hold)
            }
        };
        release(ex, &principal, approved?)
    }
}

/// An approved request goes on, the approval recorded as used, unless its agent was
/// quarantined or its token revoked while it waited.
fn release(
    ex: &mut Exchange,
    principal: &Principal,
    approved: approval::gate::Approved,
) -> Result<(), Refusal> {
    quarantine(ex, principal)?;
    ex.token_still_valid()?;
    ex.approved(approved);
    Ok(())
}

/// The approval `decision` asks for, found or opened (approvers told, and shown `prompt` when
/// given); `None` when the decision allows; a refusal when it denies or no gate can approve.
/// A server's request to the agent settles it where it waits (`proxy/mcp/server_requests.rs`).
pub(super) async fn open(
    ex: &mut Exchange,
    action: &Action,
    decision: &Decision,
    prompt: Option<serde_json::Value>,
) -> Result<Option<Approval>, Refusal> {
    let (Decision::NeedsApproval { .. }, Some(gate)) = (decision, ex.shared().gate().cloned())
    else {
        approval::hold(decision)?;
        return Ok(None);
    };
    let waiting = approval::gate::Waiting {
        digest: ex.approval_digest(),
        principal: format!(
            "{}::{:?}",
            action.principal.kind.cedar_type(),
            &*action.principal.id
        ),
        agent: action.principal.id.to_string(),
        action: action.verb.as_str().to_owned(),
        resource: action.resource.cedar_ref(),
        context: approval_context(action, prompt, ex.take_shown_body(), ex.bound_headers()),
    };
    let opened = gate.open(decision, waiting).await?;
    if opened.is_pending() {
        // Awaiting a human, maybe for minutes: the call holds its agent's own budgets only
        // ([`budget_once_approved`] reserves on the others again).
        ex.reserve_on_agent_only();
    }
    Ok(Some(Approval {
        gate,
        opened,
        principal: Arc::clone(&action.principal),
    }))
}

/// Most bytes of a held request's body approvers are shown.
const APPROVAL_BODY_MAX: usize = 16 * 1024;

/// What approvers are shown of the body of a REST call or plain-HTTP egress request that waits
/// for them (only when `audit.record_content` lets request content be kept): every detector's
/// match masked (`[REDACTED:<detector>]`), then JSON as JSON, other text as text, at most
/// [`APPROVAL_BODY_MAX`] bytes (`{"truncated": <text>}` past that). `None` for an empty body.
pub(super) fn approval_body(
    body: &[u8],
    config: &inspect::InspectConfig,
) -> Option<serde_json::Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let masked = inspect::redact::redact(body, config, &|_| true);
    let body = masked.as_ref().map_or(body, |m| &m.body[..]);
    if body.len() <= APPROVAL_BODY_MAX
        && let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
    {
        return Some(json);
    }
    let text = String::from_utf8_lossy(body);
    if body.len() <= APPROVAL_BODY_MAX {
        return Some(serde_json::Value::from(text.into_owned()));
    }
    let cut = (0..=APPROVAL_BODY_MAX)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    Some(serde_json::json!({ "truncated": &text[..cut] }))
}

/// What approvers are shown of `action`: the arguments of a tool call or the facts of the
/// request (a REST call's declared fields, an egress destination's port, scheme and path) and,
/// when the configuration keeps request content, its body (`body`, [`approval_body`]), what
/// inspection found in it (detector and location, never the content), what an LLM call asks
/// (`prompt`, when it may be shown), and who owns the agent (they may not approve its actions
/// themselves).
fn approval_context(
    action: &Action,
    prompt: Option<serde_json::Value>,
    body: Option<serde_json::Value>,
    headers: Option<&BoundHeaders>,
) -> serde_json::Value {
    let mut context = match &action.context.facts {
        Facts::Tool(tool) => serde_json::json!({ "arguments": &*tool.arguments }),
        Facts::Http(http) => {
            let mut facts = serde_json::json!({ "method": http.method, "path": http.path });
            if let Some(fields) = &http.fields {
                facts["fields"] = serde_json::json!(Fields(fields));
            }
            if !http.undeclared.is_empty() {
                facts["undeclared_fields"] = undeclared_fields(&http.undeclared, body.is_some());
            }
            facts
        }
        Facts::Egress(egress) => serde_json::json!({
            "port": egress.port, "addresses": egress.addresses, "scheme": egress.scheme,
            "sni": egress.sni, "method": egress.method, "path": egress.path,
        }),
        Facts::Llm(llm) => serde_json::json!({
            "stream": llm.stream, "max_tokens": llm.max_tokens, "tools": llm.tools,
            "input_tokens": llm.input_tokens,
        }),
        Facts::Sample(sample) => serde_json::json!({
            "max_tokens": sample.max_tokens, "include_context": sample.include_context,
            "model_hints": sample.model_hints, "system_prompt_bytes": sample.system_prompt_bytes,
            "messages": sample.messages,
        }),
        Facts::Elicit(elicit) => serde_json::json!({
            "mode": elicit.mode, "field_names": elicit.field_names,
        }),
        _ => serde_json::json!({}),
    };
    if let Some(body) = body {
        context["body"] = body;
    }
    if let Some(headers) = headers {
        // Which of the bound headers were sent, never their values.
        context["headers"] = serde_json::json!(headers.names());
    }
    context["findings"] = action
        .context
        .findings
        .0
        .iter()
        .map(|f| serde_json::json!({ "detector": &*f.detector, "location": bounded(&f.location, FIELD_MAX) }))
        .collect();
    if let Some(owner) = &action.principal.owner {
        context["owner"] = serde_json::Value::from(&**owner);
    }
    if let Some(prompt) = prompt {
        context["prompt"] = prompt;
    }
    context
}

/// Most names of undeclared body fields approvers are shown.
const UNDECLARED_NAMES_MAX: usize = 20;

/// What approvers are told of a REST body's keys that no declared field reads (no policy
/// judged them): how many, and their names (at most [`UNDECLARED_NAMES_MAX`]) only when the
/// body itself is shown (`audit.record_content`), for names are request content too.
fn undeclared_fields(names: &[String], shown: bool) -> serde_json::Value {
    let mut said = serde_json::json!({ "count": names.len() });
    if shown {
        said["names"] = names
            .iter()
            .take(UNDECLARED_NAMES_MAX)
            .map(String::as_str)
            .collect();
    }
    said
}

/// Where a REST or egress request goes, as its approval binds to it besides its body: a REST
/// call's method, path (with its parameters), query and declared fields; an egress request's
/// scheme, port, method, path, query and the digest of its bound headers (`headers`:
/// `bound_headers.rs`). `None` for other actions, whose arguments or prompt say it all.
fn approval_target(
    action: &Action,
    query: Option<&str>,
    headers: Option<&BoundHeaders>,
) -> Option<String> {
    let query = query.map_or_else(String::new, |q| format!("?{q}"));
    match &action.context.facts {
        Facts::Http(http) => Some(format!(
            "warden-target/v1 {} {}{query} {}",
            http.method,
            http.path,
            serde_json::json!(Fields(http.fields.as_deref().unwrap_or_default()))
        )),
        Facts::Egress(egress) => Some(format!(
            "warden-target/v1 {} {} {} {}{query} {}",
            egress.scheme,
            egress.port,
            egress.method.as_deref().unwrap_or("CONNECT"),
            egress.path.as_deref().unwrap_or(""),
            headers.map_or("", BoundHeaders::digest),
        )),
        _ => None,
    }
}

/// Credential: Cedar's `secret:use` on the secret path a principal's attributes chose
/// (`secret/agents/{principal.owner}/github`), judged in the request's circumstances.
pub(super) struct SecretPolicy<'a> {
    pub snap: &'a Snapshot,
    pub action: &'a Action,
}

impl SecretGuard for SecretPolicy<'_> {
    fn check(&self, principal: &Principal, path: &str) -> Result<(), CredentialError> {
        let c = &self.action.context;
        let use_secret = Action {
            principal: Arc::clone(&self.action.principal),
            verb: Verb::SecretUse,
            resource: Resource::Secret {
                path: path.to_owned(),
            },
            context: ActionContext {
                route: Arc::clone(&c.route),
                time: c.time,
                source_ip: c.source_ip,
                tls: c.tls,
                client_certificate: c.client_certificate.clone(),
                findings: c.findings.clone(),
                facts: Facts::None,
                session: None,
                budget: None,
            },
        };
        match self.snap.policy.decide(&use_secret) {
            Decision::Allow { .. } => Ok(()),
            denied => Err(CredentialError::Forbidden {
                principal: principal.id.to_string(),
                path: path.to_owned(),
                reason: denied.reasons().join("; "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::json;

    use super::*;
    use crate::action::{Finding, ToolFacts};

    fn call(findings: Vec<Finding>) -> Action {
        Action {
            principal: Arc::new(Principal {
                id: Arc::from("ci-bot"),
                owner: Some(Arc::from("carol")),
                ..Principal::anonymous()
            }),
            verb: Verb::McpCallTool,
            resource: Resource::Tool {
                server: Arc::from("github"),
                name: "create_issue".to_owned(),
            },
            context: ActionContext {
                route: Arc::from("mcp"),
                time: UNIX_EPOCH + Duration::from_secs(1_793_613_600),
                source_ip: "10.0.0.1".parse().expect("ip"),
                tls: true,
                client_certificate: None,
                findings: Findings(findings),
                facts: Facts::Tool(ToolFacts {
                    arguments: Arc::new(json!({"title": "deploy"})),
                }),
                session: None,
                budget: None,
            },
        }
    }

    #[test]
    fn approvers_see_the_arguments_the_owner_and_what_inspection_found() {
        let action = call(vec![Finding {
            detector: Arc::from("private_key"),
            location: "params.arguments.body".to_owned(),
        }]);
        assert_eq!(
            approval_context(&action, None, None, None),
            json!({
                "arguments": {"title": "deploy"},
                "findings": [{"detector": "private_key", "location": "params.arguments.body"}],
                "owner": "carol",
            })
        );
        assert_eq!(
            approval_context(&call(Vec::new()), None, None, None)["findings"],
            json!([])
        );
    }

    #[test]
    fn an_approval_binds_where_a_rest_or_egress_request_goes() {
        use crate::action::{EgressFacts, FieldValue, HttpFacts};
        let rest = |path: &str, repo: &str| {
            let mut action = call(Vec::new());
            action.context.facts = Facts::Http(HttpFacts {
                method: "DELETE".to_owned(),
                path: path.to_owned(),
                fields: Some(vec![(
                    Arc::from("repo"),
                    FieldValue::String(repo.to_owned()),
                )]),
                undeclared: Vec::new(),
            });
            action
        };
        let scratch = approval_target(&rest("/repos/acme/scratch", "scratch"), None, None);
        assert!(scratch.is_some());
        assert_ne!(
            scratch,
            approval_target(&rest("/repos/acme/prod", "scratch"), None, None)
        );
        assert_ne!(
            scratch,
            approval_target(&rest("/repos/acme/scratch", "prod"), None, None)
        );
        assert_ne!(
            scratch,
            approval_target(
                &rest("/repos/acme/scratch", "scratch"),
                Some("force=true"),
                None
            )
        );
        let egress = |port: u16, method: Option<&str>, path: Option<&str>| {
            let mut action = call(Vec::new());
            action.context.facts = Facts::Egress(EgressFacts {
                port,
                scheme: "http".to_owned(),
                method: method.map(str::to_owned),
                path: path.map(str::to_owned),
                ..Default::default()
            });
            action
        };
        let health = approval_target(&egress(80, Some("GET"), Some("/health")), None, None);
        for other in [
            approval_target(&egress(80, Some("DELETE"), Some("/all")), None, None),
            approval_target(&egress(8080, Some("GET"), Some("/health")), None, None),
            approval_target(
                &egress(80, Some("GET"), Some("/health")),
                Some("drop=1"),
                None,
            ),
            approval_target(&egress(22, None, None), None, None),
        ] {
            assert_ne!(health, other);
        }
        // Another credential, cookie or content type is another request to approve.
        let mut sent = http::HeaderMap::new();
        sent.insert("authorization", "Bearer a".parse().expect("value"));
        let bound = BoundHeaders::of(&sent, &[], &super::super::bound_headers::test_key(1));
        let with_a = approval_target(&egress(80, Some("POST"), Some("/x")), None, Some(&bound));
        sent.insert("authorization", "Bearer b".parse().expect("value"));
        let bound = BoundHeaders::of(&sent, &[], &super::super::bound_headers::test_key(1));
        let with_b = approval_target(&egress(80, Some("POST"), Some("/x")), None, Some(&bound));
        assert_ne!(with_a, with_b);
        assert!(!with_a.unwrap_or_default().contains("Bearer"));
        // A tool call's arguments say where it goes: nothing to add.
        assert_eq!(approval_target(&call(Vec::new()), Some("x=1"), None), None);
    }

    #[test]
    fn approvers_see_a_rest_calls_fields_and_an_egress_destination() {
        use crate::action::{EgressFacts, FieldValue, HttpFacts};
        let mut action = call(Vec::new());
        action.context.facts = Facts::Http(HttpFacts {
            method: "POST".to_owned(),
            path: "/chat.postMessage".to_owned(),
            fields: Some(vec![
                (
                    Arc::from("channel"),
                    FieldValue::String("#general".to_owned()),
                ),
                (Arc::from("unfurl"), FieldValue::Bool(false)),
            ]),
            undeclared: Vec::new(),
        });
        let shown = approval_context(&action, None, None, None);
        assert_eq!(shown["method"], "POST");
        assert_eq!(shown["path"], "/chat.postMessage");
        assert_eq!(
            shown["fields"],
            json!({"channel": "#general", "unfurl": false})
        );
        action.context.facts = Facts::Egress(EgressFacts {
            port: 443,
            addresses: vec!["203.0.113.7".parse().expect("ip")],
            scheme: "connect".to_owned(),
            ..Default::default()
        });
        let mut sent = http::HeaderMap::new();
        sent.insert("cookie", "session=secret".parse().expect("value"));
        let bound = BoundHeaders::of(&sent, &[], &super::super::bound_headers::test_key(1));
        let shown = approval_context(&action, None, None, Some(&bound));
        assert_eq!(shown["headers"], json!(["cookie"]));
        assert!(!shown.to_string().contains("session=secret"));
        assert_eq!(shown["port"], 443);
        assert_eq!(shown["scheme"], "connect");
        assert_eq!(shown["addresses"], json!(["203.0.113.7"]));
    }

    #[test]
    fn a_rest_head_is_inspected_but_for_the_agents_warden_credential() {
        let key = "AKIAIOSFODNN7EXAMPLE";
        let uri: http::Uri = format!("/github/repos/acme/app?note=k%3D{key}")
            .parse()
            .unwrap();
        let mut headers = http::HeaderMap::new();
        for name in ["authorization", "x-api-key", "api-key", "x-goog-api-key"] {
            headers.insert(name, format!("Bearer {key}").parse().unwrap());
        }
        headers.insert("cookie", format!("s={key}").parse().unwrap());
        headers.insert("x-note", key.parse().unwrap());
        let mut findings = Findings::none();
        inspect::inspect_head(
            &mut findings,
            &uri,
            &headers,
            &ROUTE_UNINSPECTED,
            &inspect::InspectConfig::default(),
        );
        let places: Vec<&str> = findings
            .0
            .iter()
            .map(|f| f.location.split(',').next().unwrap_or_default())
            .collect();
        assert_eq!(
            places,
            ["url", "header cookie", "header x-note"],
            "{findings:?}"
        );
        assert!(inspect::found_in_url(&findings));
    }

    #[test]
    fn approvers_see_a_body_with_every_secret_masked_and_bounded() {
        let config = inspect::InspectConfig::default();
        let shown = approval_body(
            br#"{"title":"rotate","body":"key AKIAIOSFODNN7EXAMPLE"}"#,
            &config,
        )
        .expect("a body");
        assert_eq!(
            shown,
            json!({"title": "rotate", "body": "key [REDACTED:aws_access_key]"})
        );
        assert_eq!(
            approval_body(b"channel=C1&text=hi", &config),
            Some(json!("channel=C1&text=hi"))
        );
        assert_eq!(approval_body(b"  ", &config), None);
        let big = format!("{{\"text\":\"{}\"}}", "é".repeat(APPROVAL_BODY_MAX));
        let shown = approval_body(big.as_bytes(), &config).expect("a body");
        let truncated = shown["truncated"].as_str().expect("truncated text");
        assert!(truncated.len() <= APPROVAL_BODY_MAX && truncated.starts_with("{\"text\""));
        let mut action = call(Vec::new());
        action.context.facts = Facts::Http(crate::action::HttpFacts {
            method: "POST".to_owned(),
            path: "/repos/acme/app/issues".to_owned(),
            fields: None,
            undeclared: Vec::new(),
        });
        let context = approval_context(&action, None, Some(json!({"title": "rotate"})), None);
        assert_eq!(context["body"], json!({"title": "rotate"}));
        assert!(
            approval_context(&action, None, None, None)
                .get("body")
                .is_none()
        );
        assert!(context.get("undeclared_fields").is_none());
    }

    #[test]
    fn approvers_are_told_of_body_fields_no_policy_judged() {
        let mut action = call(Vec::new());
        action.context.facts = Facts::Http(crate::action::HttpFacts {
            method: "POST".to_owned(),
            path: "/chat.postMessage".to_owned(),
            fields: Some(Vec::new()),
            undeclared: vec!["as_user".to_owned(), "icon_url".to_owned()],
        });
        // Without the body (request content not kept), how many; with it, which.
        assert_eq!(
            approval_context(&action, None, None, None)["undeclared_fields"],
            json!({"count": 2})
        );
        assert_eq!(
            approval_context(&action, None, Some(json!({"as_user": true})), None)["undeclared_fields"],
            json!({"count": 2, "names": ["as_user", "icon_url"]})
        );
    }
}
