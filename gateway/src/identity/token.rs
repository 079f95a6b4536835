//! Splits a compact JWS into header, claims and signature without trusting any of it yet.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::AuthError;

/// Longest credential accepted; a larger one is refused before any decoding.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The JOSE header fields Warden reads.
#[derive(Debug, Deserialize)]
pub(crate) struct JoseHeader {
    /// Signing algorithm as written in the token.
    pub alg: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Critical extensions: Warden understands none, so their presence refuses the token.
    #[serde(default)]
    pub crit: Option<Value>,
}

/// A token split into its parts; nothing in it is verified.
#[derive(Debug)]
pub(crate) struct UnverifiedToken<'a> {
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The base64url signature.
    pub signature: &'a str,
}

/// Splits and decodes `token`, refusing anything that is not a compact JWS with JSON parts.
pub(crate) fn parse(token: &str) -> Result<UnverifiedToken<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::MalformedToken("longer than 16 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(match token.split('.').count() {
            5 => AuthError::MalformedToken("encrypted tokens (JWE) are not supported"),
            _ => AuthError::MalformedToken(
                "expected header.payload.signature; send a token from a trusted issuer or from \
                 `warden token issue`, not a provider API key",
            ),
        });
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| AuthError::MalformedToken("header is not base64url"))?;
    let header: JoseHeader = serde_json::from_slice(&header_json)
        .map_err(|_| AuthError::MalformedToken("header is not a JSON object with `alg`"))?;
    if header.crit.is_some() {
        return Err(AuthError::MalformedToken(
            "header names critical extensions (`crit`)",
        ));
    }
    let claims_json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::MalformedToken("payload is not base64url"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&claims_json)
        .map_err(|_| AuthError::MalformedToken("payload is not a JSON object"))?;
    let signing_input = &token[..header_b64.len() + 1 + payload.len()];
    Ok(UnverifiedToken {
        header,
        claims,
        signing_input,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn splits_a_compact_jws() {
        let token = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"RS256","kid":"k1"}"#),
            b64(r#"{"a":1}"#)
        );
        let t = parse(&token).unwrap();
        assert_eq!(t.header.alg, "RS256");
        assert_eq!(t.header.kid.as_deref(), Some("k1"));
        assert_eq!(t.claims["a"], 1);
        assert_eq!(t.signature, "c2ln");
        assert_eq!(t.signing_input, &token[..token.len() - 5]);
    }

    #[test]
    fn refuses_what_is_not_a_jws() {
        for bad in ["sk-proj-abc", "a.b", "a.b.c.d.e", "!!.e30.x"] {
            assert_eq!(parse(bad).unwrap_err().code(), "malformed_token", "{bad}");
        }
        let not_json = format!("{}.{}.x", b64(r#"{"alg":"RS256"}"#), b64("[1]"));
        assert_eq!(parse(&not_json).unwrap_err().code(), "malformed_token");
        let crit = format!(
            "{}.{}.x",
            b64(r#"{"alg":"RS256","crit":["b64"]}"#),
            b64("{}")
        );
        assert_eq!(parse(&crit).unwrap_err().code(), "malformed_token");
        assert_eq!(
            parse(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err().code(),
            "malformed_token"
        );
    }
}
