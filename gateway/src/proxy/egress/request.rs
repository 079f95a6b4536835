//! A plain-HTTP request through the egress proxy (`HTTP_PROXY`, absolute-form): its body read
//! within `limits` and inspected, judged as `egress:request` with its method and path, sent
//! over a new connection to the checked address, its response streamed back. A request in an
//! intercepted TLS tunnel walks the same way ([`Via::Intercepted`]) and leaves over the
//! tunnel's own TLS to the destination.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::{Worker, action, decide, destination, hold_here};
use crate::action::{EgressFacts, Findings, Principal, Verb};
use crate::egress::intercept::TunnelUpstream;
use crate::egress::{Destination, EgressError, Host, dial};
use crate::observe::ObservedBody;
use crate::protocol::{self, Protocol};
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::proxy::refusal::Refusal;
use crate::proxy::stages::{inspect, look_for_canaries};
use crate::secrets::inject::strip_hop_by_hop;
use crate::snapshot::Snapshot;

/// How a request reaches its destination.
#[derive(Clone, Copy)]
pub(super) enum Via<'a> {
    /// Plain HTTP, over a new connection.
    Plain,
    /// Out of an intercepted TLS tunnel (`sni`: the server name the agent sent), over the
    /// tunnel's TLS to the destination.
    Intercepted {
        upstream: &'a TunnelUpstream,
        sni: Option<&'a str>,
    },
}

/// Judges one plain-HTTP (or intercepted) request and forwards it.
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    snap: &Arc<Snapshot>,
    worker: &Worker,
    ex: &mut Exchange,
    principal: Arc<Principal>,
    dest: Destination,
    line_and_headers: &[u8],
    req: Request<Incoming>,
    via: Via<'_>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (mut head, body) = req.into_parts();
    let body = protocol::body::read(body, &head.headers, &snap.config.limits).await?;
    let facts = EgressFacts {
        port: dest.port,
        addresses: dest.addresses.clone(),
        scheme: via.scheme().to_owned(),
        sni: match via {
            Via::Plain => None,
            Via::Intercepted { sni, .. } => sni.map(str::to_owned),
        },
        method: Some(head.method.to_string()),
        path: Some(head.uri.path().to_owned()),
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
    look_for_canaries(
        ex,
        &mut action,
        line_and_headers,
        "request line and headers",
    );
    inspect(snap, ex, &mut action, &body);
    let decision = decide(snap, ex, &action, &dest, &body).await?;
    hold_here(ex, &action, &decision).await?;

    let t = Instant::now();
    let sent = send(worker, &dest, &mut head, body, via).await;
    ex.forwarded(t.elapsed().as_secs_f64());
    let (mut parts, body) = sent?.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let outcome = ex.outcome(parts.status);
    let body = ObservedBody::new(body, outcome, Protocol::Rest.dialect(), false);
    Ok(Response::from_parts(
        parts,
        Either::Right(Either::Left(body)),
    ))
}

impl Via<'_> {
    /// The scheme its requests are judged with.
    fn scheme(&self) -> &'static str {
        match self {
            Via::Plain => "http",
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
    body: Bytes,
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
    let mut outbound = Request::new(Full::new(body));
    *outbound.method_mut() = head.method.clone();
    *outbound.uri_mut() = path
        .parse()
        .map_err(|e: http::uri::InvalidUri| EgressError::Target(e.to_string()))?;
    let mut headers = std::mem::take(&mut head.headers);
    strip_hop_by_hop(&mut headers);
    if let Via::Intercepted { upstream, .. } = via {
        // The client names the destination itself (`Host` or HTTP/2's `:authority`).
        headers.remove(HOST);
        *outbound.headers_mut() = headers;
        *outbound.uri_mut() = upstream.uri(dest.port, path)?;
        return upstream.send(outbound).await;
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
