//! The parts of a multipart body (`multipart/form-data`, `multipart/mixed`...) that declare a
//! `Content-Transfer-Encoding` of `quoted-printable` or `base64`: their receiver reads them
//! decoded (Go's `mime/multipart` decodes quoted-printable parts transparently; mail and
//! MIME libraries decode both), so their decoded content is read too.
//!
//! The body is split as its receiver splits it, with the boundary its `Content-Type` names
//! ([`boundary`]): a delimiter line is `--boundary` at the start of the body or of a line,
//! followed by optional white space and a line end (or `--`, the close); a part's headers run
//! to the first empty line (folded header lines continue the one before), its content to the
//! line end before the next delimiter. Decoding is lenient, as receivers are: quoted-printable
//! soft line breaks and hex digits in either case, an `=` that opens no escape kept as it is;
//! base64 with line breaks and any other byte not of its alphabet skipped. One pass over the
//! body; nothing is built for a body that is not multipart.

use memchr::memmem;

/// Which encoding a part declared, as a finding's location names it.
pub(super) const QUOTED_PRINTABLE: &str = "a multipart part (quoted-printable), decoded";
pub(super) const BASE64: &str = "a multipart part (base64), decoded";

/// The header that declares a part's encoding.
const TRANSFER_ENCODING: &[u8] = b"content-transfer-encoding";

/// The boundary a `Content-Type` of `multipart/…` names (`boundary=…`, quoted or not, the
/// type and the parameter's name in any case), or `None` for any other type or one without a
/// boundary.
pub fn boundary(content_type: &[u8]) -> Option<&[u8]> {
    let mut params = content_type.split(|&b| b == b';');
    let media_type = params.next()?.trim_ascii();
    let (kind, _) = media_type.split_at_checked(b"multipart/".len())?;
    if !kind.eq_ignore_ascii_case(b"multipart/") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_at(memchr::memchr(b'=', param)?);
        if !name.trim_ascii().eq_ignore_ascii_case(b"boundary") {
            return None;
        }
        let value = value[1..].trim_ascii();
        let value = value
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(value);
        (!value.is_empty()).then_some(value)
    })
}

/// Each part of the multipart `body` split at `boundary` that declares a quoted-printable or
/// base64 transfer encoding, decoded where decoding changes it, with where its content starts
/// in the body and which encoding it was.
pub(super) fn encoded_parts(body: &[u8], boundary: &[u8]) -> Vec<(usize, &'static str, Vec<u8>)> {
    let mut parts = Vec::new();
    let mut delimiter = Vec::with_capacity(boundary.len() + 2);
    delimiter.extend_from_slice(b"--");
    delimiter.extend_from_slice(boundary);
    let finder = memmem::Finder::new(&delimiter);
    // Where the next delimiter line begins and where its line ends (what follows it).
    let next = |from: usize| -> Option<(usize, usize, bool)> {
        let mut at = from;
        while let Some(found) = finder.find(&body[at..]).map(|i| at + i) {
            at = found + delimiter.len();
            if found != 0 && body[found - 1] != b'\n' {
                continue;
            }
            let rest = &body[at..];
            if rest.starts_with(b"--") {
                return Some((found, at + 2, true));
            }
            let blank = rest
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r'))
                .count();
            match rest.get(blank) {
                Some(b'\n') => return Some((found, at + blank + 1, false)),
                None => return Some((found, body.len(), true)),
                Some(_) => {}
            }
        }
        None
    };
    let Some((_, mut at, mut closed)) = next(0) else {
        return parts;
    };
    while !closed && at < body.len() {
        let (encoding, content) = headers(body, at);
        let (end, after, last) = match next(content) {
            Some((found, after, last)) => (line_start(body, content, found), after, last),
            None => (body.len(), body.len(), true),
        };
        if let Some(how) = encoding {
            let raw = &body[content..end];
            let decoded = match how {
                QUOTED_PRINTABLE => memchr::memchr(b'=', raw).map(|_| quoted_printable(raw)),
                _ => Some(super::forgiving_base64::skipping_others(raw)),
            };
            if let Some(decoded) = decoded.filter(|d| !d.is_empty()) {
                parts.push((content, how, decoded));
            }
        }
        (at, closed) = (after, last);
    }
    parts
}

/// Where the line end before the delimiter at `found` begins (`\r\n` or `\n`), not before
/// `content`.
fn line_start(body: &[u8], content: usize, found: usize) -> usize {
    let mut end = found.saturating_sub(1).max(content);
    if end > content && body[end - 1] == b'\r' {
        end -= 1;
    }
    end
}

/// The transfer encoding (of those decoded here) the part headers at `at` declare, and where
/// the part's content starts: after the empty line that ends them (the body's end when none
/// does).
fn headers(body: &[u8], mut at: usize) -> (Option<&'static str>, usize) {
    let mut encoding = None;
    // The value of the transfer encoding header being read, which may be folded.
    let mut value: Option<Vec<u8>> = None;
    let settle = |value: &mut Option<Vec<u8>>, encoding: &mut Option<&'static str>| {
        if let Some(v) = value.take() {
            let v = v.trim_ascii();
            *encoding = if v.eq_ignore_ascii_case(b"quoted-printable") {
                Some(QUOTED_PRINTABLE)
            } else if v.eq_ignore_ascii_case(b"base64") {
                Some(BASE64)
            } else {
                None
            };
        }
    };
    while at < body.len() {
        let end = memchr::memchr(b'\n', &body[at..]).map_or(body.len(), |i| at + i);
        let line = &body[at..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at = (end + 1).min(body.len());
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some(v) = value.as_mut() {
                v.extend_from_slice(line);
            }
            continue;
        }
        settle(&mut value, &mut encoding);
        if let Some(colon) = memchr::memchr(b':', line)
            && line[..colon]
                .trim_ascii()
                .eq_ignore_ascii_case(TRANSFER_ENCODING)
        {
            value = Some(line[colon + 1..].to_vec());
        }
    }
    settle(&mut value, &mut encoding);
    (encoding, at)
}

/// `raw` quoted-printable-decoded, leniently: `=` and two hex digits (either case) is a byte,
/// `=` before the line's end (trailing white space allowed) a soft line break, any other `=`
/// stays as it is.
pub(super) fn quoted_printable(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        if b != b'=' {
            out.push(b);
            continue;
        }
        if let (Some(high), Some(low)) = (
            raw.get(i).copied().and_then(hex),
            raw.get(i + 1).copied().and_then(hex),
        ) {
            out.push(high << 4 | low);
            i += 2;
            continue;
        }
        let blank = raw[i..]
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\r'))
            .count();
        match raw.get(i + blank) {
            Some(b'\n') => i += blank + 1,
            None => i += blank,
            Some(_) => out.push(b'='),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_is_read_from_a_multipart_content_type_only() {
        for (content_type, expected) in [
            (&b"multipart/form-data; boundary=abc"[..], Some(&b"abc"[..])),
            (
                b"Multipart/Mixed;charset=x; BOUNDARY=\"a b:c\"",
                Some(b"a b:c"),
            ),
            (b"multipart/form-data", None),
            (b"multipart/form-data; boundary=", None),
            (b"text/plain; boundary=abc", None),
            (b"multi", None),
            (b"", None),
        ] {
            assert_eq!(
                boundary(content_type),
                expected,
                "{}",
                String::from_utf8_lossy(content_type)
            );
        }
    }

    #[test]
    fn quoted_printable_is_decoded_leniently() {
        assert_eq!(quoted_printable(b"=41=4b=49=41Q3"), b"AKIAQ3");
        assert_eq!(quoted_printable(b"AK=\r\nIA=  \nQ3=\n"), b"AKIAQ3");
        assert_eq!(quoted_printable(b"a=zz=4=\r\nb="), b"a=zz=4b");
        assert_eq!(quoted_printable(b"line\r\nnext"), b"line\r\nnext");
    }

    #[test]
    fn only_parts_that_declare_an_encoding_are_decoded_and_each_is_located() {
        let body = "preamble\r\n--xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nplain =41\r\n\
                    --xyz  \r\ncontent-transfer-encoding:\r\n  Quoted-Printable\r\n\r\n=41KIA=\r\nQ3\r\n\
                    --xyz\nCONTENT-TRANSFER-ENCODING: BASE64\n\na2V5PUFLSUE=\n\
                    --xyz\r\nContent-Transfer-Encoding: 8bit\r\n\r\n=41\r\n--xyz--\r\n\
                    --xyz\r\nContent-Transfer-Encoding: base64\r\n\r\nYWZ0ZXI=\r\n";
        let parts = encoded_parts(body.as_bytes(), b"xyz");
        let qp = body.find("=41KIA").unwrap();
        let b64 = body.find("a2V5").unwrap();
        assert_eq!(
            parts,
            [
                (qp, QUOTED_PRINTABLE, b"AKIAQ3".to_vec()),
                (b64, BASE64, b"key=AKIA".to_vec()),
            ]
        );
    }

    #[test]
    fn a_delimiter_must_open_a_line_and_an_unclosed_part_runs_to_the_end() {
        // The boundary `--`: `----` inside the content is no delimiter (base64 skips it).
        let body = b"----\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj ----\r\nZGVm";
        assert_eq!(
            encoded_parts(body, b"--"),
            [(body.len() - 15, BASE64, b"abcdef".to_vec())]
        );
    }

    #[test]
    fn malformed_bodies_find_nothing_and_do_not_panic() {
        for body in [
            &b""[..],
            b"--b",
            b"--b\r\n",
            b"--b\r\nContent-Transfer-Encoding: base64",
            b"--b\r\nContent-Transfer-Encoding: base64\r\n",
            b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n\r\n--b",
            b"--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nno escapes\r\n--b--",
            b"--bb\r\nContent-Transfer-Encoding: base64\r\n\r\nYWJj\r\n--bb--",
            b"--b\r\n : folded first\r\n:\r\n\r\n=\r\n--b\r\n\r\n--b--",
            b"no delimiter at all",
        ] {
            assert_eq!(
                encoded_parts(body, b"b"),
                [],
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
