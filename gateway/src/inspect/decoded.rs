//! What a body reads as once its receiver decodes it, where that differs from its bytes: the
//! strings (values and keys) of a JSON body that use backslash escapes (`\u0041`, `\/`), the
//! pairs of a form-encoded body (percent-encoding, `+` as a space), the base64 content of
//! `data:` URIs of a text type (`text/…`, JSON, XML, YAML), and base64 files of a text type
//! beside what names their type in a JSON body ([`text_files`]: Anthropic's base64 documents,
//! Gemini's `inlineData`, OpenAI's `file_data`), and the parts of a multipart body that declare
//! a quoted-printable or base64 `Content-Transfer-Encoding` ([`multipart`]). A secret or a
//! canary written with any of these is read by the receiver as plain text, so the detectors
//! and the canary search read the decoded text too.
//!
//! Only what decoding changes is decoded: a body without a backslash, `%`, `+`, `data:` or a
//! `data` key, sent with a `Content-Type` that is not multipart, has nothing here (the fast
//! path: a few `memchr` scans). Each decoding runs on
//! its own mark whatever the body looks like, since its receiver decides how to read it.
//! Generic base64 runs, nested encodings beyond these (a form field holding escaped JSON,
//! say) and other content types' encodings are not decoded. Decoding never yields more than
//! the body holds: base64 decodes to three quarters of its length.

mod forgiving_base64;
pub mod multipart;
mod text_files;

use crate::protocol::estimate::is_text_type;
use std::sync::LazyLock;

use memchr::memmem::Finder;
use memchr::{memchr, memchr2};

/// Which decoding made a piece of decoded text, as a finding's location names it.
const JSON: &str = "a JSON string with escapes, decoded";
const FORM: &str = "a form-encoded pair, decoded";
const DATA_URI: &str = "a base64 data: URI, decoded";
const TEXT_FILE: &str = "a base64 file of a text type, decoded";

/// A `data:` URI's scheme, before its colon.
const DATA: &[u8] = b"data";
/// What marks a `data:` URI's content as base64, within this many bytes of its opening.
const BASE64_MARK: &[u8] = b";base64,";

/// Searchers for fixed needles, built once (`memmem::find` builds one per call, on every
/// request body).
static FIND_BASE64_MARK: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(BASE64_MARK));
static FIND_DATA_KEY: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"data\""));
static FIND_ESCAPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\\u"));
const MEDIA_TYPE_MAX: usize = 100;

/// The decoded text of a body, piece after piece (a newline between two), with where each
/// piece came from in the body.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Every piece's decoded text.
    pub text: Vec<u8>,
    /// Each piece: where its text starts in `text`, where it came from in the body (the
    /// string's opening quote, the pair's first byte, the URI's `data:`) and how it was decoded.
    pieces: Vec<(usize, usize, &'static str)>,
}

impl Decoded {
    /// Where in the body the decoded byte `at` came from, and how it was decoded.
    pub fn origin(&self, at: usize) -> (usize, &'static str) {
        let i = self.pieces.partition_point(|(start, _, _)| *start <= at);
        let (_, raw, how) = self.pieces[i.saturating_sub(1)];
        (raw, how)
    }

    /// Each piece's decoded text, with where it came from in the body and how.
    pub fn pieces(&self) -> impl Iterator<Item = (&[u8], usize, &'static str)> {
        self.pieces
            .iter()
            .enumerate()
            .map(|(i, &(start, raw, how))| {
                let end = self
                    .pieces
                    .get(i + 1)
                    .map_or(self.text.len(), |next| next.0 - 1);
                (&self.text[start..end], raw, how)
            })
    }

    fn push(&mut self, raw: usize, how: &'static str, text: &[u8]) {
        if !self.pieces.is_empty() {
            self.text.push(b'\n');
        }
        self.pieces.push((self.text.len(), raw, how));
        self.text.extend_from_slice(text);
    }
}

/// The decoded text of `body` where decoding changes it, or `None` when it does not.
/// `boundary`: the multipart boundary the request's `Content-Type` names
/// ([`multipart::boundary`]), when it is multipart.
pub fn decoded(body: &[u8], boundary: Option<&[u8]>) -> Option<Decoded> {
    let mut decoded = Decoded::default();
    // Each decoding runs on its own mark, whatever the body's first byte: a receiver may read
    // a body that opens with `{` as a form (PHP, Python with a form content type), or one that
    // opens with a byte-order mark, or is a bare string, as JSON. Decoding more only finds more.
    // A body that reads as JSON is form-decoded only when it holds a percent escape: `+` alone
    // (`1 + 1` in a prompt) would have every such prompt scanned twice.
    if memchr(b'\\', body).is_some() {
        json_strings(body, &mut decoded);
    }
    let form = if looks_like_json(body) {
        has_percent_escape(body)
    } else {
        memchr2(b'%', b'+', body).is_some()
    };
    if form {
        form_pairs(body, &mut decoded);
    }
    data_uris(body, &|at| (at, DATA_URI), &mut decoded);
    // A `data` or `file_data` key, or one written with escapes (`"d\u0061ta"`).
    if looks_like_json(body)
        && (FIND_DATA_KEY.find(body).is_some() || FIND_ESCAPE.find(body).is_some())
    {
        for (at, text) in text_files::text_files(body) {
            decoded.push(at, TEXT_FILE, &text);
        }
    }
    if let Some(boundary) = boundary {
        for (at, how, text) in multipart::encoded_parts(body, boundary) {
            decoded.push(at, how, &text);
        }
    }
    if memchr(b':', &decoded.text).is_some() {
        // A data: URI written with escapes (`\/` for its slashes) is read once decoded.
        let mut uris = Decoded::default();
        data_uris(
            &decoded.text,
            &|at| (decoded.origin(at).0, DATA_URI),
            &mut uris,
        );
        for (text, raw, how) in uris.pieces() {
            decoded.push(raw, how, text);
        }
    }
    (!decoded.pieces.is_empty()).then_some(decoded)
}

/// Whether `body` reads as JSON: its first byte that is not white space (or a byte-order
/// mark) opens an object or an array.
fn looks_like_json(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['))
}

/// Whether `body` holds a percent escape (`%` and two hex digits).
fn has_percent_escape(body: &[u8]) -> bool {
    memchr::memchr_iter(b'%', body).any(|at| {
        body.get(at + 1..at + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Each string of a JSON body that has a backslash escape, decoded. Outside its strings JSON
/// has no quote, so a quote opens a string and the first one not escaped closes it.
fn json_strings(body: &[u8], decoded: &mut Decoded) {
    let mut at = 0;
    while let Some(open) = memchr(b'"', &body[at..]).map(|i| at + i) {
        let mut end = open + 1;
        let mut escaped = false;
        while end < body.len() {
            match body[end] {
                b'\\' => {
                    escaped = true;
                    end += 2;
                    continue;
                }
                b'"' => break,
                _ => end += 1,
            }
        }
        let end = end.min(body.len());
        if escaped {
            decoded.push(open, JSON, unescape(&body[open + 1..end]).as_bytes());
        }
        at = end + 1;
        if at >= body.len() {
            break;
        }
    }
}

/// A JSON string's content with its escapes decoded, leniently as receivers read it: a lone
/// surrogate becomes U+FFFD, an unknown escape stands for its character.
fn unescape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut plain = 0;
    while i < raw.len() {
        if raw[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&raw[plain..i]));
        let Some(&kind) = raw.get(i + 1) else {
            plain = i + 1;
            break;
        };
        i += 2;
        match kind {
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'u' => {
                let (c, used) = code_point(&raw[i..]);
                out.push(c);
                i += used;
            }
            other => out.push(char::from(other)),
        }
        plain = i;
    }
    out.push_str(&String::from_utf8_lossy(&raw[plain.min(raw.len())..]));
    out
}

/// The character a `\u` escape stands for (`raw` is what follows the `\u`: four hex digits,
/// and for a high surrogate the `\uXXXX` of its low one), and how many bytes of `raw` it used.
fn code_point(raw: &[u8]) -> (char, usize) {
    let hex = |raw: &[u8]| -> Option<u32> {
        let digits = std::str::from_utf8(raw.get(..4)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    let Some(high) = hex(raw) else {
        return (char::REPLACEMENT_CHARACTER, 0);
    };
    if (0xD800..0xDC00).contains(&high)
        && raw.get(4..6) == Some(b"\\u")
        && let Some(low) = hex(&raw[6..])
        && (0xDC00..0xE000).contains(&low)
    {
        let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        return (char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER), 10);
    }
    (
        char::from_u32(high).unwrap_or(char::REPLACEMENT_CHARACTER),
        4,
    )
}

/// Each `&`-separated pair of a form-encoded body that decoding changes, decoded (`+` as a
/// space, then percent-decoded).
fn form_pairs(body: &[u8], decoded: &mut Decoded) {
    let mut at = 0;
    for pair in body.split(|&b| b == b'&') {
        if memchr2(b'%', b'+', pair).is_some() {
            decoded.push(at, FORM, &form_decoded(pair));
        }
        at += pair.len() + 1;
    }
}

/// `bytes` form-decoded: `+` as a space, then percent-decoded.
pub fn form_decoded(bytes: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = bytes
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}

/// The base64 content of each `data:` URI of a text type (`text/…`, JSON, XML, YAML: what a
/// model reads as text; the scheme and `;base64,` in any case) in `text`, decoded; `origin`
/// says where in the body an offset of `text` came from.
fn data_uris(text: &[u8], origin: &dyn Fn(usize) -> (usize, &'static str), out: &mut Decoded) {
    for colon in memchr::memchr_iter(b':', text) {
        let Some(at) = colon.checked_sub(DATA.len()) else {
            continue;
        };
        if !text[at..colon].eq_ignore_ascii_case(DATA) {
            continue;
        }
        let head = text[colon + 1..text.len().min(colon + 1 + MEDIA_TYPE_MAX)].to_ascii_lowercase();
        let Some(mark) = FIND_BASE64_MARK.find(&head) else {
            continue;
        };
        let media_type = String::from_utf8_lossy(&head[..mark]);
        if !is_text_type(&media_type) {
            continue;
        }
        let start = colon + 1 + mark + BASE64_MARK.len();
        let len = text[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
            .count();
        let content = forgiving_base64::skipping_others(&text[start..start + len]);
        let (raw, how) = origin(at);
        out.push(raw, how, &content);
    }
}

/// The text a base64 `blob` of `media_type` holds (an MCP resource's contents sent as
/// `blob`), decoded as forgivingly as a multipart part, when the type is a text type
/// (`text/…`, JSON, XML, YAML): its reader reads it as text. `None` for any other type.
pub fn text_blob(media_type: &str, blob: &str) -> Option<Vec<u8>> {
    is_text_type(media_type).then(|| forgiving_base64::skipping_others(blob.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn text(body: &str) -> Option<String> {
        decoded(body.as_bytes(), None).map(|d| String::from_utf8_lossy(&d.text).into_owned())
    }

    #[test]
    fn json_strings_with_escapes_are_decoded_keys_included_and_located_at_their_quote() {
        let body = r#"{"a":"plain","k\u0065y":"AKIA\u0052\u0032 a\/b \ud83d\ude00 \ud800 \q"}"#;
        let decoded = decoded(body.as_bytes(), None).unwrap();
        let pieces: Vec<(String, usize, &str)> = decoded
            .pieces()
            .map(|(t, raw, how)| (String::from_utf8_lossy(t).into_owned(), raw, how))
            .collect();
        let value = body.find("\"AKIA").unwrap();
        assert_eq!(
            pieces,
            [
                ("key".to_owned(), body.find("\"k\\").unwrap(), JSON),
                ("AKIAR2 a/b 😀 \u{fffd} q".to_owned(), value, JSON),
            ]
        );
        assert_eq!(decoded.origin(decoded.text.len() - 1), (value, JSON));
        assert_eq!(decoded.origin(0).0, body.find("\"k\\").unwrap());
    }

    #[test]
    fn a_json_body_without_escapes_and_plain_text_have_nothing_decoded() {
        assert_eq!(text(r#"{"messages":[{"content":"100% + more"}]}"#), None);
        assert_eq!(text("just prose, no encodings"), None);
        // An escaped quote does not end a string early; an unterminated one is read to the end.
        assert_eq!(
            text(r#"{"a":"say \"hi\" \u0041","b":"\u0042"#).as_deref(),
            Some("say \"hi\" A\nB")
        );
    }

    #[test]
    fn form_pairs_are_percent_decoded_with_plus_as_space() {
        assert_eq!(
            text("a=1&body=AKIA%52%32SZ&pem=-----BEGIN+RSA+PRIVATE+KEY-----").as_deref(),
            Some("body=AKIAR2SZ\npem=-----BEGIN RSA PRIVATE KEY-----")
        );
        let decoded = decoded(b"a=1&b=%41", None).unwrap();
        assert_eq!(decoded.origin(0).0, 4);
    }

    #[test]
    fn each_decoding_runs_whatever_the_body_opens_with() {
        // A form body opening with `{`, as PHP reads it given a form content type.
        assert_eq!(
            text("{x=1&key=AKIA%49OSFODNN7EXAMPLE").as_deref(),
            Some("key=AKIAIOSFODNN7EXAMPLE")
        );
        // JSON behind a byte-order mark, and a bare JSON string.
        assert_eq!(
            text("\u{feff}{\"k\":\"AKIA\\u0049\"}").as_deref(),
            Some("AKIAI")
        );
        assert_eq!(text(r#""AKIA\u0049""#).as_deref(), Some("AKIAI"));
    }

    #[test]
    fn base64_files_of_a_text_type_beside_their_type_are_decoded_where_their_string_opens() {
        let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let secret = b64("the key is here");
        for body in [
            // Anthropic's base64 document source.
            format!(
                r#"{{"content":[{{"type":"document","source":{{"type":"base64","media_type":"text/plain","data":"{secret}"}}}}]}}"#
            ),
            // Gemini's inline data, in either spelling, the type after the data.
            format!(
                r#"{{"parts":[{{"inline_data":{{"data":"{secret}","mime_type":"text/csv"}}}}]}}"#
            ),
            format!(
                r#"{{"parts":[{{"inlineData":{{"mimeType":"application/json; charset=utf-8","data":"{secret}"}}}}]}}"#
            ),
            // OpenAI's file input: bare base64 named by a text file's name.
            format!(
                r#"{{"content":[{{"type":"file","file":{{"filename":"notes.TXT","file_data":"{secret}"}}}}]}}"#
            ),
            format!(
                r#"{{"input":[{{"type":"input_file","file_data":"{secret}","filename":"a.csv"}}]}}"#
            ),
        ] {
            let decoded = decoded(body.as_bytes(), None).unwrap_or_else(|| panic!("{body}"));
            let pieces: Vec<(&[u8], usize, &str)> = decoded.pieces().collect();
            let at = body.find(&secret).unwrap() - 1;
            assert_eq!(pieces, [(&b"the key is here"[..], at, TEXT_FILE)], "{body}");
        }
        // Escaped (`\/`), it is read as its receiver reads it, found near where it is.
        let slashed = b64("???");
        assert!(slashed.contains('/'), "{slashed}");
        let body = format!(
            r#"{{"source":{{"media_type":"text/plain","data":"{}{}"}}}}"#,
            slashed.replace('/', "\\/"),
            secret
        );
        let decoded = decoded(body.as_bytes(), None).unwrap();
        let files: Vec<&[u8]> = decoded
            .pieces()
            .filter(|p| p.2 == TEXT_FILE)
            .map(|p| p.0)
            .collect();
        assert_eq!(files.len(), 1);
        assert!(files[0].ends_with(b"the key is here"), "{:?}", files[0]);
        // Not text, no type, or not base64: read as they are.
        for body in [
            format!(
                r#"{{"source":{{"type":"base64","media_type":"image/png","data":"{secret}"}}}}"#
            ),
            format!(r#"{{"file":{{"filename":"report.pdf","file_data":"{secret}"}}}}"#),
            format!(r#"{{"file":{{"file_data":"{secret}"}}}}"#),
            format!(
                r#"{{"source":{{"type":"text","media_type":"text/plain","data":"{secret}"}}}}"#
            ),
            r#"{"source":{"media_type":"text/plain","data":"plain words, not base64"}}"#.to_owned(),
        ] {
            assert_eq!(text(&body), None, "{body}");
        }
    }

    #[test]
    fn base64_data_uris_of_text_are_decoded_raw_or_escaped() {
        let secret = base64::engine::general_purpose::STANDARD.encode("the key is here");
        let body = format!(r#"{{"file_data":"data:text/plain;base64,{secret}"}}"#);
        assert_eq!(text(&body).as_deref(), Some("the key is here"));
        let escaped = format!(r#"{{"file_data":"data:text\/plain;base64,{secret}"}}"#);
        let decoded = decoded(escaped.as_bytes(), None).unwrap();
        let last = decoded.pieces().last().unwrap();
        assert_eq!(
            (last.0, last.1, last.2),
            (&b"the key is here"[..], 13, DATA_URI)
        );
        assert_eq!(text(r#"{"img":"data:image/png;base64,AAAA"}"#), None);
        // Stray bits in the last character, as Python and browsers decode it (`Lg` is `.`,
        // `Lh` carries four more bits): a strict decoder skipped the whole URI.
        let clean = base64::engine::general_purpose::STANDARD_NO_PAD.encode("the key is here.");
        let stray = format!("{}h", clean.strip_suffix('g').unwrap());
        let body = format!(r#"{{"file_data":"data:text/plain;base64,{stray}"}}"#);
        assert_eq!(text(&body).as_deref(), Some("the key is here."));
        // Any text type a model reads as text, the scheme and marks in any case.
        for uri in [
            format!("data:application/json;base64,{secret}"),
            format!("DATA:Text/Plain;BASE64,{secret}"),
            format!("data:application/vnd.api+json;charset=utf-8;base64,{secret}"),
        ] {
            let body = format!(r#"{{"file_data":"{uri}"}}"#);
            assert_eq!(text(&body).as_deref(), Some("the key is here"), "{uri}");
        }
    }
}
