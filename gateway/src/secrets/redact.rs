//! Redaction of an injected secret that an upstream echoes back (an error message quoting the
//! `Authorization` header, a debug endpoint): replaced with `[REDACTED]` before the agent sees
//! it. Works on a stream chunk by chunk; only bytes that could begin a secret split across
//! chunks are held back, so a stream that never comes near one flows with no delay. What is
//! looked for, and how, is the credential's [`Echo`]. An LLM's event stream is read event by
//! event too ([`Redactor::joining`]), each channel's deltas joined as the agent's SDK joins
//! them ([`super::joined`]), so a secret streamed a piece per delta is found.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use zeroize::Zeroizing;

pub use super::echo::{Echo, MIN_ECHO, REDACTED, base64_forms};
use super::joined::Joined;
pub use super::joined::{Kind as StreamKind, UNREADABLE, UNREADABLE_CODE};

/// The finding an outcome record lists when the injected credential was redacted from the
/// response (located as `response: N redacted`; never the value).
pub const ECHO_FINDING: &str = "credential_echo";

/// Redacts a credential's echo from a stream of chunks.
pub struct Redactor {
    echo: Arc<Echo>,
    /// Bytes held back: the end of the last chunk, which may be the start of a secret.
    tail: Zeroizing<Vec<u8>>,
    /// Secrets replaced so far.
    count: usize,
    /// Joins the deltas of an LLM's event stream first, when set.
    joined: Option<Box<Joined>>,
}

impl Redactor {
    /// A redactor of `echo`; `None` when there is nothing to redact.
    pub fn new(echo: Arc<Echo>) -> Option<Redactor> {
        (!echo.is_empty()).then(|| Redactor {
            echo,
            tail: Zeroizing::new(Vec::new()),
            count: 0,
            joined: None,
        })
    }

    /// Reads the body as an LLM's event stream of `kind` (known from the request) in
    /// `dialect`: the deltas of each content channel are joined as the agent's SDK joins them,
    /// and a secret spread over them is redacted ([`super::joined`]); the dialect's error ends
    /// a stream that cannot be read so.
    pub fn joining(
        mut self,
        dialect: &'static dyn crate::protocol::Dialect,
        kind: StreamKind,
    ) -> Redactor {
        self.joined = Some(Box::new(Joined::new(Arc::clone(&self.echo), dialect, kind)));
        self
    }

    /// How many secrets were replaced.
    pub fn count(&self) -> usize {
        self.count + self.joined.as_ref().map_or(0, |j| j.count())
    }

    /// How many of them were spread over the deltas of an event stream (found only in their
    /// joined text: begun in one delta, ended in a later one).
    pub fn joined_count(&self) -> usize {
        self.joined.as_ref().map_or(0, |j| j.spread())
    }

    /// Whether the event stream could not be read to be redacted: it was ended with the
    /// dialect's error, and nothing more of it is sent.
    pub fn failed(&self) -> bool {
        self.joined.as_ref().is_some_and(|j| j.failed())
    }

    /// Redacts the secrets from `headers` (a `Location` or `Link` quoting a query-parameter
    /// credential, a debug header echoing one); a header whose name holds the secret (in any
    /// case) is dropped, as a name cannot be redacted. Returns how many were replaced or
    /// dropped.
    pub fn headers(&mut self, headers: &mut http::HeaderMap) -> usize {
        let before = self.count;
        let named: Vec<http::HeaderName> = headers
            .keys()
            .filter(|name| self.echo.in_header_name(name.as_str()))
            .cloned()
            .collect();
        for name in named {
            headers.remove(&name);
            self.count += 1;
        }
        for value in headers.values_mut() {
            if self.echo.find(value.as_bytes(), 0).is_none() {
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
        let chunk = match self.joined.as_mut() {
            Some(joined) => joined.push(&chunk),
            None => chunk,
        };
        self.push_bytes(chunk)
    }

    /// [`Redactor::push`] of bytes already read as events.
    fn push_bytes(&mut self, chunk: Bytes) -> Bytes {
        if self.tail.is_empty()
            && self.echo.find(&chunk, 0).is_none()
            && self.echo.partial(&chunk) == 0
        {
            // The common case: no secret, nothing held back, the chunk as it came.
            return chunk;
        }
        let mut joined = Zeroizing::new(std::mem::take(&mut *self.tail));
        joined.extend_from_slice(&chunk);
        let mut out = self.replace_all(&joined);
        let keep = self.echo.partial(&out);
        self.tail.extend_from_slice(&out[out.len() - keep..]);
        out.truncate(out.len() - keep);
        out.freeze()
    }

    /// Ready, with what may go on, once an event stream's events have been held too long
    /// while its upstream is silent ([`Joined::poll_release`]); pending otherwise, with no
    /// timer while nothing is held. The stream may have [`failed`](Self::failed) then.
    pub fn poll_release(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Bytes> {
        let Some(joined) = self.joined.as_mut() else {
            return std::task::Poll::Pending;
        };
        let released = std::task::ready!(joined.poll_release(cx));
        std::task::Poll::Ready(self.push_bytes(released))
    }

    /// What is still held back, at the end of the stream.
    pub fn finish(&mut self) -> Bytes {
        let flushed = match self.joined.as_mut() {
            Some(joined) => joined.finish(),
            None => Bytes::new(),
        };
        let mut out = BytesMut::from(&self.push_bytes(flushed)[..]);
        out.extend_from_slice(&std::mem::take(&mut *self.tail));
        out.freeze()
    }

    /// `text` with every secret replaced (longest first where two start at one place).
    fn replace_all(&mut self, text: &[u8]) -> BytesMut {
        let mut out = BytesMut::with_capacity(text.len());
        self.count += self.echo.replace(text, &mut out);
        out
    }
}

/// Replaces the credential's echo in the strings of `value` (a JSON-RPC message from an MCP
/// server, its strings decoded: a form with escapes is a URL's) with `[REDACTED]`, longest
/// first (a secret inside another is not replaced before the longer one); returns how many
/// were replaced.
pub fn redact_json(value: &mut serde_json::Value, echo: &Echo) -> usize {
    use serde_json::Value;
    match value {
        Value::String(text) => redact_text(text, echo),
        Value::Array(items) => items.iter_mut().map(|v| redact_json(v, echo)).sum(),
        Value::Object(fields) => {
            let values: usize = fields.values_mut().map(|v| redact_json(v, echo)).sum();
            values + redact_keys(fields, echo)
        }
        _ => 0,
    }
}

/// Replaces the credential's echo in `text`; how many were replaced.
fn redact_text(text: &mut String, echo: &Echo) -> usize {
    if echo.find(text.as_bytes(), 0).is_none() {
        return 0;
    }
    let mut out = Vec::with_capacity(text.len());
    let count = echo.replace(text.as_bytes(), &mut out);
    // A form begins and ends on a character's boundary; were it not so, the whole
    // string goes rather than a part of the secret staying (fail closed).
    *text = String::from_utf8(out).unwrap_or_else(|_| "[REDACTED]".to_owned());
    count
}

/// Redacts the keys of `fields` too (an object key is a string the agent reads as surely as
/// a value: a map keyed by a header's value hands the credential over). A key that becomes
/// one already present is kept under a numbered form (`[REDACTED] (2)`), never merged or
/// dropped silently. How many were replaced.
fn redact_keys(fields: &mut serde_json::Map<String, serde_json::Value>, echo: &Echo) -> usize {
    if !fields
        .keys()
        .any(|key| echo.find(key.as_bytes(), 0).is_some())
    {
        return 0;
    }
    let mut count = 0;
    let mut rebuilt = serde_json::Map::new();
    for (mut key, value) in std::mem::take(fields) {
        count += redact_text(&mut key, echo);
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

    fn echo(secrets: &[&str]) -> Echo {
        Echo::new(secrets.iter().map(|s| Zeroizing::new((*s).to_owned())), [])
    }

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
        let count = redact_json(&mut message, &echo(&[secret.as_str()]));
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
        Redactor::new(Arc::new(echo(secrets))).unwrap()
    }

    /// Asserts that `text` redacts to `expected` whole, and split in two anywhere.
    fn assert_redacted_split_anywhere(secret: &str, text: &str, expected: &str) {
        let mut r = redactor(&[secret]);
        assert_eq!(run(&mut r, &[text]).0, expected, "{text}");
        for cut in (1..text.len()).filter(|&cut| text.is_char_boundary(cut)) {
            let mut r = redactor(&[secret]);
            let (out, _) = run(&mut r, &[&text[..cut], &text[cut..]]);
            assert_eq!(out, expected, "{text} cut at {cut}");
        }
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
    fn a_response_header_named_with_the_secret_is_dropped() {
        let mut r = redactor(&["RestCred-abc123DEF456"]);
        let mut headers = http::HeaderMap::new();
        headers.insert("x-restcred-abc123def456", "1".parse().unwrap());
        headers.insert("x-other", "fine".parse().unwrap());
        assert_eq!(r.headers(&mut headers), 1);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["x-other"], "fine");
    }

    #[test]
    fn a_secret_is_also_redacted_json_escaped_or_percent_encoded() {
        let secret = "sk/live+<key>&\"ü";
        let mut r = redactor(&[secret]);
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
        // A space is `+` in a form, with or without other escapes.
        let mut r = redactor(&["key one/two"]);
        for echoed in ["key+one/two", "key+one%2Ftwo", "key%20one%2ftwo"] {
            let (out, _) = run(&mut r, &[&format!("q={echoed}&x")]);
            assert_eq!(out, "q=[REDACTED]&x", "{echoed}");
        }
    }

    #[test]
    fn a_secret_is_redacted_hex_encoded_in_either_case() {
        let secret = "sk-live-123456";
        let lower = "736b2d6c6976652d313233343536";
        for echoed in [lower, &lower.to_ascii_uppercase()] {
            assert_redacted_split_anywhere(secret, &format!("hex={echoed};"), "hex=[REDACTED];");
        }
        // Hex of other bytes, or of half the secret, passes.
        let mut r = redactor(&[secret]);
        let (out, _) = run(&mut r, &["736b2d6c6976 and 00ff"]);
        assert_eq!(out, "736b2d6c6976 and 00ff");
    }

    #[test]
    fn a_secret_is_redacted_spelled_with_html_character_references() {
        let secret = "sk/live+<key>&'ü";
        for echoed in [
            "sk&#47;live&#43;&lt;key&gt;&amp;&#39;&#252;",
            "sk/live&#x2B;&#x3c;key&#X3E;&amp;&apos;&#xfc;",
            "sk/live+&lt;key&gt;&amp;&#x27;ü",
            r"sk\/live%2B&lt;key\u003e&amp;'%C3%BC",
        ] {
            let text = format!("<p>bad key {echoed}</p>");
            assert_redacted_split_anywhere(secret, &text, "<p>bad key [REDACTED]</p>");
        }
        // A reference to another character is not the secret.
        let mut r = redactor(&[secret]);
        let (out, _) = run(&mut r, &["sk&#47;live&#44;&lt;key&gt;&amp;&#39;&#252;"]);
        assert_eq!(out, "sk&#47;live&#44;&lt;key&gt;&amp;&#39;&#252;");
    }

    #[test]
    fn redact_json_finds_a_secret_percent_encoded_in_a_decoded_string() {
        let secrets = echo(&["sk/live+key"]);
        let mut message = serde_json::json!({"error": {"message":
            "GET /v1/x?key=sk%2Flive%2Bkey failed; retry with sk%2flive%2bkey or ü"}});
        assert_eq!(redact_json(&mut message, &secrets), 2);
        assert_eq!(
            message["error"]["message"],
            "GET /v1/x?key=[REDACTED] failed; retry with [REDACTED] or ü"
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
            // Split anywhere, even inside an escape, it is held back until it is whole.
            let text = format!("{{\"error\":\"key {echoed} given\"}}");
            assert_redacted_split_anywhere(secret, &text, r#"{"error":"key [REDACTED] given"}"#);
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
        let echo = Echo::new([], base64_forms(secret.as_bytes()));
        let mut r = Redactor::new(Arc::new(echo)).unwrap();
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
        let secrets = echo(&["ghp-0123", "ghp-0123456789"]);
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
        let secrets = echo(&["ghp-0123456789"]);
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
