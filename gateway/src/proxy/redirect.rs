//! Observe: an upstream's redirect (a `3xx` with a `Location`) never sends the agent past
//! Warden. Warden follows no redirect itself; an agent's SDK that follows one would go where
//! the `Location` says, unjudged: to another origin (an internal address, a metadata service),
//! or straight to the upstream. So, as nginx's `proxy_redirect default` does, a REST route's
//! redirect within the upstream's origin and base path has its `Location` rewritten to the
//! route's address on Warden (`/<prefix>/<rest>`, its query and fragment kept), where the
//! agent's next request is judged like any; one within the origin but outside the base path,
//! which no request through the route reaches, is refused (502 `upstream_redirect`), and one
//! to another origin too, unless the route passes them (`pass_redirects`, as they are). LLM
//! APIs do not redirect their clients: an LLM route refuses every redirect with a `Location`.
//! A `3xx` without a `Location` (`304`) passes.

use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use reqwest::Url;

use crate::protocol::Protocol;
use crate::route::Route;
use crate::text::Quoted;

/// An upstream's redirect, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the upstream answered {status} with a redirect to {target}; {why}, so the answer was not \
     delivered"
)]
pub struct Refused {
    status: u16,
    /// Where it led: an origin only (never its path or query), quoted.
    target: Quoted,
    why: &'static str,
}

impl Refused {
    /// The stable code.
    pub const CODE: &'static str = "upstream_redirect";

    /// The HTTP status the agent gets.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_GATEWAY
    }
}

/// Why an LLM route refuses a redirect.
const LLM: &str = "LLM APIs do not redirect their clients";
/// Why a REST route refuses one to another origin.
const REST: &str = "the route does not pass redirects to other origins (pass_redirects)";
/// Why a REST route refuses one within the upstream's origin but outside its base path.
const OUTSIDE: &str = "that is the upstream's own origin but outside the route's base path, \
                       which no request through the route reaches";

/// What the answer `status` with `headers` becomes on `route`, whose request went upstream to
/// `sent` (the path and query asked for): any answer but a redirect with a `Location` passes as
/// it is; a REST route's redirect within the upstream's origin and base path passes with its
/// `Location` rewritten to the route's address on Warden; one to another origin passes only
/// on a REST route with `pass_redirects`; every other redirect is refused.
pub fn check(
    route: &Route,
    sent: Option<&PathAndQuery>,
    status: StatusCode,
    headers: &mut HeaderMap,
) -> Result<(), Refused> {
    if !status.is_redirection() {
        return Ok(());
    }
    let Some(location) = headers.get(header::LOCATION) else {
        return Ok(());
    };
    let upstream = &route.upstream;
    let asked = match sent {
        Some(sent) => sent.as_str().to_owned(),
        None => format!("{}/", upstream.base_path),
    };
    let Ok(asked) = Url::parse(&format!(
        "{}://{}{asked}",
        upstream.scheme, upstream.authority
    )) else {
        // The route's upstream is an absolute URL, checked at load.
        return Err(refused(status, "an unreadable upstream URL", why(route)));
    };
    let target = std::str::from_utf8(location.as_bytes())
        .ok()
        .and_then(|location| asked.join(location).ok());
    let Some(target) = target else {
        return Err(refused(
            status,
            "a Location that cannot be read",
            why(route),
        ));
    };
    let rest = route.protocol == Protocol::Rest;
    if target.origin() != asked.origin() {
        if rest && route.pass_redirects {
            return Ok(());
        }
        return Err(refused(
            status,
            &target.origin().ascii_serialization(),
            why(route),
        ));
    }
    if !rest {
        return Err(refused(status, &target.origin().ascii_serialization(), LLM));
    }
    let origin = target.origin().ascii_serialization();
    let Some(value) = on_warden(route, &target).and_then(|p| HeaderValue::from_str(&p).ok()) else {
        return Err(refused(status, &origin, OUTSIDE));
    };
    headers.insert(header::LOCATION, value);
    Ok(())
}

/// `target` (on the upstream's origin) as a path on Warden: the route's prefix, then what
/// follows the upstream's base path, the query and the fragment; `None` outside the base path,
/// and when the path would not stay on Warden: one starting `//` or `/\` (a route with the
/// prefix `/` given `Location: /.//evil.example/x` would hand the agent
/// `Location: //evil.example/x`, another host), or with a backslash anywhere (clients read it
/// as `/`).
fn on_warden(route: &Route, target: &Url) -> Option<String> {
    let path = target.path();
    let below = path.strip_prefix(route.upstream.base_path.as_str())?;
    if !(below.is_empty() || below.starts_with('/')) {
        return None;
    }
    let mut rewritten = format!("{}{below}", route.prefix);
    if rewritten.is_empty() {
        rewritten.push('/');
    }
    if rewritten.starts_with("//") || rewritten.contains('\\') {
        return None;
    }
    if let Some(query) = target.query() {
        rewritten.push('?');
        rewritten.push_str(query);
    }
    if let Some(fragment) = target.fragment() {
        rewritten.push('#');
        rewritten.push_str(fragment);
    }
    Some(rewritten)
}

/// Why `route` refuses a redirect to another origin.
fn why(route: &Route) -> &'static str {
    match route.protocol {
        Protocol::Rest => REST,
        _ => LLM,
    }
}

fn refused(status: StatusCode, target: &str, why: &'static str) -> Refused {
    Refused {
        status: status.as_u16(),
        target: Quoted::of(target),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse;
    use crate::route::RouteTable;

    fn table() -> RouteTable {
        let yaml = "routes:\n  - { prefix: /openai, connector: openai, name: llm, upstream: \"https://api.openai.com/v1\" }\n  - { prefix: /gh, connector: github, name: gh, credential: { env: E2E_NONE } }\n  - { prefix: /gh2, connector: github, name: gh2, credential: { env: E2E_NONE }, pass_redirects: true }\n  - { prefix: /ghe, connector: github, name: ghe, upstream: \"https://ghe.example.com/api/v3\", credential: { env: E2E_NONE } }\n";
        RouteTable::build(&parse(yaml, None).expect("valid config"), None).expect("routes build")
    }

    /// The answer `status` with `location` on `route` for a request sent upstream to `sent`:
    /// the Location the agent gets, or the refusal.
    fn answer(
        route: &Route,
        sent: &'static str,
        status: u16,
        location: Option<&'static str>,
    ) -> Result<Option<String>, Refused> {
        let mut headers = HeaderMap::new();
        if let Some(location) = location {
            headers.insert(header::LOCATION, HeaderValue::from_static(location));
        }
        let sent = PathAndQuery::from_static(sent);
        check(
            route,
            Some(&sent),
            StatusCode::from_u16(status).unwrap(),
            &mut headers,
        )?;
        Ok(headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned()))
    }

    #[test]
    fn an_llm_route_refuses_every_redirect_naming_only_its_origin() {
        let t = table();
        let (llm, _) = t.find("/openai/chat/completions").expect("route");
        let sent = "/v1/chat/completions";
        for location in [
            "http://169.254.169.254/latest/meta-data/?token=s3cret",
            "//169.254.169.254/latest",
            "/\\169.254.169.254/latest",
            "http://api.openai.com/v1/models",
            "https://api.openai.com:8443/v1/models",
            "javascript:alert(1)",
            // Within the upstream's origin: straight to the upstream, past Warden.
            "https://api.openai.com/v1/other?token=s3cret",
            "https://API.openai.com:443/latest",
            "/v1/other",
            "other",
        ] {
            let refused = answer(llm, sent, 302, Some(location)).expect_err(location);
            let text = refused.to_string();
            assert!(
                !text.contains("s3cret") && !text.contains("latest") && !text.contains("other"),
                "{text}"
            );
            assert!(text.contains("LLM APIs do not redirect"), "{text}");
            assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        }
        let refused = answer(
            llm,
            sent,
            307,
            Some("http://169.254.169.254/x?token=s3cret"),
        )
        .expect_err("off origin");
        assert!(
            refused.to_string().contains("to http://169.254.169.254;"),
            "{refused}"
        );
        assert_eq!(
            answer(llm, sent, 304, None),
            Ok(None),
            "no Location: nothing to follow"
        );
        assert_eq!(
            answer(llm, sent, 200, Some("http://169.254.169.254/")),
            Ok(Some("http://169.254.169.254/".into())),
            "not a redirect"
        );
    }

    #[test]
    fn a_rest_routes_redirect_within_the_upstream_is_rewritten_to_the_route_on_warden() {
        let t = table();
        let (gh, _) = t.find("/gh/repos/a/b").expect("route");
        let sent = "/repos/a/b?per_page=5";
        for (location, rewritten) in [
            // Absolute, on the upstream's origin: back through Warden's route.
            (
                "https://api.github.com/repositories/42?per_page=5",
                "/gh/repositories/42?per_page=5",
            ),
            (
                "https://API.github.com:443/repos/c/d#readme",
                "/gh/repos/c/d#readme",
            ),
            // Path-absolute, and relative to the path the request went to.
            ("/repos/c/d", "/gh/repos/c/d"),
            ("d", "/gh/repos/a/d"),
            ("../x/./y", "/gh/repos/x/y"),
            ("https://api.github.com", "/gh/"),
        ] {
            assert_eq!(
                answer(gh, sent, 301, Some(location)),
                Ok(Some(rewritten.into())),
                "{location}"
            );
        }
        // With pass_redirects too: it governs other origins only.
        let (gh2, _) = t.find("/gh2/repos").expect("route");
        assert_eq!(
            answer(gh2, "/repos", 302, Some("https://api.github.com/user")),
            Ok(Some("/gh2/user".into()))
        );
    }

    #[test]
    fn a_rest_routes_redirect_outside_the_upstreams_base_path_is_refused() {
        let t = table();
        let (ghe, _) = t.find("/ghe/repos/a/b").expect("route");
        let sent = "/api/v3/repos/a/b";
        assert_eq!(
            answer(
                ghe,
                sent,
                302,
                Some("https://ghe.example.com/api/v3/repos/c/d")
            ),
            Ok(Some("/ghe/repos/c/d".into()))
        );
        assert_eq!(
            answer(ghe, sent, 302, Some("/api/v3")),
            Ok(Some("/ghe".into()))
        );
        for location in [
            "https://ghe.example.com/login?return_to=s3cret",
            "/api/v30/x",
            "../../../../login",
        ] {
            let refused = answer(ghe, sent, 302, Some(location)).expect_err(location);
            let text = refused.to_string();
            assert!(text.contains("outside the route's base path"), "{text}");
            assert!(text.contains("to https://ghe.example.com;"), "{text}");
            assert!(
                !text.contains("s3cret") && !text.contains("login"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_rewritten_location_never_names_another_host() {
        let build = |yaml: &str| {
            RouteTable::build(&parse(yaml, None).expect("valid config"), None).expect("routes")
        };
        let root = build(
            "routes:\n  - { prefix: /, connector: github, name: root, credential: { env: E2E_NONE } }\n",
        );
        let (root, _) = root.find("/repos/a/b").expect("route");
        assert_eq!(root.prefix, "", "the prefix / is stored empty");
        // Same-origin paths that start `//` once the prefix (none) is put before them.
        for location in [
            "/.//evil.example/x",
            "/%2e//evil.example/x",
            "https://api.github.com//evil.example/x",
            "//api.github.com//evil.example/x",
            "/a/..//evil.example/x",
            "/./\\evil.example/x",
            "https://api.github.com/.\\\\evil.example/x",
        ] {
            let refused = answer(root, "/repos/a/b", 302, Some(location)).expect_err(location);
            let text = refused.to_string();
            assert!(text.contains("outside the route's base path"), "{text}");
            assert!(text.contains("to https://api.github.com;"), "{text}");
            assert!(!text.contains("evil"), "{text}");
        }
        // A route with the prefix / and a base path: `/v1//evil.example/x` is below it.
        let based = build(
            "routes:\n  - { prefix: /, connector: github, name: based, upstream: \"https://ghe.example.com/v1\", credential: { env: E2E_NONE } }\n",
        );
        let (based, _) = based.find("/repos").expect("route");
        for location in [
            "/v1//evil.example/x",
            "https://ghe.example.com/v1//evil.example/x?a=1",
            "/v1/.//evil.example/x",
        ] {
            let refused = answer(based, "/v1/repos", 302, Some(location)).expect_err(location);
            assert!(
                refused
                    .to_string()
                    .contains("outside the route's base path"),
                "{refused}"
            );
        }
        // What stays on Warden still passes, rewritten.
        assert_eq!(
            answer(based, "/v1/repos", 302, Some("/v1/user//x")),
            Ok(Some("/user//x".into()))
        );
        assert_eq!(
            answer(based, "/v1/repos", 302, Some("/v1")),
            Ok(Some("/".into()))
        );
        assert_eq!(
            answer(root, "/repos/a/b", 302, Some("/repos/c/d?x=1")),
            Ok(Some("/repos/c/d?x=1".into()))
        );
    }

    #[test]
    fn a_rest_route_passes_a_redirect_to_another_origin_only_with_pass_redirects() {
        let t = table();
        let (strict, _) = t.find("/gh/repos").expect("route");
        let (passing, _) = t.find("/gh2/repos").expect("route");
        let elsewhere = "https://objects.githubusercontent.com/x?sig=1";
        let refused = answer(strict, "/repos", 302, Some(elsewhere)).expect_err("off origin");
        assert!(refused.to_string().contains("pass_redirects"), "{refused}");
        assert_eq!(
            answer(passing, "/repos", 302, Some(elsewhere)),
            Ok(Some(elsewhere.into())),
            "as it was"
        );
    }

    #[test]
    fn pass_redirects_is_a_rest_routes_option_only() {
        let yaml = "routes:\n  - { prefix: /openai, connector: openai, name: llm, pass_redirects: true }\n";
        let Err(err) = RouteTable::build(&parse(yaml, None).expect("valid config"), None) else {
            panic!("pass_redirects on an LLM route is refused");
        };
        let err = err.to_string();
        assert!(err.contains("routes[0].pass_redirects"), "{err}");
    }
}
