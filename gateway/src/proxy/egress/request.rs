//! A plain-HTTP request through the egress proxy (`HTTP_PROXY`, absolute-form): its body read
//! within `limits` and inspected, judged as `egress:request` with its method and path, sent
//! over a new connection to the checked address, its response streamed back. A request in an
//! intercepted TLS tunnel walks the same way ([`Via::Intercepted`]) and leaves over the
//! tunnel's own TLS to the destination.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, PROXY_AUTHORIZATION};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt as _, Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Worker, action, decide, destination, guard, hold_here, look_up_once_held};
use crate::action::{EgressFacts, Findings, Principal, Verb};
use crate::canary;
use crate::egress::intercept::TunnelUpstream;
use crate::egress::{Destination, EgressError, Host, dial};
use crate::inspect;
use crate::observe::ObservedBody;
use crate::protocol::body::{self, Head};
use crate::protocol::{Protocol, strip_wardens_own};
use crate::proxy::bound_headers::BoundHeaders;
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::proxy::refusal::Refusal;
use crate::proxy::stages::{inspect, limit, look_for_canaries, recall};
use crate::proxy::streamed;
use crate::secrets::inject::strip_hop_by_hop;
use crate::snapshot::Snapshot;

/// How a request reaches its destination.
#[derive(Clone, Copy)]
pub(super) enum Via<'a> {
    /// Plain HTTP, over a new connection.
    Plain,
    /// Plain HTTP read out of a tunnel (which holds the agent's place in flight), over a new
    /// connection.
    Tunnelled,
    /// Out of an intercepted TLS tunnel (`sni`: the server name the agent sent), over the
    /// tunnel's TLS to the destination.
    Intercepted {
        upstream: &'a TunnelUpstream,
        sni: Option<&'a str>,
    },
}

/// Judges one plain-HTTP (or intercepted) request and forwards it. A body larger than
/// `inspect.stream_above` is judged on its first bytes and inspected as it streams on
/// (`streamed.rs`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    snap: &Arc<Snapshot>,
    worker: &Worker,
    ex: &mut Exchange,
    principal: Arc<Principal>,
    mut dest: Destination,
    line_and_headers: &[u8],
    req: Request<Incoming>,
    via: Via<'_>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (mut head, body) = req.into_parts();
    let limits = &snap.config.limits;
    let stream_above = snap.config.inspect.stream_above;
    let (mut body, rest) =
        match body::read_for_inspection(body, &mut head, limits, false, stream_above).await? {
            Head::Whole(body) => (body, None),
            Head::Streaming(first, rest) => (first, Some(rest)),
        };
    let facts = EgressFacts {
        port: dest.port,
        addresses: dest.addresses.clone(),
        scheme: via.scheme().to_owned(),
        sni: match via {
            Via::Plain | Via::Tunnelled => None,
            Via::Intercepted { sni, .. } => sni.map(str::to_owned),
        },
        method: Some(head.method.to_string()),
        path: Some(head.uri.path().to_owned()),
        server: worker.server(),
    };
    let detail = destination(&dest, &facts);
    let mut action = action(
        ex,
        principal,
        Verb::EgressRequest,
        &dest,
        facts,
        Findings::none(),
    );
    ex.egress_target("request", &action.verb, &action.resource, detail);
    judged_as_sent(&head).map_err(crate::protocol::ProtocolError::from)?;
    look_for_canaries(
        ex,
        &mut action,
        line_and_headers,
        "request line and headers",
    );
    // Percent-encoding hides no canary: the target is read decoded too, as REST's is.
    if !canary::hit(&action.context.findings)
        && let Some(target) = head.uri.path_and_query()
    {
        look_for_canaries(ex, &mut action, &inspect::decoded_target(target), "url");
    }
    if via.in_tunnel()
        && let Some(value) = head.headers.get(PROXY_AUTHORIZATION)
    {
        // In a tunnel it is no credential of Warden's: what the agent wrote there.
        look_for_canaries(
            ex,
            &mut action,
            value.as_bytes(),
            "header proxy-authorization",
        );
    }
    ex.bind_query(head.uri.query());
    inspect::inspect_head(
        &mut action.context.findings,
        &head.uri,
        &head.headers,
        via.uninspected(),
        &snap.config.inspect,
    );
    if matches!(via, Via::Plain) {
        // The host an absolute-form URL names is judged before any DNS query is made for it,
        // as a `CONNECT`'s is (a tunnel's requests go to the host its `CONNECT` named).
        inspect::inspect_host(
            &mut action.context.findings,
            &dest.host.cedar_name(),
            inspect::URL_HOST,
            &snap.config.inspect,
        );
    }
    // An approval binds to the headers that change the request: its credentials (any header a
    // detector found one in too) and how its body reads, keyed as the gate keys them.
    let bound = ex.shared().gate().map(|gate| {
        let flagged = inspect::credential_headers(&action.context.findings);
        BoundHeaders::of(&head.headers, &flagged, gate.binding_key())
    });
    if let Some(bound) = bound {
        ex.bind_headers(bound);
    }
    if inspect::found_in_url(&action.context.findings)
        && let Some(detail) = ex.egress_destination()
    {
        // Never recorded: a secret found in the path (a token some APIs take there).
        detail["path"] = serde_json::Value::from(inspect::WITHHELD_PATH);
    }
    ex.read_content_type(&head.headers);
    inspect(snap, ex, &mut action, &body);
    // A request in a tunnel is counted with its tunnel, which holds its place in flight.
    if matches!(via, Via::Plain) {
        limit(snap, ex, &action)?;
    }
    // Its session: the one the agent names (`sessions.header`), else its window.
    recall(
        snap,
        ex,
        &mut action,
        crate::fleet::session::named(&snap.config.sessions, &head.headers),
    )?;
    let read = body.len();
    let decision = decide(snap, worker, ex, &mut action, &mut dest, &mut body).await?;
    hold_here(ex, &action, &decision).await?;
    look_up_once_held(snap, worker, ex, &mut action, &mut dest, &decision).await?;
    if rest.is_some() && (body.len() != read || snap.policy.redacts()) {
        // The first bytes were redacted, or the rest may be: the length the agent declared
        // may no longer hold.
        head.headers.remove(CONTENT_LENGTH);
    }

    let mut verdict = streamed::Verdict::default();
    let body = streamed::outbound(snap, ex, &action, body, rest, &mut verdict);
    let t = Instant::now();
    let sent = send(worker, &dest, &mut head, body, via).await;
    ex.forwarded(t.elapsed().as_secs_f64());
    if let Some(tripped) = verdict.tripped() {
        let guard = |d| guard(snap, &dest, d);
        return Err(streamed::denied_mid_body(snap, ex, action, tripped, guard).await);
    }
    let (mut parts, body) = sent?.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_wardens_own(&mut parts.headers);
    let outcome = ex.outcome(parts.status);
    let body = ObservedBody::new(body, outcome, Protocol::Rest.dialect(), false);
    Ok(Response::from_parts(
        parts,
        Either::Right(Either::Left(body)),
    ))
}

impl Via<'_> {
    /// Whether the request came through a tunnel, not to the proxy itself.
    fn in_tunnel(&self) -> bool {
        !matches!(self, Via::Plain)
    }

    /// The headers whose values are not inspected: on a request to the proxy, the agent's
    /// Warden token (`Proxy-Authorization`); in a tunnel, none.
    fn uninspected(&self) -> &'static [http::HeaderName] {
        if self.in_tunnel() {
            &[]
        } else {
            &inspect::EGRESS_UNINSPECTED
        }
    }

    /// The scheme its requests are judged with.
    fn scheme(&self) -> &'static str {
        match self {
            Via::Plain | Via::Tunnelled => "http",
            Via::Intercepted { .. } => "https",
        }
    }
}

/// Sends the request (`head`, `body`) over a new connection to `dest`'s checked address (or
/// the intercepted tunnel's TLS): origin-form, `Host` naming the judged destination (whatever
/// the agent wrote), without the proxy's and hop-by-hop headers.
async fn send(
    worker: &Worker,
    dest: &Destination,
    head: &mut http::request::Parts,
    body: Either<Full<Bytes>, streamed::Inspected>,
    via: Via<'_>,
) -> Result<Response<Incoming>, EgressError> {
    let host = match (&dest.host, dest.port) {
        (Host::Name(name), 80) => name.clone(),
        (Host::Name(name), port) => format!("{name}:{port}"),
        (Host::Address(IpAddr::V6(ip)), port) => format!("[{ip}]:{port}"),
        (Host::Address(ip), port) => format!("{ip}:{port}"),
    };
    let host = HeaderValue::from_str(&host).map_err(|e| EgressError::Target(e.to_string()))?;
    let path = head
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let whole = matches!(body, Either::Left(_));
    let mut outbound = Request::new(body);
    *outbound.method_mut() = head.method.clone();
    *outbound.uri_mut() = path
        .parse()
        .map_err(|e: http::uri::InvalidUri| EgressError::Target(e.to_string()))?;
    let mut headers = std::mem::take(&mut head.headers);
    strip_hop_by_hop(&mut headers);
    if whole {
        // The body is whole (and may have been redacted): its length is what goes.
        headers.remove(CONTENT_LENGTH);
    }
    if let Via::Intercepted { upstream, .. } = via {
        // The client names the destination itself (`Host` or HTTP/2's `:authority`).
        headers.remove(HOST);
        *outbound.headers_mut() = headers;
        *outbound.uri_mut() = upstream.uri(dest.port, path)?;
        return upstream
            .send(outbound.map(|body| body.boxed_unsync()))
            .await;
    }
    headers.insert(HOST, host);
    *outbound.headers_mut() = headers;

    let stream = dial::dial(dest, worker.config.connect_timeout).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| EgressError::Upstream(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "egress connection ended with an error");
        }
    });
    tokio::time::timeout(
        worker.config.response_timeout,
        sender.send_request(outbound),
    )
    .await
    .map_err(|_| EgressError::UpstreamTimeout)?
    .map_err(|e| EgressError::Upstream(e.to_string()))
}

/// Refuses a request that asks its server to take it for another method or route it to
/// another path than judged (headers, or `_method` in the query), as REST routes do.
fn judged_as_sent(head: &http::request::Parts) -> Result<(), crate::protocol::rest::RestError> {
    crate::protocol::rest::refuse_redirection(&head.headers, head.uri.query(), &head.method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, header: Option<(&'static str, &'static str)>) -> http::request::Parts {
        let mut request = Request::builder().method(http::Method::POST).uri(uri);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        request.body(()).expect("a request").into_parts().0
    }

    /// A method or path the destination would take instead of the one judged is refused on
    /// egress as on REST routes.
    #[test]
    fn an_egress_request_asking_for_another_method_or_path_is_refused() {
        let url = "http://api.example.com/items";
        for (uri, header) in [
            (url, Some(("x-http-method-override", "DELETE"))),
            (url, Some(("x-original-url", "/admin/drop"))),
            (url, Some(("X-Rewrite-URL", "/admin/drop"))),
            ("http://api.example.com/items?_method=DELETE", None),
            ("http://api.example.com/items?a=1&.method=DELETE", None),
        ] {
            let refused = judged_as_sent(&head(uri, header));
            assert!(refused.is_err(), "{uri} {header:?}: {refused:?}");
        }
        assert!(judged_as_sent(&head("http://api.example.com/items?method=x", None)).is_ok());
    }
}
