//! Builds the upstream request: hop-by-hop headers and the agent's credential removed, the
//! upstream credential injected.

use http::header::{self, HeaderMap, HeaderName};
use http::{HeaderValue, Request, request::Parts};

use super::credential::{Credential, Placed};
use crate::route::Route;
use crate::route::config::ACCOUNT_HEADERS;

/// Headers in which agents present their Warden credential. Never forwarded.
pub static AGENT_CREDENTIAL_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    HeaderName::from_static("x-goog-api-key"),
];

/// How many [`HOP_BY_HOP`] headers there are.
const HOP_BY_HOP_COUNT: usize = 10;

/// Connection-scoped headers (RFC 9110 §7.6.1) plus those Warden sets itself.
static HOP_BY_HOP: [HeaderName; HOP_BY_HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
];

/// The request to send upstream for an agent request whose head is `parts`; `headers` are
/// the agent's request headers, taken out of `parts` (they are cleaned in place, not copied).
pub fn upstream_request<B>(
    route: &Route,
    parts: &Parts,
    mut headers: HeaderMap,
    rest: &str,
    body: B,
    credential: Option<&Credential>,
) -> Result<Request<B>, http::Error> {
    let mut query = parts.uri.query().map(strip_key_param);
    if let Some(Placed::Query(name, value)) = credential.map(|c| &c.placed) {
        query = Some(with_param(query, name, value));
    }
    let uri = route.upstream.uri(rest, query.as_deref())?;
    let trailers = accepts_trailers(&headers);
    strip_hop_by_hop(&mut headers);
    if trailers {
        // The only `TE` HTTP/2 allows, and what tells an upstream it may answer in trailers.
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    for h in &AGENT_CREDENTIAL_HEADERS {
        headers.remove(h);
    }
    headers.remove(header::CONTENT_LENGTH);
    // Usage is read from the response as it streams by: ask for it uncompressed.
    headers.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    if credential.is_some() {
        // The operator's credential acts in the account the route names, not one the agent
        // picks.
        for name in ACCOUNT_HEADERS {
            headers.remove(name);
        }
    }
    for (name, value) in &route.account_headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(Placed::Header(name, value)) = credential.map(|c| &c.placed) {
        headers.insert(name.clone(), value.clone());
    }
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(body)?;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Where a request whose head is `parts` goes upstream as its agent may know it, when its
/// credential is placed in the query: [`upstream_request`]'s path and query without the
/// credential's parameter (`None` when the credential is not in the query, so the upstream
/// request's own target serves). An upstream's relative redirect is resolved against it: a
/// `Location` that keeps the request's query (`#x`, or empty) is rewritten for the agent, and
/// must not hand it the credential, whether or not the route redacts (`inject.redact`).
pub fn redirect_base(
    route: &Route,
    parts: &Parts,
    rest: &str,
    credential: Option<&Credential>,
) -> Option<http::uri::PathAndQuery> {
    let Some(Placed::Query(name, _)) = credential.map(|c| &c.placed) else {
        return None;
    };
    let query = parts
        .uri
        .query()
        .map(|q| without_param(&strip_key_param(q), name));
    // Built from the parts `upstream_request` built its target from; should it fail, the path
    // alone: never the target with the credential in it.
    let uri = route
        .upstream
        .uri(rest, query.as_deref())
        .or_else(|_| route.upstream.uri(rest, None))
        .ok()?;
    uri.path_and_query().cloned()
}

/// `query` without the parameters named `name` (what [`with_param`] replaces).
fn without_param(query: &str, name: &str) -> String {
    query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split_once('=').map_or(*kv, |(k, _)| k) != name)
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a request's `TE` lists `trailers` (RFC 9110 §10.1.4): its client reads trailer
/// fields after a chunked body.
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| {
            let token = token.split(';').next().unwrap_or_default();
            token.trim().eq_ignore_ascii_case("trailers")
        })
}

/// A response's hop-by-hop headers removed, but its `Trailer` (which fields its trailers
/// hold) kept for an agent that `accepts_trailers`: an HTTP/1.1 server sends only the trailer
/// fields the response declares there, so the trailers reach the agent as they reach an
/// HTTP/2 one (redacted like the body).
pub fn strip_response_hop_by_hop(headers: &mut HeaderMap, accepts_trailers: bool) {
    let declared: Vec<HeaderValue> = match accepts_trailers {
        true => headers.get_all(header::TRAILER).iter().cloned().collect(),
        false => Vec::new(),
    };
    strip_hop_by_hop(headers);
    for value in declared {
        headers.append(header::TRAILER, value);
    }
}

/// Removes an upstream's `Set-Cookie` and `Set-Cookie2` unless the route passes cookies
/// (`pass_cookies`): the agent would keep them for Warden's origin and send them to every
/// route, so one upstream could plant cookies for the others.
pub fn strip_set_cookie(headers: &mut HeaderMap, pass_cookies: bool) {
    if !pass_cookies {
        headers.remove(header::SET_COOKIE);
        headers.remove("set-cookie2");
    }
}

/// Removes hop-by-hop headers and those named in `Connection`, leaving the end-to-end ones.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::try_from(n.trim()).ok())
            .collect();
        for name in &named {
            headers.remove(name);
        }
    }
    // One pass to find which are present (usually only `host`), then remove just those: a
    // lookup per absent name costs more than the scan.
    let mut present = [false; HOP_BY_HOP_COUNT];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
}

/// `query` with `name=value` added (`value` already encoded), replacing a parameter of that
/// name the agent sent.
fn with_param(query: Option<String>, name: &str, value: &str) -> String {
    let mut out =
        String::with_capacity(query.as_ref().map_or(0, String::len) + name.len() + value.len() + 2);
    for kv in query.iter().flat_map(|q| q.split('&')) {
        let key = kv.split_once('=').map_or(kv, |(k, _)| k);
        if kv.is_empty() || key == name {
            continue;
        }
        out.push_str(kv);
        out.push('&');
    }
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    out
}

/// Removes a `key=` parameter (the Gemini API-key query parameter) so an agent's credential
/// never travels upstream in the URL.
fn strip_key_param(query: &str) -> String {
    query
        .split('&')
        .filter(|kv| !(kv.starts_with("key=") || *kv == "key"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::config::load::parse;
    use crate::route::RouteTable;

    /// The routes of a configuration whose one route is `route` (a YAML flow mapping).
    pub(super) fn routes(route: &str) -> Result<RouteTable, String> {
        let config = parse(&format!("routes:\n  - {route}\n"), None).expect("config");
        RouteTable::build(&config, None).map_err(|e| e.to_string())
    }

    /// An OpenAI route on `/o` with a credential, `more` keys added.
    pub(super) fn openai_route(more: &str) -> String {
        format!(
            "{{ prefix: /o, connector: openai, upstream: 'http://127.0.0.1:1/v1', credential: {{ file: /dev/null }}{more} }}"
        )
    }

    #[test]
    fn strips_agent_credentials_and_injects_the_upstream_key() {
        let table = routes(&openai_route("")).expect("routes");
        let (route, rest) = table.find("/o/chat/completions").expect("route");
        let req = Request::post("/o/chat/completions?key=agent-secret&alt=sse")
            .header("authorization", "Bearer agent-token")
            .header("x-api-key", "agent-token")
            .header("api-key", "agent-token")
            .header("x-goog-api-key", "agent-token")
            .header("connection", "keep-alive, x-drop-me")
            .header("x-drop-me", "1")
            .header("traceparent", "00-abc-def-01")
            .header("accept-encoding", "gzip, br")
            .body(())
            .expect("request");
        let (mut parts, ()) = req.into_parts();
        let headers = std::mem::take(&mut parts.headers);
        let cred = Credential::header(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer provider-key"),
        );
        let out = upstream_request(
            route,
            &parts,
            headers,
            rest,
            Bytes::from_static(b"{}"),
            Some(&cred),
        )
        .expect("request");
        assert_eq!(
            out.uri().to_string(),
            "http://127.0.0.1:1/v1/chat/completions?alt=sse"
        );
        let h = out.headers();
        assert_eq!(
            h.get("authorization").map(|v| v.as_bytes()),
            Some(&b"Bearer provider-key"[..])
        );
        for gone in [
            "x-api-key",
            "api-key",
            "x-goog-api-key",
            "connection",
            "x-drop-me",
            "host",
        ] {
            assert!(h.get(gone).is_none(), "{gone} must not be forwarded");
        }
        assert!(h.get("traceparent").is_some());
        assert_eq!(
            h.get("accept-encoding").map(|v| v.as_bytes()),
            Some(&b"identity"[..])
        );
    }

    #[test]
    fn a_redirect_is_resolved_against_the_target_without_a_query_credential() {
        let table = routes(&openai_route("")).expect("routes");
        let (route, rest) = table.find("/o/models").expect("route");
        let (parts, ()) = Request::get("/o/models?page=2&api_key=agent&key=x")
            .body(())
            .expect("request")
            .into_parts();
        let cred = Credential {
            placed: Placed::Query("api_key".into(), zeroize::Zeroizing::new("s3cr3t".into())),
            echo: Default::default(),
            origin: None,
        };
        let sent = upstream_request(route, &parts, HeaderMap::new(), rest, (), Some(&cred))
            .expect("request");
        assert_eq!(
            sent.uri().path_and_query().map(|p| p.as_str()),
            Some("/v1/models?page=2&api_key=s3cr3t")
        );
        let base = redirect_base(route, &parts, rest, Some(&cred)).expect("a base");
        assert_eq!(base.as_str(), "/v1/models?page=2");
        // A header credential: the upstream request's own target serves.
        let header = Credential::header(header::AUTHORIZATION, HeaderValue::from_static("k"));
        assert_eq!(redirect_base(route, &parts, rest, Some(&header)), None);
        assert_eq!(redirect_base(route, &parts, rest, None), None);
    }

    /// The `te` sent upstream for a request whose agent sent `te` (each value a line).
    fn te_sent(te: &[&str]) -> Vec<String> {
        let table = routes(&openai_route("")).expect("routes");
        let (route, rest) = table.find("/o/chat/completions").expect("route");
        let mut headers = HeaderMap::new();
        for value in te {
            headers.append(header::TE, value.parse().expect("value"));
        }
        let (parts, ()) = Request::post("/o/chat/completions")
            .body(())
            .expect("request")
            .into_parts();
        let out = upstream_request(route, &parts, headers, rest, (), None).expect("request");
        out.headers()
            .get_all(header::TE)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn te_trailers_goes_upstream_alone_and_only_when_the_agent_sent_it() {
        assert_eq!(te_sent(&["trailers"]), ["trailers"]);
        // HTTP/2 allows no other `te`: the codings the agent listed stay behind.
        assert_eq!(te_sent(&["gzip, Trailers"]), ["trailers"]);
        assert_eq!(te_sent(&["deflate", "trailers;q=1"]), ["trailers"]);
        assert!(te_sent(&["gzip"]).is_empty());
        assert!(te_sent(&[]).is_empty());
    }

    #[test]
    fn a_response_keeps_its_trailer_declaration_only_for_an_agent_that_reads_trailers() {
        let response = || {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::TRAILER,
                "x-usage, grpc-status".parse().expect("value"),
            );
            headers.insert(header::TRANSFER_ENCODING, "chunked".parse().expect("value"));
            headers.insert(header::CONNECTION, "close".parse().expect("value"));
            headers.insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("value"),
            );
            headers
        };
        let mut kept = response();
        strip_response_hop_by_hop(&mut kept, true);
        assert_eq!(
            kept.get(header::TRAILER).map(|v| v.as_bytes()),
            Some(&b"x-usage, grpc-status"[..])
        );
        assert!(kept.get(header::TRANSFER_ENCODING).is_none());
        assert!(kept.get(header::CONNECTION).is_none());
        assert!(kept.get(header::CONTENT_TYPE).is_some());
        let mut dropped = response();
        strip_response_hop_by_hop(&mut dropped, false);
        assert!(dropped.get(header::TRAILER).is_none());
        assert!(dropped.get(header::CONTENT_TYPE).is_some());
    }
}

#[cfg(test)]
mod account_tests {
    use super::tests::{openai_route, routes};
    use super::*;

    /// The account headers sent upstream on route `route` (YAML flow mapping), when the agent
    /// asks for its own organisation and project.
    fn sent(route: &str, credential: Option<&Credential>) -> Vec<(String, String)> {
        let table = routes(route).expect("routes");
        let (route, rest) = table.find("/o/chat/completions").expect("route");
        let req = Request::post("/o/chat/completions")
            .header("openai-organization", "org-agent")
            .header("OpenAI-Project", "proj-agent")
            .header("x-goog-user-project", "agent-billing")
            .body(())
            .expect("request");
        let (mut parts, ()) = req.into_parts();
        let headers = std::mem::take(&mut parts.headers);
        let out = upstream_request(route, &parts, headers, rest, (), credential).expect("request");
        ACCOUNT_HEADERS
            .iter()
            .filter_map(|h| {
                let v = out.headers().get(*h)?.to_str().ok()?;
                Some(((*h).to_owned(), v.to_owned()))
            })
            .collect()
    }

    #[test]
    fn an_upstreams_cookies_reach_the_agent_only_where_the_route_passes_them() {
        let answer = || {
            let mut h = HeaderMap::new();
            h.append(
                header::SET_COOKIE,
                HeaderValue::from_static("warden_session=x; Path=/"),
            );
            h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
            h.append("set-cookie2", HeaderValue::from_static("c=3"));
            h.append(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h
        };
        let mut dropped = answer();
        strip_set_cookie(&mut dropped, false);
        assert!(!dropped.contains_key(header::SET_COOKIE));
        assert!(!dropped.contains_key("set-cookie2"));
        assert!(dropped.contains_key(header::CONTENT_TYPE));
        let mut passed = answer();
        strip_set_cookie(&mut passed, true);
        assert_eq!(passed, answer());
    }

    #[test]
    fn an_injected_credential_acts_in_the_routes_account_not_the_agents() {
        let cred = Credential::header(
            header::AUTHORIZATION,
            http::HeaderValue::from_static("Bearer provider-key"),
        );
        assert_eq!(sent(&openai_route(""), Some(&cred)), []);
        let named = openai_route(", account_headers: { OpenAI-Organization: org-acme }");
        assert_eq!(
            sent(&named, Some(&cred)),
            [("openai-organization".to_owned(), "org-acme".to_owned())]
        );
        // No credential injected: the agent's own key goes upstream, in its own account.
        let own = "{ prefix: /o, connector: openai-compatible, upstream: 'http://127.0.0.1:1/v1' }";
        assert_eq!(sent(own, None).len(), 3);
        let Err(message) = routes(&openai_route(", account_headers: { x-tenant: a }")) else {
            panic!("an unknown account header is refused");
        };
        assert!(
            message.contains("routes[0].account_headers.x-tenant")
                && message.contains("not an account-scoping header"),
            "{message}"
        );
    }
}

#[cfg(test)]
mod query_tests {
    use super::with_param;

    #[test]
    fn an_injected_parameter_replaces_the_agents_and_keeps_the_rest() {
        assert_eq!(
            with_param(Some("a=1&api_key=agent&b".into()), "api_key", "s%20k"),
            "a=1&b&api_key=s%20k"
        );
        assert_eq!(with_param(None, "k", "v"), "k=v");
    }
}
