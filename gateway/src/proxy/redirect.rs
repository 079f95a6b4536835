//! Observe: an upstream's redirect (a `3xx` with a `Location`) to another origin than the
//! route's upstream does not reach the agent. Warden follows no redirect itself; an agent's
//! SDK that follows one would take the agent to an address nobody judged (an internal one, a
//! metadata service), past Warden. LLM APIs do not redirect their clients, so on an LLM route
//! such an answer is refused (502 `upstream_redirect`); a REST API may, and a REST route
//! passes it only with `pass_redirects`. A redirect within the upstream's own origin (a
//! relative `Location` among them), and a `3xx` without a `Location` (`304`), pass.

use http::{HeaderMap, StatusCode, header};
use reqwest::Url;

use crate::route::Route;
use crate::text::Quoted;

/// An upstream's redirect to another origin, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the upstream answered {status} with a redirect to another origin ({origin}); {why}, so \
     the answer was not delivered"
)]
pub struct OffOrigin {
    status: u16,
    /// The `Location`'s origin only (never its path or query), quoted.
    origin: Quoted,
    why: &'static str,
}

impl OffOrigin {
    /// The stable code.
    pub const CODE: &'static str = "upstream_redirect";

    /// The HTTP status the agent gets.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_GATEWAY
    }
}

/// Why an LLM route refuses a redirect.
const LLM: &str = "LLM APIs do not redirect their clients";
/// Why a REST route refuses one.
const REST: &str = "the route does not pass redirects to other origins (pass_redirects)";

/// Whether the answer `status` with `headers` may reach the agent on `route`: any answer but a
/// redirect to another origin than the route's upstream's, which only a REST route with
/// `pass_redirects` passes.
pub fn check(route: &Route, status: StatusCode, headers: &HeaderMap) -> Result<(), OffOrigin> {
    if !status.is_redirection() {
        return Ok(());
    }
    let Some(location) = headers.get(header::LOCATION) else {
        return Ok(());
    };
    let base = format!(
        "{}://{}{}/",
        route.upstream.scheme, route.upstream.authority, route.upstream.base_path
    );
    let Ok(base) = Url::parse(&base) else {
        // The route's upstream is an absolute URL, checked at load.
        return Err(refused(route, status, "an unreadable upstream URL"));
    };
    let target = std::str::from_utf8(location.as_bytes())
        .ok()
        .and_then(|location| base.join(location).ok());
    let Some(target) = target else {
        return Err(refused(route, status, "a Location that cannot be read"));
    };
    if target.origin() == base.origin() {
        return Ok(());
    }
    if route.pass_redirects && route.protocol == crate::protocol::Protocol::Rest {
        return Ok(());
    }
    Err(refused(
        route,
        status,
        &target.origin().ascii_serialization(),
    ))
}

fn refused(route: &Route, status: StatusCode, origin: &str) -> OffOrigin {
    OffOrigin {
        status: status.as_u16(),
        origin: Quoted::of(origin),
        why: match route.protocol {
            crate::protocol::Protocol::Rest => REST,
            _ => LLM,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::parse;
    use crate::route::RouteTable;
    use http::HeaderValue;

    fn table() -> RouteTable {
        let yaml = "routes:\n  - { prefix: /openai, connector: openai, name: llm, upstream: \"https://api.openai.com/v1\" }\n  - { prefix: /gh, connector: github, name: gh, credential: { env: E2E_NONE } }\n  - { prefix: /gh2, connector: github, name: gh2, credential: { env: E2E_NONE }, pass_redirects: true }\n";
        RouteTable::build(&parse(yaml, None).expect("valid config"), None).expect("routes build")
    }

    fn answer(route: &Route, status: u16, location: Option<&'static str>) -> Result<(), OffOrigin> {
        let mut headers = HeaderMap::new();
        if let Some(location) = location {
            headers.insert(header::LOCATION, HeaderValue::from_static(location));
        }
        check(route, StatusCode::from_u16(status).unwrap(), &headers)
    }

    #[test]
    fn an_llm_route_refuses_a_redirect_to_another_origin_naming_only_its_origin() {
        let t = table();
        let (llm, _) = t.find("/openai/chat/completions").expect("route");
        for location in [
            "http://169.254.169.254/latest/meta-data/?token=s3cret",
            "//169.254.169.254/latest",
            "/\\169.254.169.254/latest",
            "http://api.openai.com/v1/models",
            "https://api.openai.com:8443/v1/models",
            "javascript:alert(1)",
        ] {
            let refused = answer(llm, 302, Some(location)).expect_err(location);
            let text = refused.to_string();
            assert!(
                !text.contains("s3cret") && !text.contains("latest"),
                "{text}"
            );
            assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        }
        let refused = answer(llm, 307, Some("http://169.254.169.254/x?token=s3cret"))
            .expect_err("off origin");
        assert!(
            refused.to_string().contains("(http://169.254.169.254)"),
            "{refused}"
        );
        for location in [
            "https://api.openai.com/v1/other",
            "https://API.openai.com:443/elsewhere",
            "/v1/other",
            "other",
        ] {
            assert_eq!(answer(llm, 301, Some(location)), Ok(()), "{location}");
        }
        assert_eq!(
            answer(llm, 304, None),
            Ok(()),
            "no Location: nothing to follow"
        );
        assert_eq!(
            answer(llm, 200, Some("http://169.254.169.254/")),
            Ok(()),
            "not a redirect"
        );
    }

    #[test]
    fn a_rest_route_passes_a_redirect_to_another_origin_only_with_pass_redirects() {
        let t = table();
        let (strict, _) = t.find("/gh/repos").expect("route");
        let (passing, _) = t.find("/gh2/repos").expect("route");
        let elsewhere = Some("https://objects.githubusercontent.com/x?sig=1");
        let refused = answer(strict, 302, elsewhere).expect_err("off origin");
        assert!(refused.to_string().contains("pass_redirects"), "{refused}");
        assert_eq!(answer(passing, 302, elsewhere), Ok(()));
        assert_eq!(
            answer(strict, 302, Some("https://api.github.com/repos/a/b")),
            Ok(()),
            "same origin"
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
