//! The headers of a plain-HTTP egress request that change what it does, which an approval of
//! it binds to beside its destination and body: its credentials (whose request it is:
//! `Authorization`, `Cookie`, `X-Api-Key`, `Api-Key`, `X-Auth-Token`, and any other header in
//! which a credential detector found one) and `Content-Type` (how the body is read).
//! Approvers see which of them were sent, never their values; the binding keeps only a keyed
//! digest of them (HMAC-SHA256 under the approvals binding key, `approval/sealed.rs`), so that
//! a copy of the state store cannot be used to try guesses at a low-entropy password in them.
//! `Proxy-Authorization` is not bound: on a request to the proxy it is the agent's Warden
//! token, and in a tunnel it never reaches the destination (hop-by-hop, removed).

use http::HeaderMap;

use crate::approval::sealed::BindingKey;

/// The headers bound whenever they are sent, in the order they are bound.
const BOUND: [&str; 6] = [
    "authorization",
    "cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "content-type",
];

/// What an approval binds to of a request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundHeaders {
    /// The bound headers the request has, by name.
    names: Vec<String>,
    /// `hmac-sha256:<hex>` of their names and values, in order.
    digest: String,
}

impl BoundHeaders {
    /// The bound headers of `headers` (each value of a repeated one, in order): those of
    /// [`BOUND`], then those named in `flagged` (where a credential detector found one),
    /// digested under `key`.
    pub fn of(headers: &HeaderMap, flagged: &[&str], key: &BindingKey) -> BoundHeaders {
        let mut names = Vec::new();
        let mut text = Vec::new();
        let flagged = flagged
            .iter()
            .filter(|name| !BOUND.contains(name) && **name != "proxy-authorization");
        for name in BOUND.iter().chain(flagged) {
            let mut values = headers.get_all(*name).iter().peekable();
            if values.peek().is_none() || names.iter().any(|n| n == name) {
                continue;
            }
            names.push((*name).to_owned());
            for value in values {
                text.extend_from_slice(name.as_bytes());
                text.push(b':');
                text.extend_from_slice(value.as_bytes());
                text.push(b'\n');
            }
        }
        BoundHeaders {
            names,
            digest: key.digest(&text),
        }
    }

    /// The names of the bound headers the request has, for approvers.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The digest an approval binds to (never the values).
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// A binding key made of `byte` repeated, for tests.
#[cfg(test)]
pub(super) fn test_key(byte: u8) -> BindingKey {
    use crate::approval::sealed::{FactorKey, Sealer};
    BindingKey::of(&Sealer::new(vec![FactorKey::from_bytes(&[byte; 32])]).expect("sealer"))
}

#[cfg(test)]
mod tests {
    use super::test_key as key;
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, value.parse().expect("header value"));
        }
        headers
    }

    fn bound(pairs: &[(&'static str, &str)]) -> BoundHeaders {
        BoundHeaders::of(&headers(pairs), &[], &key(1))
    }

    #[test]
    fn another_credential_cookie_or_content_type_is_another_binding() {
        let sent = bound(&[
            ("authorization", "Bearer agent-a"),
            ("content-type", "application/json"),
            ("x-trace", "1"),
        ]);
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
            assert_ne!(bound(other), sent, "{other:?}");
        }
        // Other headers do not change the binding.
        let same = bound(&[
            ("authorization", "Bearer agent-a"),
            ("content-type", "application/json"),
        ]);
        assert_eq!(same, sent);
    }

    #[test]
    fn api_key_headers_are_bound_like_authorization() {
        for name in ["x-api-key", "api-key", "x-auth-token"] {
            let a = bound(&[(name, "key-a")]);
            assert_eq!(a.names(), [name]);
            assert_ne!(bound(&[(name, "key-b")]), a, "{name}");
            assert_ne!(bound(&[]), a, "{name}");
        }
    }

    #[test]
    fn a_header_a_credential_detector_flags_is_bound_and_proxy_authorization_never() {
        let sent = headers(&[("x-vendor-token", "ghp_a"), ("proxy-authorization", "a")]);
        let flagged = ["x-vendor-token", "proxy-authorization"];
        let a = BoundHeaders::of(&sent, &flagged, &key(1));
        assert_eq!(a.names(), ["x-vendor-token"]);
        let other = headers(&[("x-vendor-token", "ghp_b"), ("proxy-authorization", "b")]);
        assert_ne!(BoundHeaders::of(&other, &flagged, &key(1)), a);
        // Another Warden token on the proxy's own header is the same request.
        let renewed = headers(&[("x-vendor-token", "ghp_a"), ("proxy-authorization", "c")]);
        assert_eq!(BoundHeaders::of(&renewed, &flagged, &key(1)), a);
        // Unflagged, the header is no credential of the request's.
        assert!(BoundHeaders::of(&sent, &[], &key(1)).names().is_empty());
    }

    #[test]
    fn the_digest_is_keyed_and_new_so_approvals_made_before_do_not_match() {
        let sent = [("authorization", "Basic dTpodW50ZXIy")];
        let a = bound(&sent);
        // The unkeyed digest the binding kept before, which a copy of the store could
        // recompute for every guess at the password.
        let text = b"authorization:Basic dTpodW50ZXIy\n";
        let old = {
            use sha2::Digest as _;
            format!("sha256:{}", hex::encode(sha2::Sha256::digest(text)))
        };
        assert!(a.digest().starts_with("hmac-sha256:"), "{}", a.digest());
        assert_ne!(a.digest(), old);
        assert!(!a.digest().ends_with(&old["sha256:".len()..]));
        // Another key (another deployment), another digest; the same key, the same one.
        assert_ne!(BoundHeaders::of(&headers(&sent), &[], &key(2)), a);
        assert_eq!(bound(&sent), a);
    }
}
