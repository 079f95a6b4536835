//! Usage Warden asks for on an agent's behalf: a streamed Chat Completions (or legacy
//! Completions) answer reports its usage only with `stream_options.include_usage`, so a stream
//! requested without it would be charged nothing. The request goes upstream asking for it
//! ([`ask`]), and the extra chunk it brings — `choices: []` and the usage, before `[DONE]` — is
//! taken out of what the agent receives ([`UsageChunks`]), so that the agent reads the stream
//! it asked for.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The value `stream_options` gets when the request has none (or `null`).
const ASKED: &[u8] = br#"{"include_usage":true}"#;

/// `body` (a Chat Completions or Completions request) asking for the stream's usage chunk:
/// every `stream_options` member set to include it, or one added first in the object when
/// there is none. `None` when the body is not a JSON object or its `stream_options` is neither
/// an object nor `null` (the provider refuses such a request anyway).
pub fn ask(body: &[u8]) -> Option<Bytes> {
    let Members(options) = serde_json::from_slice(body).ok()?;
    let base = body.as_ptr() as usize;
    if options.is_empty() {
        let open = body.iter().position(|b| *b == b'{')?;
        let empty = body[open + 1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'}');
        let mut out = Vec::with_capacity(body.len() + 40);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(br#""stream_options":"#);
        out.extend_from_slice(ASKED);
        if !empty {
            out.push(b',');
        }
        out.extend_from_slice(&body[open + 1..]);
        return Some(Bytes::from(out));
    }
    let mut out = Vec::with_capacity(body.len() + 24);
    let mut last = 0;
    for raw in options {
        let start = raw.get().as_ptr() as usize - base;
        out.extend_from_slice(&body[last..start]);
        out.extend_from_slice(&asked(raw)?);
        last = start + raw.get().len();
    }
    out.extend_from_slice(&body[last..]);
    Some(Bytes::from(out))
}

/// One `stream_options` value with `include_usage: true`, its other options kept.
fn asked(raw: &RawValue) -> Option<Vec<u8>> {
    match serde_json::from_str::<Option<serde_json::Map<String, serde_json::Value>>>(raw.get()) {
        Ok(None) => Some(ASKED.to_vec()),
        Ok(Some(mut options)) => {
            options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
            serde_json::to_vec(&options).ok()
        }
        Err(_) => None,
    }
}

/// The raw values of a JSON object's `stream_options` members (every one, should it repeat).
struct Members<'a>(Vec<&'a RawValue>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut options = Vec::new();
                while let Some(IsOptions(is)) = map.next_key()? {
                    if is {
                        options.push(map.next_value::<&'de RawValue>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Members(options))
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

/// Whether an object key is `stream_options` (escaped or not), read without allocating.
struct IsOptions(bool);

impl<'de> Deserialize<'de> for IsOptions {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = IsOptions;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IsOptions, E> {
                Ok(IsOptions(v == "stream_options"))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Most bytes of one event held back while it is incomplete: past it, the event goes on to the
/// agent as it is (no usage chunk is that large).
const MAX_HELD: usize = 64 * 1024;

/// Takes the usage-only chunk out of a Chat Completions (or Completions) event stream, and the
/// `"usage":null` member out of the other chunks, as they pass: every other byte goes through
/// as it came. A chunk that ends on an event boundary and holds neither passes as it is,
/// uncopied; an event split over chunks is held until it is whole.
#[derive(Debug, Default)]
pub struct UsageChunks {
    /// The start of an event not yet whole.
    held: BytesMut,
}

impl UsageChunks {
    /// What goes on to the agent of the next `chunk` of the stream.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.held.is_empty()
            && ends_event(&chunk)
            && !has_usage_object(&chunk)
            && null_usage(&chunk).is_none()
        {
            return chunk;
        }
        self.held.extend_from_slice(&chunk);
        let mut out = BytesMut::with_capacity(self.held.len());
        let mut rest = &self.held[..];
        while let Some(end) = event_end(rest) {
            let (event, after) = rest.split_at(end);
            if !is_usage_chunk(event) {
                without_null_usage(event, &mut out);
            }
            rest = after;
        }
        let rest = if rest.len() > MAX_HELD {
            out.extend_from_slice(rest);
            Vec::new()
        } else {
            rest.to_vec()
        };
        self.held.clear();
        self.held.extend_from_slice(&rest);
        out.freeze()
    }

    /// What is left at the end of the stream: an incomplete last event, as it came.
    pub fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.held).freeze()
    }
}

/// Whether `bytes` end on an event boundary (a blank line).
fn ends_event(bytes: &[u8]) -> bool {
    bytes.ends_with(b"\n\n") || bytes.ends_with(b"\r\n\r\n") || bytes.ends_with(b"\r\r")
}

/// The length of the first whole event of `bytes`, its blank line included.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        let eol = match bytes[i] {
            b'\n' => 1,
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => 2,
            b'\r' => 1,
            _ => {
                i += 1;
                continue;
            }
        };
        let next = i + eol;
        match bytes.get(next) {
            Some(b'\n') => return Some(next + 1),
            Some(b'\r') if bytes.get(next + 1) == Some(&b'\n') => return Some(next + 2),
            Some(b'\r') if next + 1 < bytes.len() => return Some(next + 1),
            _ => i = next,
        }
    }
    None
}

/// Where the value of a `"usage"` key found at `at` in `bytes` starts, if it is one.
fn usage_value(bytes: &[u8], at: usize) -> Option<usize> {
    let skip = |from: usize| {
        bytes[from..]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map(|n| from + n)
    };
    let colon = skip(at + br#""usage""#.len())?;
    (bytes[colon] == b':').then_some(())?;
    skip(colon + 1)
}

/// Whether `bytes` hold `"usage"` followed by an object (not `null`): a usage chunk's mark.
fn has_usage_object(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, br#""usage""#)
        .any(|at| usage_value(bytes, at).is_some_and(|v| bytes[v] == b'{'))
}

/// The span of the first `"usage":null` member of `bytes`, with the comma that separates it
/// from its neighbour. (A quote inside a JSON string is escaped: `"usage"` is a key.)
fn null_usage(bytes: &[u8]) -> Option<(usize, usize)> {
    memchr::memmem::find_iter(bytes, br#""usage""#).find_map(|at| {
        let value = usage_value(bytes, at)?;
        let end = value + 4;
        (bytes.get(value..end) == Some(&b"null"[..])).then_some(())?;
        let before = bytes[..at].iter().rposition(|b| !b.is_ascii_whitespace());
        if let Some(comma) = before.filter(|&i| bytes[i] == b',') {
            return Some((comma, end));
        }
        let after = bytes[end..].iter().position(|b| !b.is_ascii_whitespace());
        match after.map(|n| end + n).filter(|&i| bytes[i] == b',') {
            Some(comma) => Some((at, comma + 1)),
            None => Some((at, end)),
        }
    })
}

/// `event` into `out`, without its `"usage":null` members.
fn without_null_usage(mut event: &[u8], out: &mut BytesMut) {
    while let Some((start, end)) = null_usage(event) {
        out.extend_from_slice(&event[..start]);
        event = &event[end..];
    }
    out.extend_from_slice(event);
}

/// Whether `event` is the usage-only chunk: its data a JSON object whose `choices` is empty
/// and whose `usage` is an object.
fn is_usage_chunk(event: &[u8]) -> bool {
    if !has_usage_object(event) {
        return false;
    }
    let mut data = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(value) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
        }
    }
    #[derive(Deserialize)]
    struct Chunk {
        choices: Vec<IgnoredAny>,
        usage: Option<serde_json::Map<String, serde_json::Value>>,
    }
    serde_json::from_slice::<Chunk>(&data).is_ok_and(|c| c.choices.is_empty() && c.usage.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn asked(body: &str) -> Value {
        let out = ask(body.as_bytes()).unwrap_or_else(|| panic!("not rewritten: {body}"));
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }

    #[test]
    fn a_stream_without_options_asks_for_usage_and_keeps_every_byte_else() {
        let body =
            r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let out = ask(body.as_bytes()).unwrap_or_default();
        assert_eq!(
            out,
            &br#"{"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#[..]
        );
        assert_eq!(
            asked(" \n{ }")["stream_options"],
            json!({"include_usage": true})
        );
    }

    #[test]
    fn existing_options_are_kept_and_include_usage_set() {
        let got = asked(
            r#"{"stream":true,"stream_options":{"include_usage":false,"include_obfuscation":false},"model":"m"}"#,
        );
        assert_eq!(
            got["stream_options"],
            json!({"include_usage": true, "include_obfuscation": false})
        );
        assert_eq!(got["model"], "m");
        let null = asked(r#"{"stream":true,"stream_options":null,"model":"m"}"#);
        assert_eq!(null["stream_options"], json!({"include_usage": true}));
        // An escaped key is the same key to the provider.
        let escaped = asked(r#"{"stream":true,"stream\u005foptions":{}}"#);
        assert_eq!(escaped["stream_options"], json!({"include_usage": true}));
        // A key given twice: each is rewritten, whichever the provider reads.
        let twice =
            ask(br#"{"stream_options":{},"stream":true,"stream_options":{"include_usage":false}}"#)
                .unwrap_or_default();
        assert_eq!(
            twice,
            &br#"{"stream_options":{"include_usage":true},"stream":true,"stream_options":{"include_usage":true}}"#[..]
        );
    }

    #[test]
    fn bodies_that_are_no_object_or_bad_options_are_left_alone() {
        assert_eq!(ask(b"[1,2]"), None);
        assert_eq!(ask(b"{\"stream\":"), None);
        assert_eq!(ask(br#"{"stream":true,"stream_options":"yes"}"#), None);
    }

    const CHUNK: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage\"}}],\"usage\":null}\n\n";
    const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    /// What the agent gets of `stream` pushed in pieces split at `splits`.
    fn filtered(stream: &str, splits: &[usize]) -> String {
        let mut chunks = UsageChunks::default();
        let mut out = Vec::new();
        let mut from = 0;
        for &to in splits.iter().chain(std::iter::once(&stream.len())) {
            out.extend_from_slice(
                &chunks.push(Bytes::copy_from_slice(&stream.as_bytes()[from..to])),
            );
            from = to;
        }
        out.extend_from_slice(&chunks.finish());
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`CHUNK`] as it is sent without `include_usage`.
    const PLAIN: &str =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"usage\"}}]}\n\n";

    #[test]
    fn the_usage_chunk_and_null_usages_are_taken_out_at_every_split() {
        let stream = format!("{CHUNK}{CHUNK}{USAGE}{DONE}");
        let want = format!("{PLAIN}{PLAIN}{DONE}");
        for split in 0..=stream.len() {
            assert_eq!(filtered(&stream, &[split]), want, "split at {split}");
        }
        let bytes: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(filtered(&stream, &bytes), want, "byte by byte");
        let crlf = stream.replace("\n\n", "\r\n\r\n");
        assert_eq!(filtered(&crlf, &[17]), want.replace("\n\n", "\r\n\r\n"));
        let spaced = "data: {\"choices\": [], \"usage\" : {\"prompt_tokens\": 1}}\n\n";
        assert_eq!(filtered(&format!("{spaced}{DONE}"), &[]), DONE);
    }

    #[test]
    fn a_null_usage_goes_wherever_it_stands() {
        let first = "data: {\"usage\": null , \"choices\":[]}\n\n";
        assert_eq!(filtered(first, &[]), "data: { \"choices\":[]}\n\n");
        let alone = "data: {\"usage\":null}\n\n";
        assert_eq!(filtered(alone, &[]), "data: {}\n\n");
        // In a string, quotes are escaped: no key, left alone.
        let text = "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":null\"}}]}\n\n";
        assert_eq!(filtered(text, &[]), text);
    }

    #[test]
    fn whole_events_without_usage_pass_uncopied_and_usage_with_choices_stays() {
        let mut chunks = UsageChunks::default();
        let chunk = Bytes::from(format!("{PLAIN}{PLAIN}"));
        let out = chunks.push(chunk.clone());
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "not copied");
        // A chunk that carries choices and usage (some compatible servers) is content: kept.
        let both =
            "data: {\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n";
        assert_eq!(filtered(both, &[]), both);
        // An unfinished last event is given at the end, as it came.
        assert_eq!(
            filtered("data: {\"choices\":[],\"usage\":{}", &[]),
            "data: {\"choices\":[],\"usage\":{}"
        );
    }
}
