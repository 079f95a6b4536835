//! The rule for every URL Warden sends a credential or trusts an answer from (an identity
//! provider, a SIEM, a webhook, the console's own address): `https`, or plain `http` only to
//! a loopback host, so no token or signed answer crosses a network in the clear.

use reqwest::Url;

/// Parses `url`: an absolute URL with a host, `https` anywhere, plain `http` only to a
/// loopback address (`127.0.0.0/8`, `[::1]`, `localhost`). The error says what is wrong with
/// it, quoting it.
pub fn secure_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err(format!("{url:?} has no host"));
    };
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback(host) => Ok(parsed),
        "http" => Err(format!(
            "{url:?} must use https (plain http only to a loopback address)"
        )),
        other => Err(format!("{url:?} has scheme {other:?}; use https")),
    }
}

/// Whether `host` (as a URL gives it: IPv6 in brackets) is a loopback address or
/// `localhost`.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_and_http_only_to_loopback() {
        for ok in [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:8080",
            "http://127.0.0.2/x",
            "http://[::1]:8080",
            "http://localhost/x",
            "http://LOCALHOST/x",
        ] {
            assert!(secure_url(ok).is_ok(), "{ok}");
        }
        let err = |url: &str| secure_url(url).unwrap_err();
        assert!(err("http://idp.example.com").contains("must use https"));
        assert!(err("http://10.0.0.1/").contains("must use https"));
        assert!(err("http://localhost.evil.example/").contains("must use https"));
        assert!(err("http://127.0.0.1.nip.io/").contains("must use https"));
        assert!(err("ftp://idp.example.com").contains("has scheme \"ftp\""));
        assert!(err("idp.example.com").contains("is not a URL"));
        assert!(err("file:///etc/passwd").contains("has no host"));
    }
}
