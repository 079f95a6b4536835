//! Agents over Streamable HTTP (MCP 2025-03-26 and later), at the endpoint's prefix: POST one
//! message (answered with JSON, or an event stream when the server reports progress or asks
//! something first), GET the session's event stream (the servers' own messages) or, with
//! `Last-Event-ID`, resume a stream whose connection dropped (`mcp/resume.rs`), DELETE the
//! session.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::another_token;
use super::answer::{empty, event_stream};
use super::message::{self, Caller, Via};
use crate::fleet::cut::Cut;
use crate::mcp::{McpError, Session, cut_notice, relay};
use crate::protocol;
use crate::protocol::mcp::jsonrpc::Message;
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::proxy::refusal::Refusal;
use crate::text::Quoted;

/// How often a quiet event stream carries a comment, so proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// One request to the endpoint, by HTTP method.
pub(super) async fn walk(
    caller: Caller<'_>,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let method = req.method().clone();
    match method {
        Method::POST => post(caller, ex, req).await,
        Method::GET => {
            let session = message::session(ex, req.headers(), &caller.principal, caller.route)?;
            // A stream opened with another Warden token than the session's is cut when that
            // one is revoked (the session's own cut watches the session's).
            let cut = another_token::cut_of(ex, &session);
            events(session, req.headers(), cut, &caller.endpoint.name)
        }
        Method::DELETE => {
            let id = message::session_id(req.headers())?;
            ex.shared()
                .mcp
                .end(id, &caller.principal, &caller.route.name)?;
            Ok(empty(StatusCode::OK))
        }
        other => Err(McpError::Method {
            method: Quoted::of(other.as_str()),
            allowed: "POST (messages), GET (event stream) or DELETE (end the session)",
        }
        .into()),
    }
}

/// POST: one message from the agent, answered in the response.
async fn post(
    caller: Caller<'_>,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let (mut head, body) = req.into_parts();
    let body =
        protocol::body::read_decoded(body, &mut head.headers, &caller.snap.config.limits).await?;
    let message = Message::parse(&body).map_err(McpError::from)?;
    message::handle(
        caller,
        ex,
        message,
        &body,
        Via::StreamableHttp(&head.headers),
    )
    .await
}

/// `Last-Event-ID`: the last event an agent received on a stream it resumes.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// GET: the session's event stream (the servers' own requests and notifications), until
/// the agent leaves or the session ends; a session its agent's quarantine cut ends it with a
/// last notification that says why, as does `cut` (the revocation of the other Warden token
/// the stream was opened with: the stream ends, recorded, the session goes on). With
/// `Last-Event-ID`, the stream that id is of resumes after it: an answer stream's held events
/// then the rest of the answer, or the GET stream's.
fn events(
    session: Arc<Session>,
    headers: &HeaderMap,
    cut: Option<Cut>,
    endpoint: &Arc<str>,
) -> Result<Response<ProxyBody>, Refusal> {
    let resume = match headers.get(LAST_EVENT_ID) {
        Some(last) => {
            let last = last.to_str().unwrap_or_default();
            let (stream, after) = session.replays.find(last).map_err(McpError::from)?;
            if !Arc::ptr_eq(&stream, session.replays.get_stream()) {
                let (_, body) = stream.resume(after, last).map_err(McpError::from)?;
                return Ok(event_stream(body));
            }
            Some((after, last))
        }
        None => None,
    };
    let Some(mut rx) = session.take_events() else {
        return Err(McpError::StreamOpen.into());
    };
    let stream = Arc::clone(session.replays.get_stream());
    let (tx, body) = match resume {
        Some((after, last)) => match stream.resume(after, last) {
            Ok(connection) => connection,
            Err(e) => {
                session.give_back_events(rx);
                return Err(McpError::from(e).into());
            }
        },
        None => stream.attach(),
    };
    let endpoint = Arc::clone(endpoint);
    let mut cut = cut;
    tokio::spawn(async move {
        let own = tokio::select! {
            () = relay(&mut rx, Some(&stream), &tx, KEEPALIVE, || false) => None,
            cut = session.ended() => {
                if let Some(cause) = cut {
                    stream.try_send(&cut_notice(&cause));
                }
                None
            }
            cause = another_token::cut(cut.as_mut()) => Some(cause),
        };
        if let (Some(cause), Some(cut)) = (own, &cut) {
            stream.try_send(&cut_notice(&cause));
            another_token::record(cut, &cause, &endpoint);
        }
        stream.detach();
        session.give_back_events(rx);
    });
    Ok(event_stream(body))
}
