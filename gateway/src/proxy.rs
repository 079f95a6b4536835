//! The request path, stage by stage:
//!
//! route → identify → interpret → decide → record → (refuse) → credential → forward → observe
//!
//! [`handle`] is the whole path on one screen; each stage is one call into the module that
//! owns its logic. A stage that refuses returns a [`Rejection`], which is answered in the
//! route's protocol shape and recorded in the audit log.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tracing::Instrument;

use crate::action::{Action, ActionContext, Findings, Principal, Resource, Verb};
use crate::audit::event::{AuditEvent, AuditOutcome, AuditPrincipal, EventKind, Text, empty_text};
use crate::config::DenyStyle;
use crate::decision::Decision;
use crate::listener::ConnInfo;
use crate::observe::{ObservedBody, Observer};
use crate::protocol::{self, Interpreted, Protocol, Refusal};
use crate::route::Route;
use crate::secrets::inject;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::{UpstreamClient, UpstreamError};

/// The body of every proxy response: a small complete body, or an upstream stream observed
/// as it passes.
pub type ProxyBody = Either<Full<Bytes>, ObservedBody>;

/// The proxy's request handler for one worker thread, with that worker's own upstream
/// connection pool (built here, so a bad `upstream:` setting fails the start).
pub fn handler(
    shared: &Arc<Shared>,
    upstream: &UpstreamConfig,
) -> Result<
    impl Fn(Request<Incoming>, ConnInfo) -> BoxedResponse + Clone + Send + Sync + 'static,
    UpstreamError,
> {
    // Shared by reference count: a request holds a pointer, not a copy of the client.
    let client = Arc::new(UpstreamClient::new(upstream)?);
    let shared = Arc::clone(shared);
    Ok(move |req, conn| -> BoxedResponse {
        Box::pin(handle(Arc::clone(&shared), Arc::clone(&client), req, conn))
    })
}

/// The future of one request's response. Boxed: the request path's future is large, and
/// hyper moves a service's future into its dispatcher on every request; a box moves as one
/// pointer.
pub type BoxedResponse = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

/// Handles one agent request; `upstream` is the calling worker's connection pool.
pub async fn handle(
    shared: Arc<Shared>,
    upstream: Arc<UpstreamClient>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ProxyBody> {
    let snap = shared.snapshot.load_full();
    let mut ex = Exchange::new(&conn, snap.config.log.access);
    shared.metrics.in_flight.inc();
    // A debug-level span: at `info` it costs nothing; with `warden=debug` every line logged
    // during the request carries its request id and principal.
    let span = tracing::debug_span!("request", request_id = %ex.request_id, principal = tracing::field::Empty);
    let result = walk(&shared, &upstream, &snap, &mut ex, req)
        .instrument(span)
        .await;
    let response = ex.finish(&shared, result);
    shared.metrics.in_flight.dec();
    response
}

async fn walk(
    shared: &Arc<Shared>,
    upstream: &UpstreamClient,
    snap: &Snapshot,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Rejection> {
    let route = route(snap, ex, req.uri().path())?;
    let principal = identify(shared, snap, ex, &req).await?;
    let (mut parts, body) = req.into_parts();
    let body = read_body(body, &parts.headers, snap.config.limits.max_request_bytes).await?;
    let rest = &parts.uri.path()[route.prefix.len()..];
    let meaning = interpret(&route, &parts, rest, &body)?;
    let action = action(&route, principal, &meaning, ex);
    let decision = decide(shared, snap, &action);
    record_decision(shared, snap, ex, &decision, &body).await?;
    if !matches!(decision, Decision::Allow { .. }) {
        return Ok(refuse(shared, ex, &route, &meaning, &decision));
    }
    let headers = std::mem::take(&mut parts.headers);
    let upstream_req = credential(&route, &parts, headers, rest, body)?;
    let upstream_resp = forward(shared, ex, &route, upstream.send(upstream_req)).await?;
    Ok(observe(shared, ex, &route, &meaning, upstream_resp))
}

/// Route: the longest matching path prefix.
fn route(snap: &Snapshot, ex: &mut Exchange, path: &str) -> Result<Arc<Route>, Rejection> {
    let (route, _) = snap.routes.find(path).ok_or_else(|| {
        Rejection::new(
            StatusCode::NOT_FOUND,
            "no_route",
            format!("no route matches {path}"),
        )
    })?;
    ex.route = Some(route.clone());
    Ok(route.clone())
}

/// Identify: the agent behind the credential.
async fn identify(
    shared: &Shared,
    snap: &Snapshot,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Arc<Principal>, Rejection> {
    match snap.identity.identify(req.headers()).await {
        Ok(p) => {
            tracing::Span::current().record("principal", &*p.id);
            ex.principal = Some(p.clone());
            Ok(p)
        }
        Err(e) => {
            shared
                .metrics
                .auth_failures
                .with_label_values(&[e.code()])
                .inc();
            // An unreachable IdP is our outage, not the agent's bad key: 503, which agents retry.
            let status = if e.code() == "issuer_unavailable" {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::UNAUTHORIZED
            };
            Err(Rejection::new(
                status,
                e.code(),
                format!("authentication failed: {e}"),
            ))
        }
    }
}

/// Reads the request body, refusing more than `limit` bytes.
async fn read_body(
    body: Incoming,
    headers: &http::HeaderMap,
    limit: usize,
) -> Result<Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "request body is larger than the {limit}-byte limit (limits.max_request_bytes)"
            ),
        )
    };
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "body_read_failed",
            format!("could not read the request body: {e}"),
        )),
    }
}

/// Interpret: what the request means in its protocol.
fn interpret(
    route: &Route,
    parts: &http::request::Parts,
    rest: &str,
    body: &[u8],
) -> Result<Interpreted, Rejection> {
    route
        .protocol
        .dialect()
        .interpret(&protocol::Inbound {
            method: &parts.method,
            path: rest,
            query: parts.uri.query(),
            headers: &parts.headers,
            body,
            upstream: &route.provider,
        })
        .map_err(|e| Rejection::new(e.status(), "invalid_request", e.to_string()))
}

/// The Cedar action for this request.
fn action(
    route: &Route,
    principal: Arc<Principal>,
    meaning: &Interpreted,
    ex: &mut Exchange,
) -> Action {
    let resource = meaning.resource.clone();
    ex.verb = Some(meaning.verb.clone());
    ex.resource = Arc::from(resource.cedar_ref());
    Action {
        principal,
        verb: meaning.verb.clone(),
        resource,
        context: ActionContext {
            route: route.name.clone(),
            time: SystemTime::now(),
            source_ip: ex.conn.peer.ip(),
            tls: ex.conn.tls,
            client_certificate: None,
            findings: Findings::none(),
            facts: meaning.facts.clone(),
        },
    }
}

/// Decide: Cedar's verdict.
fn decide(shared: &Shared, snap: &Snapshot, action: &Action) -> Decision {
    let t = Instant::now();
    let decision = snap.policy.decide(action);
    shared
        .metrics
        .policy_seconds
        .observe(t.elapsed().as_secs_f64());
    decision
}

/// Record: the decision is durably in the audit log before anything goes upstream.
async fn record_decision(
    shared: &Shared,
    snap: &Snapshot,
    ex: &mut Exchange,
    decision: &Decision,
    body: &[u8],
) -> Result<(), Rejection> {
    ex.decision = Some(decision.label());
    let mut event = ex.event(EventKind::Decision);
    event.decision = decision.label().into();
    event.policies = decision.policy_ids();
    event.reasons = reasons(decision);
    if snap.config.audit.record_content {
        event.content = serde_json::from_slice(body).ok();
    }
    let t = Instant::now();
    let appended = shared.audit.append(event).await;
    shared
        .metrics
        .audit_wait_seconds
        .observe(t.elapsed().as_secs_f64());
    if let Err(e) = appended {
        shared.metrics.audit_failures.inc();
        tracing::error!(request_id = %ex.request_id, error = %e, "audit append failed");
        if snap.config.audit.fail_closed {
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written, so Warden refuses requests (audit.fail_closed)"
                    .into(),
            )
            .not_auditable());
        }
    }
    Ok(())
}

/// The reasons an agent is shown for a decision.
fn reasons(decision: &Decision) -> Vec<String> {
    match decision {
        Decision::Allow { .. } => Vec::new(),
        Decision::Deny { reasons, .. } => reasons.clone(),
        Decision::NeedsApproval {
            policy,
            approvers,
            reason,
        } => vec![format!(
            "{}requires approval by {} (policy {policy}), and approvals are not enabled on this gateway",
            reason
                .as_deref()
                .map(|r| format!("{r}: "))
                .unwrap_or_default(),
            if approvers.is_empty() {
                "an approver".to_string()
            } else {
                approvers.join(", ")
            },
        )],
    }
}

/// A refusal in the protocol's own shape: a completion that explains itself, or an HTTP error.
fn refuse(
    shared: &Shared,
    ex: &mut Exchange,
    route: &Route,
    meaning: &Interpreted,
    decision: &Decision,
) -> Response<ProxyBody> {
    let reason = reasons(decision).join("; ");
    let response = match route.on_deny {
        DenyStyle::Completion => {
            let refusal = Refusal {
                reason: &reason,
                decision_id: &ex.decision_id,
                finish: route.refusal_finish,
            };
            let dialect = route.protocol.dialect();
            dialect.refusal(meaning, &refusal).unwrap_or_else(|| {
                let mut r =
                    dialect.error(StatusCode::FORBIDDEN, "request_denied", &refusal.message());
                r.headers_mut()
                    .insert(protocol::DECISION_HEADER, HeaderValue::from_static("deny"));
                r
            })
        }
        DenyStyle::HttpError => {
            let mut r = route.protocol.dialect().error(
                StatusCode::FORBIDDEN,
                "policy_denied",
                &format!(
                    "Warden denied this request: {reason} (decision {})",
                    ex.decision_id
                ),
            );
            r.headers_mut()
                .insert(protocol::DECISION_HEADER, HeaderValue::from_static("deny"));
            r
        }
    };
    let mut event = ex.event(EventKind::Outcome);
    event.outcome = Some(AuditOutcome {
        status: response.status().as_u16(),
        latency_ms: ex.elapsed_ms(),
        ..Default::default()
    });
    shared.audit.append_detached(event);
    response.map(Either::Left)
}

/// Credential: the agent's credential out, the upstream's in.
fn credential(
    route: &Route,
    parts: &http::request::Parts,
    headers: http::HeaderMap,
    rest: &str,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Rejection> {
    let credential = route.credential.as_ref().map_err(|e| {
        Rejection::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "credential_unavailable",
            format!("the upstream credential is unavailable: {e}"),
        )
        .after_decision()
    })?;
    inject::upstream_request(route, parts, headers, rest, body, credential.as_ref()).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("cannot build the upstream request: {e}"),
        )
        .after_decision()
    })
}

/// Forward: the request goes upstream over the pooled client (`call`, from
/// [`UpstreamClient::send`]); wait for the response headers.
async fn forward(
    shared: &Shared,
    ex: &mut Exchange,
    route: &Route,
    call: impl Future<Output = Result<Response<Incoming>, UpstreamError>>,
) -> Result<Response<Incoming>, Rejection> {
    let t = Instant::now();
    let result = call.await;
    let secs = t.elapsed().as_secs_f64();
    ex.upstream_ms = Some(secs * 1000.0);
    shared
        .metrics
        .upstream_seconds
        .with_label_values(&[&route.name])
        .observe(secs);
    result.map_err(|e| {
        Rejection::new(e.status(), "upstream_unavailable", e.to_string()).after_decision()
    })
}

/// Observe: stream the response through, reading usage, and record the outcome at its end.
fn observe(
    shared: &Arc<Shared>,
    ex: &mut Exchange,
    route: &Route,
    meaning: &Interpreted,
    resp: Response<Incoming>,
) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    let event_stream = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    inject::strip_hop_by_hop(&mut parts.headers);
    let mut event = ex.event(EventKind::Outcome);
    event.outcome = Some(AuditOutcome {
        status: parts.status.as_u16(),
        upstream_ms: ex.upstream_ms,
        ..Default::default()
    });
    let observer = Observer::new(
        shared.clone(),
        event,
        ex.started,
        protocol::UsageScanner::new(route.protocol.dialect(), event_stream),
        match &meaning.resource {
            Resource::Model { name, .. } => Some(name.clone()),
            _ => None,
        },
    );
    let mut response = Response::new(Either::Right(ObservedBody::new(body, observer)));
    *response.status_mut() = parts.status;
    *response.headers_mut() = parts.headers;
    response
}

/// A refusal by one stage: answered in the route's protocol shape and audited.
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The decision record was already written; record an outcome, not a rejection.
    after_decision: bool,
    /// The failure is the audit log itself: do not try to record it there.
    not_auditable: bool,
}

impl Rejection {
    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Rejection {
            status,
            code,
            message,
            after_decision: false,
            not_auditable: false,
        }
    }
    fn after_decision(mut self) -> Self {
        self.after_decision = true;
        self
    }
    fn not_auditable(mut self) -> Self {
        self.not_auditable = true;
        self
    }
}

/// What the path learned about one request so far: for the audit record, metrics and logs.
struct Exchange {
    conn: ConnInfo,
    started: Instant,
    request_id: Text,
    decision_id: Text,
    route: Option<Arc<Route>>,
    principal: Option<Arc<Principal>>,
    verb: Option<Verb>,
    /// The Cedar resource, e.g. `Model::"openai/gpt-4o"`.
    resource: Text,
    decision: Option<&'static str>,
    upstream_ms: Option<f64>,
    /// Write an access log line (`log.access`).
    access_log: bool,
}

impl Exchange {
    fn new(conn: &ConnInfo, access_log: bool) -> Self {
        Exchange {
            conn: conn.clone(),
            started: Instant::now(),
            request_id: new_id(),
            decision_id: empty_text(),
            route: None,
            principal: None,
            verb: None,
            resource: empty_text(),
            decision: None,
            upstream_ms: None,
            access_log,
        }
    }

    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }

    /// An audit event carrying everything known about this request.
    fn event(&mut self, kind: EventKind) -> AuditEvent {
        if self.decision_id.is_empty() && kind == EventKind::Decision {
            self.decision_id = new_id();
        }
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
        e.source_ip = Some(self.conn.peer.ip());
        e
    }

    /// A refusal in the process log: our side failing (5xx: upstream down, audit log or
    /// credential unavailable) is a warning an operator must see; an agent's mistake (4xx) is
    /// in the audit log and logged at debug only.
    fn log_rejection(&self, rej: &Rejection) {
        let principal = self.principal.as_ref().map_or("", |p| &*p.id);
        let route = self.route.as_ref().map_or("none", |r| &*r.name);
        if rej.status.is_server_error() {
            tracing::warn!(
                request_id = %self.request_id,
                principal,
                route,
                status = rej.status.as_u16(),
                code = rej.code,
                error = %rej.message,
                "request failed"
            );
        } else {
            tracing::debug!(
                request_id = %self.request_id,
                principal,
                route,
                status = rej.status.as_u16(),
                code = rej.code,
                error = %rej.message,
                "request refused"
            );
        }
    }

    /// Answers a rejection, records it, counts the request, logs it.
    fn finish(
        mut self,
        shared: &Shared,
        result: Result<Response<ProxyBody>, Rejection>,
    ) -> Response<ProxyBody> {
        let mut response = match result {
            Ok(r) => r,
            Err(rej) => {
                self.log_rejection(&rej);
                if !rej.not_auditable {
                    let kind = if rej.after_decision {
                        EventKind::Outcome
                    } else {
                        EventKind::Rejected
                    };
                    let mut event = self.event(kind);
                    if rej.after_decision {
                        event.outcome = Some(AuditOutcome {
                            status: rej.status.as_u16(),
                            latency_ms: self.elapsed_ms(),
                            upstream_ms: self.upstream_ms,
                            error: Some(rej.message.clone()),
                            ..Default::default()
                        });
                    } else {
                        event.decision = "rejected".into();
                        event.reasons = vec![rej.message.clone()];
                    }
                    shared.audit.append_detached(event);
                }
                let protocol = self.route.as_ref().map_or(Protocol::Openai, |r| r.protocol);
                protocol
                    .dialect()
                    .error(rej.status, rej.code, &rej.message)
                    .map(Either::Left)
            }
        };
        if let Ok(v) = HeaderValue::try_from(&*self.request_id) {
            response
                .headers_mut()
                .insert(protocol::REQUEST_ID_HEADER, v);
        }
        if !self.decision_id.is_empty()
            && let Ok(v) = HeaderValue::try_from(&*self.decision_id)
        {
            response
                .headers_mut()
                .entry(protocol::DECISION_ID_HEADER)
                .or_insert(v);
        }
        let route = self.route.as_ref().map_or("none", |r| &r.name);
        let decision = self.decision.unwrap_or("none");
        let status = response.status();
        shared
            .metrics
            .requests
            .with_label_values(&[route, decision, status.as_str()])
            .inc();
        let secs = self.started.elapsed().as_secs_f64();
        shared
            .metrics
            .request_seconds
            .with_label_values(&[route])
            .observe(secs);
        let principal = self.principal.as_ref().map_or("", |p| &p.id);
        if self.access_log {
            tracing::info!(
            request_id = %self.request_id,
            principal,
            route,
            action = self.verb.as_ref().map_or("", Verb::as_str),
            resource = %self.resource,
            decision,
            status = status.as_u16(),
            latency_ms = secs * 1000.0,
            "request"
            );
        }
        self.route = None;
        response
    }
}

/// A new request or decision id: a UUIDv7 as 32 lower-case hex digits (time-ordered).
fn new_id() -> Text {
    let mut buf = [0u8; uuid::fmt::Simple::LENGTH];
    Arc::from(&*uuid::Uuid::now_v7().simple().encode_lower(&mut buf))
}
