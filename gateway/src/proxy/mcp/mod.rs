//! MCP endpoints on the request path, after route and identify. Agents speak one of two
//! transports at an endpoint's prefix: Streamable HTTP at the prefix itself
//! (`streamable.rs`), or the legacy HTTP+SSE transport at `<prefix>/sse` and
//! `<prefix>/messages` (`legacy.rs`). Either way each message walks the same stages
//! (`message.rs`), and so does each request a server sends the agent (`server_requests.rs`);
//! the tasks an agent's tool calls create are followed by `tasks.rs`; what pinning says of the
//! tool, prompt or resource a message uses, by `pinned.rs`; what a server answers to a
//! `prompts/get` or `resources/read` is read before the agent gets it (`served_content.rs`);
//! `origin.rs` holds what depends on Warden's own origin (the protected
//! resource metadata, the refusal of other origins' pages).

mod another_token;
mod answer;
mod legacy;
mod message;
mod origin;
mod pages;
mod pinned;
mod served_content;
mod server_requests;
mod streamable;
mod tasks;

use std::sync::Arc;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::action::Principal;
use crate::mcp::{Endpoint, MESSAGES_PATH, McpError, SSE_PATH};
use crate::route::Route;
use crate::snapshot::Snapshot;
use crate::text::{PATH_MAX, Quoted};
use message::Caller;
pub(super) use origin::{metadata_url, protected_resource};

use super::exchange::{Exchange, ProxyBody};
use super::refusal::Refusal;

/// The MCP stages for one request to `endpoint`, by path and method.
pub(super) async fn walk(
    snap: &Snapshot,
    ex: &mut Exchange,
    route: &Arc<Route>,
    endpoint: &Arc<Endpoint>,
    principal: Arc<Principal>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    origin::check_origin(ex, &req, &principal)?;
    let caller = Caller {
        snap,
        route,
        endpoint,
        principal,
    };
    match (route.rest(req.uri().path()), req.method()) {
        ("" | "/", _) => streamable::walk(caller, ex, req).await,
        (SSE_PATH, &Method::GET) => legacy::open(&caller, ex),
        (MESSAGES_PATH, &Method::POST) => legacy::post(caller, ex, req).await,
        (SSE_PATH | MESSAGES_PATH, method) => Err(McpError::Method {
            method: Quoted::of(method.as_str()),
            allowed: "GET <endpoint>/sse (the event stream) and POST <endpoint>/messages",
        }
        .into()),
        _ => Err(McpError::Path {
            path: Quoted::with_max(req.uri().path(), PATH_MAX),
            prefix: route.prefix.clone(),
        }
        .into()),
    }
}
