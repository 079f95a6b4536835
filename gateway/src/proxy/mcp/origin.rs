//! Warden's own origin as the agent reached it: the protected resource metadata an MCP client
//! discovers its authorization server from (RFC 9728), and the refusal of browser pages of
//! other origins (DNS rebinding). Without authentication, the request's own host is trusted
//! only when it is this machine's: a page that rebinds its own name to 127.0.0.1 sends its own
//! name as `Host`, and its `Origin` matches it.

use std::net::IpAddr;

use http::uri::Authority;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;

use super::answer::json_response;
use crate::action::Principal;
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
    let host = authority(req).map_or_else(|| "localhost".into(), |a| a.as_str().to_owned());
    format!("{scheme}://{host}")
}

/// The host and port the request names: its URI's authority, else its `Host`.
fn authority(req: &Request<Incoming>) -> Option<Authority> {
    req.uri().authority().cloned().or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
    })
}

/// Whether `authority` names this machine: `localhost` or a loopback address (what an agent
/// without a credential reaches Warden at: such a listener is on loopback only). A missing
/// one is no browser's.
fn local(authority: Option<&Authority>) -> bool {
    let Some(authority) = authority else {
        return true;
    };
    let host = authority.host();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// A browser's `Origin`, when sent, must be Warden's own (DNS rebinding: a page of another
/// site must not reach the endpoint through the agent's browser). Warden's own origin is the
/// host the request names, which a rebinding page chooses: a request without a credential
/// (`identity.required: false`) must name this machine as `localhost` or a loopback address.
pub(super) fn check_origin(
    ex: &Exchange,
    req: &Request<Incoming>,
    principal: &Principal,
) -> Result<(), McpError> {
    if principal.is_anonymous() {
        let host = authority(req);
        if !local(host.as_ref()) {
            return Err(McpError::Host(Quoted::of(
                host.as_ref().map_or("", Authority::as_str),
            )));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn named(host: &str) -> bool {
        local(Some(&host.parse::<Authority>().expect("an authority")))
    }

    #[test]
    fn only_this_machines_names_are_local() {
        for host in [
            "localhost",
            "LocalHost:8080",
            "127.0.0.1:8080",
            "127.1.2.3",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            assert!(named(host), "{host}");
        }
        // A rebinding page's own name, whatever it resolves to now.
        for host in [
            "evil.example:8080",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8080",
            "10.0.0.1:8080",
            "[2001:db8::1]:8080",
            "0.0.0.0:8080",
        ] {
            assert!(!named(host), "{host}");
        }
        assert!(local(None));
    }
}
