//! Where an egress request goes, read from its request line: `CONNECT host:port` (HTTP/1.1,
//! or HTTP/2's `:authority`, RFC 9113 §8.5), HTTP/2 extended `CONNECT` with `:protocol
//! connect-tcp` and the destination in the path (`/.well-known/masque/tcp/{host}/{port}/`,
//! the template of draft-ietf-httpbis-connect-tcp, over RFC 8441), or an absolute-form
//! `http://` URL.

use http::{Method, Request};

use crate::egress::{EgressError, Host};
use crate::text::Quoted;

/// The `:protocol` of an extended `CONNECT` that opens a TCP tunnel.
pub const CONNECT_TCP: &str = "connect-tcp";

/// The path prefix of a `connect-tcp` target: `{host}/{port}/` follow.
const CONNECT_TCP_PATH: &str = "/.well-known/masque/tcp/";

/// Where a request goes.
pub(super) struct Target {
    /// A tunnel (`CONNECT`, classic or extended) rather than one plain-HTTP request.
    pub connect: bool,
    pub host: Host,
    pub port: u16,
}

impl Target {
    /// The target of `req`, or why the egress proxy does not take it.
    pub fn of<B>(req: &Request<B>) -> Result<Target, EgressError> {
        let uri = req.uri();
        let connect = req.method() == Method::CONNECT;
        if connect && let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>() {
            return Self::extended(protocol.as_str(), uri.path());
        }
        let Some(authority) = uri.authority() else {
            return Err(EgressError::Target(
                "this is Warden's egress proxy: send CONNECT host:port (HTTPS_PROXY) or a \
                 request with an absolute http:// URL (HTTP_PROXY)"
                    .into(),
            ));
        };
        let port = if connect {
            authority.port_u16().ok_or_else(|| {
                EgressError::Target(format!(
                    "CONNECT {} names no port; write host:port",
                    Quoted::of(authority.as_str())
                ))
            })?
        } else {
            match uri.scheme_str() {
                Some("http") => authority.port_u16().unwrap_or(80),
                _ => {
                    // Quoted as scheme, host and port: its user information, path and query
                    // may carry what is never logged.
                    let scheme = uri.scheme_str().unwrap_or_default();
                    let origin = match authority.port_u16() {
                        Some(port) => format!("{scheme}://{}:{port}", authority.host()),
                        None => format!("{scheme}://{}", authority.host()),
                    };
                    return Err(EgressError::Target(format!(
                        "only http:// URLs are forwarded as they are; {} goes through a CONNECT \
                         tunnel (set HTTPS_PROXY)",
                        Quoted::of(&origin)
                    )));
                }
            }
        };
        if port == 0 {
            // No connection goes to port 0: refused before it is judged or dialled.
            return Err(EgressError::Target(format!(
                "{} names port 0; write the destination's port",
                Quoted::of(authority.host())
            )));
        }
        Ok(Target {
            connect,
            host: host(authority.host())?,
            port,
        })
    }

    /// The target of an extended `CONNECT` with `:protocol` `protocol` to `path`.
    fn extended(protocol: &str, path: &str) -> Result<Target, EgressError> {
        if protocol != CONNECT_TCP {
            return Err(EgressError::Target(format!(
                "extended CONNECT with :protocol {} is not served here: open a TCP tunnel with \
                 CONNECT host:port, or with :protocol {CONNECT_TCP} and the path \
                 {CONNECT_TCP_PATH}{{host}}/{{port}}/",
                Quoted::of(protocol)
            )));
        }
        let malformed = || {
            EgressError::Target(format!(
                "the {CONNECT_TCP} path {} is not {CONNECT_TCP_PATH}{{host}}/{{port}}/",
                Quoted::of(path)
            ))
        };
        let rest = path.strip_prefix(CONNECT_TCP_PATH).ok_or_else(malformed)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (raw_host, raw_port) = rest.split_once('/').ok_or_else(malformed)?;
        let port = raw_port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(malformed)?;
        // The host is percent-encoded (an IPv6 address's colons are `%3A`).
        let decoded = percent_encoding::percent_decode_str(raw_host)
            .decode_utf8()
            .map_err(|_| malformed())?;
        if decoded.is_empty() || decoded.contains('/') {
            return Err(malformed());
        }
        Ok(Target {
            connect: true,
            host: host(&decoded)?,
            port,
        })
    }
}

/// The host `text` names; an IPv6 address with or without its brackets.
fn host(text: &str) -> Result<Host, EgressError> {
    // `http` keeps an IPv6 address's brackets; the parser expects them.
    if text.contains(':') && !text.starts_with('[') {
        Host::parse(&format!("[{text}]"))
    } else {
        Host::parse(text)
    }
    .map_err(|source| EgressError::Host {
        host: Quoted::of(text).to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extended(protocol: &'static str, path: &str) -> Result<Target, EgressError> {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("https://proxy.test{path}"))
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static(protocol));
        Target::of(&req)
    }

    #[test]
    fn classic_connect_names_host_and_port_in_the_authority() {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("example.com:443")
            .body(())
            .unwrap();
        let target = Target::of(&req).unwrap();
        assert!(target.connect);
        assert_eq!(target.host.cedar_name(), "example.com");
        assert_eq!(target.port, 443);
    }

    #[test]
    fn port_zero_is_refused_before_it_is_judged() {
        for (method, uri) in [
            (Method::CONNECT, "example.com:0"),
            (Method::GET, "http://example.com:0/x"),
            (Method::GET, "http://example.com:00/x"),
        ] {
            let req = Request::builder().method(method).uri(uri).body(()).unwrap();
            let error = Target::of(&req).err().expect(uri);
            assert_eq!(error.code(), "egress_bad_target", "{uri}");
            assert!(error.to_string().contains("port 0"), "{uri}: {error}");
        }
    }

    #[test]
    fn a_url_that_is_not_http_is_refused_without_its_credentials_path_or_query() {
        let req = Request::builder()
            .method(Method::GET)
            .uri("https://bot:s3cret@api.example.com:8443/bot123456:AAE/send?token=abc")
            .body(())
            .unwrap();
        let error = Target::of(&req).err().expect("refused").to_string();
        assert!(error.contains("https://api.example.com:8443"), "{error}");
        for hidden in ["s3cret", "bot123456", "token=abc"] {
            assert!(!error.contains(hidden), "{error}");
        }
    }

    #[test]
    fn connect_tcp_names_host_and_port_in_the_path() {
        let target = extended(CONNECT_TCP, "/.well-known/masque/tcp/Example.COM/8443/").unwrap();
        assert!(target.connect);
        assert_eq!(target.host.cedar_name(), "example.com");
        assert_eq!(target.port, 8443);
        let target = extended(
            CONNECT_TCP,
            "/.well-known/masque/tcp/2001%3Adb8%3A%3A1/443/",
        )
        .unwrap();
        assert_eq!(target.host.cedar_name(), "2001:db8::1");
    }

    #[test]
    fn connect_tcp_with_a_malformed_path_says_what_is_expected() {
        for path in [
            "/",
            "/.well-known/masque/tcp/example.com/",
            "/.well-known/masque/tcp/example.com/0/",
            "/.well-known/masque/tcp/example.com/https/",
            "/.well-known/masque/tcp//443/",
            "/.well-known/masque/tcp/a%2Fb/443/",
        ] {
            let error = extended(CONNECT_TCP, path).err().expect(path);
            assert!(
                error
                    .to_string()
                    .contains("is not /.well-known/masque/tcp/{host}/{port}/"),
                "{path}: {error}"
            );
        }
    }

    #[test]
    fn other_extended_protocols_are_refused_with_what_is_served() {
        let error = extended("websocket", "/chat").err().unwrap();
        assert_eq!(error.code(), "egress_bad_target");
        assert!(error.to_string().contains("connect-tcp"), "{error}");
    }
}
