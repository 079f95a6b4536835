//! Warden's own origin as the agent reached it: the protected resource metadata an MCP client
//! discovers its authorization server from (RFC 9728), and the refusal of browser pages of
//! other origins (DNS rebinding).

use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use super::answer::json_response;
use crate::mcp::McpError;
use crate::proxy::exchange::{Exchange, ProxyBody};
use crate::snapshot::Snapshot;
use crate::text::Quoted;

/// RFC 9728's well-known path.
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// `/.well-known/oauth-protected-resource[/<endpoint prefix>]` (RFC 9728): the resource, and
/// the authorization servers whose tokens Warden accepts (the identity section's issuers).
/// `None` when the request is not for it.
pub(in crate::proxy) fn protected_resource(
    snap: &Snapshot,
    ex: &Exchange,
    req: &Request<Incoming>,
) -> Option<Response<ProxyBody>> {
    let rest = req.uri().path().strip_prefix(METADATA_PATH)?;
    if req.method() != Method::GET {
        return None;
    }
    let mut endpoints = snap.routes.iter().filter(|r| r.mcp.is_some());
    let resource_path = if rest.is_empty() || rest == "/" {
        endpoints.next()?;
        String::new()
    } else {
        endpoints.find(|r| r.prefix == rest)?.prefix.clone()
    };
    let origin = own_origin(ex, req);
    let issuers: Vec<&str> = snap
        .config
        .identity
        .issuers
        .iter()
        .map(|i| i.issuer.as_str())
        .collect();
    let body = json!({
        "resource": format!("{origin}{resource_path}"),
        "authorization_servers": issuers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Warden MCP endpoint",
    });
    Some(json_response(StatusCode::OK, &body))
}

/// The protected resource metadata URL of the endpoint at `prefix`.
pub(in crate::proxy) fn metadata_url(
    ex: &Exchange,
    req: &Request<Incoming>,
    prefix: &str,
) -> String {
    format!("{}{METADATA_PATH}{prefix}", own_origin(ex, req))
}

/// `scheme://host[:port]` as the agent reached Warden (`localhost` when it named no valid
/// host).
fn own_origin(ex: &Exchange, req: &Request<Incoming>) -> String {
    let scheme = if ex.conn().tls { "https" } else { "http" };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .map(|a| a.as_str().to_owned())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

/// A browser's `Origin`, when sent, must be Warden's own (DNS rebinding: a page of another
/// site must not reach the endpoint through the agent's browser).
pub(super) fn check_origin(ex: &Exchange, req: &Request<Incoming>) -> Result<(), McpError> {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return Ok(());
    };
    let found = origin.to_str().unwrap_or_default();
    if found.eq_ignore_ascii_case(&own_origin(ex, req)) {
        Ok(())
    } else {
        Err(McpError::Origin(Quoted::of(found)))
    }
}
