//! Whether Warden can read a response it must look into: to judge the tool calls it proposes,
//! redact a credential it echoes or read the usage it reports. Warden asks every upstream for
//! an uncompressed answer (`accept-encoding: identity`); one compressed anyway (gzip,
//! deflate, br, zstd) is decoded as it streams and served uncompressed. One in a coding Warden
//! cannot decode, or a judged one in a charset other than UTF-8, is not delivered: the agent's
//! client would decode it (SDKs decompress and detect UTF-16 on their own) and act on what
//! Warden never read.

use http::HeaderMap;
use http::StatusCode;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};

use crate::observe::decoded::Decoder;
use crate::text::Quoted;

/// What Warden must read in a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// The tool calls it proposes are judged.
    pub judge: bool,
    /// A credential it echoes is redacted.
    pub redact: bool,
    /// Its usage is read (budgets, metrics, the audit record).
    pub usage: bool,
}

impl Needs {
    /// What Warden must do with the response, in words, for the error (`None`: nothing).
    fn describe(self) -> Option<&'static str> {
        Some(match (self.judge, self.redact, self.usage) {
            (false, false, false) => return None,
            (true, _, _) => "judge the tool calls it proposes",
            (false, true, _) => "redact a credential it echoes",
            (false, false, true) => "read the usage it reports",
        })
    }
}

/// A response Warden must read and cannot: refused with `502`, in the route's error shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// A `Content-Encoding` Warden cannot decode (it decodes gzip, deflate, br and zstd).
    #[error(
        "the upstream answered with content-encoding \"{encoding}\", which Warden cannot decode, \
         although it asked for an uncompressed response (accept-encoding: identity); Warden \
         must {need}, so the response was not delivered: the upstream (or a proxy in front of \
         it) must answer uncompressed, or in gzip, deflate, br or zstd"
    )]
    Encoded {
        encoding: Quoted,
        need: &'static str,
    },
    /// A judged response whose `Content-Type` names a charset other than UTF-8.
    #[error(
        "the upstream answered in charset \"{charset}\"; Warden judges tool calls in, and redacts \
         echoed credentials from, UTF-8 (or, for redaction, ASCII-compatible) \
         text only, so the response was not delivered: the upstream must answer in UTF-8"
    )]
    Charset { charset: Quoted },
    /// A request that asked for an event stream answered with something else, on a route
    /// whose injected credential is redacted from the stream as its SDK joins it.
    #[error(
        "the request asked for a stream and the upstream answered with content-type \
         \"{content_type}\", not text/event-stream; Warden reads a streamed answer event by \
         event to redact the credential it injected, so the response was not delivered: the \
         upstream must answer a streamed request with text/event-stream"
    )]
    NotEventStream { content_type: Quoted },
}

impl Unreadable {
    /// The HTTP status the agent gets.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_GATEWAY
    }

    /// The stable code (the one an answer whose calls cannot be read carries).
    pub fn code(&self) -> &'static str {
        "response_unreadable"
    }
}

/// Whether a response with `headers` can be read for what `needs` says; when it is
/// compressed, the decoder that undoes its codings as it streams, its `Content-Encoding` and
/// `Content-Length` then removed from `headers` (the agent gets it decoded).
pub fn check(headers: &mut HeaderMap, needs: Needs) -> Result<Option<Decoder>, Unreadable> {
    let Some(need) = needs.describe() else {
        return Ok(None);
    };
    let decoder = Decoder::of(headers).map_err(|_| Unreadable::Encoded {
        encoding: Quoted::of(&encoding(headers)),
        need,
    })?;
    // Judging reads the text, so it must be UTF-8; redaction matches a secret's bytes, so
    // the charset must write ASCII as ASCII (UTF-16, UTF-32 and UTF-7 do not).
    if let Some(charset) = charset(headers)
        && !(charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8"))
        && (needs.judge || (needs.redact && !ascii_compatible(&charset)))
    {
        return Err(Unreadable::Charset {
            charset: Quoted::of(&charset),
        });
    }
    if decoder.is_some() {
        headers.remove(CONTENT_ENCODING);
        headers.remove(CONTENT_LENGTH);
    }
    Ok(decoder)
}

/// Whether `charset` writes ASCII text as ASCII bytes (so a secret's bytes can be matched).
fn ascii_compatible(charset: &str) -> bool {
    let charset = charset.to_ascii_lowercase();
    ![
        "utf-16", "utf16", "utf-32", "utf32", "ucs-2", "ucs2", "ucs-4", "ucs4", "utf-7", "utf7",
    ]
    .iter()
    .any(|wide| charset.starts_with(wide))
}

/// Moves a response's transfer codings other than a final `chunked` (`Transfer-Encoding:
/// gzip, chunked`) into its `Content-Encoding`, after the content codings, the order they
/// were applied in. The HTTP client undoes only a final `chunked`, and `Transfer-Encoding`
/// goes with the hop-by-hop headers; left there, a body compressed as a transfer coding would
/// reach the agent compressed, unread by redaction and judging, for its client to inflate.
/// Moved, it is decoded (or refused when Warden cannot decode it) like any compressed answer.
/// A `chunked` that is not the final coding (`chunked, gzip`) is not undone by the client
/// (the body is read to its end as it came): moved with the others, it is a coding Warden
/// cannot decode, so the response is refused rather than read with its chunk-size lines in
/// it. Called before the hop-by-hop headers are stripped; allocates only when there is a
/// coding to move.
pub fn transfer_codings_as_content(headers: &mut HeaderMap) {
    let last = codings(headers, TRANSFER_ENCODING).count();
    let kept = |(i, c): (usize, &[u8])| {
        c.eq_ignore_ascii_case(b"identity") || (i + 1 == last && c.eq_ignore_ascii_case(b"chunked"))
    };
    if codings(headers, TRANSFER_ENCODING).enumerate().all(kept) {
        return;
    }
    let mut all: Vec<u8> = Vec::new();
    let moved = codings(headers, TRANSFER_ENCODING)
        .enumerate()
        .filter(|&c| !kept(c))
        .map(|(_, c)| c);
    for coding in codings(headers, CONTENT_ENCODING).chain(moved) {
        if !all.is_empty() {
            all.extend_from_slice(b", ");
        }
        all.extend_from_slice(coding);
    }
    // Each part came from a header value, so the joined bytes are one too.
    if let Ok(value) = http::HeaderValue::from_bytes(&all) {
        headers.insert(CONTENT_ENCODING, value);
    }
    headers.remove(CONTENT_LENGTH);
}

/// The codings a coding header (`Transfer-Encoding`, `Content-Encoding`) lists, in order,
/// without their parameters.
fn codings(headers: &HeaderMap, name: http::HeaderName) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| {
            c.split(|b| *b == b';')
                .next()
                .unwrap_or_default()
                .trim_ascii()
        })
        .filter(|c| !c.is_empty())
}

/// The response's content codings, as its headers list them.
fn encoding(headers: &HeaderMap) -> String {
    headers
        .get_all(CONTENT_ENCODING)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `charset` parameter of the response's content type(s), unquoted, if one is given.
fn charset(headers: &HeaderMap) -> Option<String> {
    headers.get_all(CONTENT_TYPE).iter().find_map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split(';')
            .skip(1)
            .find_map(|param| {
                let (name, value) = param.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("charset")
                    .then(|| value.trim().trim_matches('"').to_owned())
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_static(value));
        }
        h
    }

    const JUDGE: Needs = Needs {
        judge: true,
        redact: false,
        usage: false,
    };

    const NEEDS: [Needs; 3] = [
        JUDGE,
        Needs {
            judge: false,
            redact: true,
            usage: false,
        },
        Needs {
            judge: false,
            redact: false,
            usage: true,
        },
    ];

    #[test]
    fn a_transfer_coding_is_decoded_as_a_content_coding_is() {
        let mut h = headers(&[("transfer-encoding", "gzip, chunked")]);
        transfer_codings_as_content(&mut h);
        assert_eq!(h["content-encoding"], "gzip");
        for needs in NEEDS {
            let mut h = h.clone();
            assert!(check(&mut h, needs).unwrap().is_some());
        }
        // After the content codings, in the order applied.
        let mut h = headers(&[
            ("content-encoding", "br"),
            ("transfer-encoding", "gzip;q=1"),
            ("transfer-encoding", "chunked"),
        ]);
        transfer_codings_as_content(&mut h);
        assert_eq!(h["content-encoding"], "br, gzip");
        // One Warden cannot decode is refused as a content coding is.
        let mut h = headers(&[("transfer-encoding", "compress, chunked")]);
        transfer_codings_as_content(&mut h);
        assert!(check(&mut h, NEEDS[1]).is_err());
        // Only chunked: nothing changes.
        let mut h = headers(&[("transfer-encoding", "chunked"), ("content-length", "4")]);
        transfer_codings_as_content(&mut h);
        assert!(h.get("content-encoding").is_none());
        assert!(h.get("content-length").is_some());
    }

    #[test]
    fn a_chunked_that_is_not_the_final_transfer_coding_cannot_be_read() {
        // The client reads such a body to its end without de-chunking it: decoding the gzip
        // would leave the chunk-size lines in the text (a credential split across them).
        for pairs in [
            &[("transfer-encoding", "chunked, gzip")][..],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "gzip"),
            ],
            &[("transfer-encoding", "chunked, chunked")],
        ] {
            let mut h = headers(pairs);
            transfer_codings_as_content(&mut h);
            let coding = h["content-encoding"].to_str().unwrap().to_owned();
            assert!(coding.starts_with("chunked"), "{pairs:?}: {coding}");
            for needs in NEEDS {
                let refused = check(&mut h.clone(), needs).unwrap_err();
                assert!(
                    matches!(refused, Unreadable::Encoded { .. }),
                    "{pairs:?}: {refused}"
                );
                assert_eq!(refused.code(), "response_unreadable");
            }
        }
        // A final chunked (in the last of several values, with a parameter on another) is
        // undone by the client and dropped; identity is no coding.
        let mut h = headers(&[
            ("transfer-encoding", "identity, gzip; q=1"),
            ("transfer-encoding", " chunked "),
        ]);
        transfer_codings_as_content(&mut h);
        assert_eq!(h["content-encoding"], "gzip");
    }

    #[test]
    fn a_compressed_response_is_decoded_whatever_must_be_read_in_it() {
        for coding in [
            "gzip",
            "br",
            "zstd",
            "deflate",
            "identity, gzip",
            "gzip, br",
        ] {
            for needs in NEEDS {
                let mut h = headers(&[("content-encoding", coding), ("content-length", "9")]);
                let decoder = check(&mut h, needs).expect(coding);
                assert!(decoder.is_some(), "{coding}");
                // The agent gets it decoded, of a length not known yet.
                assert!(h.get("content-encoding").is_none(), "{coding}");
                assert!(h.get("content-length").is_none(), "{coding}");
            }
            // Nothing to read in it: it passes as it came.
            let mut h = headers(&[("content-encoding", coding)]);
            assert!(check(&mut h, Needs::default()).unwrap().is_none());
            assert!(h.get("content-encoding").is_some());
        }
    }

    #[test]
    fn a_response_in_a_coding_warden_cannot_decode_cannot_be_read() {
        for coding in ["x-unknown", "compress", "gzip, x-unknown"] {
            for needs in NEEDS {
                let mut h = headers(&[("content-encoding", coding)]);
                let refused = check(&mut h, needs).unwrap_err();
                assert!(
                    matches!(refused, Unreadable::Encoded { .. }),
                    "{coding}: {refused}"
                );
                assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
                assert_eq!(refused.code(), "response_unreadable");
                assert!(refused.to_string().contains(coding), "{refused}");
            }
            let mut h = headers(&[("content-encoding", coding)]);
            assert!(check(&mut h, Needs::default()).unwrap().is_none());
        }
    }

    #[test]
    fn an_uncompressed_response_can_be_read() {
        for mut h in [
            headers(&[]),
            headers(&[("content-encoding", "identity")]),
            headers(&[("content-encoding", "IDENTITY")]),
        ] {
            assert!(check(&mut h, JUDGE).unwrap().is_none());
        }
    }

    #[test]
    fn a_judged_response_in_a_charset_other_than_utf8_cannot_be_read() {
        for ct in [
            "application/json; charset=utf-16",
            "application/json;charset=\"UTF-16LE\"",
            "text/event-stream; charset=utf-32",
            "application/json; charset=latin1",
        ] {
            let mut h = headers(&[("content-type", ct)]);
            let refused = check(&mut h, JUDGE).unwrap_err();
            assert!(matches!(refused, Unreadable::Charset { .. }), "{ct}");
            // Redaction matches bytes: a charset that writes ASCII as ASCII is matched, a
            // wide one cannot be.
            let redact = Needs {
                redact: true,
                usage: true,
                judge: false,
            };
            if ct.contains("latin1") {
                assert!(check(&mut h, redact).is_ok(), "{ct}");
            } else {
                assert!(check(&mut h, redact).is_err(), "{ct}");
            }
        }
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "text/event-stream; charset=\"UTF-8\"",
            "application/json; charset=utf8",
        ] {
            assert!(
                check(&mut headers(&[("content-type", ct)]), JUDGE).is_ok(),
                "{ct}"
            );
        }
    }
}
