//! Redaction of an injected secret that an upstream echoes back (an error message quoting the
//! `Authorization` header, a debug endpoint): replaced with `[REDACTED]` before the agent sees
//! it. Works on a stream chunk by chunk; only bytes that could begin a secret split across
//! chunks are held back, so a stream that never comes near one flows with no delay.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use zeroize::Zeroizing;

use super::spelled;

/// What a secret is replaced with.
pub const REDACTED: &[u8] = b"[REDACTED]";

/// Redacts a set of secrets from a stream of chunks.
pub struct Redactor {
    secrets: Arc<[Zeroizing<String>]>,
    /// Bytes held back: the end of the last chunk, which may be the start of a secret.
    tail: Zeroizing<Vec<u8>>,
    /// Secrets replaced so far.
    count: usize,
}

impl Redactor {
    /// A redactor of `secrets`; `None` when there is nothing to redact.
    pub fn new(secrets: Arc<[Zeroizing<String>]>) -> Option<Redactor> {
        (!secrets.is_empty()).then(|| Redactor {
            secrets,
            tail: Zeroizing::new(Vec::new()),
            count: 0,
        })
    }

    /// How many secrets were replaced.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Redacts the secrets from `headers` (a `Location` or `Link` quoting a query-parameter
    /// credential, a debug header echoing one); returns how many were replaced.
    pub fn headers(&mut self, headers: &mut http::HeaderMap) -> usize {
        let before = self.count;
        for value in headers.values_mut() {
            if !self.any_in(value.as_bytes()) {
                continue;
            }
            let redacted = self.replace_all(value.as_bytes());
            // `[REDACTED]` is a valid header value wherever the secret was.
            if let Ok(mut new) = http::HeaderValue::from_bytes(&redacted) {
                new.set_sensitive(value.is_sensitive());
                *value = new;
            }
        }
        self.count - before
    }

    /// `frame` with the secrets redacted from it when it is trailers (HTTP/2 trailers, which
    /// an upstream may fill as it fills headers); a data frame as it is.
    pub fn trailers(&mut self, frame: http_body::Frame<Bytes>) -> http_body::Frame<Bytes> {
        match frame.into_trailers() {
            Ok(mut trailers) => {
                self.headers(&mut trailers);
                http_body::Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }
    }

    /// The part of `chunk` (after what was held back) that can be passed on now.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.tail.is_empty() && !self.any_in(&chunk) && self.partial(&chunk) == 0 {
            // The common case: no secret, nothing held back, the chunk as it came.
            return chunk;
        }
        let mut joined = Zeroizing::new(std::mem::take(&mut *self.tail));
        joined.extend_from_slice(&chunk);
        let mut out = self.replace_all(&joined);
        let keep = self.partial(&out);
        self.tail.extend_from_slice(&out[out.len() - keep..]);
        out.truncate(out.len() - keep);
        out.freeze()
    }

    /// What is still held back, at the end of the stream.
    pub fn finish(&mut self) -> Bytes {
        let rest = std::mem::take(&mut *self.tail);
        Bytes::from(rest)
    }

    fn any_in(&self, haystack: &[u8]) -> bool {
        self.secrets
            .iter()
            .any(|s| memchr::memmem::find(haystack, s.as_bytes()).is_some())
            || (spelled::has_escapes(haystack)
                && self
                    .spelled()
                    .any(|s| spelled::find(s, haystack, 0).is_some()))
    }

    /// The secrets looked for in any spelling ([`spelled`]): those not written with escapes
    /// already.
    fn spelled(&self) -> impl Iterator<Item = &str> {
        self.secrets
            .iter()
            .map(|s| s.as_str())
            .filter(|s| !s.contains('\\'))
    }

    /// `text` with every secret replaced (longest first where two start at one place).
    fn replace_all(&mut self, text: &[u8]) -> BytesMut {
        let mut out = BytesMut::with_capacity(text.len());
        let escapes = spelled::has_escapes(text);
        let mut i = 0;
        while i < text.len() {
            let literal = self.secrets.iter().filter_map(|s| {
                memchr::memmem::find(&text[i..], s.as_bytes()).map(|at| (i + at, s.len()))
            });
            let spelled = self
                .spelled()
                .filter(|_| escapes)
                .filter_map(|s| spelled::find(s, text, i).map(|(at, end)| (at, end - at)));
            let found = literal
                .chain(spelled)
                .min_by_key(|&(at, len)| (at, std::cmp::Reverse(len)));
            match found {
                Some((at, len)) => {
                    out.extend_from_slice(&text[i..at]);
                    out.extend_from_slice(REDACTED);
                    self.count += 1;
                    i = at + len;
                }
                None => {
                    out.extend_from_slice(&text[i..]);
                    i = text.len();
                }
            }
        }
        out
    }

    /// How many bytes at the end of `text` are the start of a secret (held back until the
    /// next chunk shows whether the secret follows).
    fn partial(&self, text: &[u8]) -> usize {
        let mut longest = 0;
        for secret in self.secrets.iter() {
            let s = secret.as_bytes();
            let most = (s.len() - 1).min(text.len());
            for k in (longest + 1..=most).rev() {
                if text[text.len() - k] == s[0] && text.ends_with(&s[..k]) {
                    longest = k;
                    break;
                }
            }
        }
        if spelled::has_escapes(text) {
            for secret in self.spelled() {
                longest = longest.max(spelled::partial(secret, text));
            }
        }
        longest
    }
}

/// The forms `secret` takes when an upstream echoes it inside other text, beside itself: as
/// JSON escapes it (`\"`, `\\`, control characters as `\u00XX`; with `/` as `\/`; with `<`,
/// `>`, `&` as Go escapes them; with everything but ASCII as Python's `ensure_ascii` escapes
/// it, in lower- and upper-case hex) and as a URL percent-encodes it (every byte but the
/// unreserved ones, in upper- and lower-case hex; a space as `+` in a form). Forms equal to the
/// secret are left out.
pub fn echoed_forms(secret: &str) -> Vec<Zeroizing<String>> {
    let mut forms: Vec<Zeroizing<String>> = Vec::new();
    let escapes: [fn(char) -> Option<String>; 4] = [
        |_| None,
        |c| (c == '/').then(|| "\\/".to_owned()),
        |c| matches!(c, '<' | '>' | '&').then(|| format!("\\u{:04x}", u32::from(c))),
        |c| (!c.is_ascii()).then(|| utf16_escaped(c)),
    ];
    for escape in escapes {
        let lower = Zeroizing::new(json_escaped(secret, escape));
        let upper = Zeroizing::new(upper_hex_escapes(&lower));
        forms.push(lower);
        forms.push(upper);
    }
    let percent =
        Zeroizing::new(percent_encoding::utf8_percent_encode(secret, URL_ESCAPED).to_string());
    forms.push(Zeroizing::new(lower_percent_hex(&percent)));
    forms.push(Zeroizing::new(percent.replace("%20", "+")));
    forms.push(percent);
    forms.retain(|form| form.as_str() != secret);
    forms.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    forms.dedup_by(|a, b| a.as_str() == b.as_str());
    forms
}

/// The forms `bytes` takes base64-encoded where an upstream echoes it: the whole padded
/// encoding, and the part that stays the same wherever it sits in a longer encoded text (no
/// padding, or one or two bytes before it: the first and last groups of four depend on its
/// neighbours and are left out), each in the standard and the URL-safe alphabet. Parts shorter
/// than 8 characters are left out.
pub fn base64_forms(bytes: &[u8]) -> Vec<Zeroizing<String>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let mut forms = vec![Zeroizing::new(STANDARD.encode(bytes))];
    for offset in 0..3 {
        let mut shifted = Zeroizing::new(vec![0u8; offset]);
        shifted.extend_from_slice(bytes);
        let encoded = Zeroizing::new(STANDARD.encode(&*shifted));
        let from = if offset == 0 { 0 } else { 4 };
        let to = 4 * (shifted.len() / 3);
        if to >= from + 8 {
            forms.push(Zeroizing::new(encoded[from..to].to_owned()));
        }
    }
    let url_safe: Vec<Zeroizing<String>> = forms
        .iter()
        .map(|f| Zeroizing::new(f.replace('+', "-").replace('/', "_").replace('=', "")))
        .collect();
    forms.extend(url_safe);
    forms.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    forms.dedup_by(|a, b| a.as_str() == b.as_str());
    forms
}

/// Bytes a URL percent-encodes: all but the unreserved ones (RFC 3986).
const URL_ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` as a JSON string's contents: `"` and `\` escaped, control characters as `\u00xx`,
/// and any character `escape` says how.
fn json_escaped(text: &str, escape: fn(char) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if let Some(escaped) = escape(c) {
            out.push_str(&escaped);
            continue;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// `c` as `\uxxxx` escapes of its UTF-16 code units (a surrogate pair beyond the BMP).
fn utf16_escaped(c: char) -> String {
    let mut units = [0u16; 2];
    c.encode_utf16(&mut units)
        .iter()
        .map(|u| format!("\\u{u:04x}"))
        .collect()
}

/// `text` with the hex digits of its `\u` escapes in upper case.
fn upper_hex_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("\\u") {
        let (before, after) = rest.split_at(at + 2);
        out.push_str(before);
        let hex_len = after.len().min(4);
        out.push_str(&after[..hex_len].to_ascii_uppercase());
        rest = &after[hex_len..];
    }
    out.push_str(rest);
    out
}

/// `text` with the hex digits of its percent escapes in lower case.
fn lower_percent_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
        }
    }
    out
}

/// Replaces every secret of `secrets` in the strings of `value` (a JSON-RPC message from an
/// MCP server) with `[REDACTED]`, longest first (a secret inside another is not replaced
/// before the longer one); returns how many were replaced.
pub fn redact_json(value: &mut serde_json::Value, secrets: &[Zeroizing<String>]) -> usize {
    let mut longest_first: Vec<&str> = secrets.iter().map(|s| s.as_str()).collect();
    longest_first.sort_by_key(|s| std::cmp::Reverse(s.len()));
    redact_strings(value, &longest_first)
}

/// [`redact_json`] with `secrets` sorted longest first.
fn redact_strings(value: &mut serde_json::Value, secrets: &[&str]) -> usize {
    use serde_json::Value;
    match value {
        Value::String(text) => redact_text(text, secrets),
        Value::Array(items) => items.iter_mut().map(|v| redact_strings(v, secrets)).sum(),
        Value::Object(fields) => {
            let values: usize = fields
                .values_mut()
                .map(|v| redact_strings(v, secrets))
                .sum();
            values + redact_keys(fields, secrets)
        }
        _ => 0,
    }
}

/// Replaces every secret of `secrets` (longest first) in `text`; how many were replaced.
fn redact_text(text: &mut String, secrets: &[&str]) -> usize {
    let mut count = 0;
    for secret in secrets {
        if text.contains(secret) {
            count += text.matches(secret).count();
            *text = text.replace(secret, "[REDACTED]");
        }
    }
    count
}

/// Redacts the keys of `fields` too (an object key is a string the agent reads as surely as
/// a value: a map keyed by a header's value hands the credential over). A key that becomes
/// one already present is kept under a numbered form (`[REDACTED] (2)`), never merged or
/// dropped silently. How many were replaced.
fn redact_keys(fields: &mut serde_json::Map<String, serde_json::Value>, secrets: &[&str]) -> usize {
    if !fields
        .keys()
        .any(|key| secrets.iter().any(|s| key.contains(s)))
    {
        return 0;
    }
    let mut count = 0;
    let mut rebuilt = serde_json::Map::new();
    for (mut key, value) in std::mem::take(fields) {
        count += redact_text(&mut key, secrets);
        if rebuilt.contains_key(&key) {
            let base = key;
            key = (2..)
                .map(|n| format!("{base} ({n})"))
                .find(|k| !rebuilt.contains_key(k))
                .unwrap_or_default();
        }
        rebuilt.insert(key, value);
    }
    *fields = rebuilt;
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_echoed_as_an_object_key_is_redacted_too() {
        let secret = Zeroizing::new("mcpCred-Xy7Qz9Lm2Pk4Wv8Rt6".to_owned());
        let mut message = serde_json::json!({
            "result": {
                "structuredContent": {"mcpCred-Xy7Qz9Lm2Pk4Wv8Rt6": true,
                                      "k": {"Bearer mcpCred-Xy7Qz9Lm2Pk4Wv8Rt6": 1}},
                "_meta": {"leak": "mcpCred-Xy7Qz9Lm2Pk4Wv8Rt6", "mcpCred-Xy7Qz9Lm2Pk4Wv8Rt6": "key",
                          "[REDACTED]": "already"}
            }
        });
        let count = redact_json(&mut message, std::slice::from_ref(&secret));
        assert_eq!(count, 4);
        assert!(!message.to_string().contains(secret.as_str()), "{message}");
        assert_eq!(
            message["result"]["structuredContent"],
            serde_json::json!({"[REDACTED]": true, "k": {"Bearer [REDACTED]": 1}})
        );
        // Two keys alike once redacted: both kept.
        let meta = message["result"]["_meta"].as_object().unwrap();
        assert_eq!(meta.len(), 3, "{message}");
        assert_eq!(meta["leak"], "[REDACTED]");
        assert!(meta.contains_key("[REDACTED]") && meta.contains_key("[REDACTED] (2)"));
    }

    fn redactor(secrets: &[&str]) -> Redactor {
        Redactor::new(
            secrets
                .iter()
                .map(|s| Zeroizing::new((*s).to_owned()))
                .collect(),
        )
        .unwrap()
    }

    fn run(r: &mut Redactor, chunks: &[&str]) -> (String, Vec<usize>) {
        let mut out = Vec::new();
        let mut sizes = Vec::new();
        for c in chunks {
            let b = r.push(Bytes::copy_from_slice(c.as_bytes()));
            sizes.push(b.len());
            out.extend_from_slice(&b);
        }
        out.extend_from_slice(&r.finish());
        (String::from_utf8(out).unwrap(), sizes)
    }

    #[test]
    fn a_secret_in_one_chunk_or_split_across_several_is_replaced() {
        let mut r = redactor(&["sk-live-123456"]);
        let (out, _) = run(&mut r, &["error: bad key sk-live-123456 given"]);
        assert_eq!(out, "error: bad key [REDACTED] given");
        let mut r = redactor(&["sk-live-123456"]);
        let (out, _) = run(&mut r, &["key sk-li", "ve-12", "3456 and sk-live-123456"]);
        assert_eq!(out, "key [REDACTED] and [REDACTED]");
        assert_eq!(r.count(), 2);
    }

    #[test]
    fn text_far_from_a_secret_is_not_held_back() {
        let mut r = redactor(&["sk-live-123456"]);
        let (out, sizes) = run(&mut r, &["data: hello\n\n", "data: world s", "k but not\n"]);
        assert_eq!(out, "data: hello\n\ndata: world sk but not\n");
        // Only the `s` that might start the secret waited for the next chunk.
        assert_eq!(sizes, vec![13, 12, 11]);
    }

    #[test]
    fn a_stream_ending_in_a_partial_secret_gives_it_back_unchanged() {
        let mut r = redactor(&["sk-live-123456", "c2stbGl2ZS0xMjM0NTY="]);
        let (out, _) = run(&mut r, &["ends with sk-live-12"]);
        assert_eq!(out, "ends with sk-live-12");
        let (out, _) = run(&mut r, &["b64 c2stbGl2ZS0xMjM0NTY= too"]);
        assert_eq!(out, "b64 [REDACTED] too");
    }

    #[test]
    fn response_headers_are_redacted_too() {
        let mut r = redactor(&["sk-live-123456"]);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::LOCATION,
            "/v1/items/?api_key=sk-live-123456".parse().unwrap(),
        );
        headers.insert("x-other", "fine".parse().unwrap());
        assert_eq!(r.headers(&mut headers), 1);
        assert_eq!(headers["location"], "/v1/items/?api_key=[REDACTED]");
        assert_eq!(headers["x-other"], "fine");
    }

    #[test]
    fn a_secret_is_also_redacted_json_escaped_or_percent_encoded() {
        let secret = "sk/live+<key>&\"ü";
        let mut all = vec![Zeroizing::new(secret.to_owned())];
        all.extend(echoed_forms(secret));
        let mut r = Redactor::new(all.into()).unwrap();
        for echoed in [
            r#"sk/live+<key>&\"ü"#,
            r#"sk\/live+<key>&\"ü"#,
            r#"sk/live+\u003ckey\u003e\u0026\"ü"#,
            r#"sk/live+\u003Ckey\u003E\u0026\"ü"#,
            r#"sk/live+<key>&\"\u00fc"#,
            r#"sk/live+<key>&\"\u00FC"#,
            "sk%2Flive%2B%3Ckey%3E%26%22%C3%BC",
            "sk%2flive%2b%3ckey%3e%26%22%c3%bc",
        ] {
            let (out, _) = run(&mut r, &[&format!("error: {echoed} given")]);
            assert_eq!(out, "error: [REDACTED] given", "{echoed}");
        }
        // A plain token has no other JSON form; its percent-encoded one is itself.
        assert!(echoed_forms("sk-live_0123.456~x").is_empty());
        assert_eq!(
            echoed_forms("a b")
                .iter()
                .map(|f| f.as_str())
                .collect::<Vec<_>>(),
            vec!["a%20b", "a+b"]
        );
    }

    #[test]
    fn a_secret_is_redacted_however_json_or_a_url_spells_its_characters() {
        let secret = "sk-proj/Abc+def123";
        for echoed in [
            // System.Text.Json's `+`, every character escaped, a mix of escapes.
            r"sk-proj/Abc\u002Bdef123",
            r"\u0073\u006b\u002d\u0070\u0072\u006f\u006a\u002f\u0041\u0062\u0063\u002b\u0064\u0065\u0066\u0031\u0032\u0033",
            r"sk-pr%6Fj\/Abc%2bdef12\u0033",
        ] {
            let mut r = redactor(&[secret]);
            let (out, _) = run(&mut r, &[&format!("{{\"error\":\"key {echoed} given\"}}")]);
            assert_eq!(out, r#"{"error":"key [REDACTED] given"}"#, "{echoed}");
            // Split anywhere, even inside an escape, it is held back until it is whole.
            let text = format!("key {echoed} given");
            for cut in 1..text.len() {
                let mut r = redactor(&[secret]);
                let (out, _) = run(&mut r, &[&text[..cut], &text[cut..]]);
                assert_eq!(out, "key [REDACTED] given", "{echoed} cut at {cut}");
            }
        }
        // Escapes elsewhere in a stream hold nothing back that cannot begin the secret.
        let mut r = redactor(&[secret]);
        let first = r#"{"text":"a \"quote\"\n"}"#;
        let (out, sizes) = run(&mut r, &[first, "\n"]);
        assert_eq!(out, format!("{first}\n"));
        assert_eq!(sizes, vec![first.len(), 1]);
    }

    #[test]
    fn a_secret_base64_encoded_inside_other_text_is_redacted_at_every_offset() {
        use base64::Engine as _;
        let secret = "sk-SECRETkey1234567890abcdef";
        let mut r = Redactor::new(base64_forms(secret.as_bytes()).into()).unwrap();
        for before in ["", "a", "ab", "abc", "Bearer "] {
            for engine in [
                base64::engine::general_purpose::STANDARD,
                base64::engine::general_purpose::URL_SAFE_NO_PAD,
                base64::engine::general_purpose::STANDARD_NO_PAD,
            ] {
                let encoded = engine.encode(format!("{before}{secret} trailing"));
                let (out, _) = run(&mut r, &[&format!("echo {encoded} end")]);
                // What is redacted is the secret's encoding but its first and last groups of
                // four at most (which hold no more than 2 bytes of it each).
                let (head, tail) = out
                    .split_once("[REDACTED]")
                    .unwrap_or_else(|| panic!("{before:?} {encoded}: {out}"));
                let kept = head.len() - "echo ".len() + tail.len() - " end".len();
                assert!(encoded.len() - kept >= 4 * (secret.len() / 3) - 8, "{out}");
            }
        }
    }

    #[test]
    fn a_secret_inside_a_longer_one_does_not_break_the_longer_ones_redaction() {
        let secrets = [
            Zeroizing::new("ghp-0123".to_owned()),
            Zeroizing::new("ghp-0123456789".to_owned()),
        ];
        let mut message = serde_json::json!({"text": "token ghp-0123456789"});
        assert_eq!(redact_json(&mut message, &secrets), 1);
        assert_eq!(message["text"], "token [REDACTED]");
    }

    #[test]
    fn trailers_are_redacted_like_headers() {
        let mut r = redactor(&["sk-live-123456"]);
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-debug", "key=sk-live-123456".parse().unwrap());
        let frame = r.trailers(http_body::Frame::trailers(trailers));
        let trailers = frame.into_trailers().unwrap_or_default();
        assert_eq!(trailers["x-debug"], "key=[REDACTED]");
        // A data frame passes as it is.
        let data = r.trailers(http_body::Frame::data(Bytes::from_static(
            b"sk-live-123456",
        )));
        assert_eq!(
            data.into_data().ok(),
            Some(Bytes::from_static(b"sk-live-123456"))
        );
    }

    #[test]
    fn secrets_in_a_json_message_are_replaced_wherever_they_are() {
        let secrets = [Zeroizing::new("ghp-0123456789".to_owned())];
        let mut message = serde_json::json!({"result": {"content": [
            {"type": "text", "text": "token ghp-0123456789 is ghp-0123456789"}
        ], "isError": false}});
        assert_eq!(redact_json(&mut message, &secrets), 2);
        assert_eq!(
            message["result"]["content"][0]["text"],
            "token [REDACTED] is [REDACTED]"
        );
        assert_eq!(message["result"]["isError"], false);
    }
}
