//! Agents over Streamable HTTP (MCP 2025-03-26 and later), at the endpoint's prefix: POST one
//! message (answered with JSON, or an event stream when the server reports progress or asks
//! something first), GET the session's event stream (the servers' own messages), DELETE the
//! session.

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::answer::{empty, event_stream};
use super::message::{self, Caller, Via};
use crate::mcp::{EventBody, McpError, Session, cut_notice, event, relay};
use crate::protocol;
use crate::protocol::mcp::jsonrpc::Message;
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::proxy::refusal::Refusal;
use crate::text::Quoted;

/// Events of the session's stream held for a slow agent.
const STREAM_BUFFER: usize = 16;
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
            events(session)
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
    let (head, body) = req.into_parts();
    let body = protocol::body::read(body, &head.headers, &caller.snap.config.limits).await?;
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

/// GET: the session's event stream (the servers' own requests and notifications), until
/// the agent leaves or the session ends; a session its agent's quarantine cut ends it with a
/// last notification that says why.
fn events(session: Arc<Session>) -> Result<Response<ProxyBody>, Refusal> {
    let Some(mut rx) = session.take_events() else {
        return Err(McpError::StreamOpen.into());
    };
    let (tx, body) = EventBody::channel(STREAM_BUFFER);
    tokio::spawn(async move {
        tokio::select! {
            () = relay(&mut rx, &tx, KEEPALIVE, || false) => {}
            cut = session.ended() => if let Some(message) = cut {
                let _ = tx.try_send(event(&cut_notice(&message)));
            }
        }
        session.give_back_events(rx);
    });
    Ok(event_stream(body))
}
