//! Agents over the legacy HTTP+SSE transport (MCP 2024-11-05), below the endpoint's prefix:
//! GET `/sse` opens a session's event stream, whose first event names where to post
//! (`/messages?session_id=<id>`). Each POST carries one message, judged exactly as over
//! Streamable HTTP (`message.rs`), and is answered `202 Accepted` once it is read and, for a
//! request to a server, sent; its answer (a refusal too) and everything the servers send
//! travel on the stream. A POST from another principal than the stream's, or for a session
//! that ended or never was, gets 404; a body that is not one JSON-RPC message gets 400.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;
use serde_json::Value;

use super::answer::{empty, event_stream};
use super::message::{self, Caller, Via};
use crate::mcp::{InUse, LegacySession, McpError, cut_notice, event, session_param};
use crate::protocol;
use crate::protocol::mcp::jsonrpc::{Kind, Message};
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::proxy::refusal::Refusal;

/// How long the last notification of a cut stream may wait for room in its queue.
const CUT_NOTICE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// GET `/sse`: a new session's event stream, counted against the rate limits as a session
/// opened over Streamable HTTP is. It lasts until the agent closes it, the session rests
/// unused past its idle timeout, or the agent is quarantined or the token it was opened with
/// revoked (a last notification says why); the session ends with it.
pub(super) fn open(caller: &Caller<'_>, ex: &mut Exchange) -> Result<Response<ProxyBody>, Refusal> {
    message::limit_opening(caller.snap, ex, caller.route, &caller.principal)?;
    let (stream, body) = ex
        .shared()
        .mcp
        .open_legacy(caller.endpoint, &caller.principal)?;
    let shared = Arc::clone(ex.shared());
    let cut = ex.cut();
    let endpoint = Arc::clone(&caller.endpoint.name);
    tokio::spawn(async move {
        match cut {
            Some(mut cut) => tokio::select! {
                () = stream.keep() => {}
                cause = cut.cut() => {
                    let notice = event(&cut_notice(&cause));
                    // The queue may be full of what the agent has not read: not waited for.
                    let _ = tokio::time::timeout(CUT_NOTICE_WAIT, stream.push(notice)).await;
                    cut.record(&cause, serde_json::json!({
                        "cut": "mcp_stream",
                        "endpoint": &*endpoint,
                    }));
                }
            },
            None => stream.keep().await,
        }
        shared.mcp.end_legacy(&stream.id);
    });
    Ok(event_stream(body))
}

/// POST `/messages?session_id=<id>`: one message of the session, answered on its stream.
pub(super) async fn post(
    caller: Caller<'_>,
    ex: &mut Exchange,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    let id = session_param(req.uri().query()).ok_or(McpError::LegacySessionMissing)?;
    let stream = ex
        .shared()
        .mcp
        .legacy(&id, &caller.principal, &caller.route.name)?;
    // The stream stays open while the message is under way, however long its servers take.
    let in_use = stream.in_use();
    let (mut head, body) = req.into_parts();
    let body =
        protocol::body::read_decoded(body, &mut head.headers, &caller.snap.config.limits).await?;
    let message = Message::parse(&body).map_err(McpError::from)?;
    let request = match &message.kind {
        Kind::Request { id, .. } => Some(id.to_value()),
        _ => None,
    };
    let answer = match message::handle(caller, ex, message, &body, Via::LegacySse(&stream)).await {
        Ok(answer) => answer,
        // A refused request is answered where the agent waits for its answer: on the stream.
        Err(refusal) if request.is_some() => ex.refused(&refusal).map(Either::Left),
        Err(refusal) => return Err(refusal),
    };
    on_stream(stream, answer, request, in_use).await;
    Ok(empty(StatusCode::ACCEPTED))
}

/// Puts `answer` on the session's stream: a JSON-RPC message (with the id of `request` when
/// Warden answered without one), or the events of an event stream as they come; the message
/// is under way (`in_use`) until then.
async fn on_stream(
    stream: Arc<LegacySession>,
    answer: Response<ProxyBody>,
    request: Option<Value>,
    in_use: InUse,
) {
    match answer.into_body() {
        Either::Left(full) => {
            let Ok(bytes) = full.collect().await.map(|c| c.to_bytes());
            let Ok(mut message) = serde_json::from_slice::<Value>(&bytes) else {
                // No body: the message needs no answer (a notification, a reply).
                return;
            };
            if let (Some(id), Some(map)) = (request, message.as_object_mut())
                && map.get("id").is_none_or(Value::is_null)
            {
                map.insert("id".into(), id);
            }
            stream.push(event(&message)).await;
        }
        Either::Right(Either::Right(mut events)) => {
            tokio::spawn(async move {
                let _in_use = in_use;
                while let Some(chunk) = events.next().await {
                    if !stream.push(chunk).await {
                        return;
                    }
                }
            });
        }
        // An upstream's body, observed: MCP endpoints answer none.
        Either::Right(Either::Left(_)) => {}
    }
}
