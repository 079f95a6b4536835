//! Whether Warden can read a response it must look into: to judge the tool calls it proposes,
//! redact a credential it echoes or read the usage it reports. Warden asks every upstream for
//! an uncompressed answer (`accept-encoding: identity`); an answer compressed anyway, or a
//! judged one in a charset other than UTF-8, is not delivered: the agent's client would
//! decode it (SDKs decompress and detect UTF-16 on their own) and act on what Warden never
//! read.

use http::HeaderMap;
use http::StatusCode;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

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
    /// `Content-Encoding` other than absent or `identity`.
    #[error(
        "the upstream answered with content-encoding \"{encoding}\" although Warden asked for \
         an uncompressed response (accept-encoding: identity); Warden must {need}, so the \
         response was not delivered: the upstream (or a proxy in front of it) must answer \
         uncompressed"
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

/// Whether a response with `headers` can be read for what `needs` says.
pub fn check(headers: &HeaderMap, needs: Needs) -> Result<(), Unreadable> {
    let Some(need) = needs.describe() else {
        return Ok(());
    };
    if let Some(encoding) = encoding(headers) {
        return Err(Unreadable::Encoded {
            encoding: Quoted::of(&encoding),
            need,
        });
    }
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
    Ok(())
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

/// The response's content coding, when it is not absent or `identity` (every header and
/// every coding listed in one is read).
fn encoding(headers: &HeaderMap) -> Option<String> {
    let values = headers.get_all(CONTENT_ENCODING);
    let encoded = values.iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split(',')
            .map(str::trim)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case("identity"))
    });
    encoded.then(|| {
        values
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    })
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

    #[test]
    fn a_compressed_response_cannot_be_read_whatever_must_be_read_in_it() {
        for coding in [
            "gzip",
            "br",
            "zstd",
            "deflate",
            "x-unknown",
            "identity, gzip",
        ] {
            let h = headers(&[("content-encoding", coding)]);
            for needs in [
                JUDGE,
                Needs {
                    redact: true,
                    ..Needs::default()
                },
                Needs {
                    usage: true,
                    ..Needs::default()
                },
            ] {
                let refused = check(&h, needs).unwrap_err();
                assert!(
                    matches!(refused, Unreadable::Encoded { .. }),
                    "{coding}: {refused}"
                );
                assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
                assert!(refused.to_string().contains(coding), "{refused}");
            }
            // Nothing to read in it: it passes as it came.
            assert_eq!(check(&h, Needs::default()), Ok(()));
        }
        let gzip_twice = headers(&[
            ("content-encoding", "identity"),
            ("content-encoding", "gzip"),
        ]);
        assert!(check(&gzip_twice, JUDGE).is_err());
    }

    #[test]
    fn an_uncompressed_response_can_be_read() {
        for h in [
            headers(&[]),
            headers(&[("content-encoding", "identity")]),
            headers(&[("content-encoding", "IDENTITY")]),
        ] {
            assert_eq!(check(&h, JUDGE), Ok(()));
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
            let h = headers(&[("content-type", ct)]);
            let refused = check(&h, JUDGE).unwrap_err();
            assert!(matches!(refused, Unreadable::Charset { .. }), "{ct}");
            // Redaction matches bytes: a charset that writes ASCII as ASCII is matched, a
            // wide one cannot be.
            let redact = Needs {
                redact: true,
                usage: true,
                judge: false,
            };
            if ct.contains("latin1") {
                assert_eq!(check(&h, redact), Ok(()), "{ct}");
            } else {
                assert!(check(&h, redact).is_err(), "{ct}");
            }
        }
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "text/event-stream; charset=\"UTF-8\"",
            "application/json; charset=utf8",
        ] {
            assert_eq!(
                check(&headers(&[("content-type", ct)]), JUDGE),
                Ok(()),
                "{ct}"
            );
        }
    }
}
