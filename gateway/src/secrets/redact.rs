//! Redaction of an injected secret that an upstream echoes back (an error message quoting the
//! `Authorization` header, a debug endpoint): replaced with `[REDACTED]` before the agent sees
//! it. Works on a stream chunk by chunk; only bytes that could begin a secret split across
//! chunks are held back, so a stream that never comes near one flows with no delay.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use zeroize::Zeroizing;

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
    }

    /// `text` with every secret replaced (longest first where two start at one place).
    fn replace_all(&mut self, text: &[u8]) -> BytesMut {
        let mut out = BytesMut::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let found = self
                .secrets
                .iter()
                .filter_map(|s| {
                    memchr::memmem::find(&text[i..], s.as_bytes()).map(|at| (i + at, s.len()))
                })
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
        longest
    }
}

/// Replaces every secret of `secrets` in the strings of `value` (a JSON-RPC message from an
/// MCP server) with `[REDACTED]`; returns how many were replaced.
pub fn redact_json(value: &mut serde_json::Value, secrets: &[Zeroizing<String>]) -> usize {
    use serde_json::Value;
    match value {
        Value::String(text) => {
            let mut count = 0;
            for secret in secrets {
                if text.contains(secret.as_str()) {
                    count += text.matches(secret.as_str()).count();
                    *text = text.replace(secret.as_str(), "[REDACTED]");
                }
            }
            count
        }
        Value::Array(items) => items.iter_mut().map(|v| redact_json(v, secrets)).sum(),
        Value::Object(fields) => fields.values_mut().map(|v| redact_json(v, secrets)).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
