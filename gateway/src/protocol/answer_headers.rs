//! The headers of an upstream's answer that never reach the agent, in one place: those in
//! Warden's own namespace (`x-warden-…`, [`strip_wardens_own`]) and those a provider could use
//! against the agent's HTTP client or a browser that shares Warden's origin (the approval
//! console, an operator's tab): they tell a client where to connect next, what to pin or wipe,
//! which other origins may read Warden's answers, or where to send reports about it. What an
//! upstream says there is the upstream's business with its own origin, never Warden's. The
//! same goes for an answer's trailers. (`Set-Cookie` is the route's `pass_cookies`:
//! `secrets/inject.rs`.)

use http::{HeaderMap, HeaderName, HeaderValue};

use super::refusal::strip_wardens_own;

/// Headers removed from every upstream answer on a route, by name.
pub const STRIPPED: &[&str] = &[
    // Another host or port for Warden's origin (HTTP clients and browsers that read it
    // connect there next).
    "alt-svc",
    // HTTPS forced (and pinned) on Warden's host, every port of it.
    "strict-transport-security",
    "public-key-pins",
    "public-key-pins-report-only",
    "expect-ct",
    // Wipes a browser's cookies and storage for Warden's origin (the console's session).
    "clear-site-data",
    // A browser sent elsewhere.
    "refresh",
    // Reports about Warden's origin sent to the upstream's choice of endpoint.
    "nel",
    "report-to",
    "reporting-endpoints",
    // A service worker's scope widened on Warden's origin.
    "service-worker-allowed",
    // Lets other origins time Warden's answers.
    "timing-allow-origin",
    // A browser prefetches or prerenders what the rules name, as `Link` preloads do.
    "speculation-rules",
    // Only reports (of what Warden's origin loads) to the upstream's endpoint; an enforcing
    // `Content-Security-Policy` protects the page it comes with and stays.
    "content-security-policy-report-only",
];

/// Headers removed by prefix: CORS (`access-control-allow-origin`, `-credentials`,
/// `-headers`, `-methods`, `-expose-headers`, `-max-age`), which would let a web page of
/// another origin read Warden's answers.
pub const STRIPPED_PREFIXES: &[&str] = &["access-control-"];

/// `Link` relations removed: a browser fetches or connects to what they name. Other
/// relations (`next`, `prev`, `last`: a REST API's pages) stay.
pub const STRIPPED_LINK_RELATIONS: &[&str] = &[
    "preload",
    "prefetch",
    "preconnect",
    "dns-prefetch",
    "modulepreload",
    "prerender",
];

/// Removes from an upstream's answer headers (or trailers) Warden's own namespace and every
/// header [`STRIPPED`], [`STRIPPED_PREFIXES`] and [`STRIPPED_LINK_RELATIONS`] name.
pub fn strip_upstreams(headers: &mut HeaderMap) {
    strip_wardens_own(headers);
    if headers.is_empty() {
        return;
    }
    for name in STRIPPED {
        headers.remove(*name);
    }
    let prefixed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            STRIPPED_PREFIXES
                .iter()
                .any(|p| name.as_str().starts_with(p))
        })
        .cloned()
        .collect();
    for name in prefixed {
        headers.remove(name);
    }
    if headers.contains_key(http::header::LINK) {
        let kept: Vec<HeaderValue> = headers
            .get_all(http::header::LINK)
            .iter()
            .filter(|value| !fetches(value))
            .cloned()
            .collect();
        headers.remove(http::header::LINK);
        for value in kept {
            headers.append(http::header::LINK, value);
        }
    }
}

/// Whether a `Link` value may name a relation a browser acts on (checked on the whole value,
/// ignoring case: a value that cannot be read is dropped too).
fn fetches(value: &HeaderValue) -> bool {
    let Ok(text) = value.to_str() else {
        return true;
    };
    let text = text.to_ascii_lowercase();
    STRIPPED_LINK_RELATIONS
        .iter()
        .any(|relation| text.contains(relation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_a_provider_could_turn_on_the_agents_client_are_removed_and_the_others_kept() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("alt-svc", "h3=\"evil.example:443\""),
            (
                "strict-transport-security",
                "max-age=63072000; includeSubDomains",
            ),
            ("Public-Key-Pins", "pin-sha256=\"x\"; max-age=1"),
            ("clear-site-data", "\"*\""),
            ("refresh", "0; url=https://evil.example/"),
            ("access-control-allow-origin", "*"),
            ("Access-Control-Allow-Credentials", "true"),
            ("access-control-expose-headers", "x-warden-decision-id"),
            ("nel", "{\"report_to\":\"x\"}"),
            ("report-to", "{\"group\":\"x\"}"),
            ("speculation-rules", "\"/rules.json\""),
            (
                "content-security-policy-report-only",
                "default-src 'self'; report-uri https://evil.example/r",
            ),
            (
                "link",
                "<https://evil.example/x.js>; rel=preload; as=script",
            ),
            ("link", "<https://evil.example>; rel=PreConnect"),
            ("link", "<https://api.example/items?page=2>; rel=\"next\""),
            ("x-warden-decision", "deny"),
            ("content-type", "application/json"),
            ("x-request-id", "upstream-request"),
            ("openai-processing-ms", "12"),
        ] {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        strip_upstreams(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(
            left,
            [
                "content-type",
                "link",
                "openai-processing-ms",
                "x-request-id"
            ]
        );
        let links: Vec<_> = headers.get_all(http::header::LINK).iter().collect();
        assert_eq!(
            links,
            ["<https://api.example/items?page=2>; rel=\"next\""],
            "only the page link is kept"
        );
    }
}
