//! The agent's credential from `Proxy-Authorization`: its token as `Bearer <token>`, or as the
//! password of `Basic` (what `HTTPS_PROXY=http://agent:<token>@host:port` makes clients send).

use base64::Engine as _;
use http::HeaderMap;
use http::header::PROXY_AUTHORIZATION;
use zeroize::Zeroizing;

use super::error::EgressError;

/// The token in `headers`' `Proxy-Authorization`.
pub fn token(headers: &HeaderMap) -> Result<Zeroizing<String>, EgressError> {
    let value = headers
        .get(PROXY_AUTHORIZATION)
        .ok_or(EgressError::MissingCredential)?
        .to_str()
        .map_err(|_| EgressError::CredentialScheme)?
        .trim();
    let (scheme, rest) = value.split_once(' ').ok_or(EgressError::CredentialScheme)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        return Ok(Zeroizing::new(rest.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| EgressError::CredentialScheme)?,
        );
        let text = std::str::from_utf8(&decoded).map_err(|_| EgressError::CredentialScheme)?;
        // Clients percent-encode the user information of a proxy URL; most decode it before
        // sending, some do not.
        let password = text
            .split_once(':')
            .map(|(_, p)| p)
            .ok_or(EgressError::CredentialScheme)?;
        let password = percent_encoding::percent_decode_str(password)
            .decode_utf8()
            .map_err(|_| EgressError::CredentialScheme)?;
        if password.is_empty() {
            return Err(EgressError::CredentialScheme);
        }
        return Ok(Zeroizing::new(password.into_owned()));
    }
    Err(EgressError::CredentialScheme)
}

/// `headers` for the identify stage: the token as `Authorization: Bearer`.
pub fn as_authorization(token: &str) -> Result<HeaderMap, EgressError> {
    let mut headers = HeaderMap::new();
    let mut value = http::HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| EgressError::CredentialScheme)?;
    value.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, value);
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(PROXY_AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn takes_the_token_as_bearer_or_as_the_basic_password() {
        assert_eq!(token(&with("Bearer abc.def")).unwrap().as_str(), "abc.def");
        assert_eq!(token(&with("bearer  abc ")).unwrap().as_str(), "abc");
        assert_eq!(
            token(&with(&basic("agent:abc.def"))).unwrap().as_str(),
            "abc.def"
        );
        assert_eq!(token(&with(&basic(":abc"))).unwrap().as_str(), "abc");
        assert_eq!(token(&with(&basic("a:b%3Ac"))).unwrap().as_str(), "b:c");
    }

    #[test]
    fn refuses_what_carries_no_token() {
        assert!(matches!(
            token(&HeaderMap::new()),
            Err(EgressError::MissingCredential)
        ));
        for value in [
            "Digest abc".to_owned(),
            "Bearer".to_owned(),
            basic("agent"),
            basic("agent:"),
            "Basic !!!".to_owned(),
        ] {
            assert!(
                matches!(token(&with(&value)), Err(EgressError::CredentialScheme)),
                "{value}"
            );
        }
    }
}
