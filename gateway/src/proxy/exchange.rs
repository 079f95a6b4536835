//! The exchange: what the request path learns about one request as it walks the stages, and
//! the only place its audit records are built, its metrics counted and its access-log line
//! written.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::{Either, Full};

use super::bound_headers::BoundHeaders;
use super::egress::answer::egress_answer;
use super::refusal::{Recorded, Refusal};
use crate::action::{Action, Facts, Findings, Principal, Resource, Verb};
use crate::audit::AuditError;
use crate::audit::event::{
    AuditEvent, AuditFinding, AuditOutcome, AuditPrincipal, AuditReserved, AuditSecret,
    AuditShadow, EventKind, Text, empty_text,
};
use crate::audit::receipt::{self, Receipt};
use crate::decision::Decision;
use crate::fleet::budget::estimate::Estimate;
use crate::fleet::budget::plausible::{self, Ceiling, Implausible};
use crate::fleet::budget::{BudgetsConfig, Reservation, reserve};
use crate::fleet::limits::Permit;
use crate::listener::ConnInfo;
use crate::mcp::EventBody;
use crate::observe::{Complete, ObservedBody, Read};
use crate::policy::ShadowDifference;
use crate::protocol::{self, Shape, Usage};
use crate::route::Route;
use crate::secrets::redact::{Echo, Redactor};
use crate::secrets::{Credential, SecretOrigin};
use crate::shared::Shared;
use crate::telemetry::metrics::RequestMetrics;
use crate::telemetry::trace::{Answered, OpenSpans, RequestTrace};
use crate::text::{FIELD_MAX, bounded};

/// The body of every proxy response: a small complete body, an upstream stream observed as it
/// passes, or an event stream Warden writes (MCP; a streamed request that waits for its
/// approval).
pub type ProxyBody = Either<Full<Bytes>, Either<ObservedBody<PendingOutcome>, EventBody>>;

/// What a decision record keeps of the request's content.
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    /// The content itself (`audit.record_content`): as JSON when it is JSON, else as text.
    Recorded(&'a [u8]),
    /// Its SHA-256, when it is not empty.
    Digest(&'a [u8]),
    /// Nothing.
    Omitted,
}

/// Which policy set decided, and what its shadow set would have decided instead.
#[derive(Debug)]
pub struct Judged {
    /// The deciding set's version.
    pub version: Text,
    /// The shadow set's differing decision, if any.
    pub shadow: Option<ShadowDifference>,
    /// What the decision record carries for replay (`policy/facts.rs`), or why nothing;
    /// `None` with `audit.decision_facts: false`.
    pub facts: Option<Result<crate::audit::event::RawJson, &'static str>>,
    /// What made the decision other than policy's verdict, if anything did
    /// (`policy::facts::OVERRULED_BY_*`).
    pub overruled_by: Option<&'static str>,
}

/// One request's passage through the path.
pub struct Exchange {
    shared: Arc<Shared>,
    conn: ConnInfo,
    started: Instant,
    request_id: Text,
    decision_id: Text,
    route: Option<Arc<Route>>,
    principal: Option<Arc<Principal>>,
    /// What the Warden token that identified the agent says about itself (id, issue time),
    /// to judge it again against revocations once the request has waited.
    token: Option<crate::identity::revocation::TokenStamp>,
    /// What this judges is not the agent's own doing (a request an MCP server sends the
    /// agent): the agent's session is read for its context, and not added to.
    not_the_agents: bool,
    verb: Option<Verb>,
    /// The Cedar resource, e.g. `Model::"openai/gpt-4o"`.
    resource: Text,
    /// The model, for the token counters.
    model: Option<Arc<str>>,
    /// The model's provider, for the price of its tokens in budgets.
    provider: Option<Arc<str>>,
    /// How the route's dialect read the request, for its refusal answer.
    shape: Option<Shape>,
    decision: Option<&'static str>,
    auth_failure: Option<&'static str>,
    policy_seconds: Option<f64>,
    audit_wait_seconds: Option<f64>,
    audit_failed: bool,
    upstream_seconds: Option<f64>,
    /// Write an access log line (`log.access`).
    access_log: bool,
    /// `sha256:<hex>` of a tool call's arguments, for the decision record.
    content_digest: Option<Text>,
    /// A REST or egress request's query, when it has one (what its approval binds to besides
    /// its body); other requests' is not kept.
    query: Option<Box<str>>,
    /// A plain-HTTP egress request's headers an approval binds to.
    bound_headers: Option<Box<BoundHeaders>>,
    /// The boundary of a multipart request body (its `Content-Type`'s), whose parts inspect
    /// reads decoded.
    multipart: Option<Box<[u8]>>,
    /// decide: what approvers are shown of a held request's body (`stages::approval_body`).
    shown_body: Option<serde_json::Value>,
    /// `sha256:<hex>` of the decided action (the decision record's `action_digest`): what an
    /// approval is bound to.
    action_digest: Text,
    /// A nonce that makes an approval of this request its own ([`Exchange::approved_alone`]).
    alone: Option<String>,
    /// Where an MCP client finds how to authenticate (RFC 9728), for a 401's
    /// `WWW-Authenticate`.
    resource_metadata: Option<HeaderValue>,
    /// The Vault secret the upstream credential came from, for the outcome record.
    secret: Option<Arc<SecretOrigin>>,
    /// The injected secret's forms, to redact from the response.
    echo: Option<Arc<Echo>>,
    /// Sign a receipt of the decision (`audit.receipts`).
    receipts: bool,
    /// The decision's receipt, queued for signing; signed (with every receipt queued since)
    /// when the response is stamped, for `x-warden-receipt`.
    receipt: Option<receipt::Pending>,
    /// The request's trace (`traces:`; `None` when tracing is off), until its spans are built.
    trace: Option<Box<RequestTrace>>,
    /// Egress through the forward proxy: answered in plain text, recorded with where it goes.
    egress: Option<Box<EgressNote>>,
    /// The request's places in flight (`rate_limits:` concurrency), released when it ends.
    permit: Option<Permit>,
    /// What is redacted in a request body as it streams upstream (`streams_body`).
    streamed: Option<StreamFindings>,
    /// Warden asked the provider for a stream's usage the agent did not ask for.
    asked_usage: bool,
    /// What usage an answer to this LLM request can report (`fleet/budget/plausible.rs`).
    ceiling: Option<Ceiling>,
    /// This LLM call's worst-case cost, reserved against its agent's budgets until the
    /// response ends (`fleet/budget/reserve.rs`).
    reservation: Option<Reservation>,
    /// The approval this request went on with ([`Exchange::approved`]).
    approval_used: Option<crate::approval::gate::Approved>,
    /// The agent reads trailers (`TE: trailers`).
    accepts_trailers: bool,
    /// A decision was recorded and nothing has yet taken on the request's outcome record
    /// (an observed response, a refusal, [`Exchange::finish`]): should the exchange be dropped
    /// now (the agent went away while the upstream was called, or while an approval was
    /// awaited), its drop records the outcome.
    owes_outcome: bool,
    /// The request went upstream ([`Exchange::calls_upstream`]): the provider may have received
    /// it, and billed it, whatever becomes of the agent.
    upstream_called: bool,
    /// The upstream answered with a success and nothing has read its answer yet
    /// ([`Exchange::upstream_answered`]): refused now, the call is charged all the same.
    answer_unread: bool,
}

/// What an egress exchange records beside the usual: its kind and where it goes.
#[derive(Debug, Default)]
struct EgressNote {
    /// `connect` or `request` (metrics); empty until the target is read.
    kind: &'static str,
    /// `{host, port, addresses, classes, scheme, sni, method, path}`: each record's
    /// `detail.egress`.
    destination: Option<serde_json::Value>,
}

impl Exchange {
    /// A request that just arrived on `conn` (`req`: its head, for its trace), signing a
    /// receipt of its decision when `receipts`.
    pub fn new<B>(
        shared: Arc<Shared>,
        conn: ConnInfo,
        access_log: bool,
        receipts: bool,
        req: &http::Request<B>,
    ) -> Self {
        shared.metrics.in_flight.inc();
        let trace = shared
            .traces
            .request(req.method(), req.uri().path(), req.headers());
        Exchange {
            shared,
            conn,
            started: Instant::now(),
            request_id: new_id(),
            decision_id: empty_text(),
            action_digest: empty_text(),
            alone: None,
            route: None,
            principal: None,
            token: None,
            not_the_agents: false,
            verb: None,
            resource: empty_text(),
            model: None,
            provider: None,
            shape: None,
            decision: None,
            auth_failure: None,
            policy_seconds: None,
            audit_wait_seconds: None,
            audit_failed: false,
            upstream_seconds: None,
            access_log,
            content_digest: None,
            query: None,
            bound_headers: None,
            multipart: None,
            shown_body: None,
            resource_metadata: None,
            secret: None,
            echo: None,
            receipts,
            receipt: None,
            trace,
            egress: None,
            permit: None,
            streamed: None,
            asked_usage: false,
            ceiling: None,
            reservation: None,
            approval_used: None,
            accepts_trailers: false,
            owes_outcome: false,
            upstream_called: false,
            answer_unread: false,
        }
    }

    /// Marks this exchange as egress through the forward proxy: refusals are answered in
    /// plain text, records and metrics name it so.
    pub fn egress(&mut self) {
        self.egress = Some(Box::default());
        if let Some(trace) = &mut self.trace {
            trace.withhold_path();
        }
    }

    /// interpret, for egress: what it is (`kind`: `connect` or `request`), on which host,
    /// and where it goes (`destination`, recorded as `detail.egress`).
    pub fn egress_target(
        &mut self,
        kind: &'static str,
        verb: &Verb,
        resource: &Resource,
        destination: serde_json::Value,
    ) {
        self.verb = Some(verb.clone());
        self.resource = Arc::from(resource.cedar_ref());
        let note = self.egress.get_or_insert_with(Box::default);
        note.kind = kind;
        note.destination = Some(destination);
    }

    /// The record's `detail.egress` once set by [`Exchange::egress_target`], to complete it
    /// (the addresses of a destination looked up after its target was read).
    pub fn egress_destination(&mut self) -> Option<&mut serde_json::Value> {
        self.egress.as_mut()?.destination.as_mut()
    }

    /// Records that an MCP server offers a tool definition that is not the approved one
    /// (`detail`: `pins::PinChange::audit_detail`): a `tool_change` record, by the request
    /// that saw it.
    pub fn tool_changed(&self, detail: serde_json::Value) {
        let mut event = self.event(EventKind::ToolChange);
        event.detail = Some(detail);
        self.shared.audit.append_detached(event);
    }

    /// limit: the places in flight the request holds until its response ends.
    pub fn admitted(&mut self, permit: Option<Permit>) {
        self.permit = permit;
    }

    /// The request id (`x-request-id`).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The decision id (empty before the decision).
    pub fn decision_id(&self) -> &str {
        &self.decision_id
    }

    /// The request follows one decided earlier (an MCP task's `tasks/get`, `tasks/result`,
    /// `tasks/cancel` follow the `tools/call` that created the task): its records carry that
    /// decision's id.
    pub fn continues(&mut self, decision_id: &Text) {
        self.decision_id = Arc::clone(decision_id);
    }

    /// `sha256:<hex>` of the decided action (empty before the decision).
    pub fn action_digest(&self) -> &str {
        &self.action_digest
    }

    /// hold: the request goes on with `approved`: recorded (who approved, with which factor),
    /// and kept ([`Exchange::approval_used`]).
    pub fn approved(&mut self, approved: crate::approval::gate::Approved) {
        let mut event = self.event(EventKind::System);
        event.decision_id = Arc::clone(&self.decision_id);
        event.detail = Some(serde_json::json!({
            "event": "approval_used",
            "approval_id": approved.id,
            "action_digest": &*self.action_digest,
            "approvers": approved.approvers.iter().map(|(who, factor)| serde_json::json!({
                "approver": who, "factor": factor,
            })).collect::<Vec<_>>(),
        }));
        self.shared.audit.append_detached(event);
        self.approval_used = Some(approved);
    }

    /// The approval this request went on with, if it waited for one.
    pub fn approval_used(&self) -> Option<&crate::approval::gate::Approved> {
        self.approval_used.as_ref()
    }

    /// hold: the approval `id` this request waited for was withdrawn, `why` (the request no
    /// longer exists): recorded, with the action's digest.
    pub fn withdrawn(&mut self, id: &str, why: &str) {
        let mut event = self.event(EventKind::System);
        event.decision_id = Arc::clone(&self.decision_id);
        event.detail = Some(serde_json::json!({
            "event": "approval_withdrawn",
            "approval_id": id,
            "why": why,
            "action_digest": &*self.action_digest,
        }));
        self.shared.audit.append_detached(event);
    }

    /// What an approval of this request is bound to: the action's digest, or, for a request
    /// that is its own approval's alone ([`Exchange::approved_alone`]), a digest of it and a
    /// random nonce, so that no other request (however alike) finds or uses that approval.
    pub fn approval_digest(&self) -> String {
        match &self.alone {
            None => self.action_digest.to_string(),
            Some(nonce) => digest(format!("{} {nonce}", self.action_digest).as_bytes()),
        }
    }

    /// An approval this request waits for is its own alone: a request that cannot be sent
    /// again (an MCP server's to the agent), whose approval is withdrawn when it ends.
    pub fn approved_alone(&mut self) {
        self.alone = Some(hex::encode(rand::random::<[u8; 16]>()));
    }

    /// What the process shares (the MCP sessions, among others).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The connection the request came on.
    pub fn conn(&self) -> &ConnInfo {
        &self.conn
    }

    /// route: the request's route.
    pub fn routed(&mut self, route: &Arc<Route>) {
        self.route = Some(Arc::clone(route));
    }

    /// identify: who is calling.
    pub fn identified(&mut self, principal: &Arc<Principal>) {
        self.principal = Some(Arc::clone(principal));
    }

    /// identify: the stamp of the Warden token the agent was identified by.
    pub fn identified_by_token(&mut self, token: Option<crate::identity::revocation::TokenStamp>) {
        self.token = token;
    }

    /// What this judges is not the agent's own doing (a request an MCP server sends it): its
    /// session is read, never added to, so a server cannot spend the agent's session counts,
    /// and its decision feeds none of the agent's quarantine triggers.
    pub fn not_the_agents(&mut self) {
        self.not_the_agents = true;
    }

    /// Whether a decision on this is remembered in the agent's session.
    pub fn remembered_in_session(&self) -> bool {
        !self.not_the_agents
    }

    /// The stamp of the Warden token the agent was identified by (for what outlives this
    /// request: a tunnel's requests are judged against revocations with it).
    pub fn token(&self) -> Option<crate::identity::revocation::TokenStamp> {
        self.token.clone()
    }

    /// Refuses the request when the Warden token it came with has been revoked since it was
    /// identified (a request that waited for an approval meanwhile).
    pub fn token_still_valid(&self) -> Result<(), crate::identity::AuthError> {
        match (&self.token, &self.principal) {
            (Some(stamp), Some(principal)) => self.shared.revocations.check(&principal.id, stamp),
            _ => Ok(()),
        }
    }

    /// What cuts this request's in-flight work when its agent is quarantined or the Warden
    /// token it came with is revoked.
    pub fn cut(&self) -> Option<crate::fleet::cut::Cut> {
        let principal = self.principal.as_ref()?;
        Some(crate::fleet::cut::Cut::new(
            Arc::clone(&self.shared.quarantines),
            Arc::clone(&self.shared.revocations),
            Arc::clone(principal),
            self.token.clone(),
        ))
    }

    /// identify: why the caller could not be identified (for the metrics).
    pub fn unidentified(&mut self, code: &'static str) {
        self.auth_failure = Some(code);
    }

    /// interpret: what the request is (`facts`: what it says beyond its verb and resource),
    /// and how its dialect would answer it.
    pub fn interpreted(&mut self, verb: &Verb, resource: &Resource, facts: &Facts, shape: Shape) {
        if let (Some(trace), Some(route)) = (self.trace.as_deref_mut(), &self.route) {
            trace.interpreted(verb, resource, facts, route.protocol);
        }
        self.verb = Some(verb.clone());
        self.resource = Arc::from(resource.cedar_ref());
        if let Resource::Model { name, provider } = resource {
            self.model = Some(Arc::from(name.as_str()));
            self.provider = Some(Arc::clone(provider));
        }
        self.shape = Some(shape);
    }

    /// Whether the request is answered with an event stream (an LLM call with `stream: true`,
    /// Gemini's with `alt=sse`).
    pub fn streams_events(&self) -> bool {
        matches!(&self.shape, Some(Shape::Llm(r)) if r.streams_events())
    }

    /// interpret: a REST or egress request's query, which an approval binds to.
    pub fn bind_query(&mut self, query: Option<&str>) {
        self.query = query.map(Box::from);
    }

    /// decide: what approvers are to be shown of the body of a request that needs approval.
    pub fn show_body(&mut self, shown: serde_json::Value) {
        self.shown_body = Some(shown);
    }

    /// hold: what [`Exchange::show_body`] kept, taken.
    pub fn take_shown_body(&mut self) -> Option<serde_json::Value> {
        self.shown_body.take()
    }

    /// interpret, for a plain-HTTP egress request: the headers an approval binds to.
    pub fn bind_headers(&mut self, headers: BoundHeaders) {
        self.bound_headers = Some(Box::new(headers));
    }

    /// interpret: the request's body is multipart when its `Content-Type` says so (with a
    /// boundary), for inspect to read its encoded parts decoded.
    pub fn read_content_type(&mut self, headers: &http::HeaderMap) {
        self.multipart = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| crate::inspect::decoded::multipart::boundary(value.as_bytes()))
            .map(Box::from);
    }

    /// The boundary [`Exchange::read_content_type`] found, if any.
    pub fn multipart_boundary(&self) -> Option<&[u8]> {
        self.multipart.as_deref()
    }

    /// The headers [`Exchange::bind_headers`] kept, if any.
    pub fn bound_headers(&self) -> Option<&BoundHeaders> {
        self.bound_headers.as_deref()
    }

    /// The query [`Exchange::bind_query`] kept, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// interpret: the digest of the arguments of a tool call (or prompt, or completion).
    pub fn digested(&mut self, digest: Text) {
        self.content_digest = Some(digest);
    }

    /// route: a 401 answer names `url`, the route's protected resource metadata
    /// (`WWW-Authenticate: Bearer resource_metadata="<url>"`).
    pub fn protected_resource(&mut self, url: &str) {
        self.resource_metadata =
            HeaderValue::try_from(format!("Bearer resource_metadata=\"{url}\"")).ok();
    }

    /// decide: records `decision`, with what inspection found and what `content` says to keep
    /// of the request content, durably before anything else happens. A record that cannot be
    /// written refuses the request when `fail_closed`, and is logged and counted either way.
    pub async fn record_decision(
        &mut self,
        decision: &Decision,
        judged: Judged,
        findings: &Findings,
        content: Content<'_>,
        policy_seconds: f64,
        fail_closed: bool,
    ) -> Result<(), Refusal> {
        self.decision = Some(decision.label());
        self.policy_seconds = Some(policy_seconds);
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.decided(decision);
        }
        self.decision_id = new_id();
        let mut event = self.event(EventKind::Decision);
        decided(&self.shared, &mut event, decision, judged, findings);
        match content {
            Content::Recorded(body) => {
                event.content = Some(serde_json::from_slice(body).unwrap_or_else(|_| {
                    serde_json::Value::String(String::from_utf8_lossy(body).into_owned())
                }));
                // An approval binds to the exact request: its digest is in the action's.
                if matches!(decision, Decision::NeedsApproval { .. }) && !body.is_empty() {
                    event.content_digest = Arc::from(digest(body));
                }
            }
            Content::Digest(body) if !body.is_empty() => {
                event.content_digest = Arc::from(digest(body));
            }
            Content::Digest(_) | Content::Omitted => {}
        }
        // A tool call's arguments (read by the MCP walk), digested whatever `content` says.
        if let Some(digest) = &self.content_digest {
            event.content_digest = Arc::clone(digest);
        }
        let action_digest = receipt::action_digest(&event);
        event.action_digest = Arc::from(action_digest.as_str());
        self.action_digest = Arc::clone(&event.action_digest);
        let policies = self.receipts.then(|| event.policies.clone());
        let t = Instant::now();
        // Owed from here: the agent may go away while the record is written, which it still is.
        self.owes_outcome = true;
        let appended = self.shared.audit.append(event).await;
        self.audit_wait_seconds = Some(t.elapsed().as_secs_f64());
        match appended {
            Ok(seq) => {
                if let Some(policies) = policies {
                    self.queue_receipt(decision, action_digest, policies, seq);
                }
                Ok(())
            }
            Err(e) => {
                self.audit_failed = true;
                tracing::error!(request_id = %self.request_id, error = %e, "audit append failed");
                // A full log refuses by its own policy (audit.retention.when_full).
                if fail_closed || matches!(e, AuditError::Full { .. }) {
                    Err(Refusal::Audit(e))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// decide: queues the receipt of the decision recorded at `seq` (its batch's signed
    /// head, its claims and their inclusion proof), signed when the response is stamped.
    fn queue_receipt(
        &mut self,
        decision: &Decision,
        action_digest: String,
        policies: Vec<Text>,
        seq: u64,
    ) {
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (policies, policies_omitted) = Receipt::named(&policies);
        let receipt = Receipt {
            iss: "warden".to_owned(),
            iat,
            decision_id: self.decision_id.to_string(),
            action_digest,
            decision: decision.label().to_owned(),
            policies,
            policies_omitted,
            seq,
        };
        self.receipt = self.shared.audit.receipt(&receipt);
    }

    /// credential: what went upstream (its Vault origin is recorded; its value is redacted
    /// from the response).
    pub fn credential(&mut self, credential: &Credential) {
        self.secret.clone_from(&credential.origin);
        if !credential.echo.is_empty() {
            self.echo = Some(Arc::clone(&credential.echo));
        }
    }

    /// observe: what redacts the injected secret from the response, if anything must.
    pub fn redactor(&mut self) -> Option<Redactor> {
        self.echo.take().and_then(Redactor::new)
    }

    /// forward: the request goes upstream now: from here the provider may receive it (and bill
    /// it), so a call its agent leaves before the answer is charged ([`Exchange`]'s drop). The
    /// instant it goes, to time the upstream's answer by.
    pub fn calls_upstream(&mut self) -> Instant {
        self.upstream_called = true;
        Instant::now()
    }

    /// forward: the upstream answered with `status`: a success the provider billed, whatever
    /// Warden makes of it (observe may still refuse it unread).
    pub fn upstream_answered(&mut self, status: http::StatusCode) {
        self.answer_unread = status.is_success();
    }

    /// forward: the upstream answered (or failed) after `seconds`.
    pub fn forwarded(&mut self, seconds: f64) {
        self.upstream_seconds = Some(seconds);
        if let Some(trace) = self.trace.as_deref_mut() {
            trace.forwarded(seconds);
        }
    }

    /// credential: the upstream request's trace context names Warden's span (with tracing
    /// on; off, the agent's headers pass as they came).
    pub fn propagate(&self, headers: &mut http::HeaderMap) {
        if let Some(trace) = &self.trace {
            trace.propagate(headers);
        }
    }

    /// credential: an MCP message's `params._meta` trace context names Warden's span (with
    /// tracing on; off, the agent's `_meta` passes as it came).
    pub fn propagate_meta(&self, params: &mut serde_json::Map<String, serde_json::Value>) {
        if let Some(trace) = &self.trace {
            trace.propagate_meta(params);
        }
    }

    /// The request's spans, answered with `status` (and `refusal`'s code if refused); `None`
    /// when tracing is off, the request is not sampled, or its spans were built already.
    fn spans(
        &mut self,
        status: http::StatusCode,
        refusal: Option<&Refusal>,
    ) -> Option<Box<OpenSpans>> {
        let trace = self.trace.take()?;
        let route = self.route.as_deref();
        trace.answered(&Answered {
            request_id: &self.request_id,
            route: route.map(|r| (&*r.name, r.prefix.as_str(), &*r.provider, r.protocol)),
            upstream_host: self
                .upstream_seconds
                .and(route)
                .map(|r| r.upstream.authority.host()),
            peer: self.conn.peer.ip(),
            principal: self.principal.as_ref().map(|p| &*p.id),
            decision: self.decision,
            decision_id: &self.decision_id,
            status,
            refusal: refusal.map(|r| (r.code(), r.is_ours())),
        })
    }

    /// credential: the request body streams upstream past its first bytes; the outcome record
    /// names, once the response ends, what `redacted` holds by then: what was redacted in the
    /// body as it streamed (detector and location, never the value).
    pub fn streams_body(&mut self, redacted: StreamFindings) {
        self.streamed = Some(redacted);
    }

    /// credential: the request goes upstream asking for the usage of its stream, which the
    /// agent did not ask for (it is taken out of the answer).
    pub fn ask_usage(&mut self) {
        self.asked_usage = true;
    }

    /// interpret: what usage an answer to this LLM request can report; past it, the reported
    /// figures are clamped and the outcome record says so.
    pub fn bounds_usage(&mut self, ceiling: Ceiling) {
        self.ceiling = Some(ceiling);
    }

    /// recall: reserves this LLM call's worst-case cost (`fleet/budget/reserve.rs`) against
    /// the budgets of `config` that bound `principal`, at `now`, before it is judged; held until
    /// its response ends, however it ends.
    pub fn reserve(&mut self, config: &BudgetsConfig, principal: &Principal, now: SystemTime) {
        if config.limits.is_empty() || self.reservation.is_some() {
            return;
        }
        let (Some(Shape::Llm(request)), Some(provider)) = (&self.shape, &self.provider) else {
            return;
        };
        let Some(worst) = reserve::worst_case(request, self.ceiling.as_ref(), &config.reserve)
        else {
            return;
        };
        let model = self.model.as_deref().unwrap_or("");
        self.reservation =
            self.shared
                .budgets
                .reserve(config, principal, (provider, model), worst, now);
    }

    /// What this call reserved against its budgets ([`Exchange::reserve`]).
    pub fn reservation(&self) -> Option<&Reservation> {
        self.reservation.as_ref()
    }

    /// hold: the call waits for a human's approval: its reservation is held on its agent's own
    /// budgets only, its groups' and the fleet's given back meanwhile
    /// ([`Reservation::hold_on_agent_only`]).
    pub fn reserve_on_agent_only(&mut self) {
        if let Some(reservation) = self.reservation.as_mut() {
            reservation.hold_on_agent_only();
        }
    }

    /// hold: the call was approved after waiting: it reserves again on its groups' and the
    /// fleet's budgets (of `config`, for `principal`, at `now`); `true` when it had been held
    /// on its agent's own only, and must be judged again on them.
    pub fn reserve_again(
        &mut self,
        config: &BudgetsConfig,
        principal: &Principal,
        now: SystemTime,
    ) -> bool {
        let Some(reservation) = self.reservation.as_mut() else {
            return false;
        };
        self.shared
            .budgets
            .widen(reservation, config, principal, now)
    }

    /// hold: policy, judging an approved call again on what its budgets have left once it waited
    /// (`budget`), denies it or asks for an approval under another policy than the one it went
    /// on with (`decision`): recorded, with what was left.
    pub fn refused_after_approval(
        &mut self,
        decision: &Decision,
        budget: Option<&crate::action::BudgetFacts>,
    ) {
        let mut event = self.event(EventKind::System);
        event.decision_id = Arc::clone(&self.decision_id);
        event.policies = decision.policy_ids();
        event.reasons = decision
            .reasons()
            .into_iter()
            .map(|r| bounded(&r, FIELD_MAX).into_owned())
            .collect();
        let message = match decision {
            Decision::NeedsApproval { .. } => {
                "approved after waiting, the call was judged again on what its groups' and the \
                 fleet's budgets had left then, and needs an approval under another policy than \
                 the one it was approved under: it was not sent"
            }
            _ => {
                "approved after waiting, the call was judged again on what its groups' and the \
                 fleet's budgets had left then, and denied: it was not sent"
            }
        };
        event.detail = Some(serde_json::json!({
            "event": "approved_call_refused_for_budget",
            "decision": decision.label(),
            "approval_id": self.approval_used.as_ref().map(|a| &a.id),
            "approved_under": self.approval_used.as_ref().map(|a| &a.policy),
            "action_digest": &*self.action_digest,
            "message": message,
            "budget": budget.map(|b| serde_json::json!({
                "tokens_left": b.tokens_left,
                "cost_left_micro_usd": b.cost_left_micro_usd,
                "used_ratio_percent": b.used_ratio_percent,
                "exceeded": b.exceeded,
            })),
        }));
        self.shared.audit.append_detached(event);
    }

    /// Whether Warden asked for a usage the agent did not ([`Exchange::ask_usage`]).
    pub fn asked_usage(&self) -> bool {
        self.asked_usage
    }

    /// credential: the agent asked for trailers (`TE: trailers`); they go upstream and back.
    pub fn accept_trailers(&mut self, accepts: bool) {
        self.accepts_trailers = accepts;
    }

    /// Whether the agent reads trailers ([`Exchange::accept_trailers`]).
    pub fn accepts_trailers(&self) -> bool {
        self.accepts_trailers
    }

    /// observe: the outcome record of a response with `status`, completed when its body ends.
    pub fn outcome(&mut self, status: http::StatusCode) -> PendingOutcome {
        self.owes_outcome = false;
        // The answer is read from here, and charged by what it reports.
        self.answer_unread = false;
        let mut event = self.event(EventKind::Outcome);
        event.outcome = Some(AuditOutcome {
            status: status.as_u16(),
            upstream_ms: self.upstream_seconds.map(|s| s * 1000.0),
            reserved: self.reservation.as_ref().map(reserved),
            ..Default::default()
        });
        PendingOutcome {
            shared: Arc::clone(&self.shared),
            event,
            started: self.started,
            model: self.model.clone(),
            spender: self.principal.clone().zip(self.provider.clone()),
            estimate: match &self.shape {
                Some(Shape::Llm(request)) if status.is_success() => Estimate::of(request),
                _ => None,
            },
            ceiling: self.ceiling,
            spans: self.spans(status, None),
            permit: self.permit.take(),
            reservation: self.reservation.take(),
            streamed: self.streamed.take(),
        }
    }

    /// What records the judgements of the tunnel this exchange opened, once it is open.
    pub fn tunnel_decisions(&self) -> TunnelDecisions {
        TunnelDecisions {
            shared: Arc::clone(&self.shared),
            event: self.event(EventKind::Decision),
        }
    }

    /// observe: what records the tool calls the model proposes in the response.
    pub fn proposal_records(&self, fail_closed: bool) -> ProposalRecords {
        ProposalRecords {
            shared: Arc::clone(&self.shared),
            event: self.event(EventKind::Decision),
            fail_closed,
        }
    }

    /// How the route's dialect read the request.
    pub fn shape(&self) -> Option<&Shape> {
        self.shape.as_ref()
    }

    /// record: answers a refusal in the route's protocol shape, records what the request
    /// came to (a refusal's record; an observed response records its own outcome when its body
    /// ends), counts it, logs it, and stamps the response with the request and decision ids.
    pub async fn finish(
        mut self,
        result: Result<Response<ProxyBody>, Refusal>,
    ) -> Response<ProxyBody> {
        // Whatever the answer, it records its outcome (a refusal's below, a response's when its
        // body ends) or has none to record.
        self.owes_outcome = false;
        let mut response = match result {
            Ok(response) => response,
            Err(refusal) => self.refused(&refusal).map(Either::Left),
        };
        // A response Warden wrote itself (metadata, an MCP session's answer): its spans end now.
        if let Some(spans) = self.spans(response.status(), None) {
            spans.end(Usage::default(), None);
        }
        let route = self.route_label();
        let decision = self.decision.unwrap_or("none");
        let status = response.status();
        if let Some(note) = &self.egress {
            let kind = if note.kind.is_empty() {
                "none"
            } else {
                note.kind
            };
            self.shared
                .metrics
                .egress(kind, egress_result(self.decision, status));
        }
        let seconds = self.started.elapsed().as_secs_f64();
        self.shared.metrics.request(&RequestMetrics {
            route,
            decision,
            status,
            seconds,
            auth_failure: self.auth_failure,
            policy_seconds: self.policy_seconds,
            audit_wait_seconds: self.audit_wait_seconds,
            audit_failed: self.audit_failed,
            upstream_seconds: self.upstream_seconds,
        });
        if self.access_log {
            tracing::info!(
                request_id = %self.request_id,
                principal = self.principal.as_ref().map_or("", |p| &*p.id),
                route,
                action = self.verb.as_ref().map_or("", Verb::as_str),
                resource = %self.resource,
                decision,
                status = status.as_u16(),
                latency_ms = seconds * 1000.0,
                "request"
            );
        }
        // Last, after the request is counted and logged: the only await here (a receipt whose
        // batch another thread signs), so a client gone meanwhile loses nothing of them.
        self.stamp(response.headers_mut()).await;
        response
    }

    /// Stamps a response's `headers` with the request id, the decision id and the decision's
    /// receipt (awaited if another thread is signing its batch).
    pub async fn stamp(&mut self, headers: &mut http::HeaderMap) {
        if let Ok(v) = HeaderValue::try_from(&*self.request_id) {
            headers.insert(protocol::REQUEST_ID_HEADER, v);
        }
        if !self.decision_id.is_empty()
            && let Ok(v) = HeaderValue::try_from(&*self.decision_id)
        {
            headers.entry(protocol::DECISION_ID_HEADER).or_insert(v);
        }
        let receipt = match self.receipt.take() {
            Some(pending) => pending.receipt().await,
            None => None,
        };
        if let Some(receipt) = receipt
            && let Ok(v) = HeaderValue::try_from(receipt)
        {
            headers.insert(protocol::RECEIPT_HEADER, v);
        }
    }

    /// The answer to `refusal`, and its record and log line.
    pub(super) fn refused(&mut self, refusal: &Refusal) -> Response<Full<Bytes>> {
        self.owes_outcome = false;
        let mut response = if self.egress.is_some() {
            egress_answer(refusal, &self.decision_id)
        } else {
            refusal.respond(
                self.route.as_deref(),
                self.shape.as_ref(),
                &self.decision_id,
            )
        };
        if response.status() == http::StatusCode::UNAUTHORIZED
            && let Some(v) = &self.resource_metadata
        {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, v.clone());
        }
        let message = refusal.recorded_message(
            &self.shared.snapshot.load().config.inspect,
            self.shared.canaries().map(|c| &**c),
            self.principal.as_ref().map(|p| &*p.id),
            &self.request_id,
        );
        self.log(refusal, response.status(), &message);
        if let Some(spans) = self.spans(response.status(), Some(refusal)) {
            spans.end(Usage::default(), None);
        }
        let event = match refusal.recorded() {
            Recorded::Nothing => None,
            Recorded::Rejected => {
                let mut event = self.event(EventKind::Rejected);
                event.decision = "rejected".into();
                event.code = refusal.code().into();
                event.reasons = vec![message];
                // Anyone can send these, as fast as they like (and an agent ones it knows are
                // refused): folded per source or agent beyond a bound.
                self.shared.audit.append_refusal(event);
                return response;
            }
            Recorded::Outcome => {
                let reserved = self.reservation.as_ref().map(reserved);
                // The provider answered (and billed) a success Warden refused unread.
                let charged = std::mem::take(&mut self.answer_unread)
                    .then(|| self.charge_unread())
                    .flatten();
                let mut event = self.event(EventKind::Outcome);
                event.outcome = Some(AuditOutcome {
                    status: response.status().as_u16(),
                    latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                    upstream_ms: self.upstream_seconds.map(|s| s * 1000.0),
                    // A policy refusal is the decision's outcome, not a failure.
                    error: (!matches!(refusal, Refusal::Hold(_))).then_some(message),
                    input_tokens: charged.map(|(input, _)| input),
                    output_tokens: charged.map(|(_, output)| output),
                    usage_estimated: charged.is_some(),
                    reserved,
                    ..Default::default()
                });
                Some(event)
            }
        };
        if let Some(event) = event {
            self.shared.audit.append_detached(event);
        }
        response
    }

    /// A refusal in the process log: our side failing (5xx: upstream down, audit log or
    /// credential unavailable) is a warning an operator must see; an agent's mistake (4xx) is
    /// in the audit log and logged at debug only.
    fn log(&self, refusal: &Refusal, status: http::StatusCode, error: &str) {
        let principal = self.principal.as_ref().map_or("", |p| &*p.id);
        let route = self.route_label();
        let code = refusal.code();
        let status = status.as_u16();
        if refusal.is_ours() {
            tracing::warn!(request_id = %self.request_id, principal, route, status, code, error, "request failed");
        } else {
            tracing::debug!(request_id = %self.request_id, principal, route, status, code, error, "request refused");
        }
    }

    /// The route's name in metrics and logs: `egress` for the egress proxy, `none` before a
    /// route matched.
    fn route_label(&self) -> &str {
        match (&self.route, &self.egress) {
            (Some(r), _) => &r.name,
            (None, Some(_)) => EGRESS_ROUTE,
            (None, None) => "none",
        }
    }

    /// An audit event carrying everything known about this request.
    fn event(&self, kind: EventKind) -> AuditEvent {
        let mut e = AuditEvent::now(kind);
        e.request_id = Arc::clone(&self.request_id);
        e.decision_id = Arc::clone(&self.decision_id);
        if let Some(p) = &self.principal {
            e.principal = AuditPrincipal {
                kind: p.kind.audit_kind().into(),
                id: Arc::clone(&p.id),
                issuer: Arc::clone(&p.issuer),
            };
        }
        if let Some(v) = &self.verb {
            e.action = v.label();
        }
        e.resource = Arc::clone(&self.resource);
        if let Some(r) = &self.route {
            e.route = Arc::clone(&r.name);
        }
        if let Some(note) = &self.egress {
            e.route = Arc::from(EGRESS_ROUTE);
            if let Some(destination) = &note.destination {
                e.detail = Some(serde_json::json!({ "egress": destination }));
            }
        }
        e.source_ip = Some(self.conn.peer.ip());
        if let Some(origin) = &self.secret {
            e.secret = Some(AuditSecret {
                path: origin.path.clone(),
                version: origin.version,
                lease_id: origin.lease_id.clone(),
            });
        }
        if let Some(cert) = &self.conn.client_identity {
            e.client_certificate = Arc::clone(cert);
        }
        e
    }
}

/// The outcome record of a decided request dropped before it was answered.
pub const AGENT_WENT_AWAY: &str = "the request ended before its answer: the agent went away \
     (or Warden stopped) while the upstream was called or an approval awaited; the upstream \
     may have received it, and what it answered was not read";

impl Exchange {
    /// An LLM call dropped before its answer, once it had gone upstream: the provider may have
    /// generated (and billed) the whole answer, so it is charged the estimate of a call left
    /// before any answer came ([`Exchange::charge_unread`]). The tokens charged; `None` when the
    /// upstream was never called (dropped while an approval was awaited, or before forward) or
    /// the call costs nothing.
    fn charge_unanswered(&mut self) -> Option<(u64, u64)> {
        if !self.upstream_called {
            return None;
        }
        self.charge_unread()
    }

    /// An LLM call whose answer Warden never read (its agent left first, or Warden refused a
    /// successful answer unread: one it must read and cannot decode) is charged
    /// the estimate of a call left before any answer came (`Estimate::unanswered`: the input
    /// estimate, the most output its reservation counted), then its reservation is given back.
    /// The tokens charged; `None` for what is not an LLM call or costs nothing.
    fn charge_unread(&mut self) -> Option<(u64, u64)> {
        let (Some(Shape::Llm(request)), Some(principal), Some(provider)) =
            (&self.shape, &self.principal, &self.provider)
        else {
            return None;
        };
        let snap = self.shared.snapshot.load();
        let budgets = &snap.config.budgets;
        let (input, output) = Estimate::unanswered(request, &budgets.reserve)?;
        let model = self.model.as_deref().unwrap_or("");
        self.shared.budgets.charge(
            budgets,
            principal,
            (provider, model, None),
            (input, output),
            SystemTime::now(),
        );
        self.shared
            .metrics
            .tokens(&principal.id, model, (Some(input), Some(output)), false);
        // Charged, its reservation is given back: never a moment when neither counts.
        drop(self.reservation.take());
        Some((input, output))
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.shared.metrics.in_flight.dec();
        // Dropped between its decision and its answer: the agent closed its connection while
        // the upstream was called (or an approval awaited), and the request's future went with
        // it. The decision must not stand alone, as if Warden had crashed.
        if std::mem::take(&mut self.owes_outcome) {
            let reserved = self.reservation.as_ref().map(reserved);
            let charged = self.charge_unanswered();
            let mut event = self.event(EventKind::Outcome);
            event.outcome = Some(AuditOutcome {
                latency_ms: self.started.elapsed().as_secs_f64() * 1000.0,
                upstream_ms: self.upstream_seconds.map(|s| s * 1000.0),
                error: Some(AGENT_WENT_AWAY.to_owned()),
                input_tokens: charged.map(|(input, _)| input),
                output_tokens: charged.map(|(_, output)| output),
                usage_estimated: charged.is_some(),
                reserved,
                ..Default::default()
            });
            self.shared.audit.append_detached(event);
        }
    }
}

/// What an outcome record says `reservation` reserved.
fn reserved(reservation: &Reservation) -> AuditReserved {
    let amount = reservation.amount();
    AuditReserved {
        input_tokens: amount.input_tokens,
        output_tokens: amount.output_tokens,
        usd: amount.micro_usd as f64 / 1e6,
    }
}

/// What a record says of the shadow set's differing decision.
fn audit_shadow(shadow: ShadowDifference) -> AuditShadow {
    AuditShadow {
        decision: shadow.decision.label().into(),
        policies: shadow.decision.policy_ids(),
        policy: shadow.policy,
        version: shadow.version,
    }
}

/// Fills `event` as the record of `decision` (judged by `judged`, with what inspection
/// found): verdict, policies, reasons, shadow, facts; counted in the decision metrics.
fn decided(
    shared: &Shared,
    event: &mut AuditEvent,
    decision: &Decision,
    judged: Judged,
    findings: &Findings,
) {
    event.decision = decision.label().into();
    event.policies = decision.policy_ids();
    shared.metrics.decided(decision.label(), &event.policies);
    event.policy_version = judged.version;
    if let Some(shadow) = judged.shadow {
        shared
            .metrics
            .shadow_differences
            .with_label_values(&[&*shadow.policy])
            .inc();
        event.shadow = Some(Box::new(audit_shadow(shadow)));
    }
    event.reasons = decision
        .reasons()
        .into_iter()
        .map(|r| match bounded(&r, FIELD_MAX) {
            std::borrow::Cow::Borrowed(_) => r,
            cut => cut.into_owned(),
        })
        .collect();
    event.findings = findings
        .0
        .iter()
        .map(|f| AuditFinding {
            detector: Arc::clone(&f.detector),
            location: bounded(&f.location, FIELD_MAX).into_owned(),
        })
        .collect();
    // A look-alike id (`сi-bot` beside `ci-bot`) is noted, not refused (identity::confusable).
    if let Some(location) = crate::identity::mixed_scripts(&event.principal.id) {
        event.findings.push(AuditFinding {
            detector: Arc::from(crate::identity::CONFUSABLE_FINDING),
            location,
        });
    }
    match judged.facts {
        Some(Ok(facts)) => event.facts = Some(facts),
        Some(Err(why)) => event.facts_omitted = why.into(),
        None => {}
    }
    if let Some(by) = judged.overruled_by {
        event.overruled_by = by.into();
    }
}

/// Records the judgements of an egress tunnel after its `CONNECT` was decided (on its first
/// bytes; at a reload that closes it): one decision record each, with a decision id of its
/// own, by the tunnel's request, its `detail.egress` saying what the tunnel was then judged
/// to carry.
pub struct TunnelDecisions {
    shared: Arc<Shared>,
    event: AuditEvent,
}

impl TunnelDecisions {
    /// Records `decision` (judged by `judged`), durably, its `detail.egress` the tunnel's
    /// with `carries` set (`scheme`, `sni`, which judgement it was); `Err` when the tunnel
    /// must be closed for it: the log is full, or the record could not be written and
    /// `fail_closed`.
    pub async fn record(
        &self,
        decision: &Decision,
        judged: Judged,
        carries: &[(&str, serde_json::Value)],
        fail_closed: bool,
    ) -> Result<(), AuditError> {
        let mut event = self.event.clone();
        event.decision_id = new_id();
        if let Some(egress) = event.detail.as_mut().and_then(|d| d.get_mut("egress")) {
            for (key, value) in carries {
                egress[*key] = value.clone();
            }
        }
        decided(
            &self.shared,
            &mut event,
            decision,
            judged,
            &Findings::none(),
        );
        event.action_digest = Arc::from(receipt::action_digest(&event).as_str());
        match self.shared.audit.append(event).await {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(request_id = %self.event.request_id, error = %e, "audit append failed");
                if fail_closed || matches!(e, AuditError::Full { .. }) {
                    Err(e)
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// Records the tool calls a model proposes in this exchange's response: one decision record
/// each (`tool:propose` on the tool, with the decision and its policies, the arguments as a
/// digest), and `warden_proposed_calls_total`. A call is refused when its record cannot be
/// taken: the log is full, or it cannot be written and `fail_closed` (`audit.fail_closed`).
pub struct ProposalRecords {
    shared: Arc<Shared>,
    event: AuditEvent,
    fail_closed: bool,
}

impl crate::propose::RecordProposal for ProposalRecords {
    fn record(&self, action: &Action, decision: &Decision, arguments: &[u8], tool: &str) -> bool {
        let audit = &self.shared.audit;
        let taken = !(audit.is_full() || (self.fail_closed && !audit.is_writable()));
        let mut event = self.event.clone();
        event.decision_id = new_id();
        event.action = action.verb.label();
        event.resource = Arc::from(action.resource.cedar_ref());
        event.decision = decision.label().into();
        event.policies = decision.policy_ids();
        event.reasons = decision
            .reasons()
            .into_iter()
            .map(|r| bounded(&r, FIELD_MAX).into_owned())
            .collect();
        event.content_digest = Arc::from(digest(arguments));
        if !taken {
            // Should the log take it after all, it says what the agent got.
            event.decision = "deny".into();
            event.reasons = vec!["the audit log could not take this record (fail closed)".into()];
        }
        self.shared.audit.append_detached(event);
        let outcome = match decision {
            _ if !taken => "denied",
            Decision::Allow { .. } => "allowed",
            Decision::Deny { .. } => "denied",
            Decision::NeedsApproval { .. } => "held",
        };
        self.shared.metrics.proposed_call(tool, outcome);
        taken
    }

    /// One system record: the approval a held call used (who approved, with which factor),
    /// or why the call was refused after all (counted `held` when it was judged).
    fn settled(
        &self,
        action: &Action,
        approval: &Result<crate::approval::gate::Approved, crate::approval::Hold>,
        _tool: &str,
    ) {
        let mut event = self.event.clone();
        event.kind = EventKind::System;
        event.decision_id = new_id();
        event.action = action.verb.label();
        event.resource = Arc::from(action.resource.cedar_ref());
        event.detail = Some(match approval {
            Ok(approved) => serde_json::json!({
                "event": "approval_used",
                "approval_id": approved.id,
                "approvers": approved.approvers.iter().map(|(who, factor)| serde_json::json!({
                    "approver": who, "factor": factor,
                })).collect::<Vec<_>>(),
            }),
            Err(hold) => serde_json::json!({
                "event": "proposed_call_refused",
                "code": hold.code(),
                "reason": bounded(&hold.reason(), FIELD_MAX),
            }),
        });
        self.shared.audit.append_detached(event);
    }
}

/// The outcome record of a response whose body is still streaming: completed once, when the
/// body ends, fails or the agent goes away.
pub struct PendingOutcome {
    shared: Arc<Shared>,
    event: AuditEvent,
    started: Instant,
    model: Option<Arc<str>>,
    /// Who pays for the response's tokens, and their provider (LLM calls).
    spender: Option<(Arc<Principal>, Arc<str>)>,
    /// What a successful LLM answer is charged when its usage cannot be read.
    estimate: Option<Estimate>,
    /// What usage the answer can report.
    ceiling: Option<Ceiling>,
    /// The request's spans (sampled requests, with tracing on).
    spans: Option<Box<OpenSpans>>,
    /// The request's places in flight, held until the response ends.
    permit: Option<Permit>,
    /// The call's worst-case cost reserved against its budgets, given back once its usage is
    /// charged (or when this is dropped uncompleted).
    reservation: Option<Reservation>,
    /// What was redacted in a streamed request body.
    streamed: Option<StreamFindings>,
}

/// Findings in a request body as it streams upstream, filled while it goes.
pub type StreamFindings = Arc<std::sync::Mutex<Vec<crate::action::Finding>>>;

impl Complete for PendingOutcome {
    /// Completes the record with the usage the response reported (or, when it cannot be read,
    /// an estimate, marked so) and why it failed, if it did; counts the tokens and charges
    /// them to the agent's budgets.
    fn complete(mut self, read: Read) {
        let Read {
            mut usage,
            error,
            ended,
            bytes,
            redacted,
        } = read;
        if let Some(ceiling) = self.ceiling {
            self.implausible(ceiling.clamp(&mut usage));
        }
        let estimated = self
            .estimate
            .filter(|_| Estimate::needed(&usage, ended))
            .map(|estimate| estimate.tokens(&usage, bytes));
        let (input_tokens, output_tokens) = match estimated {
            Some((input, output)) => (Some(input), Some(output)),
            None => (usage.input_tokens, usage.output_tokens),
        };
        // The upstream answered the model: a success that reported its usage.
        let answered = error.is_none()
            && estimated.is_none()
            && (usage.input_tokens.is_some() || usage.output_tokens.is_some())
            && self
                .event
                .outcome
                .as_ref()
                .is_some_and(|o| (200..300).contains(&o.status));
        if let Some((principal, provider)) = &self.spender {
            // Priced by the model asked for (the one policy judged), or the answer's when it
            // costs more: an upstream's name for its model cannot make the tokens cheaper.
            let asked = self.model.as_deref().unwrap_or("");
            let snap = self.shared.snapshot.load();
            self.shared.budgets.charge(
                &snap.config.budgets,
                principal,
                (provider, asked, usage.model.as_deref()),
                (input_tokens.unwrap_or(0), output_tokens.unwrap_or(0)),
                std::time::SystemTime::now(),
            );
        }
        // Charged, its reservation is given back: never a moment when neither counts.
        drop(self.reservation.take());
        let response_model = usage
            .model
            .as_deref()
            .map(|m| bounded(m, FIELD_MAX).into_owned());
        if let Some(spans) = self.spans.take() {
            spans.end(usage, error.as_deref());
        }
        if let Some(streamed) = self.streamed.take() {
            let found = std::mem::take(&mut *streamed.lock().unwrap_or_else(|p| p.into_inner()));
            self.event
                .findings
                .extend(found.into_iter().map(|f| AuditFinding {
                    location: bounded(&f.location, FIELD_MAX).into_owned(),
                    detector: f.detector,
                }));
        }
        if redacted.0 > 0 {
            // That the upstream echoed the injected credential, and how often: never the value.
            let (all, joined) = redacted;
            self.event.findings.push(AuditFinding {
                detector: Arc::from(crate::secrets::redact::ECHO_FINDING),
                location: match joined {
                    0 => format!("response: {all} redacted"),
                    _ => format!(
                        "response: {all} redacted, {joined} of them spread over streamed deltas"
                    ),
                },
            });
        }
        if let Some(outcome) = self.event.outcome.as_mut() {
            outcome.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            outcome.input_tokens = input_tokens;
            outcome.output_tokens = output_tokens;
            outcome.usage_estimated = estimated.is_some();
            outcome.response_model = response_model;
            outcome.error = error.map(|e| bounded(&e, FIELD_MAX).into_owned());
        }
        self.shared.metrics.tokens(
            &self.event.principal.id,
            self.model.as_deref().unwrap_or(""),
            (input_tokens, output_tokens),
            answered,
        );
        self.shared.audit.append_detached(self.event);
    }
}

impl PendingOutcome {
    /// Notes in the record, and logs once, the usage figures `past` their ceiling (clamped).
    fn implausible(&mut self, past: Vec<Implausible>) {
        if past.is_empty() {
            return;
        }
        let said: Vec<String> = past.iter().map(Implausible::location).collect();
        tracing::warn!(
            request_id = %self.event.request_id,
            route = %self.event.route,
            usage = %said.join("; "),
            "the upstream reported more tokens than the request allows: charged at most what it \
             allows ({})",
            plausible::DETECTOR
        );
        self.event
            .findings
            .extend(said.into_iter().map(|location| AuditFinding {
                detector: Arc::from(plausible::DETECTOR),
                location,
            }));
    }

    /// Completes the record of an egress tunnel that carried `up` bytes to the destination
    /// and `down` back, and closed (`error`: its stable code and why, when it was cut or
    /// refused); counts the bytes and how it ended.
    pub fn tunnel_closed(mut self, up: u64, down: u64, error: Option<(&'static str, String)>) {
        if let Some(spans) = self.spans.take() {
            spans.end(Usage::default(), error.as_ref().map(|(_, e)| e.as_str()));
        }
        let result = error.as_ref().map_or("closed", |(code, _)| *code);
        if let Some(outcome) = self.event.outcome.as_mut() {
            outcome.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            outcome.bytes_up = Some(up);
            outcome.bytes_down = Some(down);
            outcome.error = error.map(|(_, e)| bounded(&e, FIELD_MAX).into_owned());
        }
        self.shared.metrics.tunnel_closed(result, up, down);
        self.shared.audit.append_detached(self.event);
    }

    /// Frees the request's places in flight before the record is completed (an MCP call that
    /// ended while its response waits for the agent to collect it).
    pub fn release_places(&mut self) {
        self.permit = None;
    }

    /// Adds to the record what the detectors found in an MCP server's answer (a
    /// `prompts/get` or `resources/read` result: detector and location, never the text).
    pub fn found_in_result(&mut self, findings: Vec<crate::action::Finding>) {
        self.event
            .findings
            .extend(findings.into_iter().map(|f| AuditFinding {
                location: bounded(&f.location, FIELD_MAX).into_owned(),
                detector: f.detector,
            }));
    }

    /// Notes in the record what policy said of the MCP server's answer (`mcp:receive_result`):
    /// withheld or passed, by which policies, and why (never the answer's content); and, where
    /// the shadow set decides otherwise (`shadow`), what it would have, counted in
    /// `warden_shadow_differences_total` as a request's difference is.
    pub fn answer_judged(&mut self, decision: &Decision, shadow: Option<ShadowDifference>) {
        let shadow = shadow.map(|shadow| {
            self.shared
                .metrics
                .shadow_differences
                .with_label_values(&[&*shadow.policy])
                .inc();
            audit_shadow(shadow)
        });
        if let Some(outcome) = self.event.outcome.as_mut() {
            outcome.answer = Some(crate::audit::event::AuditAnswer {
                decision: decision.label().into(),
                policies: decision.policy_ids(),
                reasons: decision
                    .reasons()
                    .into_iter()
                    .map(|r| bounded(&r, FIELD_MAX).into_owned())
                    .collect(),
                shadow,
            });
        }
    }

    /// Completes the record of an MCP request: whether the tool's result said `isError`, and
    /// why the exchange failed, if it did.
    pub fn mcp_result(mut self, is_error: Option<bool>, error: Option<String>) {
        if let Some(outcome) = self.event.outcome.as_mut() {
            outcome.is_error = is_error;
        }
        self.complete(Read {
            error,
            ended: true,
            ..Read::default()
        });
    }
}

/// The route name egress records and metrics carry.
pub const EGRESS_ROUTE: &str = "egress";

/// What became of an egress connection or request, for `warden_egress_total`: `allowed`,
/// `denied` (policy), `unauthenticated` (407), `refused` (a malformed target), or `failed`
/// (resolution, connection, the destination, the audit log).
fn egress_result(decision: Option<&'static str>, status: http::StatusCode) -> &'static str {
    match (decision, status.as_u16()) {
        (_, 407) => "unauthenticated",
        (Some("allow"), s) if s < 400 => "allowed",
        (Some("deny" | "approval_required"), 403) => "denied",
        (_, 400..=499) => "refused",
        _ => "failed",
    }
}

/// `sha256:<hex>` of `bytes`: what a record keeps of content it does not keep.
pub(super) fn digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A new request or decision id: a UUIDv7 as 32 lower-case hex digits (time-ordered).
fn new_id() -> Text {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    Arc::from(&*uuid::Uuid::now_v7().simple().encode_lower(&mut buf))
}
