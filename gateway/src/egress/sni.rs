//! What a tunnel carries, read from the client's first bytes: a TLS ClientHello and the
//! server name it asks for (SNI), plain HTTP, or something else.
//!
//! Only the ClientHello is read, never decrypted traffic: its handshake message may span
//! several TLS records, and is read whole (up to [`HELLO_MAX`] bytes) before it is judged.

/// The most bytes read to find the ClientHello's end.
pub const HELLO_MAX: usize = 64 * 1024;

/// TLS record type of handshake messages.
const HANDSHAKE: u8 = 22;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 1;
/// Extension type of `server_name` (RFC 6066).
const SERVER_NAME: u16 = 0;
/// Extension type of `application_layer_protocol_negotiation` (RFC 7301).
const ALPN: u16 = 16;

/// What the first bytes of a tunnel show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstBytes {
    /// Not enough bytes yet to tell.
    NeedMore,
    /// A TLS ClientHello.
    Tls(ClientHello),
    /// An HTTP/1 request line (plain HTTP in the tunnel).
    Http,
    /// Anything else.
    Other,
}

/// What the ClientHello asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// The server name (`host_name` of `server_name`), lower-case, without a trailing dot.
    pub sni: Option<String>,
    /// The application protocols offered (`h2`, `http/1.1`).
    pub alpn: Vec<String>,
}

/// Why a ClientHello cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelloError {
    #[error("the TLS ClientHello is malformed ({0})")]
    Malformed(&'static str),
    #[error("the TLS ClientHello is longer than {HELLO_MAX} bytes")]
    TooLong,
    #[error("the TLS ClientHello names its server twice or in a form other than a host name")]
    ServerName,
}

/// Reads `buf`, the bytes the client sent first.
pub fn read(buf: &[u8]) -> Result<FirstBytes, HelloError> {
    let Some(&first) = buf.first() else {
        return Ok(FirstBytes::NeedMore);
    };
    if first != HANDSHAKE {
        return Ok(http_or_other(buf));
    }
    // Gather the handshake message from as many records as it spans.
    let mut message = Vec::new();
    let mut at = 0;
    loop {
        let Some(header) = buf.get(at..at + 5) else {
            return Ok(FirstBytes::NeedMore);
        };
        if header[0] != HANDSHAKE {
            return Err(HelloError::Malformed(
                "a record before the hello's end is not a handshake",
            ));
        }
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let Some(fragment) = buf.get(at + 5..at + 5 + len) else {
            return if buf.len() >= HELLO_MAX {
                Err(HelloError::TooLong)
            } else {
                Ok(FirstBytes::NeedMore)
            };
        };
        message.extend_from_slice(fragment);
        at += 5 + len;
        if message.len() >= 4 {
            if message[0] != CLIENT_HELLO {
                return Err(HelloError::Malformed(
                    "the first handshake message is not a ClientHello",
                ));
            }
            let body = usize::from(message[1]) << 16
                | usize::from(message[2]) << 8
                | usize::from(message[3]);
            if body + 4 > HELLO_MAX {
                return Err(HelloError::TooLong);
            }
            if message.len() >= body + 4 {
                return client_hello(&message[4..4 + body]).map(FirstBytes::Tls);
            }
        }
        if at >= HELLO_MAX {
            return Err(HelloError::TooLong);
        }
    }
}

/// An HTTP/1 request line, read as the most lenient server reads one, since the server at the
/// tunnel's end, not Warden, decides what is a request: empty lines and white space before it
/// skipped, a method token (any, not only the methods Warden knows), white space, a target,
/// then white space and `HTTP/` in any case, or the end of the line after a target that starts
/// with `/` (HTTP/0.9's `GET /path`). White space is any run of what Python's `str.split`
/// splits on (space, tab, CR, vertical tab, form feed...), and nginx takes several spaces
/// between the parts. Bytes that could still become one ask for more, up to [`LINE_MAX`];
/// anything else is not HTTP. So a tunnel cannot pass its HTTP off as raw TCP with a leading
/// CRLF, an unusual method, tabs, doubled spaces, a lower-case version or no version: such a
/// line is served as HTTP, and the tunnel's HTTP/1 server refuses what it cannot read (RFC 9112
/// is stricter than the servers above) rather than let it pass uninspected. HTTP/2's cleartext
/// preface (`PRI * HTTP/2.0`) reads as HTTP too, and that server refuses it.
fn http_or_other(buf: &[u8]) -> FirstBytes {
    let more = |seen: usize| {
        if seen < LINE_MAX {
            FirstBytes::NeedMore
        } else {
            FirstBytes::Other
        }
    };
    let Some(start) = buf.iter().position(|b| !is_space(*b) && *b != b'\n') else {
        return more(buf.len());
    };
    let line = &buf[start..];
    let method = line.iter().take_while(|b| is_tchar(**b)).count();
    if method > METHOD_MAX {
        return FirstBytes::Other;
    }
    let Some(&after) = line.get(method) else {
        return more(buf.len());
    };
    if method == 0 || !is_space(after) {
        return FirstBytes::Other;
    }
    let rest = skip_spaces(&line[method..]);
    let target = rest
        .iter()
        .take_while(|b| !is_space(**b) && **b != b'\n')
        .count();
    if target == 0 {
        // The line ends after the method, or nothing has come after the white space yet.
        return match rest.first() {
            Some(b'\n') => FirstBytes::Other,
            _ => more(buf.len()),
        };
    }
    let version = skip_spaces(&rest[target..]);
    match version.first() {
        None => more(buf.len()),
        // HTTP/0.9: the line ends after a path.
        Some(b'\n') if rest[0] == b'/' => FirstBytes::Http,
        Some(b'\n') => FirstBytes::Other,
        Some(_) => {
            let n = version.len().min(HTTP_VERSION.len());
            if !version[..n].eq_ignore_ascii_case(&HTTP_VERSION[..n]) {
                FirstBytes::Other
            } else if n == HTTP_VERSION.len() {
                FirstBytes::Http
            } else {
                more(buf.len())
            }
        }
    }
}

/// White space between the parts of a request line as the most lenient server reads it (what
/// Python's `str.split` splits a Latin-1 line on), the line's end (`\n`) aside.
fn is_space(b: u8) -> bool {
    matches!(
        b,
        b' ' | b'\t' | b'\r' | 0x0b | 0x0c | 0x1c..=0x1f | 0x85 | 0xa0
    )
}

/// `bytes` after the white space they start with.
fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let n = bytes.iter().take_while(|b| is_space(**b)).count();
    &bytes[n..]
}

/// The longest request line read to tell HTTP from other bytes.
const LINE_MAX: usize = 8 * 1024;
/// The longest method token taken for one.
const METHOD_MAX: usize = 64;
/// What a request line's version starts with.
const HTTP_VERSION: &[u8] = b"HTTP/";

/// A `tchar` of RFC 9110 §5.6.2, what method tokens are made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A cursor over a ClientHello's body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HelloError> {
        if self.0.len() < n {
            return Err(HelloError::Malformed("a field runs past the message's end"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<usize, HelloError> {
        Ok(usize::from(self.take(1)?[0]))
    }

    fn u16(&mut self) -> Result<usize, HelloError> {
        let b = self.take(2)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    /// A field with a one- or two-byte length.
    fn vec8(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u8()?;
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], HelloError> {
        let n = self.u16()?;
        self.take(n)
    }
}

/// The server name and ALPN offers of a ClientHello body.
fn client_hello(body: &[u8]) -> Result<ClientHello, HelloError> {
    let mut c = Cursor(body);
    c.take(2)?; // legacy_version
    c.take(32)?; // random
    c.vec8()?; // legacy_session_id
    c.vec16()?; // cipher_suites
    c.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello::default();
    if c.0.is_empty() {
        return Ok(hello);
    }
    let mut extensions = Cursor(c.vec16()?);
    let mut named = false;
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let data = extensions.vec16()?;
        match kind as u16 {
            SERVER_NAME => {
                if named {
                    return Err(HelloError::ServerName);
                }
                named = true;
                hello.sni = Some(server_name(data)?);
            }
            ALPN => {
                let mut list = Cursor(Cursor(data).vec16()?);
                while !list.0.is_empty() {
                    hello
                        .alpn
                        .push(String::from_utf8_lossy(list.vec8()?).into_owned());
                }
            }
            _ => {}
        }
    }
    Ok(hello)
}

/// The one `host_name` of a `server_name` extension.
fn server_name(data: &[u8]) -> Result<String, HelloError> {
    let mut list = Cursor(Cursor(data).vec16()?);
    let kind = list.u8()?;
    let name = list.vec16()?;
    if kind != 0 || !list.0.is_empty() || name.is_empty() {
        return Err(HelloError::ServerName);
    }
    let name = std::str::from_utf8(name).map_err(|_| HelloError::ServerName)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(HelloError::ServerName);
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it for `name`.
    fn hello(name: &str) -> Vec<u8> {
        use std::sync::Arc;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots_none());
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut config = config;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let server = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("conn");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("hello");
        out
    }

    fn webpki_roots_none() -> Vec<rustls::pki_types::TrustAnchor<'static>> {
        Vec::new()
    }

    #[test]
    fn reads_the_server_name_and_alpn_of_a_real_client_hello() {
        let bytes = hello("Example.COM");
        assert_eq!(
            read(&bytes),
            Ok(FirstBytes::Tls(ClientHello {
                sni: Some("example.com".into()),
                alpn: vec!["h2".into(), "http/1.1".into()],
            }))
        );
    }

    #[test]
    fn asks_for_more_until_the_hello_is_whole() {
        let bytes = hello("example.com");
        for cut in [0, 1, 4, 5, 40, bytes.len() - 1] {
            assert_eq!(read(&bytes[..cut]), Ok(FirstBytes::NeedMore), "{cut}");
        }
    }

    #[test]
    fn reads_a_hello_split_over_two_records() {
        let bytes = hello("split.example");
        let body = &bytes[5..];
        let (a, b) = body.split_at(30);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[HANDSHAKE, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        let Ok(FirstBytes::Tls(hello)) = read(&split) else {
            panic!("{:?}", read(&split));
        };
        assert_eq!(hello.sni.as_deref(), Some("split.example"));
    }

    #[test]
    fn an_address_hello_has_no_server_name() {
        let bytes = hello("127.0.0.1");
        let Ok(FirstBytes::Tls(hello)) = read(&bytes) else {
            panic!("{:?}", read(&bytes));
        };
        assert_eq!(hello.sni, None);
    }

    #[test]
    fn tells_plain_http_and_other_bytes() {
        assert_eq!(read(b"GET / HTTP/1.1\r\n"), Ok(FirstBytes::Http));
        assert_eq!(read(b"PO"), Ok(FirstBytes::NeedMore));
        assert_eq!(read(b"POST /upload HT"), Ok(FirstBytes::NeedMore));
        assert_eq!(
            read(b"SSH-2.0-OpenSSH_9.6 Ubuntu\r\n"),
            Ok(FirstBytes::Other)
        );
        assert_eq!(read(b"PING\r\n"), Ok(FirstBytes::Other));
        assert_eq!(read(b"\x00\x01 binary"), Ok(FirstBytes::Other));
        assert_eq!(read(b""), Ok(FirstBytes::NeedMore));
    }

    #[test]
    fn http_is_told_however_its_request_line_is_dressed() {
        // Empty lines before the request line, which servers skip (RFC 9112 §2.2).
        assert_eq!(read(b"\r\n\r\nPOST /x HTTP/1.1\r\n"), Ok(FirstBytes::Http));
        assert_eq!(read(b"\r\n"), Ok(FirstBytes::NeedMore));
        // Methods Warden has no name for.
        assert_eq!(read(b"PROPFIND /dav HTTP/1.1\r\n"), Ok(FirstBytes::Http));
        assert_eq!(read(b"X-EXFIL /data HTTP/1.0\r\n"), Ok(FirstBytes::Http));
        // HTTP/2's cleartext preface: HTTP, which the tunnel's HTTP/1 server refuses.
        assert_eq!(
            read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Ok(FirstBytes::Http)
        );
        // Not HTTP: another version, or a line that is no request.
        assert_eq!(read(b"GET / RTSP/1.0\r\n"), Ok(FirstBytes::Other));
        assert_eq!(read(b"GET key\r\n"), Ok(FirstBytes::Other));
        assert_eq!(read(b"SET key value\r\n"), Ok(FirstBytes::Other));
        assert_eq!(read(b"QUIT\r\n"), Ok(FirstBytes::Other));
        // A line that never ends is not waited for past its bound.
        let mut long = b"GET /".to_vec();
        long.resize(LINE_MAX + 1, b'a');
        assert_eq!(read(&long), Ok(FirstBytes::Other));
    }

    #[test]
    fn http_that_lenient_servers_read_is_http() {
        // Python's http.server splits the line on any white space and takes HTTP/0.9's
        // `GET /path`; nginx takes several spaces between the parts. Each reaches such a
        // server as a request, so each is HTTP here (and refused by the tunnel's server).
        for line in [
            &b"POST  /x HTTP/1.1\r\n"[..],
            b"POST /x  HTTP/1.1\r\n",
            b"POST\t/x\tHTTP/1.1\r\n",
            b" POST /x HTTP/1.1\r\n",
            b"\t\r\n POST /x HTTP/1.1\r\n",
            b"POST /x http/1.1\r\n",
            b"POST\x0b/x\x0cHTTP/1.1\r\n",
            b"GET\r/x HTTP/1.1\r\n",
            b"GET /x?k=v\r\n",
            b"GET /x\n",
            b"GET /x \r\n",
        ] {
            assert_eq!(
                read(line),
                Ok(FirstBytes::Http),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        for part in [&b"POST  "[..], b"POST\t/x\t", b"POST /x ht", b"GET /x"] {
            assert_eq!(
                read(part),
                Ok(FirstBytes::NeedMore),
                "{}",
                String::from_utf8_lossy(part)
            );
        }
    }

    #[test]
    fn malformed_hellos_are_errors() {
        let mut bytes = hello("example.com");
        bytes[5] = 2; // a ServerHello where a ClientHello belongs
        assert!(matches!(read(&bytes), Err(HelloError::Malformed(_))));
        // A hello whose body ends before its random does.
        let short = [HANDSHAKE, 3, 1, 0, 6, CLIENT_HELLO, 0, 0, 2, 3, 3];
        assert!(matches!(read(&short), Err(HelloError::Malformed(_))));
    }
}
