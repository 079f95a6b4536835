//! The request path, stage by stage:
//!
//! route → identify → quarantine → interpret → inspect → limit → recall (session) → decide →
//! hold → credential → forward → observe → record
//!
//! [`walk`] is the whole path on one screen: one call per stage, each into the module that
//! owns its logic. A stage that refuses returns a [`Refusal`]; the record stage answers it in
//! the route's protocol shape. What the path learns on the way is kept in the [`Exchange`],
//! the only place audit records are built and metrics counted.

mod bound_headers;
pub mod egress;
mod exchange;
mod held;
mod mcp;
mod redaction;
mod redirect;
mod refusal;
mod stages;
mod streamed;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use tracing::Instrument;

pub use exchange::{Content, Exchange, PendingOutcome, ProxyBody};
pub use refusal::Refusal;
use stages::{
    Held, context, decide, hold, inspect, inspect_head, limit, quarantine, read_body, recall,
    reserve,
};

use crate::action::{Action, Facts, Principal};
use crate::fleet::budget::plausible::Ceiling;
use crate::fleet::session::named;
use crate::listener::ConnInfo;
use crate::observe::readable::{self, Needs, Unreadable};
use crate::observe::{Drain, ObservedBody};
use crate::propose::{Judge, Judging};
use crate::protocol::{self, Inbound, Interpreted};
use crate::route::Route;
use crate::secrets::inject;
use crate::secrets::redact::StreamKind;
use crate::shared::Shared;
use crate::snapshot::Snapshot;
use crate::text::Quoted;
use crate::upstream::config::UpstreamConfig;
use crate::upstream::{BoxError, Outbound, UpstreamClient, UpstreamError};

/// The future of one request's response. Boxed: the request path's future is large, and
/// hyper moves a service's future into its dispatcher on every request; a box moves as one
/// pointer.
pub type BoxedResponse = Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>;

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

/// Handles one agent request; `upstream` is the calling worker's connection pool.
pub async fn handle(
    shared: Arc<Shared>,
    upstream: Arc<UpstreamClient>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> Response<ProxyBody> {
    let snap = shared.snapshot.load_full();
    let mut ex = Exchange::new(
        shared,
        conn,
        snap.config.log.access,
        snap.config.audit.receipts,
        &req,
    );
    // A debug-level span: at `info` it costs nothing; with `warden=debug` every line logged
    // during the request carries its request id and principal.
    let span = tracing::debug_span!("request", request_id = %ex.request_id(), principal = tracing::field::Empty);
    // The stages' future is several kilobytes: boxed here, it is copied once; inline, it was
    // copied into the span's wrapper and, inside this future, into every request's box
    // (callgrind: 24k of a chat request's 737k instructions).
    let walked = Box::pin(walk(&snap, &upstream, &mut ex, req))
        .instrument(span.clone())
        .await;
    match walked {
        Ok(Walked::Answered(response)) => record(ex, Ok(response)).await,
        Ok(Walked::InStream(held)) => held::answer(ex, snap, upstream, held, span).await,
        Err(refusal) => record(ex, Err(refusal)).await,
    }
}

/// What the stages came to: the answer, or a streamed request that waits for its approval in
/// its stream (answered at once, the rest of the path walked once it is settled).
// Both variants are about 1 KB and returned once per request: boxing either would cost an
// allocation on every request to save a copy.
#[allow(clippy::large_enum_variant)]
enum Walked {
    Answered(Response<ProxyBody>),
    InStream(held::InStream),
}

/// The stages, in order.
async fn walk(
    snap: &Snapshot,
    upstream: &UpstreamClient,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Walked, Refusal> {
    if let Some(metadata) = mcp::protected_resource(snap, ex, &req) {
        return Ok(Walked::Answered(metadata));
    }
    let route = route(snap, ex, &req)?;
    let principal = identify(snap, ex, &req).await?;
    quarantine(ex, &principal)?;
    if let Some(endpoint) = &route.mcp {
        return mcp::walk(snap, ex, &route, endpoint, principal, req)
            .await
            .map(Walked::Answered);
    }
    let (mut action, mut request) = interpret(snap, ex, &route, principal, req).await?;
    inspect_head(snap, ex, &mut action, &request.head, request.sent.as_ref());
    ex.read_content_type(&request.head.headers);
    inspect(snap, ex, &mut action, &request.body);
    limit(snap, ex, &action)?;
    reserve(snap, ex, &action);
    recall(
        snap,
        ex,
        &mut action,
        named(&snap.config.sessions, &request.head.headers),
    )?;
    let decision = decide(snap, ex, &mut action, &mut request.body).await?;
    let decided = Decided {
        route,
        action,
        request,
    };
    match hold(ex, &decided.action, &decision, &decided.request.body).await? {
        Held::Released => go_on(snap, upstream, ex, decided)
            .await
            .map(Walked::Answered),
        Held::InStream(waiting) => Ok(Walked::InStream(held::InStream {
            waiting: *waiting,
            decided,
        })),
    }
}

/// A request past the decision: what the rest of the path needs.
struct Decided {
    route: Arc<Route>,
    action: Action,
    request: ReadRequest,
}

/// The stages after hold (an approved call judged again on its budgets first): credential →
/// forward → observe.
async fn go_on(
    snap: &Snapshot,
    upstream: &UpstreamClient,
    ex: &mut Exchange,
    decided: Decided,
) -> Result<Response<ProxyBody>, Refusal> {
    let Decided {
        route,
        mut action,
        request,
    } = decided;
    stages::budget_once_approved(snap, ex, &mut action)?;
    let mut verdict = streamed::Verdict::default();
    let (outbound, base) = credential(snap, ex, &route, &action, request, &mut verdict).await?;
    // Where it went, for a redirect's relative Location (a shared copy, not a new one), but
    // never with a query-parameter credential in it: a `Location: #x` keeps the query.
    let sent = base.or_else(|| outbound.uri().path_and_query().cloned());
    let response = forward(snap, upstream, ex, &route, outbound, &verdict).await;
    if let Ok(answered) = &response {
        ex.upstream_answered(answered.status());
    }
    // A body stopped mid-way by inspection is denied, whatever the upstream made of it.
    if let Some(tripped) = verdict.tripped() {
        return Err(streamed::denied_mid_body(snap, ex, action, tripped, |d| d).await);
    }
    let (response, refusal) = observe(snap, ex, &route, &action, sent.as_ref(), response?)?;
    Ok(match refusal {
        Some(refused) => whole_or_refused(&route, response, &refused).await,
        None => response,
    })
}

/// A whole response whose refused calls make it an error (`propose.on_deny: error`): read to
/// its end, then answered `403` with the protocol's error it became when a call was refused.
async fn whole_or_refused(
    route: &Route,
    response: Response<ProxyBody>,
    refused: &AtomicBool,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let Ok(read) = http_body_util::BodyExt::collect(body).await else {
        return route
            .protocol
            .dialect()
            .error(
                http::StatusCode::BAD_GATEWAY,
                "upstream_stream_failed",
                "the upstream's response broke off",
            )
            .map(Either::Left);
    };
    if refused.load(Ordering::Acquire) {
        parts.status = http::StatusCode::FORBIDDEN;
        parts.headers.insert(
            protocol::DECISION_HEADER,
            http::HeaderValue::from_static("deny"),
        );
        parts.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
    }
    Response::from_parts(parts, Either::Left(Full::new(read.to_bytes())))
}

/// A request as interpret read it: its head and its body (whole, or its first bytes and the
/// rest, which streams upstream inspected as it goes).
struct ReadRequest {
    head: http::request::Parts,
    body: Bytes,
    rest: Option<Incoming>,
    /// The target as the agent sent it, when it goes upstream otherwise (as judged).
    sent: Option<http::Uri>,
}

/// Route: the longest matching path prefix.
fn route(
    snap: &Snapshot,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Arc<Route>, Refusal> {
    let route = snap.routes.route(req.uri().path())?;
    ex.routed(route);
    if route.mcp.is_some() {
        ex.protected_resource(&mcp::metadata_url(ex, req, &route.prefix));
    }
    Ok(Arc::clone(route))
}

/// Identify: the agent behind the credential (and the connection's client certificate).
async fn identify(
    snap: &Snapshot,
    ex: &mut Exchange,
    req: &Request<Incoming>,
) -> Result<Arc<Principal>, Refusal> {
    let certificate = ex.conn().client_identity.clone();
    match snap
        .identity
        .identify_stamped(
            req.headers(),
            certificate.as_ref(),
            Some(&ex.shared().revocations),
        )
        .await
    {
        Ok((principal, token)) => {
            tracing::Span::current().record("principal", &*principal.id);
            ex.identified(&principal);
            ex.identified_by_token(token);
            Ok(principal)
        }
        Err(e) => {
            ex.unidentified(e.code());
            Err(e.into())
        }
    }
}

/// Interpret: the body, read within the limits (a large REST body only as far as
/// `inspect.stream_above`), and the action the request asks for in its route's protocol.
async fn interpret(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Route,
    principal: Arc<Principal>,
    req: Request<Incoming>,
) -> Result<(Action, ReadRequest), Refusal> {
    let (mut head, body) = req.into_parts();
    let (body, rest) = read_body(snap, route, &mut head, body).await?;
    let Interpreted {
        verb,
        resource,
        facts,
        findings,
        shape,
    } = route.protocol.dialect().interpret(&Inbound {
        method: &head.method,
        path: route.rest(head.uri.path()),
        query: head.uri.query(),
        headers: &head.headers,
        body: &body,
        upstream: &route.provider,
        operations: route.operations.as_deref(),
        allow_cached_content: route.allow_cached_content,
    })?;
    if matches!(facts, Facts::Http(_)) {
        ex.bind_query(head.uri.query());
    }
    // The request goes upstream as it was judged.
    let mut sent = None;
    if let Some(path) = shape.upstream_path() {
        let query = shape.upstream_query().or(head.uri.query());
        let judged = judged_uri(route, path, query).map_err(Refusal::UpstreamRequest)?;
        if judged != head.uri {
            sent = Some(std::mem::replace(&mut head.uri, judged));
        }
    }
    if let protocol::Shape::Llm(request) = &shape {
        ex.bounds_usage(Ceiling::of(request, &body));
    }
    ex.interpreted(&verb, &resource, &facts, shape);
    let action = Action {
        principal,
        verb,
        resource,
        context: context(ex, route, findings, facts),
    };
    let request = ReadRequest {
        head,
        body,
        rest,
        sent,
    };
    Ok((action, request))
}

/// The request URI with `path` (below the route's prefix) as the dialect read it.
fn judged_uri(route: &Route, path: &str, query: Option<&str>) -> Result<http::Uri, http::Error> {
    let mut pq = String::with_capacity(route.prefix.len() + path.len() + 1);
    pq.push_str(&route.prefix);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Ok(http::uri::PathAndQuery::try_from(pq)?.into())
}

/// Credential: the agent's credential out, the upstream's in (from memory; from Vault on a
/// miss). A streamed body goes on inspected as it streams, what becomes of it left in
/// `verdict`. With the request, the target a redirect is resolved against when the credential
/// is in the query ([`inject::redirect_base`]).
async fn credential(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Route,
    action: &Action,
    request: ReadRequest,
    verdict: &mut streamed::Verdict,
) -> Result<(Request<Outbound>, Option<http::uri::PathAndQuery>), Refusal> {
    let credential = match &route.credential {
        Some(provider) => {
            let guard = stages::SecretPolicy { snap, action };
            let credential = provider.credential(&action.principal, &guard).get().await?;
            ex.credential(&credential);
            Some(credential)
        }
        None => None,
    };
    let ReadRequest {
        mut head,
        body,
        rest,
        ..
    } = request;
    let body = match rest {
        None => ask_usage(snap, ex, route, sent_body(ex, route, &head, body)?),
        Some(_) => body,
    };
    let body = match streamed::outbound(snap, ex, action, body, rest, verdict) {
        Either::Left(whole) => Either::Left(whole),
        Either::Right(inspected) => Either::Right(BodyExt::boxed_unsync(BodyExt::map_err(
            inspected,
            |e| -> BoxError { Box::new(e) },
        ))),
    };
    ex.accept_trailers(inject::accepts_trailers(&head.headers));
    let headers = std::mem::take(&mut head.headers);
    let rest = route.upstream_rest(head.uri.path());
    let base = inject::redirect_base(route, &head, rest, credential.as_deref());
    let mut outbound =
        inject::upstream_request(route, &head, headers, rest, body, credential.as_deref())
            .map_err(Refusal::UpstreamRequest)?;
    ex.propagate(outbound.headers_mut());
    Ok((outbound, base))
}

/// Credential: the body as the dialect judged it (REST fields `fold_case:` names, folded), when
/// that is not the body as it stands; read after redaction, so that both reach upstream.
fn sent_body(
    ex: &Exchange,
    route: &Route,
    head: &http::request::Parts,
    body: Bytes,
) -> Result<Bytes, Refusal> {
    let Some(shape) = ex.shape() else {
        return Ok(body);
    };
    Ok(route
        .protocol
        .dialect()
        .sent_body(shape, &head.headers, &body)?
        .unwrap_or(body))
}

/// Credential, when budgets are set: a request whose answer would not report its usage (an
/// OpenAI stream without `stream_options.include_usage`) asks for it, so that it is charged;
/// what the agent did not ask for is taken out of the answer (observe). Other bodies go on as
/// they are, uncopied.
fn ask_usage(snap: &Snapshot, ex: &mut Exchange, route: &Route, body: Bytes) -> Bytes {
    if snap.config.budgets.limits.is_empty() {
        return body;
    }
    let Some(asked) = ex
        .shape()
        .and_then(|shape| route.protocol.dialect().ask_usage(shape, &body))
    else {
        return body;
    };
    ex.ask_usage();
    asked
}

/// Forward: the request goes upstream over the worker's pooled client, unless the upstream's
/// circuit breaker is open; wait for the response headers. A body that inspection stopped
/// (`streamed`) says nothing of the upstream's health.
async fn forward(
    snap: &Snapshot,
    upstream: &UpstreamClient,
    ex: &mut Exchange,
    route: &Route,
    outbound: Request<Outbound>,
    streamed: &streamed::Verdict,
) -> Result<Response<Incoming>, Refusal> {
    let breaker = ex
        .shared()
        .breakers
        .of(&route.name, snap.config.upstream.breaker_for(&route.name));
    let admitted = breaker.admit()?;
    let t = ex.calls_upstream();
    let result = upstream.send_outbound(outbound).await;
    ex.forwarded(t.elapsed().as_secs_f64());
    match &result {
        Ok(response) => admitted.answered(response.status()),
        Err(_) if streamed.is_stopped() => drop(admitted),
        Err(_) => admitted.failed(),
    }
    Ok(result?)
}

/// Observe: stream the response through, reading usage and judging the tool calls the model
/// proposes; its outcome is recorded when it ends. A response that must be read (judged,
/// redacted, its usage read) is decoded when it is compressed, and refused when it cannot be
/// read (a coding Warden cannot decode, or judged text not in UTF-8). With `propose.on_deny: error`, a whole body comes with the flag its refusal sets.
fn observe(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Route,
    action: &Action,
    sent: Option<&http::uri::PathAndQuery>,
    response: Response<Incoming>,
) -> Result<(Response<ProxyBody>, Option<Arc<AtomicBool>>), Refusal> {
    let (mut parts, body) = response.into_parts();
    redirect::check(route, sent, parts.status, &mut parts.headers)?;
    // The agent's connection speaks its own HTTP version, not the upstream's: an HTTP/1.0
    // answer passed on as such would close the agent's keep-alive connection every time
    // (hyper still answers an HTTP/1.0 agent in HTTP/1.0).
    parts.version = http::Version::default();
    readable::transfer_codings_as_content(&mut parts.headers);
    let content_type = parts.headers.get(http::header::CONTENT_TYPE).cloned();
    // A media type is case-insensitive (`Text/Event-Stream`).
    let event_stream = content_type.as_ref().is_some_and(|v| {
        v.as_bytes()
            .get(..17)
            .is_some_and(|t| t.eq_ignore_ascii_case(b"text/event-stream"))
    });
    inject::strip_response_hop_by_hop(&mut parts.headers, ex.accepts_trailers());
    inject::strip_set_cookie(&mut parts.headers, route.pass_cookies);
    protocol::strip_upstreams(&mut parts.headers);
    let mut redactor = ex.redactor();
    if let Some(r) = redactor.as_mut() {
        r.headers(&mut parts.headers);
        if bodiless(parts.status) {
            redactor = None;
        }
    }
    let judging = proposals(snap, ex, route, action, &parts);
    let llm = matches!(ex.shape(), Some(protocol::Shape::Llm(_)));
    let stream_kind = match ex.shape() {
        Some(protocol::Shape::Llm(request)) => StreamKind::of(request.endpoint),
        _ => None,
    };
    if let Some(kind) = stream_kind
        && redactor.is_some()
    {
        // A model's stream is read as its agent's SDK joins it, in the shape the request
        // calls for: a credential spread over several deltas is redacted too. A streamed
        // request answered with something else than an event stream (which the SDK reads as
        // one all the same) cannot be read so: refused.
        if ex.streams_events() && parts.status.is_success() && !event_stream {
            let content_type = content_type.as_ref().map(|v| v.as_bytes()).unwrap_or(b"");
            return Err(Unreadable::NotEventStream {
                content_type: Quoted::of(&String::from_utf8_lossy(content_type)),
            }
            .into());
        }
        if event_stream {
            redactor = redactor.map(|r| r.joining(route.protocol.dialect(), kind));
        }
    }
    let decoder = readable::check(
        &mut parts.headers,
        Needs {
            judge: judging.is_some(),
            redact: redactor.is_some(),
            usage: llm && parts.status.is_success() && !bodiless(parts.status),
        },
    )?;
    let outcome = ex.outcome(parts.status);
    if redactor.is_some() {
        // Redaction may change the body's length.
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    // When budgets are set, an agent that leaves before the usage arrives is still charged it.
    let budgets = &snap.config.budgets;
    let drain = (!budgets.limits.is_empty() && parts.status.is_success() && llm).then_some(Drain {
        max_bytes: budgets.drain_bytes,
        timeout: budgets.drain_timeout,
    });
    let mut body = ObservedBody::new(body, outcome, route.protocol.dialect(), event_stream)
        .decoding(decoder)
        .hiding_asked_usage(ex.asked_usage() && event_stream)
        .draining(drain)
        .redacting(redactor)
        .cut_on(ex.cut(), event_stream);
    let mut refusal = None;
    if let Some(mut judging) = judging {
        parts.headers.remove(http::header::CONTENT_LENGTH);
        refusal = judging.refusal_signal();
        body = body.judging(judging);
    }
    Ok((
        Response::from_parts(parts, Either::Right(Either::Left(body))),
        refusal,
    ))
}

/// The judging of the tool calls a successful LLM response proposes, when `propose.enabled`
/// and the route's dialect reads them; calls that need approval are held through the
/// approval gate, when there is one. The response is judged as the client reads it, by what
/// the request asked for, not by the content type the upstream gave: an event stream when it
/// asked to stream, else a whole body (an event stream there is no JSON: not delivered).
fn proposals(
    snap: &Snapshot,
    ex: &Exchange,
    route: &Route,
    action: &Action,
    parts: &http::response::Parts,
) -> Option<Judging> {
    if !snap.config.propose.enabled || !parts.status.is_success() || bodiless(parts.status) {
        return None;
    }
    let rewriter = route.protocol.dialect().proposals(ex.shape()?)?;
    let judge = Judge::new(
        Arc::clone(&snap.policy),
        Arc::clone(&snap.propose),
        Arc::clone(&action.principal),
        &action.context,
        Box::new(ex.proposal_records(snap.config.audit.fail_closed)),
    )
    .holding(ex.shared().gate().cloned());
    let keepalive = ex.shared().gate().and_then(|gate| gate.keepalive());
    Some(Judging::new(
        rewriter,
        judge,
        route.protocol.dialect(),
        ex.streams_events(),
        keepalive,
    ))
}

/// A response that has no body (its length header describes another, or none).
fn bodiless(status: http::StatusCode) -> bool {
    status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
}

/// Record: the exchange answers a refusal, records what the request came to and counts it.
async fn record(ex: Exchange, result: Result<Response<ProxyBody>, Refusal>) -> Response<ProxyBody> {
    ex.finish(result).await
}
