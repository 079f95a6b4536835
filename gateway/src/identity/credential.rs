//! Finds the agent credential in request headers, where stock SDKs put their API key.

use http::HeaderMap;
use http::header::AUTHORIZATION;

/// Headers that carry a bare API key, in the order they are tried after `Authorization`.
const API_KEY_HEADERS: [&str; 3] = ["x-api-key", "api-key", "x-goog-api-key"];

/// The agent credential from `Authorization: Bearer`, `x-api-key`, `api-key` or
/// `x-goog-api-key` (first one present and non-empty wins).
pub fn credential_from_headers(headers: &HeaderMap) -> Option<&str> {
    if let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
    {
        return Some(token);
    }
    API_KEY_HEADERS.iter().find_map(|name| {
        let value = headers.get(*name)?.to_str().ok()?.trim();
        (!value.is_empty()).then_some(value)
    })
}

/// The token of a `Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn takes_bearer_token_from_authorization() {
        let h = headers(&[("authorization", "Bearer abc.def.ghi")]);
        assert_eq!(credential_from_headers(&h), Some("abc.def.ghi"));
        let h = headers(&[("authorization", "bearer   abc ")]);
        assert_eq!(credential_from_headers(&h), Some("abc"));
    }

    #[test]
    fn takes_x_api_key_api_key_and_x_goog_api_key() {
        for name in ["x-api-key", "api-key", "x-goog-api-key"] {
            let h = headers(&[(name, "tok-1")]);
            assert_eq!(credential_from_headers(&h), Some("tok-1"), "{name}");
        }
    }

    #[test]
    fn prefers_authorization_over_api_key_headers() {
        let h = headers(&[("authorization", "Bearer first"), ("x-api-key", "second")]);
        assert_eq!(credential_from_headers(&h), Some("first"));
    }

    #[test]
    fn ignores_other_schemes_and_empty_values() {
        let h = headers(&[("authorization", "Basic dXNlcjpwdw=="), ("api-key", "k")]);
        assert_eq!(credential_from_headers(&h), Some("k"));
        let h = headers(&[("authorization", "Bearer "), ("x-api-key", "  ")]);
        assert_eq!(credential_from_headers(&h), None);
        assert_eq!(credential_from_headers(&HeaderMap::new()), None);
    }
}
