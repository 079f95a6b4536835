//! The headers of a plain-HTTP egress request that change what it does, which an approval of
//! it binds to beside its destination and body: `Authorization` and `Cookie` (whose request
//! it is) and `Content-Type` (how the body is read). Approvers see which of them were sent,
//! never their values; the binding keeps only a digest of them.

use http::HeaderMap;

/// The bound headers, in the order they are bound.
const BOUND: [&str; 3] = ["authorization", "cookie", "content-type"];

/// What an approval binds to of a request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundHeaders {
    /// The bound headers the request has, by name.
    names: Vec<&'static str>,
    /// `sha256:<hex>` of their names and values, in order.
    digest: String,
}

impl BoundHeaders {
    /// The bound headers of `headers` (each value of a repeated one, in order).
    pub fn of(headers: &HeaderMap) -> BoundHeaders {
        let mut names = Vec::new();
        let mut text = Vec::new();
        for name in BOUND {
            let mut values = headers.get_all(name).iter().peekable();
            if values.peek().is_some() {
                names.push(name);
            }
            for value in values {
                text.extend_from_slice(name.as_bytes());
                text.push(b':');
                text.extend_from_slice(value.as_bytes());
                text.push(b'\n');
            }
        }
        use sha2::Digest as _;
        BoundHeaders {
            names,
            digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&text))),
        }
    }

    /// The names of the bound headers the request has, for approvers.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The digest an approval binds to (never the values).
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().expect("header value"));
        }
        headers
    }

    #[test]
    fn another_credential_cookie_or_content_type_is_another_binding() {
        let sent = BoundHeaders::of(&headers(&[
            ("authorization", "Bearer agent-a"),
            ("content-type", "application/json"),
            ("x-trace", "1"),
        ]));
        assert_eq!(sent.names(), ["authorization", "content-type"]);
        assert!(!sent.digest().contains("agent-a"));
        for other in [
            &[
                ("authorization", "Bearer agent-b"),
                ("content-type", "application/json"),
            ][..],
            &[("authorization", "Bearer agent-a")],
            &[
                ("authorization", "Bearer agent-a"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            &[
                ("authorization", "Bearer agent-a"),
                ("content-type", "application/json"),
                ("cookie", "session=admin"),
            ],
            &[
                ("authorization", "Bearer agent-a"),
                ("authorization", "Bearer agent-b"),
                ("content-type", "application/json"),
            ],
        ] {
            assert_ne!(BoundHeaders::of(&headers(other)), sent, "{other:?}");
        }
        // Other headers do not change the binding.
        let same = BoundHeaders::of(&headers(&[
            ("authorization", "Bearer agent-a"),
            ("content-type", "application/json"),
        ]));
        assert_eq!(same, sent);
    }
}
